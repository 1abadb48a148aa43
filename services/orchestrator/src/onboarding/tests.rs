//! Table-driven and property tests of the onboarding transitions (the pure core: no I/O).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use switchyard_model::events::{
    aml::ScreeningStatus,
    common::{Failure, FailureClass},
    kyc::KycStatus,
    onboarding::OnboardingDecision,
};

use super::{
    effects::vendor_subject_id,
    state::{AmlAnswer, Case, Domain, Effect, Input, KycAnswer, Route, Routes, State, Timer},
    transition::{Limits, start, step},
};

const LIMITS: Limits = Limits { max_checks: 3 };

fn routes() -> Routes {
    Routes {
        kyc: Some(Route {
            candidates: vec!["kyc-a".into(), "kyc-b".into()],
            shadow: None,
        }),
        aml: Some(Route {
            candidates: vec!["aml-a".into(), "aml-b".into()],
            shadow: None,
        }),
    }
}

fn kyc(partner: &str, status: KycStatus) -> Input {
    Input::Kyc(KycAnswer {
        partner: partner.into(),
        reference: Some(format!("{partner}-case")),
        status,
        reasons: vec![],
        failure: None,
    })
}

fn kyc_failed(partner: &str, class: FailureClass) -> Input {
    Input::Kyc(KycAnswer {
        partner: partner.into(),
        reference: None,
        status: KycStatus::Pending,
        reasons: vec![],
        failure: Some(Failure::new(class, "provider_unavailable", "down")),
    })
}

fn aml(partner: &str, status: ScreeningStatus) -> Input {
    Input::Aml(AmlAnswer {
        partner: partner.into(),
        reference: None,
        status,
        reasons: vec![],
        failure: None,
    })
}

fn aml_failed(partner: &str, class: FailureClass) -> Input {
    Input::Aml(AmlAnswer {
        partner: partner.into(),
        reference: None,
        status: ScreeningStatus::Pending,
        reasons: vec![],
        failure: Some(Failure::new(class, "provider_unavailable", "down")),
    })
}

/// Runs inputs from the start; returns the final state and every effect.
fn run(inputs: Vec<Input>) -> (State, Vec<Effect>) {
    let routes = routes();
    let (mut state, mut all) = start(&routes);
    for i in inputs {
        let (next, effects) = step(&state, i, &routes, LIMITS);
        state = next;
        all.extend(effects);
    }
    (state, all)
}

fn decision(s: &State) -> Option<OnboardingDecision> {
    match s {
        State::Decided { decision, .. } => Some(*decision),
        _ => None,
    }
}

