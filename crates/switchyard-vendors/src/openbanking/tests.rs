//! Contract tests against recorded provider answers and webhooks (fixtures/truelayer,
//! fixtures/plaid).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use reqwest::header::{HeaderMap, HeaderValue};
use switchyard_model::events::{
    common::Money,
    payouts::{AccountIdentifier, AccountScheme},
};
use switchyard_runtime::Secret;

use super::{
    ConsentRequest, Notice, OpenBankingVendor, PaymentOrder, PaymentStatus, Refreshed, TransactionStatus,
    plaid::{Plaid, PlaidConfig, reference_of, sign_webhook},
    truelayer::{TrueLayer, TrueLayerConfig, verify_request},
};
use crate::{
    VendorError,
    adapter::{Progress, Recovery},
    kyc::WebhookRejection,
    signing::{Es, b64, es_generate, es_sign, point_xy},
    testing::{MemProgress, scripted},
};

macro_rules! fixture {
    ($vendor:literal, $name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/", $vendor, "/", $name))
    };
}

fn body(request: &str) -> &str {
    request.split_once("\r\n\r\n").unwrap().1
}

struct Keys {
    private: Vec<u8>,
    point: Vec<u8>,
}

fn keys(alg: Es) -> Keys {
    let private = es_generate(alg).unwrap();
    let (_, point) = es_sign(alg, &private, b"x").unwrap();
    Keys { private, point }
}

