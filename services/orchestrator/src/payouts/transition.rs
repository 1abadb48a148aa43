//! The payout flow's pure transition: `step(state, input, plan) -> (state, effects)`. No I/O.

use switchyard_model::events::{
    common::{Failure, FailureClass},
    fraud::FraudDecision,
    payouts::PayoutStatus,
};

use super::state::{Effect, Execution, FraudAnswer, Input, Notice, PayAnswer, Plan, State, Timer};

/// What a step needs besides the state and input: the plan, and the ids a new request would take.
pub struct Ctx<'a> {
    pub plan: &'a Plan,
    /// The event id a new payout request takes (its execution key).
    pub next_request: uuid::Uuid,
    /// The flow's attempt count so far (a new request takes the next).
    pub attempt: i32,
}

fn failure(class: FailureClass, code: &str, message: impl Into<String>) -> Failure {
    Failure::new(class, code, message.into())
}

/// Terminal failure before or after a partner was asked (nothing was paid: velocity given back).
fn failed(live: Option<Execution>, failure: Failure, reasons: Vec<String>) -> (State, Vec<Effect>) {
    (
        State::Done {
            status: PayoutStatus::Failed,
            code: Some(failure.code.clone()),
            live,
            at_ms: 0,
        },
        vec![
            Effect::Arm(Timer::StatusCheck, false),
            Effect::ReleaseVelocity,
            Effect::Complete {
                status: PayoutStatus::Failed,
                failure: Some(failure),
                reasons,
            },
        ],
    )
}

/// The first state: screening at the first fraud partner; `refusal` (invalid, over a velocity
/// limit) fails it at once.
pub fn start(ctx: &Ctx<'_>, refusal: Option<Failure>) -> (State, Vec<Effect>) {
    if let Some(f) = refusal {
        let (state, mut effects) = failed(None, f, vec![]);
        // Nothing was taken.
        effects.retain(|e| *e != Effect::ReleaseVelocity);
        return (state, effects);
    }
    match ctx.plan.fraud.first() {
        Some(p) => (
            State::Screening {
                partner: p.clone(),
                tried: vec![p.clone()],
            },
            vec![
                Effect::Score { partner: p.clone() },
                Effect::Step {
                    step: "screening",
                    partner: Some(p.clone()),
                    reasons: vec![],
                },
            ],
        ),
        None => fraud_unavailable(ctx, "no fraud partner is routed for this payout"),
    }
}

/// No fraud partner could score: the route's fail mode decides.
fn fraud_unavailable(ctx: &Ctx<'_>, why: &str) -> (State, Vec<Effect>) {
    let plan = ctx.plan;
    if plan
        .fail_open_below_minor
        .is_some_and(|limit| plan.amount_minor < limit)
    {
        let (state, mut effects) = pay(ctx, &[]);
        let mut pre = vec![
            Effect::Note {
                event: "fraud_fail_open",
                detail: format!("{why}; below the route's fail-open limit: paid unscreened, scored later"),
            },
            Effect::Flag("fraud_unscreened"),
            Effect::Arm(Timer::Rescore, true),
        ];
        pre.append(&mut effects);
        return (state, pre);
    }
    failed(
        None,
        failure(
            FailureClass::Transient,
            "fraud_unavailable",
            format!("{why}; the route fails closed"),
        ),
        vec![],
    )
}

/// Routes to the first payout partner not yet tried.
fn pay(ctx: &Ctx<'_>, tried: &[String]) -> (State, Vec<Effect>) {
    let Some(partner) = ctx.plan.payout.iter().find(|p| !tried.contains(p)) else {
        return failed(
            None,
            failure(
                FailureClass::Permanent,
                "no_route",
                "no payout partner can pay this currency, country and amount",
            ),
            vec![],
        );
    };
    let live = Execution {
        partner: partner.clone(),
        request: ctx.next_request,
        reference: None,
    };
    let mut tried = tried.to_vec();
    tried.push(partner.clone());
    (
        State::Paying {
            live: live.clone(),
            tried,
        },
        vec![
            Effect::Pay {
                live,
                attempt: ctx.attempt + 1,
            },
            Effect::Step {
                step: "routed",
                partner: Some(partner.clone()),
                reasons: vec![],
            },
        ],
    )
}

