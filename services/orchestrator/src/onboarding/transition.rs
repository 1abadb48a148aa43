//! The onboarding flow's transitions: pure functions of (state, input, routes) → (state, effects).
//!
//! ```text
//!  start ─▶ Kyc ──NEEDS_DOCUMENTS──▶ Kyc(documents) ──APPROVED──┐
//!            │ └──────────APPROVED──────────────────────────────┴─▶ Aml ──CLEAR──────────▶ approved
//!            ├─REJECTED─▶ rejected                                  ├─POSSIBLE_MATCH─▶ manual_review
//!            ├─REVIEW───▶ manual_review                             └─CONFIRMED_MATCH▶ rejected
//!            └─partner has no case (transient) ─▶ next partner of the route, or failed
//! ```
//!
//! The rules that keep a flow right whatever our own services go through:
//! - **One live case per step.** A step moves to another partner only on a failure, and an adapter
//!   reports a failure only when the partner has no case (ambiguity is resolved in the adapter, by
//!   asking the partner, and never reaches a flow as a failure that fails over).
//! - **Timers measure the partner, and never decide alone.** The KYC timer is armed when the partner
//!   holds the case (its first answer), and re-armed by each of its answers. When it fires, the flow
//!   asks the partner for the case's status; only the partner's answer moves the flow: final, it is
//!   applied; still live, the flow keeps waiting (or, after `max_checks` queries, or for documents
//!   the applicant never sent, goes to manual review). Our own delays (a restart, a rebalance, a
//!   backlog) can therefore delay a decision but never change it. Screening is synchronous at every
//!   AML partner: the adapter always answers, so the AML step has no timer.
//! - **Terminal states never change**; anything arriving after is recorded (`late_answer`).
//! - **A definitive answer from a partner the step moved away from** (it had said it had no case,
//!   then answered after all) is applied if the step is still open: the first definitive answer
//!   wins, and the history says so (`answer_from_earlier_partner`). After the decision it is recorded
//!   as `late_answer`.

use switchyard_model::events::{
    aml::ScreeningStatus,
    common::{Failure, FailureClass},
    kyc::KycStatus,
    onboarding::OnboardingDecision,
};

use super::state::{
    AML_PENDING, AmlAnswer, Case, Domain, Effect, Input, KYC_DOCUMENTS, KYC_PENDING, KycAnswer, Route, Routes, State,
    Timer, aml_verdict, kyc_verdict,
};

/// Limits the transitions apply.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Status queries after the KYC timer before a still-live case goes to manual review.
    pub max_checks: u32,
}

/// A new flow: the first KYC case, or a failure when no route matches.
pub fn start(routes: &Routes) -> (State, Vec<Effect>) {
    let Some(route) = routes.kyc.as_ref().filter(|r| !r.candidates.is_empty()) else {
        return decide(
            None,
            None,
            OnboardingDecision::Failed,
            vec!["no KYC route matches this applicant".into()],
            Some(Failure::new(
                FailureClass::ManualRepair,
                "no_route",
                "no KYC route matches this applicant",
            )),
        );
    };
    let partner = route.candidates[0].clone();
    let mut effects = requests(Domain::Kyc, &partner, route);
    effects.push(Effect::Step {
        step: KYC_PENDING,
        partner: Some(partner.clone()),
    });
    (
        State::Kyc {
            case: Case::at(&partner),
            tried: vec![partner],
            documents: false,
            checks: 0,
            overdue: false,
        },
        effects,
    )
}

