//! Our side of each payout, and the findings: all SQL of the service.

use sqlx::{PgConnection, PgPool, Row};
use switchyard_model::events::payouts::PayoutCompleted;
use switchyard_runtime::HandlerError;

type R<T> = Result<T, HandlerError>;

/// A payout as the mesh believes it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ours {
    pub flow_id: String,
    pub tenant_id: String,
    pub payout_id: String,
    pub partner: Option<String>,
    pub provider_reference: Option<String>,
    pub status: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub reversed: bool,
    /// While in flight: the flow's last step (routed, processing, in_doubt, manual_repair).
    pub step: Option<String>,
    /// The last four characters of the payee's account, when its request was seen.
    pub counterparty: Option<String>,
    pub first_seen: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

pub async fn in_flight(
    conn: &mut PgConnection,
    flow_id: &str,
    tenant: &str,
    payout_id: &str,
    partner: &str,
    step: &str,
) -> R<()> {
    sqlx::query(
        "INSERT INTO payouts_seen (flow_id, tenant_id, payout_id, partner, status, step) \
         VALUES ($1, $2, $3, $4, 'in_flight', $5) \
         ON CONFLICT (flow_id) DO UPDATE SET partner = EXCLUDED.partner, step = EXCLUDED.step, updated_at = now() \
         WHERE payouts_seen.status = 'in_flight'",
    )
    .bind(flow_id)
    .bind(tenant)
    .bind(payout_id)
    .bind(partner)
    .bind(step)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn completed(conn: &mut PgConnection, c: &PayoutCompleted, status: &str) -> R<()> {
    sqlx::query(
        "INSERT INTO payouts_seen (flow_id, tenant_id, payout_id, partner, provider_reference, status, amount_minor, currency) \
         VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6, $7, $8) \
         ON CONFLICT (flow_id) DO UPDATE SET partner = COALESCE(EXCLUDED.partner, payouts_seen.partner), \
         provider_reference = COALESCE(EXCLUDED.provider_reference, payouts_seen.provider_reference), \
         status = CASE WHEN payouts_seen.reversed THEN payouts_seen.status ELSE EXCLUDED.status END, \
         amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency, step = NULL, updated_at = now()",
    )
    .bind(&c.envelope.flow_id)
    .bind(&c.envelope.tenant_id)
    .bind(&c.payout_id)
    .bind(&c.partner)
    .bind(&c.provider_reference)
    .bind(status)
    .bind(c.amount.amount_minor)
    .bind(&c.amount.currency)
    .execute(&mut *conn)
    .await?;
    // A doubt a run told the flow about is closed once the flow says how it ended.
    sqlx::query(
        "UPDATE findings SET state = 'resolved', owner = COALESCE(owner, 'reconciliation'), resolution = 'corrected', \
         resolved_at = now() WHERE kind = 'in_doubt_resolved' AND internal_reference = $1 AND state <> 'resolved'",
    )
    .bind(&c.envelope.flow_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn reversed(conn: &mut PgConnection, flow_id: &str) -> R<()> {
    sqlx::query("UPDATE payouts_seen SET status = 'returned', reversed = true, updated_at = now() WHERE flow_id = $1")
        .bind(flow_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// `SELECT` of our side of each payout as [`ours`] reads it (the payee's last four characters
/// joined in), then `$rest`: one static statement each.
macro_rules! select_ours {
    ($before:literal, $rest:literal) => {
        concat!(
            $before,
            "SELECT flow_id, tenant_id, payout_id, partner, provider_reference, status, amount_minor, currency, \
             reversed, step, last_four, first_seen, updated_at FROM payouts_seen p LEFT JOIN counterparties USING (flow_id) ",
            $rest
        )
    };
}

fn ours(r: &sqlx::postgres::PgRow) -> Ours {
    Ours {
        flow_id: r.get("flow_id"),
        tenant_id: r.get("tenant_id"),
        payout_id: r.get("payout_id"),
        partner: r.get("partner"),
        provider_reference: r.get("provider_reference"),
        status: r.get("status"),
        amount_minor: r.get("amount_minor"),
        currency: r.get("currency"),
        reversed: r.get("reversed"),
        step: r.get("step"),
        counterparty: r.get("last_four"),
        first_seen: r.get("first_seen"),
        updated_at: r.get("updated_at"),
    }
}

/// Our payouts at `partner` first seen since `since`.
pub async fn ours_at(
    pool: &PgPool,
    partner: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Ours>, sqlx::Error> {
    let rows = sqlx::query(select_ours!("", "WHERE partner = $1 AND first_seen >= $2"))
        .bind(partner)
        .bind(since)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(ours).collect())
}

/// Our payouts named by the partner's references or by flow ids (any partner, any age).
pub async fn ours_named(pool: &PgPool, references: &[String], flows: &[String]) -> Result<Vec<Ours>, sqlx::Error> {
    let rows = sqlx::query(select_ours!(
        "",
        "WHERE provider_reference = ANY($1) OR flow_id = ANY($2)"
    ))
    .bind(references)
    .bind(flows)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(ours).collect())
}

/// A report line naming nothing of ours, as rule matching looks for candidates: its currency, its
/// amount plus the tolerance (`ceiling`), and the window around its date.
pub struct Unnamed {
    pub currency: String,
    pub ceiling: i64,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
}

/// Our settled payouts at `partner` that no report line accounts for yet and could account for
/// one of `lines`: same currency, completed in its window, amount up to its ceiling (the
/// `per_line` largest of them per line; a batch of more is never searched).
pub async fn unmatched(
    pool: &PgPool,
    partner: &str,
    lines: &[Unnamed],
    per_line: i64,
) -> Result<Vec<Ours>, sqlx::Error> {
    let currencies: Vec<&str> = lines.iter().map(|l| l.currency.as_str()).collect();
    let ceilings: Vec<i64> = lines.iter().map(|l| l.ceiling).collect();
    let froms: Vec<_> = lines.iter().map(|l| l.from).collect();
    let tos: Vec<_> = lines.iter().map(|l| l.to).collect();
    let rows = sqlx::query(select_ours!(
        "SELECT DISTINCT ON (c.flow_id) c.* FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], \
             $5::timestamptz[]) AS l(currency, ceiling, f, t) CROSS JOIN LATERAL (",
        "WHERE p.partner = $1 AND p.status = 'settled' AND p.currency = l.currency AND p.amount_minor <= l.ceiling \
             AND p.updated_at BETWEEN l.f AND l.t \
             AND NOT EXISTS (SELECT 1 FROM line_matches m WHERE m.flow_id = p.flow_id) \
             ORDER BY p.amount_minor DESC LIMIT $6) c"
    ))
    .bind(partner)
    .bind(&currencies)
    .bind(&ceilings)
    .bind(&froms)
    .bind(&tos)
    .bind(per_line)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(ours).collect())
}

/// The payee's account (last four characters) of a payout as it was asked for.
pub async fn counterparty(conn: &mut PgConnection, flow_id: &str, last_four: &str) -> R<()> {
    sqlx::query("INSERT INTO counterparties (flow_id, last_four) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(flow_id)
        .bind(last_four)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records which payouts a report's lines account for.
pub async fn matched(
    conn: &mut PgConnection,
    partner: &str,
    sha: &str,
    matches: &[crate::matching::Matched],
) -> Result<(), sqlx::Error> {
    if matches.is_empty() {
        return Ok(());
    }
    let lines: Vec<i32> = matches
        .iter()
        .map(|m| i32::try_from(m.line).unwrap_or(i32::MAX))
        .collect();
    let flows: Vec<&str> = matches.iter().map(|m| m.flow_id.as_str()).collect();
    let rules: Vec<&str> = matches.iter().map(|m| m.rule).collect();
    sqlx::query(
        "INSERT INTO line_matches (partner, file_sha256, line, flow_id, rule) \
         SELECT $1, $2, l, f, r FROM unnest($3::int[], $4::text[], $5::text[]) AS u(l, f, r) ON CONFLICT DO NOTHING",
    )
    .bind(partner)
    .bind(sha)
    .bind(&lines)
    .bind(&flows)
    .bind(&rules)
    .execute(conn)
    .await?;
    Ok(())
}

/// A vendor case as the mesh knows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseSeen {
    pub domain: String,
    pub partner: String,
    pub provider_reference: String,
    pub flow_id: Option<String>,
    pub tenant_id: Option<String>,
    pub request_key: Option<String>,
    pub status: String,
    pub shadow: bool,
    pub first_seen: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A request the mesh sent a partner for a case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseRequest {
    pub request_key: String,
    pub partner: String,
    pub flow_id: String,
    pub requested_at: chrono::DateTime<chrono::Utc>,
}

pub async fn case_requested(
    conn: &mut PgConnection,
    domain: &str,
    key: &str,
    partner: &str,
    flow_id: &str,
    tenant: &str,
    shadow: bool,
) -> R<()> {
    sqlx::query(
        "INSERT INTO case_requests (request_key, domain, partner, flow_id, tenant_id, shadow) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(key)
    .bind(domain)
    .bind(partner)
    .bind(flow_id)
    .bind(tenant)
    .bind(shadow)
    .execute(conn)
    .await?;
    Ok(())
}

/// What a case is known to be: from a result (its envelope names the flow, tenant and request key;
/// `shadow` as the result says) or a webhook (none). A final status (approved, rejected) is never
/// replaced by a passing one.
pub async fn case_seen(
    conn: &mut PgConnection,
    domain: &str,
    partner: &str,
    reference: &str,
    status: &str,
    result: Option<(&switchyard_model::Envelope, bool)>,
) -> R<()> {
    let (flow_id, tenant, key, shadow) = match result {
        Some((e, s)) => (
            Some(e.flow_id.as_str()),
            Some(e.tenant_id.as_str()),
            e.idempotency_key.as_deref(),
            s,
        ),
        None => (None, None, None, false),
    };
    sqlx::query(
        "INSERT INTO cases_seen (domain, partner, provider_reference, flow_id, tenant_id, request_key, status, shadow) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (partner, provider_reference) DO UPDATE SET \
         flow_id = COALESCE(EXCLUDED.flow_id, cases_seen.flow_id), tenant_id = COALESCE(EXCLUDED.tenant_id, cases_seen.tenant_id), \
         request_key = COALESCE(EXCLUDED.request_key, cases_seen.request_key), \
         shadow = cases_seen.shadow OR EXCLUDED.shadow, \
         status = CASE WHEN cases_seen.status IN ('approved', 'rejected') AND EXCLUDED.status NOT IN ('approved', 'rejected') \
           THEN cases_seen.status ELSE EXCLUDED.status END, updated_at = now()",
    )
    .bind(domain)
    .bind(partner)
    .bind(reference)
    .bind(flow_id)
    .bind(tenant)
    .bind(key)
    .bind(status)
    .bind(shadow)
    .execute(conn)
    .await?;
    Ok(())
}

/// `SELECT` of a case as [`case_seen_of`] reads it, then `$rest`.
macro_rules! select_cases {
    ($rest:literal) => {
        concat!(
            "SELECT domain, partner, provider_reference, flow_id, tenant_id, request_key, status, shadow, first_seen, \
             updated_at FROM cases_seen ",
            $rest
        )
    };
}

fn case_seen_of(r: &sqlx::postgres::PgRow) -> CaseSeen {
    CaseSeen {
        domain: r.get("domain"),
        partner: r.get("partner"),
        provider_reference: r.get("provider_reference"),
        flow_id: r.get("flow_id"),
        tenant_id: r.get("tenant_id"),
        request_key: r.get("request_key"),
        status: r.get("status"),
        shadow: r.get("shadow"),
        first_seen: r.get("first_seen"),
        updated_at: r.get("updated_at"),
    }
}

/// Our cases at `partner` first seen since `since`, and those the partner's records name (by its
/// reference), whatever their age.
pub async fn cases_at(
    pool: &PgPool,
    partner: &str,
    since: chrono::DateTime<chrono::Utc>,
    references: &[String],
) -> Result<Vec<CaseSeen>, sqlx::Error> {
    let rows = sqlx::query(select_cases!(
        "WHERE partner = $1 AND (first_seen >= $2 OR provider_reference = ANY($3))"
    ))
    .bind(partner)
    .bind(since)
    .bind(references)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(case_seen_of).collect())
}

/// Our cases at `partner` (with a flow) first seen between `since` and `before` that no run has
/// found in agreement with the partner yet, oldest first, at most `limit`.
pub async fn unverified_cases(
    pool: &PgPool,
    partner: &str,
    since: chrono::DateTime<chrono::Utc>,
    before: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> Result<Vec<CaseSeen>, sqlx::Error> {
    let rows = sqlx::query(select_cases!(
        "WHERE partner = $1 AND flow_id IS NOT NULL AND verified_at IS NULL \
             AND first_seen BETWEEN $2 AND $3 ORDER BY first_seen LIMIT $4"
    ))
    .bind(partner)
    .bind(since)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(case_seen_of).collect())
}

/// Cases found in agreement with their partner: not read back again.
pub async fn verified(pool: &PgPool, partner: &str, references: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE cases_seen SET verified_at = now() WHERE partner = $1 AND provider_reference = ANY($2)")
        .bind(partner)
        .bind(references)
        .execute(pool)
        .await?;
    Ok(())
}

/// Our requests to `partner` named by these keys.
pub async fn requests_named(pool: &PgPool, partner: &str, keys: &[String]) -> Result<Vec<CaseRequest>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT request_key, partner, flow_id, requested_at FROM case_requests WHERE partner = $1 AND request_key = ANY($2)",
    )
    .bind(partner)
    .bind(keys)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| CaseRequest {
            request_key: r.get("request_key"),
            partner: r.get("partner"),
            flow_id: r.get("flow_id"),
            requested_at: r.get("requested_at"),
        })
        .collect())
}

/// A finding as a run states it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Found {
    pub kind: switchyard_model::events::reconciliation::FindingKind,
    /// payouts, kyc, aml.
    pub domain: &'static str,
    pub partner: String,
    pub internal_reference: Option<String>,
    pub provider_reference: Option<String>,
    pub detail: String,
    pub currency: Option<String>,
    pub amount_at_risk: Option<i64>,
    pub expected_minor: Option<i64>,
    pub provider_minor: Option<i64>,
    pub evidence: serde_json::Value,
    /// The one automatic action: tell the flow of a payout it holds in doubt what the partner's
    /// record says (`ResolvePayout`), once, with the finding.
    pub resolve: Option<Resolve>,
}

