//! The onboarding flow (KYC → AML → decision) as a functional core in an imperative shell:
//!
//! * [`state`]: the states (each waiting state carries its live case), inputs and effects;
//! * [`transition`]: the pure `step(state, input, routes) -> (state, effects)` (property-tested);
//! * [`store`]: the flow row, history, timers and references (all SQL);
//! * [`effects`]: effects turned into outbox rows, timers and history in the same transaction.
//!
//! This module reads messages and timers into inputs: every change happens in the inbox transaction
//! of the message that caused it (or the timer's own), with the flow's row locked.

pub mod effects;
pub mod state;
pub mod store;
pub mod transition;

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};
use sqlx::PgConnection;
use switchyard_model::{
    Envelope,
    events::{
        aml::{AmlScreeningResult, ScreeningStatus},
        kyc::{KycProviderEvent, KycVerificationResult},
        onboarding::{RiskTier, StartOnboarding},
    },
};
use switchyard_runtime::{Handler, HandlerError, Incoming, Metrics, Outbox};

use self::{
    state::{AmlAnswer, Domain, Input, KycAnswer, Route, Routes, aml_verdict, kyc_verdict},
    store::Flow,
    transition::Limits,
};
use crate::routing::{Routing, Subject};

pub(crate) const SERVICE: &str = "orchestrator";

#[derive(Debug, Clone)]
pub struct Timeouts {
    /// How long the KYC partner may hold a case before we ask it for the case's status.
    pub kyc: Duration,
    /// How long the applicant has to send documents before we ask (and then escalate).
    pub kyc_documents: Duration,
    /// Status queries after which a case the partner still holds goes to manual review.
    pub max_status_checks: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub flow: String,
    pub outcome: String,
    /// `waited` when the flow waited on a person (the applicant's documents, a fraud reviewer),
    /// `straight` otherwise: the latency objective is the mesh's, over straight flows.
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompletionLabels {
    pub flow: String,
    pub outcome: String,
    /// `platform` when the flow failed because no partner could be reached or its answer stayed
    /// unknown (failure class transient or ambiguous): what the success SLO counts against us.
    /// `none` otherwise, a refusal (a partner's, a reviewer's, a rule's) included.
    pub fault: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub domain: String,
    pub from: String,
    pub to: String,
    /// Whose flow was moved: the scorecard answers which tenants a failing partner touched. Tenants
    /// are the bank's own product teams, a bounded set.
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    pub domain: String,
    pub partner: String,
    /// `agree` or `disagree`.
    pub result: String,
}

#[derive(Clone)]
pub struct FlowMetrics {
    pub duration: Family<FlowLabels, Histogram, fn() -> Histogram>,
    pub completed: Family<CompletionLabels, Counter>,
    pub failovers: Family<FailoverLabels, Counter>,
    pub shadow: Family<ShadowLabels, Counter>,
}

fn flow_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.05, 2.0, 14,
    ))
}

impl FlowMetrics {
    pub fn register(m: &Metrics) -> Self {
        let f = FlowMetrics {
            duration: Family::new_with_constructor(flow_histogram as fn() -> Histogram),
            completed: Family::default(),
            failovers: Family::default(),
            shadow: Family::default(),
        };
        m.register(
            "flow_duration_seconds",
            "Time from a flow's start to its decision, by flow type and outcome",
            f.duration.clone(),
        );
        m.register(
            "flows_completed",
            "Flows completed, by flow type, outcome and whose fault a failure was (the success SLI)",
            f.completed.clone(),
        );
        m.register(
            "flow_failovers",
            "Steps moved to another partner, by domain",
            f.failovers.clone(),
        );
        m.register(
            "shadow_comparisons",
            "Shadow partners' final verdicts compared with the live partner's, by result",
            f.shadow.clone(),
        );
        f
    }