fn requests(effects: &[Effect], domain: Domain) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Request {
                domain: d,
                partner,
                shadow: false,
            } if *d == domain => Some(partner.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_happy_path_and_each_verdict_decide_as_the_table_says() {
    use KycStatus as K;
    use OnboardingDecision as D;
    use ScreeningStatus as S;
    let table: Vec<(Vec<Input>, Option<D>)> = vec![
        (
            vec![
                kyc("kyc-a", K::Pending),
                kyc("kyc-a", K::Approved),
                aml("aml-a", S::Clear),
            ],
            Some(D::Approved),
        ),
        (vec![kyc("kyc-a", K::Rejected)], Some(D::Rejected)),
        (vec![kyc("kyc-a", K::Review)], Some(D::ManualReview)),
        (
            vec![kyc("kyc-a", K::Approved), aml("aml-a", S::PossibleMatch)],
            Some(D::ManualReview),
        ),
        (
            vec![kyc("kyc-a", K::Approved), aml("aml-a", S::ConfirmedMatch)],
            Some(D::Rejected),
        ),
        (
            vec![
                kyc("kyc-a", K::NeedsDocuments),
                kyc("kyc-a", K::Approved),
                aml("aml-a", S::Clear),
            ],
            Some(D::Approved),
        ),
        // The first partner has no case: the step moves on, and the second partner decides.
        (
            vec![
                kyc_failed("kyc-a", FailureClass::Transient),
                kyc("kyc-b", K::Approved),
                aml("aml-a", S::Clear),
            ],
            Some(D::Approved),
        ),
        (
            vec![
                kyc_failed("kyc-a", FailureClass::Transient),
                kyc_failed("kyc-b", FailureClass::Transient),
            ],
            Some(D::Failed),
        ),
        (vec![kyc_failed("kyc-a", FailureClass::Permanent)], Some(D::Failed)),
        // Doubt never fails over: an operator looks.
        (
            vec![kyc_failed("kyc-a", FailureClass::ManualRepair)],
            Some(D::ManualReview),
        ),
        (
            vec![kyc_failed("kyc-a", FailureClass::Ambiguous)],
            Some(D::ManualReview),
        ),
        (
            vec![
                kyc("kyc-a", K::Approved),
                aml_failed("aml-a", FailureClass::Transient),
                aml("aml-b", S::Clear),
            ],
            Some(D::Approved),
        ),
        (vec![kyc("kyc-a", K::Pending)], None),
    ];
    for (i, (inputs, want)) in table.into_iter().enumerate() {
        let (state, _) = run(inputs);
        assert_eq!(decision(&state), want, "row {i}: {state:?}");
    }
}

#[test]
fn a_timer_asks_the_partner_and_never_decides_or_fails_over_by_itself() {
    let (state, effects) = run(vec![kyc("kyc-a", KycStatus::Pending), Input::Timer]);
    assert!(
        matches!(
            state,
            State::Kyc {
                overdue: true,
                checks: 1,
                ..
            }
        ),
        "{state:?}"
    );
    assert!(effects.contains(&Effect::QueryKyc {
        partner: "kyc-a".into(),
        reference: "kyc-a-case".into()
    }));
    assert_eq!(requests(&effects, Domain::Kyc), vec!["kyc-a"], "no second vendor case");
    // The partner says the case is done: applied.
    let (state, _) = run(vec![
        kyc("kyc-a", KycStatus::Pending),
        Input::Timer,
        kyc("kyc-a", KycStatus::Approved),
    ]);
    assert!(matches!(state, State::Aml { .. }));
    // Still open: keep waiting (timer re-armed), up to the limit, then manual review.
    let (state, effects) = run(vec![
        kyc("kyc-a", KycStatus::Pending),
        Input::Timer,
        kyc("kyc-a", KycStatus::Pending),
    ]);
    assert!(matches!(state, State::Kyc { overdue: false, .. }));
    assert_eq!(effects.last(), Some(&Effect::Timer(Some(Timer::Kyc))));
    let mut inputs = vec![kyc("kyc-a", KycStatus::Pending)];
    for _ in 0..LIMITS.max_checks {
        inputs.push(Input::Timer);
        inputs.push(kyc("kyc-a", KycStatus::Pending));
    }
    let (state, effects) = run(inputs);
    assert_eq!(decision(&state), Some(OnboardingDecision::ManualReview));
    assert_eq!(requests(&effects, Domain::Kyc), vec!["kyc-a"]);
    // Documents never sent, confirmed by the partner after the documents timer: manual review.
    let (state, _) = run(vec![
        kyc("kyc-a", KycStatus::NeedsDocuments),
        Input::Timer,
        kyc("kyc-a", KycStatus::NeedsDocuments),
    ]);
    assert_eq!(decision(&state), Some(OnboardingDecision::ManualReview));
}

#[test]
fn a_late_definitive_answer_from_an_earlier_partner_is_applied_by_the_written_rule() {
    let (state, effects) = run(vec![
        kyc_failed("kyc-a", FailureClass::Transient),
        kyc("kyc-a", KycStatus::Rejected),
    ]);
    assert_eq!(decision(&state), Some(OnboardingDecision::Rejected));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Note {
            event: "answer_from_earlier_partner",
            ..
        }
    )));
    // After the decision it is recorded, never applied.
    let (state, effects) = run(vec![
        kyc_failed("kyc-a", FailureClass::Transient),
        kyc("kyc-b", KycStatus::Rejected),
        kyc("kyc-a", KycStatus::Approved),
    ]);
    assert_eq!(decision(&state), Some(OnboardingDecision::Rejected));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Note {
            event: "late_answer",
            ..
        }
    )));
}