/// One input applied to one state.
pub fn step(state: &State, input: Input, routes: &Routes, limits: Limits) -> (State, Vec<Effect>) {
    match (state, input) {
        (State::Decided { .. }, input) => (state.clone(), vec![note("late_answer", &input)]),
        (State::Kyc { case, tried, .. }, Input::Kyc(a)) if a.partner != case.partner => {
            if tried.contains(&a.partner) && a.failure.is_none() && a.status.is_final() {
                let (next, mut effects) = kyc_answer(state, a.clone(), routes, limits, true);
                effects.insert(0, note("answer_from_earlier_partner", &Input::Kyc(a)));
                (next, effects)
            } else {
                (state.clone(), vec![note("ignored_answer", &Input::Kyc(a))])
            }
        }
        (State::Kyc { .. }, Input::Kyc(a)) => kyc_answer(state, a, routes, limits, false),
        (
            State::Kyc {
                case,
                tried,
                documents,
                checks,
                ..
            },
            Input::Timer,
        ) => match &case.reference {
            Some(reference) => (
                State::Kyc {
                    case: case.clone(),
                    tried: tried.clone(),
                    documents: *documents,
                    checks: checks + 1,
                    overdue: true,
                },
                vec![
                    Effect::Note {
                        event: "timeout",
                        detail: format!("asking {} for the case's status", case.partner),
                    },
                    Effect::QueryKyc {
                        partner: case.partner.clone(),
                        reference: reference.clone(),
                    },
                ],
            ),
            // No case known yet: the partner has not answered the request, which is our own
            // pipeline's delay (the adapter always answers); keep waiting.
            None => (
                state.clone(),
                vec![
                    Effect::Note {
                        event: "timeout_without_case",
                        detail: "waiting for the adapter's answer".into(),
                    },
                    Effect::Timer(Some(Timer::Kyc)),
                ],
            ),
        },
        (State::Kyc { .. }, input @ Input::Aml(_)) => (state.clone(), vec![note("ignored_answer", &input)]),
        (State::Aml { case, tried, .. }, Input::Aml(a)) if a.partner != case.partner => {
            if tried.contains(&a.partner) && a.failure.is_none() && a.status != ScreeningStatus::Pending {
                let (next, mut effects) = aml_answer(state, a.clone(), routes);
                effects.insert(0, note("answer_from_earlier_partner", &Input::Aml(a)));
                (next, effects)
            } else {
                (state.clone(), vec![note("ignored_answer", &Input::Aml(a))])
            }
        }
        (State::Aml { .. }, Input::Aml(a)) => aml_answer(state, a, routes),
        (State::Aml { .. }, input @ (Input::Kyc(_) | Input::Timer)) => {
            (state.clone(), vec![note("ignored_answer", &input)])
        }
    }
}

fn kyc_answer(
    state: &State,
    a: KycAnswer,
    routes: &Routes,
    limits: Limits,
    from_earlier: bool,
) -> (State, Vec<Effect>) {
    let State::Kyc {
        case,
        tried,
        documents,
        checks,
        overdue,
    } = state
    else {
        return (state.clone(), vec![note("ignored_answer", &Input::Kyc(a))]);
    };
    let mut effects = Vec::new();
    let mut case = if from_earlier {
        Case::at(&a.partner)
    } else {
        case.clone()
    };
    if let Some(reference) = &a.reference
        && case.reference.as_deref() != Some(reference)
    {
        case.reference = Some(reference.clone());
        effects.push(Effect::Reference {
            partner: a.partner.clone(),
            reference: reference.clone(),
        });
    }
    if let Some(f) = a.failure {
        return failed(Domain::Kyc, state, case, tried, f, routes, effects);
    }
    if let Some(verdict) = kyc_verdict(a.status) {
        effects.push(Effect::Verdict {
            domain: Domain::Kyc,
            verdict,
        });
    }
    let kyc = Some(case.clone());
    match a.status {
        KycStatus::Pending if *overdue && *checks >= limits.max_checks => {
            let f = Failure::new(
                FailureClass::ManualRepair,
                "provider_stalled",
                format!("{} still has the case open after {checks} status checks", case.partner),
            );
            escalate(effects, kyc, f)
        }
        KycStatus::NeedsDocuments if *overdue && *documents => {
            let f = Failure::new(
                FailureClass::ManualRepair,
                "documents_timeout",
                "the applicant did not provide documents in time",
            );
            escalate(effects, kyc, f)
        }
        KycStatus::Pending | KycStatus::NeedsDocuments => {
            let wants_documents = a.status == KycStatus::NeedsDocuments;
            let now_documents = *documents || wants_documents;
            if wants_documents && !*documents {
                effects.push(Effect::Step {
                    step: KYC_DOCUMENTS,
                    partner: Some(case.partner.clone()),
                });
            }
            effects.push(Effect::Timer(Some(if now_documents {
                Timer::Documents
            } else {
                Timer::Kyc
            })));
            (
                State::Kyc {
                    case,
                    tried: tried.clone(),
                    documents: now_documents,
                    checks: *checks,
                    overdue: false,
                },
                effects,
            )
        }
        KycStatus::Approved => with(effects, start_aml(case, routes)),
        KycStatus::Rejected => with(
            effects,
            decide(kyc, None, OnboardingDecision::Rejected, a.reasons, None),
        ),
        KycStatus::Review => {
            let f = Failure::new(
                FailureClass::ManualRepair,
                "kyc_review",
                "identity verification needs a manual review",
            );
            with(
                effects,
                decide(kyc, None, OnboardingDecision::ManualReview, a.reasons, Some(f)),
            )
        }
    }
}