    /// Records a flow's completion: its duration since `started` (and whether it `waited` on a
    /// person), and whose fault a failure was.
    pub fn complete(
        &self,
        flow: &str,
        outcome: &str,
        failure: Option<&switchyard_model::events::common::Failure>,
        started: chrono::DateTime<chrono::Utc>,
        waited: bool,
    ) {
        use switchyard_model::events::common::FailureClass;
        let took = (chrono::Utc::now() - started).num_milliseconds().max(0) as f64 / 1000.0;
        let (flow, outcome) = (flow.to_string(), outcome.to_string());
        let fault = match failure.map(|f| f.failure_class) {
            Some(FailureClass::Transient | FailureClass::Ambiguous) => "platform",
            _ => "none",
        };
        self.completed
            .get_or_create(&CompletionLabels {
                flow: flow.clone(),
                outcome: outcome.clone(),
                fault: fault.to_string(),
            })
            .inc();
        let path = if waited { "waited" } else { "straight" }.to_string();
        self.duration
            .get_or_create(&FlowLabels { flow, outcome, path })
            .observe(took);
    }

    /// Counts one comparison of a shadow partner's verdict with the live one.
    pub fn compared(&self, domain: &str, partner: &str, agrees: bool) {
        self.shadow
            .get_or_create(&ShadowLabels {
                domain: domain.to_string(),
                partner: partner.to_string(),
                result: if agrees { "agree" } else { "disagree" }.to_string(),
            })
            .inc();
    }
}

#[derive(Clone)]
pub struct Onboarding {
    pub routing: Routing,
    pub outbox: Outbox,
    pub timeouts: Timeouts,
    pub metrics: FlowMetrics,
}

type R<T> = Result<T, HandlerError>;

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

fn tier(t: RiskTier) -> &'static str {
    match t {
        RiskTier::Low => "LOW",
        RiskTier::Medium => "MEDIUM",
        RiskTier::High => "HIGH",
    }
}

impl Onboarding {
    fn limits(&self) -> Limits {
        Limits {
            max_checks: self.timeouts.max_status_checks,
        }
    }

    /// The routes the policy in force gives this flow.
    fn routes(&self, flow: &Flow) -> Routes {
        let policy = self.routing.get();
        let subject = Subject {
            flow_id: &flow.flow_id,
            tenant: &flow.tenant_id,
            region: &flow.region,
            risk_tier: &flow.risk_tier,
            segment: flow.segment.as_deref(),
            money: None,
            country: None,
            priority: None,
        };
        let route = |domain: &str| {
            policy.decide(domain, &subject).map(|d| Route {
                candidates: d.candidates,
                shadow: d.shadow,
            })
        };
        Routes {
            kyc: route("kyc"),
            aml: route("aml"),
        }
    }

    async fn start(&self, conn: &mut PgConnection, cmd: StartOnboarding) -> R<()> {
        let flow_id = cmd.envelope.flow_id.clone();
        let mut flow = Flow {
            flow_id,
            tenant_id: cmd.envelope.tenant_id.clone(),
            applicant_id: cmd.applicant_id.clone(),
            correlation_id: cmd.envelope.correlation_id.clone(),
            person: cmd.person.clone(),
            region: cmd.region.clone(),
            risk_tier: tier(cmd.risk_tier).to_string(),
            segment: cmd.segment.clone(),
            attempt: 1,
            created_at: chrono::Utc::now(),
        };
        let (state, effects) = transition::start(&self.routes(&flow));
        if !store::insert(conn, &flow).await? {
            tracing::info!(flow_id = %flow.flow_id, "onboarding already started; command ignored");
            return Ok(());
        }
        let mut changes = store::Changes::default();
        changes.note(
            "started",
            serde_json::json!({"command": cmd.envelope.event_id.to_string()}),
        );
        self.apply(conn, &mut flow, &state, effects, &cmd.envelope, changes)
            .await
    }

