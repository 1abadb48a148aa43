//! The payouts adapter through the running mesh (`make services`): payout requests on
//! `payouts.requests.v1` against the Wise- and Stripe-shaped simulators, results read back from
//! `payouts.results.v1`, executions counted in each vendor's own ledger.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, time::Duration};

use switchyard_model::{
    Envelope,
    events::{
        Event,
        common::Money,
        payouts::{
            AccountIdentifier, AccountScheme, Beneficiary, PayoutProviderEvent, PayoutRequested, PayoutResult,
            PayoutStatus,
        },
    },
};
use switchyard_runtime::Codec;
use switchyard_tests::*;

const WISE: &str = "http://127.0.0.1:9307";
const STRIPE: &str = "http://127.0.0.1:9308";

fn request(partner: &str, payout_id: &str, iban: &str) -> PayoutRequested {
    PayoutRequested {
        envelope: Envelope::new(
            PayoutRequested::RECORD,
            "tenant-pay",
            format!("flow-{payout_id}"),
            "test",
        ),
        payout_id: payout_id.into(),
        amount: Money {
            amount_minor: 15_025,
            currency: "EUR".into(),
        },
        beneficiary: Beneficiary {
            name: "Grace Hopper".into(),
            account: AccountIdentifier {
                scheme: AccountScheme::Iban,
                value: iban.into(),
                bank_code: None,
            },
            address: None,
        },
        rail: "sepa".into(),
        reference: None,
        partner: partner.into(),
        attempt: 1,
    }
}

const IBAN: &str = "DE89370400440532013000";

/// Every result for the given payouts, until each has one, then 2 s more (a second one would be a
/// duplicate).
async fn results(stack: &Stack, codec: &Codec, ids: &[&str], within: Duration) -> HashMap<String, Vec<PayoutResult>> {
    let got: Vec<PayoutResult> = read_events(
        stack,
        codec,
        within,
        Duration::from_secs(2),
        |r: &PayoutResult| ids.contains(&r.payout_id.as_str()),
        |rs| ids.iter().all(|i| rs.iter().any(|r| r.payout_id == *i)),
    )
    .await;
    let mut out: HashMap<String, Vec<PayoutResult>> = HashMap::new();
    for r in got {
        out.entry(r.payout_id.clone()).or_default().push(r);
    }
    out
}

/// A payout on each vendor executes once and is accepted; the same request delivered again
/// executes nothing and emits nothing more; an IBAN that fails its check digits is refused with no
/// call.
#[tokio::test]
async fn a_payout_executes_once_on_each_vendor() {
    let (stack, m) = (Stack::get(), Mesh::get());
    let codec = model_codec(&stack);
    let n = short_id();
    let (wise, stripe, bad) = (format!("po-w-{n}"), format!("po-s-{n}"), format!("po-bad-{n}"));
    let rw = request("payouts-wise", &wise, IBAN);
    produce_event(&stack, &codec, &rw).await;
    produce_event(&stack, &codec, &request("payouts-stripe", &stripe, IBAN)).await;
    produce_event(&stack, &codec, &request("payouts-wise", &bad, "DE89370400440532013001")).await;
    produce_event(&stack, &codec, &rw).await; // redelivered
    let got = results(&stack, &codec, &[&wise, &stripe, &bad], Duration::from_secs(60)).await;
    for (id, sim) in [(&wise, WISE), (&stripe, STRIPE)] {
        let r = got.get(id.as_str()).unwrap_or_else(|| panic!("no result for {id}"));
        assert_eq!(r.len(), 1, "{id}: one result");
        assert_eq!(r[0].status, PayoutStatus::Accepted, "{id}: {:?}", r[0].failure);
        assert!(r[0].provider_reference.is_some());
        assert_eq!(
            m.ledger(sim, id).await.get("payout").copied(),
            Some(1),
            "{id}: executed once"
        );
    }
    let r = &got[&bad][0];
    assert_eq!(r.status, PayoutStatus::Failed);
    assert_eq!(r.failure.as_ref().unwrap().code, "payout_invalid");
    assert!(
        !r.failure.as_ref().unwrap().message.contains("0532013001"),
        "the account is masked"
    );
    assert_eq!(
        m.ledger(WISE, &bad).await.get("payout"),
        None,
        "no call for a bad account"
    );
}

