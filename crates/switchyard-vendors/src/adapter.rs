//! What every adapter service does around its vendors: build them from configuration, call them
//! through the resilience layer and the write-ahead effect ledger, and write each result event.
//!
//! [`Partners::effect`] is the one algorithm every call with an effect goes through:
//!
//! ```text
//!  lock key ─▶ take intent ─┬─ answered earlier ───────────────▶ replay the answer (no call)
//!                           ├─ unresolved (crash mid-call) ─▶ recover: found ─▶ record answer
//!                           │                                          send-again ─┐
//!                           │                                          unknowable ─▶ manual_repair
//!                           └─ fresh / not executed ───────────────────────────────┴▶ send
//!  send ─┬─ answer ─▶ commit answer (own transaction) ─▶ result
//!        ├─ refused before any effect (503, 429, 4xx, no connection) ─▶ not_executed ─▶ failure
//!        └─ ambiguous (timeout/reset after sending, 500/502/504) ─▶ in_doubt ─▶ recover (as above)
//! ```
//!
//! A failure reported to the orchestrator therefore always means "the partner has no live case":
//! only then may a flow fail over. Ambiguity never reaches it as a failure that fails over.

use std::{collections::HashMap, future::Future, path::Path, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use switchyard_model::{
    EventRecord,
    events::common::{Failure, FailureClass},
};
use switchyard_runtime::{
    HandlerError, Metrics, Outbox, ServiceConfig,
    effects::{Intent, Ledger, Prior, chaos_point},
    pace::Pacer,
    provider::{CallError, Caller, Pacing, PolicyConfig, ProviderMetrics, Turn},
};

use crate::{VendorError, registry::PartnerConnection};

/// What a partner says about an earlier call that may have happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery<T> {
    /// The effect happened: here is its answer.
    Found(T),
    /// It did not happen, or the partner de-duplicates a re-send (same key, external id or
    /// byte-identical request): sending again is safe.
    SendAgain,
    /// The partner offers no way to know: an operator must look.
    Unknowable,
}

/// The progress of `key` as its checkpoint recorded it, noting what is learnt next.
fn ledger_progress(ledger: &Ledger, key: &str, checkpoint: &serde_json::Value) -> Arc<dyn Progress> {
    Arc::new(LedgerProgress {
        ledger: ledger.clone(),
        key: key.to_string(),
        values: std::sync::Mutex::new(
            checkpoint
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
        ),
    })
}

/// What a status query found about a call left in doubt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck<T> {
    /// It happened: the partner's answer (now recorded).
    Found(T),
    /// Nothing happened (nothing was sent, or the partner has nothing for our reference).
    NotExecuted,
    /// Still unknown (the partner cannot or did not say); ask again later or leave it to an operator.
    Unknown(String),
}

/// What a multi-call operation learnt on the way, committed as it is learnt (e.g. the applicant a
/// check is for), so that after a crash it resumes instead of repeating the calls before.
pub trait Progress: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
    fn note<'a>(&'a self, name: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), VendorError>>;
}

/// Progress recorded in the effect ledger's checkpoint, committed before the next call.
struct LedgerProgress {
    ledger: Ledger,
    key: String,
    values: std::sync::Mutex<HashMap<String, String>>,
}

impl Progress for LedgerProgress {
    fn get(&self, name: &str) -> Option<String> {
        self.values.lock().ok().and_then(|m| m.get(name).cloned())
    }
    fn note<'a>(&'a self, name: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), VendorError>> {
        Box::pin(async move {
            if let Ok(mut m) = self.values.lock() {
                m.insert(name.to_string(), value.to_string());
            }
            // If this cannot be committed the operation stops here: the next attempt recovers.
            self.ledger
                .checkpoint(&self.key, name, value)
                .await
                .map_err(|e| VendorError::Transient(format!("checkpoint not recorded: {e}")))
        })
    }
}

/// What an adapter reads from the partner catalog.
#[derive(serde::Deserialize)]
struct CatalogEntry {
    id: String,
    #[serde(default)]
    rate_limit_per_second: f64,
}

/// An adapter's vendors, by partner id, and the caller that guards every call.
pub struct Partners<V: ?Sized> {
    vendors: HashMap<String, Arc<V>>,
    pub caller: Caller,
}

