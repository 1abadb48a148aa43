//! The KYC adapter: consumes `kyc.requests.v1`, verifies the person with the requested partner
//! (retries, circuit breaker, rate limit, attempt ledger), and emits `kyc.results.v1`.
//!
//! Partners come from the `[[partners]]` section of the config file (see README); adding a vendor
//! touches `switchyard-vendors` (its folder and the registry) and this configuration only.

use std::process::ExitCode;

use axum::Router;
use sqlx::{PgConnection, PgPool};
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::Failure,
        kyc::{KycStatus, KycVerificationRequested, KycVerificationResult},
    },
};
use switchyard_runtime::{
    Handler, HandlerError, Incoming, Outbox,
    provider::{Attempts, idempotency_key},
    service,
};
use switchyard_vendors::{
    adapter::{Partners, finish},
    kyc::{Applicant, KycOutcome, KycVendor},
    registry,
};

const SERVICE: &str = "kyc-adapter";

struct KycAdapter {
    partners: Partners<dyn KycVendor>,
    outbox: Outbox,
    pool: PgPool,
}

impl KycAdapter {
    async fn verify(
        &self,
        req: &KycVerificationRequested,
        key: &str,
    ) -> Result<Result<KycOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&req.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let earlier = Attempts::begin(
            &self.pool,
            key,
            &req.partner,
            req.envelope.event_id,
            &req.envelope.flow_id,
        )
        .await?;
        let applicant = Applicant {
            subject_id: req.subject_id.clone(),
            idempotency_key: key.to_string(),
            person: req.person.clone(),
        };
        // A crash after an earlier call reached the partner: ask for that case instead of starting
        // another one.
        Ok(match earlier.and_then(|e| e.provider_reference) {
            Some(r) => self.partners.call(&req.partner, "status", || vendor.status(&r)).await,
            None => {
                self.partners
                    .call(&req.partner, "verify", || vendor.start(&applicant))
                    .await
            }
        })
    }
}

impl Handler for KycAdapter {
    async fn handle(&self, conn: &mut PgConnection, msg: &Incoming) -> Result<(), HandlerError> {
        let Some(req) = msg.event.as_event::<KycVerificationRequested>() else {
            return Err(HandlerError::Permanent(format!(
                "{} is not a KYC request",
                msg.event.record
            )));
        };
        let req = req.map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let key = idempotency_key(req.envelope.event_id);
        let outcome = self.verify(&req, &key).await?;
        let mut envelope = Envelope::caused_by(&req.envelope, KycVerificationResult::RECORD, SERVICE);
        envelope.idempotency_key = Some(key.clone());
        let (ok, failure) = match outcome {
            Ok(o) => (Some(o), None),
            Err(f) => (None, Some(f)),
        };
        let result = KycVerificationResult {
            envelope,
            subject_id: req.subject_id.clone(),
            partner: req.partner.clone(),
            provider_reference: ok.as_ref().map(|o| o.provider_reference.clone()),
            status: ok.as_ref().map(|o| o.status).unwrap_or(KycStatus::Pending),
            reasons: ok.map(|o| o.reasons).unwrap_or_default(),
            failure,
            shadow: req.shadow,
        };
        tracing::info!(partner = %req.partner, status = ?result.status, failed = result.failure.is_some(), shadow = req.shadow, "kyc verification");
        let record = EventRecord::of(&result).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let reference = result.provider_reference.as_deref();
        finish(
            conn,
            &self.outbox,
            KycVerificationResult::TOPIC,
            &record,
            &key,
            reference,
            result.failure.as_ref(),
        )
        .await
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let rt = service::boot(SERVICE).await?;
    let partners = Partners::load(rt.config_file.as_deref(), &rt.metrics, registry::kyc).map_err(anyhow::Error::msg)?;
    if partners.ids().next().is_none() {
        tracing::warn!("no KYC partners configured: every request will fail with unknown_partner");
    }
    let handler = KycAdapter {
        partners,
        outbox: rt.outbox.clone(),
        pool: rt.pool.clone(),
    };
    let consumer = rt.consumer(SERVICE, &[KycVerificationRequested::TOPIC], handler);
    let tasks = vec![rt.spawn_relay(), rt.spawn_consumer(consumer)];
    rt.serve_until_shutdown(Router::new(), tasks).await
}
