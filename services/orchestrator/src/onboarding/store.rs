//! The flow row, its history and timers: all SQL of the flow engine's shell.

use std::time::Duration;

use sqlx::{PgConnection, Row};
use switchyard_model::events::common::Person;
use switchyard_runtime::HandlerError;

use switchyard_model::events::{kyc::KycStatus, onboarding::OnboardingDecision};

use super::state::{AML_PENDING, Case, KYC_DOCUMENTS, KYC_PENDING, State};

type R<T> = Result<T, HandlerError>;

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

/// What a flow is about: fixed at its start.
#[derive(Debug, Clone)]
pub struct Flow {
    pub flow_id: String,
    pub tenant_id: String,
    pub applicant_id: String,
    pub correlation_id: String,
    pub person: Person,
    pub region: String,
    pub risk_tier: String,
    pub segment: Option<String>,
    pub attempt: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Locks and loads a flow (FOR UPDATE: one message of a flow at a time, whatever the instance).
pub async fn load(conn: &mut PgConnection, flow_id: &str) -> R<Option<(Flow, State)>> {
    let row = sqlx::query(
        "SELECT flow_id, tenant_id, applicant_id, correlation_id, person, region, risk_tier, segment, state, \
         kyc_partner, kyc_reference, kyc_tried, aml_partner, aml_reference, aml_tried, attempt, status_checks, \
         overdue, created_at FROM onboarding_flows WHERE flow_id = $1 FOR UPDATE",
    )
    .bind(flow_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let flow = Flow {
        flow_id: r.get("flow_id"),
        tenant_id: r.get("tenant_id"),
        applicant_id: r.get("applicant_id"),
        correlation_id: r.get("correlation_id"),
        person: serde_json::from_value(r.get("person")).map_err(perm)?,
        region: r.get("region"),
        risk_tier: r.get("risk_tier"),
        segment: r.get("segment"),
        attempt: r.get("attempt"),
        created_at: r.get("created_at"),
    };
    let case = |partner: Option<String>, reference: Option<String>| partner.map(|partner| Case { partner, reference });
    let kyc = case(r.get("kyc_partner"), r.get("kyc_reference"));
    let aml = case(r.get("aml_partner"), r.get("aml_reference"));
    let name: String = r.get("state");
    let missing = |what: &str| perm(format!("flow {flow_id} in {name} has no {what}"));
    let state = match name.as_str() {
        KYC_PENDING | KYC_DOCUMENTS => State::Kyc {
            case: kyc.ok_or_else(|| missing("KYC partner"))?,
            tried: r.get("kyc_tried"),
            documents: name == KYC_DOCUMENTS,
            checks: u32::try_from(r.get::<i32, _>("status_checks")).unwrap_or(0),
            overdue: r.get("overdue"),
        },
        AML_PENDING => State::Aml {
            kyc: kyc.ok_or_else(|| missing("KYC partner"))?,
            case: aml.ok_or_else(|| missing("AML partner"))?,
            tried: r.get("aml_tried"),
        },
        other => State::Decided {
            decision: OnboardingDecision::parse(other)
                .ok_or_else(|| perm(format!("flow {flow_id}: unknown state {other}")))?,
            kyc,
            aml,
        },
    };
    Ok(Some((flow, state)))
}

/// Inserts a new flow, its state to be written by [`save`] in the same transaction; false when a flow
/// with this id exists (nothing written).
pub async fn insert(conn: &mut PgConnection, flow: &Flow) -> R<bool> {
    let inserted = sqlx::query(
        "INSERT INTO onboarding_flows (flow_id, tenant_id, applicant_id, correlation_id, person, region, risk_tier, \
         segment, state, attempt, trace_parent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'starting', 1, $9) \
         ON CONFLICT (flow_id) DO NOTHING",
    )
    .bind(&flow.flow_id)
    .bind(&flow.tenant_id)
    .bind(&flow.applicant_id)
    .bind(&flow.correlation_id)
    .bind(serde_json::to_value(&flow.person).map_err(perm)?)
    .bind(&flow.region)
    .bind(&flow.risk_tier)
    .bind(&flow.segment)
    .bind(switchyard_runtime::headers::current_traceparent())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// What one message changes besides the state, written with it in [`save`]'s one statement.
#[derive(Debug, Default)]
pub struct Changes {
    /// History entries, in order.
    pub history: Vec<(&'static str, serde_json::Value)>,
    /// The decision's reasons and failure class.
    pub decided: Option<(Vec<String>, Option<&'static str>)>,
    /// Failovers made.
    pub failovers: i32,
    /// The flow's timer: None leaves it; Some(None) clears it; Some(Some((state, after))) arms the
    /// flow's one timer for `state` (replacing any other).
    pub timer: Option<Option<(&'static str, Duration)>>,
}

impl Changes {
    pub fn note(&mut self, event: &'static str, detail: serde_json::Value) {
        self.history.push((event, detail));
    }
}

/// Writes a state, with the history, decision and failover count of `changes`, in one statement.
pub async fn save(conn: &mut PgConnection, flow_id: &str, state: &State, attempt: i32, changes: &Changes) -> R<()> {
    let empty = Vec::new();
    let (kyc, kyc_tried, aml, aml_tried, checks, overdue) = match state {
        State::Kyc {
            case,
            tried,
            checks,
            overdue,
            ..
        } => (Some(case), tried, None, &empty, *checks, *overdue),
        State::Aml { kyc, case, tried } => (Some(kyc), &empty, Some(case), tried, 0, false),
        State::Decided { kyc, aml, .. } => (kyc.as_ref(), &empty, aml.as_ref(), &empty, 0, false),
    };
    let (events, details): (Vec<&str>, Vec<&serde_json::Value>) = changes.history.iter().map(|(e, d)| (*e, d)).unzip();
    let (reasons, failure_class) = match &changes.decided {
        Some((reasons, class)) => (Some(reasons), *class),
        None => (None, None),
    };
    let (timer_changes, timer_state, timer_after) = match changes.timer {
        None => (false, None, 0.0),
        Some(None) => (true, None, 0.0),
        Some(Some((state, after))) => (true, Some(state), after.as_secs_f64()),
    };
    sqlx::query(
        "WITH history AS (INSERT INTO flow_history (flow_id, event, detail) \
           SELECT $1, e, d FROM unnest($13::text[], $14::jsonb[]) WITH ORDINALITY AS h (e, d, n) ORDER BY n), \
         cleared AS (DELETE FROM flow_timers WHERE $18 AND flow_id = $1 AND state IS DISTINCT FROM $19::text), \
         armed AS (INSERT INTO flow_timers (flow_id, state, due_at) \
           SELECT $1, $19::text, now() + make_interval(secs => $20) WHERE $19::text IS NOT NULL \
           ON CONFLICT (flow_id, state) DO UPDATE SET due_at = EXCLUDED.due_at) \
         UPDATE onboarding_flows SET state = $2, kyc_partner = $3, kyc_reference = $4, \
         kyc_tried = CASE WHEN cardinality($5::text[]) > 0 THEN $5 ELSE kyc_tried END, \
         aml_partner = $6, aml_reference = $7, \
         aml_tried = CASE WHEN cardinality($8::text[]) > 0 THEN $8 ELSE aml_tried END, \
         status_checks = $9, overdue = $10, attempt = $11, updated_at = now(), \
         completed_at = CASE WHEN $12 THEN COALESCE(completed_at, now()) ELSE NULL END, \
         reasons = COALESCE($15, reasons), \
         failure_class = CASE WHEN $15::text[] IS NULL THEN failure_class ELSE $16 END, \
         failovers = failovers + $17 WHERE flow_id = $1",
    )
    .bind(flow_id)
    .bind(state.name())
    .bind(kyc.map(|c| c.partner.as_str()))
    .bind(kyc.and_then(|c| c.reference.as_deref()))
    .bind(kyc_tried)
    .bind(aml.map(|c| c.partner.as_str()))
    .bind(aml.and_then(|c| c.reference.as_deref()))
    .bind(aml_tried)
    .bind(i32::try_from(checks).unwrap_or(i32::MAX))
    .bind(overdue)
    .bind(attempt)
    .bind(state.is_terminal())
    .bind(events)
    .bind(details)
    .bind(reasons)
    .bind(failure_class)
    .bind(changes.failovers)
    .bind(timer_changes)
    .bind(timer_state)
    .bind(timer_after)
    .execute(conn)
    .await?;
    Ok(())
}

/// Arms the flow's one timer (replacing any other) outside a transition (tests set flows up with it).
#[cfg(test)]
pub async fn set_timer(conn: &mut PgConnection, flow_id: &str, state: &'static str, after: Duration) -> R<()> {
    let Some((flow, current)) = load(conn, flow_id).await? else {
        return Err(perm(format!("no flow {flow_id}")));
    };
    let changes = Changes {
        timer: Some(Some((state, after))),
        ..Changes::default()
    };
    save(conn, flow_id, &current, flow.attempt, &changes).await
}

/// Serialises everything about one partner case in this transaction: parking an event for a case not
/// known yet, and making the case known then draining what was parked. Without it (READ COMMITTED),
/// an event could be parked just after the drain of a transaction that had not seen it, and stay
/// parked forever. Taken before the flow row (the lock order above).
pub async fn lock_case(conn: &mut PgConnection, partner: &str, reference: &str) -> R<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 8117))")
        .bind(partner)
        .bind(reference)
        .execute(conn)
        .await?;
    Ok(())
}

/// Remembers which flow a partner's case belongs to (`shadow`: a shadow partner's case, whose events
/// are recorded and compared, never acted on). A case a vendor reuses for a later flow (one applicant
/// per person) belongs from then on to the latest flow: that is the one waiting for it.
pub async fn remember_reference(
    conn: &mut PgConnection,
    partner: &str,
    reference: &str,
    flow_id: &str,
    shadow: bool,
) -> R<()> {
    sqlx::query(
        "INSERT INTO provider_refs (partner, provider_reference, flow_id, shadow) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (partner, provider_reference) DO UPDATE SET flow_id = EXCLUDED.flow_id, shadow = EXCLUDED.shadow",
    )
    .bind(partner)
    .bind(reference)
    .bind(flow_id)
    .bind(shadow)
    .execute(conn)
    .await?;
    Ok(())
}

/// The flow a partner's case belongs to, and whether it is a shadow case.
pub async fn flow_of_reference(conn: &mut PgConnection, partner: &str, reference: &str) -> R<Option<(String, bool)>> {
    Ok(
        sqlx::query_as("SELECT flow_id, shadow FROM provider_refs WHERE partner = $1 AND provider_reference = $2")
            .bind(partner)
            .bind(reference)
            .fetch_optional(conn)
            .await?,
    )
}

/// Takes the flow's row lock (shadow answers change no state, but are compared under the same lock
/// as the live verdict they are compared with).
pub async fn lock_flow(conn: &mut PgConnection, flow_id: &str) -> R<bool> {
    Ok(
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM onboarding_flows WHERE flow_id = $1 FOR UPDATE")
            .bind(flow_id)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// The live partner's verdict of a step; compares the shadow verdicts already in. Returns
/// `(shadow partner, agrees)` for each comparison made.
pub async fn live_verdict(
    conn: &mut PgConnection,
    flow_id: &str,
    domain: &str,
    verdict: &str,
) -> R<Vec<(String, bool)>> {
    // One round trip: the flow's verdict, and the comparisons it completes.
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH flow AS (UPDATE onboarding_flows SET {}_verdict = $3 WHERE flow_id = $1) \
         UPDATE shadow_results SET live_verdict = $3, agrees = (verdict = $3) \
         WHERE flow_id = $1 AND domain = $2 AND verdict IS NOT NULL AND agrees IS NULL RETURNING partner, agrees",
        if domain == "kyc" { "kyc" } else { "aml" }
    )))
    .bind(flow_id)
    .bind(domain)
    .bind(verdict)
    .fetch_all(conn)
    .await?)
}

/// A shadow partner's final verdict; compared at once when the live verdict is in. Returns whether
/// it agrees, when that is known.
pub async fn shadow_verdict(
    conn: &mut PgConnection,
    flow_id: &str,
    domain: &str,
    partner: &str,
    verdict: &str,
) -> R<Option<bool>> {
    let agrees: Option<Option<bool>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE shadow_results s SET verdict = $4, verdict_at = now(), live_verdict = f.{d}_verdict, \
         agrees = (f.{d}_verdict = $4) FROM onboarding_flows f \
         WHERE s.flow_id = $1 AND s.domain = $2 AND s.partner = $3 AND s.verdict IS NULL AND f.flow_id = s.flow_id \
         RETURNING s.agrees",
        d = if domain == "kyc" { "kyc" } else { "aml" }
    )))
    .bind(flow_id)
    .bind(domain)
    .bind(partner)
    .bind(verdict)
    .fetch_optional(conn)
    .await?;
    Ok(agrees.flatten())
}

