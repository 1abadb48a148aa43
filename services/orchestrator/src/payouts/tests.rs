//! The payout transition, driven by hand-written scenarios and by random input sequences.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use switchyard_model::events::{
    common::{Failure, FailureClass},
    fraud::FraudDecision,
    payouts::PayoutStatus,
};

use super::{
    state::{Effect, FraudAnswer, Input, Notice, PayAnswer, Plan, Resolution, State, Timer},
    transition::{Ctx, start, step},
};

fn plan() -> Plan {
    Plan {
        payout: vec!["pay-a".into(), "pay-b".into()],
        fraud: vec!["fraud-a".into(), "fraud-b".into()],
        fail_open_below_minor: None,
        amount_minor: 10_000,
        max_status_checks: 3,
    }
}

/// Runs inputs from the start, returning the final state and every effect, in order.
fn run(plan: &Plan, inputs: impl IntoIterator<Item = Input>) -> (State, Vec<Effect>) {
    let mut n = 0u128;
    let mut next_id = || {
        n += 1;
        uuid::Uuid::from_u128(n)
    };
    let ctx = Ctx {
        plan,
        next_request: next_id(),
        attempt: 0,
    };
    let (mut state, mut all) = start(&ctx, None);
    let mut attempt = 0;
    for input in inputs {
        attempt += all.iter().filter(|e| matches!(e, Effect::Pay { .. })).count() as i32 - attempt;
        let ctx = Ctx {
            plan,
            next_request: next_id(),
            attempt,
        };
        let (next, effects) = step(&state, input, &ctx);
        state = next;
        all.extend(effects);
    }
    (state, all)
}

fn fraud(partner: &str, decision: FraudDecision) -> Input {
    Input::Fraud(FraudAnswer {
        partner: partner.into(),
        decision,
        score: 100,
        reasons: vec![],
        failure: None,
    })
}

fn fraud_down(partner: &str) -> Input {
    Input::Fraud(FraudAnswer {
        partner: partner.into(),
        decision: FraudDecision::Allow,
        score: 0,
        reasons: vec![],
        failure: Some(Failure::new(FailureClass::Transient, "provider_unavailable", "down")),
    })
}

/// The answer to the live request of `state` (whatever it is).
fn answer(state: &State, status: PayoutStatus, failure: Option<Failure>) -> Input {
    let live = state.live().expect("a live execution");
    Input::Paid(PayAnswer {
        partner: live.partner.clone(),
        request: live.request,
        reference: (status != PayoutStatus::Unknown && failure.is_none()).then(|| format!("ref-{}", live.partner)),
        status,
        failure,
    })
}

fn notice(partner: &str, status: PayoutStatus, at_ms: i64) -> Input {
    Input::Notice(Notice {
        partner: partner.into(),
        reference: format!("ref-{partner}"),
        status,
        at_ms,
        reason: (status == PayoutStatus::Returned || status == PayoutStatus::Failed).then(|| "account_closed".into()),
    })
}

fn completes(effects: &[Effect]) -> Vec<PayoutStatus> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Complete { status, .. } => Some(*status),
            _ => None,
        })
        .collect()
}

fn paid_to(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Pay { live, .. } => Some(live.partner.clone()),
            _ => None,
        })
        .collect()
}

/// Steps one input at a time (the live request's answer needs the state before it).
fn drive(plan: &Plan, script: &[&dyn Fn(&State) -> Input]) -> (State, Vec<Effect>) {
    let ctx = Ctx {
        plan,
        next_request: uuid::Uuid::from_u128(1),
        attempt: 0,
    };
    let (mut state, mut all) = start(&ctx, None);
    for (i, f) in script.iter().enumerate() {
        let input = f(&state);
        let ctx = Ctx {
            plan,
            next_request: uuid::Uuid::from_u128(i as u128 + 2),
            attempt: paid_to(&all).len() as i32,
        };
        let (next, effects) = step(&state, input, &ctx);
        state = next;
        all.extend(effects);
    }
    (state, all)
}