fn start_aml(kyc: Case, routes: &Routes) -> (State, Vec<Effect>) {
    let Some(route) = routes.aml.as_ref().filter(|r| !r.candidates.is_empty()) else {
        let f = Failure::new(
            FailureClass::ManualRepair,
            "no_route",
            "no AML route matches this applicant",
        );
        return decide(
            Some(kyc),
            None,
            OnboardingDecision::Failed,
            vec![f.message.clone()],
            Some(f),
        );
    };
    let partner = route.candidates[0].clone();
    let mut effects = vec![Effect::Timer(None)];
    effects.extend(requests(Domain::Aml, &partner, route));
    effects.push(Effect::Step {
        step: AML_PENDING,
        partner: Some(partner.clone()),
    });
    (
        State::Aml {
            kyc,
            case: Case::at(&partner),
            tried: vec![partner],
        },
        effects,
    )
}

fn aml_answer(state: &State, a: AmlAnswer, routes: &Routes) -> (State, Vec<Effect>) {
    let State::Aml { kyc, case, tried } = state else {
        return (state.clone(), vec![note("ignored_answer", &Input::Aml(a))]);
    };
    let mut case = if a.partner == case.partner {
        case.clone()
    } else {
        Case::at(&a.partner)
    };
    let mut effects = Vec::new();
    if let Some(reference) = &a.reference {
        case.reference = Some(reference.clone());
        effects.push(Effect::Reference {
            partner: a.partner.clone(),
            reference: reference.clone(),
        });
    }
    if let Some(f) = a.failure {
        return failed(Domain::Aml, state, case, tried, f, routes, effects);
    }
    if let Some(verdict) = aml_verdict(a.status) {
        effects.push(Effect::Verdict {
            domain: Domain::Aml,
            verdict,
        });
    }
    if a.status == ScreeningStatus::Pending {
        effects.push(Effect::Note {
            event: "aml_pending",
            detail: format!("{} has not finished screening", a.partner),
        });
        let next = State::Aml {
            kyc: kyc.clone(),
            case,
            tried: tried.clone(),
        };
        return (next, effects);
    }
    let (kyc, aml) = (Some(kyc.clone()), Some(case.clone()));
    match a.status {
        ScreeningStatus::Pending => (state.clone(), effects),
        ScreeningStatus::Clear => with(effects, decide(kyc, aml, OnboardingDecision::Approved, vec![], None)),
        ScreeningStatus::PossibleMatch => with(
            effects,
            decide(
                kyc,
                aml,
                OnboardingDecision::ManualReview,
                a.reasons,
                Some(Failure::new(
                    FailureClass::ComplianceHold,
                    "screening_possible_match",
                    "possible sanctions/PEP match: compliance review",
                )),
            ),
        ),
        ScreeningStatus::ConfirmedMatch => with(
            effects,
            decide(
                kyc,
                aml,
                OnboardingDecision::Rejected,
                a.reasons,
                Some(Failure::new(
                    FailureClass::ComplianceHold,
                    "screening_confirmed_match",
                    "confirmed sanctions match",
                )),
            ),
        ),
    }
}