fn truelayer(base: &str, signing: &Keys, jku: &str) -> TrueLayer {
    TrueLayer::new(TrueLayerConfig {
        partner: "openbanking-truelayer".into(),
        auth_url: base.to_string(),
        api_url: base.to_string(),
        hpp_url: "https://payment.truelayer-sandbox.com".into(),
        client_id: "switchyard-client".into(),
        client_secret: Secret::new("client-secret-1"),
        signing_key: Secret::new(b64(&signing.private)),
        signing_kid: "kid-ours-1".into(),
        webhook_jku: jku.to_string(),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn plaid(base: &str) -> Plaid {
    Plaid::new(PlaidConfig {
        partner: "openbanking-plaid".into(),
        base_url: base.to_string(),
        client_id: "plaid-client-1".into(),
        secret: Secret::new("plaid-secret-1"),
        client_name: "Switchyard".into(),
        country_codes: vec!["GB".into(), "FR".into()],
        webhook_url: "https://hooks.example/webhooks/openbanking-plaid".into(),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn consent() -> ConsentRequest {
    ConsentRequest {
        consent_id: "obc-7".into(),
        customer_key: "c-5e1c0b8a9d7f4e2a".into(),
        institution_id: Some("uk-ob-lloyds".into()),
        redirect_uri: "https://app.example/ob/callback".into(),
    }
}

fn order(key: &str) -> PaymentOrder {
    PaymentOrder {
        payment_id: "obp-1".into(),
        idempotency_key: key.into(),
        customer_key: "c-5e1c0b8a9d7f4e2a".into(),
        amount: Money {
            amount_minor: 1_250,
            currency: "GBP".into(),
        },
        beneficiary_name: "Demo Merchant Ltd".into(),
        beneficiary: AccountIdentifier {
            scheme: AccountScheme::SortCodeAccount,
            value: "12345678".into(),
            bank_code: Some("040004".into()),
        },
        reference: "Invoice 7 for services".into(),
        redirect_uri: "https://app.example/pay/done".into(),
    }
}

#[tokio::test]
async fn truelayer_consents_with_a_link_and_exchanges_the_code_once() {
    let k = keys(Es::Es512);
    let (base, seen) = scripted(vec![(200, fixture!("truelayer", "token_code.json"))]).await;
    let t = truelayer(&base, &k, "https://webhooks.truelayer-sandbox.com/.well-known/jwks");
    let link = t.consent_link(&consent()).await.unwrap();
    let url = reqwest::Url::parse(&link.authorization_url).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["state"], "obc-7", "our consent id comes back with the callback");
    assert_eq!(q["scope"], "info accounts balance transactions offline_access");
    assert_eq!(q["providers"], "uk-ob-lloyds");
    let c = t.complete(&consent(), "code-from-bank").await.unwrap();
    assert_eq!(c.refresh_token.as_deref(), Some("rt-7c2f0d1e9b"));
    assert!(c.access_expires_at_ms.unwrap() > chrono::Utc::now().timestamp_millis());
    assert!(c.consent_expires_at_ms.is_some());
    assert!(
        !format!("{c:?}").contains("access-for-tests"),
        "tokens never in debug output"
    );
    let seen = seen.await.unwrap();
    assert!(seen[0].starts_with("POST /connect/token "));
    let form = body(&seen[0]);
    assert!(
        form.contains("grant_type=authorization_code") && form.contains("code=code-from-bank"),
        "{form}"
    );
}

#[tokio::test]
async fn truelayer_refresh_refused_means_consent_again() {
    let k = keys(Es::Es512);
    let (base, _) = scripted(vec![(400, fixture!("truelayer", "invalid_grant.json"))]).await;
    let t = truelayer(&base, &k, "https://jwks.example");
    let c = super::Connection {
        access_token: "a".into(),
        refresh_token: Some("r".into()),
        access_expires_at_ms: Some(0),
        consent_expires_at_ms: None,
        provider_reference: None,
        scopes: vec![],
    };
    assert!(matches!(
        t.refresh(&consent(), &c).await.unwrap(),
        Refreshed::Reconsent(_)
    ));
}

#[tokio::test]
async fn truelayer_accounts_balances_and_transactions_are_normalized() {
    let k = keys(Es::Es512);
    let (base, _) = scripted(vec![
        (200, fixture!("truelayer", "accounts.json")),
        (200, fixture!("truelayer", "balance.json")),
    ])
    .await;
    let t = truelayer(&base, &k, "https://jwks.example");
    let c = super::Connection {
        access_token: "a".into(),
        refresh_token: None,
        access_expires_at_ms: None,
        consent_expires_at_ms: None,
        provider_reference: None,
        scopes: vec![],
    };
    let a = t.accounts(&c).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].number_last4.as_deref(), Some("3000"), "the IBAN's last four only");
    assert_eq!(
        (a[0].current_minor, a[0].available_minor),
        (Some(116_120), Some(116_120))
    );
    assert_eq!(a[0].kind, "current");
    let (base, seen) = scripted(vec![
        (200, fixture!("truelayer", "accounts.json")),
        (200, fixture!("truelayer", "transactions.json")),
        (200, fixture!("truelayer", "pending.json")),
    ])
    .await;
    let t = truelayer(&base, &k, "https://jwks.example");
    let page = t.transactions(&c, Some("2026-11-01")).await.unwrap();
    let got: Vec<(i64, TransactionStatus, bool)> = page
        .transactions
        .iter()
        .map(|x| (x.amount_minor, x.status, x.booking_date.is_some()))
        .collect();
    assert_eq!(
        got,
        [
            (-299, TransactionStatus::Booked, true),
            (250_000, TransactionStatus::Booked, true),
            (-450, TransactionStatus::Pending, false)
        ]
    );
    let seen = seen.await.unwrap();
    assert!(seen[1].contains("/transactions?from=2026-11-01&to="), "{}", seen[1]);
    assert!(page.cursor.is_some(), "the next fetch starts a few days back");
}

#[tokio::test]
async fn truelayer_payments_are_signed_and_keyed() {
    let k = keys(Es::Es512);
    let (base, seen) = scripted(vec![
        (200, fixture!("truelayer", "token_client.json")),
        (201, fixture!("truelayer", "payment_created.json")),
    ])
    .await;
    let t = truelayer(&base, &k, "https://jwks.example");
    let key = "sy-0193a4c0000170008000000000aa01";
    let out = t.pay(&order(key), Arc::new(MemProgress::default())).await.unwrap();
    assert_eq!(out.status, PaymentStatus::AwaitingAuthorization);
    let url = out.authorization_url.unwrap();
    assert!(
        url.contains("payment_id=0aa9f3dc") && url.contains("resource_token=rt-payments-abc"),
        "{url}"
    );
    let seen = seen.await.unwrap();
    assert!(body(&seen[0]).contains("grant_type=client_credentials") && body(&seen[0]).contains("scope=payments"));
    let req = &seen[1];
    assert!(req.starts_with("POST /v3/payments "));
    let head = req.split_once("\r\n\r\n").unwrap().0.to_lowercase();
    assert!(head.contains(&format!("idempotency-key: {key}")));
    let sig = head
        .lines()
        .find_map(|l| l.strip_prefix("tl-signature: "))
        .map(str::to_string)
        .unwrap();
    // The header's case is lowered above; take the original from the request.
    let sig = req
        .lines()
        .find(|l| l.to_lowercase().starts_with("tl-signature:"))
        .map(|l| l.split_once(": ").unwrap().1.to_string())
        .unwrap_or(sig);
    let b = body(req);
    assert!(verify_request(
        &k.point,
        "POST",
        "/v3/payments",
        &[("Idempotency-Key", key)],
        b.as_bytes(),
        &sig
    ));
    assert!(!verify_request(
        &k.point,
        "POST",
        "/v3/payments",
        &[("Idempotency-Key", "other")],
        b.as_bytes(),
        &sig
    ));
    let v: serde_json::Value = serde_json::from_str(b).unwrap();
    assert_eq!(v["amount_in_minor"], 1_250);
    assert_eq!(
        v["payment_method"]["beneficiary"]["account_identifier"]["type"],
        "sort_code_account_number"
    );
    assert_eq!(
        v["payment_method"]["beneficiary"]["reference"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        18
    );
    // 409: the same key in flight; nothing new, try later.
    let (base, _) = scripted(vec![
        (200, fixture!("truelayer", "token_client.json")),
        (409, fixture!("truelayer", "idempotency_conflict.json")),
    ])
    .await;
    let t = truelayer(&base, &k, "https://jwks.example");
    assert!(matches!(
        t.pay(&order(key), Arc::new(MemProgress::default())).await,
        Err(VendorError::Transient(_))
    ));
    // A re-send under the same key is the way to find an earlier attempt.
    assert_eq!(
        t.find(&order(key), Arc::new(MemProgress::default())).await.unwrap(),
        Recovery::SendAgain
    );
}

#[tokio::test]
async fn truelayer_payment_statuses_map_to_ours() {
    let k = keys(Es::Es512);
    let (base, _) = scripted(vec![
        (200, fixture!("truelayer", "token_client.json")),
        (200, fixture!("truelayer", "payment_executed.json")),
        (200, fixture!("truelayer", "payment_failed.json")),
    ])
    .await;
    let t = truelayer(&base, &k, "https://jwks.example");
    let done = t.payment("0aa9f3dc-5a5b-4f0e-b94a-0c1b1a2a5e22").await.unwrap();
    assert_eq!(done.status, PaymentStatus::Executed);
    let failed = t.payment("0aa9f3dc-5a5b-4f0e-b94a-0c1b1a2a5e22").await.unwrap();
    assert_eq!(
        (failed.status, failed.failure_reason.as_deref()),
        (PaymentStatus::Failed, Some("cancelled"))
    );
}

#[tokio::test]
async fn truelayer_webhooks_are_verified_with_the_allowed_jwks() {
    let ours = keys(Es::Es512);
    let theirs = keys(Es::Es512);
    let (x, y) = point_xy(&theirs.point).unwrap();
    let jwks: &'static str = Box::leak(
        serde_json::json!({"keys": [{"kty": "EC", "crv": "P-521", "alg": "ES512", "kid": "tl-kid-1", "x": x, "y": y}]})
            .to_string()
            .into_boxed_str(),
    );
    let (base, _) = scripted(vec![(200, jwks)]).await;
    let jku = format!("{base}/.well-known/jwks");
    let t = truelayer(&base, &ours, &jku);
    let raw = fixture!("truelayer", "webhook_executed.json").as_bytes();
    let ts = "2026-11-21T10:01:08Z";
    let now = chrono::DateTime::parse_from_rfc3339(ts).unwrap().timestamp_millis();
    let path = "/webhooks/openbanking-truelayer";
    let sig = super::truelayer::sign_webhook(&theirs.private, "tl-kid-1", &jku, path, ts, raw).unwrap();
    let mut h = HeaderMap::new();
    h.insert("tl-signature", HeaderValue::from_str(&sig).unwrap());
    h.insert(
        "x-tl-webhook-timestamp",
        HeaderValue::from_static("2026-11-21T10:01:08Z"),
    );
    let n = t.verify_webhook(&h, path, raw, now).await.unwrap();
    assert_eq!(
        n,
        Notice::Payment {
            event_id: "b8d4dda0-ff2c-4d77-a6da-4615e4bad941".into(),
            provider_reference: "0aa9f3dc-5a5b-4f0e-b94a-0c1b1a2a5e22".into(),
            status: PaymentStatus::Executed,
            failure_reason: None,
            occurred_at_ms: now,
        }
    );
    // The key is cached: no second fetch. Another path, a changed body or timestamp: refused.
    assert_eq!(
        t.verify_webhook(&h, "/webhooks/other", raw, now).await,
        Err(WebhookRejection::BadSignature)
    );
    let mut tampered = raw.to_vec();
    tampered[10] ^= 1;
    assert_eq!(
        t.verify_webhook(&h, path, &tampered, now).await,
        Err(WebhookRejection::BadSignature)
    );
    let mut late = h.clone();
    late.insert(
        "x-tl-webhook-timestamp",
        HeaderValue::from_static("2026-11-21T10:01:09Z"),
    );
    assert_eq!(
        t.verify_webhook(&late, path, raw, now).await,
        Err(WebhookRejection::BadSignature)
    );
    assert_eq!(
        t.verify_webhook(&h, path, raw, now + 4 * 24 * 3600 * 1000).await,
        Err(WebhookRejection::Stale)
    );
    // A signature naming another JWKS is refused before anything is fetched.
    let elsewhere =
        super::truelayer::sign_webhook(&theirs.private, "tl-kid-1", "https://evil.example/jwks", path, ts, raw)
            .unwrap();
    let mut h2 = h.clone();
    h2.insert("tl-signature", HeaderValue::from_str(&elsewhere).unwrap());
    assert_eq!(
        t.verify_webhook(&h2, path, raw, now).await,
        Err(WebhookRejection::BadSignature)
    );
    assert_eq!(
        t.verify_webhook(&HeaderMap::new(), path, raw, now).await,
        Err(WebhookRejection::MissingSignature)
    );
}

#[tokio::test]
async fn plaid_consents_through_link_and_keeps_the_items_consent_expiry() {
    let (base, seen) = scripted(vec![
        (200, fixture!("plaid", "link_token.json")),
        (200, fixture!("plaid", "exchange.json")),
        (200, fixture!("plaid", "item.json")),
    ])
    .await;
    let p = plaid(&base);
    let link = p.consent_link(&consent()).await.unwrap();
    assert_eq!(link.authorization_url, "https://hosted.plaid.com/link/lp_b94e0b34");
    assert!(link.expires_at_ms.is_some());
    let c = p.complete(&consent(), "public-sandbox-123").await.unwrap();
    assert_eq!(
        c.provider_reference.as_deref(),
        Some("M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op")
    );
    assert!(c.consent_expires_at_ms.is_some() && c.access_expires_at_ms.is_none());
    assert_eq!(c.scopes, ["transactions"]);
    let seen = seen.await.unwrap();
    assert!(seen[0].starts_with("POST /link/token/create "));
    let head = seen[0].to_lowercase();
    assert!(head.contains("plaid-client-id: plaid-client-1") && head.contains("plaid-version: 2020-09-14"));
    let b: serde_json::Value = serde_json::from_str(body(&seen[0])).unwrap();
    assert_eq!(b["user"]["client_user_id"], "c-5e1c0b8a9d7f4e2a");
    assert_eq!(b["products"], serde_json::json!(["transactions"]));
    assert!(seen[1].starts_with("POST /item/public_token/exchange "));
}

#[tokio::test]
async fn plaid_balances_and_synced_transactions_are_normalized() {
    let (base, seen) = scripted(vec![
        (200, fixture!("plaid", "balances.json")),
        (200, fixture!("plaid", "sync.json")),
    ])
    .await;
    let p = plaid(&base);
    let c = super::Connection {
        access_token: "access-sandbox-1".into(),
        refresh_token: None,
        access_expires_at_ms: None,
        consent_expires_at_ms: None,
        provider_reference: None,
        scopes: vec![],
    };
    let a = p.accounts(&c).await.unwrap();
    assert_eq!((a[0].current_minor, a[0].available_minor), (Some(11_025), Some(10_000)));
    assert_eq!((a[1].kind.as_str(), a[1].current_minor), ("credit_card", Some(-41_050)));
    let page = p.transactions(&c, Some("cursor-1")).await.unwrap();
    let got: Vec<(i64, TransactionStatus, Option<String>, Option<String>)> = page
        .transactions
        .iter()
        .map(|x| {
            (
                x.amount_minor,
                x.status,
                x.booking_date.map(|d| d.to_string()),
                x.value_date.map(|d| d.to_string()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                -7_210,
                TransactionStatus::Booked,
                Some("2026-11-19".into()),
                Some("2026-11-17".into())
            ),
            (
                150_000,
                TransactionStatus::Booked,
                Some("2026-11-20".into()),
                Some("2026-11-20".into())
            ),
            (-450, TransactionStatus::Pending, None, Some("2026-11-21".into()))
        ],
        "money out negative (Plaid counts it positive)"
    );
    assert_eq!(page.removed, ["no86Eox18VHMvaOVL7gPUM9ap3aR1LsAVZ5nc"]);
    assert_eq!(
        page.transactions[0].replaces.as_deref(),
        Some("no86Eox18VHMvaOVL7gPUM9ap3aR1LsAVZ5nc")
    );
    let seen = seen.await.unwrap();
    assert!(body(&seen[1]).contains("\"cursor\":\"cursor-1\""));
}

#[tokio::test]
async fn plaid_payments_carry_our_key_and_are_found_by_it() {
    let key = "sy-0193a4c0000170008000000000aa01";
    assert_eq!(reference_of(key), "SY0193A4C000017000");
    let (base, seen) = scripted(vec![
        (200, fixture!("plaid", "recipient.json")),
        (200, fixture!("plaid", "payment_created.json")),
        (200, fixture!("plaid", "payment_link.json")),
    ])
    .await;
    let p = plaid(&base);
    let progress = Arc::new(MemProgress::default());
    let mut o = order(key);
    o.amount.currency = "EUR".into();
    o.beneficiary = AccountIdentifier {
        scheme: AccountScheme::Iban,
        value: "FR1420041010050500013M02606".into(),
        bank_code: None,
    };
    let out = p.pay(&o, progress.clone()).await.unwrap();
    assert_eq!(out.status, PaymentStatus::AwaitingAuthorization);
    assert_eq!(
        out.authorization_url.as_deref(),
        Some("https://hosted.plaid.com/link/lp_pay_77c1")
    );
    assert!(progress.get("recipient_id").is_some() && progress.get("payment_id").is_some());
    let seen = seen.await.unwrap();
    let create: serde_json::Value = serde_json::from_str(body(&seen[1])).unwrap();
    assert_eq!(create["reference"], "SY0193A4C000017000");
    assert_eq!(create["amount"]["value"], 12.5, "a decimal in the major unit, exactly");
    let link: serde_json::Value = serde_json::from_str(body(&seen[2])).unwrap();
    assert_eq!(
        link["payment_initiation"]["payment_id"],
        "payment-id-sandbox-feca8a7a-5591-4aef-9297-f3062bb735d3"
    );
    // In doubt with nothing noted: looked up by the reference, never re-sent blind.
    let (base, _) = scripted(vec![(200, fixture!("plaid", "payment_list.json"))]).await;
    let found = plaid(&base).find(&o, Arc::new(MemProgress::default())).await.unwrap();
    assert!(matches!(found, Recovery::Found(ref x) if x.status == PaymentStatus::Executed));
    let (base, _) = scripted(vec![(200, fixture!("plaid", "payment_list_empty.json"))]).await;
    assert_eq!(
        plaid(&base).find(&o, Arc::new(MemProgress::default())).await.unwrap(),
        Recovery::SendAgain
    );
}

#[tokio::test]
async fn plaid_webhooks_are_verified_with_the_key_named_by_the_jwt() {
    let theirs = keys(Es::Es256);
    let (x, y) = point_xy(&theirs.point).unwrap();
    let key: &'static str = Box::leak(
        serde_json::json!({"key": {"alg": "ES256", "crv": "P-256", "kid": "plaid-kid-1", "kty": "EC", "use": "sig",
            "x": x, "y": y, "created_at": 1_700_000_000, "expired_at": null}, "request_id": "r"})
        .to_string()
        .into_boxed_str(),
    );
    let (base, seen) = scripted(vec![(200, key)]).await;
    let p = plaid(&base);
    let raw = fixture!("plaid", "webhook_payment.json").as_bytes();
    let now = 1_795_000_000_000i64;
    let jwt = sign_webhook(&theirs.private, "plaid-kid-1", raw, now / 1000).unwrap();
    let mut h = HeaderMap::new();
    h.insert("plaid-verification", HeaderValue::from_str(&jwt).unwrap());
    match p
        .verify_webhook(&h, "/webhooks/openbanking-plaid", raw, now)
        .await
        .unwrap()
    {
        Notice::Payment {
            status,
            failure_reason,
            provider_reference,
            ..
        } => {
            assert_eq!(status, PaymentStatus::Failed);
            assert_eq!(failure_reason.as_deref(), Some("insufficient_funds"));
            assert!(provider_reference.starts_with("payment-id-sandbox-feca8a7a"));
        }
        other => panic!("{other:?}"),
    }
    let seen = seen.await.unwrap();
    assert!(seen[0].starts_with("POST /webhook_verification_key/get "));
    assert!(body(&seen[0]).contains("plaid-kid-1"));
    // A body other than the one signed (its digest), or an old token: refused.
    let other = fixture!("plaid", "webhook_expiring.json").as_bytes();
    assert_eq!(
        p.verify_webhook(&h, "/", other, now).await,
        Err(WebhookRejection::BadSignature)
    );
    assert_eq!(
        p.verify_webhook(&h, "/", raw, now + 600_000).await,
        Err(WebhookRejection::Stale)
    );
    let jwt = sign_webhook(&theirs.private, "plaid-kid-1", other, now / 1000).unwrap();
    h.insert("plaid-verification", HeaderValue::from_str(&jwt).unwrap());
    assert!(matches!(
        p.verify_webhook(&h, "/", other, now).await.unwrap(),
        Notice::ConsentExpiring {
            expires_at_ms: Some(_),
            ..
        }
    ));
    let forged = sign_webhook(&keys(Es::Es256).private, "plaid-kid-1", raw, now / 1000).unwrap();
    h.insert("plaid-verification", HeaderValue::from_str(&forged).unwrap());
    assert_eq!(
        p.verify_webhook(&h, "/", raw, now).await,
        Err(WebhookRejection::BadSignature)
    );
}