impl<V: ?Sized> Partners<V> {
    /// Builds the vendors of the `[[partners]]` section and the `[provider]` policy of `file`. Each
    /// partner's rate limit is drawn from the budget in `pool`, shared by every instance of the
    /// service ([`Pacer::shared`]).
    pub fn load(
        file: Option<&Path>,
        metrics: &Metrics,
        pool: &PgPool,
        build: impl Fn(&PartnerConnection) -> Result<Arc<V>, String>,
    ) -> Result<Self, String> {
        let connections: Vec<PartnerConnection> =
            ServiceConfig::section(file, "partners", Vec::new()).map_err(|e| e.to_string())?;
        let policy: PolicyConfig =
            ServiceConfig::section(file, "provider", PolicyConfig::default()).map_err(|e| e.to_string())?;
        let caller = Caller::new(
            policy.policy(),
            ProviderMetrics::register(metrics),
            Pacer::shared(pool.clone()),
        );
        let mut vendors = HashMap::new();
        for p in &connections {
            vendors.insert(
                p.id.clone(),
                build(p).map_err(|e| format!("configuration field `{e}`"))?,
            );
            caller.set_rate_limit(&p.id, p.rate_limit_per_second);
        }
        // The partner catalog (the routing policy's `[[partners]]`) owns rate limits; it overrides a
        // connection's own value.
        let catalog: Option<String> = ServiceConfig::section(file, "catalog_file", None).map_err(|e| e.to_string())?;
        if let Some(catalog) = catalog {
            let path = match (Path::new(&catalog), file.and_then(Path::parent)) {
                (p, Some(dir)) if p.is_relative() => dir.join(p),
                (p, _) => p.to_path_buf(),
            };
            if !path.exists() {
                return Err(format!(
                    "configuration field `catalog_file`: {} does not exist",
                    path.display()
                ));
            }
            let entries: Vec<CatalogEntry> = ServiceConfig::section(Some(&path), "partners", Vec::new())
                .map_err(|e| format!("configuration field `catalog_file`: {e}"))?;
            for e in entries.iter().filter(|e| vendors.contains_key(&e.id)) {
                caller.set_rate_limit(&e.id, e.rate_limit_per_second);
            }
        }
        tracing::info!(partners = ?vendors.keys().collect::<Vec<_>>(), "partners configured");
        Ok(Partners { vendors, caller })
    }

    /// The vendor of `partner`, or the failure to report when none is configured.
    pub fn get(&self, partner: &str) -> Result<&Arc<V>, Failure> {
        self.vendors.get(partner).ok_or_else(|| {
            Failure::new(
                FailureClass::ManualRepair,
                "unknown_partner",
                format!("no partner {partner} is configured"),
            )
        })
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.vendors.keys()
    }

