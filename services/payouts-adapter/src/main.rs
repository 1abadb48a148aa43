//! The payouts adapter: consumes `payouts.requests.v1`, executes the payout with the requested
//! partner through the write-ahead effect ledger (the key `sy-<request event id>` committed before
//! the call; a payout whose first attempt may have executed is looked up by our reference, never
//! re-sent under a new key and never sent elsewhere), and emits `payouts.results.v1`. Account numbers
//! never appear in its logs: only the payout id, partner and status.
//!
//! A `PayoutStatusRequested` (the orchestrator's question about a payout left in doubt) is answered
//! by a status query at the partner by our reference, under the same key: never a send. Its result
//! is `FAILED` with `not_executed` only when nothing was committed under the key or the partner has
//! nothing for it; `UNKNOWN` while it still cannot tell.

use std::process::ExitCode;

use axum::Router;
use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::{Failure, FailureClass},
        payouts::{
            AccountScheme, PayoutCancelRequested, PayoutRequested, PayoutResult, PayoutStatus, PayoutStatusRequested,
        },
    },
};
use switchyard_runtime::{
    Handler, HandlerError, Incoming, Outbox,
    effects::{Intent, Ledger},
    provider::idempotency_key,
    service,
};
use switchyard_vendors::{
    adapter::{Partners, Recheck, emit},
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

impl PayoutsAdapter {
    /// What became of the payout `q` asks about: its partner asked by our reference.
    async fn recheck(&self, q: &PayoutStatusRequested) -> Result<Result<PayoutOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&q.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let request_event_id = uuid::Uuid::parse_str(&q.request_event_id)
            .map_err(|e| HandlerError::Permanent(format!("request_event_id: {e}")))?;
        let key = idempotency_key(request_event_id);
        let payout = Payout {
            payout_id: q.payout_id.clone(),
            idempotency_key: key.clone(),
            amount: q.amount.clone(),
            beneficiary: q.beneficiary.clone(),
            reference: q.reference.clone(),
        };
        let found = self
            .partners
            .recheck(
                &self.ledger,
                &key,
                &q.partner,
                |o: &PayoutOutcome| o.provider_reference.clone(),
                |progress| vendor.find(&payout, progress),
            )
            .await?;
        Ok(match found {
            Recheck::Found(o) => Ok(o),
            Recheck::NotExecuted => Err(Failure::new(
                FailureClass::Transient,
                "not_executed",
                format!("{} has no payout for our reference: nothing was paid", q.partner),
            )),
            Recheck::Unknown(why) => Err(Failure::new(FailureClass::Ambiguous, "outcome_unknown", why)),
        })
    }
}

impl PayoutsAdapter {
    /// Cancels the payout `q` names at its partner if it still can (a read-like call: asking twice
    /// is harmless); the payout as the partner has it afterwards, FAILED with `cancelled` if it was.
    async fn cancel(&self, q: &PayoutCancelRequested) -> Result<Result<PayoutOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&q.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let payout = Payout {
            payout_id: q.payout_id.clone(),
            idempotency_key: uuid::Uuid::parse_str(&q.request_event_id)
                .map(idempotency_key)
                .map_err(|e| HandlerError::Permanent(format!("request_event_id: {e}")))?,
            amount: q.amount.clone(),
            beneficiary: q.beneficiary.clone(),
            reference: None,
        };
        let now = self
            .partners
            .call(&q.partner, "cancel", || vendor.cancel(&payout, &q.provider_reference))
            .await;
        Ok(match now {
            Ok(o) if o.status == PayoutStatus::Failed => Err(Failure::new(
                FailureClass::Permanent,
                "cancelled",
                format!("cancelled at {} before it was sent", q.partner),
            )),
            Ok(o) => Ok(o),
            // Could not ask: the payout goes on as it was (the product may ask again).
            Err(f) => {
                tracing::warn!(payout_id = %q.payout_id, code = %f.code, "cancel not delivered");
                Ok(PayoutOutcome {
                    provider_reference: Some(q.provider_reference.clone()),
                    status: PayoutStatus::Unknown,
                })
            }
        })
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

/// A message of `payouts.requests.v1`, ready to be answered.
enum Asked {
    Pay(PayoutRequested, String, Result<PayoutOutcome, Failure>),
    Status(PayoutStatusRequested, Result<PayoutOutcome, Failure>),
    Cancel(PayoutCancelRequested, Result<PayoutOutcome, Failure>),
}

impl Handler for PayoutsAdapter {
    type Prepared = Asked;
    const CALLS_OUT: bool = true;

    async fn prepare(&self, msg: &Incoming) -> Result<Self::Prepared, HandlerError> {
        let perm = |e: switchyard_model::SchemaError| HandlerError::Permanent(e.to_string());
        if let Some(q) = msg.event.as_event::<PayoutStatusRequested>() {
            let q = q.map_err(perm)?;
            let outcome = self.recheck(&q).await?;
            return Ok(Asked::Status(q, outcome));
        }
        if let Some(q) = msg.event.as_event::<PayoutCancelRequested>() {
            let q = q.map_err(perm)?;
            let outcome = self.cancel(&q).await?;
            return Ok(Asked::Cancel(q, outcome));
        }
        let Some(req) = msg.event.as_event::<PayoutRequested>() else {
            return Err(HandlerError::Permanent(format!(
                "{} is not a payout request",
                msg.event.record
            )));
        };
        let req = req.map_err(perm)?;
        let key = idempotency_key(req.envelope.event_id);
        let outcome = match refusal(&req) {
            Some(why) => Err(Failure::new(FailureClass::Permanent, "payout_invalid", why)),
            None => self.execute(&req, &key).await?,
        };
        Ok(Asked::Pay(req, key, outcome))
    }

    async fn handle(&self, conn: &mut PgConnection, _: &Incoming, asked: Self::Prepared) -> Result<(), HandlerError> {
        let (cause, payout_id, partner, key, outcome) = match asked {
            Asked::Pay(req, key, outcome) => (req.envelope, req.payout_id, req.partner, key, outcome),
            Asked::Status(q, outcome) => {
                let key = uuid::Uuid::parse_str(&q.request_event_id)
                    .map(idempotency_key)
                    .unwrap_or_default();
                (q.envelope, q.payout_id, q.partner, key, outcome)
            }
            Asked::Cancel(q, outcome) => {
                let key = uuid::Uuid::parse_str(&q.request_event_id)
                    .map(idempotency_key)
                    .unwrap_or_default();
                (q.envelope, q.payout_id, q.partner, key, outcome)
            }
        };
        let mut envelope = Envelope::caused_by(&cause, PayoutResult::RECORD, SERVICE);
        envelope.idempotency_key = Some(key);
        let result = match outcome {
            Ok(o) => PayoutResult {
                envelope,
                payout_id: payout_id.clone(),
                partner: partner.clone(),
                provider_reference: o.provider_reference,
                status: o.status,
                failure: None,
            },
            Err(f) => PayoutResult {
                envelope,
                payout_id: payout_id.clone(),
                partner: partner.clone(),
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
        tracing::info!(%payout_id, %partner, status = ?result.status,
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
    if !rt.serving() {
        return Ok(());
    }
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
