//! The card transition, driven by hand-written scenarios and by random input sequences.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use switchyard_model::events::{
    cards::{CardFormFactor, CardOperation as O, CardState as S},
    common::{Failure, FailureClass},
};

use super::{
    state::{Answer, Card, Effect, Input, Op},
    transition::{Ctx, start, step},
};

const ROUTE: [&str; 2] = ["cards-a", "cards-b"];

fn op(operation: O, n: u128) -> Op {
    Op {
        operation,
        command: uuid::Uuid::from_u128(1000 + n),
        reason: None,
    }
}

fn route() -> Vec<String> {
    ROUTE.iter().map(|s| s.to_string()).collect()
}

struct Run {
    card: Card,
    effects: Vec<Effect>,
    n: u128,
    candidates: Vec<String>,
}

impl Run {
    fn issue(candidates: Vec<String>) -> Run {
        let ctx = Ctx {
            candidates: &candidates,
            next_request: uuid::Uuid::from_u128(1),
            reread_after: 30,
        };
        let (card, effects) = start(op(O::Issue, 0), Some(CardFormFactor::Physical), &ctx);
        Run {
            card,
            effects,
            n: 1,
            candidates,
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Effect> {
        self.n += 1;
        let ctx = Ctx {
            candidates: &self.candidates,
            next_request: uuid::Uuid::from_u128(self.n),
            reread_after: 30,
        };
        let (card, effects) = step(&self.card, input, &ctx);
        self.card = card;
        self.effects.extend(effects.clone());
        effects
    }

    /// A card issued at the first processor, then frozen through us.
    fn frozen() -> Run {
        let mut r = Run::issue(route());
        r.answer(S::Active, None);
        r.feed(Input::Command(op(O::Freeze, 1)));
        r.answer(S::Frozen, None);
        r
    }

    /// The adapter's answer to what is pending: done in `state`, or failed with `failure`.
    fn answer(&mut self, state: S, failure: Option<Failure>) -> Vec<Effect> {
        let p = self.card.pending.clone().expect("something pending");
        self.feed(Input::Answer(Answer {
            request: p.request,
            partner: p.partner,
            card_token: Some("tok-1".into()),
            last4: Some("0421".into()),
            state,
            failure,
        }))
    }
}

fn requests(effects: &[Effect]) -> Vec<(O, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Request { op, partner, .. } => Some((op.operation, partner.clone())),
            _ => None,
        })
        .collect()
}

fn changes(effects: &[Effect]) -> Vec<(Option<O>, Option<String>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Changed { operation, failure } => Some((*operation, failure.as_ref().map(|f| f.code.clone()))),
            _ => None,
        })
        .collect()
}

fn unavailable() -> Failure {
    Failure::new(FailureClass::Transient, "unavailable", "processor down")
}

#[test]
fn a_card_is_issued_activated_frozen_and_terminated_at_the_processor_that_issued_it() {
    let mut r = Run::issue(route());
    assert_eq!(requests(&r.effects), [(O::Issue, "cards-a".to_string())]);
    r.answer(S::Inactive, None);
    assert_eq!(r.card.state, S::Inactive);
    assert_eq!(r.card.card_token.as_deref(), Some("tok-1"));
    assert!(
        r.effects
            .iter()
            .any(|e| matches!(e, Effect::Token { partner, .. } if partner == "cards-a"))
    );
    for (operation, after) in [
        (O::Activate, S::Active),
        (O::Freeze, S::Frozen),
        (O::Unfreeze, S::Active),
        (O::Terminate, S::Terminated),
    ] {
        let sent = r.feed(Input::Command(op(operation, 0)));
        assert_eq!(requests(&sent), [(operation, "cards-a".to_string())]);
        let done = r.answer(after, None);
        assert_eq!(changes(&done), [(Some(operation), None)]);
        assert_eq!(r.card.state, after);
    }
    let late = r.feed(Input::Command(op(O::Unfreeze, 9)));
    assert_eq!(changes(&late), [(Some(O::Unfreeze), Some("card_terminated".into()))]);
    assert!(requests(&late).is_empty());
}

