//! Contract tests against recorded Sift answers (fixtures/sift): the request we send and the
//! canonical outcome of each answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard_model::events::{
    common::Money,
    fraud::{Channel, FraudDecision, ScoreBand},
};
use switchyard_runtime::Secret;

use super::{Sift, SiftConfig};
use crate::{
    VendorError,
    fraud::{FraudVendor, Transaction},
    testing::recorded,
};

fn codes(o: &crate::fraud::FraudOutcome) -> Vec<&str> {
    o.reasons.iter().map(String::as_str).collect()
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sift/", $name))
    };
}

fn tx(customer: &str, amount_minor: i64, currency: &str) -> Transaction {
    Transaction {
        transaction_id: "po-123".into(),
        customer_id: customer.into(),
        amount: Money {
            amount_minor,
            currency: currency.into(),
        },
        counterparty_id: "ben-9".into(),
        channel: Channel::Mobile,
        device_id: Some("dev-1".into()),
    }
}

fn sift(base: String) -> Sift {
    Sift::new(SiftConfig {
        partner: "fraud-sift".into(),
        base_url: base,
        api_key: Secret::new("key-abc"),
        review_at: 0.6,
        block_at: 0.9,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

async fn scored(
    status: u16,
    body: &'static str,
    t: Transaction,
) -> (Result<crate::fraud::FraudOutcome, VendorError>, String) {
    let (base, seen) = recorded(status, body).await;
    let out = sift(base).score(&t).await;
    (out, seen.await.unwrap())
}

#[tokio::test]
async fn a_transaction_event_carries_micros_and_asks_for_the_score() {
    let (out, request) = scored(200, fixture!("event_allow.json"), tx("cust-4410", 1523, "USD")).await;
    let head = request.lines().next().unwrap();
    assert!(head.starts_with("POST /v205/events?"), "{head}");
    assert!(
        head.contains("return_score=true") && head.contains("abuse_types=payment_abuse"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["$type"], "$transaction");
    assert_eq!(body["$api_key"], "key-abc");
    assert_eq!(body["$amount"], 15_230_000, "USD 15.23 in micros");
    assert_eq!(body["$currency_code"], "USD");
    assert_eq!(body["$user_id"], "cust-4410");
    assert_eq!(body["$transaction_id"], "po-123");
    assert_eq!(body["$session_id"], "dev-1");
    assert!(body.get("$app").is_some(), "a mobile channel names the app");
    let out = out.unwrap();
    assert_eq!(
        (out.score, out.decision, out.band()),
        (43, FraudDecision::Allow, ScoreBand::Low)
    );
    assert!(out.reasons.is_empty());
    assert_eq!(out.provider_reference.as_deref(), Some("req-5f1c2a"));
}

#[tokio::test]
async fn micros_follow_the_currency_exponent() {
    for (minor, cur, micros) in [(1500, "JPY", 1_500_000_000i64), (1500, "KWD", 1_500_000)] {
        let (_, request) = scored(200, fixture!("event_allow.json"), tx("c", minor, cur)).await;
        let body: serde_json::Value = serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["$amount"], micros, "{minor} {cur}");
    }
}

#[tokio::test]
async fn a_workflow_decision_overrides_the_score_and_reasons_become_canonical_codes() {
    let (out, _) = scored(
        200,
        fixture!("event_block_workflow.json"),
        tx("cust-fraudster-77", 99_000, "EUR"),
    )
    .await;
    let out = out.unwrap();
    assert_eq!(
        (out.score, out.decision, out.band()),
        (968, FraudDecision::Deny, ScoreBand::High)
    );
    assert_eq!(codes(&out), ["payment_method", "device", "velocity"]);
    // No vendor words past the adapter.
    assert!(out.reasons.iter().all(|r| crate::fraud::REASONS.contains(&r.as_str())));
}

#[tokio::test]
async fn without_a_workflow_the_score_thresholds_decide() {
    let (out, _) = scored(
        200,
        fixture!("event_review_by_score.json"),
        tx("cust-risky-12", 480_000, "GBP"),
    )
    .await;
    let out = out.unwrap();
    assert_eq!(
        (out.score, out.decision, out.band()),
        (714, FraudDecision::Review, ScoreBand::High)
    );
    assert_eq!(codes(&out), ["amount", "identity"]);
}

#[tokio::test]
async fn errors_in_the_body_are_classified() {
    let (out, _) = scored(401, fixture!("error_invalid_key.json"), tx("c", 100, "EUR")).await;
    assert!(matches!(out, Err(VendorError::Auth(_))), "{out:?}");
    let (out, _) = scored(200, fixture!("event_unknown_decision.json"), tx("c", 100, "EUR")).await;
    assert!(
        matches!(out, Err(VendorError::Permanent(ref m)) if m.contains("escalate_to_team_x")),
        "{out:?}"
    );
    // A gateway error to an event (which may have been recorded): in doubt, not failed.
    let e = crate::testing::answer(502, &[], "{}", true).await;
    assert!(matches!(e, VendorError::Ambiguous(_)), "{e:?}");
    // An unknown currency is refused before anything is sent.
    let s = sift("http://127.0.0.1:1".into());
    assert!(matches!(
        s.score(&tx("c", 1, "XXX")).await,
        Err(VendorError::Permanent(_))
    ));
}

#[test]
fn thresholds_must_be_ordered() {
    let mut cfg = SiftConfig {
        partner: "p".into(),
        base_url: "http://x".into(),
        api_key: Secret::new("k"),
        review_at: 0.9,
        block_at: 0.6,
        timeout: Duration::from_secs(1),
    };
    assert!(Sift::new(cfg.clone()).is_err());
    cfg.review_at = 0.5;
    assert!(Sift::new(cfg).is_ok());
}