#[test]
fn allowed_payout_is_paid_settled_and_a_later_return_is_compensated() {
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Accepted, None),
            &|_| notice("pay-a", PayoutStatus::Settled, 10),
            &|_| notice("pay-a", PayoutStatus::Settled, 10),
            &|_| notice("pay-a", PayoutStatus::Returned, 5_000),
        ],
    );
    assert_eq!(paid_to(&effects), ["pay-a"]);
    assert_eq!(completes(&effects), [PayoutStatus::Settled], "told paid once");
    assert_eq!(state.name(), "returned");
    let reversals: Vec<_> = effects.iter().filter(|e| matches!(e, Effect::Reverse { .. })).collect();
    assert_eq!(
        reversals,
        [&Effect::Reverse {
            reason: Some("account_closed".into())
        }]
    );
    assert!(effects.contains(&Effect::Reference {
        partner: "pay-a".into(),
        reference: "ref-pay-a".into()
    }));
}

#[test]
fn notices_are_ordered_by_the_partners_time_not_arrival() {
    // The return (t=20) arrives before the settlement (t=10): the product is never told paid.
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Accepted, None),
            &|_| notice("pay-a", PayoutStatus::Returned, 20),
            &|_| notice("pay-a", PayoutStatus::Settled, 10),
        ],
    );
    assert_eq!(completes(&effects), [PayoutStatus::Returned]);
    assert!(!effects.iter().any(|e| matches!(e, Effect::Reverse { .. })));
    assert_eq!(state.name(), "returned");
    // An older progress notice after the settlement changes nothing.
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Accepted, None),
            &|_| notice("pay-a", PayoutStatus::Settled, 30),
            &|_| notice("pay-a", PayoutStatus::Accepted, 20),
        ],
    );
    assert_eq!(state.name(), "settled");
    assert_eq!(completes(&effects), [PayoutStatus::Settled]);
}

#[test]
fn fraud_block_review_release_and_reject() {
    let (state, effects) = drive(&plan(), &[&|_| fraud("fraud-a", FraudDecision::Deny)]);
    assert_eq!(state.name(), "failed");
    assert!(paid_to(&effects).is_empty());
    assert!(matches!(&effects[..], [.., Effect::Complete { failure: Some(f), .. }] if f.code == "fraud_blocked"));

    let (state, effects) = drive(
        &plan(),
        &[&|_| fraud("fraud-a", FraudDecision::Review), &|_| Input::Review {
            release: true,
            reviewer: "ana".into(),
        }],
    );
    assert_eq!(state.name(), "paying");
    assert_eq!(paid_to(&effects), ["pay-a"]);

    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Review),
            &|_| Input::Review {
                release: false,
                reviewer: "ana".into(),
            },
            &|_| Input::Review {
                release: true,
                reviewer: "bob".into(),
            },
        ],
    );
    assert_eq!(state.name(), "failed", "a rejected payout stays rejected");
    assert!(paid_to(&effects).is_empty());
}

#[test]
fn fraud_partners_down_fail_closed_or_open_below_the_limit_flagged() {
    let (state, effects) = drive(&plan(), &[&|_| fraud_down("fraud-a"), &|_| fraud_down("fraud-b")]);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Failover { to, .. } if to == "fraud-b"))
    );
    assert_eq!(state.name(), "failed");
    assert!(paid_to(&effects).is_empty(), "fail closed: nothing paid unscreened");

    let open = Plan {
        fail_open_below_minor: Some(50_000),
        ..plan()
    };
    let (state, effects) = drive(&open, &[&|_| fraud_down("fraud-a"), &|_| fraud_down("fraud-b")]);
    assert_eq!(state.name(), "paying");
    assert!(effects.contains(&Effect::Flag("fraud_unscreened")));
    assert!(effects.contains(&Effect::Arm(Timer::Rescore, true)), "scored later");

    let above = Plan {
        fail_open_below_minor: Some(10_000),
        ..plan()
    };
    let (state, _) = drive(&above, &[&|_| fraud_down("fraud-a"), &|_| fraud_down("fraud-b")]);
    assert_eq!(state.name(), "failed", "not below the limit");
}