/// The step's partner has no case and could not open one: move to the next partner of the route
/// when the failure is the partner's (transient), otherwise decide by the failure's class.
fn failed(
    domain: Domain,
    state: &State,
    case: Case,
    tried: &[String],
    f: Failure,
    routes: &Routes,
    effects: Vec<Effect>,
) -> (State, Vec<Effect>) {
    let (kyc, aml) = match state {
        State::Aml { kyc, .. } => (Some(kyc.clone()), Some(case.clone())),
        _ => (Some(case.clone()), None),
    };
    let route = match domain {
        Domain::Kyc => routes.kyc.as_ref(),
        Domain::Aml => routes.aml.as_ref(),
    };
    let next = (f.failure_class == FailureClass::Transient)
        .then(|| route.and_then(|r| r.candidates.iter().find(|c| !tried.contains(c)).cloned()))
        .flatten();
    let Some(next) = next else {
        let (decision, class) = match f.failure_class {
            FailureClass::Transient | FailureClass::Permanent => (OnboardingDecision::Failed, f.failure_class),
            // Never fail over on doubt: an operator finds out what happened at the partner.
            FailureClass::Ambiguous | FailureClass::ManualRepair => {
                (OnboardingDecision::ManualReview, FailureClass::ManualRepair)
            }
            FailureClass::ComplianceHold => (OnboardingDecision::ManualReview, FailureClass::ComplianceHold),
        };
        let failure = Failure::new(class, f.code.clone(), format!("{}: {}", domain.name(), f.message));
        return with(
            effects,
            decide(
                kyc,
                aml,
                decision,
                vec![format!("{}: {}", domain.name(), f.code)],
                Some(failure),
            ),
        );
    };
    let mut effects = effects;
    let mut tried = tried.to_vec();
    tried.push(next.clone());
    effects.push(Effect::Failover {
        domain,
        from: case.partner.clone(),
        to: next.clone(),
        cause: f.code.clone(),
    });
    effects.push(Effect::Request {
        domain,
        partner: next.clone(),
        shadow: false,
    });
    let state = match (domain, state) {
        (Domain::Aml, State::Aml { kyc, .. }) => {
            effects.push(Effect::Step {
                step: AML_PENDING,
                partner: Some(next.clone()),
            });
            State::Aml {
                kyc: kyc.clone(),
                case: Case::at(&next),
                tried,
            }
        }
        _ => {
            effects.push(Effect::Step {
                step: KYC_PENDING,
                partner: Some(next.clone()),
            });
            effects.push(Effect::Timer(None));
            State::Kyc {
                case: Case::at(&next),
                tried,
                documents: false,
                checks: 0,
                overdue: false,
            }
        }
    };
    (state, effects)
}

fn requests(domain: Domain, partner: &str, route: &Route) -> Vec<Effect> {
    let mut effects = vec![Effect::Request {
        domain,
        partner: partner.to_string(),
        shadow: false,
    }];
    if let Some(shadow) = route.shadow.as_ref().filter(|s| s.as_str() != partner) {
        effects.push(Effect::Request {
            domain,
            partner: shadow.clone(),
            shadow: true,
        });
    }
    effects
}

fn decide(
    kyc: Option<Case>,
    aml: Option<Case>,
    decision: OnboardingDecision,
    reasons: Vec<String>,
    failure: Option<Failure>,
) -> (State, Vec<Effect>) {
    let effects = vec![
        Effect::Timer(None),
        Effect::Complete {
            decision,
            reasons,
            failure,
        },
    ];
    (State::Decided { decision, kyc, aml }, effects)
}

/// Manual review because of `f`, after `effects`.
fn escalate(effects: Vec<Effect>, kyc: Option<Case>, f: Failure) -> (State, Vec<Effect>) {
    with(
        effects,
        decide(
            kyc,
            None,
            OnboardingDecision::ManualReview,
            vec![f.message.clone()],
            Some(f),
        ),
    )
}

/// Effects already produced, followed by those of `next`.
fn with(mut effects: Vec<Effect>, next: (State, Vec<Effect>)) -> (State, Vec<Effect>) {
    effects.extend(next.1);
    (next.0, effects)
}

fn note(event: &'static str, input: &Input) -> Effect {
    let detail = match input {
        Input::Kyc(a) => format!(
            "kyc answer from {}: {:?}{}",
            a.partner,
            a.status,
            a.failure.as_ref().map(|f| format!(" ({})", f.code)).unwrap_or_default()
        ),
        Input::Aml(a) => format!(
            "aml answer from {}: {:?}{}",
            a.partner,
            a.status,
            a.failure.as_ref().map(|f| format!(" ({})", f.code)).unwrap_or_default()
        ),
        Input::Timer => "timer".to_string(),
    };
    Effect::Note { event, detail }
}
