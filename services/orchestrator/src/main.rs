//! The orchestrator: runs flows as persisted state machines (onboarding: KYC → AML → decision;
//! payouts; card lifecycles),
//! routes each step to a partner by policy (primary, secondary, shadow, rollouts), fails over, and
//! fires step timers.
//!
//! Configuration beyond the runtime's: `routing_file` (the partner catalog and routes, reloaded on
//! change), `timeouts.kyc_seconds` (how long the KYC partner may hold a case before it is asked for
//! the case's status), `timeouts.kyc_documents_seconds` (the same while the applicant owes
//! documents; a case still waiting for them when asked goes to manual review) and
//! `timeouts.max_status_checks` (status answers "still open" before manual review).
//!
//! Payouts: `payouts.in_doubt_seconds` (how long after an answer that left a payout in doubt its
//! partner is asked by our reference, and between questions; default 10), `payouts.max_status_checks`
//! (questions before the payout goes to an operator as `manual_repair`; default 5),
//! `payouts.processing_check_seconds` (how long a payout may be processing at its partner before
//! the partner is asked, and between questions: a lost webhook never leaves it unknown; default 900),
//! `payouts.rescore_seconds` (when a payout paid unscreened under a fail-open route is sent to the
//! fraud partner; default 60) and `payouts.max_rescores` (default 10). Velocity limits, fraud fail
//! modes and payout routing (currency, country, amount, cost or speed) are routing data.

mod admin;
mod cards;
mod onboarding;
mod openbanking;
mod payouts;
mod routing;
mod timers;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use axum::{Json, Router, extract::State, routing::get};
use prometheus_client::metrics::{counter::Counter, family::Family};
use serde::Deserialize;
use switchyard_model::events::{
    Event,
    aml::AmlScreeningResult,
    cards::{CardOperationResult, CardProcessorEvent, RequestCardOperation},
    fraud::{FraudScoreResult, ScoreTransaction},
    kyc::{KycProviderEvent, KycVerificationResult},
    onboarding::StartOnboarding,
    openbanking::{OpenBankingProviderEvent, OpenBankingResult, RequestOpenBanking},
    payouts::{InitiatePayout, PayoutProviderEvent, PayoutResult},
};
use switchyard_runtime::{Handler, HandlerError, Incoming, ServiceConfig, Shutdown, service};

use crate::{
    onboarding::{FlowMetrics, Onboarding, Timeouts},
    routing::{ReloadLabels, Routing},
};

const SERVICE: &str = "orchestrator";

#[derive(Deserialize)]
#[serde(default)]
struct TimeoutConfig {
    kyc_seconds: f64,
    kyc_documents_seconds: f64,
    max_status_checks: u32,
}

#[derive(Deserialize)]
#[serde(default)]
struct PayoutConfig {
    in_doubt_seconds: f64,
    max_status_checks: u32,
    processing_check_seconds: f64,
    rescore_seconds: f64,
    max_rescores: i32,
}

impl Default for PayoutConfig {
    fn default() -> Self {
        PayoutConfig {
            in_doubt_seconds: 10.0,
            max_status_checks: 5,
            processing_check_seconds: 900.0,
            rescore_seconds: 60.0,
            max_rescores: 10,
        }
    }
}

/// Every flow type on one consumer: payouts and standalone scores first, onboarding otherwise.
#[derive(Clone)]
struct Flows {
    onboarding: Onboarding,
    payouts: payouts::Payouts,
    cards: cards::Cards,
    openbanking: openbanking::OpenBanking,
}

impl Handler for Flows {
    type Prepared = ();

    async fn prepare(&self, _: &Incoming) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, conn: &mut sqlx::PgConnection, msg: &Incoming, (): ()) -> Result<(), HandlerError> {
        if self.payouts.handle(conn, msg).await?
            || self.cards.handle(conn, msg).await?
            || self.openbanking.handle(conn, msg).await?
        {
            return Ok(());
        }
        self.onboarding.handle(conn, msg, ()).await
    }
}