    /// Runs one call with an effect through the effect ledger (see the module doc): the partner's
    /// effect happens at most once whatever crashes, redeliveries or timeouts happen. `send` makes the
    /// call; `recover` asks the partner what became of an earlier call that may have happened.
    /// `Ok(Err(failure))` always means the partner has no live case for this key.
    pub async fn effect<'a, T, S, R>(
        &self,
        ledger: &Ledger,
        intent: Intent<'_>,
        reference: impl Fn(&T) -> Option<String>,
        send: S,
        recover: R,
    ) -> Result<Result<T, Failure>, HandlerError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        S: Fn(Arc<dyn Progress>) -> BoxFuture<'a, Result<T, VendorError>>,
        R: Fn(Arc<dyn Progress>) -> BoxFuture<'a, Result<Recovery<T>, VendorError>>,
    {
        // The partner's turn first: a message waiting for it is parked, holding no connection.
        let turn = self.caller.turn(intent.partner).await;
        let lock = ledger.lock(intent.key).await?;
        let result = self
            .effect_locked(ledger, &intent, turn, reference, send, recover)
            .await;
        lock.release().await;
        result
    }

    /// [`Partners::effect`] with the key's lock held.
    async fn effect_locked<'a, T, S, R>(
        &self,
        ledger: &Ledger,
        intent: &Intent<'_>,
        turn: Turn,
        reference: impl Fn(&T) -> Option<String>,
        send: S,
        recover: R,
    ) -> Result<Result<T, Failure>, HandlerError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        S: Fn(Arc<dyn Progress>) -> BoxFuture<'a, Result<T, VendorError>>,
        R: Fn(Arc<dyn Progress>) -> BoxFuture<'a, Result<Recovery<T>, VendorError>>,
    {
        let (key, partner) = (intent.key, intent.partner);
        let transient = HandlerError::from;
        let prior = ledger.take(intent).await.map_err(transient)?;
        let fresh = prior == Prior::Fresh;
        let checkpoint = match &prior {
            Prior::Unresolved { checkpoint } => checkpoint.clone(),
            _ => serde_json::Value::Null,
        };
        let progress = ledger_progress(ledger, key, &checkpoint);
        let unknown = |why: &str| outcome_unknown(partner, why);
        match prior {
            Prior::Answered(v) => {
                tracing::info!(partner, key, "replaying the partner's recorded answer");
                return serde_json::from_value(v)
                    .map(Ok)
                    .map_err(|e| HandlerError::Permanent(format!("recorded answer unreadable: {e}")));
            }
            Prior::ManualRepair => return Ok(Err(unknown("an earlier attempt is awaiting manual repair"))),
            Prior::Unresolved { .. } => {
                match self
                    .resolve(ledger, key, partner, &reference, &recover, &progress)
                    .await?
                {
                    Resolved::Done(r) => return Ok(r),
                    Resolved::SendAgain => {}
                }
            }
            Prior::Fresh | Prior::NotExecuted => {}
        }
        // An ambiguous send is resolved by asking; when the partner confirms nothing happened (or
        // de-duplicates a re-send) it is sent again. A partner that keeps us in doubt through every
        // round leaves the step to an operator: never a failover, never a blind re-send.
        let mut pause = Duration::from_millis(500);
        let mut doubt = String::new();
        // The turn taken before the lock is the first send's; later sends wait holding the lock.
        let mut turn = Some(turn);
        for round in 0..AMBIGUOUS_ROUNDS {
            // A fresh intent was committed with its first send counted.
            if round > 0 || !fresh {
                ledger.sending(key).await.map_err(transient)?;
            }
            let pacing = turn.take().map_or(Pacing::Hold, Pacing::Taken);
            match self
                .caller
                .call_paced(partner, intent.operation, pacing, || send(progress.clone()))
                .await
            {
                Ok(v) => {
                    chaos_point("after_partner_call");
                    self.record_answer(ledger, key, &reference, &v).await?;
                    return Ok(Ok(v));
                }
                Err(CallError::CircuitOpen) => {
                    ledger.not_executed(key, "circuit open").await.map_err(transient)?;
                    return Ok(Err(Failure::new(
                        FailureClass::Transient,
                        "circuit_open",
                        format!("{partner} is failing; circuit open"),
                    )));
                }
                Err(CallError::Failed(VendorError::Ambiguous(why))) => {
                    tracing::warn!(partner, key, %why, "outcome unknown; asking the partner");
                    ledger.in_doubt(key, &why).await.map_err(transient)?;
                    doubt = why;
                    // Give the partner a moment to finish what it may still be doing.
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    match self
                        .resolve(ledger, key, partner, &reference, &recover, &progress)
                        .await?
                    {
                        Resolved::Done(r) => return Ok(r),
                        Resolved::SendAgain => continue,
                    }
                }
                Err(CallError::Failed(e)) => {
                    ledger.not_executed(key, &e.to_string()).await.map_err(transient)?;
                    return Ok(Err(e.to_failure()));
                }
            }
        }
        let f = unknown(&format!("still in doubt after {AMBIGUOUS_ROUNDS} rounds ({doubt})"));
        ledger.manual_repair(key, &f.message).await.map_err(transient)?;
        Ok(Err(f))
    }

    async fn record_answer<T: serde::Serialize>(
        &self,
        ledger: &Ledger,
        key: &str,
        reference: &impl Fn(&T) -> Option<String>,
        v: &T,
    ) -> Result<(), HandlerError> {
        let outcome = serde_json::to_value(v).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        ledger
            .answered(key, reference(v).as_deref(), &outcome)
            .await
            .map_err(HandlerError::from)
    }

    async fn resolve<'a, T, R>(
        &self,
        ledger: &Ledger,
        key: &str,
        partner: &str,
        reference: &impl Fn(&T) -> Option<String>,
        recover: &R,
        progress: &Arc<dyn Progress>,
    ) -> Result<Resolved<T>, HandlerError>
    where
        T: serde::Serialize,
        R: Fn(Arc<dyn Progress>) -> BoxFuture<'a, Result<Recovery<T>, VendorError>>,
    {
        let found = self
            .caller
            .call_paced(partner, "recover", Pacing::Hold, || recover(progress.clone()))
            .await;
        let label = match &found {
            Ok(Recovery::Found(_)) => "found",
            Ok(Recovery::SendAgain) => "send_again",
            Ok(Recovery::Unknowable) => "unknowable",
            Err(_) => "failed",
        };
        self.caller.count_recovery(partner, label);
        tracing::info!(
            partner,
            key,
            result = label,
            "resolved an earlier call that may have happened"
        );
        match found {
            Ok(Recovery::Found(v)) => {
                self.record_answer(ledger, key, reference, &v).await?;
                Ok(Resolved::Done(Ok(v)))
            }
            Ok(Recovery::SendAgain) => Ok(Resolved::SendAgain),
            // The partner cannot tell, or refuses the question itself (it says the case we recorded
            // does not exist, or the query is invalid): asking again gets the same answer, and
            // sending again could do the effect twice. An operator finds out, with the evidence.
            Ok(Recovery::Unknowable) => to_operator(ledger, key, partner, "the partner offers no way to know").await,
            Err(CallError::Failed(VendorError::Permanent(why))) => {
                let why = format!("the partner refuses to say what happened: {why}");
                to_operator(ledger, key, partner, &why).await
            }
            // Nothing is sent while we cannot tell: the request waits (redelivered in place).
            Err(CallError::CircuitOpen) => Err(HandlerError::Transient(format!(
                "{partner}: cannot ask about an earlier call (circuit open)"
            ))),
            Err(CallError::Failed(e)) => Err(HandlerError::Transient(format!(
                "{partner}: cannot ask about an earlier call: {e}"
            ))),
        }
    }

    /// What became of an earlier call under `key` that was left in doubt (the orchestrator asks
    /// after a while): the partner is asked by our reference; nothing is ever sent. `NotExecuted`
    /// only when nothing was committed under the key, or the partner says it has nothing for it:
    /// only then may the step go elsewhere.
    pub async fn recheck<'a, T, R>(
        &self,
        ledger: &Ledger,
        key: &str,
        partner: &str,
        reference: impl Fn(&T) -> Option<String>,
        recover: R,
    ) -> Result<Recheck<T>, HandlerError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        R: Fn(Arc<dyn Progress>) -> BoxFuture<'a, Result<Recovery<T>, VendorError>>,
    {
        let lock = ledger.lock(key).await?;
        let result = self.recheck_locked(ledger, key, partner, reference, recover).await;
        lock.release().await;
        result
    }

    async fn recheck_locked<'a, T, R>(
        &self,
        ledger: &Ledger,
        key: &str,
        partner: &str,
        reference: impl Fn(&T) -> Option<String>,
        recover: R,
    ) -> Result<Recheck<T>, HandlerError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        R: Fn(Arc<dyn Progress>) -> BoxFuture<'a, Result<Recovery<T>, VendorError>>,
    {
        let checkpoint = match ledger.prior(key).await.map_err(HandlerError::from)? {
            None | Some(Prior::NotExecuted) => return Ok(Recheck::NotExecuted),
            Some(Prior::Fresh) => return Ok(Recheck::NotExecuted),
            Some(Prior::Answered(v)) => {
                // Asked again about an effect that happened: the partner's current word on it (a
                // payout still processing may have been paid since), or the recorded answer.
                let recorded: T = serde_json::from_value(v)
                    .map_err(|e| HandlerError::Permanent(format!("recorded answer unreadable: {e}")))?;
                let checkpoint = ledger
                    .checkpoint_of(key)
                    .await
                    .map_err(HandlerError::from)?
                    .unwrap_or(serde_json::Value::Null);
                let progress = ledger_progress(ledger, key, &checkpoint);
                let now = self
                    .caller
                    .call_paced(partner, "status", Pacing::Hold, || recover(progress.clone()))
                    .await;
                return Ok(Recheck::Found(match now {
                    Ok(Recovery::Found(v)) => {
                        self.record_answer(ledger, key, &reference, &v).await?;
                        v
                    }
                    _ => recorded,
                }));
            }
            Some(Prior::Unresolved { checkpoint }) => checkpoint,
            Some(Prior::ManualRepair) => ledger
                .checkpoint_of(key)
                .await
                .map_err(HandlerError::from)?
                .unwrap_or(serde_json::Value::Null),
        };
        let progress = ledger_progress(ledger, key, &checkpoint);
        let found = self
            .caller
            .call_paced(partner, "recover", Pacing::Hold, || recover(progress.clone()))
            .await;
        let label = match &found {
            Ok(Recovery::Found(_)) => "found",
            Ok(Recovery::SendAgain) => "not_executed",
            Ok(Recovery::Unknowable) => "unknowable",
            Err(_) => "failed",
        };
        self.caller.count_recovery(partner, label);
        tracing::info!(partner, key, result = label, "status query for a call left in doubt");
        let transient = HandlerError::from;
        match found {
            Ok(Recovery::Found(v)) => {
                self.record_answer(ledger, key, &reference, &v).await?;
                Ok(Recheck::Found(v))
            }
            Ok(Recovery::SendAgain) => {
                ledger
                    .not_executed(key, "the partner has nothing for our reference")
                    .await
                    .map_err(transient)?;
                Ok(Recheck::NotExecuted)
            }
            Ok(Recovery::Unknowable) => {
                let why = "the partner offers no way to know";
                ledger.manual_repair(key, why).await.map_err(transient)?;
                Ok(Recheck::Unknown(why.to_string()))
            }
            Err(CallError::CircuitOpen) => Ok(Recheck::Unknown(format!("{partner}: circuit open"))),
            Err(CallError::Failed(e)) => Ok(Recheck::Unknown(format!("{partner}: {e}"))),
        }
    }

    /// Calls `partner` with retries, circuit breaker and rate limit; a failure comes back in
    /// canonical terms. For reads only: calls with effects go through [`Partners::effect`].
    pub async fn call<T, F, Fut>(&self, partner: &str, operation: &str, f: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, VendorError>>,
    {
        match self.caller.call(partner, operation, f).await {
            Ok(v) => Ok(v),
            Err(CallError::CircuitOpen) => Err(Failure::new(
                FailureClass::Transient,
                "circuit_open",
                format!("{partner} is failing; circuit open"),
            )),
            Err(CallError::Failed(e)) => Err(e.to_failure()),
        }
    }
}