/// What a `ResolvePayout` carries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resolve {
    pub tenant_id: String,
    pub payout_id: String,
    pub status: switchyard_model::events::payouts::PayoutStatus,
    pub amount: switchyard_model::events::common::Money,
}

impl Found {
    /// Its identity: the same disagreement found again is the same finding.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}",
            self.kind.as_str(),
            self.partner,
            self.provider_reference
                .as_deref()
                .or(self.internal_reference.as_deref())
                .unwrap_or("")
        )
    }
}

/// Records a finding; true when it is new (first found by this run).
pub async fn record(conn: &mut PgConnection, f: &Found, run: i64) -> Result<bool, sqlx::Error> {
    let (inserted,): (bool,) = sqlx::query_as(
        "INSERT INTO findings (fingerprint, kind, domain, partner, internal_reference, provider_reference, detail, \
         currency, amount_at_risk, evidence, first_run) VALUES ($1, $2, $11, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (fingerprint) DO UPDATE SET last_seen = now() RETURNING (xmax = 0)",
    )
    .bind(f.fingerprint())
    .bind(f.kind.as_str())
    .bind(&f.partner)
    .bind(&f.internal_reference)
    .bind(&f.provider_reference)
    .bind(&f.detail)
    .bind(&f.currency)
    .bind(f.amount_at_risk)
    .bind(&f.evidence)
    .bind(run)
    .bind(f.domain)
    .fetch_one(conn)
    .await?;
    Ok(inserted)
}

