//! The card flow (issue → activate → freeze / unfreeze → terminate; processor events) in the same
//! shape as the others:
//!
//! * [`state`]: the card, inputs and effects;
//! * [`transition`]: the pure `step(card, input, ctx) -> (card, effects)`;
//! * [`store`]: the card row, its tokens and history;
//! * this module: messages read into inputs, effects carried out in the same transaction.
//!
//! Transactions are relayed, not decided here: the cards adapter decides authorizations from its
//! own store (`CardAuthorizationDecided`), and each becomes a `CardTransaction` for products with
//! the card's id; clearings and reversals from the processor's webhooks become `CardTransaction`s
//! and go to the adapter to settle or release the hold (`ApplyCardTransaction`), as does an
//! authorization the processor reports that the adapter may never have decided (its stand-in).

pub mod state;
pub mod store;
pub mod transition;

#[cfg(test)]
mod tests;

use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        cards::{
            ApplyCardTransaction, CardAuthorizationDecided, CardEventKind, CardOperation, CardOperationRequested,
            CardOperationResult, CardProcessorEvent, CardState, CardStateChanged, CardTransaction, CardTransactionKind,
            RequestCardOperation,
        },
        common::{Failure, FailureClass},
    },
};
use switchyard_runtime::{HandlerError, Incoming, Outbox};

use self::{
    state::{Answer, Card, Effect, Input, Op},
    store::{Flow, IssueOrder},
    transition::Ctx,
};
use crate::routing::{Routing, Subject};

const SERVICE: &str = "orchestrator";

type R<T> = Result<T, HandlerError>;

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

#[derive(Clone)]
pub struct Cards {
    pub routing: Routing,
    pub outbox: Outbox,
    /// Seconds before a failed read of a card at its processor is made again (`[cards]
    /// reread_seconds`).
    pub reread_after: u64,
}