#[test]
fn failover_only_when_the_first_partner_has_no_live_payout() {
    let down = || Some(Failure::new(FailureClass::Transient, "provider_unavailable", "503"));
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Failed, down()),
            &|s| answer(s, PayoutStatus::Accepted, None),
        ],
    );
    assert_eq!(paid_to(&effects), ["pay-a", "pay-b"]);
    assert_eq!(state.name(), "processing");

    // In doubt: never another partner; status queries until it is known.
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Unknown, None),
            &|_| Input::StatusCheck,
            &|s| answer(s, PayoutStatus::Unknown, None),
            &|_| Input::StatusCheck,
            &|s| answer(s, PayoutStatus::Accepted, None),
        ],
    );
    assert_eq!(paid_to(&effects), ["pay-a"]);
    assert_eq!(effects.iter().filter(|e| matches!(e, Effect::Query { .. })).count(), 2);
    assert_eq!(state.name(), "processing");

    // A status query that finds nothing at the partner: known not executed, so the next partner.
    let nothing = || Some(Failure::new(FailureClass::Transient, "not_executed", "nothing there"));
    let (_, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Unknown, None),
            &|_| Input::StatusCheck,
            &|s| answer(s, PayoutStatus::Failed, nothing()),
        ],
    );
    assert_eq!(paid_to(&effects), ["pay-a", "pay-b"]);

    // Queries that never tell: an operator.
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Unknown, None),
            &|s| answer(s, PayoutStatus::Unknown, None),
            &|s| answer(s, PayoutStatus::Unknown, None),
            &|s| answer(s, PayoutStatus::Unknown, None),
            &|s| answer(s, PayoutStatus::Unknown, None),
        ],
    );
    assert_eq!(state.name(), "manual_repair");
    assert_eq!(paid_to(&effects), ["pay-a"]);
    assert!(
        completes(&effects).is_empty(),
        "nothing said while the money may have moved"
    );
}

/// The settlement webhook never comes: the processing timer asks the partner, whose answer settles
/// the payout; while it is still processing the timer is armed again.
#[test]
fn a_lost_settlement_webhook_is_found_by_asking() {
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Accepted, None),
            &|_| Input::Poll,
            &|s| answer(s, PayoutStatus::Accepted, None),
            &|_| Input::Poll,
            &|s| answer(s, PayoutStatus::Settled, None),
            &|_| Input::Poll,
        ],
    );
    assert_eq!(state.name(), "settled");
    assert_eq!(completes(&effects), [PayoutStatus::Settled]);
    assert_eq!(effects.iter().filter(|e| matches!(e, Effect::Query { .. })).count(), 2);
    assert_eq!(
        effects.last(),
        Some(&Effect::Note {
            event: "ignored",
            detail: "processing check in settled".into()
        })
    );
    assert!(
        effects.contains(&Effect::Arm(Timer::Poll, false)),
        "no more checks once settled"
    );
}

/// A processing payout: the partner is asked to cancel it; its answer decides (cancelled, or it
/// goes on), and one in doubt is never asked (it may not exist yet).
#[test]
fn a_processing_payout_is_cancelled_by_its_partner_if_it_still_can() {
    let cancelled = || Some(Failure::new(FailureClass::Permanent, "cancelled", "cancelled"));
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Accepted, None),
            &|_| Input::Cancel,
            &|s| answer(s, PayoutStatus::Failed, cancelled()),
        ],
    );
    assert_eq!(state.name(), "cancelled");
    assert!(effects.iter().any(|e| matches!(e, Effect::CancelAt { .. })));
    assert!(effects.contains(&Effect::ReleaseVelocity));
    assert_eq!(paid_to(&effects), ["pay-a"], "no failover after a cancel");
    let (state, _) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Accepted, None),
            &|_| Input::Cancel,
            &|s| answer(s, PayoutStatus::Settled, None),
        ],
    );
    assert_eq!(state.name(), "settled", "too late to cancel: it goes on");
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Unknown, None),
            &|_| Input::Cancel,
        ],
    );
    assert_eq!(state.name(), "in_doubt");
    assert!(!effects.iter().any(|e| matches!(e, Effect::CancelAt { .. })));
}

#[test]
fn cancel_only_before_a_partner_was_asked() {
    let (state, effects) = drive(
        &plan(),
        &[&|_| Input::Cancel, &|_| fraud("fraud-a", FraudDecision::Allow)],
    );
    assert_eq!(state.name(), "cancelled");
    assert!(paid_to(&effects).is_empty(), "a late fraud answer pays nothing");
    let (state, _) = drive(
        &plan(),
        &[&|_| fraud("fraud-a", FraudDecision::Allow), &|_| Input::Cancel],
    );
    assert_eq!(state.name(), "paying");
}