#[test]
fn an_issue_refused_with_no_live_card_fails_over_and_the_card_stays_there() {
    let mut r = Run::issue(route());
    let moved = r.answer(S::Requested, Some(unavailable()));
    assert_eq!(requests(&moved), [(O::Issue, "cards-b".to_string())]);
    assert!(changes(&moved).is_empty(), "no outcome yet");
    r.answer(S::Active, None);
    assert_eq!(r.card.partner.as_deref(), Some("cards-b"));
    let sent = r.feed(Input::Command(op(O::Freeze, 1)));
    assert_eq!(
        requests(&sent),
        [(O::Freeze, "cards-b".to_string())],
        "never the route's primary again"
    );
}

#[test]
fn an_issue_whose_outcome_is_unknown_never_goes_to_another_processor() {
    let mut r = Run::issue(route());
    let unknown = Failure::new(FailureClass::ManualRepair, "provider_outcome_unknown", "in doubt");
    let e = r.answer(S::Requested, Some(unknown));
    assert!(requests(&e).is_empty());
    assert_eq!(changes(&e), [(Some(O::Issue), Some("provider_outcome_unknown".into()))]);
    assert!(!r.card.failed, "stays requested for an operator");
    let refused = r.feed(Input::Command(op(O::Activate, 1)));
    assert_eq!(changes(&refused), [(Some(O::Activate), Some("card_not_issued".into()))]);
}

#[test]
fn operations_asked_while_another_is_in_flight_wait_their_turn() {
    let mut r = Run::issue(route());
    assert!(requests(&r.feed(Input::Command(op(O::Activate, 1)))).is_empty());
    assert!(requests(&r.feed(Input::Command(op(O::Freeze, 2)))).is_empty());
    let issued = r.answer(S::Inactive, None);
    assert_eq!(requests(&issued), [(O::Activate, "cards-a".to_string())]);
    let activated = r.answer(S::Active, None);
    assert_eq!(requests(&activated), [(O::Freeze, "cards-a".to_string())]);
    r.answer(S::Frozen, None);
    assert_eq!(r.card.state, S::Frozen);
    assert!(r.card.waiting.is_empty());
}

#[test]
fn a_stale_answer_and_a_repeated_issue_change_nothing() {
    let mut r = Run::issue(route());
    let before = r.card.clone();
    let e = r.feed(Input::Answer(Answer {
        request: uuid::Uuid::from_u128(999),
        partner: "cards-a".into(),
        card_token: Some("tok-x".into()),
        last4: None,
        state: S::Active,
        failure: None,
    }));
    assert_eq!(r.card, before);
    assert!(changes(&e).is_empty());
    r.answer(S::Active, None);
    let again = r.feed(Input::Command(op(O::Issue, 5)));
    assert!(requests(&again).is_empty() && changes(&again).is_empty());
}

#[test]
fn a_state_the_card_is_already_in_is_answered_without_a_call() {
    let mut r = Run::issue(route());
    r.answer(S::Active, None);
    let e = r.feed(Input::Command(op(O::Activate, 1)));
    assert!(requests(&e).is_empty());
    assert_eq!(changes(&e), [(Some(O::Activate), None)]);
    let e = r.feed(Input::Command(op(O::Unfreeze, 2)));
    assert_eq!(changes(&e), [(Some(O::Unfreeze), None)]);
}

#[test]
fn no_route_fails_the_card_at_once() {
    let r = Run::issue(vec![]);
    assert!(r.card.failed);
    assert_eq!(changes(&r.effects), [(Some(O::Issue), Some("no_partner".into()))]);
}

