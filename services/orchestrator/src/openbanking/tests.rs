//! The open-banking transition, by hand-written scenarios.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use switchyard_model::events::{
    common::{Failure, FailureClass},
    openbanking::{OpenBankingOperation as Op, OpenBankingStatus as S},
};

use super::transition::{Answer, Asked, Ctx, Effect, Flow, Input, Kind, start, step};

struct Run {
    flow: Flow,
    effects: Vec<Effect>,
    n: u128,
    candidates: Vec<String>,
    expires: Option<i64>,
}

const NOW: i64 = 1_800_000_000_000;

fn asked(op: Op) -> Asked {
    Asked {
        op,
        command: uuid::Uuid::from_u128(7),
        code: None,
    }
}

impl Run {
    fn start(kind: Kind, op: Op) -> Run {
        let candidates = vec!["ob-a".to_string(), "ob-b".to_string()];
        let ctx = Ctx {
            candidates: &candidates,
            next_request: uuid::Uuid::from_u128(1),
            check_after: 30,
            max_checks: 2,
            now_ms: NOW,
        };
        let (flow, effects) = start(kind, asked(op), &ctx);
        Run {
            flow,
            effects,
            n: 1,
            candidates,
            expires: None,
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Effect> {
        self.n += 1;
        let ctx = Ctx {
            candidates: &self.candidates,
            next_request: uuid::Uuid::from_u128(self.n),
            check_after: 30,
            max_checks: 2,
            now_ms: NOW,
        };
        let (flow, effects) = step(&self.flow, input, &ctx);
        self.flow = flow;
        self.effects.extend(effects.clone());
        effects
    }

    fn answer(&mut self, status: S, failure: Option<Failure>) -> Vec<Effect> {
        let p = self.flow.pending.clone().expect("pending");
        self.feed(Input::Answer(Answer {
            request: p.request,
            partner: p.partner,
            status,
            failure,
            reference: Some("ref-1".into()),
            authorization_url: Some("https://bank.example/auth".into()),
            consent_expires_at: self.expires,
            scopes: vec!["accounts".into()],
        }))
    }
}

fn requests(e: &[Effect]) -> Vec<(Op, String)> {
    e.iter()
        .filter_map(|x| match x {
            Effect::Request { asked, partner, .. } => Some((asked.op, partner.clone())),
            _ => None,
        })
        .collect()
}

fn outcomes(e: &[Effect]) -> Vec<(Op, S, Option<String>)> {
    e.iter()
        .filter_map(|x| match x {
            Effect::Outcome {
                op, status, failure, ..
            } => Some((*op, *status, failure.as_ref().map(|f| f.code.clone()))),
            _ => None,
        })
        .collect()
}

fn down() -> Failure {
    Failure::new(FailureClass::Transient, "unavailable", "down")
}

#[test]
fn a_consent_fails_over_only_when_nothing_is_live_and_then_stays() {
    let mut r = Run::start(Kind::Consent, Op::CreateConsent);
    let moved = r.answer(S::Failed, Some(down()));
    assert_eq!(requests(&moved), [(Op::CreateConsent, "ob-b".to_string())]);
    r.answer(S::AwaitingAuthorization, None);
    assert_eq!(r.flow.partner.as_deref(), Some("ob-b"));
    let e = r.feed(Input::Command(asked(Op::CompleteConsent)));
    assert_eq!(requests(&e), [(Op::CompleteConsent, "ob-b".to_string())]);
    let e = r.answer(S::Authorized, None);
    assert_eq!(outcomes(&e), [(Op::CompleteConsent, S::Authorized, None)]);
    // A fetch while another is in flight waits its turn.
    r.feed(Input::Command(asked(Op::FetchAccounts)));
    let waiting = r.feed(Input::Command(asked(Op::FetchTransactions)));
    assert!(requests(&waiting).is_empty());
    let req = r.flow.pending.clone().unwrap().request;
    let next = r.feed(Input::Fetched {
        request: req,
        failure: None,
    });
    assert_eq!(requests(&next), [(Op::FetchTransactions, "ob-b".to_string())]);
    let req = r.flow.pending.clone().unwrap().request;
    r.feed(Input::Fetched {
        request: req,
        failure: None,
    });
    r.feed(Input::Command(asked(Op::RevokeConsent)));
    r.answer(S::Revoked, None);
    assert!(r.flow.done);
    let after = r.feed(Input::Command(asked(Op::FetchAccounts)));
    assert_eq!(
        outcomes(&after),
        [(Op::FetchAccounts, S::Revoked, Some("flow_ended".into()))]
    );
}

#[test]
fn a_payment_in_doubt_is_asked_about_never_sent_elsewhere() {
    let mut r = Run::start(Kind::Payment, Op::InitiatePayment);
    let unknown = Failure::new(FailureClass::ManualRepair, "provider_outcome_unknown", "in doubt");
    let e = r.answer(S::Unknown, Some(unknown));
    assert!(requests(&e).is_empty(), "no failover while it may have been made");
    assert!(e.contains(&Effect::Timer(Some(30))));
    let ask = r.feed(Input::StatusCheck);
    assert_eq!(requests(&ask), [(Op::PaymentStatus, "ob-a".to_string())]);
    let found = r.answer(S::Executed, None);
    assert_eq!(outcomes(&found), [(Op::PaymentStatus, S::Executed, None)]);
    assert!(r.flow.done && found.contains(&Effect::Timer(None)));
}

#[test]
fn a_payment_never_found_goes_to_an_operator() {
    let mut r = Run::start(Kind::Payment, Op::InitiatePayment);
    r.answer(
        S::Unknown,
        Some(Failure::new(
            FailureClass::ManualRepair,
            "provider_outcome_unknown",
            "x",
        )),
    );
    for _ in 0..2 {
        r.feed(Input::StatusCheck);
        r.answer(
            S::Unknown,
            Some(Failure::new(
                FailureClass::ManualRepair,
                "provider_outcome_unknown",
                "x",
            )),
        );
    }
    let last = r.feed(Input::StatusCheck);
    assert_eq!(
        outcomes(&last),
        [(Op::InitiatePayment, S::Unknown, Some("manual_repair".into()))]
    );
    assert!(r.flow.done);
}

#[test]
fn notices_move_a_payment_forward_only_and_once() {
    let mut r = Run::start(Kind::Payment, Op::InitiatePayment);
    r.answer(S::AwaitingAuthorization, None);
    let e = r.feed(Input::Notice {
        status: S::Pending,
        reason: None,
    });
    assert_eq!(outcomes(&e), [(Op::InitiatePayment, S::Pending, None)]);
    let e = r.feed(Input::Notice {
        status: S::Executed,
        reason: None,
    });
    assert_eq!(outcomes(&e), [(Op::InitiatePayment, S::Executed, None)]);
    assert!(r.flow.done);
    for late in [S::Pending, S::Executed, S::Failed] {
        let e = r.feed(Input::Notice {
            status: late,
            reason: None,
        });
        assert!(outcomes(&e).is_empty(), "{late:?} after the end changes nothing");
    }
}

#[test]
fn a_failed_payment_says_why_and_a_refused_one_fails_over() {
    let mut r = Run::start(Kind::Payment, Op::InitiatePayment);
    let moved = r.answer(S::Failed, Some(down()));
    assert_eq!(requests(&moved), [(Op::InitiatePayment, "ob-b".to_string())]);
    r.answer(S::AwaitingAuthorization, None);
    let e = r.feed(Input::Notice {
        status: S::Failed,
        reason: Some("insufficient_funds".into()),
    });
    assert_eq!(
        outcomes(&e),
        [(Op::InitiatePayment, S::Failed, Some("insufficient_funds".into()))]
    );
}

#[test]
fn nothing_routed_fails_at_once() {
    let candidates: Vec<String> = vec![];
    let ctx = Ctx {
        candidates: &candidates,
        next_request: uuid::Uuid::from_u128(1),
        check_after: 30,
        max_checks: 2,
        now_ms: NOW,
    };
    let (flow, e) = start(Kind::Consent, asked(Op::CreateConsent), &ctx);
    assert!(flow.done);
    assert_eq!(
        outcomes(&e),
        [(Op::CreateConsent, S::Failed, Some("no_partner".into()))]
    );
}

#[test]
fn an_authorized_consent_is_renewed_a_week_before_it_expires() {
    let mut r = Run::start(Kind::Consent, Op::CreateConsent);
    r.answer(S::AwaitingAuthorization, None);
    r.feed(Input::Command(asked(Op::CompleteConsent)));
    r.expires = Some(NOW + 90 * 24 * 3600 * 1000);
    let e = r.answer(S::Authorized, None);
    assert!(e.contains(&Effect::Timer(Some(83 * 24 * 3600))), "{e:?}");
    assert!(
        e.iter()
            .any(|x| matches!(x, Effect::Outcome { scopes, .. } if scopes == &["accounts"]))
    );
    let renew = r.feed(Input::StatusCheck);
    assert_eq!(requests(&renew), [(Op::RefreshConsent, "ob-a".to_string())]);
    // Due already: at once (a minute on).
    r.expires = Some(NOW + 3600 * 1000);
    let e = r.answer(S::Authorized, None);
    assert!(e.contains(&Effect::Timer(Some(60))), "{e:?}");
}
