//! The KYC adapter: consumes `kyc.requests.v1`, verifies the person with the requested partner
//! (retries, circuit breaker, rate limit, attempt ledger), and emits `kyc.results.v1`.
//!
//! Partners come from the `[[partners]]` section of the config file (see README); adding a vendor
//! touches `switchyard-vendors` (its folder and the registry) and this configuration only.

use std::{collections::HashMap, process::ExitCode, sync::Arc};

use axum::Router;
use sqlx::{PgConnection, PgPool};
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::{Failure, FailureClass},
        kyc::{KycStatus, KycVerificationRequested, KycVerificationResult},
    },
};
use switchyard_runtime::{
    Handler, HandlerError, Incoming, Outbox, ServiceConfig,
    provider::{Attempts, CallError, Caller, PolicyConfig, ProviderMetrics, idempotency_key},
    service,
};
use switchyard_vendors::{
    VendorError,
    kyc::{Applicant, KycOutcome, KycVendor},
    registry::{self, PartnerConnection},
};

const SERVICE: &str = "kyc-adapter";

struct KycAdapter {
    vendors: HashMap<String, Arc<dyn KycVendor>>,
    caller: Caller,
    outbox: Outbox,
    pool: PgPool,
}

impl KycAdapter {
    async fn verify(
        &self,
        req: &KycVerificationRequested,
        key: &str,
    ) -> Result<(Option<KycOutcome>, Option<Failure>), HandlerError> {
        let Some(vendor) = self.vendors.get(&req.partner) else {
            return Ok((
                None,
                Some(Failure::new(
                    FailureClass::ManualRepair,
                    "unknown_partner",
                    format!("no KYC partner {} is configured", req.partner),
                )),
            ));
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
        let reference = earlier.and_then(|e| e.provider_reference);
        let result = match &reference {
            Some(r) => self.caller.call(&req.partner, "status", || vendor.status(r)).await,
            None => {
                self.caller
                    .call(&req.partner, "verify", || vendor.start(&applicant))
                    .await
            }
        };
        Ok(match result {
            Ok(outcome) => (Some(outcome), None),
            Err(CallError::CircuitOpen) => (
                None,
                Some(Failure::new(
                    FailureClass::Transient,
                    "circuit_open",
                    format!("{} is failing; circuit open", req.partner),
                )),
            ),
            Err(CallError::Failed(e)) => (None, Some(failure(&e))),
        })
    }
}

fn failure(e: &VendorError) -> Failure {
    e.to_failure()
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
        let (outcome, failure) = self.verify(&req, &key).await?;
        let mut envelope = Envelope::caused_by(&req.envelope, KycVerificationResult::RECORD, SERVICE);
        envelope.idempotency_key = Some(key.clone());
        let result = KycVerificationResult {
            envelope,
            subject_id: req.subject_id.clone(),
            partner: req.partner.clone(),
            provider_reference: outcome.as_ref().map(|o| o.provider_reference.clone()),
            status: outcome.as_ref().map(|o| o.status).unwrap_or(KycStatus::Pending),
            reasons: outcome.as_ref().map(|o| o.reasons.clone()).unwrap_or_default(),
            failure: failure.clone(),
            shadow: req.shadow,
        };
        tracing::info!(partner = %req.partner, status = ?result.status, failed = failure.is_some(), shadow = req.shadow, "kyc verification");
        let record = EventRecord::of(&result).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        self.outbox
            .enqueue(conn, KycVerificationResult::TOPIC, &record)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        Attempts::finish(
            conn,
            &key,
            failure.is_none(),
            result.provider_reference.as_deref(),
            failure.as_ref().map(|f| f.message.as_str()),
        )
        .await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let rt = service::boot(SERVICE).await?;
    let partners: Vec<PartnerConnection> = ServiceConfig::section(rt.config_file.as_deref(), "partners", Vec::new())?;
    let policy: PolicyConfig = ServiceConfig::section(rt.config_file.as_deref(), "provider", PolicyConfig::default())?;
    let caller = Caller::new(policy.policy(), ProviderMetrics::register(&rt.metrics));
    let mut vendors = HashMap::new();
    for p in &partners {
        let v = registry::kyc(p).map_err(|e| anyhow::anyhow!("configuration field `{e}`"))?;
        caller.set_rate_limit(&p.id, p.rate_limit_per_second);
        vendors.insert(p.id.clone(), v);
    }
    if vendors.is_empty() {
        tracing::warn!("no KYC partners configured: every request will fail with unknown_partner");
    }
    tracing::info!(partners = ?vendors.keys().collect::<Vec<_>>(), "kyc partners");
    let handler = KycAdapter {
        vendors,
        caller,
        outbox: rt.outbox.clone(),
        pool: rt.pool.clone(),
    };
    let consumer = rt.consumer(SERVICE, &[KycVerificationRequested::TOPIC], handler);
    let tasks = vec![rt.spawn_relay(), rt.spawn_consumer(consumer)];
    rt.serve_until_shutdown(Router::new(), tasks).await
}
