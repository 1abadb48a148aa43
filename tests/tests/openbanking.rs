//! The open-banking adapter through the running mesh (`make services`): requests on
//! `openbanking.requests.v1` against the TrueLayer- and Plaid-shaped simulators, results read back
//! from `openbanking.results.v1`, the providers' signed webhooks through the normalizer onto
//! `openbanking.provider-events.v1`: a consent started, authorized by the customer (the link
//! followed) and completed once; accounts and transactions fetched (a second fetch gives only
//! what changed); the tokens sealed at rest; a payment keyed, authorized and executed, its webhook
//! verified with the provider's published key; a consent revoked.

// Amounts in minor units are written <units>_<cents>.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::inconsistent_digit_grouping)]

use std::time::Duration;

use switchyard_model::{
    Envelope,
    events::{
        Event,
        common::Money,
        openbanking::{
            BankTransactionStatus, OpenBankingAccountsFetched, OpenBankingOperation as Op, OpenBankingProviderEvent,
            OpenBankingRequested, OpenBankingResult, OpenBankingStatus, OpenBankingTransactionsFetched,
            consent_flow_id, payment_flow_id,
        },
        payouts::{AccountIdentifier, AccountScheme, Beneficiary},
    },
};
use switchyard_runtime::Codec;
use switchyard_tests::*;

const TENANT: &str = "tenant-ob";
const WITHIN: Duration = Duration::from_secs(40);

struct Ctx {
    stack: Stack,
    codec: Codec,
    partner: &'static str,
}

fn request(partner: &str, flow: &str, op: Op) -> OpenBankingRequested {
    OpenBankingRequested {
        envelope: Envelope::new(OpenBankingRequested::RECORD, TENANT, flow.to_string(), "test"),
        customer_id: "cust-ob-1".into(),
        operation: op,
        consent_id: Some(flow.rsplit('.').next().unwrap_or(flow).to_string()),
        institution_id: None,
        amount: None,
        creditor_account: None,
        redirect_uri: Some("https://app.example/ob/callback".into()),
        partner: partner.into(),
        attempt: 1,
        authorization_code: None,
        payment_id: None,
        reference: None,
        beneficiary: None,
    }
}

impl Ctx {
    async fn ask(&self, r: OpenBankingRequested) -> OpenBankingResult {
        let id = r.envelope.event_id.to_string();
        produce_event(&self.stack, &self.codec, &r).await;
        let got: Vec<OpenBankingResult> = read_events(
            &self.stack,
            &self.codec,
            WITHIN,
            Duration::ZERO,
            |x: &OpenBankingResult| x.envelope.causation_id.as_deref() == Some(id.as_str()),
            |x| !x.is_empty(),
        )
        .await;
        got.into_iter()
            .next()
            .unwrap_or_else(|| panic!("no result for {:?}", r.operation))
    }

    async fn fetched<E: Event>(&self, r: OpenBankingRequested, cause: impl Fn(&E) -> Option<String>) -> E {
        let id = r.envelope.event_id.to_string();
        produce_event(&self.stack, &self.codec, &r).await;
        let got: Vec<E> = read_events(
            &self.stack,
            &self.codec,
            WITHIN,
            Duration::ZERO,
            |x: &E| cause(x).as_deref() == Some(id.as_str()),
            |x| !x.is_empty(),
        )
        .await;
        got.into_iter()
            .next()
            .unwrap_or_else(|| panic!("nothing fetched for {:?}", r.operation))
    }
}

/// Follows an authorization link as the customer's browser would; the query it is sent back with.
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