fn any_partner() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("kyc-a"),
        Just("kyc-b"),
        Just("aml-a"),
        Just("aml-b"),
        Just("other")
    ]
    .prop_map(str::to_string)
}

fn any_class() -> impl Strategy<Value = FailureClass> {
    prop_oneof![
        Just(FailureClass::Transient),
        Just(FailureClass::Permanent),
        Just(FailureClass::ManualRepair),
        Just(FailureClass::ComplianceHold),
        Just(FailureClass::Ambiguous),
    ]
}

fn any_input() -> impl Strategy<Value = Input> {
    let kyc_status = prop_oneof![
        Just(KycStatus::Approved),
        Just(KycStatus::Rejected),
        Just(KycStatus::NeedsDocuments),
        Just(KycStatus::Pending),
        Just(KycStatus::Review),
    ];
    let aml_status = prop_oneof![
        Just(ScreeningStatus::Clear),
        Just(ScreeningStatus::PossibleMatch),
        Just(ScreeningStatus::ConfirmedMatch),
        Just(ScreeningStatus::Pending),
    ];
    prop_oneof![
        (
            any_partner(),
            kyc_status,
            proptest::option::of(any_class()),
            any::<bool>()
        )
            .prop_map(|(partner, status, class, with_ref)| Input::Kyc(KycAnswer {
                reference: with_ref.then(|| format!("{partner}-case")),
                partner,
                status,
                reasons: vec![],
                failure: class.map(|c| Failure::new(c, "x", "x")),
            })),
        (any_partner(), aml_status, proptest::option::of(any_class())).prop_map(|(partner, status, class)| {
            Input::Aml(AmlAnswer {
                partner,
                reference: None,
                status,
                reasons: vec![],
                failure: class.map(|c| Failure::new(c, "x", "x")),
            })
        }),
        Just(Input::Timer),
    ]
}

