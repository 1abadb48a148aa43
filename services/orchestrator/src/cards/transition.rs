//! The card flow's pure step: `start` and `step(card, input, ctx) -> (card, effects)`.

use switchyard_model::events::{
    cards::{CardFormFactor, CardOperation, CardState},
    common::{Failure, FailureClass},
};

use super::state::{Answer, Card, Effect, Input, Op, Pending};

/// What a step may use besides the card: the processors the route gives an issue, in order, and
/// the event id of a request it sends.
pub struct Ctx<'a> {
    pub candidates: &'a [String],
    pub next_request: uuid::Uuid,
    /// Seconds before a failed read at the processor is made again (doubled after each failure
    /// in a row, up to [`REREAD_MAX_SECONDS`]).
    pub reread_after: u64,
}

fn refuse(code: &str, message: &str) -> Failure {
    Failure::new(FailureClass::Permanent, code, message)
}

/// A new card: its issue goes to the route's first processor.
pub fn start(op: Op, form_factor: Option<CardFormFactor>, ctx: &Ctx<'_>) -> (Card, Vec<Effect>) {
    let mut card = Card::new(form_factor);
    let Some(partner) = ctx.candidates.first() else {
        card.failed = true;
        return (
            card,
            vec![
                Effect::Note("card_issue_unroutable", serde_json::json!({})),
                Effect::Changed {
                    operation: Some(CardOperation::Issue),
                    failure: Some(Failure::new(
                        FailureClass::Transient,
                        "no_partner",
                        "no card processor is routed for this card",
                    )),
                },
            ],
        );
    };
    let effects = send(&mut card, op, partner.clone(), 1, vec![partner.clone()], ctx);
    (card, effects)
}

fn send(card: &mut Card, op: Op, partner: String, attempt: i32, tried: Vec<String>, ctx: &Ctx<'_>) -> Vec<Effect> {
    let request = ctx.next_request;
    card.pending = Some(Pending {
        op: op.clone(),
        partner: partner.clone(),
        request,
        attempt,
        tried,
    });
    vec![
        Effect::Note(
            "card_operation_requested",
            serde_json::json!({"operation": op.operation, "partner": partner, "attempt": attempt}),
        ),
        Effect::Request {
            op,
            partner,
            request,
            attempt,
        },
    ]
}

enum Check {
    Send,
    AlreadyThere,
    Refuse(Failure),
}

/// Whether the card's state allows `op` now.
fn check(card: &Card, op: CardOperation) -> Check {
    use CardOperation as O;
    use CardState as S;
    if card.failed || card.state == S::Requested {
        return Check::Refuse(refuse("card_not_issued", "the card was not issued"));
    }
    if card.state == S::Terminated {
        return Check::Refuse(refuse(
            "card_terminated",
            "the card is terminated; nothing more can change",
        ));
    }
    match (op, card.state) {
        (O::Activate, S::Inactive) | (O::Freeze, S::Active) | (O::Unfreeze, S::Frozen) | (O::Terminate, _) => {
            Check::Send
        }
        (O::Activate, S::Active) | (O::Freeze, S::Frozen) | (O::Unfreeze, S::Active) => Check::AlreadyThere,
        (O::Activate, S::Frozen) => Check::Refuse(refuse("card_frozen", "a frozen card is unfrozen, not activated")),
        (O::Freeze | O::Unfreeze, _) => Check::Refuse(refuse("card_not_active", "the card was never activated")),
        (O::Issue | O::CreateCardholder | O::Refresh, _) | (O::Activate, _) => {
            Check::Refuse(refuse("card_operation_invalid", "not an operation on an issued card"))
        }
    }
}