async fn journey(partner: &'static str, code_param: &str, beneficiary: AccountIdentifier, currency: &str) {
    let c = Ctx {
        stack: Stack::get(),
        codec: model_codec(&Stack::get()),
        partner,
    };
    let m = Mesh::get();
    let consent = consent_flow_id(TENANT, &format!("obc-{}", short_id()));
    let started = c.ask(request(c.partner, &consent, Op::CreateConsent)).await;
    assert_eq!(started.status, OpenBankingStatus::AwaitingAuthorization, "{started:?}");
    let back = follow(started.authorization_url.as_deref().unwrap()).await;
    let mut complete = request(c.partner, &consent, Op::CompleteConsent);
    complete.authorization_code = Some(back[code_param].clone());
    let done = c.ask(complete.clone()).await;
    assert_eq!(done.status, OpenBankingStatus::Authorized, "{done:?}");
    assert!(done.consent_expires_at.is_some());
    // The tokens at rest are sealed: nothing of them in the clear.
    let db = m.service_db("OPENBANKING_ADAPTER_DATABASE_URL").await;
    let sealed: String = sqlx::query_scalar("SELECT sealed FROM ob_consents WHERE consent_key = $1")
        .bind(&consent)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(!sealed.contains("access") && !sealed.contains("at-") && sealed.len() > 40);
    // The tokens themselves, opened here with the local stack's key: what must never leak.
    let sealer = switchyard_vendors::openbanking::seal::Sealer::new(&m.var("OPENBANKING_TOKEN_KEY")).unwrap();
    let tokens = sealer.open(&consent, &sealed).unwrap();
    let mut secrets = vec![tokens.access_token.clone()];
    secrets.extend(tokens.refresh_token.clone());
    secrets.push(back[code_param].clone());

    let accounts: OpenBankingAccountsFetched = c
        .fetched(
            request(c.partner, &consent, Op::FetchAccounts),
            |x: &OpenBankingAccountsFetched| x.envelope.causation_id.clone(),
        )
        .await;
    assert_eq!(accounts.accounts.len(), 2);
    assert!(
        accounts
            .accounts
            .iter()
            .all(|a| a.number_last4.as_ref().is_some_and(|l| l.len() == 4))
    );
    let first: OpenBankingTransactionsFetched = c
        .fetched(
            request(c.partner, &consent, Op::FetchTransactions),
            |x: &OpenBankingTransactionsFetched| x.envelope.causation_id.clone(),
        )
        .await;
    assert!(first.transactions.len() > 3, "{}", first.transactions.len());
    assert!(
        first
            .transactions
            .iter()
            .any(|t| t.status == BankTransactionStatus::Pending)
    );
    assert!(
        first.transactions.iter().any(|t| t.amount_minor < 0) && first.transactions.iter().any(|t| t.amount_minor > 0)
    );
    let second: OpenBankingTransactionsFetched = c
        .fetched(
            request(c.partner, &consent, Op::FetchTransactions),
            |x: &OpenBankingTransactionsFetched| x.envelope.causation_id.clone(),
        )
        .await;
    // A second fetch gives only what changed: nothing at the TrueLayer-shaped provider (the same
    // dates fetched again), the pending purchase posted at the Plaid-shaped one (it replaces the
    // pending one, which is withdrawn).
    let plaid = partner.ends_with("plaid");
    assert_eq!(
        second.transactions.len(),
        usize::from(plaid),
        "{:?}",
        second.transactions
    );
    assert_eq!(second.removed.len(), usize::from(plaid), "{:?}", second.removed);
    assert!(
        second
            .transactions
            .iter()
            .all(|t| t.status == BankTransactionStatus::Booked && t.replaces.is_some())
    );

    // A payment: keyed, the customer authorizes it, the bank executes it, the webhook says so.
    let payment = payment_flow_id(TENANT, &format!("obp-{}", short_id()));
    let mut pay = request(c.partner, &payment, Op::InitiatePayment);
    pay.payment_id = Some(payment.clone());
    pay.amount = Some(Money {
        amount_minor: 12_50,
        currency: currency.into(),
    });
    pay.reference = Some("Order 77".into());
    pay.redirect_uri = Some("https://app.example/pay/done".into());
    pay.beneficiary = Some(Beneficiary {
        name: "Demo Merchant Ltd".into(),
        account: beneficiary,
        address: None,
    });
    let asked = c.ask(pay.clone()).await;
    assert_eq!(asked.status, OpenBankingStatus::AwaitingAuthorization, "{asked:?}");
    let reference = asked.provider_reference.clone().unwrap();
    // The same request delivered again pays nothing more.
    produce_event(&c.stack, &c.codec, &pay).await;
    follow(asked.authorization_url.as_deref().unwrap()).await;
    let notices: Vec<OpenBankingProviderEvent> = read_events(
        &c.stack,
        &c.codec,
        WITHIN,
        Duration::from_secs(1),
        |x: &OpenBankingProviderEvent| x.provider_reference == reference,
        |x| x.iter().any(|n| n.status == OpenBankingStatus::Executed),
    )
    .await;
    assert!(
        notices
            .iter()
            .any(|n| n.status == OpenBankingStatus::Executed && n.notice == "payment"),
        "the provider's signed webhook, verified and normalized: {notices:?}"
    );
    // One payment at the provider, however often the request came: counted in its own ledger, by
    // our key (TrueLayer-shaped: the Idempotency-Key) or the reference carrying it (Plaid-shaped).
    let key = format!("sy-{}", pay.envelope.event_id.simple());
    let (sim, by) = if partner.ends_with("truelayer") {
        ("http://127.0.0.1:9311", key.clone())
    } else {
        (
            "http://127.0.0.1:9312",
            switchyard_vendors::openbanking::plaid::reference_of(&key),
        )
    };
    assert_eq!(m.ledger(sim, &by).await.get("payment"), Some(&1));

    // No token (nor the callback's code) in any service's log or on any open-banking topic.
    let logs = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-stack/data/logs");
    for entry in std::fs::read_dir(&logs).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "a provider credential in {}",
                entry.path().display()
            );
        }
    }
    let mut code_seen = false;
    for topic in [
        "openbanking.commands.v1",
        "openbanking.requests.v1",
        "openbanking.results.v1",
        "openbanking.outcomes.v1",
        "openbanking.provider-events.v1",
    ] {
        for r in read_topic(&c.stack, topic, usize::MAX, Duration::from_secs(3), Duration::ZERO).await {
            for s in secrets.iter().filter(|s| !s.is_empty()) {
                let hit = r.payload.windows(s.len()).any(|w| w == s.as_bytes());
                // The code travels once, to the adapter; the tokens never.
                let allowed = s == &back[code_param] && topic.ends_with("commands.v1") | topic.ends_with("requests.v1");
                assert!(!hit || allowed, "a provider credential on {topic}");
                code_seen |= hit && allowed;
            }
        }
    }
    assert!(code_seen, "the scan sees the code where it belongs (proof it can see)");

    let revoked = c.ask(request(c.partner, &consent, Op::RevokeConsent)).await;
    assert_eq!(revoked.status, OpenBankingStatus::Revoked);
    let after = c.ask(request(c.partner, &consent, Op::FetchAccounts)).await;
    assert_eq!(after.failure.map(|f| f.code).as_deref(), Some("consent_not_authorized"));
}