#[test]
fn a_stale_answer_to_an_earlier_request_changes_nothing() {
    let down = || Some(Failure::new(FailureClass::Transient, "provider_unavailable", "503"));
    let first = std::cell::RefCell::new(None);
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| {
                *first.borrow_mut() = Some(answer(s, PayoutStatus::Failed, down()));
                answer(s, PayoutStatus::Failed, down())
            },
            &|_| first.borrow().clone().unwrap(),
        ],
    );
    assert_eq!(state.name(), "paying");
    assert_eq!(paid_to(&effects), ["pay-a", "pay-b"], "the duplicate moved nothing");
}

#[test]
fn a_partner_record_settles_a_doubt_only_at_the_live_partner() {
    let record = |partner: &str, status| {
        let partner = partner.to_string();
        move |_: &State| {
            Input::Resolve(Resolution {
                partner: partner.clone(),
                reference: "po_9".into(),
                status,
                evidence: "run 1".into(),
            })
        }
    };
    let unknowns: [&dyn Fn(&State) -> Input; 6] = [
        &|_| fraud("fraud-a", FraudDecision::Allow),
        &|s| answer(s, PayoutStatus::Unknown, None),
        &|s| answer(s, PayoutStatus::Unknown, None),
        &|s| answer(s, PayoutStatus::Unknown, None),
        &|s| answer(s, PayoutStatus::Unknown, None),
        &|s| answer(s, PayoutStatus::Unknown, None),
    ];
    // Left to an operator, then the partner's list shows it paid: settled, once, at that partner.
    let settled = record("pay-a", PayoutStatus::Settled);
    let mut inputs = unknowns.to_vec();
    inputs.push(&settled);
    let (state, effects) = drive(&plan(), &inputs);
    assert_eq!(state.name(), "settled");
    assert_eq!(paid_to(&effects), ["pay-a"]);
    assert_eq!(completes(&effects), [PayoutStatus::Settled]);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Reference { reference, .. } if reference == "po_9"))
    );

    // Another partner's record is not this payout's; a failed one is final (no failover).
    let elsewhere = record("pay-b", PayoutStatus::Settled);
    let failed = record("pay-a", PayoutStatus::Failed);
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Unknown, None),
            &elsewhere,
            &failed,
        ],
    );
    assert_eq!(state.name(), "failed");
    assert_eq!(paid_to(&effects), ["pay-a"], "never another partner on a list's word");
    assert!(matches!(&effects[..], [.., Effect::Complete { failure: Some(f), .. }] if f.code == "failed_at_partner"));

    // A payout not in doubt ignores it.
    let (state, effects) = drive(
        &plan(),
        &[
            &|_| fraud("fraud-a", FraudDecision::Allow),
            &|s| answer(s, PayoutStatus::Accepted, None),
            &settled,
        ],
    );
    assert_eq!(state.name(), "processing");
    assert!(completes(&effects).is_empty());
}

fn any_input() -> impl Strategy<Value = u8> {
    0u8..17
}