pub fn step(state: &State, input: Input, ctx: &Ctx<'_>) -> (State, Vec<Effect>) {
    let unchanged = |event: &'static str, detail: String| (state.clone(), vec![Effect::Note { event, detail }]);
    match (state, input) {
        (State::Screening { partner, tried }, Input::Fraud(a)) if a.partner == *partner => fraud(ctx, tried, a),
        (
            State::HeldForReview { .. },
            Input::Review {
                release: true,
                reviewer,
            },
        ) => {
            let (next, mut effects) = pay(ctx, &[]);
            effects.insert(
                0,
                Effect::Step {
                    step: "released",
                    partner: None,
                    reasons: vec![format!("released by {reviewer}")],
                },
            );
            (next, effects)
        }
        (
            State::HeldForReview { .. },
            Input::Review {
                release: false,
                reviewer,
            },
        ) => failed(
            None,
            failure(
                FailureClass::Permanent,
                "review_rejected",
                format!("rejected by {reviewer} after fraud review"),
            ),
            vec![],
        ),
        (s, Input::Cancel) if s.cancellable() => failed(
            None,
            failure(
                FailureClass::Permanent,
                "cancelled",
                "cancelled before any partner was asked to pay",
            ),
            vec![],
        ),
        // With the partner and not yet sent: the partner decides (its answer, or its webhook, says).
        (State::Processing { live, .. }, Input::Cancel) if live.reference.is_some() => (
            state.clone(),
            vec![
                Effect::CancelAt { live: live.clone() },
                Effect::Step {
                    step: "cancel_requested",
                    partner: Some(live.partner.clone()),
                    reasons: vec![],
                },
            ],
        ),
        (s, Input::Cancel) => unchanged(
            "cancel_refused",
            format!("the payout is {} with a partner: not ours to cancel", s.name()),
        ),
        (
            State::Paying { live, tried } | State::InDoubt { live, tried, .. } | State::ManualRepair { live, tried },
            Input::Paid(a),
        ) if a.request == live.request && a.partner == live.partner => paid(state, ctx, live, tried, a),
        // The partner's record settles a doubt its answers could not: applied as its answer to
        // the live request. A failure it shows is final (never a failover on a list's word).
        (State::InDoubt { live, tried, .. } | State::ManualRepair { live, tried }, Input::Resolve(r))
            if r.partner == live.partner && r.status != PayoutStatus::Unknown =>
        {
            let a = PayAnswer {
                partner: r.partner,
                request: live.request,
                reference: Some(r.reference),
                status: r.status,
                failure: (r.status == PayoutStatus::Failed).then(|| {
                    failure(
                        FailureClass::Permanent,
                        "failed_at_partner",
                        "the partner's record shows the payout failed",
                    )
                }),
            };
            let (next, mut effects) = paid(state, ctx, live, tried, a);
            effects.insert(
                0,
                Effect::Note {
                    event: "resolved_from_partner_record",
                    detail: format!("{:?} per {}", r.status, r.evidence),
                },
            );
            (next, effects)
        }
        (State::InDoubt { live, .. }, Input::StatusCheck) => {
            (state.clone(), vec![Effect::Query { live: live.clone() }])
        }
        // Processing for long: the partner is asked (a webhook may have been lost), and again later.
        (State::Processing { live, .. }, Input::Poll) => (
            state.clone(),
            vec![Effect::Query { live: live.clone() }, Effect::Arm(Timer::Poll, true)],
        ),
        // Its answer counts as the partner's news at the time of the last notice.
        (State::Processing { live, at_ms }, Input::Paid(a))
            if a.request == live.request && a.partner == live.partner =>
        {
            let n = Notice {
                partner: a.partner,
                reference: live.reference.clone().unwrap_or_default(),
                status: a.status,
                at_ms: *at_ms,
                reason: a.failure.map(|f| f.code),
            };
            match n.status {
                PayoutStatus::Unknown => (state.clone(), vec![]),
                _ => notice(state, live, n),
            }
        }
        (State::Processing { live, at_ms } | State::Settled { live, at_ms }, Input::Notice(n))
            if Some(&n.reference) == live.reference.as_ref() && n.partner == live.partner =>
        {
            if n.at_ms < *at_ms {
                return unchanged(
                    "older_notice",
                    format!("{:?} at {} is older than the state's {}", n.status, n.at_ms, at_ms),
                );
            }
            notice(state, live, n)
        }
        (s, i) => unchanged("ignored", format!("{} in {}", input_name(&i), s.name())),
    }
}