/// Cards: `cards.reread_seconds` (how long after a failed read of a card at its processor, made
/// because the processor reported a change of its own, it is read again; doubled after each
/// failure in a row, up to 15 minutes; default 30).
#[derive(Deserialize)]
#[serde(default)]
struct CardsConfig {
    reread_seconds: u64,
}

impl Default for CardsConfig {
    fn default() -> Self {
        CardsConfig { reread_seconds: 30 }
    }
}

/// Open banking: `openbanking.check_seconds` (how long after a payment's answer left it in doubt, or
/// waiting on its customer or bank, it is asked about, and between questions; default 30) and
/// `openbanking.max_status_checks` (questions about a payment in doubt before it goes to an
/// operator; default 5).
#[derive(Deserialize)]
#[serde(default)]
struct OpenBankingConfig {
    check_seconds: f64,
    max_status_checks: u32,
}

impl Default for OpenBankingConfig {
    fn default() -> Self {
        OpenBankingConfig {
            check_seconds: 30.0,
            max_status_checks: 5,
        }
    }
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            kyc_seconds: 60.0,
            kyc_documents_seconds: 600.0,
            max_status_checks: 5,
        }
    }
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
    let routing_file: Option<String> = ServiceConfig::section(file, "routing_file", None)?;
    let routing_file = std::env::var("SWITCHYARD_ROUTING_FILE")
        .ok()
        .or(routing_file)
        .ok_or_else(|| {
            anyhow::anyhow!("configuration field `routing_file`: is required (or SWITCHYARD_ROUTING_FILE)")
        })?;
    let t: TimeoutConfig = ServiceConfig::section(file, "timeouts", TimeoutConfig::default())?;
    // A relative routing file is found beside the config file.
    let routing_file = match (PathBuf::from(&routing_file), file.and_then(|f| f.parent())) {
        (p, Some(dir)) if p.is_relative() => dir.join(p),
        (p, _) => p,
    };
    let reloads: Family<ReloadLabels, Counter> = Family::default();
    rt.metrics
        .register("routing_reloads", "Routing policy reloads by result", reloads.clone());
    let routing = Routing::watch(routing_file, rt.shutdown.clone(), reloads)
        .map_err(|e| anyhow::anyhow!("configuration field `routing_file`: {e}"))?;
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.1));
    let onboarding = Onboarding {
        routing: routing.clone(),
        outbox: rt.outbox.clone(),
        timeouts: Timeouts {
            kyc: secs(t.kyc_seconds),
            kyc_documents: secs(t.kyc_documents_seconds),
            max_status_checks: t.max_status_checks.max(1),
        },
        metrics: FlowMetrics::register(&rt.metrics),
    };
    let p: PayoutConfig = ServiceConfig::section(file, "payouts", PayoutConfig::default())?;
    let payouts = payouts::Payouts::new(
        routing.clone(),
        rt.outbox.clone(),
        payouts::Timing {
            in_doubt: secs(p.in_doubt_seconds),
            max_status_checks: p.max_status_checks.max(1),
            processing_check: secs(p.processing_check_seconds),
            rescore: secs(p.rescore_seconds),
            max_rescores: p.max_rescores.max(0),
        },
        onboarding.metrics.clone(),
        &rt.metrics,
    );
    // Operators' routing overrides are in force before the first flow is routed.
    let follow = admin::follow_overrides(rt.pool.clone(), routing.clone(), rt.shutdown.clone()).await?;
    let cc: CardsConfig = ServiceConfig::section(file, "cards", CardsConfig::default())?;
    let cards = cards::Cards {
        routing: routing.clone(),
        outbox: rt.outbox.clone(),
        reread_after: cc.reread_seconds.max(1),
    };
    let ob: OpenBankingConfig = ServiceConfig::section(file, "openbanking", OpenBankingConfig::default())?;
    let openbanking = openbanking::OpenBanking {
        routing: routing.clone(),
        outbox: rt.outbox.clone(),
        check_after: secs(ob.check_seconds),
        max_checks: ob.max_status_checks.max(1),
    };
    let flows = Flows {
        onboarding,
        payouts,
        cards,
        openbanking,
    };
    let timers = tokio::spawn(fire_timers(rt.pool.clone(), flows.clone(), rt.shutdown.clone()));
    let consumer = rt.consumer(
        SERVICE,
        &[
            StartOnboarding::TOPIC,
            KycVerificationResult::TOPIC,
            KycProviderEvent::TOPIC,
            AmlScreeningResult::TOPIC,
            InitiatePayout::TOPIC,
            PayoutResult::TOPIC,
            PayoutProviderEvent::TOPIC,
            FraudScoreResult::TOPIC,
            ScoreTransaction::TOPIC,
            RequestCardOperation::TOPIC,
            CardOperationResult::TOPIC,
            CardProcessorEvent::TOPIC,
            RequestOpenBanking::TOPIC,
            OpenBankingResult::TOPIC,
            OpenBankingProviderEvent::TOPIC,
        ],
        flows,
    );
    // Operators' routes: behind the admin token.
    let routes = rt.admin(
        Router::new()
            .route("/routing", get(show_routing))
            .with_state(routing.clone())
            .merge(admin::routes(admin::Admin {
                pool: rt.pool.clone(),
                routing,
            }))
            .merge(
                Router::new()
                    .route("/shadow", get(show_shadow))
                    .with_state(rt.pool.clone()),
            ),
    );
    let retention = rt.spawn_retention(onboarding::store::retention_rules())?;
    let unsettled = tokio::spawn(count_unsettled(rt.pool.clone(), &rt.metrics, rt.shutdown.clone()));
    let tasks = vec![
        rt.spawn_relay(),
        rt.spawn_consumer(consumer),
        timers,
        retention,
        unsettled,
        follow,
    ];
    rt.serve_until_shutdown(routes, tasks).await
}