impl Cards {
    /// Handles `msg` if it is the card flow's; false otherwise.
    pub async fn handle(&self, conn: &mut PgConnection, msg: &Incoming) -> R<bool> {
        let e = &msg.event;
        if let Some(c) = e.as_event::<RequestCardOperation>() {
            self.command(conn, c.map_err(perm)?).await?;
        } else if let Some(r) = e.as_event::<CardOperationResult>() {
            self.result(conn, r.map_err(perm)?).await?;
        } else if let Some(d) = e.as_event::<CardAuthorizationDecided>() {
            self.decided(conn, d.map_err(perm)?).await?;
        } else if let Some(p) = e.as_event::<CardProcessorEvent>() {
            self.processor(conn, p.map_err(perm)?).await?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn candidates(&self, flow: &Flow) -> Vec<String> {
        let subject = Subject::plain(&flow.flow_id, &flow.tenant_id);
        self.routing
            .get()
            .decide("cards", &subject)
            .map(|d| d.candidates)
            .unwrap_or_default()
    }

    async fn command(&self, conn: &mut PgConnection, c: RequestCardOperation) -> R<()> {
        let tenant = c.envelope.tenant_id.clone();
        let card_id = match (&c.card_id, &c.card_token) {
            (Some(id), _) => id.clone(),
            (None, Some(token)) => match store::flow_of_tenant_token(conn, &tenant, token).await? {
                Some(flow_id) => return self.feed(conn, &flow_id, Input::Command(op_of(&c)), &c.envelope).await,
                None => return self.unknown_card(conn, &c).await,
            },
            (None, None) => return Err(perm("a card command must name its card_id (or an existing card_token)")),
        };
        let flow_id = store::flow_id(&tenant, &card_id);
        if c.operation != CardOperation::Issue {
            if store::load(conn, &flow_id).await?.is_none() {
                return self.unknown_card(conn, &c).await;
            }
            return self.feed(conn, &flow_id, Input::Command(op_of(&c)), &c.envelope).await;
        }
        let flow = Flow {
            flow_id: flow_id.clone(),
            tenant_id: tenant,
            card_id,
            cardholder_id: c.cardholder_id.clone(),
            correlation_id: c.envelope.correlation_id.clone(),
            order: IssueOrder {
                cardholder: c.cardholder.clone(),
                product: c.product.clone(),
                form_factor: c.form_factor,
                controls: c.controls.clone(),
                funding: c.funding.clone(),
                spend_limit: c.spend_limit.clone(),
            },
        };
        let placeholder = Card::new(c.form_factor);
        if !store::insert(conn, &flow, &placeholder).await? {
            // The same card asked for again: the flow notes it, nothing more.
            return self.feed(conn, &flow_id, Input::Command(op_of(&c)), &c.envelope).await;
        }
        let candidates = self.candidates(&flow);
        let ctx = Ctx {
            candidates: &candidates,
            next_request: uuid::Uuid::now_v7(),
            reread_after: self.reread_after,
        };
        let (card, mut effects) = transition::start(op_of(&c), c.form_factor, &ctx);
        effects.insert(
            0,
            Effect::Note(
                "card_requested",
                serde_json::json!({"command": c.envelope.event_id.to_string(), "candidates": candidates}),
            ),
        );
        self.apply(conn, &flow, &card, effects, &c.envelope).await
    }

    /// A command about a card the tenant does not have: answered with a failure.
    async fn unknown_card(&self, conn: &mut PgConnection, c: &RequestCardOperation) -> R<()> {
        let mut envelope = Envelope::caused_by(&c.envelope, CardStateChanged::RECORD, SERVICE);
        envelope.causation_id = Some(c.envelope.event_id.to_string());
        let out = CardStateChanged {
            envelope,
            cardholder_id: c.cardholder_id.clone(),
            card_token: c.card_token.clone().unwrap_or_default(),
            state: CardState::Requested,
            partner: String::new(),
            card_id: c.card_id.clone(),
            operation: Some(c.operation),
            last4: None,
            form_factor: None,
            failure: Some(Failure::new(
                FailureClass::Permanent,
                "card_unknown",
                "no such card for this tenant",
            )),
        };
        self.outbox
            .enqueue(conn, CardStateChanged::TOPIC, &EventRecord::of(&out).map_err(perm)?)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        Ok(())
    }

    async fn feed(&self, conn: &mut PgConnection, flow_id: &str, input: Input, cause: &Envelope) -> R<()> {
        let Some((flow, card)) = store::load(conn, flow_id).await? else {
            tracing::warn!(flow_id, "input for an unknown card ignored");
            return Ok(());
        };
        let candidates = self.candidates(&flow);
        let ctx = Ctx {
            candidates: &candidates,
            next_request: uuid::Uuid::now_v7(),
            reread_after: self.reread_after,
        };
        let (next, effects) = transition::step(&card, input, &ctx);
        self.apply(conn, &flow, &next, effects, cause).await
    }

    /// The card's timer fired: its flow row is locked by the caller's transaction.
    pub async fn timed_out(&self, conn: &mut PgConnection, flow_id: &str) -> R<()> {
        let Some((flow, _)) = store::load(conn, flow_id).await? else {
            return Ok(());
        };
        let cause = Envelope::new(
            "com.switchyard.orchestrator.Timer",
            flow.tenant_id,
            flow_id.to_string(),
            SERVICE,
        );
        self.feed(conn, flow_id, Input::Timer, &cause).await
    }

    async fn result(&self, conn: &mut PgConnection, r: CardOperationResult) -> R<()> {
        let Some(request) = r
            .envelope
            .idempotency_key
            .as_deref()
            .and_then(|k| k.strip_prefix("sy-"))
            .and_then(|k| uuid::Uuid::parse_str(k).ok())
        else {
            return Err(perm("a card result without its request's key"));
        };
        let answer = Answer {
            request,
            partner: r.partner.clone(),
            card_token: r.card_token.clone(),
            last4: r.last4.clone(),
            state: r.state,
            failure: r.failure.clone(),
        };
        let flow_id = r.envelope.flow_id.clone();
        self.feed(conn, &flow_id, Input::Answer(answer), &r.envelope).await
    }

    /// The adapter's authorization decision, for products (with the card's id).
    async fn decided(&self, conn: &mut PgConnection, d: CardAuthorizationDecided) -> R<()> {
        let card_id = store::card_of_token(conn, &d.partner, &d.card_token)
            .await?
            .map(|(_, card_id)| card_id);
        let mut envelope = Envelope::caused_by(&d.envelope, CardTransaction::RECORD, SERVICE);
        envelope.idempotency_key = d.envelope.idempotency_key.clone();
        let out = CardTransaction {
            envelope,
            card_id,
            card_token: d.card_token,
            partner: d.partner,
            kind: CardTransactionKind::Authorization,
            provider_transaction_id: d.provider_transaction_id,
            amount: d.amount,
            merchant: Some(d.merchant),
            approved: Some(d.approved),
            decline_reason: d.decline_reason,
            latency_ms: Some(d.latency_ms),
            fallback: d.fallback,
        };
        self.outbox
            .enqueue(conn, CardTransaction::TOPIC, &EventRecord::of(&out).map_err(perm)?)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        Ok(())
    }

    async fn processor(&self, conn: &mut PgConnection, p: CardProcessorEvent) -> R<()> {
        let Some((flow_id, card_id)) = store::card_of_token(conn, &p.partner, &p.card_token).await? else {
            tracing::info!(partner = %p.partner, card = %p.card_token, kind = ?p.kind,
                "processor event for a card the mesh did not issue; ignored");
            return Ok(());
        };
        if p.kind == CardEventKind::StatusChange {
            let Some(s) = p.state else {
                return Ok(());
            };
            return self.feed(conn, &flow_id, Input::ProcessorState(s), &p.envelope).await;
        }
        let (Some(txn), Some(amount)) = (p.provider_transaction_id.clone(), p.amount.clone()) else {
            return Err(perm("a card transaction event without its transaction id or amount"));
        };
        let kind = match p.kind {
            CardEventKind::Clearing => CardTransactionKind::Clearing,
            CardEventKind::Reversal => CardTransactionKind::Reversal,
            _ => CardTransactionKind::Authorization,
        };
        let (tenant, correlation) = store::load(conn, &flow_id)
            .await?
            .map(|(f, _)| (f.tenant_id, f.correlation_id))
            .unwrap_or_default();
        let mut out: Vec<(&'static str, EventRecord)> = Vec::new();
        let env = |record: &str| {
            let mut e = Envelope::new(record, tenant.clone(), flow_id.clone(), SERVICE);
            e.correlation_id = correlation.clone();
            e.causation_id = Some(p.envelope.event_id.to_string());
            e
        };
        // The adapter settles or releases its hold, or records an authorization it never decided.
        out.push((
            ApplyCardTransaction::TOPIC,
            EventRecord::of(&ApplyCardTransaction {
                envelope: env(ApplyCardTransaction::RECORD),
                partner: p.partner.clone(),
                card_token: p.card_token.clone(),
                kind,
                provider_transaction_id: txn.clone(),
                amount: amount.clone(),
                approved: p.decline_reason.is_none(),
                decline_reason: p.decline_reason.clone(),
                merchant: p.merchant.clone(),
            })
            .map_err(perm)?,
        ));
        // Authorizations reach products from the adapter's decision (one source for each).
        if kind != CardTransactionKind::Authorization {
            out.push((
                CardTransaction::TOPIC,
                EventRecord::of(&CardTransaction {
                    envelope: env(CardTransaction::RECORD),
                    card_id: Some(card_id),
                    card_token: p.card_token.clone(),
                    partner: p.partner.clone(),
                    kind,
                    provider_transaction_id: txn,
                    amount,
                    merchant: p.merchant.clone(),
                    approved: None,
                    decline_reason: None,
                    latency_ms: None,
                    fallback: false,
                })
                .map_err(perm)?,
            ));
        }
        self.outbox
            .enqueue_all(conn, &out)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }

    /// Carries out a step's effects in the transaction: requests and outcomes to the outbox, the
    /// card's tokens and history.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        flow: &Flow,
        card: &Card,
        effects: Vec<Effect>,
        cause: &Envelope,
    ) -> R<()> {
        let mut out: Vec<(&'static str, EventRecord)> = Vec::new();
        let mut history = Vec::new();
        for effect in effects {
            match effect {
                Effect::Note(event, detail) => history.push((event, detail)),
                Effect::Timer(after) => crate::timers::CARDS.set(conn, &flow.flow_id, after).await?,
                Effect::Token { partner, card_token } => {
                    store::remember_token(conn, &partner, &card_token, &flow.flow_id).await?;
                }
                Effect::Request {
                    op,
                    partner,
                    request,
                    attempt,
                } => {
                    let mut e = envelope(flow, CardOperationRequested::RECORD, cause);
                    // The request's event id is the operation's key at the adapter.
                    e.event_id = request;
                    let issue = op.operation == CardOperation::Issue;
                    let o = &flow.order;
                    let req = CardOperationRequested {
                        envelope: e,
                        cardholder_id: flow.cardholder_id.clone(),
                        operation: op.operation,
                        card_token: card.card_token.clone(),
                        cardholder: if issue { o.cardholder.clone() } else { None },
                        spend_limit: if issue { o.spend_limit.clone() } else { None },
                        partner,
                        attempt,
                        card_id: Some(flow.card_id.clone()),
                        product: if issue { o.product.clone() } else { None },
                        form_factor: card.form_factor,
                        controls: if issue { o.controls.clone() } else { None },
                        funding: if issue { o.funding.clone() } else { None },
                        reason: op.reason.clone(),
                    };
                    out.push((CardOperationRequested::TOPIC, EventRecord::of(&req).map_err(perm)?));
                }
                Effect::Changed { operation, failure } => {
                    let changed = CardStateChanged {
                        envelope: envelope(flow, CardStateChanged::RECORD, cause),
                        cardholder_id: flow.cardholder_id.clone(),
                        card_token: card.card_token.clone().unwrap_or_default(),
                        state: card.state,
                        partner: card.partner.clone().unwrap_or_default(),
                        card_id: Some(flow.card_id.clone()),
                        operation,
                        last4: card.last4.clone(),
                        form_factor: card.form_factor,
                        failure,
                    };
                    out.push((CardStateChanged::TOPIC, EventRecord::of(&changed).map_err(perm)?));
                }
            }
        }
        store::save(conn, flow, card, &history).await?;
        self.outbox
            .enqueue_all(conn, &out)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }
}

fn op_of(c: &RequestCardOperation) -> Op {
    Op {
        operation: c.operation,
        command: c.envelope.event_id,
        reason: c.reason.clone(),
    }
}

fn envelope(flow: &Flow, record: &str, cause: &Envelope) -> Envelope {
    let mut e = Envelope::new(record, flow.tenant_id.clone(), flow.flow_id.clone(), SERVICE);
    e.correlation_id = flow.correlation_id.clone();
    e.causation_id = Some(cause.event_id.to_string());
    e
}