/// Sends (each after asking the partner about the one before) before an ambiguous effect goes to
/// manual repair: with pauses of 0.5, 1, 2 and 4 s, about 8 s of a partner answering only in doubt.
const AMBIGUOUS_ROUNDS: u32 = 4;

/// The failure of an effect whose outcome is unknown: an operator must find out (never a failover).
fn outcome_unknown(partner: &str, why: &str) -> Failure {
    Failure::new(
        FailureClass::ManualRepair,
        "provider_outcome_unknown",
        format!("{partner}: {why}; whether the call took effect is unknown"),
    )
}

enum Resolved<T> {
    Done(Result<T, Failure>),
    SendAgain,
}

/// Writes an adapter's result event in the inbox transaction.
pub async fn emit(
    conn: &mut PgConnection,
    outbox: &Outbox,
    topic: &str,
    record: &EventRecord,
) -> Result<(), HandlerError> {
    outbox
        .enqueue(conn, topic, record)
        .await
        .map_err(|e| HandlerError::Transient(e.to_string()))?;
    Ok(())
}

/// Leaves a call whose outcome cannot be known to an operator (`manual_repair`, with `why`).
async fn to_operator<T>(ledger: &Ledger, key: &str, partner: &str, why: &str) -> Result<Resolved<T>, HandlerError> {
    let f = outcome_unknown(partner, why);
    ledger
        .manual_repair(key, &f.message)
        .await
        .map_err(HandlerError::from)?;
    Ok(Resolved::Done(Err(f)))
}