/// The answer to the call that executes the payout never arrives (the vendor did it; we time out):
/// the payout is in doubt and settled by asking the vendor by our reference, never by a second
/// execution. Stripe: the idempotency key expires (the simulator's clock moves 25 hours) while in
/// doubt, so a re-send would pay again; the search by metadata finds the payout instead.
#[tokio::test]
async fn a_payout_in_doubt_is_settled_by_asking_never_by_paying_again() {
    let (stack, m) = (Stack::get(), Mesh::get());
    let codec = model_codec(&stack);
    let n = short_id();
    let (wise, stripe) = (format!("po-dw-{n}"), format!("po-ds-{n}"));
    let rw = request("payouts-wise", &wise, IBAN);
    // Wise: the transfer is created, its answer lost (matched by our customerTransactionId).
    let ctid = rw.envelope.event_id.hyphenated().to_string();
    m.sim_post(
        WISE,
        "/_sim/faults",
        serde_json::json!({"matcher": ctid, "fault": {"kind": "hang_after_effect", "ms": 4000}, "times": 1}),
    )
    .await;
    // Stripe: the payout is made, its answer lost.
    m.sim_post(
        STRIPE,
        "/_sim/faults",
        serde_json::json!({"matcher": stripe, "fault": {"kind": "hang_after_effect", "ms": 4000}, "times": 1}),
    )
    .await;
    produce_event(&stack, &codec, &rw).await;
    produce_event(&stack, &codec, &request("payouts-stripe", &stripe, IBAN)).await;
    // While the adapter waits for an answer, Stripe forgets the key.
    assert!(
        eventually(Duration::from_secs(20), || async {
            m.ledger(STRIPE, &stripe).await.contains_key("payout")
        })
        .await,
        "the Stripe payout was made"
    );
    m.sim_post(STRIPE, "/_sim/clock", serde_json::json!({"advance_hours": 25}))
        .await;
    let got = results(&stack, &codec, &[&wise, &stripe], Duration::from_secs(90)).await;
    for (id, sim) in [(&wise, WISE), (&stripe, STRIPE)] {
        let r = got.get(id.as_str()).unwrap_or_else(|| panic!("no result for {id}"));
        assert_eq!(r.len(), 1, "{id}");
        // Found where the vendor has it by the time it is asked: accepted, or paid already.
        assert!(
            matches!(r[0].status, PayoutStatus::Accepted | PayoutStatus::Settled),
            "{id}: {:?} {:?}",
            r[0].status,
            r[0].failure
        );
        assert!(r[0].provider_reference.is_some(), "{id}: the vendor's reference");
        assert_eq!(
            m.ledger(sim, id).await.get("payout").copied(),
            Some(1),
            "{id}: executed exactly once"
        );
    }
}

/// Every provider event of `reference`, until `done` says enough arrived.
async fn provider_events(
    stack: &Stack,
    codec: &Codec,
    reference: &str,
    within: Duration,
    done: impl Fn(&[PayoutProviderEvent]) -> bool,
) -> Vec<PayoutProviderEvent> {
    read_events(
        stack,
        codec,
        within,
        Duration::ZERO,
        |e: &PayoutProviderEvent| e.provider_reference == reference,
        done,
    )
    .await
}

