//! The open-banking flows' states, inputs, effects and pure step. No I/O here.
//!
//! ```text
//!  consent:  create ─▶ awaiting_authorization ─ the bank's callback ─▶ authorized ─┬─ fetch accounts / transactions
//!              └─ refused, nothing live ─▶ next provider (failover), or failed      ├─ refresh (or re-consent: awaiting)
//!                                                                                   └─ revoke ─▶ revoked
//!  payment:  initiate ─▶ awaiting_authorization ─▶ pending ─▶ executed ─▶ completed        (notices and status
//!              ├─ refused, nothing live ─▶ next provider, or failed        └─▶ failed        questions move it
//!              └─ unknown ─▶ asked by status until known (never sent elsewhere)            forward only)
//! ```
//!
//! One operation is in flight per flow; the others wait their turn. A consent or payment stays with
//! the provider that holds it.

use serde::{Deserialize, Serialize};
use switchyard_model::events::{
    common::{Failure, FailureClass},
    openbanking::{OpenBankingOperation as Op, OpenBankingStatus as S},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Consent,
    Payment,
}

/// An operation asked by a product (or by the flow itself: a fetch on a provider's notice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asked {
    pub op: Op,
    pub command: uuid::Uuid,
    /// COMPLETE_CONSENT: the callback's code, held only until it is sent.
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub asked: Asked,
    pub partner: String,
    pub request: uuid::Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub kind: Kind,
    pub partner: Option<String>,
    pub tried: Vec<String>,
    pub status: S,
    pub pending: Option<Pending>,
    pub waiting: Vec<Asked>,
    pub reference: Option<String>,
    pub checks: u32,
    /// A payment that reached its end (or a consent revoked): nothing moves it again.
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub request: uuid::Uuid,
    pub partner: String,
    pub status: S,
    pub failure: Option<Failure>,
    pub reference: Option<String>,
    pub authorization_url: Option<String>,
    pub consent_expires_at: Option<i64>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Command(Asked),
    Answer(Answer),
    /// The adapter answered a fetch (its data already relayed to products).
    Fetched {
        request: uuid::Uuid,
        failure: Option<Failure>,
    },
    /// The provider's webhook about a payment.
    Notice {
        status: S,
        reason: Option<String>,
    },
    /// The payment's status question is due; for a consent, its renewal before it expires.
    StatusCheck,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Request {
        asked: Asked,
        partner: String,
        request: uuid::Uuid,
    },
    Outcome {
        op: Op,
        status: S,
        failure: Option<Failure>,
        authorization_url: Option<String>,
        consent_expires_at: Option<i64>,
        scopes: Vec<String>,
    },
    /// The provider knows this flow by `reference` from now on.
    Reference {
        partner: String,
        reference: String,
    },
    /// Ask the payment's status after this many seconds (None: no question pending).
    Timer(Option<u64>),
    Note(&'static str, serde_json::Value),
}

pub struct Ctx<'a> {
    pub candidates: &'a [String],
    pub next_request: uuid::Uuid,
    /// Seconds before a payment in doubt (or waiting on the bank) is asked about, and between.
    pub check_after: u64,
    /// Questions about a payment in doubt before an operator must find out.
    pub max_checks: u32,
    pub now_ms: i64,
}

/// How long before a consent expires it is renewed (a refresh, or a re-consent link for products).
pub const RENEW_BEFORE_MS: i64 = 7 * 24 * 3600 * 1000;

/// Status questions about a payment waiting on its customer or bank before only webhooks are awaited.
const MAX_POLLS: u32 = 100;

fn terminal(s: S) -> bool {
    matches!(s, S::Completed | S::Failed | S::Rejected | S::Executed)
}

/// How far a payment has come: notices only move it forward.
fn rank(s: S) -> u8 {
    match s {
        S::AwaitingAuthorization => 1,
        S::Pending | S::Authorized => 2,
        S::Executed => 3,
        S::Completed => 4,
        S::Failed | S::Rejected | S::Expired | S::Revoked => 5,
        S::Unknown => 0,
    }
}

fn send(flow: &mut Flow, asked: Asked, partner: String, ctx: &Ctx<'_>) -> Vec<Effect> {
    let request = ctx.next_request;
    flow.pending = Some(Pending {
        asked: asked.clone(),
        partner: partner.clone(),
        request,
    });
    if !flow.tried.contains(&partner) {
        flow.tried.push(partner.clone());
    }
    vec![
        Effect::Note(
            "ob_requested",
            serde_json::json!({"operation": asked.op, "partner": partner}),
        ),
        Effect::Request {
            asked,
            partner,
            request,
        },
    ]
}

fn outcome(op: Op, status: S, failure: Option<Failure>) -> Effect {
    Effect::Outcome {
        op,
        status,
        failure,
        authorization_url: None,
        consent_expires_at: None,
        scopes: vec![],
    }
}

