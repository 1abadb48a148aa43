//! The AML adapter: consumes `aml.requests.v1`, screens the person with the requested partner
//! (retries, circuit breaker, rate limit, write-ahead effect ledger), and emits `aml.results.v1`.

use std::process::ExitCode;

use axum::Router;
use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        aml::{AmlScreeningRequested, AmlScreeningResult, ScreeningStatus},
        common::Failure,
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
    aml::{AmlOutcome, AmlVendor, Subject},
    registry,
};

const SERVICE: &str = "aml-adapter";

struct AmlAdapter {
    partners: Partners<dyn AmlVendor>,
    outbox: Outbox,
    ledger: Ledger,
}

impl AmlAdapter {
    /// Screens through the effect ledger: at most one screening per request.
    async fn screen(
        &self,
        req: &AmlScreeningRequested,
        key: &str,
    ) -> Result<Result<AmlOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&req.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let subject = Subject {
            subject_id: req.subject_id.clone(),
            idempotency_key: key.to_string(),
            person: req.person.clone(),
        };
        let intent = Intent {
            key,
            partner: &req.partner,
            operation: "screen",
            request_event_id: req.envelope.event_id,
            flow_id: &req.envelope.flow_id,
        };
        self.partners
            .effect(
                &self.ledger,
                intent,
                |o: &AmlOutcome| o.provider_reference.clone(),
                |_| vendor.screen(&subject),
                |_| vendor.recover(&subject),
            )
            .await
    }
}

impl Handler for AmlAdapter {
    type Prepared = (AmlScreeningRequested, String, Result<AmlOutcome, Failure>);
    const CALLS_OUT: bool = true;

    async fn prepare(&self, msg: &Incoming) -> Result<Self::Prepared, HandlerError> {
        let Some(req) = msg.event.as_event::<AmlScreeningRequested>() else {
            return Err(HandlerError::Permanent(format!(
                "{} is not an AML request",
                msg.event.record
            )));
        };
        let req = req.map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let key = idempotency_key(req.envelope.event_id);
        let outcome = self.screen(&req, &key).await?;
        Ok((req, key, outcome))
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        _: &Incoming,
        (req, key, outcome): Self::Prepared,
    ) -> Result<(), HandlerError> {
        let mut envelope = Envelope::caused_by(&req.envelope, AmlScreeningResult::RECORD, SERVICE);
        envelope.idempotency_key = Some(key);
        let (ok, failure) = match outcome {
            Ok(o) => (Some(o), None),
            Err(f) => (None, Some(f)),
        };
        let result = AmlScreeningResult {
            envelope,
            subject_id: req.subject_id.clone(),
            partner: req.partner.clone(),
            provider_reference: ok.as_ref().and_then(|o| o.provider_reference.clone()),
            status: ok.as_ref().map(|o| o.status).unwrap_or(ScreeningStatus::Pending),
            hits: ok.map(|o| o.hits).unwrap_or_default(),
            failure,
            shadow: req.shadow,
        };
        tracing::info!(partner = %req.partner, status = ?result.status, failed = result.failure.is_some(), shadow = req.shadow, "aml screening");
        let record = EventRecord::of(&result).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        emit(conn, &self.outbox, AmlScreeningResult::TOPIC, &record).await
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
        Partners::load(rt.config_file.as_deref(), &rt.metrics, &rt.pool, registry::aml).map_err(anyhow::Error::msg)?;
    let handler = AmlAdapter {
        partners,
        outbox: rt.outbox.clone(),
        ledger: Ledger::new(rt.pool.clone()),
    };
    let consumer = rt.consumer(SERVICE, &[AmlScreeningRequested::TOPIC], handler);
    let tasks = vec![
        rt.spawn_relay(),
        rt.spawn_consumer(consumer),
        rt.spawn_retention(vec![])?,
    ];
    rt.serve_until_shutdown(Router::new(), tasks).await
}