/// Stripe's status webhooks, signed, reach `payouts.provider-events.v1` in canonical terms with the
/// vendor's own time of each change; the same delivery again is a duplicate; a forged one is refused;
/// a paid payout the bank returns is announced as FAILED with its reason.
#[tokio::test]
async fn stripe_status_webhooks_become_provider_events_once_each() {
    use switchyard_model::events::payouts::PayoutStatus as S;
    let (stack, m) = (Stack::get(), Mesh::get());
    let codec = model_codec(&stack);
    let id = format!("po-wh-{}", short_id());
    produce_event(&stack, &codec, &request("payouts-stripe", &id, IBAN)).await;
    let got = results(&stack, &codec, &[id.as_str()], Duration::from_secs(60)).await;
    let reference = got[&id][0].provider_reference.clone().expect("the payout's reference");
    let events = provider_events(&stack, &codec, &reference, Duration::from_secs(30), |es| {
        es.iter().any(|e| e.status == S::Settled)
    })
    .await;
    assert!(events.iter().any(|e| e.status == S::Accepted), "{events:?}");
    let paid = events.iter().find(|e| e.status == S::Settled).expect("paid announced");
    assert_eq!(paid.partner, "payouts-stripe");
    assert!(
        paid.envelope.occurred_at <= paid.received_at,
        "the vendor's time, not ours"
    );
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.provider_event_id.clone()).collect();
    assert_eq!(ids.len(), events.len(), "each vendor event once");

    // The bank returns the paid payout.
    m.sim_post(
        STRIPE,
        &format!("/_sim/payouts/{reference}/fail"),
        serde_json::json!({"failure_code": "account_closed"}),
    )
    .await;
    let events = provider_events(&stack, &codec, &reference, Duration::from_secs(30), |es| {
        es.iter().any(|e| e.status == S::Failed)
    })
    .await;
    let failed = events
        .iter()
        .find(|e| e.status == S::Failed)
        .expect("the return announced");
    assert_eq!(failed.return_reason.as_deref(), Some("account_closed"));

    // A forged delivery: refused, nothing emitted.
    let body = r#"{"id":"evt_forged","object":"event","created":1,"type":"payout.paid","data":{"object":{"id":"po_x","object":"payout","status":"paid"}}}"#;
    let t = chrono::Utc::now().timestamp();
    let r = m
        .http
        .post(format!("{}/webhooks/payouts-stripe", m.var("WEBHOOKS_URL")))
        .header("Stripe-Signature", format!("t={t},v1={}", "ab".repeat(32)))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A genuine delivery again (signed with the real secret): a duplicate.
    let secret = m.var("STRIPE_WEBHOOK_SECRET");
    let event =
        serde_json::json!({"id": paid.provider_event_id, "object": "event", "created": t, "type": "payout.paid",
        "data": {"object": {"id": reference, "object": "payout", "status": "paid"}}})
        .to_string();
    let sig = switchyard_vendors::signing::hex(&switchyard_vendors::signing::hmac(
        switchyard_vendors::signing::Alg::Sha256,
        secret.as_bytes(),
        format!("{t}.{event}").as_bytes(),
    ));
    let r = m
        .http
        .post(format!("{}/webhooks/payouts-stripe", m.var("WEBHOOKS_URL")))
        .header("Stripe-Signature", format!("t={t},v1={sig}"))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "duplicate".to_string())
    );
}

/// Wise's state changes, signed with its RSA key, reach `payouts.provider-events.v1`: processing,
/// then sent, each once, with the event's own time; a body signed by another key is refused.
#[tokio::test]
async fn wise_state_changes_become_provider_events_once_each() {
    use switchyard_model::events::payouts::PayoutStatus as S;
    let (stack, m) = (Stack::get(), Mesh::get());
    let codec = model_codec(&stack);
    let id = format!("po-ww-{}", short_id());
    produce_event(&stack, &codec, &request("payouts-wise", &id, IBAN)).await;
    let got = results(&stack, &codec, &[id.as_str()], Duration::from_secs(60)).await;
    let reference = got[&id][0].provider_reference.clone().expect("the transfer id");
    let events = provider_events(&stack, &codec, &reference, Duration::from_secs(30), |es| {
        es.iter().any(|e| e.status == S::Settled)
    })
    .await;
    assert!(events.iter().any(|e| e.status == S::Accepted), "{events:?}");
    assert!(events.iter().all(|e| e.partner == "payouts-wise"));
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.provider_event_id.clone()).collect();
    assert_eq!(ids.len(), events.len(), "each state change once");
    let mut times: Vec<i64> = events.iter().map(|e| e.envelope.occurred_at).collect();
    times.sort();
    assert!(
        times.first() < times.last(),
        "each change carries its own time: {times:?}"
    );

    // Not signed by the vendor's key: refused.
    let body = format!(
        r#"{{"data":{{"resource":{{"type":"transfer","id":{reference}}},"current_state":"bounced_back","occurred_at":"2026-11-26T07:00:00Z"}},"event_type":"transfers#state-change"}}"#
    );
    let r = m
        .http
        .post(format!("{}/webhooks/payouts-wise", m.var("WEBHOOKS_URL")))
        .header("X-Signature-SHA256", "c2lnbmVkIGJ5IHNvbWVib2R5IGVsc2U=")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

