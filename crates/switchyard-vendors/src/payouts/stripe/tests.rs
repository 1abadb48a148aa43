//! Contract tests against recorded Stripe answers (fixtures/stripe).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use switchyard_model::events::{
    common::Money,
    payouts::{AccountIdentifier, AccountScheme, Beneficiary, PayoutStatus},
};
use switchyard_runtime::Secret;

use super::{Stripe, StripeConfig, transformers::status};
use crate::{
    VendorError,
    adapter::{Progress, Recovery},
    payouts::{Payout, PayoutVendor},
    testing::{MemProgress, scripted},
};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/stripe/", $name))
    };
}

fn payout() -> Payout {
    Payout {
        payout_id: "po-42".into(),
        idempotency_key: "sy-6f1f4a3e2c1b4d8e9a7f0b5c3d2e1f00".into(),
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
        reference: Some("invoice 7 for services rendered".into()),
    }
}

fn stripe(base: String) -> Stripe {
    Stripe::new(StripeConfig {
        partner: "payouts-stripe".into(),
        base_url: base,
        api_key: Secret::new("sk_test_1"),
        account: "acct_1Nv0FGQ9RKHgCVdK".into(),
        webhook_secret: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn form(request: &str) -> std::collections::HashMap<String, String> {
    url_decode(request.split_once("\r\n\r\n").unwrap().1)
}

fn url_decode(s: &str) -> std::collections::HashMap<String, String> {
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect()
}

fn unescape(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn the_payout_is_form_encoded_with_our_key_and_metadata_on_the_connected_account() {
    let (base, seen) = scripted(vec![
        (200, fixture!("external_account.json")),
        (200, fixture!("payout_pending.json")),
    ])
    .await;
    let progress = Arc::new(MemProgress::default());
    let out = stripe(base).initiate(&payout(), progress.clone()).await.unwrap();
    assert_eq!(out.status, PayoutStatus::Accepted);
    assert_eq!(out.provider_reference.as_deref(), Some("po_1QxT8a2eZvKYlo2C"));
    let seen = seen.await.unwrap();
    assert!(seen[0].starts_with("POST /v1/accounts/acct_1Nv0FGQ9RKHgCVdK/external_accounts "));
    let ba = form(&seen[0]);
    assert_eq!(ba["external_account[country]"], "DE");
    assert_eq!(ba["external_account[currency]"], "eur");
    assert!(seen[1].starts_with("POST /v1/payouts "), "{}", seen[1]);
    let head = seen[1].to_lowercase();
    assert!(
        head.contains("idempotency-key: sy-6f1f4a3e2c1b4d8e9a7f0b5c3d2e1f00"),
        "{head}"
    );
    assert!(head.contains("stripe-account: acct_1nv0fgq9rkhgcvdk"), "{head}");
    assert!(
        head.contains("content-type: application/x-www-form-urlencoded"),
        "{head}"
    );
    let p = form(&seen[1]);
    assert_eq!(p["amount"], "15025", "integer minor units");
    assert_eq!(p["currency"], "eur");
    assert_eq!(p["destination"], "ba_1QxT7u2eZvKYlo2C");
    assert_eq!(p["metadata[payout_id]"], "po-42");
    assert_eq!(p["statement_descriptor"].chars().count(), 22);
    assert_eq!(progress.get("external_account").as_deref(), Some("ba_1QxT7u2eZvKYlo2C"));
}

#[tokio::test]
async fn an_earlier_attempt_is_looked_up_by_metadata_never_re_sent_to_find_out() {
    let (base, seen) = scripted(vec![(200, fixture!("search_one.json"))]).await;
    let found = stripe(base)
        .find(&payout(), Arc::new(MemProgress::default()))
        .await
        .unwrap();
    assert!(matches!(found, Recovery::Found(ref o) if o.provider_reference.as_deref() == Some("po_1QxT8a2eZvKYlo2C")));
    let seen = seen.await.unwrap();
    assert!(seen[0].starts_with("GET /v1/payouts/search?query="), "{}", seen[0]);
    assert!(seen[0].contains("po-42"));
    let (base, _) = scripted(vec![(200, fixture!("search_none.json"))]).await;
    assert_eq!(
        stripe(base)
            .find(&payout(), Arc::new(MemProgress::default()))
            .await
            .unwrap(),
        Recovery::SendAgain
    );
    // Two executions of one payout: an operator decides, nothing automatic.
    let (base, _) = scripted(vec![(200, fixture!("search_two.json"))]).await;
    assert_eq!(
        stripe(base)
            .find(&payout(), Arc::new(MemProgress::default()))
            .await
            .unwrap(),
        Recovery::Unknowable
    );
}

#[tokio::test]
async fn a_reused_key_with_other_parameters_is_refused_and_a_gateway_error_is_in_doubt() {
    let progress = Arc::new(MemProgress::default());
    progress.note("external_account", "ba_1").await.unwrap();
    let (base, _) = scripted(vec![(400, fixture!("error_idempotency.json"))]).await;
    let out = stripe(base).initiate(&payout(), progress.clone()).await;
    assert!(matches!(out, Err(VendorError::Permanent(_))), "{out:?}");
    let (base, _) = scripted(vec![(502, "{}")]).await;
    let out = stripe(base).initiate(&payout(), progress).await;
    assert!(matches!(out, Err(VendorError::Ambiguous(_))), "{out:?}");
}

#[test]
fn statuses_map_and_unknown_ones_are_errors() {
    assert_eq!(status("pending"), Some(PayoutStatus::Accepted));
    assert_eq!(status("in_transit"), Some(PayoutStatus::Accepted));
    assert_eq!(status("paid"), Some(PayoutStatus::Settled));
    assert_eq!(status("failed"), Some(PayoutStatus::Failed));
    assert_eq!(status("canceled"), Some(PayoutStatus::Failed));
    assert_eq!(status("lost_in_the_post"), None);
}

mod webhooks {
    use reqwest::header::{HeaderMap, HeaderValue};
    use switchyard_model::events::payouts::PayoutStatus;

    use crate::{
        kyc::WebhookRejection,
        payouts::stripe::webhooks::verify,
        signing::{Alg, SecretPair, hex, hmac},
    };

    const PAID: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/stripe/event_payout_paid.json"
    ));
    const FAILED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/stripe/event_payout_failed.json"
    ));

    fn signed(secret: &str, t: i64, body: &str) -> String {
        hex(&hmac(Alg::Sha256, secret.as_bytes(), format!("{t}.{body}").as_bytes()))
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("stripe-signature", HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_signed_event_reads_as_a_canonical_notice() {
        let secret = SecretPair::new("whsec_new", Some("whsec_old")).unwrap();
        let t = 1_796_083_500;
        let now = t * 1000 + 5_000;
        let n = verify(
            &secret,
            &headers(&format!("t={t},v1={}", signed("whsec_new", t, PAID))),
            PAID.as_bytes(),
            now,
        )
        .unwrap();
        assert_eq!(n.event_id, "evt_1QxU0b2eZvKYlo2C");
        assert_eq!(n.provider_reference, "po_1QxT8a2eZvKYlo2C");
        assert_eq!(n.status, PayoutStatus::Settled);
        assert_eq!(n.occurred_at_ms, 1_796_083_500_000);
        // While the secret rolls: the previous secret, among several v1 entries.
        let h = headers(&format!("t={t},v1=00ff,v1={}", signed("whsec_old", t, FAILED)));
        let n = verify(&secret, &h, FAILED.as_bytes(), now).unwrap();
        assert_eq!((n.status, n.reason), (PayoutStatus::Failed, Some("account_closed")));
    }

    #[test]
    fn forged_stale_and_unsigned_events_are_refused() {
        let secret = SecretPair::new("whsec_new", None).unwrap();
        let t = 1_796_083_500;
        let now = t * 1000;
        let forged = headers(&format!("t={t},v1={}", signed("whsec_guess", t, PAID)));
        assert!(matches!(
            verify(&secret, &forged, PAID.as_bytes(), now),
            Err(WebhookRejection::BadSignature)
        ));
        // The body changed after signing.
        let good = headers(&format!("t={t},v1={}", signed("whsec_new", t, PAID)));
        let tampered = PAID.replace("15025", "95025");
        assert!(matches!(
            verify(&secret, &good, tampered.as_bytes(), now),
            Err(WebhookRejection::BadSignature)
        ));
        // Correctly signed, replayed ten minutes later.
        assert!(matches!(
            verify(&secret, &good, PAID.as_bytes(), now + 600_000),
            Err(WebhookRejection::Stale)
        ));
        assert!(matches!(
            verify(&secret, &HeaderMap::new(), PAID.as_bytes(), now),
            Err(WebhookRejection::MissingSignature)
        ));
        assert!(matches!(
            verify(&secret, &headers(&format!("t={t}")), PAID.as_bytes(), now),
            Err(WebhookRejection::MissingSignature)
        ));
    }
}

/// A pending payout is cancelled with `POST /v1/payouts/{id}/cancel` on the connected account (FAILED:
/// cancelled); one past pending is refused by Stripe, and answered with its current status from a
/// search, never by anything that could pay.
#[tokio::test]
async fn a_pending_payout_is_cancelled_and_a_later_one_answers_its_status() {
    let (base, seen) = scripted(vec![(200, fixture!("payout_canceled.json"))]).await;
    let out = stripe(base).cancel(&payout(), "po_1QxT8a2eZvKYlo2C").await.unwrap();
    assert_eq!(out.status, PayoutStatus::Failed);
    assert_eq!(out.provider_reference.as_deref(), Some("po_1QxT8a2eZvKYlo2C"));
    let seen = seen.await.unwrap();
    assert!(
        seen[0].starts_with("POST /v1/payouts/po_1QxT8a2eZvKYlo2C/cancel "),
        "{}",
        seen[0]
    );
    assert!(seen[0].to_lowercase().contains("stripe-account: acct_1nv0fgq9rkhgcvdk"));
    let (base, seen) = scripted(vec![
        (400, fixture!("error_not_cancelable.json")),
        (200, fixture!("search_one.json")),
    ])
    .await;
    let out = stripe(base).cancel(&payout(), "po_1QxT8a2eZvKYlo2C").await.unwrap();
    assert_eq!(out.status, PayoutStatus::Accepted, "in transit: it goes on");
    let seen = seen.await.unwrap();
    assert!(seen[1].starts_with("GET /v1/payouts/search?query="), "{}", seen[1]);
}

/// The itemized report: a payout, its reversal and an adjustment, in minor units of each currency
/// (JPY has none), the direction in the kind, our reference from the payout's metadata.
#[test]
fn the_settlement_report_reads_into_canonical_lines() {
    use crate::payouts::SettlementKind as K;
    let lines = stripe("http://127.0.0.1:1".into())
        .parse_report(fixture!("report_itemized.csv"))
        .unwrap();
    let got = crate::payouts::testing::summary(&lines);
    assert_eq!(
        got,
        [
            (
                K::Payout,
                "po_1QxT8a2eZvKYlo2C",
                Some("9.tenant-a.inv-7"),
                15_025,
                "EUR"
            ),
            (
                K::Return,
                "po_1QxT8a2eZvKYlo2C",
                Some("9.tenant-a.inv-7"),
                15_025,
                "EUR"
            ),
            (K::Correction, "po_1QxV1d2eZvKYlo2D", None, 9_000, "JPY"),
        ]
    );
    assert_eq!(lines[0].at_ms, 1_795_166_042_000, "2026-11-20 09:14:02 UTC");
    assert!(
        stripe("http://127.0.0.1:1".into())
            .parse_report("balance_transaction_id,created_utc,reporting_category\nx,2026-11-20 09:14:02,charge\n")
            .is_err(),
        "an unknown category is refused, not guessed"
    );
}