pub async fn start_run(pool: &PgPool, dry_run: bool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("INSERT INTO recon_runs (dry_run) VALUES ($1) RETURNING id")
        .bind(dry_run)
        .fetch_one(pool)
        .await
}

pub async fn finish_run(pool: &PgPool, run: i64, summary: &serde_json::Value) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE recon_runs SET finished_at = now(), summary = $2 WHERE id = $1")
        .bind(run)
        .bind(summary)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn findings(
    pool: &PgPool,
    state: Option<&str>,
    kind: Option<&str>,
) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, kind, domain, partner, internal_reference, provider_reference, detail, currency, amount_at_risk, evidence, \
         state, owner, resolution, first_seen, last_seen, first_run, \
         extract(epoch FROM now() - first_seen)::float8 AS age_seconds FROM findings \
         WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2) ORDER BY id",
    )
    .bind(state)
    .bind(kind)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.get::<i64, _>("id"), "kind": r.get::<String, _>("kind"), "domain": r.get::<String, _>("domain"),
                "partner": r.get::<String, _>("partner"),
                "internal_reference": r.get::<Option<String>, _>("internal_reference"),
                "provider_reference": r.get::<Option<String>, _>("provider_reference"),
                "detail": r.get::<String, _>("detail"), "currency": r.get::<Option<String>, _>("currency"),
                "amount_at_risk": r.get::<Option<i64>, _>("amount_at_risk"),
                "evidence": r.get::<serde_json::Value, _>("evidence"), "state": r.get::<String, _>("state"),
                "owner": r.get::<Option<String>, _>("owner"), "resolution": r.get::<Option<String>, _>("resolution"),
                "first_seen": r.get::<chrono::DateTime<chrono::Utc>, _>("first_seen"),
                "last_seen": r.get::<chrono::DateTime<chrono::Utc>, _>("last_seen"),
                "first_run": r.get::<i64, _>("first_run"), "age_seconds": r.get::<f64, _>("age_seconds"),
            })
        })
        .collect())
}

pub async fn acknowledge(pool: &PgPool, id: i64, by: &str) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("UPDATE findings SET state = 'acknowledged', owner = $2 WHERE id = $1 AND state = 'open'")
            .bind(id)
            .bind(by)
            .execute(pool)
            .await?
            .rows_affected()
            == 1,
    )
}

pub async fn resolve(pool: &PgPool, id: i64, by: &str, resolution: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE findings SET state = 'resolved', owner = COALESCE(owner, $2), resolution = $3, resolved_at = now() \
         WHERE id = $1 AND state <> 'resolved'",
    )
    .bind(id)
    .bind(by)
    .bind(resolution)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}
