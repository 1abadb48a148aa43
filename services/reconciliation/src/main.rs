//! The reconciliation service: what partners say happened against what the mesh believes, for
//! payouts and for onboarding's KYC cases.
//!
//! * Onboarding: the KYC requests, results and partners' webhooks (`kyc.requests.v1`,
//!   `kyc.results.v1`, `kyc.provider-events.v1`) against each KYC partner's own list of cases
//!   (`[[kyc_partners]]`; see `cases.rs`): a case no flow knows, a request executed twice, a case
//!   cleared at the partner and rejected by us (or the reverse), a case of ours the partner lacks.
//!   AML screenings (`aml.results.v1`) are read back from the partners that keep them
//!   (`[[aml_partners]]`): one it does not keep, or with hits there while we hold it clear
//!   (or the reverse).
//!
//! * Our side: `payouts.outcomes.v1` (never another service's database) into `payouts_seen`, and
//!   from `payouts.commands.v1` the last four characters of each payee's account.
//! * The partners' side: each payout partner's own list of payouts, pulled on a schedule
//!   (`reconciliation.interval_seconds`) or on demand (`POST /runs`, with `dry_run`).
//! * Matching: by the partner's reference, then by ours (the flow id the partner keeps); amounts
//!   compared as integers in minor units, exactly or within a partner's tolerance. A report line
//!   that names no payout of ours is matched by rules: amount, currency, date window, the payee's
//!   account breaking ties (one to one); several lines of one payout that add up to it are a split
//!   (one to many); one line that pays several of ours exactly is a batch (many to one). Which line
//!   accounts for which payout is kept (`line_matches`).
//! * The one automatic action: a payout the flow holds in doubt that the partner's list shows is
//!   settled from that record through the flow's own command (`ResolvePayout`).
//! * Findings: `missing_internally`, `missing_at_provider`, `status_mismatch`, `amount_mismatch`,
//!   `duplicate_execution`, each with evidence (the partner's record and ours), a lifecycle (open →
//!   acknowledged → resolved with a reason) and published once on `reconciliation.findings.v1`. A
//!   finding never changes money state. Runs are idempotent: a disagreement already found is seen
//!   again, not found again.
//!
//! Configuration beyond the runtime's: `[[partners]]` (the payout partners, as the payouts adapter's),
//! `[reconciliation] interval_seconds` (0: only on demand; default 300), `window_hours` (how far back
//! each run looks; 48), `grace_seconds` (how old a record must be before its absence counts: our
//! outcome and the partner's webhook may still be on their way; 120), `reports_dir` (where partners
//! drop settlement reports, `<dir>/<partner id>/*.csv`, each partner in its own format; a file is
//! reconciled once by its content, whatever its name), `date_window_days` (rule matching: how far
//! a line's date may be from our payout's completion; 3), `[reconciliation.tolerance.<partner>]
//! fixed_minor, bps` (how far its amounts may differ from ours: fees, FX; exact by default).
//!
//! Its API (`POST /runs`, `GET /findings`, `POST /findings/{id}/acknowledge|resolve`) is an
//! operators' API: it requires the admin token (`admin.token`), as every `/admin` route does.

mod cases;
mod matching;
mod store;

