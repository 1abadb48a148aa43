//! Contract tests against recorded Wise answers (fixtures/wise).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use switchyard_model::events::{
    common::Money,
    payouts::{AccountIdentifier, AccountScheme, Beneficiary, PayoutStatus},
};
use switchyard_runtime::Secret;

use super::{Wise, WiseConfig, client::customer_transaction_id, transformers::status};
use crate::{
    VendorError,
    adapter::{Progress, Recovery},
    payouts::{Payout, PayoutVendor},
    testing::{MemProgress, scripted},
};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/wise/", $name))
    };
}

const KEY: &str = "sy-6f1f4a3e2c1b4d8e9a7f0b5c3d2e1f00";

fn payout() -> Payout {
    Payout {
        payout_id: "po-42".into(),
        idempotency_key: KEY.into(),
        amount: Money {
            amount_minor: 15_025,
            currency: "EUR".into(),
        },
        beneficiary: Beneficiary {
            name: "Ada Lovelace".into(),
            account: AccountIdentifier {
                scheme: AccountScheme::Iban,
                value: "DE89370400440532013000".into(),
                bank_code: None,
            },
            address: None,
        },
        reference: Some("invoice 7".into()),
    }
}

fn wise(base: String) -> Wise {
    Wise::new(WiseConfig {
        partner: "payouts-wise".into(),
        base_url: base,
        api_token: Secret::new("tok-1"),
        profile_id: "2001".into(),
        source_currency: String::new(),
        webhook_public_key: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn body(request: &str) -> serde_json::Value {
    serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap()
}

#[tokio::test]
async fn quote_recipient_transfer_and_funding_in_order_with_our_transaction_id() {
    let (base, seen) = scripted(vec![
        (200, fixture!("quote.json")),
        (200, fixture!("recipient.json")),
        (200, fixture!("transfer_created.json")),
        (201, fixture!("fund_completed.json")),
        (200, fixture!("transfer_processing.json")),
    ])
    .await;
    let progress = Arc::new(MemProgress::default());
    let out = wise(base).initiate(&payout(), progress.clone()).await.unwrap();
    assert_eq!(out.status, PayoutStatus::Accepted);
    assert_eq!(out.provider_reference.as_deref(), Some("50000731"));
    let seen = seen.await.unwrap();
    let heads: Vec<&str> = seen.iter().map(|r| r.lines().next().unwrap()).collect();
    assert_eq!(
        heads,
        [
            "POST /v3/profiles/2001/quotes HTTP/1.1",
            "POST /v1/accounts HTTP/1.1",
            "POST /v1/transfers HTTP/1.1",
            "POST /v3/profiles/2001/transfers/50000731/payments HTTP/1.1",
            "GET /v1/transfers/50000731 HTTP/1.1",
        ]
    );
    assert!(seen[0].to_lowercase().contains("authorization: bearer tok-1"));
    let quote = body(&seen[0]);
    assert_eq!(
        quote["targetAmount"],
        serde_json::json!(150.25),
        "EUR 150.25 from 15025 minor units"
    );
    assert_eq!(quote["targetCurrency"], "EUR");
    let recipient = body(&seen[1]);
    assert_eq!(recipient["type"], "iban");
    assert_eq!(recipient["details"]["IBAN"], "DE89370400440532013000");
    let transfer = body(&seen[2]);
    assert_eq!(
        transfer["customerTransactionId"],
        "6f1f4a3e-2c1b-4d8e-9a7f-0b5c3d2e1f00"
    );
    assert_eq!(transfer["quoteUuid"], "11144c35-9fe8-4c32-b7fd-d05c2a7734bf");
    assert_eq!(transfer["targetAccount"], 40000021);
    assert_eq!(body(&seen[3])["type"], "BALANCE");
    // What was learnt on the way is recorded for a resumption.
    assert_eq!(progress.get("transfer").as_deref(), Some("50000731"));
}

#[tokio::test]
async fn a_resumed_payout_funds_the_recorded_transfer_and_a_second_funding_is_no_second_payment() {
    let (base, seen) = scripted(vec![
        (422, fixture!("fund_invalid_state.json")),
        (200, fixture!("transfer_processing.json")),
    ])
    .await;
    let progress = Arc::new(MemProgress::default());
    progress.note("transfer", "50000731").await.unwrap();
    let out = wise(base).initiate(&payout(), progress).await.unwrap();
    assert_eq!(
        out.status,
        PayoutStatus::Accepted,
        "funded already: the transfer says where it is"
    );
    let seen = seen.await.unwrap();
    assert_eq!(seen.len(), 2, "no new quote, recipient or transfer");
}

#[tokio::test]
async fn an_earlier_attempt_is_found_by_its_transfer() {
    let (base, _) = scripted(vec![(200, fixture!("transfer_processing.json"))]).await;
    let progress = Arc::new(MemProgress::default());
    progress.note("transfer", "50000731").await.unwrap();
    let found = wise(base).find(&payout(), progress).await.unwrap();
    assert!(
        matches!(found, Recovery::Found(ref o) if o.status == PayoutStatus::Accepted),
        "{found:?}"
    );
    // Created, not funded: sending again funds it once.
    let (base, _) = scripted(vec![(200, fixture!("transfer_created.json"))]).await;
    let progress = Arc::new(MemProgress::default());
    progress.note("transfer", "50000731").await.unwrap();
    assert_eq!(wise(base).find(&payout(), progress).await.unwrap(), Recovery::SendAgain);
}

#[test]
fn states_map_exhaustively_and_unknown_ones_are_errors() {
    assert_eq!(status("incoming_payment_waiting"), Some(PayoutStatus::Pending));
    assert_eq!(status("funds_converted"), Some(PayoutStatus::Accepted));
    assert_eq!(status("outgoing_payment_sent"), Some(PayoutStatus::Settled));
    assert_eq!(status("bounced_back"), Some(PayoutStatus::Returned));
    assert_eq!(status("funds_refunded"), Some(PayoutStatus::Returned));
    assert_eq!(status("cancelled"), Some(PayoutStatus::Failed));
    assert_eq!(status("teleported"), None);
    assert_eq!(
        customer_transaction_id(KEY).unwrap(),
        "6f1f4a3e-2c1b-4d8e-9a7f-0b5c3d2e1f00"
    );
    assert!(matches!(
        customer_transaction_id("nope"),
        Err(VendorError::Permanent(_))
    ));
}

#[tokio::test]
async fn a_wallet_is_refused_before_any_call() {
    let mut p = payout();
    p.beneficiary.account.scheme = AccountScheme::Wallet;
    let (base, seen) = scripted(vec![(200, fixture!("quote.json"))]).await;
    let out = wise(base).initiate(&p, Arc::new(MemProgress::default())).await;
    assert!(matches!(out, Err(VendorError::Permanent(_))), "{out:?}");
    assert_eq!(seen.await.unwrap().len(), 1, "only the quote, which moves nothing");
}

mod webhooks {
    use aws_lc_rs::{
        rsa::KeyPair,
        signature::{KeyPair as _, RSA_PKCS1_SHA256},
    };
    use reqwest::header::{HeaderMap, HeaderValue};
    use switchyard_model::events::payouts::PayoutStatus;

    use crate::{kyc::WebhookRejection, payouts::wise::webhooks::verify, signing::b64};

    const EVENT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/wise/event_state_change.json"
    ));

    fn signed(key: &KeyPair, body: &str) -> HeaderMap {
        let mut sig = vec![0u8; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            body.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-signature-sha256", HeaderValue::from_str(&b64(&sig)).unwrap());
        h
    }

    #[test]
    fn a_state_change_signed_by_the_vendor_reads_as_a_canonical_notice() {
        let key = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = key.public_key().as_ref().to_vec();
        let n = verify(&public, &signed(&key, EVENT), EVENT.as_bytes()).unwrap();
        assert_eq!(n.provider_reference, "50000731");
        assert_eq!(n.status, PayoutStatus::Settled);
        assert_eq!(n.occurred_at_ms, 1_795_676_409_250, "the event's own time");
        // A re-delivery is the same notice (Wise sends some twice).
        assert_eq!(
            verify(&public, &signed(&key, EVENT), EVENT.as_bytes())
                .unwrap()
                .event_id,
            n.event_id
        );
        let bounced = EVENT.replace("outgoing_payment_sent", "bounced_back");
        let n = verify(&public, &signed(&key, &bounced), bounced.as_bytes()).unwrap();
        assert_eq!((n.status, n.reason), (PayoutStatus::Returned, Some("bounced")));
    }

    #[test]
    fn a_body_not_signed_by_the_vendors_key_is_refused() {
        let key = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let other = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = key.public_key().as_ref().to_vec();
        assert!(matches!(
            verify(&public, &signed(&other, EVENT), EVENT.as_bytes()),
            Err(WebhookRejection::BadSignature)
        ));
        let tampered = EVENT.replace("50000731", "50000732");
        assert!(matches!(
            verify(&public, &signed(&key, EVENT), tampered.as_bytes()),
            Err(WebhookRejection::BadSignature)
        ));
        assert!(matches!(
            verify(&public, &HeaderMap::new(), EVENT.as_bytes()),
            Err(WebhookRejection::MissingSignature)
        ));
    }
}

/// A transfer not yet converted is cancelled with `PUT /v1/transfers/{id}/cancel` (FAILED:
/// cancelled); one too far along is refused with `transfer.invalid-state` and answered with its
/// current state.
#[tokio::test]
async fn a_transfer_is_cancelled_while_it_can_be_and_otherwise_answers_its_state() {
    let (base, seen) = scripted(vec![(200, fixture!("transfer_cancelled.json"))]).await;
    let out = wise(base).cancel(&payout(), "50000731").await.unwrap();
    assert_eq!(out.status, PayoutStatus::Failed);
    let seen = seen.await.unwrap();
    assert!(seen[0].starts_with("PUT /v1/transfers/50000731/cancel "), "{}", seen[0]);
    assert!(seen[0].to_lowercase().contains("authorization: bearer tok-1"));
    let (base, seen) = scripted(vec![
        (422, fixture!("fund_invalid_state.json")),
        (200, fixture!("transfer_processing.json")),
    ])
    .await;
    let out = wise(base).cancel(&payout(), "50000731").await.unwrap();
    assert_eq!(out.status, PayoutStatus::Accepted, "too late to cancel: it goes on");
    let seen = seen.await.unwrap();
    assert!(seen[1].starts_with("GET /v1/transfers/50000731 "), "{}", seen[1]);
}

/// The balance statement: money sent (negative), money returned (positive), a correction, a batch;
/// KWD's three decimals; the payee's name and account never reach the canonical line (its last
/// four characters do).
#[test]
fn the_statement_reads_into_canonical_lines_without_the_payee() {
    use crate::payouts::SettlementKind as K;
    let lines = wise("http://127.0.0.1:1".into())
        .parse_report(fixture!("statement.csv"))
        .unwrap();
    let got = crate::payouts::testing::summary(&lines);
    assert_eq!(
        got,
        [
            (K::Payout, "50000731", Some("9.tenant-a.inv-8"), 15_025, "EUR"),
            (K::Return, "50000731", Some("9.tenant-a.inv-8"), 15_025, "EUR"),
            (K::Correction, "50000799", None, 12_345, "KWD"),
            (K::Payout, "BATCH-4471", None, 30_000, "EUR"),
        ]
    );
    assert_eq!(lines[0].counterparty.as_deref(), Some("3000"));
    assert_eq!(lines[1].counterparty, None);
    let text = format!("{lines:?}");
    assert!(
        !text.contains("DE89370400440532013000") && !text.contains("Grace"),
        "{text}"
    );
}
