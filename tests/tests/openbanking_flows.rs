//! Open banking through the ingress of the running mesh (`make services`): a consent started,
//! authorized by the customer at their bank (the link followed), its callback handed over, accounts
//! and transactions fetched (fetched again: nothing twice), revoked; pay-by-bank payments
//! authorized and executed (the provider's signed webhook), one failing over when the first
//! provider is down before anything was made; both providers; bad input at the door.

// Amounts in minor units are written <units>_<cents>.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::inconsistent_digit_grouping)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::*;

const TRUELAYER: &str = "http://127.0.0.1:9311";
const PLAID: &str = "http://127.0.0.1:9312";

async fn until(m: &Mesh, key: &str, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (code, body) = m.read(key, path).await;
        if code == 200 && ok(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {code} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn follow(url: &str) -> std::collections::HashMap<String, String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(url).send().await.unwrap();
    assert!(r.status().is_redirection(), "{url}: {}", r.status());
    let to = r.headers()["location"].to_str().unwrap().to_string();
    reqwest::Url::parse(&to).unwrap().query_pairs().into_owned().collect()
}

async fn consent_journey(tenant: &str, partner: &str, code_param: &str) {
    let m = Mesh::get();
    let key = m.api_key(tenant, "openbanking:write,openbanking:read");
    let id = format!("obc-{}", short_id());
    let (code, body) = m
        .post(
            &key,
            "/v1/openbanking/consents",
            &json!({"consent_id": id, "customer_id": "cust-ob",
            "redirect_uri": "https://app.example/ob/callback"}),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    let path = format!("/v1/openbanking/consents/{id}");
    let c = until(&m, &key, &path, |c| c["status"] == "awaiting_authorization").await;
    assert_eq!(c["partner"], partner);
    let back = follow(c["authorization_url"].as_str().unwrap()).await;
    let (code, _) = m
        .post(&key, &format!("{path}/callback"), &json!({"code": back[code_param]}))
        .await;
    assert_eq!(code, 202);
    let c = until(&m, &key, &path, |c| c["status"] == "authorized").await;
    assert!(c["consent_expires_at"].is_string(), "{c}");
    assert!(
        c["scopes"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == "transactions")),
        "{c}"
    );
    assert!(c["authorization_url"].is_null(), "no link once authorized");
    m.post(&key, &format!("{path}/fetch-accounts"), &json!({})).await;
    let c = until(&m, &key, &path, |c| {
        c["accounts"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert!(c["accounts"][0]["last4"].as_str().is_some_and(|l| l.len() == 4));
    m.post(&key, &format!("{path}/fetch-transactions"), &json!({})).await;
    let t = until(&m, &key, &format!("{path}/transactions"), |t| {
        t["transactions"].as_array().is_some_and(|a| a.len() > 3)
    })
    .await;
    let first: Vec<String> = t["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        t["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["direction"] == "out")
    );
    // Fetched again: nothing twice (a pending purchase that posted replaces its pending self).
    m.post(&key, &format!("{path}/fetch-transactions"), &json!({})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = until(&m, &key, &format!("{path}/transactions"), |_| true).await;
    let again: Vec<&str> = t["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    let mut unique = again.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), again.len(), "no transaction twice");
    assert!(again.len() >= first.len() - 1 && again.len() <= first.len() + 1);
    let (code, _) = m.post(&key, &format!("{path}/revoke"), &json!({})).await;
    assert_eq!(code, 202);
    until(&m, &key, &path, |c| c["status"] == "revoked").await;
    assert_eq!(m.post(&key, &format!("{path}/fetch-accounts"), &json!({})).await.0, 409);
}

#[tokio::test]
async fn a_consent_at_the_truelayer_shaped_provider() {
    consent_journey("tenant-ob-tl", "openbanking-truelayer", "code").await;
}

#[tokio::test]
async fn a_consent_at_the_plaid_shaped_provider() {
    consent_journey("tenant-ob-plaid", "openbanking-plaid", "public_token").await;
}

fn payment(id: &str, currency: &str, account: Value) -> Value {
    json!({"payment_id": id, "customer_id": "cust-ob", "amount": {"currency": currency, "value": "12.50"},
        "beneficiary": {"name": "Demo Merchant Ltd", "account": account}, "reference": "Order 77",
        "redirect_uri": "https://app.example/pay/done"})
}

/// A payment the customer authorizes is executed once; a second request with the same body is
/// the same payment; the first provider down before anything was made: the second pays it.
#[tokio::test]
async fn pay_by_bank_payments_are_executed_once_and_fail_over_only_when_nothing_was_made() {
    let m = Mesh::get();
    let key = m.api_key("tenant-ob-pay", "openbanking:write,openbanking:read");
    let id = format!("obp-{}", short_id());
    let body = payment(
        &id,
        "GBP",
        json!({"scheme": "sort_code_account", "value": "12345678", "bank_code": "040004"}),
    );
    // Under an Idempotency-Key: the first answer replayed; without one, the same payment (200).
    let with_key = || {
        m.http
            .post(format!("{}/v1/openbanking/payments", m.ingress()))
            .bearer_auth(&key)
            .header("idempotency-key", format!("k-{id}"))
            .json(&body)
            .send()
    };
    assert_eq!(with_key().await.unwrap().status().as_u16(), 202);
    let again = with_key().await.unwrap();
    assert_eq!(again.status().as_u16(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        m.post(&key, "/v1/openbanking/payments", &body).await.0,
        200,
        "the same payment"
    );
    let path = format!("/v1/openbanking/payments/{id}");
    let p = until(&m, &key, &path, |p| p["status"] == "awaiting_authorization").await;
    assert_eq!(p["partner"], "openbanking-truelayer");
    assert_eq!(p["beneficiary"], "••••5678", "the account's last four only");
    follow(p["authorization_url"].as_str().unwrap()).await;
    until(&m, &key, &path, |p| p["status"] == "executed").await;
    assert_eq!(m.ledger(TRUELAYER, &id).await.get("payment"), Some(&1));
    // The provider's payment notices carry its own time: their delay to us is measured.
    assert!(
        m.webhook_delays("openbanking-truelayer").await >= 1.0,
        "no webhook delay measured"
    );

    // The first provider refusing every attempt: nothing made there, the second pays.
    let id = format!("obp-{}", short_id());
    m.sim_post(
        TRUELAYER,
        "/_sim/faults",
        json!({"matcher": id.clone(), "fault": {"kind": "error", "status": 503}}),
    )
    .await;
    let body = payment(
        &id,
        "EUR",
        json!({"scheme": "iban", "value": "FR1420041010050500013M02606"}),
    );
    assert_eq!(m.post(&key, "/v1/openbanking/payments", &body).await.0, 202);
    let path = format!("/v1/openbanking/payments/{id}");
    let p = until(&m, &key, &path, |p| p["status"] == "awaiting_authorization").await;
    assert_eq!(p["partner"], "openbanking-plaid");
    assert_eq!(m.ledger(TRUELAYER, &id).await.get("payment"), None);
    follow(p["authorization_url"].as_str().unwrap()).await;
    until(&m, &key, &path, |p| p["status"] == "executed").await;
    let _ = m
        .http
        .delete(format!("{TRUELAYER}/_sim/faults?matcher={id}"))
        .send()
        .await;
    let _ = PLAID;
}

#[tokio::test]
async fn bad_open_banking_input_is_refused_at_the_door() {
    let m = Mesh::get();
    let key = m.api_key("tenant-ob-bad", "openbanking:write,openbanking:read");
    let (code, body) = m
        .post(
            &key,
            "/v1/openbanking/consents",
            &json!({"consent_id": "c 1", "customer_id": "x",
            "redirect_uri": "http://evil.example/cb", "scope": "all"}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let text = body.to_string();
    for f in ["consent_id", "redirect_uri", "scope"] {
        assert!(text.contains(f), "{f}: {text}");
    }
    let (code, body) = m
        .post(
            &key,
            "/v1/openbanking/payments",
            &payment(
                "p-1",
                "USD",
                json!({"scheme": "ach_routing_account", "value": "123456789", "bank_code": "021000021"}),
            ),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("amount.currency") && body.to_string().contains("beneficiary.account.scheme"));
    assert_eq!(m.read(&key, "/v1/openbanking/consents/nope").await.0, 404);
    let id = format!("obc-{}", short_id());
    m.post(
        &key,
        "/v1/openbanking/consents",
        &json!({"consent_id": id, "customer_id": "x",
        "redirect_uri": "https://app.example/cb"}),
    )
    .await;
    let (code, _) = m
        .post(&key, &format!("/v1/openbanking/consents/{id}/callback"), &json!({}))
        .await;
    assert_eq!(code, 422, "a callback needs its code");
    let other = m.api_key("tenant-ob-other", "openbanking:read");
    assert_eq!(m.read(&other, &format!("/v1/openbanking/consents/{id}")).await.0, 404);
    assert_eq!(
        m.post(
            &other,
            "/v1/openbanking/consents",
            &json!({"consent_id": "z", "customer_id": "x",
            "redirect_uri": "https://app.example/cb"})
        )
        .await
        .0,
        403
    );
}

/// Reconciliation reads each bank payment back from its provider: one the provider failed after we
/// told the product it was executed is a finding, once; one that agrees is not read again.
#[tokio::test]
async fn reconciliation_finds_a_bank_payment_its_provider_failed_after_we_said_executed() {
    let m = Mesh::get();
    let key = m.api_key("tenant-ob-recon", "openbanking:write,openbanking:read");
    let mut refs = Vec::new();
    for n in 0..2 {
        let id = format!("obp-{}", short_id());
        let body = payment(
            &id,
            "GBP",
            json!({"scheme": "sort_code_account", "value": format!("1234567{n}"), "bank_code": "040004"}),
        );
        assert_eq!(m.post(&key, "/v1/openbanking/payments", &body).await.0, 202);
        let path = format!("/v1/openbanking/payments/{id}");
        let p = until(&m, &key, &path, |p| p["status"] == "awaiting_authorization").await;
        follow(p["authorization_url"].as_str().unwrap()).await;
        let p = until(&m, &key, &path, |p| p["status"] == "executed").await;
        refs.push(p["provider_reference"].as_str().unwrap().to_string());
    }
    // The bank fails the first afterwards (its webhook reaches a payment already ended: no change).
    m.sim_post(
        TRUELAYER,
        &format!("/_sim/payments/{}/fail", refs[0]),
        json!({"failure_reason": "provider_rejected"}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = format!("{}/runs", m.var("RECONCILIATION_URL"));
    let about = |s: &Value, key: &str, r: &str| -> usize {
        s[key]
            .as_array()
            .map_or(0, |a| a.iter().filter(|f| f["provider_reference"] == r).count())
    };
    let first: Value = m
        .admin_post(&url)
        .json(&json!({"grace_seconds": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(about(&first, "found", &refs[0]), 1, "{first}");
    assert_eq!(about(&first, "found", &refs[1]), 0, "the one that agrees is no finding");
    m.admin_post(&url)
        .json(&json!({"grace_seconds": 0}))
        .send()
        .await
        .unwrap();
    let stored = m.admin_json(&format!("{}/findings", m.var("RECONCILIATION_URL"))).await;
    let mine: Vec<&Value> = stored["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["provider_reference"] == refs[0].as_str())
        .collect();
    assert_eq!(mine.len(), 1, "found once, however many runs: {stored}");
    assert_eq!(mine[0]["kind"], "status_mismatch");
    assert_eq!(mine[0]["domain"], "openbanking");
}
