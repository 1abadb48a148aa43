//! The KYC adapter: consumes `kyc.requests.v1`, verifies the person with the requested partner
//! (retries, circuit breaker, rate limit, write-ahead effect ledger), and emits `kyc.results.v1`.
//!
//! Partners come from the `[[partners]]` section of the config file (see README); adding a vendor
//! touches `switchyard-vendors` (its folder and the registry) and this configuration only.

use std::process::ExitCode;

use axum::Router;
use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::Failure,
        kyc::{KycStatus, KycStatusRequested, KycVerificationRequested, KycVerificationResult},
    },
};
use switchyard_runtime::{
    Handler, HandlerError, Incoming, Outbox,
    effects::{Intent, Ledger},
    provider::idempotency_key,
    service,
};
use switchyard_vendors::{
    adapter::{Partners, emit},
    kyc::{Applicant, KycOutcome, KycVendor},
    registry,
};

const SERVICE: &str = "kyc-adapter";

struct KycAdapter {
    partners: Partners<dyn KycVendor>,
    outbox: Outbox,
    ledger: Ledger,
}

/// What the partner call (made before the inbox transaction) produced.
struct Answer {
    subject_id: String,
    partner: String,
    shadow: bool,
    key: Option<String>,
    outcome: Result<KycOutcome, Failure>,
}

impl KycAdapter {
    /// Starts a verification through the effect ledger: at most one case per request, whatever
    /// crashes or timeouts happen.
    async fn verify(
        &self,
        req: &KycVerificationRequested,
        key: &str,
    ) -> Result<Result<KycOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&req.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let applicant = Applicant {
            subject_id: req.subject_id.clone(),
            idempotency_key: key.to_string(),
            person: req.person.clone(),
        };
        let intent = Intent {
            key,
            partner: &req.partner,
            operation: "verify",
            request_event_id: req.envelope.event_id,
            flow_id: &req.envelope.flow_id,
        };
        self.partners
            .effect(
                &self.ledger,
                intent,
                |o: &KycOutcome| Some(o.provider_reference.clone()),
                |progress| {
                    let applicant = &applicant;
                    Box::pin(async move { vendor.start(applicant, &*progress).await })
                },
                |progress| {
                    let applicant = &applicant;
                    Box::pin(async move { vendor.recover(applicant, &*progress).await })
                },
            )
            .await
    }

    /// The current status of a live case: a read, no effect. A query that fails (the vendor
    /// unreachable, our credentials refused) is no news about the case, never "the case is gone":
    /// it answers "still pending", so the flow asks again later and never fails over on it.
    async fn status(&self, req: &KycStatusRequested) -> Result<KycOutcome, Failure> {
        let vendor = self.partners.get(&req.partner)?;
        match self
            .partners
            .call(&req.partner, "status", || vendor.status(&req.provider_reference))
            .await
        {
            Ok(o) => Ok(o),
            Err(f) => {
                tracing::warn!(partner = %req.partner, reference = %req.provider_reference, failure = %f.message,
                    "status query failed; reporting the case as still pending");
                Ok(KycOutcome {
                    provider_reference: req.provider_reference.clone(),
                    status: KycStatus::Pending,
                    reasons: vec![],
                })
            }
        }
    }
}

impl Handler for KycAdapter {
    type Prepared = Answer;
    const CALLS_OUT: bool = true;

    async fn prepare(&self, msg: &Incoming) -> Result<Answer, HandlerError> {
        let perm = |e: switchyard_model::SchemaError| HandlerError::Permanent(e.to_string());
        if let Some(req) = msg.event.as_event::<KycVerificationRequested>() {
            let req = req.map_err(perm)?;
            let key = idempotency_key(req.envelope.event_id);
            let outcome = self.verify(&req, &key).await?;
            return Ok(Answer {
                subject_id: req.subject_id,
                partner: req.partner,
                shadow: req.shadow,
                key: Some(key),
                outcome,
            });
        }
        if let Some(req) = msg.event.as_event::<KycStatusRequested>() {
            let req = req.map_err(perm)?;
            let outcome = self.status(&req).await;
            return Ok(Answer {
                subject_id: req.subject_id,
                partner: req.partner,
                shadow: false,
                key: None,
                outcome,
            });
        }
        Err(HandlerError::Permanent(format!(
            "{} is not a KYC request",
            msg.event.record
        )))
    }

    async fn handle(&self, conn: &mut PgConnection, msg: &Incoming, answer: Answer) -> Result<(), HandlerError> {
        let mut envelope = Envelope::caused_by(&msg.event.envelope, KycVerificationResult::RECORD, SERVICE);
        envelope.idempotency_key = answer.key;
        let (ok, failure) = match answer.outcome {
            Ok(o) => (Some(o), None),
            Err(f) => (None, Some(f)),
        };
        let result = KycVerificationResult {
            envelope,
            subject_id: answer.subject_id,
            partner: answer.partner,
            provider_reference: ok.as_ref().map(|o| o.provider_reference.clone()),
            status: ok.as_ref().map(|o| o.status).unwrap_or(KycStatus::Pending),
            reasons: ok.map(|o| o.reasons).unwrap_or_default(),
            failure,
            shadow: answer.shadow,
        };
        tracing::info!(partner = %result.partner, status = ?result.status, failed = result.failure.is_some(), shadow = result.shadow, "kyc verification");
        let record = EventRecord::of(&result).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        emit(conn, &self.outbox, KycVerificationResult::TOPIC, &record).await
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let rt = service::boot(SERVICE).await?;
    if !rt.serving() {
        return Ok(());
    }
    let partners =
        Partners::load(rt.config_file.as_deref(), &rt.metrics, &rt.pool, registry::kyc).map_err(anyhow::Error::msg)?;
    if partners.ids().next().is_none() {
        tracing::warn!("no KYC partners configured: every request will fail with unknown_partner");
    }
    let handler = KycAdapter {
        partners,
        outbox: rt.outbox.clone(),
        ledger: Ledger::new(rt.pool.clone()),
    };
    let consumer = rt.consumer(SERVICE, &[KycVerificationRequested::TOPIC], handler);
    let tasks = vec![
        rt.spawn_relay(),
        rt.spawn_consumer(consumer),
        rt.spawn_retention(vec![])?,
    ];
    rt.serve_until_shutdown(Router::new(), tasks).await
}
