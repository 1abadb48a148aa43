//! The onboarding flow: KYC → AML → decision, as a state machine persisted in `onboarding_flows`.
//!
//! ```text
//!  kyc_pending ──NEEDS_DOCUMENTS──▶ kyc_awaiting_documents
//!      │  └──────────APPROVED──────────────┬──▶ aml_pending ──CLEAR──▶ approved
//!      │                                   │        ├─POSSIBLE_MATCH─▶ manual_review (compliance hold)
//!      ├─REJECTED─▶ rejected ◀─────────────┘        └─CONFIRMED_MATCH▶ rejected
//!      ├─REVIEW───▶ manual_review
//!      └─provider unavailable─▶ same state with the next partner (failover), or failed
//! ```
//!
//! Every change happens in the inbox transaction of the message that caused it, with the flow's row
//! locked and its events written to the outbox. A step only moves forward: late, duplicate or
//! out-of-order partner answers that do not fit the current state are recorded and ignored. Each
//! waiting state has a timer; when it fires the step fails over or escalates to manual review.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};
use sqlx::{PgConnection, Row};
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        aml::{AmlScreeningRequested, AmlScreeningResult, ScreeningStatus},
        common::{Failure, FailureClass, Person},
        kyc::{KycProviderEvent, KycStatus, KycVerificationRequested, KycVerificationResult},
        onboarding::{OnboardingCompleted, OnboardingDecision, OnboardingStepChanged, RiskTier, StartOnboarding},
    },
};
use switchyard_runtime::{Handler, HandlerError, Incoming, Metrics, Outbox};

use crate::routing::{Routing, Subject};

const SERVICE: &str = "orchestrator";

pub const KYC_PENDING: &str = "kyc_pending";
pub const KYC_DOCUMENTS: &str = "kyc_awaiting_documents";
pub const AML_PENDING: &str = "aml_pending";

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub kyc: Duration,
    pub kyc_documents: Duration,
    pub aml: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub flow: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub domain: String,
    pub from: String,
    pub to: String,
}

#[derive(Clone)]
pub struct FlowMetrics {
    pub duration: Family<FlowLabels, Histogram, fn() -> Histogram>,
    pub failovers: Family<FailoverLabels, Counter>,
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
            failovers: Family::default(),
        };
        m.register(
            "flow_duration_seconds",
            "Time from a flow's start to its decision, by flow type and outcome",
            f.duration.clone(),
        );
        m.register(
            "flow_failovers",
            "Steps moved to another partner, by domain",
            f.failovers.clone(),
        );
        f
    }
}

pub struct Onboarding {
    pub routing: Routing,
    pub outbox: Outbox,
    pub timeouts: Timeouts,
    pub metrics: FlowMetrics,
}

/// A flow row, locked for the current transaction.
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
    pub state: String,
    pub kyc_partner: Option<String>,
    pub kyc_tried: Vec<String>,
    pub aml_partner: Option<String>,
    pub aml_tried: Vec<String>,
    pub attempt: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
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

fn decision_state(d: OnboardingDecision) -> &'static str {
    match d {
        OnboardingDecision::Approved => "approved",
        OnboardingDecision::Rejected => "rejected",
        OnboardingDecision::ManualReview => "manual_review",
        OnboardingDecision::Failed => "failed",
    }
}

fn class_name(c: FailureClass) -> &'static str {
    match c {
        FailureClass::Transient => "transient",
        FailureClass::Permanent => "permanent",
        FailureClass::ManualRepair => "manual_repair",
        FailureClass::ComplianceHold => "compliance_hold",
        FailureClass::Ambiguous => "ambiguous",
    }
}

