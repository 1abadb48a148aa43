//! The payouts adapter: consumes `payouts.requests.v1`, executes the payout with the requested
//! partner through the write-ahead effect ledger (the key `sy-<request event id>` committed before
//! the call; a payout whose first attempt may have executed is looked up by our reference, never
//! re-sent under a new key and never sent elsewhere), and emits `payouts.results.v1`. Account numbers
//! never appear in its logs: only the payout id, partner and status.

use std::process::ExitCode;

use axum::Router;
use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::{Failure, FailureClass},
        payouts::{AccountScheme, PayoutRequested, PayoutResult, PayoutStatus},
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
    payouts::{Payout, PayoutOutcome, PayoutVendor},
    registry,
};

const SERVICE: &str = "payouts-adapter";

struct PayoutsAdapter {
    partners: Partners<dyn PayoutVendor>,
    outbox: Outbox,
    ledger: Ledger,
}

impl PayoutsAdapter {
    async fn execute(&self, req: &PayoutRequested, key: &str) -> Result<Result<PayoutOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&req.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let payout = Payout {
            payout_id: req.payout_id.clone(),
            idempotency_key: key.to_string(),
            amount: req.amount.clone(),
            beneficiary: req.beneficiary.clone(),
            reference: req.reference.clone(),
        };
        let intent = Intent {
            key,
            partner: &req.partner,
            operation: "payout",
            request_event_id: req.envelope.event_id,
            flow_id: &req.envelope.flow_id,
        };
        self.partners
            .effect(
                &self.ledger,
                intent,
                |o: &PayoutOutcome| o.provider_reference.clone(),
                |progress| vendor.initiate(&payout, progress),
                |progress| vendor.find(&payout, progress),
            )
            .await
    }
}

/// Why a request cannot be paid as it stands (checked before any call).
fn refusal(req: &PayoutRequested) -> Option<String> {
    if switchyard_model::money::exponent(&req.amount.currency).is_none() {
        return Some(format!("{} is not an ISO 4217 currency", req.amount.currency));
    }
    if req.amount.amount_minor <= 0 {
        return Some("the amount must be positive".into());
    }
    let account = &req.beneficiary.account;
    if account.scheme == AccountScheme::Iban && !switchyard_model::events::payouts::iban_valid(&account.value) {
        return Some(format!("IBAN {} fails its check digits", account.masked()));
    }
    None
}

impl Handler for PayoutsAdapter {
    type Prepared = (PayoutRequested, String, Result<PayoutOutcome, Failure>);
    const CALLS_OUT: bool = true;

    async fn prepare(&self, msg: &Incoming) -> Result<Self::Prepared, HandlerError> {
        let Some(req) = msg.event.as_event::<PayoutRequested>() else {
            return Err(HandlerError::Permanent(format!(
                "{} is not a payout request",
                msg.event.record
            )));
        };
        let req = req.map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let key = idempotency_key(req.envelope.event_id);
        let outcome = match refusal(&req) {
            Some(why) => Err(Failure::new(FailureClass::Permanent, "payout_invalid", why)),
            None => self.execute(&req, &key).await?,
        };
        Ok((req, key, outcome))
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        _: &Incoming,
        (req, key, outcome): Self::Prepared,
    ) -> Result<(), HandlerError> {
        let mut envelope = Envelope::caused_by(&req.envelope, PayoutResult::RECORD, SERVICE);
        envelope.idempotency_key = Some(key);
        let result = match outcome {
            Ok(o) => PayoutResult {
                envelope,
                payout_id: req.payout_id.clone(),
                partner: req.partner.clone(),
                provider_reference: o.provider_reference,
                status: o.status,
                failure: None,
            },
            Err(f) => PayoutResult {
                envelope,
                payout_id: req.payout_id.clone(),
                partner: req.partner.clone(),
                provider_reference: None,
                // An outcome an operator must find out is not a failure: the money may have moved.
                status: if matches!(f.failure_class, FailureClass::ManualRepair | FailureClass::Ambiguous) {
                    PayoutStatus::Unknown
                } else {
                    PayoutStatus::Failed
                },
                failure: Some(f),
            },
        };
        tracing::info!(payout_id = %req.payout_id, partner = %req.partner, status = ?result.status,
            failure = ?result.failure.as_ref().map(|f| f.code.as_str()), "payout");
        let record = EventRecord::of(&result).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        emit(conn, &self.outbox, PayoutResult::TOPIC, &record).await
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let rt = service::boot(SERVICE).await?;
    let partners = Partners::load(rt.config_file.as_deref(), &rt.metrics, &rt.pool, registry::payouts)
        .map_err(anyhow::Error::msg)?;
    let handler = PayoutsAdapter {
        partners,
        outbox: rt.outbox.clone(),
        ledger: Ledger::new(rt.pool.clone()),
    };
    let consumer = rt.consumer(SERVICE, &[PayoutRequested::TOPIC], handler);
    let tasks = vec![
        rt.spawn_relay(),
        rt.spawn_consumer(consumer),
        rt.spawn_retention(vec![])?,
    ];
    rt.serve_until_shutdown(Router::new(), tasks).await
}