/// The live case of a waiting state.
fn live(state: &State) -> Option<(Domain, &Case)> {
    match state {
        State::Kyc { case, .. } => Some((Domain::Kyc, case)),
        State::Aml { case, .. } => Some((Domain::Aml, case)),
        State::Decided { .. } => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever arrives in whatever order: a terminal state never changes; a step opens a case at
    /// another partner only when its live partner said it has no case (a transient failure); every
    /// input has a defined answer (a change, or at least a line in the history); one decision at most.
    #[test]
    fn flows_keep_their_invariants_under_any_sequence_of_inputs(inputs in proptest::collection::vec(any_input(), 0..24)) {
        let routes = routes();
        let (mut state, first) = start(&routes);
        let mut decisions = first.iter().filter(|e| matches!(e, Effect::Complete { .. })).count();
        for input in inputs {
            let (next, effects) = step(&state, input.clone(), &routes, LIMITS);
            prop_assert!(next != state || !effects.is_empty(), "no answer to {input:?} in {state:?}");
            if state.is_terminal() {
                prop_assert_eq!(&next, &state);
                prop_assert!(effects.iter().all(|e| matches!(e, Effect::Note { .. })), "{effects:?}");
            }
            for e in &effects {
                if let Effect::Request { domain, partner, shadow: false } = e {
                    let same_step = live(&state).filter(|(d, _)| d == domain);
                    if let Some((_, case)) = same_step {
                        // A new case in the same step: only after the live partner said it has none.
                        let confirmed_none = match &input {
                            Input::Kyc(a) => a.partner == case.partner
                                && a.failure.as_ref().is_some_and(|f| f.failure_class == FailureClass::Transient),
                            Input::Aml(a) => a.partner == case.partner
                                && a.failure.as_ref().is_some_and(|f| f.failure_class == FailureClass::Transient),
                            Input::Timer => false,
                        };
                        prop_assert!(confirmed_none, "second {domain:?} case at {partner} while {case:?} is live ({input:?})");
                        prop_assert!(partner != &case.partner);
                    }
                }
            }
            decisions += effects.iter().filter(|e| matches!(e, Effect::Complete { .. })).count();
            state = next;
        }
        prop_assert!(decisions <= 1, "decided {decisions} times");
        prop_assert_eq!(decisions == 1, state.is_terminal());
    }

    /// A timer alone never decides and never opens a case.
    #[test]
    fn timers_alone_never_decide(before in proptest::collection::vec(any_input(), 0..8), timers in 1usize..10) {
        let routes = routes();
        let (mut state, _) = start(&routes);
        for input in before {
            state = step(&state, input, &routes, LIMITS).0;
        }
        for _ in 0..timers {
            let (next, effects) = step(&state, Input::Timer, &routes, LIMITS);
            prop_assert!(!effects.iter().any(|e| matches!(e, Effect::Complete { .. } | Effect::Request { .. } | Effect::Failover { .. })), "{effects:?}");
            prop_assert_eq!(next.is_terminal(), state.is_terminal());
            state = next;
        }
    }
}

#[test]
fn vendor_subject_ids_of_different_tenants_never_meet() {
    assert_ne!(vendor_subject_id("a.b", "c"), vendor_subject_id("a", "b.c"));
    assert_eq!(vendor_subject_id("tenant-alpha", "cust-1"), "12.tenant-alpha.cust-1");
}

proptest! {
    /// Different (tenant, applicant) pairs always give different vendor ids.
    #[test]
    fn vendor_subject_ids_are_injective(a in "[a-z.]{0,6}", b in "[a-z.]{0,6}", c in "[a-z.]{0,6}", d in "[a-z.]{0,6}") {
        prop_assume!((a.as_str(), b.as_str()) != (c.as_str(), d.as_str()));
        prop_assert_ne!(vendor_subject_id(&a, &b), vendor_subject_id(&c, &d));
    }
}

/// Screening hits reach the outcome as list, category and score: the matched name never does.
#[test]
fn screening_reasons_never_carry_the_matched_name() {
    use switchyard_model::events::aml::{HitCategory, ScreeningHit};
    let hits = [ScreeningHit {
        list_name: "OFAC SDN".into(),
        matched_name: "Ada Lovelace".into(),
        category: HitCategory::Sanction,
        score: 97,
    }];
    assert_eq!(
        super::hit_reasons(ScreeningStatus::ConfirmedMatch, &hits),
        ["confirmed match on OFAC SDN (Sanction, score 97)"]
    );
}

/// The success SLI: a flow that failed because no partner could be reached, or whose answer stayed
/// unknown, counts against us (`fault="platform"`); a refusal, a permanent failure and a success do
/// not.
#[test]
fn completions_name_whose_fault_a_failure_was() {
    let registry = switchyard_runtime::Metrics::new("orchestrator");
    let m = super::FlowMetrics::register(&registry);
    let started = chrono::Utc::now();
    let f = |class| Failure::new(class, "x", "x");
    m.complete(
        "onboarding",
        "failed",
        Some(&f(FailureClass::Transient)),
        started,
        false,
    );
    m.complete("payout", "failed", Some(&f(FailureClass::Ambiguous)), started, false);
    m.complete("payout", "failed", Some(&f(FailureClass::Permanent)), started, true);
    m.complete("onboarding", "approved", None, started, false);
    let text = registry.render();
    for line in [
        r#"switchyard_flows_completed_total{service="orchestrator",flow="onboarding",outcome="failed",fault="platform"} 1"#,
        r#"switchyard_flows_completed_total{service="orchestrator",flow="payout",outcome="failed",fault="platform"} 1"#,
        r#"switchyard_flows_completed_total{service="orchestrator",flow="payout",outcome="failed",fault="none"} 1"#,
        r#"switchyard_flows_completed_total{service="orchestrator",flow="onboarding",outcome="approved",fault="none"} 1"#,
        r#"switchyard_flow_duration_seconds_count{service="orchestrator",flow="payout",outcome="failed",path="straight"} 1"#,
        r#"switchyard_flow_duration_seconds_count{service="orchestrator",flow="payout",outcome="failed",path="waited"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
}