    /// Applies one input to a flow (locked for the transaction).
    async fn feed(&self, conn: &mut PgConnection, flow_id: &str, input: Input, cause: &Envelope) -> R<()> {
        let Some((mut flow, state)) = store::load(conn, flow_id).await? else {
            tracing::warn!(flow_id, "input for an unknown flow ignored");
            return Ok(());
        };
        let (next, effects) = transition::step(&state, input, &self.routes(&flow), self.limits());
        self.apply(conn, &mut flow, &next, effects, cause, store::Changes::default())
            .await
    }

    async fn kyc_result(&self, conn: &mut PgConnection, r: KycVerificationResult) -> R<()> {
        if let Some(reference) = &r.provider_reference {
            store::lock_case(conn, &r.partner, reference).await?;
        }
        if r.shadow {
            let flow_id = &r.envelope.flow_id;
            if !store::lock_flow(conn, flow_id).await? {
                return Ok(());
            }
            let detail = serde_json::json!({"reasons": r.reasons, "failure": r.failure.as_ref().map(|f| &f.code)});
            let reference = r.provider_reference.as_deref();
            store::record_shadow(
                conn,
                flow_id,
                "kyc",
                &r.partner,
                format!("{:?}", r.status),
                reference,
                detail,
            )
            .await?;
            let Some(reference) = reference else { return Ok(()) };
            // The shadow case's webhooks reach it from now on; those that came first are applied.
            store::remember_reference(conn, &r.partner, reference, flow_id, true).await?;
            let mut statuses = vec![r.status];
            statuses.extend(
                store::unpark(conn, &r.partner, reference)
                    .await?
                    .into_iter()
                    .map(|(s, _)| s),
            );
            for status in statuses {
                self.shadow_answer(conn, flow_id, Domain::Kyc, &r.partner, kyc_verdict(status))
                    .await?;
            }
            return Ok(());
        }
        let answer = KycAnswer {
            partner: r.partner.clone(),
            reference: r.provider_reference.clone(),
            status: r.status,
            reasons: r.reasons,
            failure: r.failure,
        };
        self.feed(conn, &r.envelope.flow_id, Input::Kyc(answer), &r.envelope)
            .await?;
        // Partner events that arrived before this result named their case.
        if let Some(reference) = &r.provider_reference {
            for (status, reasons) in store::unpark(conn, &r.partner, reference).await? {
                let answer = KycAnswer {
                    partner: r.partner.clone(),
                    reference: Some(reference.clone()),
                    status,
                    reasons,
                    failure: None,
                };
                self.feed(conn, &r.envelope.flow_id, Input::Kyc(answer), &r.envelope)
                    .await?;
            }
        }
        Ok(())
    }

    /// A shadow partner's answer: its verdict is recorded and compared, the flow is not touched.
    async fn shadow_answer(
        &self,
        conn: &mut PgConnection,
        flow_id: &str,
        domain: Domain,
        partner: &str,
        verdict: Option<&str>,
    ) -> R<()> {
        let Some(verdict) = verdict else { return Ok(()) };
        if let Some(agrees) = store::shadow_verdict(conn, flow_id, domain.name(), partner, verdict).await? {
            self.metrics.compared(domain.name(), partner, agrees);
        }
        Ok(())
    }

    async fn kyc_provider_event(&self, conn: &mut PgConnection, p: KycProviderEvent) -> R<()> {
        store::lock_case(conn, &p.partner, &p.provider_reference).await?;
        let Some((flow_id, shadow)) = store::flow_of_reference(conn, &p.partner, &p.provider_reference).await? else {
            let status = serde_json::to_value(p.status).map_err(perm)?;
            store::park(
                conn,
                p.envelope.event_id,
                &p.partner,
                &p.provider_reference,
                status.as_str().unwrap_or("PENDING"),
                &p.reasons,
            )
            .await?;
            tracing::info!(partner = %p.partner, reference = %p.provider_reference, "provider event parked until its case is known");
            return Ok(());
        };
        if shadow {
            if store::lock_flow(conn, &flow_id).await? {
                self.shadow_answer(conn, &flow_id, Domain::Kyc, &p.partner, kyc_verdict(p.status))
                    .await?;
            }
            return Ok(());
        }
        let span = store::notice_span(conn, &flow_id, &p.partner).await?;
        tracing::Instrument::instrument(self.kyc_notice(conn, flow_id, p), span).await
    }

