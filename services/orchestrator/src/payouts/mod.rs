//! The payout flow (validate → velocity → fraud screening → route → pay → settled / failed /
//! returned) and standalone fraud scores, in the same shape as onboarding:
//!
//! * [`state`]: states (each carries its live execution), inputs and effects;
//! * [`transition`]: the pure `step(state, input, ctx) -> (state, effects)`;
//! * [`store`]: the payout row, references, parked notices, timers and velocity (all SQL);
//! * this module: messages and timers read into inputs, effects carried out in the same
//!   transaction (outbox rows, timers, history).

pub mod state;
pub mod store;
pub mod transition;

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;

use std::time::Duration;

use prometheus_client::metrics::{counter::Counter, family::Family};
use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::{Failure, FailureClass},
        fraud::{
            Channel, FraudCheckCompleted, FraudDecision, FraudScoreRequested, FraudScoreResult, ScoreBand,
            ScoreTransaction,
        },
        payouts::{
            AccountScheme, CancelPayout, InitiatePayout, PayoutCancelRequested, PayoutCompleted, PayoutProviderEvent,
            PayoutRequested, PayoutResult, PayoutReversed, PayoutStatusRequested, PayoutStepChanged, ResolvePayout,
            ReviewPayout,
        },
    },
};
use switchyard_runtime::{HandlerError, Incoming, Metrics, Outbox};

use self::{
    state::{Effect, FraudAnswer, Input, Notice, PayAnswer, Plan, Resolution, State, Timer},
    store::{Flow, Order},
    transition::Ctx,
};
use crate::{
    onboarding::{FailoverLabels, FlowMetrics},
    routing::{Routing, Subject},
};

const SERVICE: &str = "orchestrator";

type R<T> = Result<T, HandlerError>;

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

#[derive(Debug, Clone)]
pub struct Timing {
    /// How long after an answer that left a payout in doubt its partner is asked (and between
    /// questions).
    pub in_doubt: Duration,
    /// Status queries before a payout in doubt goes to an operator.
    pub max_status_checks: u32,
    /// How long a payout may be processing at its partner before the partner is asked (and
    /// between questions): a lost webhook never leaves it unknown.
    pub processing_check: Duration,
    /// How long after a payout went ahead unscreened it is scored (and between tries).
    pub rescore: Duration,
    pub max_rescores: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct StepLabels {
    pub step: String,
}

#[derive(Clone)]
pub struct Payouts {
    pub routing: Routing,
    pub outbox: Outbox,
    pub timing: Timing,
    pub metrics: FlowMetrics,
    pub steps: Family<StepLabels, Counter>,
}

impl Payouts {
    pub fn new(routing: Routing, outbox: Outbox, timing: Timing, metrics: FlowMetrics, registry: &Metrics) -> Self {
        let steps = Family::default();
        registry.register(
            "payout_steps",
            "Payout steps reached (screening, held_for_review, routed, in_doubt, manual_repair, settled, failed, returned, reversed...)",
            steps.clone(),
        );
        Payouts {
            routing,
            outbox,
            timing,
            metrics,
            steps,
        }
    }