fn input_name(i: &Input) -> &'static str {
    match i {
        Input::Fraud(_) => "fraud answer",
        Input::Review { .. } => "review",
        Input::Cancel => "cancel",
        Input::Paid(_) => "payout answer",
        Input::Notice(_) => "partner notice",
        Input::Resolve(_) => "partner record",
        Input::StatusCheck => "status check",
        Input::Poll => "processing check",
    }
}

fn fraud(ctx: &Ctx<'_>, tried: &[String], a: FraudAnswer) -> (State, Vec<Effect>) {
    if let Some(f) = &a.failure {
        if let Some(next) = ctx.plan.fraud.iter().find(|p| !tried.contains(p)) {
            let mut tried = tried.to_vec();
            tried.push(next.clone());
            return (
                State::Screening {
                    partner: next.clone(),
                    tried,
                },
                vec![
                    Effect::Failover {
                        from: a.partner.clone(),
                        to: next.clone(),
                        cause: f.code.clone(),
                    },
                    Effect::Score { partner: next.clone() },
                ],
            );
        }
        return fraud_unavailable(ctx, &format!("no fraud partner could score ({})", f.code));
    }
    match a.decision {
        FraudDecision::Deny => failed(
            None,
            failure(
                FailureClass::Permanent,
                "fraud_blocked",
                format!("blocked by fraud screening (score {})", a.score),
            ),
            a.reasons,
        ),
        FraudDecision::Review => (
            State::HeldForReview {
                partner: a.partner.clone(),
                score: a.score,
            },
            vec![Effect::Step {
                step: "held_for_review",
                partner: Some(a.partner),
                reasons: a.reasons,
            }],
        ),
        FraudDecision::Allow => pay(ctx, &[]),
    }
}

