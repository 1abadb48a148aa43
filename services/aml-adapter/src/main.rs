//! The AML adapter: consumes `aml.requests.v1`, screens the person with the requested partner
//! (retries, circuit breaker, rate limit, attempt ledger), and emits `aml.results.v1`.

use std::{collections::HashMap, process::ExitCode, sync::Arc};

use axum::Router;
use sqlx::{PgConnection, PgPool};
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        aml::{AmlScreeningRequested, AmlScreeningResult, ScreeningStatus},
        common::{Failure, FailureClass},
    },
};
use switchyard_runtime::{
    Handler, HandlerError, Incoming, Outbox, ServiceConfig,
    provider::{Attempts, CallError, Caller, PolicyConfig, ProviderMetrics, idempotency_key},
    service,
};
use switchyard_vendors::{
    aml::{AmlOutcome, AmlVendor, Subject},
    registry::{self, PartnerConnection},
};

const SERVICE: &str = "aml-adapter";

struct AmlAdapter {
    vendors: HashMap<String, Arc<dyn AmlVendor>>,
    caller: Caller,
    outbox: Outbox,
    pool: PgPool,
}

impl AmlAdapter {
    async fn screen(
        &self,
        req: &AmlScreeningRequested,
        key: &str,
    ) -> Result<(Option<AmlOutcome>, Option<Failure>), HandlerError> {
        let Some(vendor) = self.vendors.get(&req.partner) else {
            return Ok((
                None,
                Some(Failure::new(
                    FailureClass::ManualRepair,
                    "unknown_partner",
                    format!("no AML partner {} is configured", req.partner),
                )),
            ));
        };
        Attempts::begin(
            &self.pool,
            key,
            &req.partner,
            req.envelope.event_id,
            &req.envelope.flow_id,
        )
        .await?;
        let subject = Subject {
            subject_id: req.subject_id.clone(),
            idempotency_key: key.to_string(),
            person: req.person.clone(),
        };
        Ok(
            match self
                .caller
                .call(&req.partner, "screen", || vendor.screen(&subject))
                .await
            {
                Ok(outcome) => (Some(outcome), None),
                Err(CallError::CircuitOpen) => (
                    None,
                    Some(Failure::new(
                        FailureClass::Transient,
                        "circuit_open",
                        format!("{} is failing; circuit open", req.partner),
                    )),
                ),
                Err(CallError::Failed(e)) => (None, Some(e.to_failure())),
            },
        )
    }
}

impl Handler for AmlAdapter {
    async fn handle(&self, conn: &mut PgConnection, msg: &Incoming) -> Result<(), HandlerError> {
        let Some(req) = msg.event.as_event::<AmlScreeningRequested>() else {
            return Err(HandlerError::Permanent(format!(
                "{} is not an AML request",
                msg.event.record
            )));
        };
        let req = req.map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let key = idempotency_key(req.envelope.event_id);
        let (outcome, failure) = self.screen(&req, &key).await?;
        let mut envelope = Envelope::caused_by(&req.envelope, AmlScreeningResult::RECORD, SERVICE);
        envelope.idempotency_key = Some(key.clone());
        let result = AmlScreeningResult {
            envelope,
            subject_id: req.subject_id.clone(),
            partner: req.partner.clone(),
            provider_reference: outcome.as_ref().and_then(|o| o.provider_reference.clone()),
            status: outcome.as_ref().map(|o| o.status).unwrap_or(ScreeningStatus::Pending),
            hits: outcome.as_ref().map(|o| o.hits.clone()).unwrap_or_default(),
            failure: failure.clone(),
            shadow: req.shadow,
        };
        tracing::info!(partner = %req.partner, status = ?result.status, failed = failure.is_some(), shadow = req.shadow, "aml screening");
        let record = EventRecord::of(&result).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        self.outbox
            .enqueue(conn, AmlScreeningResult::TOPIC, &record)
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
        let v = registry::aml(p).map_err(|e| anyhow::anyhow!("configuration field `{e}`"))?;
        caller.set_rate_limit(&p.id, p.rate_limit_per_second);
        vendors.insert(p.id.clone(), v);
    }
    tracing::info!(partners = ?vendors.keys().collect::<Vec<_>>(), "aml partners");
    let handler = AmlAdapter {
        vendors,
        caller,
        outbox: rt.outbox.clone(),
        pool: rt.pool.clone(),
    };
    let consumer = rt.consumer(SERVICE, &[AmlScreeningRequested::TOPIC], handler);
    let tasks = vec![rt.spawn_relay(), rt.spawn_consumer(consumer)];
    rt.serve_until_shutdown(Router::new(), tasks).await
}