/// A new flow: its first operation goes to the route's first provider.
pub fn start(kind: Kind, asked: Asked, ctx: &Ctx<'_>) -> (Flow, Vec<Effect>) {
    let mut flow = Flow {
        kind,
        partner: None,
        tried: vec![],
        status: S::AwaitingAuthorization,
        pending: None,
        waiting: vec![],
        reference: None,
        checks: 0,
        done: false,
    };
    let Some(first) = ctx.candidates.first().cloned() else {
        flow.status = S::Failed;
        flow.done = true;
        let f = Failure::new(FailureClass::Transient, "no_partner", "no provider is routed for this");
        return (flow, vec![outcome(asked.op, S::Failed, Some(f))]);
    };
    let effects = send(&mut flow, asked, first, ctx);
    (flow, effects)
}

/// Takes an operation now, or refuses it.
fn take(flow: &mut Flow, asked: Asked, ctx: &Ctx<'_>) -> Vec<Effect> {
    let refuse = |code: &str, msg: &str| {
        vec![outcome(
            asked.op,
            flow.status,
            Some(Failure::new(FailureClass::Permanent, code, msg)),
        )]
    };
    if flow.done {
        return refuse("flow_ended", "this consent or payment has ended");
    }
    let allowed = match flow.kind {
        Kind::Consent => !matches!(asked.op, Op::InitiatePayment | Op::PaymentStatus | Op::CreateConsent),
        Kind::Payment => asked.op == Op::PaymentStatus,
    };
    if !allowed {
        return refuse("operation_invalid", "not an operation on this flow");
    }
    let Some(partner) = flow.partner.clone().or_else(|| flow.tried.last().cloned()) else {
        return refuse("operation_invalid", "nothing is held at a provider yet");
    };
    send(flow, asked, partner, ctx)
}

fn drain(flow: &mut Flow, ctx: &Ctx<'_>, effects: &mut Vec<Effect>) {
    while flow.pending.is_none() && !flow.waiting.is_empty() {
        let asked = flow.waiting.remove(0);
        effects.extend(take(flow, asked, ctx));
    }
}

pub fn step(flow: &Flow, input: Input, ctx: &Ctx<'_>) -> (Flow, Vec<Effect>) {
    let mut flow = flow.clone();
    let mut effects = Vec::new();
    match input {
        Input::Command(asked) if asked.op == Op::CreateConsent || asked.op == Op::InitiatePayment => {
            effects.push(Effect::Note("ob_repeated", serde_json::json!({"operation": asked.op})));
        }
        Input::Command(asked) => {
            if flow.pending.is_some() {
                effects.push(Effect::Note("ob_waiting", serde_json::json!({"operation": asked.op})));
                flow.waiting.push(asked);
            } else {
                effects.extend(take(&mut flow, asked, ctx));
            }
        }
        Input::Answer(a) => answer(&mut flow, a, ctx, &mut effects),
        Input::Fetched { request, failure } => {
            if flow.pending.as_ref().is_some_and(|p| p.request == request) {
                let p = flow.pending.take().unwrap_or_else(|| unreachable!());
                if let Some(f) = failure {
                    effects.push(outcome(p.asked.op, flow.status, Some(f)));
                }
            }
        }
        Input::Notice { status, reason } => {
            if flow.kind == Kind::Payment && !flow.done && rank(status) > rank(flow.status) {
                flow.status = status;
                let failure = (status == S::Failed).then(|| {
                    let r = reason.unwrap_or_else(|| "other".into());
                    Failure::new(FailureClass::Permanent, &r, format!("the bank failed the payment: {r}"))
                });
                effects.push(outcome(Op::InitiatePayment, status, failure));
                if terminal(status) {
                    flow.done = true;
                    effects.push(Effect::Timer(None));
                }
            } else {
                effects.push(Effect::Note("ob_notice_ignored", serde_json::json!({"status": status})));
            }
        }
        Input::StatusCheck if flow.kind == Kind::Consent => {
            // Its renewal is due: refreshed (or the customer asked to consent again) before it expires.
            let asked = Asked {
                op: Op::RefreshConsent,
                command: ctx.next_request,
                code: None,
            };
            if flow.done {
                effects.push(Effect::Note(
                    "ob_renewal_skipped",
                    serde_json::json!({"status": flow.status}),
                ));
            } else if flow.pending.is_some() {
                flow.waiting.push(asked);
            } else {
                effects.extend(take(&mut flow, asked, ctx));
            }
        }
        Input::StatusCheck => {
            if flow.kind == Kind::Payment && !flow.done && flow.pending.is_none() {
                flow.checks += 1;
                if flow.status != S::Unknown && flow.checks > MAX_POLLS {
                    // Waiting on the customer for hours: the provider's own expiry, by webhook, ends it.
                    effects.push(Effect::Note(
                        "ob_polling_stopped",
                        serde_json::json!({"checks": flow.checks}),
                    ));
                } else if flow.status == S::Unknown && flow.checks > ctx.max_checks {
                    flow.done = true;
                    effects.push(outcome(
                        Op::InitiatePayment,
                        S::Unknown,
                        Some(Failure::new(
                            FailureClass::ManualRepair,
                            "manual_repair",
                            "the provider could not say whether the payment was made",
                        )),
                    ));
                } else {
                    let asked = Asked {
                        op: Op::PaymentStatus,
                        command: ctx.next_request,
                        code: None,
                    };
                    effects.extend(take(&mut flow, asked, ctx));
                }
            }
        }
    }
    drain(&mut flow, ctx, &mut effects);
    (flow, effects)
}