fn paid(state: &State, ctx: &Ctx<'_>, live: &Execution, tried: &[String], a: PayAnswer) -> (State, Vec<Effect>) {
    let with_ref = |live: &Execution| Execution {
        reference: a.reference.clone().or_else(|| live.reference.clone()),
        ..live.clone()
    };
    let remember = |live: &Execution| {
        live.reference.as_ref().map(|r| Effect::Reference {
            partner: live.partner.clone(),
            reference: r.clone(),
        })
    };
    match a.status {
        PayoutStatus::Pending | PayoutStatus::Accepted => {
            let live = with_ref(live);
            let mut effects: Vec<Effect> = remember(&live).into_iter().collect();
            effects.push(Effect::Arm(Timer::StatusCheck, false));
            effects.push(Effect::Arm(Timer::Poll, true));
            effects.push(Effect::Step {
                step: "processing",
                partner: Some(live.partner.clone()),
                reasons: vec![],
            });
            (State::Processing { live, at_ms: 0 }, effects)
        }
        PayoutStatus::Settled => {
            let live = with_ref(live);
            let mut effects: Vec<Effect> = remember(&live).into_iter().collect();
            effects.push(Effect::Arm(Timer::StatusCheck, false));
            effects.push(Effect::Complete {
                status: PayoutStatus::Settled,
                failure: None,
                reasons: vec![],
            });
            (State::Settled { live, at_ms: 0 }, effects)
        }
        PayoutStatus::Returned => {
            let live = with_ref(live);
            let mut effects: Vec<Effect> = remember(&live).into_iter().collect();
            effects.extend([
                Effect::Arm(Timer::StatusCheck, false),
                Effect::ReleaseVelocity,
                Effect::Complete {
                    status: PayoutStatus::Returned,
                    failure: None,
                    reasons: vec![],
                },
            ]);
            (
                State::Done {
                    status: PayoutStatus::Returned,
                    code: None,
                    live: Some(live),
                    at_ms: 0,
                },
                effects,
            )
        }
        PayoutStatus::Failed => {
            let f = a.failure.unwrap_or_else(|| {
                failure(
                    FailureClass::Permanent,
                    "payout_failed",
                    "the partner refused the payout",
                )
            });
            // The adapter reports a failure only when the partner has no live case: a transient
            // one may go to the next partner.
            if f.failure_class == FailureClass::Transient && ctx.plan.payout.iter().any(|p| !tried.contains(p)) {
                let (next, mut effects) = pay(ctx, tried);
                if let State::Paying { live: to, .. } = &next {
                    effects.insert(
                        0,
                        Effect::Failover {
                            from: live.partner.clone(),
                            to: to.partner.clone(),
                            cause: f.code.clone(),
                        },
                    );
                    effects.insert(0, Effect::Arm(Timer::StatusCheck, false));
                }
                return (next, effects);
            }
            failed(Some(with_ref(live)), f, vec![])
        }
        PayoutStatus::Unknown => {
            let checks = match state {
                State::InDoubt { checks, .. } => checks + 1,
                State::ManualRepair { .. } => ctx.plan.max_status_checks,
                _ => 0,
            };
            if checks >= ctx.plan.max_status_checks.max(1) {
                if matches!(state, State::ManualRepair { .. }) {
                    return (state.clone(), vec![]);
                }
                return (
                    State::ManualRepair {
                        live: live.clone(),
                        tried: tried.to_vec(),
                    },
                    vec![
                        Effect::Arm(Timer::StatusCheck, false),
                        Effect::Step {
                            step: "manual_repair",
                            partner: Some(live.partner.clone()),
                            reasons: vec![format!(
                                "{checks} status queries could not tell whether it was paid; an operator must find out at the partner"
                            )],
                        },
                    ],
                );
            }
            let mut effects = vec![Effect::Arm(Timer::StatusCheck, true)];
            if checks == 0 {
                effects.push(Effect::Step {
                    step: "in_doubt",
                    partner: Some(live.partner.clone()),
                    reasons: a.failure.map(|f| vec![f.code]).unwrap_or_default(),
                });
            }
            (
                State::InDoubt {
                    live: live.clone(),
                    tried: tried.to_vec(),
                    checks,
                },
                effects,
            )
        }
    }
}

fn notice(state: &State, live: &Execution, n: Notice) -> (State, Vec<Effect>) {
    let live = live.clone();
    let told_paid = matches!(state, State::Settled { .. });
    match n.status {
        PayoutStatus::Settled if !told_paid => (
            State::Settled { live, at_ms: n.at_ms },
            vec![
                Effect::Arm(Timer::Poll, false),
                Effect::Complete {
                    status: PayoutStatus::Settled,
                    failure: None,
                    reasons: vec![],
                },
            ],
        ),
        PayoutStatus::Failed | PayoutStatus::Returned if told_paid => (
            State::Done {
                status: PayoutStatus::Returned,
                code: n.reason.clone(),
                live: Some(live),
                at_ms: n.at_ms,
            },
            vec![Effect::ReleaseVelocity, Effect::Reverse { reason: n.reason }],
        ),
        PayoutStatus::Failed | PayoutStatus::Returned => {
            let status = n.status;
            let code = n.reason.clone().unwrap_or_else(|| "payout_failed".to_string());
            (
                State::Done {
                    status,
                    code: Some(code.clone()),
                    live: Some(live),
                    at_ms: n.at_ms,
                },
                vec![
                    Effect::Arm(Timer::Poll, false),
                    Effect::ReleaseVelocity,
                    Effect::Complete {
                        status,
                        failure: (status == PayoutStatus::Failed).then(|| {
                            let why = if code == "cancelled" {
                                "cancelled at the partner before it was sent"
                            } else {
                                "the partner reports the payout failed"
                            };
                            failure(FailureClass::Permanent, &code, why)
                        }),
                        reasons: n.reason.into_iter().collect(),
                    },
                ],
            )
        }
        // Progress, or news already known: only the time moves on.
        _ => {
            let next = match state {
                State::Settled { .. } => State::Settled { live, at_ms: n.at_ms },
                _ => State::Processing { live, at_ms: n.at_ms },
            };
            (next, vec![])
        }
    }
}