    /// Handles `msg` if it is the payout flow's or a standalone score's; false otherwise.
    pub async fn handle(&self, conn: &mut PgConnection, msg: &Incoming) -> R<bool> {
        let e = &msg.event;
        if let Some(c) = e.as_event::<InitiatePayout>() {
            self.start(conn, c.map_err(perm)?).await?;
        } else if let Some(c) = e.as_event::<CancelPayout>() {
            let c = c.map_err(perm)?;
            let flow_id = store::flow_id(&c.envelope.tenant_id, &c.payout_id);
            self.feed(conn, &flow_id, Input::Cancel, &c.envelope).await?;
        } else if let Some(c) = e.as_event::<ReviewPayout>() {
            let c = c.map_err(perm)?;
            let flow_id = store::flow_id(&c.envelope.tenant_id, &c.payout_id);
            let input = Input::Review {
                release: c.release,
                reviewer: c.reviewer.clone(),
            };
            self.feed(conn, &flow_id, input, &c.envelope).await?;
        } else if let Some(c) = e.as_event::<ResolvePayout>() {
            let c = c.map_err(perm)?;
            let mut cause = c.envelope.clone();
            cause.flow_id = store::flow_id(&c.envelope.tenant_id, &c.payout_id);
            let input = Input::Resolve(Resolution {
                partner: c.partner.clone(),
                reference: c.provider_reference.clone(),
                status: c.status,
                evidence: c.evidence,
            });
            self.feed_answer(conn, &cause, &c.partner, Some(&c.provider_reference), input)
                .await?;
        } else if let Some(r) = e.as_event::<PayoutResult>() {
            self.payout_result(conn, r.map_err(perm)?).await?;
        } else if let Some(p) = e.as_event::<PayoutProviderEvent>() {
            self.provider_event(conn, p.map_err(perm)?).await?;
        } else if let Some(r) = e.as_event::<FraudScoreResult>() {
            self.fraud_result(conn, r.map_err(perm)?).await?;
        } else if let Some(c) = e.as_event::<ScoreTransaction>() {
            self.score_alone(conn, c.map_err(perm)?).await?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// The partners and fail mode the policy in force gives this payout.
    fn plan(&self, flow: &Flow) -> Plan {
        let policy = self.routing.get();
        let o = &flow.order;
        let country = country_of(o);
        let subject = Subject {
            country: country.as_deref(),
            priority: o.priority.as_deref(),
            ..Subject::money(
                &flow.flow_id,
                &flow.tenant_id,
                &o.amount.currency,
                o.amount.amount_minor,
            )
        };
        let payout = policy.decide("payouts", &subject);
        let fraud = policy.decide("fraud", &subject);
        Plan {
            payout: payout.map(|d| d.candidates).unwrap_or_default(),
            fail_open_below_minor: fraud.as_ref().and_then(|d| d.fail_open_below_minor),
            fraud: fraud.map(|d| d.candidates).unwrap_or_default(),
            amount_minor: o.amount.amount_minor,
            max_status_checks: self.timing.max_status_checks,
        }
    }

    async fn start(&self, conn: &mut PgConnection, cmd: InitiatePayout) -> R<()> {
        let tenant = cmd.envelope.tenant_id.clone();
        let order = Order {
            customer_id: cmd.customer_id,
            amount: cmd.amount,
            beneficiary: cmd.beneficiary,
            rail: cmd.rail,
            reference: cmd.reference,
            country: cmd.country,
            priority: cmd.priority,
            channel: cmd.channel,
            device_id: cmd.device_id,
        };
        let mut flow = Flow {
            flow_id: store::flow_id(&tenant, &cmd.payout_id),
            tenant_id: tenant,
            payout_id: cmd.payout_id.clone(),
            correlation_id: cmd.envelope.correlation_id.clone(),
            beneficiary_key: store::beneficiary_key(conn, &order.beneficiary).await?,
            order,
            attempt: 0,
            flags: vec![],
            rescores: 0,
            created_at: chrono::Utc::now(),
        };
        if !store::insert(conn, &flow).await? {
            tracing::info!(flow_id = %flow.flow_id, "payout already started; command ignored");
            return Ok(());
        }
        let mut refusal = invalid(&flow.order).map(|why| Failure::new(FailureClass::Permanent, "payout_invalid", why));
        if refusal.is_none() {
            let velocity = self.routing.get().payout_velocity.clone();
            if let Err(why) = store::reserve_velocity(conn, &velocity, &flow).await? {
                refusal = Some(Failure::new(FailureClass::Permanent, "velocity_limit", why));
            }
        }
        let plan = self.plan(&flow);
        let ctx = Ctx {
            plan: &plan,
            next_request: uuid::Uuid::now_v7(),
            attempt: flow.attempt,
        };
        let (state, effects) = transition::start(&ctx, refusal);
        let mut changes = store::Changes::default();
        changes.note(
            "payout_started",
            serde_json::json!({"command": cmd.envelope.event_id.to_string(), "plan": {"fraud": plan.fraud, "payout": plan.payout}}),
        );
        self.apply(conn, &mut flow, &state, effects, &cmd.envelope, changes)
            .await
    }

    /// Applies one input to a payout (locked for the transaction).
    async fn feed(&self, conn: &mut PgConnection, flow_id: &str, input: Input, cause: &Envelope) -> R<()> {
        let Some(loaded) = store::load(conn, flow_id).await? else {
            tracing::warn!(flow_id, "input for an unknown payout ignored");
            return Ok(());
        };
        self.step_on(conn, loaded, input, cause).await
    }

    /// Applies one input to a payout already loaded (and locked).
    async fn step_on(
        &self,
        conn: &mut PgConnection,
        (mut flow, state): (Flow, State),
        input: Input,
        cause: &Envelope,
    ) -> R<()> {
        let plan = self.plan(&flow);
        let ctx = Ctx {
            plan: &plan,
            next_request: uuid::Uuid::now_v7(),
            attempt: flow.attempt,
        };
        let (next, effects) = transition::step(&state, input, &ctx);
        self.apply(conn, &mut flow, &next, effects, cause, store::Changes::default())
            .await
    }

    async fn payout_result(&self, conn: &mut PgConnection, r: PayoutResult) -> R<()> {
        let Some(request) = r
            .envelope
            .idempotency_key
            .as_deref()
            .and_then(|k| k.strip_prefix("sy-"))
            .and_then(|k| uuid::Uuid::parse_str(k).ok())
        else {
            return Err(perm("a payout result without its request's key"));
        };
        let answer = PayAnswer {
            partner: r.partner.clone(),
            request,
            reference: r.provider_reference.clone(),
            status: r.status,
            failure: r.failure,
        };
        let (partner, reference) = (r.partner.as_str(), r.provider_reference.as_deref());
        self.feed_answer(conn, &r.envelope, partner, reference, Input::Paid(answer))
            .await
    }

    /// Feeds an answer that may name the partner's reference, then the webhooks parked until one did.
    async fn feed_answer(
        &self,
        conn: &mut PgConnection,
        cause: &Envelope,
        partner: &str,
        reference: Option<&str>,
        input: Input,
    ) -> R<()> {
        if let Some(reference) = reference {
            store::lock_reference(conn, partner, reference).await?;
        }
        self.feed(conn, &cause.flow_id, input, cause).await?;
        if let Some(reference) = reference {
            for n in store::unpark(conn, partner, reference).await? {
                self.feed(conn, &cause.flow_id, Input::Notice(n), cause).await?;
            }
        }
        Ok(())
    }

    async fn provider_event(&self, conn: &mut PgConnection, p: PayoutProviderEvent) -> R<()> {
        store::lock_reference(conn, &p.partner, &p.provider_reference).await?;
        let notice = Notice {
            partner: p.partner.clone(),
            reference: p.provider_reference.clone(),
            status: p.status,
            at_ms: p.envelope.occurred_at,
            reason: p.return_reason.clone(),
        };
        match store::flow_of_reference(conn, &p.partner, &p.provider_reference).await? {
            Some(flow_id) => {
                let span = crate::onboarding::store::notice_span(conn, &flow_id, &p.partner).await?;
                tracing::Instrument::instrument(self.feed(conn, &flow_id, Input::Notice(notice), &p.envelope), span)
                    .await
            }
            None => {
                tracing::info!(partner = %p.partner, reference = %p.provider_reference,
                    "payout notice parked until its payout is known");
                store::park(conn, p.envelope.event_id, &notice).await
            }
        }
    }

    async fn fraud_result(&self, conn: &mut PgConnection, r: FraudScoreResult) -> R<()> {
        let flow_id = r.envelope.flow_id.clone();
        if r.shadow {
            return self.late_score(conn, &flow_id, r).await;
        }
        // Not a payout's: a standalone score's (one look-up either way).
        let Some(loaded) = store::load(conn, &flow_id).await? else {
            return self.standalone_result(conn, r).await;
        };
        let cause = r.envelope.clone();
        let answer = FraudAnswer {
            partner: r.partner,
            decision: r.decision,
            score: r.score,
            reasons: r.reasons,
            failure: r.failure,
        };
        self.step_on(conn, loaded, Input::Fraud(answer), &cause).await
    }

    /// A payout's timer fired.
    pub async fn timed_out(&self, conn: &mut PgConnection, flow_id: &str, timer: Timer) -> R<()> {
        let cause = Envelope::new(
            "com.switchyard.orchestrator.Timer",
            SERVICE,
            flow_id.to_string(),
            SERVICE,
        );
        match timer {
            Timer::StatusCheck => self.feed(conn, flow_id, Input::StatusCheck, &cause).await,
            Timer::Poll => self.feed(conn, flow_id, Input::Poll, &cause).await,
            Timer::Rescore => self.rescore(conn, flow_id, &cause).await,
        }
    }

    /// A payout that went ahead unscreened is sent to the fraud partner now (recorded, never acted
    /// on: the money has gone).
    async fn rescore(&self, conn: &mut PgConnection, flow_id: &str, cause: &Envelope) -> R<()> {
        let Some((mut flow, state)) = store::load(conn, flow_id).await? else {
            return Ok(());
        };
        let plan = self.plan(&flow);
        let mut changes = store::Changes::default();
        let mut out = Vec::new();
        match plan.fraud.first() {
            Some(partner) if flow.rescores < self.timing.max_rescores => {
                flow.rescores += 1;
                out.push(score_request(&flow, partner, true, cause)?);
                changes.note(
                    "fraud_rescore_sent",
                    serde_json::json!({"partner": partner, "try": flow.rescores}),
                );
            }
            _ => changes.note("fraud_rescore_abandoned", serde_json::json!({"tries": flow.rescores})),
        }
        store::save(conn, &flow, &state, &changes).await?;
        self.outbox
            .enqueue_all(conn, &out)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }

    /// The late score of a payout that went ahead unscreened: recorded and announced; a failure is
    /// tried again later.
    async fn late_score(&self, conn: &mut PgConnection, flow_id: &str, r: FraudScoreResult) -> R<()> {
        let Some((flow, state)) = store::load(conn, flow_id).await? else {
            return Ok(());
        };
        let mut changes = store::Changes::default();
        let mut out = Vec::new();
        if let Some(f) = &r.failure {
            changes.note(
                "fraud_rescore_failed",
                serde_json::json!({"partner": r.partner, "code": f.code}),
            );
            changes.timers.push((Timer::Rescore, true, self.timing.rescore));
        } else {
            let step = if r.decision == FraudDecision::Allow {
                "fraud_scored_late"
            } else {
                "fraud_flagged_late"
            };
            changes.note(
                step,
                serde_json::json!({"partner": r.partner, "decision": r.decision, "score": r.score, "reasons": r.reasons}),
            );
            let mut reasons = vec![format!("{:?}", r.decision).to_lowercase()];
            reasons.extend(r.reasons.clone());
            out.push((
                PayoutStepChanged::TOPIC,
                EventRecord::of(&PayoutStepChanged {
                    envelope: envelope(&flow, PayoutStepChanged::RECORD, &r.envelope),
                    payout_id: flow.payout_id.clone(),
                    step: step.to_string(),
                    partner: Some(r.partner.clone()),
                    reasons,
                })
                .map_err(perm)?,
            ));
        }
        store::save(conn, &flow, &state, &changes).await?;
        self.outbox
            .enqueue_all(conn, &out)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }

    fn timer_delay(&self, t: Timer) -> Duration {
        match t {
            Timer::StatusCheck => self.timing.in_doubt,
            Timer::Poll => self.timing.processing_check,
            Timer::Rescore => self.timing.rescore,
        }
    }

    fn failover_domain(&self, partner: &str) -> String {
        self.routing
            .get()
            .partners
            .iter()
            .find(|p| p.id == partner)
            .map(|p| p.domain.clone())
            .unwrap_or_else(|| "payouts".into())
    }

    /// Saves `state` and carries out `effects`, in order, in the caller's transaction.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        flow: &mut Flow,
        state: &State,
        effects: Vec<Effect>,
        cause: &Envelope,
        mut changes: store::Changes,
    ) -> R<()> {
        let mut out: Vec<(&'static str, EventRecord)> = Vec::new();
        let live = state.live().cloned();
        for effect in effects {
            match effect {
                Effect::Score { partner } => {
                    out.push(score_request(flow, &partner, false, cause)?);
                    changes.note("fraud_requested", serde_json::json!({"partner": partner}));
                }
                Effect::Pay { live, attempt } => {
                    flow.attempt = attempt;
                    let mut e = envelope(flow, PayoutRequested::RECORD, cause);
                    // The request's event id is the execution's key, kept in the state.
                    e.event_id = live.request;
                    let o = &flow.order;
                    let request = PayoutRequested {
                        envelope: e,
                        payout_id: flow.flow_id.clone(),
                        amount: o.amount.clone(),
                        beneficiary: o.beneficiary.clone(),
                        rail: o
                            .rail
                            .clone()
                            .unwrap_or_else(|| rail_of(&o.amount.currency).to_string()),
                        reference: o.reference.clone(),
                        partner: live.partner.clone(),
                        attempt,
                    };
                    out.push((PayoutRequested::TOPIC, EventRecord::of(&request).map_err(perm)?));
                    changes.note(
                        "payout_requested",
                        serde_json::json!({"partner": live.partner, "request": live.request.to_string(), "attempt": attempt}),
                    );
                }
                Effect::Query { live } => {
                    let o = &flow.order;
                    let q = PayoutStatusRequested {
                        envelope: envelope(flow, PayoutStatusRequested::RECORD, cause),
                        payout_id: flow.flow_id.clone(),
                        partner: live.partner.clone(),
                        request_event_id: live.request.to_string(),
                        amount: o.amount.clone(),
                        beneficiary: o.beneficiary.clone(),
                        reference: o.reference.clone(),
                    };
                    out.push((PayoutStatusRequested::TOPIC, EventRecord::of(&q).map_err(perm)?));
                    changes.note("status_query", serde_json::json!({"partner": live.partner}));
                }
                Effect::CancelAt { live } => {
                    let o = &flow.order;
                    let q = PayoutCancelRequested {
                        envelope: envelope(flow, PayoutCancelRequested::RECORD, cause),
                        payout_id: flow.flow_id.clone(),
                        partner: live.partner.clone(),
                        request_event_id: live.request.to_string(),
                        provider_reference: live.reference.clone().unwrap_or_default(),
                        amount: o.amount.clone(),
                        beneficiary: o.beneficiary.clone(),
                    };
                    out.push((PayoutCancelRequested::TOPIC, EventRecord::of(&q).map_err(perm)?));
                    changes.note("cancel_requested", serde_json::json!({"partner": live.partner}));
                }
                Effect::Reference { partner, reference } => {
                    store::remember_reference(conn, &partner, &reference, &flow.flow_id).await?;
                }
                Effect::Step { step, partner, reasons } => {
                    self.steps.get_or_create(&StepLabels { step: step.into() }).inc();
                    let event = PayoutStepChanged {
                        envelope: envelope(flow, PayoutStepChanged::RECORD, cause),
                        payout_id: flow.payout_id.clone(),
                        step: step.to_string(),
                        partner: partner.clone(),
                        reasons: reasons.clone(),
                    };
                    out.push((PayoutStepChanged::TOPIC, EventRecord::of(&event).map_err(perm)?));
                    changes.note(step, serde_json::json!({"partner": partner, "reasons": reasons}));
                }
                Effect::Complete {
                    status,
                    failure,
                    reasons,
                } => {
                    let mut all = flow.flags.clone();
                    all.extend(reasons);
                    let name = state.name();
                    self.steps.get_or_create(&StepLabels { step: name.into() }).inc();
                    let event = PayoutCompleted {
                        envelope: envelope(flow, PayoutCompleted::RECORD, cause),
                        payout_id: flow.payout_id.clone(),
                        status,
                        amount: flow.order.amount.clone(),
                        partner: live.as_ref().map(|l| l.partner.clone()).unwrap_or_default(),
                        provider_reference: live.as_ref().and_then(|l| l.reference.clone()),
                        failure: failure.clone(),
                        reasons: all.clone(),
                    };
                    out.push((PayoutCompleted::TOPIC, EventRecord::of(&event).map_err(perm)?));
                    changes.note(
                        name,
                        serde_json::json!({"status": status, "failure": failure.as_ref().map(|f| f.code.clone()), "reasons": all}),
                    );
                    let waited =
                        crate::onboarding::store::went_through(conn, &flow.flow_id, &["held_for_review"]).await?;
                    self.metrics
                        .complete("payout", name, failure.as_ref(), flow.created_at, waited);
                    tracing::info!(flow_id = %flow.flow_id, outcome = name, "payout completed");
                }
                Effect::Reverse { reason } => {
                    self.steps
                        .get_or_create(&StepLabels {
                            step: "reversed".into(),
                        })
                        .inc();
                    let event = PayoutReversed {
                        envelope: envelope(flow, PayoutReversed::RECORD, cause),
                        payout_id: flow.payout_id.clone(),
                        amount: flow.order.amount.clone(),
                        partner: live.as_ref().map(|l| l.partner.clone()).unwrap_or_default(),
                        provider_reference: live.as_ref().and_then(|l| l.reference.clone()),
                        reason: reason.clone(),
                    };
                    out.push((PayoutReversed::TOPIC, EventRecord::of(&event).map_err(perm)?));
                    changes.note("reversed", serde_json::json!({"reason": reason}));
                    tracing::warn!(flow_id = %flow.flow_id, reason = ?reason, "a settled payout came back: reversal emitted");
                }
                Effect::ReleaseVelocity => store::release_velocity(conn, &flow.flow_id).await?,
                Effect::Arm(timer, on) => changes.timers.push((timer, on, self.timer_delay(timer))),
                Effect::Failover { from, to, cause: why } => {
                    let domain = self.failover_domain(&from);
                    self.metrics
                        .failovers
                        .get_or_create(&FailoverLabels {
                            domain: domain.clone(),
                            from: from.clone(),
                            to: to.clone(),
                            tenant: flow.tenant_id.clone(),
                        })
                        .inc();
                    changes.note(
                        "failover",
                        serde_json::json!({"domain": domain, "from": from, "to": to, "cause": why}),
                    );
                    tracing::warn!(flow_id = %flow.flow_id, %domain, %from, %to, cause = %why, "failing over");
                }
                Effect::Flag(f) => {
                    if !flow.flags.iter().any(|x| x == f) {
                        flow.flags.push(f.to_string());
                    }
                }
                Effect::Note { event, detail } => changes.note(event, serde_json::json!({"detail": detail})),
            }
        }
        store::save(conn, flow, state, &changes).await?;
        self.outbox
            .enqueue_all(conn, &out)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }

    /// A standalone score: routed like a payout's, failed over, decided by the route's fail mode
    /// when no partner can score.
    async fn score_alone(&self, conn: &mut PgConnection, c: ScoreTransaction) -> R<()> {
        let flow_id = format!("score.{}", store::flow_id(&c.envelope.tenant_id, &c.transaction_id));
        let policy = self.routing.get();
        let d = policy.decide(
            "fraud",
            &Subject::money(
                &flow_id,
                &c.envelope.tenant_id,
                &c.amount.currency,
                c.amount.amount_minor,
            ),
        );
        let candidates = d.as_ref().map(|d| d.candidates.clone()).unwrap_or_default();
        let first = candidates.first().cloned().unwrap_or_default();
        let inserted = sqlx::query(
            "INSERT INTO fraud_checks (flow_id, tenant_id, transaction_id, correlation_id, command, partner, tried, \
             fail_open_below_minor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&flow_id)
        .bind(&c.envelope.tenant_id)
        .bind(&c.transaction_id)
        .bind(&c.envelope.correlation_id)
        .bind(serde_json::to_value(&c).map_err(perm)?)
        .bind(&first)
        .bind(vec![first.clone()])
        .bind(d.as_ref().and_then(|d| d.fail_open_below_minor))
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(());
        }
        if first.is_empty() {
            let fail_open = d.as_ref().and_then(|d| d.fail_open_below_minor);
            return self
                .standalone_decided(conn, &c, &flow_id, "", fail_open, Err("no fraud partner is routed"))
                .await;
        }
        self.standalone_request(conn, &c, &flow_id, &c.envelope, first, 1).await
    }

    /// Asks `partner` to score a standalone transaction.
    async fn standalone_request(
        &self,
        conn: &mut PgConnection,
        c: &ScoreTransaction,
        flow_id: &str,
        cause: &Envelope,
        partner: String,
        attempt: i32,
    ) -> R<()> {
        let mut envelope = Envelope::caused_by(cause, FraudScoreRequested::RECORD, SERVICE);
        envelope.flow_id = flow_id.to_string();
        let req = FraudScoreRequested {
            envelope,
            customer_id: c.customer_id.clone(),
            transaction_id: c.transaction_id.clone(),
            amount: c.amount.clone(),
            counterparty_id: c.counterparty_id.clone(),
            channel: c.channel,
            device_id: c.device_id.clone(),
            partner,
            attempt,
            shadow: false,
        };
        self.outbox
            .enqueue(conn, FraudScoreRequested::TOPIC, &EventRecord::of(&req).map_err(perm)?)
            .await
            .map(|_| ())
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }

    async fn standalone_result(&self, conn: &mut PgConnection, r: FraudScoreResult) -> R<()> {
        type Row = (serde_json::Value, String, Vec<String>, Option<String>, Option<i64>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT command, partner, tried, decision, fail_open_below_minor FROM fraud_checks WHERE flow_id = $1 FOR UPDATE",
        )
                .bind(&r.envelope.flow_id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some((command, partner, tried, decision, fail_open)) = row else {
            tracing::warn!(flow_id = %r.envelope.flow_id, "fraud result for an unknown flow ignored");
            return Ok(());
        };
        if decision.is_some() || partner != r.partner {
            return Ok(());
        }
        let c: ScoreTransaction = serde_json::from_value(command).map_err(perm)?;
        let flow_id = r.envelope.flow_id.clone();
        if let Some(f) = &r.failure {
            let policy = self.routing.get();
            let next = policy
                .decide(
                    "fraud",
                    &Subject::money(
                        &flow_id,
                        &c.envelope.tenant_id,
                        &c.amount.currency,
                        c.amount.amount_minor,
                    ),
                )
                .and_then(|d| d.candidates.into_iter().find(|p| !tried.contains(p)));
            if let Some(next) = next {
                sqlx::query("UPDATE fraud_checks SET partner = $2, tried = array_append(tried, $2) WHERE flow_id = $1")
                    .bind(&flow_id)
                    .bind(&next)
                    .execute(&mut *conn)
                    .await?;
                let attempt = i32::try_from(tried.len() + 1).unwrap_or(i32::MAX);
                return self
                    .standalone_request(conn, &c, &flow_id, &r.envelope, next, attempt)
                    .await;
            }
            return self
                .standalone_decided(conn, &c, &flow_id, &r.partner, fail_open, Err(&f.code))
                .await;
        }
        self.standalone_decided(conn, &c, &flow_id, &r.partner, fail_open, Ok(&r))
            .await
    }

    async fn standalone_decided(
        &self,
        conn: &mut PgConnection,
        c: &ScoreTransaction,
        flow_id: &str,
        partner: &str,
        fail_open: Option<i64>,
        // The partner's score, or why no partner could score.
        verdict: Result<&FraudScoreResult, &str>,
    ) -> R<()> {
        let (decision, score, band, reasons, failure) = match verdict {
            Ok(r) => (r.decision, r.score, r.band, r.reasons.clone(), None),
            Err(why) => {
                let open = fail_open.is_some_and(|l| c.amount.amount_minor < l);
                let f = Failure::new(
                    FailureClass::Transient,
                    "fraud_unavailable",
                    format!(
                        "no fraud partner could score ({}); the route fails {}",
                        why,
                        if open { "open below its limit" } else { "closed" }
                    ),
                );
                let decision = if open {
                    FraudDecision::Allow
                } else {
                    FraudDecision::Deny
                };
                (
                    decision,
                    0,
                    None::<ScoreBand>,
                    vec!["fraud_unscreened".to_string()],
                    Some(f),
                )
            }
        };
        let name = format!("{decision:?}").to_lowercase();
        sqlx::query("UPDATE fraud_checks SET decision = $2, completed_at = now() WHERE flow_id = $1")
            .bind(flow_id)
            .bind(&name)
            .execute(&mut *conn)
            .await?;
        let mut e = Envelope::caused_by(&c.envelope, FraudCheckCompleted::RECORD, SERVICE);
        e.flow_id = c.envelope.flow_id.clone();
        let out = FraudCheckCompleted {
            envelope: e,
            transaction_id: c.transaction_id.clone(),
            decision,
            score,
            partner: partner.to_string(),
            band,
            reasons,
            failure,
        };
        self.outbox
            .enqueue(conn, FraudCheckCompleted::TOPIC, &EventRecord::of(&out).map_err(perm)?)
            .await
            .map(|_| ())
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }
}

fn envelope(flow: &Flow, record: &str, cause: &Envelope) -> Envelope {
    let mut e = Envelope::new(record, flow.tenant_id.clone(), flow.flow_id.clone(), SERVICE);
    e.correlation_id = flow.correlation_id.clone();
    e.causation_id = Some(cause.event_id.to_string());
    e
}

/// A fraud score request for the payout: the counterparty is the account's fingerprint, never the
/// account.
fn score_request(flow: &Flow, partner: &str, late: bool, cause: &Envelope) -> R<(&'static str, EventRecord)> {
    let o = &flow.order;
    let req = FraudScoreRequested {
        envelope: envelope(flow, FraudScoreRequested::RECORD, cause),
        customer_id: o.customer_id.clone(),
        transaction_id: flow.flow_id.clone(),
        amount: o.amount.clone(),
        counterparty_id: flow.beneficiary_key.chars().take(32).collect(),
        channel: o.channel.unwrap_or(Channel::Api),
        device_id: o.device_id.clone(),
        partner: partner.to_string(),
        attempt: flow.rescores + 1,
        // A late score is recorded, never acted on.
        shadow: late,
    };
    Ok((FraudScoreRequested::TOPIC, EventRecord::of(&req).map_err(perm)?))
}

/// The rail a currency's payouts take unless the caller names one.
fn rail_of(currency: &str) -> &'static str {
    match currency {
        "EUR" => "sepa",
        "GBP" => "fps",
        "USD" => "ach",
        _ => "swift",
    }
}

/// The beneficiary bank's country: given, or an IBAN's first two letters.
pub fn country_of(o: &Order) -> Option<String> {
    o.country.clone().or_else(|| {
        (o.beneficiary.account.scheme == AccountScheme::Iban)
            .then(|| o.beneficiary.account.value.chars().take(2).collect::<String>())
            .filter(|c| c.len() == 2 && c.chars().all(|x| x.is_ascii_uppercase()))
    })
}

/// Why a payout cannot be paid as asked (Kafka producers' commands are checked like the API's).
pub fn invalid(o: &Order) -> Option<String> {
    let currency = &o.amount.currency;
    if switchyard_model::money::exponent(currency).is_none() {
        return Some(format!("{currency} is not an ISO 4217 currency"));
    }
    if o.amount.amount_minor <= 0 {
        return Some("the amount must be positive".into());
    }
    switchyard_model::events::payouts::account_problem(&o.beneficiary.account).map(|p| p.to_string())
}