/// The routing policy in force (operators check a reload took effect).
async fn show_routing(State(routing): State<Routing>) -> Json<serde_json::Value> {
    Json(routing_json(&routing.get()))
}

/// A policy as operators read it.
pub(crate) fn routing_json(p: &routing::Policy) -> serde_json::Value {
    serde_json::json!({
        "partners": p.partners.iter().map(|x| serde_json::json!({"id": x.id, "domain": x.domain, "enabled": x.enabled,
            "regions": x.regions, "currencies": x.currencies, "owner": x.owner, "rate_limit_per_second": x.rate_limit_per_second,
            "last_disaster_test": x.last_disaster_test, "known_gaps": x.known_gaps})).collect::<Vec<_>>(),
        "routes": p.routes.iter().map(|r| serde_json::json!({"domain": r.domain, "primary": r.primary, "secondary": r.secondary,
            "shadow": r.shadow, "rollout_percent": r.rollout_percent, "state": format!("{:?}", r.state).to_lowercase(),
            "match": {"tenants": r.matches.tenants, "regions": r.matches.regions, "risk_tiers": r.matches.risk_tiers,
            "segments": r.matches.segments}})).collect::<Vec<_>>(),
    })
}

/// Shadow mode's scorecard: per domain and shadow partner, how many calls were made, how many
/// reached a final verdict, how many were compared with the live verdict, and how many agreed.
async fn show_shadow(State(pool): State<sqlx::PgPool>) -> Result<Json<serde_json::Value>, axum::http::StatusCode> {
    let rows: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT domain, partner, count(*), count(verdict), count(agrees), count(*) FILTER (WHERE agrees) \
         FROM shadow_results GROUP BY domain, partner ORDER BY domain, partner",
    )
    .fetch_all(&pool)
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "shadow scorecard unavailable");
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    })?;
    Ok(Json(
        serde_json::json!({"shadow": rows.iter().map(|(domain, partner, calls, verdicts, compared, agreed)| {
        serde_json::json!({"domain": domain, "partner": partner, "calls": calls, "verdicts": verdicts,
            "compared": compared, "agreed": agreed,
            "agreement_rate": (*compared > 0).then(|| *agreed as f64 / *compared as f64)})
    }).collect::<Vec<_>>()}),
    ))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct UnsettledLabels {
    state: String,
    partner: String,
}