/// The vendor does the work, then answers 500 (it failed to say so): the adapter treats a 5xx as
/// "may have happened", asks by our reference (Stripe: the search by metadata) or re-sends under
/// the vendor's de-duplication (Wise: the same customerTransactionId hands the same transfer back),
/// and the payout is executed exactly once.
#[tokio::test]
async fn a_payout_answered_5xx_after_its_effect_is_found_not_paid_again() {
    let (stack, m) = (Stack::get(), Mesh::get());
    let codec = model_codec(&stack);
    let n = short_id();
    let (wise, stripe) = (format!("po-5w-{n}"), format!("po-5s-{n}"));
    let rw = request("payouts-wise", &wise, IBAN);
    let ctid = rw.envelope.event_id.hyphenated().to_string();
    for (sim, matcher) in [(WISE, ctid.as_str()), (STRIPE, stripe.as_str())] {
        m.sim_post(
            sim,
            "/_sim/faults",
            serde_json::json!({"matcher": matcher, "fault": {"kind": "error_after_effect", "status": 500}, "times": 1}),
        )
        .await;
    }
    // The adapter must have been in doubt at each: its recovery counter moves (Stripe: found by the
    // search; Wise: nothing recorded yet, the same customerTransactionId sent again).
    let before = (
        recoveries(&m, "payouts-stripe", "found").await,
        recoveries(&m, "payouts-wise", "send_again").await,
    );
    produce_event(&stack, &codec, &rw).await;
    produce_event(&stack, &codec, &request("payouts-stripe", &stripe, IBAN)).await;
    let got = results(&stack, &codec, &[&wise, &stripe], Duration::from_secs(90)).await;
    for (id, sim) in [(&wise, WISE), (&stripe, STRIPE)] {
        let r = got.get(id.as_str()).unwrap_or_else(|| panic!("no result for {id}"));
        assert_eq!(r.len(), 1, "{id}");
        assert!(
            matches!(r[0].status, PayoutStatus::Accepted | PayoutStatus::Settled),
            "{id}: {:?} {:?}",
            r[0].status,
            r[0].failure
        );
        assert_eq!(
            m.ledger(sim, id).await.get("payout").copied(),
            Some(1),
            "{id}: executed exactly once"
        );
    }
    let after = (
        recoveries(&m, "payouts-stripe", "found").await,
        recoveries(&m, "payouts-wise", "send_again").await,
    );
    assert!(
        after.0 > before.0,
        "the Stripe 500 left the payout in doubt and the search found it"
    );
    assert!(
        after.1 > before.1,
        "the Wise 500 left the transfer in doubt and it was handed back"
    );
}

/// The payouts adapter's count of earlier calls resolved by asking `partner`, by result.
async fn recoveries(m: &Mesh, partner: &str, result: &str) -> u64 {
    let text = m.metrics("PAYOUTS_ADAPTER_URL").await;
    text.lines()
        .filter(|l| {
            l.starts_with("switchyard_provider_effect_recoveries_total")
                && l.contains(&format!("partner=\"{partner}\""))
                && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