/// A partner event that arrived before the result naming its case.
pub async fn park(
    conn: &mut PgConnection,
    event_id: uuid::Uuid,
    partner: &str,
    reference: &str,
    status: &str,
    reasons: &[String],
) -> R<()> {
    sqlx::query(
        "INSERT INTO parked_provider_events (event_id, partner, provider_reference, status, reasons) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(event_id)
    .bind(partner)
    .bind(reference)
    .bind(status)
    .bind(reasons)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn unpark(conn: &mut PgConnection, partner: &str, reference: &str) -> R<Vec<(KycStatus, Vec<String>)>> {
    let rows: Vec<(String, Vec<String>)> = sqlx::query_as(
        "DELETE FROM parked_provider_events WHERE partner = $1 AND provider_reference = $2 RETURNING status, reasons",
    )
    .bind(partner)
    .bind(reference)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(status, reasons)| {
            Ok((
                serde_json::from_value(serde_json::Value::String(status)).map_err(perm)?,
                reasons,
            ))
        })
        .collect()
}

pub async fn record_shadow(
    conn: &mut PgConnection,
    flow_id: &str,
    domain: &str,
    partner: &str,
    status: String,
    reference: Option<&str>,
    detail: serde_json::Value,
) -> R<()> {
    sqlx::query(
        "INSERT INTO shadow_results (flow_id, domain, partner, status, provider_reference, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(flow_id)
    .bind(domain)
    .bind(partner)
    .bind(status)
    .bind(reference)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// What the orchestrator forgets, and when (`retention.<name>_hours`):
/// * `completed_flows` (default 400 days): a flow decided that long ago, with its history, shadow
///   results, partner references and any timer left, children first;
/// * `parked_provider_events` (default 30 days): partner events no flow ever claimed.
pub fn retention_rules() -> Vec<switchyard_runtime::retention::Rule> {
    use switchyard_runtime::retention::Rule;
    const COMPLETED: u64 = 400 * 24;
    const OF_COMPLETED_FLOW: &str =
        "flow_id IN (SELECT flow_id FROM onboarding_flows WHERE completed_at < now() - make_interval(secs => $1))";
    let mut rules: Vec<Rule> = ["flow_history", "shadow_results", "provider_refs", "flow_timers"]
        .into_iter()
        .map(|child| Rule::hours("completed_flows", child, OF_COMPLETED_FLOW, COMPLETED))
        .collect();
    rules.push(Rule::hours(
        "completed_flows",
        "onboarding_flows",
        "completed_at < now() - make_interval(secs => $1)",
        COMPLETED,
    ));
    rules.push(Rule::hours(
        "parked_provider_events",
        "parked_provider_events",
        "parked_at < now() - make_interval(secs => $1)",
        30 * 24,
    ));
    // Payouts: a payout completed (settled, failed, returned) that long ago goes with its history,
    // references and timers; a settled one may still come back within the period.
    const OF_COMPLETED_PAYOUT: &str =
        "flow_id IN (SELECT flow_id FROM payouts WHERE completed_at < now() - make_interval(secs => $1))";
    for child in ["flow_history", "payout_refs", "payout_timers"] {
        rules.push(Rule::hours("completed_payouts", child, OF_COMPLETED_PAYOUT, COMPLETED));
    }
    rules.push(Rule::hours(
        "completed_payouts",
        "payouts",
        "completed_at < now() - make_interval(secs => $1)",
        COMPLETED,
    ));
    rules.push(Rule::hours(
        "completed_payouts",
        "fraud_checks",
        "completed_at < now() - make_interval(secs => $1)",
        COMPLETED,
    ));
    rules.push(Rule::hours(
        "parked_payout_notices",
        "payout_parked",
        "parked_at < now() - make_interval(secs => $1)",
        30 * 24,
    ));
    // Velocity windows long over (longer than any window configured).
    rules.push(Rule::hours(
        "payout_velocity",
        "payout_velocity",
        "window_start < now() - make_interval(secs => $1)",
        31 * 24,
    ));
    rules
}

/// Whether the flow's history has one of `steps` (a step that waits on a person).
pub async fn went_through(conn: &mut PgConnection, flow_id: &str, steps: &[&str]) -> R<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM flow_history WHERE flow_id = $1 AND event = ANY($2))")
            .bind(flow_id)
            .bind(steps)
            .fetch_one(conn)
            .await?,
    )
}

/// The trace context a flow (onboarding or payout) started in, if it was kept.
pub async fn trace_parent(conn: &mut PgConnection, flow_id: &str) -> R<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT trace_parent FROM onboarding_flows WHERE flow_id = $1 \
         UNION ALL SELECT trace_parent FROM payouts WHERE flow_id = $1 LIMIT 1",
    )
    .bind(flow_id)
    .fetch_optional(conn)
    .await?
    .flatten())
}

/// A span for applying a partner's notice to `flow_id`: in the flow's own trace, linked to the
/// notice's (the webhook normalizer's).
pub async fn notice_span(conn: &mut PgConnection, flow_id: &str, partner: &str) -> R<tracing::Span> {
    let span = tracing::info_span!("partner notice", otel.name = %format!("{partner} notice"), flow_id, partner);
    switchyard_runtime::headers::continue_trace(&span, trace_parent(conn, flow_id).await?.as_deref());
    Ok(span)
}