fn answer(flow: &mut Flow, a: Answer, ctx: &Ctx<'_>, effects: &mut Vec<Effect>) {
    let Some(p) = flow.pending.clone() else {
        effects.push(Effect::Note(
            "ob_stale_answer",
            serde_json::json!({"partner": a.partner}),
        ));
        return;
    };
    if p.request != a.request || p.partner != a.partner {
        effects.push(Effect::Note(
            "ob_stale_answer",
            serde_json::json!({"partner": a.partner}),
        ));
        return;
    }
    flow.pending = None;
    let op = p.asked.op;
    let starting = matches!(op, Op::CreateConsent | Op::InitiatePayment);
    match a.failure {
        // Nothing live at the provider (it refused before doing anything): the next one may.
        Some(f) if starting && f.failure_class == FailureClass::Transient => {
            match ctx.candidates.iter().find(|c| !flow.tried.contains(c)).cloned() {
                Some(next) => {
                    effects.push(Effect::Note(
                        "ob_failover",
                        serde_json::json!({"from": a.partner, "to": next, "code": f.code}),
                    ));
                    effects.extend(send(flow, p.asked, next, ctx));
                }
                None => {
                    flow.status = S::Failed;
                    flow.done = true;
                    effects.push(outcome(op, S::Failed, Some(f)));
                }
            }
        }
        // A payment that may have been made: asked about, never sent elsewhere.
        Some(f)
            if matches!(f.failure_class, FailureClass::ManualRepair | FailureClass::Ambiguous)
                && flow.kind == Kind::Payment =>
        {
            flow.partner = Some(a.partner.clone());
            if op == Op::InitiatePayment {
                flow.status = S::Unknown;
                effects.push(outcome(op, S::Unknown, Some(f)));
            }
            effects.push(Effect::Timer(Some(ctx.check_after)));
        }
        Some(f) => {
            if starting {
                flow.status = S::Failed;
                flow.done = true;
            }
            if flow.kind == Kind::Payment && op == Op::PaymentStatus {
                // Could not ask now: ask again later.
                effects.push(Effect::Timer(Some(ctx.check_after)));
            } else {
                effects.push(outcome(op, flow.status, Some(f)));
            }
        }
        None => {
            flow.partner = Some(a.partner.clone());
            if let Some(r) = &a.reference
                && flow.reference.as_ref() != Some(r)
            {
                flow.reference = Some(r.clone());
                effects.push(Effect::Reference {
                    partner: a.partner.clone(),
                    reference: r.clone(),
                });
            }
            // A consent moves as its provider says; a payment's first answer sets where it stands,
            // later ones only move it forward.
            let moves = flow.kind == Kind::Consent
                || op == Op::InitiatePayment
                || rank(a.status) > rank(flow.status)
                || flow.status == S::Unknown;
            if moves {
                flow.status = a.status;
                if flow.kind == Kind::Consent && a.status == S::Revoked {
                    flow.done = true;
                }
                effects.push(Effect::Outcome {
                    op,
                    status: a.status,
                    failure: None,
                    authorization_url: a.authorization_url,
                    consent_expires_at: a.consent_expires_at,
                    scopes: a.scopes,
                });
            }
            // A consent with an expiry is renewed a week before it (at once if that has passed).
            if flow.kind == Kind::Consent
                && a.status == S::Authorized
                && let Some(until) = a.consent_expires_at
            {
                let due = (until - RENEW_BEFORE_MS - ctx.now_ms).max(60_000) / 1000;
                effects.push(Effect::Timer(Some(due as u64)));
            }
            if flow.kind == Kind::Payment {
                if terminal(flow.status) {
                    flow.done = true;
                    effects.push(Effect::Timer(None));
                } else {
                    // Waiting on the customer or the bank: asked again if no webhook comes.
                    effects.push(Effect::Timer(Some(ctx.check_after)));
                }
            }
        }
    }
}
