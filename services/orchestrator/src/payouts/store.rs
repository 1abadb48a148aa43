//! The payout row, references, parked notices, timers and velocity: all SQL of the payout flow.

use sqlx::{PgConnection, Row};
use switchyard_model::events::{common::Money, fraud::Channel, payouts::Beneficiary};
use switchyard_runtime::HandlerError;

use super::state::{Notice, State, Timer};
use crate::routing::Velocity;

type R<T> = Result<T, HandlerError>;

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

/// What the payout is: fixed at its start (payout data: never logged).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub customer_id: String,
    pub amount: Money,
    pub beneficiary: Beneficiary,
    pub rail: Option<String>,
    pub reference: Option<String>,
    pub country: Option<String>,
    pub priority: Option<String>,
    pub channel: Option<Channel>,
    pub device_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub flow_id: String,
    pub tenant_id: String,
    pub payout_id: String,
    pub correlation_id: String,
    pub order: Order,
    pub beneficiary_key: String,
    pub attempt: i32,
    pub flags: Vec<String>,
    pub rescores: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub use switchyard_model::events::payouts::flow_id;

/// Inserts a new payout (its state written by [`save`] in the same transaction); false when the
/// tenant's payout id exists (nothing written: a payout is executed at most once per id).
pub async fn insert(conn: &mut PgConnection, flow: &Flow) -> R<bool> {
    let inserted = sqlx::query(
        "INSERT INTO payouts (flow_id, tenant_id, payout_id, correlation_id, command, currency, amount_minor, \
         beneficiary_key, state_name, state, trace_parent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'starting', '{}', $9) ON CONFLICT (flow_id) DO NOTHING",
    )
    .bind(&flow.flow_id)
    .bind(&flow.tenant_id)
    .bind(&flow.payout_id)
    .bind(&flow.correlation_id)
    .bind(serde_json::to_value(&flow.order).map_err(perm)?)
    .bind(&flow.order.amount.currency)
    .bind(flow.order.amount.amount_minor)
    .bind(&flow.beneficiary_key)
    .bind(switchyard_runtime::headers::current_traceparent())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// SHA-256 (hex) of the beneficiary's account, computed by PostgreSQL: what velocity and fraud
/// partners see instead of the account.
pub async fn beneficiary_key(conn: &mut PgConnection, b: &Beneficiary) -> R<String> {
    let text = format!(
        "{:?}:{}:{}",
        b.account.scheme,
        b.account.value.replace(' ', "").to_uppercase(),
        b.account.bank_code.as_deref().unwrap_or("")
    );
    Ok(
        sqlx::query_scalar("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')")
            .bind(text)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Locks and loads a payout.
pub async fn load(conn: &mut PgConnection, flow_id: &str) -> R<Option<(Flow, State)>> {
    let row = sqlx::query(
        "SELECT flow_id, tenant_id, payout_id, correlation_id, command, beneficiary_key, state, attempt, flags, \
         rescores, created_at FROM payouts WHERE flow_id = $1 FOR UPDATE",
    )
    .bind(flow_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let flow = Flow {
        flow_id: r.get("flow_id"),
        tenant_id: r.get("tenant_id"),
        payout_id: r.get("payout_id"),
        correlation_id: r.get("correlation_id"),
        order: serde_json::from_value(r.get("command")).map_err(perm)?,
        beneficiary_key: r.get("beneficiary_key"),
        attempt: r.get("attempt"),
        flags: r.get("flags"),
        rescores: r.get("rescores"),
        created_at: r.get("created_at"),
    };
    let state: State = serde_json::from_value(r.get("state")).map_err(perm)?;
    Ok(Some((flow, state)))
}

/// What one message changes besides the state.
#[derive(Debug, Default)]
pub struct Changes {
    pub history: Vec<(&'static str, serde_json::Value)>,
    /// Timers to arm (true) or clear (false), with the delay to arm them after.
    pub timers: Vec<(Timer, bool, std::time::Duration)>,
}

impl Changes {
    pub fn note(&mut self, event: &'static str, detail: serde_json::Value) {
        self.history.push((event, detail));
    }
}

fn timer_name(t: Timer) -> &'static str {
    match t {
        Timer::StatusCheck => "status_check",
        Timer::Poll => "poll",
        Timer::Rescore => "rescore",
    }
}

pub fn timer_of(name: &str) -> Option<Timer> {
    match name {
        "status_check" => Some(Timer::StatusCheck),
        "poll" => Some(Timer::Poll),
        "rescore" => Some(Timer::Rescore),
        _ => None,
    }
}

/// Writes the state, attempt, flags and history, and arms or clears timers.
pub async fn save(conn: &mut PgConnection, flow: &Flow, state: &State, changes: &Changes) -> R<()> {
    let (events, details): (Vec<&str>, Vec<&serde_json::Value>) = changes.history.iter().map(|(e, d)| (*e, d)).unzip();
    let terminal = matches!(state, State::Done { .. } | State::Settled { .. });
    sqlx::query(
        "WITH history AS (INSERT INTO flow_history (flow_id, event, detail) \
           SELECT $1, e, d FROM unnest($7::text[], $8::jsonb[]) WITH ORDINALITY AS h (e, d, n) ORDER BY n) \
         UPDATE payouts SET state_name = $2, state = $3, attempt = $4, flags = $5, rescores = $9, updated_at = now(), \
         completed_at = CASE WHEN $6 THEN COALESCE(completed_at, now()) ELSE NULL END WHERE flow_id = $1",
    )
    .bind(&flow.flow_id)
    .bind(state.name())
    .bind(serde_json::to_value(state).map_err(perm)?)
    .bind(flow.attempt)
    .bind(&flow.flags)
    .bind(terminal)
    .bind(events)
    .bind(details)
    .bind(flow.rescores)
    .execute(&mut *conn)
    .await?;
    for (timer, arm, after) in &changes.timers {
        if *arm {
            sqlx::query(
                "INSERT INTO payout_timers (flow_id, kind, due_at) VALUES ($1, $2, now() + make_interval(secs => $3)) \
                 ON CONFLICT (flow_id, kind) DO UPDATE SET due_at = EXCLUDED.due_at",
            )
            .bind(&flow.flow_id)
            .bind(timer_name(*timer))
            .bind(after.as_secs_f64())
            .execute(&mut *conn)
            .await?;
        } else {
            sqlx::query("DELETE FROM payout_timers WHERE flow_id = $1 AND kind = $2")
                .bind(&flow.flow_id)
                .bind(timer_name(*timer))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Takes one due timer whose payout is not being worked on (several orchestrators share them).
/// Payouts whose outcome is not known, by state (`in_doubt`, `manual_repair`) and partner: how many,
/// and the age in seconds of the oldest (since it was started).
pub async fn unsettled(pool: &sqlx::PgPool) -> Result<Vec<(String, String, i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT state_name, coalesce(state #>> '{live,partner}', ''), count(*), \
                extract(epoch FROM now() - min(created_at))::float8 \
         FROM payouts WHERE state_name IN ('in_doubt', 'manual_repair') GROUP BY 1, 2",
    )
    .fetch_all(pool)
    .await
}

pub async fn take_due_timer(conn: &mut PgConnection) -> R<Option<(String, Timer)>> {
    let due: Vec<(String, String)> =
        sqlx::query_as("SELECT flow_id, kind FROM payout_timers WHERE due_at <= now() ORDER BY due_at LIMIT 16")
            .fetch_all(&mut *conn)
            .await?;
    for (flow_id, kind) in due {
        let locked: Option<i32> = sqlx::query_scalar("SELECT 1 FROM payouts WHERE flow_id = $1 FOR UPDATE SKIP LOCKED")
            .bind(&flow_id)
            .fetch_optional(&mut *conn)
            .await?;
        if locked.is_none() {
            continue;
        }
        let taken = sqlx::query("DELETE FROM payout_timers WHERE flow_id = $1 AND kind = $2 AND due_at <= now()")
            .bind(&flow_id)
            .bind(&kind)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if taken > 0
            && let Some(t) = timer_of(&kind)
        {
            return Ok(Some((flow_id, t)));
        }
    }
    Ok(None)
}

pub async fn remember_reference(conn: &mut PgConnection, partner: &str, reference: &str, flow_id: &str) -> R<()> {
    sqlx::query(
        "INSERT INTO payout_refs (partner, provider_reference, flow_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(partner)
    .bind(reference)
    .bind(flow_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Serialises everything about one partner reference (its notices and the answer naming it).
pub async fn lock_reference(conn: &mut PgConnection, partner: &str, reference: &str) -> R<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 9127))")
        .bind(partner)
        .bind(reference)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn flow_of_reference(conn: &mut PgConnection, partner: &str, reference: &str) -> R<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT flow_id FROM payout_refs WHERE partner = $1 AND provider_reference = $2")
            .bind(partner)
            .bind(reference)
            .fetch_optional(conn)
            .await?,
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ParkedNotice {
    status: switchyard_model::events::payouts::PayoutStatus,
    at_ms: i64,
    reason: Option<String>,
}

pub async fn park(conn: &mut PgConnection, event_id: uuid::Uuid, n: &Notice) -> R<()> {
    let v = serde_json::to_value(ParkedNotice {
        status: n.status,
        at_ms: n.at_ms,
        reason: n.reason.clone(),
    })
    .map_err(perm)?;
    sqlx::query(
        "INSERT INTO payout_parked (event_id, partner, provider_reference, notice) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(event_id)
    .bind(&n.partner)
    .bind(&n.reference)
    .bind(v)
    .execute(conn)
    .await?;
    Ok(())
}

/// The notices parked for a reference, taken (deleted), oldest vendor time first.
pub async fn unpark(conn: &mut PgConnection, partner: &str, reference: &str) -> R<Vec<Notice>> {
    let rows: Vec<serde_json::Value> =
        sqlx::query_scalar("DELETE FROM payout_parked WHERE partner = $1 AND provider_reference = $2 RETURNING notice")
            .bind(partner)
            .bind(reference)
            .fetch_all(conn)
            .await?;
    let mut notices: Vec<Notice> = rows
        .into_iter()
        .filter_map(|v| serde_json::from_value::<ParkedNotice>(v).ok())
        .map(|p| Notice {
            partner: partner.to_string(),
            reference: reference.to_string(),
            status: p.status,
            at_ms: p.at_ms,
            reason: p.reason,
        })
        .collect();
    notices.sort_by_key(|n| n.at_ms);
    Ok(notices)
}

/// What a payout took from the velocity limits (given back if nothing is paid).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Reserved {
    pub window_start: chrono::DateTime<chrono::Utc>,
    pub scopes: Vec<String>,
    pub currency: String,
    pub amount_minor: i64,
}

/// Checks the payout against the velocity limits and, within them, takes its share (rows locked in
/// a fixed order: beneficiary, then tenant). Err: the limit it would break.
pub async fn reserve_velocity(
    conn: &mut PgConnection,
    v: &Velocity,
    flow: &Flow,
) -> R<Result<Option<Reserved>, String>> {
    let currency = &flow.order.amount.currency;
    let amount = flow.order.amount.amount_minor;
    let beneficiary = format!("b:{}:{}", flow.tenant_id, flow.beneficiary_key);
    let tenant = format!("t:{}", flow.tenant_id);
    let b_amount = v.per_beneficiary_amount_minor.get(currency).copied();
    let t_amount = v.per_tenant_amount_minor.get(currency).copied();
    if v.per_beneficiary_count.is_none() && b_amount.is_none() && t_amount.is_none() {
        return Ok(Ok(None));
    }
    let window_start: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT to_timestamp(floor(extract(epoch FROM now()) / ($1 * 3600)) * ($1 * 3600))")
            .bind(v.window_hours.max(1) as f64)
            .fetch_one(&mut *conn)
            .await?;
    let mut totals = Vec::new();
    for scope in [&beneficiary, &tenant] {
        sqlx::query(
            "INSERT INTO payout_velocity (scope, window_start, currency) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(scope)
        .bind(window_start)
        .bind(currency)
        .execute(&mut *conn)
        .await?;
        let (count, sum): (i64, i64) = sqlx::query_as(
            "SELECT count, amount_minor FROM payout_velocity WHERE scope = $1 AND window_start = $2 AND currency = $3 FOR UPDATE",
        )
        .bind(scope)
        .bind(window_start)
        .bind(currency)
        .fetch_one(&mut *conn)
        .await?;
        totals.push((count, sum));
    }
    let hours = v.window_hours;
    if let Some(max) = v.per_beneficiary_count
        && totals[0].0 + 1 > max
    {
        return Ok(Err(format!(
            "the beneficiary has had {max} payouts in the last {hours}-hour window"
        )));
    }
    if let Some(max) = b_amount
        && totals[0].1 + amount > max
    {
        return Ok(Err(format!(
            "the beneficiary would receive more than {max} {currency} minor units in a {hours}-hour window"
        )));
    }
    if let Some(max) = t_amount
        && totals[1].1 + amount > max
    {
        return Ok(Err(format!(
            "the tenant would pay out more than {max} {currency} minor units in a {hours}-hour window"
        )));
    }
    let scopes = vec![beneficiary, tenant];
    shift_velocity(conn, &scopes, window_start, currency, 1, amount).await?;
    let reserved = Reserved {
        window_start,
        scopes,
        currency: currency.clone(),
        amount_minor: amount,
    };
    sqlx::query("UPDATE payouts SET velocity = $2 WHERE flow_id = $1")
        .bind(&flow.flow_id)
        .bind(serde_json::to_value(&reserved).map_err(perm)?)
        .execute(&mut *conn)
        .await?;
    Ok(Ok(Some(reserved)))
}

async fn shift_velocity(
    conn: &mut PgConnection,
    scopes: &[String],
    window_start: chrono::DateTime<chrono::Utc>,
    currency: &str,
    count: i64,
    amount: i64,
) -> R<()> {
    for scope in scopes {
        sqlx::query(
            "UPDATE payout_velocity SET count = count + $4, amount_minor = amount_minor + $5 \
             WHERE scope = $1 AND window_start = $2 AND currency = $3",
        )
        .bind(scope)
        .bind(window_start)
        .bind(currency)
        .bind(count)
        .bind(amount)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Gives back what the payout took (once: the reservation is cleared with it).
pub async fn release_velocity(conn: &mut PgConnection, flow_id: &str) -> R<()> {
    let taken: Option<Option<serde_json::Value>> = sqlx::query_scalar(
        "UPDATE payouts p SET velocity = NULL FROM (SELECT velocity FROM payouts WHERE flow_id = $1) old \
                            WHERE p.flow_id = $1 RETURNING old.velocity",
    )
    .bind(flow_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(Some(v)) = taken {
        let r: Reserved = serde_json::from_value(v).map_err(perm)?;
        shift_velocity(conn, &r.scopes, r.window_start, &r.currency, -1, -r.amount_minor).await?;
    }
    Ok(())
}