    /// A KYC partner's notice about a live case, applied to its flow.
    async fn kyc_notice(&self, conn: &mut PgConnection, flow_id: String, p: KycProviderEvent) -> R<()> {
        let answer = KycAnswer {
            partner: p.partner.clone(),
            reference: Some(p.provider_reference.clone()),
            status: p.status,
            reasons: p.reasons,
            failure: None,
        };
        self.feed(conn, &flow_id, Input::Kyc(answer), &p.envelope).await
    }

    async fn aml_result(&self, conn: &mut PgConnection, r: AmlScreeningResult) -> R<()> {
        if r.shadow {
            let flow_id = &r.envelope.flow_id;
            if !store::lock_flow(conn, flow_id).await? {
                return Ok(());
            }
            let detail = serde_json::json!({"hits": hit_reasons(ScreeningStatus::PossibleMatch, &r.hits), "failure": r.failure.as_ref().map(|f| &f.code)});
            let reference = r.provider_reference.as_deref();
            store::record_shadow(
                conn,
                flow_id,
                "aml",
                &r.partner,
                format!("{:?}", r.status),
                reference,
                detail,
            )
            .await?;
            let verdict = r.failure.is_none().then(|| aml_verdict(r.status)).flatten();
            return self
                .shadow_answer(conn, flow_id, Domain::Aml, &r.partner, verdict)
                .await;
        }
        let answer = AmlAnswer {
            partner: r.partner.clone(),
            reference: r.provider_reference.clone(),
            status: r.status,
            reasons: hit_reasons(r.status, &r.hits),
            failure: r.failure,
        };
        self.feed(conn, &r.envelope.flow_id, Input::Aml(answer), &r.envelope)
            .await
    }

    /// A flow's timer fired.
    pub async fn timed_out(&self, conn: &mut PgConnection, flow_id: &str) -> R<()> {
        // Only the causation id of this envelope reaches emitted events (they carry the flow's tenant).
        let cause = Envelope::new(
            "com.switchyard.orchestrator.Timer",
            SERVICE,
            flow_id.to_string(),
            SERVICE,
        );
        self.feed(conn, flow_id, Input::Timer, &cause).await
    }
}

impl Handler for Onboarding {
    type Prepared = ();

    async fn prepare(&self, _: &Incoming) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, conn: &mut PgConnection, msg: &Incoming, (): ()) -> Result<(), HandlerError> {
        let e = &msg.event;
        if let Some(cmd) = e.as_event::<StartOnboarding>() {
            return self.start(conn, cmd.map_err(perm)?).await;
        }
        if let Some(r) = e.as_event::<KycVerificationResult>() {
            return self.kyc_result(conn, r.map_err(perm)?).await;
        }
        if let Some(p) = e.as_event::<KycProviderEvent>() {
            return self.kyc_provider_event(conn, p.map_err(perm)?).await;
        }
        if let Some(r) = e.as_event::<AmlScreeningResult>() {
            return self.aml_result(conn, r.map_err(perm)?).await;
        }
        // Other records on these topics belong to other flows.
        Ok(())
    }
}

/// What a screening found, in words fit for an outcome, the API and the audit trail: the list, the
/// category and the score of each hit, never the matched name (personal data of the applicant, or of
/// someone else). A reviewer reads the names at the partner, by the case reference the flow keeps.
fn hit_reasons(status: ScreeningStatus, hits: &[switchyard_model::events::aml::ScreeningHit]) -> Vec<String> {
    let prefix = match status {
        ScreeningStatus::ConfirmedMatch => "confirmed match",
        ScreeningStatus::PossibleMatch | ScreeningStatus::Clear | ScreeningStatus::Pending => "possible match",
    };
    hits.iter()
        .map(|h| format!("{prefix} on {} ({:?}, score {})", h.list_name, h.category, h.score))
        .collect()
}
