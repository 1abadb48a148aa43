//! The fraud adapter: consumes `fraud.requests.v1`, scores the transaction with the requested
//! partner (retries, circuit breaker, shared rate limit, write-ahead effect ledger: a redelivered
//! request replays the recorded score), and emits `fraud.results.v1` in canonical terms: a score
//! 0–1000, its band, a decision hint (allow, review, deny) and canonical reason codes.

use std::process::ExitCode;

use axum::Router;
use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::Failure,
        fraud::{FraudDecision, FraudScoreRequested, FraudScoreResult},
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
    fraud::{FraudOutcome, FraudVendor, Transaction},
    registry,
};

const SERVICE: &str = "fraud-adapter";

struct FraudAdapter {
    partners: Partners<dyn FraudVendor>,
    outbox: Outbox,
    ledger: Ledger,
}

impl FraudAdapter {
    async fn score(&self, req: &FraudScoreRequested, key: &str) -> Result<Result<FraudOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&req.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let tx = Transaction {
            transaction_id: req.transaction_id.clone(),
            customer_id: req.customer_id.clone(),
            amount: req.amount.clone(),
            counterparty_id: req.counterparty_id.clone(),
            channel: req.channel,
            device_id: req.device_id.clone(),
        };
        let intent = Intent {
            key,
            partner: &req.partner,
            operation: "score",
            request_event_id: req.envelope.event_id,
            flow_id: &req.envelope.flow_id,
        };
        self.partners
            .effect(
                &self.ledger,
                intent,
                |o: &FraudOutcome| o.provider_reference.clone(),
                |_| vendor.score(&tx),
                |_| vendor.recover(&tx),
            )
            .await
    }
}

impl Handler for FraudAdapter {
    type Prepared = (FraudScoreRequested, String, Result<FraudOutcome, Failure>);
    const CALLS_OUT: bool = true;

    async fn prepare(&self, msg: &Incoming) -> Result<Self::Prepared, HandlerError> {
        let Some(req) = msg.event.as_event::<FraudScoreRequested>() else {
            return Err(HandlerError::Permanent(format!(
                "{} is not a fraud scoring request",
                msg.event.record
            )));
        };
        let req = req.map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if switchyard_model::money::exponent(&req.amount.currency).is_none() || req.amount.amount_minor < 0 {
            return Err(HandlerError::Permanent(format!(
                "amount {} {}: not a non-negative amount of an ISO 4217 currency",
                req.amount.amount_minor, req.amount.currency
            )));
        }
        let key = idempotency_key(req.envelope.event_id);
        let outcome = self.score(&req, &key).await?;
        Ok((req, key, outcome))
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        _: &Incoming,
        (req, key, outcome): Self::Prepared,
    ) -> Result<(), HandlerError> {
        let mut envelope = Envelope::caused_by(&req.envelope, FraudScoreResult::RECORD, SERVICE);
        envelope.idempotency_key = Some(key);
        let result = match outcome {
            Ok(o) => FraudScoreResult {
                envelope,
                transaction_id: req.transaction_id.clone(),
                partner: req.partner.clone(),
                provider_reference: o.provider_reference.clone(),
                score: o.score,
                band: Some(o.band()),
                decision: o.decision,
                reasons: o.reasons,
                failure: None,
                shadow: req.shadow,
            },
            // No score: the flow's policy decides (fail closed by default); the hint says review.
            Err(f) => FraudScoreResult {
                envelope,
                transaction_id: req.transaction_id.clone(),
                partner: req.partner.clone(),
                provider_reference: None,
                score: 0,
                band: None,
                decision: FraudDecision::Review,
                reasons: Vec::new(),
                failure: Some(f),
                shadow: req.shadow,
            },
        };
        tracing::info!(partner = %req.partner, score = result.score, decision = ?result.decision,
            failed = result.failure.is_some(), shadow = req.shadow, "fraud score");
        let record = EventRecord::of(&result).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        emit(conn, &self.outbox, FraudScoreResult::TOPIC, &record).await
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
    let partners = Partners::load(rt.config_file.as_deref(), &rt.metrics, &rt.pool, registry::fraud)
        .map_err(anyhow::Error::msg)?;
    let handler = FraudAdapter {
        partners,
        outbox: rt.outbox.clone(),
        ledger: Ledger::new(rt.pool.clone()),
    };
    let consumer = rt.consumer(SERVICE, &[FraudScoreRequested::TOPIC], handler);
    let tasks = vec![
        rt.spawn_relay(),
        rt.spawn_consumer(consumer),
        rt.spawn_retention(vec![])?,
    ];
    rt.serve_until_shutdown(Router::new(), tasks).await
}