use std::{process::ExitCode, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use switchyard_model::events::{
    Event,
    aml::AmlScreeningResult,
    kyc::{KycProviderEvent, KycVerificationRequested, KycVerificationResult},
    payouts::{InitiatePayout, PayoutCompleted, PayoutReversed, PayoutStatus, PayoutStepChanged, flow_id},
};
use switchyard_runtime::{Handler, HandlerError, Incoming, Outbox, ServiceConfig, provider::idempotency_key, service};
use switchyard_vendors::{
    adapter::Partners,
    aml::AmlVendor,
    kyc::KycVendor,
    payouts::{PayoutVendor, last_four},
    registry,
    registry::PartnerConnection,
};

const SERVICE: &str = "reconciliation";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ReconConfig {
    interval_seconds: u64,
    window_hours: f64,
    grace_seconds: f64,
    /// Where partners drop settlement reports (`<dir>/<partner id>/*.csv`); relative to the config file.
    reports_dir: Option<String>,
    /// Per partner id: how far its amounts may differ from ours (fees, FX) and still match.
    tolerance: std::collections::HashMap<String, matching::Tolerance>,
    /// How far a report line's date may be from our payout's completion for rule matching.
    date_window_days: f64,
}

impl Default for ReconConfig {
    fn default() -> Self {
        ReconConfig {
            interval_seconds: 300,
            window_hours: 48.0,
            grace_seconds: 120.0,
            reports_dir: None,
            tolerance: Default::default(),
            date_window_days: 3.0,
        }
    }
}

impl App {
    /// The onboarding partners whose cases and screenings a run reads.
    fn onboarding(&self) -> matching::Onboarding<'_> {
        matching::Onboarding {
            kyc: &self.kyc,
            aml: &self.aml,
            openbanking: &self.openbanking,
        }
    }

    /// A run's options: the configuration's, `window_hours` and `grace_seconds` overridden if given.
    fn options(&self, dry_run: bool, window_hours: Option<f64>, grace_seconds: Option<f64>) -> matching::Options {
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        matching::Options {
            reports_dir: self.reports_dir.clone(),
            dry_run,
            window: secs(window_hours.unwrap_or(self.cfg.window_hours) * 3600.0),
            grace: secs(grace_seconds.unwrap_or(self.cfg.grace_seconds)),
            tolerance: self.cfg.tolerance.clone(),
            date_window: secs(self.cfg.date_window_days * 86_400.0),
        }
    }
}

/// Our side, from the payout outcomes.
struct Outcomes;

impl Handler for Outcomes {
    type Prepared = ();

