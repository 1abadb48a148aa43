//! The open-banking provider clients against their running simulators (`make services`): the
//! TrueLayer- and Plaid-shaped consent journeys (the link followed as the customer would, the
//! callback's code or public token exchanged once), accounts, balances and transactions, token
//! refresh and revocation, and payments: keyed, signed, authorized by the customer and executed;
//! at Plaid (no idempotency) an earlier attempt found by our reference, and two found as two.

// Amounts in minor units are written <units>_<cents>.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::inconsistent_digit_grouping)]

use std::{sync::Arc, time::Duration};

use switchyard_model::events::{
    common::Money,
    payouts::{AccountIdentifier, AccountScheme},
};
use switchyard_runtime::Secret;
use switchyard_tests::*;
use switchyard_vendors::{
    VendorError,
    adapter::{Progress, Recovery},
    openbanking::{
        ConsentRequest, OpenBankingVendor, PaymentOrder, PaymentStatus, Refreshed, TransactionStatus,
        plaid::{Plaid, PlaidConfig},
        truelayer::{TrueLayer, TrueLayerConfig},
    },
};

const TRUELAYER: &str = "http://127.0.0.1:9311";
const PLAID: &str = "http://127.0.0.1:9312";

fn truelayer(m: &Mesh) -> TrueLayer {
    TrueLayer::new(TrueLayerConfig {
        partner: "openbanking-truelayer".into(),
        auth_url: TRUELAYER.into(),
        api_url: TRUELAYER.into(),
        hpp_url: format!("{TRUELAYER}/hpp"),
        client_id: m.var("TRUELAYER_CLIENT_ID"),
        client_secret: Secret::new(m.var("TRUELAYER_CLIENT_SECRET")),
        signing_key: Secret::new(m.var("TRUELAYER_SIGNING_KEY")),
        signing_kid: "kid-local".into(),
        webhook_jku: format!("{TRUELAYER}/.well-known/jwks"),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn plaid(m: &Mesh) -> Plaid {
    Plaid::new(PlaidConfig {
        partner: "openbanking-plaid".into(),
        base_url: PLAID.into(),
        client_id: m.var("PLAID_CLIENT_ID"),
        secret: Secret::new(m.var("PLAID_SECRET")),
        client_name: "Switchyard".into(),
        country_codes: vec!["FR".into()],
        webhook_url: String::new(),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn consent(id: &str) -> ConsentRequest {
    ConsentRequest {
        consent_id: id.into(),
        customer_key: format!("cust-{id}"),
        institution_id: None,
        redirect_uri: "https://app.example/ob/callback".into(),
    }
}

/// Follows an authorization link as the customer's browser would, to the redirect back to us;
/// the query of that redirect.
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

fn order(key: &str, currency: &str, account: AccountIdentifier) -> PaymentOrder {
    PaymentOrder {
        payment_id: format!("obp-{}", short_id()),
        idempotency_key: key.into(),
        customer_key: "cust-1".into(),
        amount: Money {
            amount_minor: 12_50,
            currency: currency.into(),
        },
        beneficiary_name: "Demo Merchant Ltd".into(),
        beneficiary: account,
        reference: "Order 77".into(),
        redirect_uri: "https://app.example/pay/done".into(),
    }
}

async fn until_status(v: &dyn OpenBankingVendor, id: &str, want: PaymentStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let p = v.payment(id).await.unwrap();
        if p.status == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "payment {id} is {:?}", p.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Default)]
struct Noted(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl Progress for Noted {
    fn get(&self, name: &str) -> Option<String> {
        self.0.lock().unwrap().get(name).cloned()
    }
    fn note<'a>(&'a self, name: &'a str, value: &'a str) -> futures::future::BoxFuture<'a, Result<(), VendorError>> {
        self.0.lock().unwrap().insert(name.into(), value.into());
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn truelayer_consent_data_refresh_payment_and_revocation() {
    let m = Mesh::get();
    let t = truelayer(&m);
    let req = consent(&format!("obc-{}", short_id()));
    let link = t.consent_link(&req).await.unwrap();
    let back = follow(&link.authorization_url).await;
    assert_eq!(back["state"], req.consent_id, "the consent comes back by its id");
    let c = t.complete(&req, &back["code"]).await.unwrap();
    assert!(
        t.complete(&req, &back["code"]).await.is_err(),
        "a code is exchanged once"
    );
    let accounts = t.accounts(&c).await.unwrap();
    assert_eq!(accounts.len(), 2);
    assert!(
        accounts
            .iter()
            .all(|a| a.number_last4.as_ref().is_some_and(|l| l.len() == 4))
    );
    assert_eq!(accounts[0].current_minor, Some(1_238_60));
    let page = t.transactions(&c, None).await.unwrap();
    assert!(
        page.transactions
            .iter()
            .any(|x| x.status == TransactionStatus::Pending && x.booking_date.is_none())
    );
    assert!(
        page.transactions.iter().any(|x| x.amount_minor < 0) && page.transactions.iter().any(|x| x.amount_minor > 0)
    );
    let again = t.transactions(&c, page.cursor.as_deref()).await.unwrap();
    assert!(
        again
            .transactions
            .iter()
            .any(|x| page.transactions.iter().any(|y| y.transaction_id == x.transaction_id)),
        "fetches overlap: the store keeps one per id"
    );
    // Refresh rotates the refresh token: the old one is refused, and the customer consents again.
    let Refreshed::Connection(fresh) = t.refresh(&req, &c).await.unwrap() else {
        panic!("expected new tokens")
    };
    assert!(matches!(t.refresh(&req, &c).await.unwrap(), Refreshed::Reconsent(_)));
    t.accounts(&fresh).await.unwrap();

    let key = format!("sy-{}", uuid::Uuid::new_v4().simple());
    let account = AccountIdentifier {
        scheme: AccountScheme::SortCodeAccount,
        value: "12345678".into(),
        bank_code: Some("040004".into()),
    };
    let o = order(&key, "GBP", account);
    let first = t.pay(&o, Arc::new(Noted::default())).await.unwrap();
    assert_eq!(first.status, PaymentStatus::AwaitingAuthorization);
    let again = t.pay(&o, Arc::new(Noted::default())).await.unwrap();
    assert_eq!(
        again.provider_reference, first.provider_reference,
        "the same key answers the same payment"
    );
    assert_eq!(m.ledger(TRUELAYER, &key).await.get("payment"), Some(&1));
    // The customer authorizes on the hosted page; the bank executes it.
    follow(first.authorization_url.as_deref().unwrap()).await;
    until_status(&t, &first.provider_reference, PaymentStatus::Executed).await;

    t.revoke(&fresh).await.unwrap();
    assert!(matches!(t.accounts(&fresh).await, Err(VendorError::Auth(_))));
}

#[tokio::test]
async fn plaid_consent_sync_and_payments_found_by_reference() {
    let m = Mesh::get();
    let p = plaid(&m);
    let req = consent(&format!("obc-{}", short_id()));
    let link = p.consent_link(&req).await.unwrap();
    let back = follow(&link.authorization_url).await;
    let c = p.complete(&req, &back["public_token"]).await.unwrap();
    assert!(c.consent_expires_at_ms.is_some() && c.provider_reference.is_some());
    let accounts = p.accounts(&c).await.unwrap();
    assert_eq!(accounts[1].current_minor, Some(-410_50));
    let first = p.transactions(&c, None).await.unwrap();
    let pending: Vec<_> = first
        .transactions
        .iter()
        .filter(|x| x.status == TransactionStatus::Pending)
        .collect();
    assert_eq!(pending.len(), 1);
    assert!(
        first
            .transactions
            .iter()
            .any(|x| x.description == "Payroll" && x.amount_minor == 1_500_00)
    );
    let next = p.transactions(&c, first.cursor.as_deref()).await.unwrap();
    assert_eq!(
        next.removed,
        [pending[0].transaction_id.clone()],
        "the pending purchase withdrawn"
    );
    assert_eq!(
        next.transactions[0].replaces.as_deref(),
        Some(pending[0].transaction_id.as_str())
    );
    assert_eq!(next.transactions[0].status, TransactionStatus::Booked);

    let iban = AccountIdentifier {
        scheme: AccountScheme::Iban,
        value: "FR1420041010050500013M02606".into(),
        bank_code: None,
    };
    // One attempt, found again by its reference (nothing noted: a crash before the first note).
    let key = format!("sy-{}", uuid::Uuid::new_v4().simple());
    let o = order(&key, "EUR", iban.clone());
    let made = p.pay(&o, Arc::new(Noted::default())).await.unwrap();
    assert_eq!(made.status, PaymentStatus::AwaitingAuthorization);
    match p.find(&o, Arc::new(Noted::default())).await.unwrap() {
        Recovery::Found(x) => assert_eq!(x.provider_reference, made.provider_reference),
        other => panic!("{other:?}"),
    }
    follow(made.authorization_url.as_deref().unwrap()).await;
    until_status(&p, &made.provider_reference, PaymentStatus::Executed).await;
    // Plaid makes a payment for every call: two under one key are two, and nobody guesses.
    let key = format!("sy-{}", uuid::Uuid::new_v4().simple());
    let o = order(&key, "EUR", iban);
    p.pay(&o, Arc::new(Noted::default())).await.unwrap();
    p.pay(&o, Arc::new(Noted::default())).await.unwrap();
    assert_eq!(
        p.find(&o, Arc::new(Noted::default())).await.unwrap(),
        Recovery::Unknowable
    );
}