pub async fn load(conn: &mut PgConnection, flow_id: &str) -> R<Option<Flow>> {
    let row = sqlx::query(
        "SELECT flow_id, tenant_id, applicant_id, correlation_id, person, region, risk_tier, segment, state, kyc_partner, \
         kyc_tried, aml_partner, aml_tried, attempt, created_at FROM onboarding_flows WHERE flow_id = $1 FOR UPDATE",
    )
    .bind(flow_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Flow {
        flow_id: r.get("flow_id"),
        tenant_id: r.get("tenant_id"),
        applicant_id: r.get("applicant_id"),
        correlation_id: r.get("correlation_id"),
        person: serde_json::from_value(r.get("person")).map_err(perm)?,
        region: r.get("region"),
        risk_tier: r.get("risk_tier"),
        segment: r.get("segment"),
        state: r.get("state"),
        kyc_partner: r.get("kyc_partner"),
        kyc_tried: r.get("kyc_tried"),
        aml_partner: r.get("aml_partner"),
        aml_tried: r.get("aml_tried"),
        attempt: r.get("attempt"),
        created_at: r.get("created_at"),
    }))
}

/// The flow a step's result belongs to, if it still waits for that partner's answer; a result the
/// flow no longer waits for (late, after a failover, or for an unknown flow) is recorded and dropped.
async fn waiting(conn: &mut PgConnection, flow_id: &str, domain: &str, partner: &str) -> R<Option<Flow>> {
    let Some(flow) = load(conn, flow_id).await? else {
        tracing::warn!(flow_id, domain, "result for an unknown flow ignored");
        return Ok(None);
    };
    let (state, current) = if domain == "kyc" {
        (KYC_PENDING, flow.kyc_partner.as_deref())
    } else {
        (AML_PENDING, flow.aml_partner.as_deref())
    };
    if flow.state != state || current != Some(partner) {
        let detail = serde_json::json!({"partner": partner, "state": flow.state});
        history(conn, &flow.flow_id, &format!("ignored_{domain}_result"), detail).await?;
        return Ok(None);
    }
    Ok(Some(flow))
}

async fn history(conn: &mut PgConnection, flow_id: &str, event: &str, detail: serde_json::Value) -> R<()> {
    sqlx::query("INSERT INTO flow_history (flow_id, event, detail) VALUES ($1, $2, $3)")
        .bind(flow_id)
        .bind(event)
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}