/// Every 15 s: how many payouts are in doubt or left to an operator, and how old the oldest is, per
/// partner (a state and partner with none left reads 0, not its last value).
fn count_unsettled(
    pool: sqlx::PgPool,
    metrics: &switchyard_runtime::Metrics,
    shutdown: Shutdown,
) -> impl std::future::Future<Output = ()> + use<> {
    let count: Family<UnsettledLabels, prometheus_client::metrics::gauge::Gauge> = Family::default();
    let oldest: Family<UnsettledLabels, prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>> =
        Family::default();
    metrics.register(
        "payouts_unsettled",
        "Payouts whose outcome is not known, by state (in_doubt, manual_repair) and partner",
        count.clone(),
    );
    metrics.register(
        "payouts_unsettled_oldest_seconds",
        "Age of the oldest payout in that state at that partner, since it was started",
        oldest.clone(),
    );
    async move {
        let mut seen: Vec<UnsettledLabels> = Vec::new();
        loop {
            match payouts::store::unsettled(&pool).await {
                Ok(rows) => {
                    let now: Vec<UnsettledLabels> = rows
                        .iter()
                        .map(|(state, partner, _, _)| UnsettledLabels {
                            state: state.clone(),
                            partner: partner.clone(),
                        })
                        .collect();
                    for gone in seen.iter().filter(|l| !now.contains(l)) {
                        count.get_or_create(gone).set(0);
                        oldest.get_or_create(gone).set(0.0);
                    }
                    for (labels, (_, _, n, age)) in now.iter().zip(&rows) {
                        count.get_or_create(labels).set(*n);
                        oldest.get_or_create(labels).set(*age);
                    }
                    seen.extend(now.into_iter().filter(|l| !seen.contains(l)).collect::<Vec<_>>());
                }
                Err(e) => tracing::warn!(error = %e, "unsettled payouts not counted"),
            }
            if !shutdown.sleep(Duration::from_secs(15)).await {
                break;
            }
        }
    }
}

/// Fires due step timers, each in its own transaction (several orchestrators share the work).
async fn fire_timers(pool: sqlx::PgPool, flows: Flows, shutdown: Shutdown) {
    while shutdown.sleep(Duration::from_millis(500)).await {
        loop {
            match fire_one(&pool, &flows).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "timer failed; will retry");
                    break;
                }
            }
        }
    }
}

async fn fire_one(pool: &sqlx::PgPool, flows: &Flows) -> Result<bool, HandlerError> {
    let mut tx = pool.begin().await?;
    if let Some(flow_id) = timers::ONBOARDING.take_due(&mut tx).await? {
        flows.onboarding.timed_out(&mut tx, &flow_id).await?;
    } else if let Some((flow_id, timer)) = payouts::store::take_due_timer(&mut tx).await? {
        flows.payouts.timed_out(&mut tx, &flow_id, timer).await?;
    } else if let Some(flow_id) = timers::OPEN_BANKING.take_due(&mut tx).await? {
        flows.openbanking.timed_out(&mut tx, &flow_id).await?;
    } else if let Some(flow_id) = timers::CARDS.take_due(&mut tx).await? {
        flows.cards.timed_out(&mut tx, &flow_id).await?;
    } else {
        return Ok(false);
    }
    tx.commit().await?;
    flows.onboarding.outbox.committed();
    Ok(true)
}
