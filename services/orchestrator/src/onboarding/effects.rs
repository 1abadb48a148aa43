//! Turns a transition's effects into outbox rows, timers, references and history, inside the
//! transaction of the message (or timer) that caused them.

use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        aml::AmlScreeningRequested,
        kyc::{KycStatusRequested, KycVerificationRequested},
        onboarding::{OnboardingCompleted, OnboardingStepChanged},
    },
};
use switchyard_runtime::HandlerError;

use super::{
    Onboarding, SERVICE,
    state::{Domain, Effect, State, Timer},
    store::{self, Flow},
};

type R<T> = Result<T, HandlerError>;

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

/// The id partners know the applicant by: tenant-scoped, since two tenants may use the same
/// applicant id and vendors key customers by it (Sumsub's `externalUserId`, Mesh's
/// `external_identifier`).
fn subject_id(flow: &Flow) -> String {
    vendor_subject_id(&flow.tenant_id, &flow.applicant_id)
}

/// `<length of tenant>.<tenant>.<applicant>`: injective, since the length says exactly where the
/// tenant ends, whatever either part contains (tenant `a.b` with applicant `c` and tenant `a` with
/// applicant `b.c` become `3.a.b.c` and `1.a.b.c`). Readable at the vendor, in the ingress's
/// applicant-id alphabet.
pub fn vendor_subject_id(tenant: &str, applicant: &str) -> String {
    format!("{}.{tenant}.{applicant}", tenant.len())
}

fn envelope(flow: &Flow, record: &str, cause: &Envelope) -> Envelope {
    let mut e = Envelope::new(record, flow.tenant_id.clone(), flow.flow_id.clone(), SERVICE);
    e.correlation_id = flow.correlation_id.clone();
    e.causation_id = Some(cause.event_id.to_string());
    e
}

pub fn class_name(c: switchyard_model::events::common::FailureClass) -> &'static str {
    use switchyard_model::events::common::FailureClass;
    match c {
        FailureClass::Transient => "transient",
        FailureClass::Permanent => "permanent",
        FailureClass::ManualRepair => "manual_repair",
        FailureClass::ComplianceHold => "compliance_hold",
        FailureClass::Ambiguous => "ambiguous",
    }
}

/// Events to emit, in order: written to the outbox together, after the flow's row.
type Emitted = Vec<(&'static str, EventRecord)>;

fn emit<E: Event>(out: &mut Emitted, event: &E) -> R<()> {
    out.push((E::TOPIC, EventRecord::of(event).map_err(perm)?));
    Ok(())
}

impl Onboarding {
    /// Saves `state` and carries out `effects`, in order, in the caller's transaction: the flow's
    /// row with its history in one statement, the emitted events in one more.
    pub(super) async fn apply(
        &self,
        conn: &mut PgConnection,
        flow: &mut Flow,
        state: &State,
        effects: Vec<Effect>,
        cause: &Envelope,
        mut changes: store::Changes,
    ) -> R<()> {
        let mut out = Emitted::new();
        for effect in effects {
            match effect {
                Effect::Request {
                    domain,
                    partner,
                    shadow,
                } => request(&mut out, flow, domain, partner, shadow, cause)?,
                Effect::QueryKyc { partner, reference } => {
                    emit(
                        &mut out,
                        &KycStatusRequested {
                            envelope: envelope(flow, KycStatusRequested::RECORD, cause),
                            subject_id: subject_id(flow),
                            partner,
                            provider_reference: reference,
                        },
                    )?;
                }
                Effect::Step { step, partner } => {
                    emit(
                        &mut out,
                        &OnboardingStepChanged {
                            envelope: envelope(flow, OnboardingStepChanged::RECORD, cause),
                            applicant_id: flow.applicant_id.clone(),
                            step: step.to_string(),
                            partner: partner.clone(),
                        },
                    )?;
                    changes.note(step, serde_json::json!({"partner": partner}));
                }
                Effect::Timer(None) => changes.timer = Some(None),
                Effect::Timer(Some(t)) => {
                    changes.timer = Some(Some(match t {
                        Timer::Kyc => ("kyc", self.timeouts.kyc),
                        Timer::Documents => ("kyc_documents", self.timeouts.kyc_documents),
                    }));
                }
                Effect::Reference { partner, reference } => {
                    store::remember_reference(conn, &partner, &reference, &flow.flow_id, false).await?;
                }
                Effect::Verdict { domain, verdict } => {
                    for (shadow, agrees) in store::live_verdict(conn, &flow.flow_id, domain.name(), verdict).await? {
                        self.metrics.compared(domain.name(), &shadow, agrees);
                    }
                }
                Effect::Failover {
                    domain,
                    from,
                    to,
                    cause: why,
                } => {
                    self.metrics
                        .failovers
                        .get_or_create(&super::FailoverLabels {
                            domain: domain.name().to_string(),
                            from: from.clone(),
                            to: to.clone(),
                            tenant: flow.tenant_id.clone(),
                        })
                        .inc();
                    flow.attempt += 1;
                    changes.failovers += 1;
                    changes.note(
                        "failover",
                        serde_json::json!({"domain": domain.name(), "from": from, "to": to, "cause": why}),
                    );
                    tracing::warn!(flow_id = %flow.flow_id, domain = domain.name(), %from, %to, cause = %why, "failing over");
                }
                Effect::Complete {
                    decision,
                    reasons,
                    failure,
                } => {
                    let (kyc, aml) = match state {
                        State::Decided { kyc, aml, .. } => (kyc.clone(), aml.clone()),
                        _ => (None, None),
                    };
                    changes.decided = Some((reasons.clone(), failure.as_ref().map(|f| class_name(f.failure_class))));
                    emit(
                        &mut out,
                        &OnboardingCompleted {
                            envelope: envelope(flow, OnboardingCompleted::RECORD, cause),
                            applicant_id: flow.applicant_id.clone(),
                            decision,
                            kyc_partner: kyc.map(|c| c.partner),
                            aml_partner: aml.map(|c| c.partner),
                            reasons: reasons.clone(),
                            failure: failure.clone(),
                        },
                    )?;
                    let name = decision.as_str();
                    changes.note(
                        name,
                        serde_json::json!({"reasons": reasons, "failure": failure.as_ref().map(|f| f.code.clone())}),
                    );
                    let waited = store::went_through(conn, &flow.flow_id, &[super::state::KYC_DOCUMENTS]).await?;
                    self.metrics
                        .complete("onboarding", name, failure.as_ref(), flow.created_at, waited);
                    tracing::info!(flow_id = %flow.flow_id, decision = name, "onboarding decided");
                }
                Effect::Note { event, detail } => {
                    changes.note(event, serde_json::json!({"detail": detail}));
                }
            }
        }
        store::save(conn, &flow.flow_id, state, flow.attempt, &changes).await?;
        self.outbox
            .enqueue_all(conn, &out)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }
}

fn request(out: &mut Emitted, flow: &Flow, domain: Domain, partner: String, shadow: bool, cause: &Envelope) -> R<()> {
    match domain {
        Domain::Kyc => emit(
            out,
            &KycVerificationRequested {
                envelope: envelope(flow, KycVerificationRequested::RECORD, cause),
                subject_id: subject_id(flow),
                person: flow.person.clone(),
                partner,
                attempt: flow.attempt,
                shadow,
            },
        ),
        Domain::Aml => emit(
            out,
            &AmlScreeningRequested {
                envelope: envelope(flow, AmlScreeningRequested::RECORD, cause),
                subject_id: subject_id(flow),
                person: flow.person.clone(),
                partner,
                attempt: flow.attempt,
                shadow,
            },
        ),
    }
}