/// Takes `op` now: sent, answered at once (the card is there already), or refused.
fn take(card: &mut Card, op: Op, ctx: &Ctx<'_>) -> (bool, Vec<Effect>) {
    if op.operation == CardOperation::Refresh {
        // Ours, not a product's: nobody waits on an answer. A card with nothing at a processor
        // any more (or yet) has nothing to read.
        if card.failed || card.state == CardState::Requested || card.state == CardState::Terminated {
            return (
                false,
                vec![Effect::Note(
                    "card_refresh_skipped",
                    serde_json::json!({"state": card.state}),
                )],
            );
        }
        let partner = card.partner.clone().unwrap_or_default();
        return (true, send(card, op, partner.clone(), 1, vec![partner], ctx));
    }
    match check(card, op.operation) {
        Check::Send => {
            let partner = card.partner.clone().unwrap_or_default();
            (true, send(card, op, partner.clone(), 1, vec![partner], ctx))
        }
        Check::AlreadyThere => (
            false,
            vec![Effect::Changed {
                operation: Some(op.operation),
                failure: None,
            }],
        ),
        Check::Refuse(f) => (
            false,
            vec![
                Effect::Note(
                    "card_operation_refused",
                    serde_json::json!({"operation": op.operation, "code": f.code}),
                ),
                Effect::Changed {
                    operation: Some(op.operation),
                    failure: Some(f),
                },
            ],
        ),
    }
}

/// Takes waiting operations in order until one is sent.
fn drain(card: &mut Card, ctx: &Ctx<'_>, effects: &mut Vec<Effect>) {
    while card.pending.is_none() && !card.waiting.is_empty() {
        let op = card.waiting.remove(0);
        let (_, more) = take(card, op, ctx);
        effects.extend(more);
    }
}

/// Reads the card at its processor now, or after the operation in flight.
fn read(card: &mut Card, ctx: &Ctx<'_>, effects: &mut Vec<Effect>) {
    let op = Op {
        operation: CardOperation::Refresh,
        command: ctx.next_request,
        reason: None,
    };
    if card.pending.is_some() {
        card.waiting.push(op);
    } else {
        let (_, more) = take(card, op, ctx);
        effects.extend(more);
    }
}

pub fn step(card: &Card, input: Input, ctx: &Ctx<'_>) -> (Card, Vec<Effect>) {
    let mut card = card.clone();
    let mut effects = Vec::new();
    match input {
        Input::Command(op) if op.operation == CardOperation::Issue => {
            effects.push(Effect::Note("issue_repeated", serde_json::json!({})));
        }
        Input::Command(op) if op.operation == CardOperation::Refresh => {
            effects.push(Effect::Changed {
                operation: Some(op.operation),
                failure: Some(refuse(
                    "card_operation_invalid",
                    "REFRESH is the mesh's own; products activate, freeze, unfreeze or terminate",
                )),
            });
        }
        Input::Command(op) => {
            if card.pending.is_some() {
                effects.push(Effect::Note(
                    "card_operation_waiting",
                    serde_json::json!({"operation": op.operation}),
                ));
                card.waiting.push(op);
            } else {
                let (_, more) = take(&mut card, op, ctx);
                effects.extend(more);
            }
        }
        Input::Answer(a) => answer(&mut card, a, ctx, &mut effects),
        Input::Timer => {
            let read_coming = card
                .pending
                .as_ref()
                .is_some_and(|p| p.op.operation == CardOperation::Refresh)
                || card.waiting.iter().any(|o| o.operation == CardOperation::Refresh);
            if !read_coming {
                read(&mut card, ctx, &mut effects);
            }
        }
        Input::ProcessorState(s) => {
            // A processor's notice is a prompt, not the truth: notices come late, twice and out of
            // order (an old ACTIVE after our FREEZE). The card is read at the processor and its
            // state then is taken, by the flow and by the adapter's decision store alike (it
            // decides the processor's authorizations from it).
            //
            // A read already sent may have read before this change: one more waits behind
            // anything in flight (a read waiting reads after this notice's change; one is enough).
            let settled = card.failed || card.state == CardState::Requested || card.state == CardState::Terminated;
            let read_waiting = card.waiting.iter().any(|o| o.operation == CardOperation::Refresh);
            if settled || read_waiting || (s == card.state && card.pending.is_none()) {
                // Nothing to read, a read that will see this change, or the echo of our own.
            } else {
                effects.push(Effect::Note(
                    "card_state_reported_by_processor",
                    serde_json::json!({"state": card.state, "reported": s}),
                ));
                read(&mut card, ctx, &mut effects);
            }
        }
    }
    (card, effects)
}

/// The longest wait between reads of a card whose processor cannot answer.
pub const REREAD_MAX_SECONDS: u64 = 900;