/// A processor's notice prompts a read of the card there; the state read is taken (the adapter's
/// decision store takes it from the same answer). The notice's own state is never taken: it may be
/// an old one.
#[test]
fn a_change_the_processor_reports_is_read_there_and_taken() {
    let mut r = Run::frozen();

    // Its console unfroze the card: read, then taken; products hear of it with no operation.
    let e = r.feed(Input::ProcessorState(S::Active));
    assert_eq!(requests(&e), [(O::Refresh, "cards-a".to_string())]);
    assert!(changes(&e).is_empty(), "nothing is taken from the notice itself");
    assert_eq!(r.card.state, S::Frozen);
    // A second notice while the read is out: that read may have been made before this change,
    // so one more read waits behind it, and only one however many notices come.
    assert!(requests(&r.feed(Input::ProcessorState(S::Active))).is_empty());
    assert!(requests(&r.feed(Input::ProcessorState(S::Frozen))).is_empty());
    assert_eq!(r.card.waiting.len(), 1);
    let e = r.answer(S::Active, None);
    assert_eq!(changes(&e), [(None, None)]);
    assert_eq!(r.card.state, S::Active);
    assert_eq!(requests(&e), [(O::Refresh, "cards-a".to_string())]);
    // The processor changed again after the first read: the second read takes it.
    let e = r.answer(S::Frozen, None);
    assert_eq!(changes(&e), [(None, None)]);
    assert_eq!(r.card.state, S::Frozen);
    r.feed(Input::Command(op(O::Unfreeze, 2)));
    r.answer(S::Active, None);

    // The echo of a state the card is in asks nothing.
    let e = r.feed(Input::ProcessorState(S::Active));
    assert!(requests(&e).is_empty() && changes(&e).is_empty());
}

/// An old notice arriving after a newer change of ours (ACTIVE after our FREEZE) is read, not
/// believed: the card stays frozen and products hear nothing.
#[test]
fn a_late_notice_does_not_undo_a_newer_change() {
    let mut r = Run::frozen();
    let e = r.feed(Input::ProcessorState(S::Active));
    assert_eq!(requests(&e), [(O::Refresh, "cards-a".to_string())]);
    let e = r.answer(S::Frozen, None);
    assert!(changes(&e).is_empty(), "{e:?}");
    assert_eq!(r.card.state, S::Frozen);
}

/// A notice during an operation waits its turn as a read; a read that fails changes nothing; a
/// card not issued or terminated is never read; products cannot send REFRESH.
#[test]
fn reads_wait_their_turn_fail_quietly_and_are_ours_alone() {
    let mut r = Run::issue(route());
    assert!(
        requests(&r.feed(Input::ProcessorState(S::Active))).is_empty(),
        "not issued yet"
    );
    r.answer(S::Inactive, None);
    r.feed(Input::Command(op(O::Activate, 1)));
    let e = r.feed(Input::ProcessorState(S::Frozen));
    assert!(requests(&e).is_empty(), "the activation is in flight");
    assert_eq!(r.card.waiting.len(), 1);
    r.feed(Input::ProcessorState(S::Frozen));
    assert_eq!(r.card.waiting.len(), 1, "one read waits, however many notices");
    let e = r.answer(S::Active, None);
    assert_eq!(changes(&e), [(Some(O::Activate), None)]);
    assert_eq!(requests(&e), [(O::Refresh, "cards-a".to_string())]);
    let e = r.answer(S::Requested, Some(unavailable()));
    assert!(changes(&e).is_empty(), "{e:?}");
    assert_eq!(timers(&e), [Some(30)], "read again later");
    assert_eq!(r.card.state, S::Active);
    assert!(r.card.pending.is_none());

    let e = r.feed(Input::Command(op(O::Refresh, 2)));
    assert_eq!(changes(&e), [(Some(O::Refresh), Some("card_operation_invalid".into()))]);
    assert!(requests(&e).is_empty());

    r.feed(Input::Command(op(O::Terminate, 3)));
    r.answer(S::Terminated, None);
    let e = r.feed(Input::ProcessorState(S::Active));
    assert!(requests(&e).is_empty() && changes(&e).is_empty());
}

fn timers(effects: &[Effect]) -> Vec<Option<u64>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Timer(t) => Some(*t),
            _ => None,
        })
        .collect()
}