#[tokio::test]
async fn a_consent_data_and_a_payment_at_the_truelayer_shaped_provider() {
    journey(
        "openbanking-truelayer",
        "code",
        AccountIdentifier {
            scheme: AccountScheme::SortCodeAccount,
            value: "12345678".into(),
            bank_code: Some("040004".into()),
        },
        "GBP",
    )
    .await;
}

#[tokio::test]
async fn a_consent_data_and_a_payment_at_the_plaid_shaped_provider() {
    journey(
        "openbanking-plaid",
        "public_token",
        AccountIdentifier {
            scheme: AccountScheme::Iban,
            value: "FR1420041010050500013M02606".into(),
            bank_code: None,
        },
        "EUR",
    )
    .await;
}

/// A code already exchanged (the customer's callback delivered twice, or replayed) makes nothing:
/// the second exchange is refused by the provider and the consent keeps its tokens.
#[tokio::test]
async fn a_replayed_callback_code_is_refused() {
    let c = Ctx {
        stack: Stack::get(),
        codec: model_codec(&Stack::get()),
        partner: "openbanking-truelayer",
    };
    let consent = consent_flow_id(TENANT, &format!("obc-{}", short_id()));
    let started = c.ask(request(c.partner, &consent, Op::CreateConsent)).await;
    let back = follow(started.authorization_url.as_deref().unwrap()).await;
    let mut complete = request(c.partner, &consent, Op::CompleteConsent);
    complete.authorization_code = Some(back["code"].clone());
    assert_eq!(c.ask(complete.clone()).await.status, OpenBankingStatus::Authorized);
    let mut again = request(c.partner, &consent, Op::CompleteConsent);
    again.authorization_code = complete.authorization_code.clone();
    let refused = c.ask(again).await;
    assert_eq!(refused.status, OpenBankingStatus::Failed, "{refused:?}");
    let accounts: OpenBankingAccountsFetched = c
        .fetched(
            request(c.partner, &consent, Op::FetchAccounts),
            |x: &OpenBankingAccountsFetched| x.envelope.causation_id.clone(),
        )
        .await;
    assert_eq!(accounts.accounts.len(), 2, "the first exchange's tokens still serve");
}