    async fn prepare(&self, _: &Incoming) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, conn: &mut PgConnection, msg: &Incoming, (): ()) -> Result<(), HandlerError> {
        let perm = |e: switchyard_model::SchemaError| HandlerError::Permanent(e.to_string());
        let e = &msg.event;
        if let Some(s) = e.as_event::<PayoutStepChanged>() {
            let s = s.map_err(perm)?;
            if matches!(s.step.as_str(), "routed" | "processing" | "in_doubt" | "manual_repair")
                && let Some(partner) = s.partner.filter(|p| !p.starts_with("fraud"))
            {
                let e = &s.envelope;
                store::in_flight(conn, &e.flow_id, &e.tenant_id, &s.payout_id, &partner, &s.step).await?;
            }
        } else if let Some(c) = e.as_event::<PayoutCompleted>() {
            let c = c.map_err(perm)?;
            let status = match c.status {
                PayoutStatus::Settled => "settled",
                PayoutStatus::Returned => "returned",
                _ => "failed",
            };
            store::completed(conn, &c, status).await?;
        } else if let Some(r) = e.as_event::<PayoutReversed>() {
            let r = r.map_err(perm)?;
            store::reversed(conn, &r.envelope.flow_id).await?;
        } else if let Some(r) = e.as_event::<KycVerificationRequested>() {
            let r = r.map_err(perm)?;
            let (env, key) = (&r.envelope, idempotency_key(r.envelope.event_id));
            store::case_requested(conn, "kyc", &key, &r.partner, &env.flow_id, &env.tenant_id, r.shadow).await?;
        } else if let Some(r) = e.as_event::<KycVerificationResult>() {
            let r = r.map_err(perm)?;
            if let Some(reference) = &r.provider_reference {
                let status = cases::status_name(r.status);
                store::case_seen(
                    conn,
                    "kyc",
                    &r.partner,
                    reference,
                    status,
                    Some((&r.envelope, r.shadow)),
                )
                .await?;
            }
        } else if let Some(r) = e.as_event::<AmlScreeningResult>() {
            let r = r.map_err(perm)?;
            if let Some(reference) = &r.provider_reference {
                let status = cases::screening_status_name(r.status);
                store::case_seen(
                    conn,
                    "aml",
                    &r.partner,
                    reference,
                    status,
                    Some((&r.envelope, r.shadow)),
                )
                .await?;
            }
        } else if let Some(c) = e.as_event::<switchyard_model::events::openbanking::OpenBankingCompleted>() {
            // Our side of a bank payment: where its outcome says it stands.
            let c = c.map_err(perm)?;
            if let (Some(_), Some(reference)) = (&c.payment_id, &c.provider_reference) {
                let status = serde_json::to_value(c.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_lowercase))
                    .unwrap_or_default();
                store::case_seen(
                    conn,
                    "openbanking",
                    &c.partner,
                    reference,
                    &status,
                    Some((&c.envelope, false)),
                )
                .await?;
            }
        } else if let Some(p) = e.as_event::<KycProviderEvent>() {
            let p = p.map_err(perm)?;
            let status = cases::status_name(p.status);
            store::case_seen(conn, "kyc", &p.partner, &p.provider_reference, status, None).await?;
        } else if let Some(i) = e.as_event::<InitiatePayout>() {
            // The payee as asked for: its account's last four characters, never more.
            let i = i.map_err(perm)?;
            if let Some(last) = last_four(&i.beneficiary.account.value) {
                let flow = flow_id(&i.envelope.tenant_id, &i.payout_id);
                store::counterparty(conn, &flow, &last).await?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RunLabels {
    result: String,
}

/// `switchyard_reconciliation_findings_open{kind}` (not resolved), `..._findings_new_total{kind}`,
/// `..._runs_total{result}`, `..._value_at_risk_minor{currency}` (open findings),
/// `..._oldest_open_seconds{kind}` (the age of the oldest finding not resolved: one open past its
/// age is what an operator is alerted on).
#[derive(Clone, Default)]
struct ReconMetrics {
    open: Family<KindLabels, Gauge>,
    oldest: Family<KindLabels, Gauge>,
    new: Family<KindLabels, Counter>,
    runs: Family<RunLabels, Counter>,
    at_risk: Family<KindLabels, Gauge>,
}

impl ReconMetrics {
    fn register(m: &switchyard_runtime::Metrics) -> Self {
        let r = ReconMetrics::default();
        m.register(
            "reconciliation_findings_open",
            "Findings not resolved, by kind",
            r.open.clone(),
        );
        m.register(
            "reconciliation_findings_new",
            "Findings first found, by kind",
            r.new.clone(),
        );
        m.register("reconciliation_runs", "Reconciliation runs, by result", r.runs.clone());
        m.register(
            "reconciliation_oldest_open_seconds",
            "Age of the oldest finding not resolved, by kind",
            r.oldest.clone(),
        );
        m.register(
            "reconciliation_value_at_risk_minor",
            "Amount at risk in open findings, minor units, by currency (label kind holds the currency)",
            r.at_risk.clone(),
        );
        r
    }

    async fn observe(&self, pool: &PgPool, summary: Option<&serde_json::Value>) {
        let result = match summary {
            None => "failed",
            Some(s) if s["partners_unavailable"].as_object().is_some_and(|u| !u.is_empty()) => "partial",
            Some(_) => "ok",
        };
        self.runs.get_or_create(&RunLabels { result: result.into() }).inc();
        let open: Result<Vec<(String, i64, i64)>, _> = sqlx::query_as(
            "SELECT kind, count(*), extract(epoch FROM now() - min(first_seen))::bigint FROM findings \
             WHERE state <> 'resolved' GROUP BY kind",
        )
        .fetch_all(pool)
        .await;
        if let Ok(rows) = open {
            self.open.clear();
            self.oldest.clear();
            for (kind, n, age) in rows {
                self.open.get_or_create(&KindLabels { kind: kind.clone() }).set(n);
                self.oldest.get_or_create(&KindLabels { kind }).set(age);
            }
        }
        let risk: Result<Vec<(String, i64)>, _> = sqlx::query_as(
            "SELECT currency, COALESCE(sum(amount_at_risk), 0)::bigint FROM findings \
             WHERE state <> 'resolved' AND currency IS NOT NULL GROUP BY currency",
        )
        .fetch_all(pool)
        .await;
        if let Ok(rows) = risk {
            self.at_risk.clear();
            for (currency, v) in rows {
                self.at_risk.get_or_create(&KindLabels { kind: currency }).set(v);
            }
        }
        if let Some(new) = summary.and_then(|s| s["new_by_kind"].as_object()) {
            for (kind, n) in new {
                self.new
                    .get_or_create(&KindLabels { kind: kind.clone() })
                    .inc_by(n.as_u64().unwrap_or(0));
            }
        }
    }
}

#[derive(Clone)]
struct App {
    metrics: ReconMetrics,
    pool: PgPool,
    outbox: Outbox,
    partners: Arc<Partners<dyn PayoutVendor>>,
    /// KYC partners whose cases are reconciled (`[[kyc_partners]]`, read only).
    kyc: Arc<std::collections::BTreeMap<String, Arc<dyn KycVendor>>>,
    /// AML partners whose screenings are read back (`[[aml_partners]]`, read only).
    aml: Arc<std::collections::BTreeMap<String, Arc<dyn AmlVendor>>>,
    /// Open-banking providers whose bank payments are read back (`[[openbanking_partners]]`, read
    /// only).
    openbanking: Arc<std::collections::BTreeMap<String, Arc<dyn switchyard_vendors::openbanking::OpenBankingVendor>>>,
    cfg: ReconConfig,
    reports_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RunRequest {
    dry_run: bool,
    window_hours: Option<f64>,
    grace_seconds: Option<f64>,
}

async fn run_now(
    State(app): State<App>,
    body: Option<Json<RunRequest>>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let req = body.map(|b| b.0).unwrap_or_default();
    let opts = app.options(req.dry_run, req.window_hours, req.grace_seconds);
    let result = matching::run(&app.pool, &app.outbox, &app.partners, &app.onboarding(), &opts).await;
    app.metrics.observe(&app.pool, result.as_ref().ok()).await;
    result
        .map(Json)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

#[derive(Debug, Default, Deserialize)]
struct FindingsQuery {
    state: Option<String>,
    kind: Option<String>,
}

async fn list_findings(
    State(app): State<App>,
    Query(q): Query<FindingsQuery>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    store::findings(&app.pool, q.state.as_deref(), q.kind.as_deref())
        .await
        .map(|f| Json(serde_json::json!({"findings": f})))
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

#[derive(Debug, Deserialize)]
struct Decision {
    by: String,
    /// For `resolve`: matched_late | written_off | corrected.
    resolution: Option<String>,
}

async fn decide(
    State(app): State<App>,
    Path((id, action)): Path<(i64, String)>,
    Json(d): Json<Decision>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let bad = |m: &str| (StatusCode::UNPROCESSABLE_ENTITY, m.to_string());
    if d.by.trim().is_empty() {
        return Err(bad("`by` (who decides) is required"));
    }
    let changed = match action.as_str() {
        "acknowledge" => store::acknowledge(&app.pool, id, &d.by).await,
        "resolve" => {
            let r = d.resolution.as_deref().unwrap_or_default();
            if !["matched_late", "written_off", "corrected"].contains(&r) {
                return Err(bad("`resolution` must be matched_late, written_off or corrected"));
            }
            store::resolve(&app.pool, id, &d.by, r).await
        }
        _ => return Err((StatusCode::NOT_FOUND, format!("no action {action}"))),
    }
    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if !changed {
        return Err((
            StatusCode::CONFLICT,
            format!("finding {id} does not exist or is already resolved"),
        ));
    }
    Ok(Json(serde_json::json!({"id": id, "action": action})))
}

/// What the service forgets, and when (`retention.<name>_hours`): `payouts_seen` (400 days after
/// its last change), `recon_runs` (400 days), `resolved_findings` (400 days after resolution; open
/// and acknowledged ones are kept however old), `report_files` (400 days: a file older than that
/// dropped again would be reconciled again), `counterparties`, `line_matches`, `cases_seen` and
/// `case_requests` (400 days).
fn retention_rules() -> Vec<switchyard_runtime::retention::Rule> {
    use switchyard_runtime::retention::Rule;
    const DAYS_400: u64 = 400 * 24;
    vec![
        Rule::hours(
            "payouts_seen",
            "payouts_seen",
            "updated_at < now() - make_interval(secs => $1)",
            DAYS_400,
        ),
        Rule::hours(
            "recon_runs",
            "recon_runs",
            "started_at < now() - make_interval(secs => $1)",
            DAYS_400,
        ),
        Rule::hours(
            "resolved_findings",
            "findings",
            "state = 'resolved' AND resolved_at < now() - make_interval(secs => $1)",
            DAYS_400,
        ),
        Rule::hours(
            "report_files",
            "report_files",
            "processed_at < now() - make_interval(secs => $1)",
            DAYS_400,
        ),
        Rule::hours(
            "counterparties",
            "counterparties",
            "recorded_at < now() - make_interval(secs => $1)",
            DAYS_400,
        ),
        Rule::hours(
            "line_matches",
            "line_matches",
            "matched_at < now() - make_interval(secs => $1)",
            DAYS_400,
        ),
        Rule::hours(
            "cases_seen",
            "cases_seen",
            "updated_at < now() - make_interval(secs => $1)",
            DAYS_400,
        ),
        Rule::hours(
            "case_requests",
            "case_requests",
            "requested_at < now() - make_interval(secs => $1)",
            DAYS_400,
        ),
    ]
}

#[tokio::main]
async fn main() -> ExitCode {
    service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let rt = service::boot(SERVICE).await?;
    if !rt.migrate(sqlx::migrate!("./migrations")).await? {
        return Ok(());
    }
    let file = rt.config_file.as_deref();
    let cfg: ReconConfig = ServiceConfig::section(file, "reconciliation", ReconConfig::default())?;
    let partners = Partners::load(file, &rt.metrics, &rt.pool, registry::payouts).map_err(anyhow::Error::msg)?;
    let mut kyc = std::collections::BTreeMap::new();
    for c in ServiceConfig::section::<Vec<PartnerConnection>>(file, "kyc_partners", Vec::new())? {
        let vendor = registry::kyc(&c).map_err(|e| anyhow::anyhow!("configuration field `{e}`"))?;
        kyc.insert(c.id.clone(), vendor);
    }
    let mut aml = std::collections::BTreeMap::new();
    for c in ServiceConfig::section::<Vec<PartnerConnection>>(file, "aml_partners", Vec::new())? {
        let vendor = registry::aml(&c).map_err(|e| anyhow::anyhow!("configuration field `{e}`"))?;
        aml.insert(c.id.clone(), vendor);
    }
    let mut openbanking = std::collections::BTreeMap::new();
    for c in ServiceConfig::section::<Vec<PartnerConnection>>(file, "openbanking_partners", Vec::new())? {
        let vendor = registry::openbanking(&c).map_err(|e| anyhow::anyhow!("configuration field `{e}`"))?;
        openbanking.insert(c.id.clone(), vendor);
    }
    let reports_dir =
        cfg.reports_dir
            .as_ref()
            .map(|d| match (std::path::PathBuf::from(d), file.and_then(|f| f.parent())) {
                (p, Some(dir)) if p.is_relative() => dir.join(p),
                (p, _) => p,
            });
    let app = App {
        metrics: ReconMetrics::register(&rt.metrics),
        reports_dir,
        pool: rt.pool.clone(),
        outbox: rt.outbox.clone(),
        partners: Arc::new(partners),
        kyc: Arc::new(kyc),
        aml: Arc::new(aml),
        openbanking: Arc::new(openbanking),
        cfg: cfg.clone(),
    };
    let topics = [
        PayoutCompleted::TOPIC,
        InitiatePayout::TOPIC,
        KycVerificationRequested::TOPIC,
        KycVerificationResult::TOPIC,
        KycProviderEvent::TOPIC,
        AmlScreeningResult::TOPIC,
        switchyard_model::events::openbanking::OpenBankingCompleted::TOPIC,
    ];
    let consumer = rt.consumer(SERVICE, &topics, Outcomes);
    let scheduled = {
        let (app, shutdown) = (app.clone(), rt.shutdown.clone());
        tokio::spawn(async move {
            if app.cfg.interval_seconds == 0 {
                return;
            }
            while shutdown.sleep(Duration::from_secs(app.cfg.interval_seconds)).await {
                let opts = app.options(false, None, None);
                let result = matching::run(&app.pool, &app.outbox, &app.partners, &app.onboarding(), &opts).await;
                app.metrics.observe(&app.pool, result.as_ref().ok()).await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "scheduled reconciliation run failed; next one as planned");
                }
            }
        })
    };
    // Operators' routes: behind the admin token.
    let routes = rt.admin(
        Router::new()
            .route("/runs", post(run_now))
            .route("/findings", get(list_findings))
            .route("/findings/{id}/{action}", post(decide))
            .with_state(app),
    );
    let tasks = vec![
        rt.spawn_relay(),
        rt.spawn_consumer(consumer),
        scheduled,
        rt.spawn_retention(retention_rules())?,
    ];
    rt.serve_until_shutdown(routes, tasks).await
}
