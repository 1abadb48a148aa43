//! The write-ahead effect ledger: no partner effect (a check, a screening, a payout) ever runs twice.
//!
//! For every call that can have an effect at a partner, an adapter:
//! 1. takes the **key lock** (a Postgres advisory lock held on its own connection, no transaction
//!    open), so two instances handling the same request after a rebalance never call at once;
//! 2. commits the **intent** with its deterministic idempotency key ([`Ledger::take`]) *before* the
//!    call, learning what an earlier attempt with the same key left;
//! 3. calls the partner outside any transaction, committing what a multi-call operation learns on the
//!    way ([`Ledger::checkpoint`]);
//! 4. commits the partner's **answer** in its own transaction as soon as it arrives
//!    ([`Ledger::answered`]), so a crash before the result event is written replays the answer and
//!    never calls again.
//!
//! An intent without an answer (a crash mid-call) or a call whose outcome is unknown (a timeout or a
//! dropped connection after sending: `in_doubt`) is resolved by asking the partner what happened, by
//! key, external id or tag, before anything is sent again; where the partner offers no way to know,
//! the effect goes to `manual_repair` with the evidence. The algorithm over these states lives with the
//! adapters (`switchyard_vendors::adapter::Partners::effect`); this module is its storage.

use std::sync::OnceLock;

use sqlx::{PgPool, pool::PoolConnection, postgres::Postgres};

/// One effect's identity: the idempotency key and what it is for.
#[derive(Debug, Clone)]
pub struct Intent<'a> {
    pub key: &'a str,
    pub partner: &'a str,
    pub operation: &'a str,
    pub request_event_id: uuid::Uuid,
    pub flow_id: &'a str,
}

/// What an earlier attempt with the same key left.
#[derive(Debug, Clone, PartialEq)]
pub enum Prior {
    /// First time: nothing was sent.
    Fresh,
    /// The partner answered; its answer, in canonical terms.
    Answered(serde_json::Value),
    /// The partner said, or it is certain, that nothing happened: sending is safe.
    NotExecuted,
    /// It may have happened (a crash mid-call, or a timeout after sending): ask the partner first.
    Unresolved { checkpoint: serde_json::Value },
    /// An operator must find out what happened at the partner.
    ManualRepair,
}

#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
}

/// The advisory lock on one key; released by [`KeyLock::release`] (or with its connection, if the
/// process dies).
pub struct KeyLock {
    conn: Option<PoolConnection<Postgres>>,
    key: String,
}

/// The advisory lock id of an effect key, computed by Postgres in the locking statement itself.
const LOCK_ID: &str = "hashtextextended($1, 7431)";

impl KeyLock {
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked: Result<bool, _> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT pg_advisory_unlock({LOCK_ID})")))
                    .bind(&self.key)
                    .fetch_one(&mut *conn)
                    .await;
            if !matches!(unlocked, Ok(true)) {
                // Never hand a connection that may still hold the lock back to the pool.
                drop(conn.detach());
            }
        }
    }
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Dropped without release (an early return or a cancelled future): close the connection, so
        // Postgres ends the session and its lock.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

impl Ledger {
    pub fn new(pool: PgPool) -> Self {
        Ledger { pool }
    }