/// The card as its processor has it now: taken if it moved (products hear of it, with no
/// operation of theirs). A read that failed changes nothing; one that may succeed later (the
/// processor down, slow or limiting us) is tried again by the card's timer, sooner first.
fn refreshed(card: &mut Card, a: Answer, ctx: &Ctx<'_>, effects: &mut Vec<Effect>) {
    if let Some(f) = a.failure {
        let again = f.failure_class == FailureClass::Transient;
        effects.push(Effect::Note(
            "card_refresh_failed",
            serde_json::json!({"partner": a.partner, "code": f.code, "read_again": again}),
        ));
        if again {
            let wait = ctx
                .reread_after
                .max(1)
                .saturating_mul(1 << card.read_failures.min(10))
                .min(REREAD_MAX_SECONDS.max(ctx.reread_after));
            card.read_failures += 1;
            effects.push(Effect::Timer(Some(wait)));
        }
        return;
    }
    if card.read_failures > 0 {
        card.read_failures = 0;
        effects.push(Effect::Timer(None));
    }
    if a.state == card.state || card.state == CardState::Terminated || a.state == CardState::Requested {
        effects.push(Effect::Note("card_refreshed", serde_json::json!({"state": a.state})));
        return;
    }
    effects.push(Effect::Note(
        "card_state_changed_by_processor",
        serde_json::json!({"from": card.state, "to": a.state}),
    ));
    card.state = a.state;
    effects.push(Effect::Changed {
        operation: None,
        failure: None,
    });
}

fn answer(card: &mut Card, a: Answer, ctx: &Ctx<'_>, effects: &mut Vec<Effect>) {
    let Some(p) = card.pending.clone() else {
        effects.push(Effect::Note("stale_answer", serde_json::json!({"partner": a.partner})));
        return;
    };
    if p.request != a.request || p.partner != a.partner {
        effects.push(Effect::Note("stale_answer", serde_json::json!({"partner": a.partner})));
        return;
    }
    card.pending = None;
    let op = p.op.operation;
    if op == CardOperation::Refresh {
        refreshed(card, a, ctx, effects);
        drain(card, ctx, effects);
        return;
    }
    match a.failure {
        None => {
            // Terminated is final, whatever a late answer says.
            if card.state != CardState::Terminated {
                card.state = a.state;
            }
            if op == CardOperation::Issue {
                card.partner = Some(a.partner.clone());
                card.card_token = a.card_token.clone();
                card.last4 = a.last4.clone();
                if let Some(t) = a.card_token {
                    effects.push(Effect::Token {
                        partner: a.partner.clone(),
                        card_token: t,
                    });
                }
            }
            effects.push(Effect::Note(
                "card_operation_done",
                serde_json::json!({"operation": op, "partner": a.partner, "state": a.state}),
            ));
            effects.push(Effect::Changed {
                operation: Some(op),
                failure: None,
            });
        }
        Some(f) if op == CardOperation::Issue => {
            // A failure reported by the adapter means the processor has no live card: only then
            // may another processor issue it.
            let next = ctx.candidates.iter().find(|c| !p.tried.contains(c)).cloned();
            match next {
                Some(next) if f.failure_class == FailureClass::Transient => {
                    effects.push(Effect::Note(
                        "card_failover",
                        serde_json::json!({"from": a.partner, "to": next, "code": f.code}),
                    ));
                    let mut tried = p.tried.clone();
                    tried.push(next.clone());
                    effects.extend(send(card, p.op.clone(), next, p.attempt + 1, tried, ctx));
                    return;
                }
                _ => {
                    // Unknown outcomes stay REQUESTED for an operator; refusals end the card.
                    card.failed = !matches!(f.failure_class, FailureClass::ManualRepair | FailureClass::Ambiguous);
                    effects.push(Effect::Note(
                        "card_issue_failed",
                        serde_json::json!({"partner": a.partner, "code": f.code, "class": f.failure_class}),
                    ));
                    effects.push(Effect::Changed {
                        operation: Some(op),
                        failure: Some(f),
                    });
                }
            }
        }
        Some(f) => {
            effects.push(Effect::Note(
                "card_operation_failed",
                serde_json::json!({"operation": op, "partner": a.partner, "code": f.code}),
            ));
            effects.push(Effect::Changed {
                operation: Some(op),
                failure: Some(f),
            });
        }
    }
    drain(card, ctx, effects);
}
