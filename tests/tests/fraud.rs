//! The fraud adapter through the running mesh (`make services`): scoring requests on
//! `fraud.requests.v1` against the Sift- and SEON-shaped simulators, results read back from
//! `fraud.results.v1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, time::Duration};

use switchyard_model::{
    Envelope,
    events::{
        Event,
        common::{FailureClass, Money},
        fraud::{Channel, FraudDecision, FraudScoreRequested, FraudScoreResult, ScoreBand},
    },
};
use switchyard_runtime::Codec;
use switchyard_tests::*;

const SIFT: &str = "http://127.0.0.1:9305";
const SEON: &str = "http://127.0.0.1:9306";

fn request(partner: &str, customer: &str, tx: &str, amount_minor: i64, currency: &str) -> FraudScoreRequested {
    FraudScoreRequested {
        envelope: Envelope::new(FraudScoreRequested::RECORD, "tenant-risk", format!("flow-{tx}"), "test"),
        customer_id: customer.into(),
        transaction_id: tx.into(),
        amount: Money {
            amount_minor,
            currency: currency.into(),
        },
        counterparty_id: format!("ben-{tx}"),
        channel: Channel::Api,
        device_id: None,
        partner: partner.into(),
        attempt: 1,
        shadow: false,
    }
}

/// Every result for the given transactions, until each has one, then 2 s more (a second result
/// would be a duplicate).
async fn results(stack: &Stack, codec: &Codec, txs: &[String]) -> HashMap<String, Vec<FraudScoreResult>> {
    let got: Vec<FraudScoreResult> = read_events(
        stack,
        codec,
        Duration::from_secs(60),
        Duration::from_secs(2),
        |r: &FraudScoreResult| txs.contains(&r.transaction_id),
        |rs| txs.iter().all(|t| rs.iter().any(|r| &r.transaction_id == t)),
    )
    .await;
    let mut out: HashMap<String, Vec<FraudScoreResult>> = HashMap::new();
    for r in got {
        out.entry(r.transaction_id.clone()).or_default().push(r);
    }
    out
}

/// Each vendor, each persona: a canonical score, band, decision hint and reason codes (no vendor
/// words), one scoring at the vendor per request; the same request delivered again replays nothing.
#[tokio::test]
async fn both_vendors_score_in_canonical_terms_once_per_request() {
    let (stack, m) = (Stack::get(), Mesh::get());
    let codec = model_codec(&stack);
    let n = short_id();
    let cases = [
        (
            "fraud-sift",
            SIFT,
            "event",
            "cust-clean",
            FraudDecision::Allow,
            ScoreBand::Low,
        ),
        (
            "fraud-sift",
            SIFT,
            "event",
            "cust-risky",
            FraudDecision::Review,
            ScoreBand::High,
        ),
        (
            "fraud-sift",
            SIFT,
            "event",
            "cust-fraudster",
            FraudDecision::Deny,
            ScoreBand::High,
        ),
        (
            "fraud-seon",
            SEON,
            "transaction",
            "cust-clean",
            FraudDecision::Allow,
            ScoreBand::Low,
        ),
        (
            "fraud-seon",
            SEON,
            "transaction",
            "cust-risky",
            FraudDecision::Review,
            ScoreBand::Medium,
        ),
        (
            "fraud-seon",
            SEON,
            "transaction",
            "cust-fraudster",
            FraudDecision::Deny,
            ScoreBand::High,
        ),
    ];
    let mut txs = Vec::new();
    let mut sent = Vec::new();
    for (i, (partner, ..)) in cases.iter().enumerate() {
        let tx = format!("po-{n}-{i}");
        let (cust, cur, amount) = (cases[i].3, ["EUR", "JPY", "KWD"][i % 3], 12_345);
        let req = request(partner, &format!("{cust}-{n}"), &tx, amount, cur);
        produce_event(&stack, &codec, &req).await;
        txs.push(tx);
        sent.push(req);
    }
    // The first request again, as a redelivery (same event id).
    produce_event(&stack, &codec, &sent[0]).await;
    let got = results(&stack, &codec, &txs).await;
    for (i, (partner, sim, kind, _, decision, band)) in cases.iter().enumerate() {
        let tx = &txs[i];
        let r = got.get(tx).unwrap_or_else(|| panic!("{partner}: no result for {tx}"));
        assert_eq!(r.len(), 1, "{partner} {tx}: one result, even for a redelivered request");
        let r = &r[0];
        assert!(r.failure.is_none(), "{partner}: {:?}", r.failure);
        assert_eq!(
            (r.decision, r.band),
            (*decision, Some(*band)),
            "{partner} {tx}: score {}",
            r.score
        );
        assert!((0..=1000).contains(&r.score));
        assert_eq!(r.partner, *partner);
        assert!(
            r.reasons
                .iter()
                .all(|c| switchyard_vendors::fraud::REASONS.contains(&c.as_str())),
            "{partner}: {:?}",
            r.reasons
        );
        assert_eq!(
            r.envelope.flow_id,
            format!("flow-{tx}"),
            "the result belongs to the request's flow"
        );
        assert_eq!(
            m.ledger(sim, tx).await.get(*kind).copied(),
            Some(1),
            "{partner} {tx}: scored once"
        );
    }
    let deny = &got[&txs[2]][0];
    assert!(!deny.reasons.is_empty(), "a block says why: {deny:?}");
}

