//! Contract tests against recorded SEON answers (fixtures/seon).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard_model::events::{
    common::Money,
    fraud::{Channel, FraudDecision, ScoreBand},
};
use switchyard_runtime::Secret;

use super::{Seon, SeonConfig};
use crate::decimal::major_amount;
use crate::{
    VendorError,
    fraud::{FraudOutcome, FraudVendor, Transaction},
    testing::recorded,
};

fn codes(o: &crate::fraud::FraudOutcome) -> Vec<&str> {
    o.reasons.iter().map(String::as_str).collect()
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/seon/", $name))
    };
}

fn tx(amount_minor: i64, currency: &str) -> Transaction {
    Transaction {
        transaction_id: "po-77".into(),
        customer_id: "cust-1".into(),
        amount: Money {
            amount_minor,
            currency: currency.into(),
        },
        counterparty_id: "ben-2".into(),
        channel: Channel::Web,
        device_id: None,
    }
}

async fn scored(status: u16, body: &'static str, t: Transaction) -> (Result<FraudOutcome, VendorError>, String) {
    let (base, seen) = recorded(status, body).await;
    let seon = Seon::new(SeonConfig {
        partner: "fraud-seon".into(),
        base_url: base,
        api_key: Secret::new("lic-xyz"),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let out = seon.score(&t).await;
    (out, seen.await.unwrap())
}

#[tokio::test]
async fn the_request_is_flat_with_the_key_in_a_header_and_an_exact_decimal_amount() {
    let (out, request) = scored(200, fixture!("fraud_approve.json"), tx(1523, "EUR")).await;
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /SeonRestService/fraud-api/v2 "), "{head}");
    assert!(head.to_lowercase().contains("x-api-key: lic-xyz"), "{head}");
    assert!(body.contains(r#""transaction_amount":15.23"#), "{body}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["action_type"], "withdrawal");
    assert_eq!(body["transaction_currency"], "EUR");
    assert_eq!(body["user_id"], "cust-1");
    assert_eq!(body["custom_fields"]["beneficiary_id"], "ben-2");
    assert_eq!(body["config"]["email_api"], false);
    let out = out.unwrap();
    assert_eq!(
        (out.score, out.decision, out.band()),
        (65, FraudDecision::Allow, ScoreBand::Low)
    );
    assert_eq!(out.provider_reference.as_deref(), Some("7d9a1c5e-2b"));
    assert_eq!(codes(&out), ["other"], "a rule no code names");
}

#[tokio::test]
async fn states_map_to_decisions_and_rules_to_canonical_codes() {
    let (out, _) = scored(200, fixture!("fraud_review.json"), tx(480_000, "GBP")).await;
    let out = out.unwrap();
    assert_eq!(
        (out.score, out.decision, out.band()),
        (640, FraudDecision::Review, ScoreBand::Medium)
    );
    assert_eq!(codes(&out), ["velocity", "amount"]);
    let (out, _) = scored(200, fixture!("fraud_decline.json"), tx(100, "JPY")).await;
    let out = out.unwrap();
    assert_eq!(
        (out.score, out.decision, out.band()),
        (973, FraudDecision::Deny, ScoreBand::High)
    );
    assert_eq!(codes(&out), ["list_match", "device"]);
    assert!(out.reasons.iter().all(|r| crate::fraud::REASONS.contains(&r.as_str())));
}

#[tokio::test]
async fn errors_are_classified_by_status_and_code() {
    let (out, _) = scored(401, fixture!("error_invalid_key.json"), tx(100, "EUR")).await;
    assert!(matches!(out, Err(VendorError::Auth(_))), "{out:?}");
    let (out, _) = scored(400, fixture!("error_empty_body.json"), tx(100, "EUR")).await;
    assert!(
        matches!(out, Err(VendorError::Permanent(ref m)) if m.contains("1000")),
        "{out:?}"
    );
}

#[test]
fn amounts_are_exact_decimal_text_or_refused() {
    assert_eq!(major_amount(1523, "EUR").unwrap().to_string(), "15.23");
    assert_eq!(major_amount(1500, "JPY").unwrap().to_string(), "1500");
    assert_eq!(major_amount(1, "KWD").unwrap().to_string(), "0.001");
    assert_eq!(
        major_amount(100, "EUR").unwrap().to_string(),
        "1.0",
        "EUR 1.00: the same value"
    );
    assert_eq!(major_amount(120_050, "EUR").unwrap().to_string(), "1200.5");
    assert!(
        major_amount(i64::MAX, "USD").is_err(),
        "too many digits for an exact JSON number"
    );
    assert!(major_amount(1, "XXX").is_err());
}