    /// Takes the key's lock, waiting while another instance works on the same key.
    pub async fn lock(&self, key: &str) -> Result<KeyLock, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT pg_advisory_lock({LOCK_ID})")))
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(KeyLock {
            conn: Some(conn),
            key: key.to_string(),
        })
    }

    /// Commits the intent (or takes up the earlier one) and reports what an earlier attempt left.
    /// A fresh intent counts its first send already (what follows a fresh intent is a send): the
    /// caller skips [`Ledger::sending`] for it.
    pub async fn take(&self, intent: &Intent<'_>) -> Result<Prior, sqlx::Error> {
        let (inserted, state, outcome, checkpoint): (bool, String, Option<serde_json::Value>, serde_json::Value) =
            sqlx::query_as(
                "INSERT INTO effect_ledger (idempotency_key, partner, operation, request_event_id, flow_id, state, sends) \
                 VALUES ($1, $2, $3, $4, $5, 'intent', 1) \
                 ON CONFLICT (idempotency_key) DO UPDATE SET attempts = effect_ledger.attempts + 1, updated_at = now() \
                 RETURNING (xmax = 0), state, outcome, checkpoint",
            )
            .bind(intent.key)
            .bind(intent.partner)
            .bind(intent.operation)
            .bind(intent.request_event_id)
            .bind(intent.flow_id)
            .fetch_one(&self.pool)
            .await?;
        if inserted {
            return Ok(Prior::Fresh);
        }
        Ok(match (state.as_str(), outcome) {
            ("answered", Some(v)) => Prior::Answered(v),
            ("not_executed", _) => Prior::NotExecuted,
            ("manual_repair", _) => Prior::ManualRepair,
            // intent, in_doubt (or an answer row without its outcome, which cannot be replayed).
            _ => Prior::Unresolved { checkpoint },
        })
    }

    /// What an earlier attempt under `key` left, without taking it up (None: no intent was ever
    /// committed, so nothing was sent).
    pub async fn prior(&self, key: &str) -> Result<Option<Prior>, sqlx::Error> {
        let row: Option<(String, Option<serde_json::Value>, serde_json::Value)> =
            sqlx::query_as("SELECT state, outcome, checkpoint FROM effect_ledger WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(state, outcome, checkpoint)| match (state.as_str(), outcome) {
            ("answered", Some(v)) => Prior::Answered(v),
            ("not_executed", _) => Prior::NotExecuted,
            ("manual_repair", _) => Prior::ManualRepair,
            _ => Prior::Unresolved { checkpoint },
        }))
    }

    /// The values learnt mid-operation under `key`.
    pub async fn checkpoint_of(&self, key: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
        sqlx::query_scalar("SELECT checkpoint FROM effect_ledger WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
    }

    /// Records a value learnt mid-operation (merged into the checkpoint), committed at once.
    pub async fn checkpoint(&self, key: &str, name: &str, value: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE effect_ledger SET checkpoint = checkpoint || jsonb_build_object($2::text, $3::text), \
             updated_at = now() WHERE idempotency_key = $1",
        )
        .bind(key)
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts a send about to happen (the intent row stays `intent`: "may have happened").
    pub async fn sending(&self, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE effect_ledger SET state = 'intent', sends = sends + 1, updated_at = now() WHERE idempotency_key = $1",
        )
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The partner answered: the answer is committed before anything else happens.
    pub async fn answered(
        &self,
        key: &str,
        provider_reference: Option<&str>,
        outcome: &serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        self.set(key, "answered", provider_reference, Some(outcome), None).await
    }

    /// Nothing happened at the partner (refused before any effect, or confirmed absent).
    pub async fn not_executed(&self, key: &str, error: &str) -> Result<(), sqlx::Error> {
        self.set(key, "not_executed", None, None, Some(error)).await
    }

    /// Sent, outcome unknown: to be resolved by asking the partner.
    pub async fn in_doubt(&self, key: &str, error: &str) -> Result<(), sqlx::Error> {
        self.set(key, "in_doubt", None, None, Some(error)).await
    }

    /// The partner offers no way to know: an operator decides.
    pub async fn manual_repair(&self, key: &str, error: &str) -> Result<(), sqlx::Error> {
        self.set(key, "manual_repair", None, None, Some(error)).await
    }

    async fn set(
        &self,
        key: &str,
        state: &str,
        provider_reference: Option<&str>,
        outcome: Option<&serde_json::Value>,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE effect_ledger SET state = $2, provider_reference = COALESCE($3, provider_reference), \
             outcome = COALESCE($4, outcome), last_error = COALESCE($5, last_error), updated_at = now() \
             WHERE idempotency_key = $1",
        )
        .bind(key)
        .bind(state)
        .bind(provider_reference)
        .bind(outcome)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The chaos harness's fault hook: with the probability in `SWITCHYARD_CHAOS_CRASH_AFTER_CALL`
/// (0..1, unset in production), the process dies on the spot at `point`, the worst moment for it
/// (e.g. after a partner answered and before the answer is committed).
pub fn chaos_point(point: &str) {
    static P: OnceLock<f64> = OnceLock::new();
    let p = *P.get_or_init(|| {
        std::env::var("SWITCHYARD_CHAOS_CRASH_AFTER_CALL")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|p| (0.0..=1.0).contains(p))
            .unwrap_or(0.0)
    });
    if p > 0.0 && (uuid::Uuid::new_v4().as_u128() % 10_000) as f64 / 10_000.0 < p {
        eprintln!("chaos: crashing at {point}");
        std::process::abort();
    }
}