/// A vendor that is down: after the retries the result carries a transient failure (the flow's
/// fail mode decides), the hint is review, and nothing was scored at the vendor.
#[tokio::test]
async fn a_vendor_that_is_down_gives_a_failure_not_a_score() {
    let (stack, m) = (Stack::get(), Mesh::get());
    let codec = model_codec(&stack);
    let tx = format!("po-down-{}", short_id());
    m.sim_post(
        SEON,
        "/_sim/faults",
        serde_json::json!({"matcher": tx, "fault": {"kind": "error", "status": 503}, "times": 20}),
    )
    .await;
    produce_event(&stack, &codec, &request("fraud-seon", "cust-clean", &tx, 5_000, "USD")).await;
    let got = results(&stack, &codec, std::slice::from_ref(&tx)).await;
    let r = &got.get(&tx).expect("a result")[0];
    let f = r.failure.as_ref().expect("a failure");
    assert_eq!(f.failure_class, FailureClass::Transient, "{f:?}");
    assert_eq!(r.decision, FraudDecision::Review);
    assert_eq!(r.band, None, "no score, no band");
    assert_eq!(
        m.ledger(SEON, &tx).await.get("transaction"),
        None,
        "refused before any scoring"
    );
    m.http
        .delete(format!("{SEON}/_sim/faults"))
        .query(&[("matcher", tx.as_str())])
        .send()
        .await
        .unwrap();
}

/// A request whose amount is not in an ISO 4217 currency is refused (dead-lettered with the reason),
/// never sent to a vendor.
#[tokio::test]
async fn an_amount_in_no_currency_is_dead_lettered() {
    let (stack, m) = (Stack::get(), Mesh::get());
    let codec = model_codec(&stack);
    let tx = format!("po-xxx-{}", short_id());
    produce_event(&stack, &codec, &request("fraud-sift", "cust-clean", &tx, 100, "XXX")).await;
    let dlq = format!("{}.dlq", FraudScoreRequested::TOPIC);
    let found = eventually(Duration::from_secs(30), || async {
        read_topic(&stack, &dlq, 1_000_000, Duration::from_secs(3), Duration::ZERO)
            .await
            .iter()
            .any(|raw| raw.key.as_deref() == Some(format!("flow-{tx}").as_str()))
    })
    .await;
    assert!(found, "dead-lettered");
    assert_eq!(m.ledger(SIFT, &tx).await.get("event"), None);
}