async fn set_timer(conn: &mut PgConnection, flow_id: &str, state: &str, after: Duration) -> R<()> {
    sqlx::query("DELETE FROM flow_timers WHERE flow_id = $1")
        .bind(flow_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO flow_timers (flow_id, state, due_at) VALUES ($1, $2, now() + make_interval(secs => $3))")
        .bind(flow_id)
        .bind(state)
        .bind(after.as_secs_f64())
        .execute(conn)
        .await?;
    Ok(())
}

impl Onboarding {
    fn envelope(flow: &Flow, record: &str, cause: &Envelope) -> Envelope {
        let mut e = Envelope::new(record, flow.tenant_id.clone(), flow.flow_id.clone(), SERVICE);
        e.correlation_id = flow.correlation_id.clone();
        e.causation_id = Some(cause.event_id.to_string());
        e
    }

    async fn emit<E: Event>(&self, conn: &mut PgConnection, event: &E) -> R<()> {
        let record = EventRecord::of(event).map_err(perm)?;
        self.outbox
            .enqueue(conn, E::TOPIC, &record)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        Ok(())
    }

    async fn step(
        &self,
        conn: &mut PgConnection,
        flow: &Flow,
        step: &str,
        partner: Option<&str>,
        cause: &Envelope,
    ) -> R<()> {
        self.emit(
            conn,
            &OnboardingStepChanged {
                envelope: Self::envelope(flow, OnboardingStepChanged::RECORD, cause),
                applicant_id: flow.applicant_id.clone(),
                step: step.to_string(),
                partner: partner.map(str::to_string),
            },
        )
        .await?;
        history(conn, &flow.flow_id, step, serde_json::json!({"partner": partner})).await
    }

    fn subject<'a>(flow: &'a Flow) -> Subject<'a> {
        Subject {
            flow_id: &flow.flow_id,
            tenant: &flow.tenant_id,
            region: &flow.region,
            risk_tier: &flow.risk_tier,
            segment: flow.segment.as_deref(),
        }
    }

    /// The id partners know the applicant by: tenant-scoped, since two tenants may use the same
    /// applicant id and vendors key customers by it.
    fn subject_id(flow: &Flow) -> String {
        format!("{}.{}", flow.tenant_id, flow.applicant_id)
    }

    async fn request_kyc(
        &self,
        conn: &mut PgConnection,
        flow: &Flow,
        partner: &str,
        shadow: bool,
        cause: &Envelope,
    ) -> R<()> {
        self.emit(
            conn,
            &KycVerificationRequested {
                envelope: Self::envelope(flow, KycVerificationRequested::RECORD, cause),
                subject_id: Self::subject_id(flow),
                person: flow.person.clone(),
                partner: partner.to_string(),
                attempt: flow.attempt,
                shadow,
            },
        )
        .await
    }

    async fn request_aml(
        &self,
        conn: &mut PgConnection,
        flow: &Flow,
        partner: &str,
        shadow: bool,
        cause: &Envelope,
    ) -> R<()> {
        self.emit(
            conn,
            &AmlScreeningRequested {
                envelope: Self::envelope(flow, AmlScreeningRequested::RECORD, cause),
                subject_id: Self::subject_id(flow),
                person: flow.person.clone(),
                partner: partner.to_string(),
                attempt: flow.attempt,
                shadow,
            },
        )
        .await
    }

    async fn start(&self, conn: &mut PgConnection, cmd: StartOnboarding) -> R<()> {
        let flow_id = cmd.envelope.flow_id.clone();
        let exists: Option<String> = sqlx::query_scalar("SELECT state FROM onboarding_flows WHERE flow_id = $1")
            .bind(&flow_id)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_some() {
            tracing::info!(flow_id, "onboarding already started; command ignored");
            return Ok(());
        }
        let mut flow = Flow {
            flow_id: flow_id.clone(),
            tenant_id: cmd.envelope.tenant_id.clone(),
            applicant_id: cmd.applicant_id.clone(),
            correlation_id: cmd.envelope.correlation_id.clone(),
            person: cmd.person.clone(),
            region: cmd.region.clone(),
            risk_tier: tier(cmd.risk_tier).to_string(),
            segment: cmd.segment.clone(),
            state: KYC_PENDING.to_string(),
            kyc_partner: None,
            kyc_tried: vec![],
            aml_partner: None,
            aml_tried: vec![],
            attempt: 1,
            created_at: chrono::Utc::now(),
        };
        let decision = self.routing.get().decide("kyc", &Self::subject(&flow));
        sqlx::query(
            "INSERT INTO onboarding_flows (flow_id, tenant_id, applicant_id, correlation_id, person, region, risk_tier, segment, \
             state, kyc_partner, kyc_tried, attempt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1)",
        )
        .bind(&flow.flow_id)
        .bind(&flow.tenant_id)
        .bind(&flow.applicant_id)
        .bind(&flow.correlation_id)
        .bind(serde_json::to_value(&flow.person).map_err(perm)?)
        .bind(&flow.region)
        .bind(&flow.risk_tier)
        .bind(&flow.segment)
        .bind(KYC_PENDING)
        .bind(decision.as_ref().map(|d| d.candidates[0].clone()))
        .bind(decision.as_ref().map(|d| vec![d.candidates[0].clone()]).unwrap_or_default())
        .execute(&mut *conn)
        .await?;
        history(
            conn,
            &flow.flow_id,
            "started",
            serde_json::json!({"command": cmd.envelope.event_id.to_string()}),
        )
        .await?;
        let Some(decision) = decision else {
            let f = Failure::new(
                FailureClass::ManualRepair,
                "no_route",
                "no KYC route matches this applicant",
            );
            return self
                .complete(
                    conn,
                    &flow,
                    OnboardingDecision::Failed,
                    vec![f.message.clone()],
                    Some(f),
                    &cmd.envelope,
                )
                .await;
        };
        let partner = decision.candidates[0].clone();
        flow.kyc_partner = Some(partner.clone());
        flow.kyc_tried = vec![partner.clone()];
        self.request_kyc(conn, &flow, &partner, false, &cmd.envelope).await?;
        if let Some(shadow) = &decision.shadow {
            self.request_kyc(conn, &flow, shadow, true, &cmd.envelope).await?;
        }
        self.step(conn, &flow, KYC_PENDING, Some(&partner), &cmd.envelope)
            .await?;
        set_timer(conn, &flow.flow_id, KYC_PENDING, self.timeouts.kyc).await
    }

    async fn record_shadow(
        &self,
        conn: &mut PgConnection,
        flow_id: &str,
        domain: &str,
        partner: &str,
        status: String,
        detail: serde_json::Value,
    ) -> R<()> {
        sqlx::query(
            "INSERT INTO shadow_results (flow_id, domain, partner, status, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(flow_id)
        .bind(domain)
        .bind(partner)
        .bind(status)
        .bind(detail)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn kyc_result(&self, conn: &mut PgConnection, r: KycVerificationResult) -> R<()> {
        if r.shadow {
            let detail = serde_json::json!({"reasons": r.reasons, "failure": r.failure.as_ref().map(|f| &f.code)});
            return self
                .record_shadow(
                    conn,
                    &r.envelope.flow_id,
                    "kyc",
                    &r.partner,
                    format!("{:?}", r.status),
                    detail,
                )
                .await;
        }
        let Some(mut flow) = waiting(conn, &r.envelope.flow_id, "kyc", &r.partner).await? else {
            return Ok(());
        };
        if let Some(f) = r.failure {
            return self.failed_step(conn, &mut flow, "kyc", f, &r.envelope).await;
        }
        if let Some(reference) = &r.provider_reference {
            sqlx::query("INSERT INTO provider_refs (partner, provider_reference, flow_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&r.partner)
                .bind(reference)
                .bind(&flow.flow_id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("UPDATE onboarding_flows SET kyc_reference = $2, updated_at = now() WHERE flow_id = $1")
                .bind(&flow.flow_id)
                .bind(reference)
                .execute(&mut *conn)
                .await?;
        }
        self.apply_kyc(conn, &mut flow, r.status, r.reasons, &r.envelope)
            .await?;
        // Partner events that arrived before this result named their case.
        if let Some(reference) = &r.provider_reference {
            let parked: Vec<(uuid::Uuid, String, Vec<String>)> = sqlx::query_as(
                "DELETE FROM parked_provider_events WHERE partner = $1 AND provider_reference = $2 \
                 RETURNING event_id, status, reasons",
            )
            .bind(&r.partner)
            .bind(reference)
            .fetch_all(&mut *conn)
            .await?;
            for (_, status, reasons) in parked {
                let status: KycStatus = serde_json::from_value(serde_json::Value::String(status)).map_err(perm)?;
                self.apply_kyc(conn, &mut flow, status, reasons, &r.envelope).await?;
            }
        }
        Ok(())
    }

    async fn kyc_provider_event(&self, conn: &mut PgConnection, p: KycProviderEvent) -> R<()> {
        let flow_id: Option<String> =
            sqlx::query_scalar("SELECT flow_id FROM provider_refs WHERE partner = $1 AND provider_reference = $2")
                .bind(&p.partner)
                .bind(&p.provider_reference)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(flow_id) = flow_id else {
            let status = serde_json::to_value(p.status).map_err(perm)?;
            sqlx::query(
                "INSERT INTO parked_provider_events (event_id, partner, provider_reference, status, reasons) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(p.envelope.event_id)
            .bind(&p.partner)
            .bind(&p.provider_reference)
            .bind(status.as_str().unwrap_or("PENDING"))
            .bind(&p.reasons)
            .execute(&mut *conn)
            .await?;
            tracing::info!(partner = %p.partner, reference = %p.provider_reference, "provider event parked until its case is known");
            return Ok(());
        };
        let Some(mut flow) = load(conn, &flow_id).await? else {
            return Ok(());
        };
        if flow.kyc_partner.as_deref() != Some(p.partner.as_str()) {
            return history(
                conn,
                &flow.flow_id,
                "ignored_provider_event",
                serde_json::json!({"partner": p.partner, "status": format!("{:?}", p.status)}),
            )
            .await;
        }
        self.apply_kyc(conn, &mut flow, p.status, p.reasons, &p.envelope).await
    }

    /// Moves the KYC step forward on a partner's answer; answers that do not fit are ignored.
    async fn apply_kyc(
        &self,
        conn: &mut PgConnection,
        flow: &mut Flow,
        status: KycStatus,
        reasons: Vec<String>,
        cause: &Envelope,
    ) -> R<()> {
        let in_kyc = flow.state == KYC_PENDING || flow.state == KYC_DOCUMENTS;
        match (in_kyc, status) {
            (_, KycStatus::Pending) => Ok(()),
            (false, _) => {
                history(
                    conn,
                    &flow.flow_id,
                    "ignored_late_kyc_answer",
                    serde_json::json!({"status": format!("{status:?}"), "state": flow.state}),
                )
                .await
            }
            (true, KycStatus::NeedsDocuments) if flow.state == KYC_DOCUMENTS => Ok(()),
            (true, KycStatus::NeedsDocuments) => {
                self.set_state(conn, flow, KYC_DOCUMENTS).await?;
                let partner = flow.kyc_partner.clone();
                self.step(conn, flow, KYC_DOCUMENTS, partner.as_deref(), cause).await?;
                set_timer(conn, &flow.flow_id, KYC_DOCUMENTS, self.timeouts.kyc_documents).await
            }
            (true, KycStatus::Approved) => self.start_aml(conn, flow, cause).await,
            (true, KycStatus::Rejected) => {
                self.complete(conn, flow, OnboardingDecision::Rejected, reasons, None, cause)
                    .await
            }
            (true, KycStatus::Review) => {
                let f = Failure::new(
                    FailureClass::ManualRepair,
                    "kyc_review",
                    "identity verification needs a manual review",
                );
                self.complete(conn, flow, OnboardingDecision::ManualReview, reasons, Some(f), cause)
                    .await
            }
        }
    }

    async fn set_state(&self, conn: &mut PgConnection, flow: &mut Flow, state: &str) -> R<()> {
        sqlx::query("UPDATE onboarding_flows SET state = $2, updated_at = now() WHERE flow_id = $1")
            .bind(&flow.flow_id)
            .bind(state)
            .execute(conn)
            .await?;
        flow.state = state.to_string();
        Ok(())
    }

    async fn start_aml(&self, conn: &mut PgConnection, flow: &mut Flow, cause: &Envelope) -> R<()> {
        let Some(decision) = self.routing.get().decide("aml", &Self::subject(flow)) else {
            let f = Failure::new(
                FailureClass::ManualRepair,
                "no_route",
                "no AML route matches this applicant",
            );
            return self
                .complete(
                    conn,
                    flow,
                    OnboardingDecision::Failed,
                    vec![f.message.clone()],
                    Some(f),
                    cause,
                )
                .await;
        };
        let partner = decision.candidates[0].clone();
        flow.attempt = 1;
        flow.aml_partner = Some(partner.clone());
        flow.aml_tried = vec![partner.clone()];
        sqlx::query("UPDATE onboarding_flows SET state = $2, aml_partner = $3, aml_tried = $4, attempt = 1, updated_at = now() WHERE flow_id = $1")
            .bind(&flow.flow_id)
            .bind(AML_PENDING)
            .bind(&partner)
            .bind(&flow.aml_tried)
            .execute(&mut *conn)
            .await?;
        flow.state = AML_PENDING.to_string();
        self.request_aml(conn, flow, &partner, false, cause).await?;
        if let Some(shadow) = &decision.shadow {
            self.request_aml(conn, flow, shadow, true, cause).await?;
        }
        self.step(conn, flow, AML_PENDING, Some(&partner), cause).await?;
        set_timer(conn, &flow.flow_id, AML_PENDING, self.timeouts.aml).await
    }

    async fn aml_result(&self, conn: &mut PgConnection, r: AmlScreeningResult) -> R<()> {
        if r.shadow {
            let detail = serde_json::json!({"hits": r.hits.iter().map(|h| &h.matched_name).collect::<Vec<_>>(), "failure": r.failure.as_ref().map(|f| &f.code)});
            return self
                .record_shadow(
                    conn,
                    &r.envelope.flow_id,
                    "aml",
                    &r.partner,
                    format!("{:?}", r.status),
                    detail,
                )
                .await;
        }
        let Some(mut flow) = waiting(conn, &r.envelope.flow_id, "aml", &r.partner).await? else {
            return Ok(());
        };
        if let Some(f) = r.failure {
            return self.failed_step(conn, &mut flow, "aml", f, &r.envelope).await;
        }
        let describe = |prefix: &str| -> Vec<String> {
            r.hits
                .iter()
                .map(|h| {
                    format!(
                        "{prefix}: {} on {} ({:?}, score {})",
                        h.matched_name, h.list_name, h.category, h.score
                    )
                })
                .collect()
        };
        match r.status {
            ScreeningStatus::Pending => Ok(()),
            ScreeningStatus::Clear => {
                self.complete(conn, &flow, OnboardingDecision::Approved, vec![], None, &r.envelope)
                    .await
            }
            ScreeningStatus::PossibleMatch => {
                let f = Failure::new(
                    FailureClass::ComplianceHold,
                    "screening_possible_match",
                    "possible sanctions/PEP match: compliance review",
                );
                self.complete(
                    conn,
                    &flow,
                    OnboardingDecision::ManualReview,
                    describe("possible match"),
                    Some(f),
                    &r.envelope,
                )
                .await
            }
            ScreeningStatus::ConfirmedMatch => {
                let f = Failure::new(
                    FailureClass::ComplianceHold,
                    "screening_confirmed_match",
                    "confirmed sanctions match",
                );
                self.complete(
                    conn,
                    &flow,
                    OnboardingDecision::Rejected,
                    describe("confirmed match"),
                    Some(f),
                    &r.envelope,
                )
                .await
            }
        }
    }

    /// A step's partner could not answer: fail over to the next partner of the route when the
    /// failure is the partner's (transient, ambiguous); otherwise, or with no partner left, fail.
    pub async fn failed_step(
        &self,
        conn: &mut PgConnection,
        flow: &mut Flow,
        domain: &str,
        f: Failure,
        cause: &Envelope,
    ) -> R<()> {
        let retryable = matches!(f.failure_class, FailureClass::Transient | FailureClass::Ambiguous);
        let tried = if domain == "kyc" {
            flow.kyc_tried.clone()
        } else {
            flow.aml_tried.clone()
        };
        let next = if retryable {
            self.routing
                .get()
                .decide(domain, &Self::subject(flow))
                .and_then(|d| d.candidates.into_iter().find(|c| !tried.contains(c)))
        } else {
            None
        };
        let Some(next) = next else {
            let class = if retryable {
                FailureClass::Transient
            } else {
                f.failure_class
            };
            let failure = Failure::new(class, f.code.clone(), format!("{domain}: {}", f.message));
            return self
                .complete(
                    conn,
                    flow,
                    OnboardingDecision::Failed,
                    vec![format!("{domain}: {}", f.code)],
                    Some(failure),
                    cause,
                )
                .await;
        };
        let from = if domain == "kyc" {
            flow.kyc_partner.clone()
        } else {
            flow.aml_partner.clone()
        }
        .unwrap_or_default();
        self.metrics
            .failovers
            .get_or_create(&FailoverLabels {
                domain: domain.to_string(),
                from: from.clone(),
                to: next.clone(),
            })
            .inc();
        flow.attempt += 1;
        let mut tried = tried;
        tried.push(next.clone());
        let (partner_col, tried_col, state) = if domain == "kyc" {
            ("kyc_partner", "kyc_tried", KYC_PENDING)
        } else {
            ("aml_partner", "aml_tried", AML_PENDING)
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE onboarding_flows SET {partner_col} = $2, {tried_col} = $3, attempt = $4, failovers = failovers + 1, \
             state = $5, updated_at = now() WHERE flow_id = $1"
        )))
        .bind(&flow.flow_id)
        .bind(&next)
        .bind(&tried)
        .bind(flow.attempt)
        .bind(state)
        .execute(&mut *conn)
        .await?;
        flow.state = state.to_string();
        history(
            conn,
            &flow.flow_id,
            "failover",
            serde_json::json!({"domain": domain, "from": from, "to": next, "cause": f.code}),
        )
        .await?;
        tracing::warn!(flow_id = %flow.flow_id, domain, from, to = %next, cause = %f.code, "failing over");
        if domain == "kyc" {
            flow.kyc_partner = Some(next.clone());
            flow.kyc_tried = tried;
            self.request_kyc(conn, flow, &next, false, cause).await?;
            set_timer(conn, &flow.flow_id, KYC_PENDING, self.timeouts.kyc).await?;
        } else {
            flow.aml_partner = Some(next.clone());
            flow.aml_tried = tried;
            self.request_aml(conn, flow, &next, false, cause).await?;
            set_timer(conn, &flow.flow_id, AML_PENDING, self.timeouts.aml).await?;
        }
        self.step(conn, flow, state, Some(&next), cause).await
    }

    pub async fn complete(
        &self,
        conn: &mut PgConnection,
        flow: &Flow,
        decision: OnboardingDecision,
        reasons: Vec<String>,
        failure: Option<Failure>,
        cause: &Envelope,
    ) -> R<()> {
        let state = decision_state(decision);
        sqlx::query(
            "UPDATE onboarding_flows SET state = $2, reasons = $3, failure_class = $4, completed_at = now(), updated_at = now() \
             WHERE flow_id = $1",
        )
        .bind(&flow.flow_id)
        .bind(state)
        .bind(&reasons)
        .bind(failure.as_ref().map(|f| class_name(f.failure_class)))
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM flow_timers WHERE flow_id = $1")
            .bind(&flow.flow_id)
            .execute(&mut *conn)
            .await?;
        self.emit(
            conn,
            &OnboardingCompleted {
                envelope: Self::envelope(flow, OnboardingCompleted::RECORD, cause),
                applicant_id: flow.applicant_id.clone(),
                decision,
                kyc_partner: flow.kyc_partner.clone(),
                aml_partner: flow.aml_partner.clone(),
                reasons: reasons.clone(),
                failure: failure.clone(),
            },
        )
        .await?;
        history(
            conn,
            &flow.flow_id,
            state,
            serde_json::json!({"reasons": reasons, "failure": failure.map(|f| f.code)}),
        )
        .await?;
        let took = (chrono::Utc::now() - flow.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        self.metrics
            .duration
            .get_or_create(&FlowLabels {
                flow: "onboarding".into(),
                outcome: state.into(),
            })
            .observe(took);
        tracing::info!(flow_id = %flow.flow_id, decision = state, "onboarding decided");
        Ok(())
    }

    /// A step's timer fired while the flow still waited in `state`.
    pub async fn timed_out(&self, conn: &mut PgConnection, flow_id: &str, state: &str) -> R<()> {
        let Some(mut flow) = load(conn, flow_id).await? else {
            return Ok(());
        };
        if flow.state != state {
            return Ok(());
        }
        let cause = Envelope::new(
            "com.switchyard.orchestrator.Timer",
            flow.tenant_id.clone(),
            flow.flow_id.clone(),
            SERVICE,
        );
        history(conn, flow_id, "timeout", serde_json::json!({"state": state})).await?;
        match state {
            KYC_PENDING => {
                let f = Failure::new(
                    FailureClass::Transient,
                    "step_timeout",
                    "the KYC partner did not answer in time",
                );
                self.failed_step(conn, &mut flow, "kyc", f, &cause).await
            }
            AML_PENDING => {
                let f = Failure::new(
                    FailureClass::Transient,
                    "step_timeout",
                    "the AML partner did not answer in time",
                );
                self.failed_step(conn, &mut flow, "aml", f, &cause).await
            }
            _ => {
                let f = Failure::new(
                    FailureClass::ManualRepair,
                    "documents_timeout",
                    "the applicant did not provide documents in time",
                );
                self.complete(
                    conn,
                    &flow,
                    OnboardingDecision::ManualReview,
                    vec![f.message.clone()],
                    Some(f),
                    &cause,
                )
                .await
            }
        }
    }
}

impl Handler for Onboarding {
    async fn handle(&self, conn: &mut PgConnection, msg: &Incoming) -> Result<(), HandlerError> {
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