/// A read the processor could not answer (down, slow, limiting us) is made again by the card's
/// timer, 30 s, then 60 s, ... up to 15 minutes apart; a read that succeeds clears the timer; one
/// refused for good is not repeated.
#[test]
fn a_failed_read_is_made_again_later_and_sooner_first() {
    let mut r = Run::frozen();
    r.feed(Input::ProcessorState(S::Active));
    let e = r.answer(S::Requested, Some(unavailable()));
    assert_eq!(timers(&e), [Some(30)]);
    assert_eq!(r.card.state, S::Frozen, "a failed read changes nothing");
    let e = r.feed(Input::Timer);
    assert_eq!(requests(&e), [(O::Refresh, "cards-a".to_string())]);
    assert!(timers(&r.answer(S::Requested, Some(unavailable()))).starts_with(&[Some(60)]));
    for _ in 0..8 {
        r.feed(Input::Timer);
        r.answer(S::Requested, Some(unavailable()));
    }
    r.feed(Input::Timer);
    assert_eq!(
        timers(&r.answer(S::Requested, Some(unavailable()))),
        [Some(900)],
        "capped"
    );
    // A timer while a read is already coming asks nothing more.
    r.feed(Input::Timer);
    assert!(requests(&r.feed(Input::Timer)).is_empty());
    let e = r.answer(S::Active, None);
    assert_eq!(timers(&e), [None], "cleared");
    assert_eq!(changes(&e), [(None, None)]);
    assert_eq!(r.card.state, S::Active);
    assert_eq!(r.card.read_failures, 0);

    r.feed(Input::ProcessorState(S::Frozen));
    let refused = Failure::new(FailureClass::Permanent, "card_not_found", "no such card");
    let e = r.answer(S::Requested, Some(refused));
    assert!(timers(&e).is_empty(), "{e:?}");
}

fn input_strategy() -> impl Strategy<Value = (u8, u8, bool)> {
    (0u8..8, 0u8..5, any::<bool>())
}

proptest! {
    /// Whatever products ask and processors answer, in any order: at most one operation is in
    /// flight; after the issue every request goes to the issuing processor; a terminated card never
    /// changes again; every command gets exactly one outcome once nothing is pending.
    #[test]
    fn random_sequences_keep_the_card_consistent(inputs in proptest::collection::vec(input_strategy(), 1..40)) {
        let mut r = Run::issue(route());
        let mut commands = 1usize;
        for (kind, state, fail) in inputs {
            let before = r.card.clone();
            let effects = match kind {
                0..=4 => {
                    let operation = [O::Activate, O::Freeze, O::Unfreeze, O::Terminate, O::Issue][kind as usize];
                    if operation != O::Issue {
                        commands += 1;
                    }
                    r.feed(Input::Command(op(operation, r.n)))
                }
                5 if r.card.pending.is_some() => {
                    let s = [S::Inactive, S::Active, S::Frozen, S::Terminated, S::Active][state as usize];
                    r.answer(s, fail.then(unavailable))
                }
                7 => r.feed(Input::Timer),
                _ => r.feed(Input::ProcessorState([S::Inactive, S::Active, S::Frozen, S::Terminated, S::Active][state as usize])),
            };
            let sent = requests(&effects);
            prop_assert!(sent.len() <= 1);
            if let Some(issuer) = &before.partner {
                for (_, partner) in &sent {
                    prop_assert_eq!(partner, issuer);
                }
            }
            if before.state == S::Terminated {
                prop_assert_eq!(r.card.state, S::Terminated);
            }
        }
        // Drain: answer whatever is pending until nothing is.
        let mut guard = 0;
        while r.card.pending.is_some() && guard < 100 {
            r.answer(S::Active, None);
            guard += 1;
        }
        let outcomes = r.effects.iter().filter(|e| matches!(e, Effect::Changed { operation: Some(_), .. })).count();
        prop_assert_eq!(outcomes, commands, "one outcome per command (issue included)");
    }
}