/// Random sequences: the invariants that keep money safe hold whatever arrives, in any order, any
/// number of times.
fn input_for(state: &State, pick: u8, at: i64) -> Input {
    let p = |s: &State| s.live().map(|l| l.partner.clone()).unwrap_or_else(|| "pay-a".into());
    match pick {
        0 => fraud("fraud-a", FraudDecision::Allow),
        1 => fraud("fraud-a", FraudDecision::Review),
        2 => fraud_down("fraud-a"),
        3 => fraud_down("fraud-b"),
        4 => Input::Review {
            release: true,
            reviewer: "r".into(),
        },
        5 => Input::Cancel,
        6..=9 if state.live().is_some() => answer(
            state,
            [
                PayoutStatus::Accepted,
                PayoutStatus::Unknown,
                PayoutStatus::Failed,
                PayoutStatus::Settled,
            ][(pick - 6) as usize],
            (pick == 8).then(|| Failure::new(FailureClass::Transient, "not_executed", "nothing")),
        ),
        10 => notice(&p(state), PayoutStatus::Settled, at),
        11 => notice(&p(state), PayoutStatus::Returned, at),
        12 => notice(&p(state), PayoutStatus::Accepted, at),
        13 => Input::StatusCheck,
        15 | 16 => Input::Resolve(Resolution {
            partner: p(state),
            reference: "po_r".into(),
            status: if pick == 15 {
                PayoutStatus::Settled
            } else {
                PayoutStatus::Failed
            },
            evidence: "run".into(),
        }),
        _ => Input::Poll,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn money_safety_holds_for_any_sequence(picks in proptest::collection::vec((any_input(), 0i64..50), 0..30)) {
        let plan = Plan { fail_open_below_minor: Some(50_000), ..plan() };
        let ctx = Ctx { plan: &plan, next_request: uuid::Uuid::from_u128(1), attempt: 0 };
        let (mut state, mut all) = start(&ctx, None);
        let mut may_have_paid: Option<String> = None;
        for (i, (pick, at)) in picks.into_iter().enumerate() {
            let input = input_for(&state, pick, at);
            // A failure answer for the live request proves it did not execute (the adapter's contract).
            if let Input::Paid(a) = &input
                && a.status == PayoutStatus::Failed
                && state.live().is_some_and(|l| l.request == a.request)
            {
                may_have_paid = None;
            }
            let ctx = Ctx { plan: &plan, next_request: uuid::Uuid::from_u128(i as u128 + 2), attempt: 0 };
            let (next, effects) = step(&state, input, &ctx);
            for e in &effects {
                if let Effect::Pay { live, .. } = e {
                    // Never a second execution while the first may have happened.
                    prop_assert!(may_have_paid.is_none(), "paid {} while {:?} may have paid", live.partner, may_have_paid);
                    may_have_paid = Some(live.partner.clone());
                }
            }
            if matches!(state, State::Done { .. }) {
                prop_assert_eq!(&next, &state, "terminal states never change");
                let only_notes = effects.iter().all(|e| matches!(e, Effect::Note { .. }));
                prop_assert!(only_notes, "a terminal state emits nothing: {:?}", effects);
            }
            state = next;
            all.extend(effects);
        }
        let told = completes(&all);
        prop_assert!(told.len() <= 1, "one terminal outcome: {:?}", told);
        let reversals = all.iter().filter(|e| matches!(e, Effect::Reverse { .. })).count();
        prop_assert!(reversals <= 1);
        if reversals == 1 {
            prop_assert_eq!(told, vec![PayoutStatus::Settled], "a reversal follows a settlement");
        }
    }
}

#[test]
fn routing_with_no_partner_fails_without_paying() {
    let p = Plan {
        payout: vec![],
        ..plan()
    };
    let (state, effects) = run(&p, [fraud("fraud-a", FraudDecision::Allow)]);
    assert_eq!(state.name(), "failed");
    assert!(matches!(&effects[..], [.., Effect::Complete { failure: Some(f), .. }] if f.code == "no_route"));
}

#[test]
fn accounts_are_checked_by_their_scheme() {
    use switchyard_model::events::payouts::{AccountIdentifier, AccountScheme};
    let acct = |scheme, value: &str, bank: Option<&str>| AccountIdentifier {
        scheme,
        value: value.into(),
        bank_code: bank.map(str::to_string),
    };
    assert!(switchyard_model::events::payouts::aba_valid("021000021"));
    assert!(switchyard_model::events::payouts::aba_valid("011000015"));
    assert!(
        !switchyard_model::events::payouts::aba_valid("021000022"),
        "one digit off"
    );
    assert!(
        !switchyard_model::events::payouts::aba_valid("02100002"),
        "eight digits"
    );
    assert_eq!(
        switchyard_model::events::payouts::account_problem(&acct(AccountScheme::Iban, "DE89370400440532013000", None)),
        None
    );
    assert!(
        switchyard_model::events::payouts::account_problem(&acct(AccountScheme::Iban, "DE89370400440532013001", None))
            .is_some()
    );
    assert_eq!(
        switchyard_model::events::payouts::account_problem(&acct(
            AccountScheme::SortCodeAccount,
            "31926819",
            Some("60-16-13")
        )),
        None
    );
    assert!(
        switchyard_model::events::payouts::account_problem(&acct(
            AccountScheme::SortCodeAccount,
            "3192681",
            Some("601613")
        ))
        .is_some()
    );
    assert_eq!(
        switchyard_model::events::payouts::account_problem(&acct(
            AccountScheme::AchRoutingAccount,
            "000123456789",
            Some("021000021")
        )),
        None
    );
    assert!(
        switchyard_model::events::payouts::account_problem(&acct(
            AccountScheme::AchRoutingAccount,
            "000123456789",
            Some("021000022")
        ))
        .is_some()
    );
}
