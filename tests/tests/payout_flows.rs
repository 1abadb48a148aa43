//! Payouts end to end through the running mesh (`make services`): `POST /v1/payouts` at the
//! ingress, the orchestrator's payout flow (fraud screening, velocity, routing, in-doubt status
//! queries, failover, reversal), the fraud and payouts adapters against the simulators, webhooks
//! through the normalizer, and the answer at `GET /v1/payouts/{id}`. Executions are counted in each
//! vendor simulator's own ledger.
//!
//! Tests that make a partner fail take the write side of [`PARTNERS`] (a failing partner's circuit
//! may open for a few seconds, which would move the others' payouts); the rest share the read side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_model::events::payouts::{PayoutCompleted, PayoutReversed, PayoutStepChanged};
use switchyard_tests::*;

const SIFT: &str = "http://127.0.0.1:9305";
const SEON: &str = "http://127.0.0.1:9306";
const WISE: &str = "http://127.0.0.1:9307";
const STRIPE: &str = "http://127.0.0.1:9308";

static PARTNERS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const WAIT: Duration = Duration::from_secs(60);

fn tenant() -> String {
    format!("tenant-po-{}", short_id())
}

fn key_for(m: &Mesh, tenant: &str) -> String {
    m.api_key(tenant, "payouts:write,payouts:read,payouts:review,fraud:score")
}

fn body(id: &str, customer: &str, currency: &str, value: &str, iban: &str) -> Value {
    json!({"payout_id": id, "customer_id": customer, "amount": {"currency": currency, "value": value},
        "beneficiary": {"name": "Grace Hopper", "account": {"scheme": "iban", "value": iban}}})
}

async fn create(m: &Mesh, key: &str, body: &Value) -> String {
    let (code, resp) = m.post(key, "/v1/payouts", body).await;
    assert_eq!(code, 202, "{resp}");
    resp["id"].as_str().unwrap().to_string()
}

/// The flow id partners see for a tenant's payout (its ledger key at the simulators).
fn flow(tenant: &str, id: &str) -> String {
    format!("{}.{tenant}.{id}", tenant.len())
}

async fn executions(m: &Mesh, tenant: &str, id: &str) -> (u64, u64) {
    let f = flow(tenant, id);
    let w = m.ledger(WISE, &f).await.get("payout").copied().unwrap_or(0);
    let s = m.ledger(STRIPE, &f).await.get("payout").copied().unwrap_or(0);
    (w, s)
}

/// The reversals of `tenant`'s payouts on `payouts.outcomes.v1` (until one arrives, then 3 s more: a
/// second would be a duplicate).
async fn reversals_of(stack: &Stack, tenant: &str) -> Vec<PayoutReversed> {
    let codec = model_codec(stack);
    read_events(
        stack,
        &codec,
        WAIT,
        Duration::from_secs(3),
        |r: &PayoutReversed| r.envelope.tenant_id == tenant,
        |rs| !rs.is_empty(),
    )
    .await
}

const FINAL: &[&str] = &["settled", "failed", "returned", "cancelled"];

/// EUR goes to the cheaper partner (Stripe-shaped), yen to the only one that pays it (Wise-shaped),
/// GBP asked for speed to the faster one (Wise-shaped); each settles with exactly one execution,
/// at the partner routing chose, and one terminal outcome.
#[tokio::test]
async fn payouts_are_routed_by_currency_and_priority_and_paid_once() {
    let _shared = PARTNERS.read().await;
    let (stack, m) = (Stack::get(), Mesh::get());
    let t = tenant();
    let key = key_for(&m, &t);
    let n = short_id();
    let eur = create(
        &m,
        &key,
        &body(
            &format!("eur-{n}"),
            "cust-1",
            "EUR",
            "150.25",
            &iban_de(fresh_account()),
        ),
    )
    .await;
    let jpy = create(
        &m,
        &key,
        &body(&format!("jpy-{n}"), "cust-1", "JPY", "9000", &iban_de(fresh_account())),
    )
    .await;
    let mut gbp_body = body(&format!("gbp-{n}"), "cust-1", "GBP", "80.00", &iban_de(fresh_account()));
    gbp_body["priority"] = json!("speed");
    let gbp = create(&m, &key, &gbp_body).await;
    for (id, partner, expect) in [
        (&eur, "payouts-stripe", (0, 1)),
        (&jpy, "payouts-wise", (1, 0)),
        (&gbp, "payouts-wise", (1, 0)),
    ] {
        let p = m.payout_in(&key, id, FINAL, WAIT).await;
        assert_eq!(p["status"], "settled", "{id}: {p}");
        assert_eq!(p["partner"], partner, "{id}: {p}");
        assert_eq!(executions(&m, &t, id).await, expect, "{id}: one execution at {partner}");
        assert!(p["beneficiary"].as_str().unwrap().contains("••••"), "masked: {p}");
    }
    let (_, p) = m.read(&key, &format!("/v1/payouts/{jpy}")).await;
    assert_eq!(
        p["amount"],
        json!({"currency": "JPY", "value": "9000", "minor_units": 9000})
    );
    // One terminal outcome per payout on payouts.outcomes.v1.
    let codec = model_codec(&stack);
    let ids = [eur.clone(), jpy.clone(), gbp.clone()];
    let done: Vec<PayoutCompleted> = read_events(
        &stack,
        &codec,
        WAIT,
        Duration::from_secs(2),
        |c: &PayoutCompleted| c.envelope.tenant_id == t,
        |cs| ids.iter().all(|i| cs.iter().any(|c| &c.payout_id == i)),
    )
    .await;
    for id in &ids {
        assert_eq!(done.iter().filter(|c| &c.payout_id == id).count(), 1, "{id}: {done:?}");
    }
    // Another tenant cannot see them.
    let other = key_for(&m, &tenant());
    assert_eq!(m.read(&other, &format!("/v1/payouts/{eur}")).await.0, 404);
}

/// A payout the fraud partner blocks is never paid; one it holds waits for a reviewer, who
/// releases it (paid) or rejects it (never paid); a reviewer's decision needs its own scope.
#[tokio::test]
async fn fraud_blocks_or_holds_for_a_reviewer_who_releases_or_rejects() {
    let _shared = PARTNERS.read().await;
    let m = Mesh::get();
    let t = tenant();
    let key = key_for(&m, &t);
    let n = short_id();
    let blocked = create(
        &m,
        &key,
        &body(
            &format!("blk-{n}"),
            "fraudster",
            "EUR",
            "90.00",
            &iban_de(fresh_account()),
        ),
    )
    .await;
    let released = create(
        &m,
        &key,
        &body(&format!("rel-{n}"), "risky", "EUR", "95.00", &iban_de(fresh_account())),
    )
    .await;
    let rejected = create(
        &m,
        &key,
        &body(&format!("rej-{n}"), "risky", "EUR", "96.00", &iban_de(fresh_account())),
    )
    .await;
    let p = m.payout_in(&key, &blocked, FINAL, WAIT).await;
    assert_eq!(p["status"], "failed");
    assert_eq!(p["failure_code"], "fraud_blocked");
    assert_eq!(executions(&m, &t, &blocked).await, (0, 0), "never paid");
    for id in [&released, &rejected] {
        m.payout_in(&key, id, &["held_for_review"], WAIT).await;
    }
    // The writer's key without the review scope may not decide.
    let writer = m.api_key(&t, "payouts:write,payouts:read");
    let (code, resp) = m
        .post(
            &writer,
            &format!("/v1/payouts/{released}/review"),
            &json!({"release": true}),
        )
        .await;
    assert_eq!(code, 403, "{resp}");
    assert_eq!(executions(&m, &t, &released).await, (0, 0), "held: nothing paid yet");
    let (code, _) = m
        .post(
            &key,
            &format!("/v1/payouts/{released}/review"),
            &json!({"release": true, "note": "known customer"}),
        )
        .await;
    assert_eq!(code, 202);
    let (code, _) = m
        .post(
            &key,
            &format!("/v1/payouts/{rejected}/review"),
            &json!({"release": false}),
        )
        .await;
    assert_eq!(code, 202);
    let p = m.payout_in(&key, &released, FINAL, WAIT).await;
    assert_eq!(p["status"], "settled", "{p}");
    let p = m.payout_in(&key, &rejected, FINAL, WAIT).await;
    assert_eq!(p["failure_code"], "review_rejected", "{p}");
    assert_eq!(
        executions(&m, &t, &released).await.0 + executions(&m, &t, &released).await.1,
        1
    );
    assert_eq!(executions(&m, &t, &rejected).await, (0, 0));
    // A decided payout takes no second decision.
    let (code, _) = m
        .post(
            &key,
            &format!("/v1/payouts/{rejected}/review"),
            &json!({"release": true}),
        )
        .await;
    assert_eq!(code, 409);
}

/// Five payouts to one beneficiary in the window pass; the sixth is refused by the velocity limit
/// (nothing is paid for it), whatever order they are worked in.
#[tokio::test]
async fn the_velocity_limit_per_beneficiary_refuses_the_sixth_payout() {
    let _shared = PARTNERS.read().await;
    let m = Mesh::get();
    let t = tenant();
    let key = key_for(&m, &t);
    let n = short_id();
    let iban = iban_de(fresh_account());
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(
            create(
                &m,
                &key,
                &body(&format!("vel-{n}-{i}"), "cust-v", "EUR", "10.00", &iban),
            )
            .await,
        );
    }
    let mut refused = vec![];
    for id in &ids {
        let p = m.payout_in(&key, id, FINAL, WAIT).await;
        if p["failure_code"] == "velocity_limit" {
            refused.push(id.clone());
            assert_eq!(executions(&m, &t, id).await, (0, 0));
        } else {
            assert_eq!(p["status"], "settled", "{p}");
        }
    }
    assert_eq!(refused.len(), 1, "{refused:?}");
}

/// A partner that refuses before doing anything (503 on every try) has no live payout: the payout
/// goes to the other partner, and is paid there once.
#[tokio::test]
async fn failover_when_the_first_partner_did_nothing() {
    let _alone = PARTNERS.write().await;
    let m = Mesh::get();
    let t = tenant();
    let key = key_for(&m, &t);
    let id = format!("fo-{}", short_id());
    m.sim_post(
        STRIPE,
        "/_sim/faults",
        json!({"matcher": flow(&t, &id), "fault": {"kind": "error", "status": 503}, "times": 20}),
    )
    .await;
    create(
        &m,
        &key,
        &body(&id, "cust-f", "EUR", "42.00", &iban_de(fresh_account())),
    )
    .await;
    let p = m.payout_in(&key, &id, FINAL, WAIT).await;
    assert_eq!(p["status"], "settled", "{p}");
    assert_eq!(p["partner"], "payouts-wise");
    assert_eq!(executions(&m, &t, &id).await, (1, 0));
    m.sim_clear(STRIPE).await;
    tokio::time::sleep(Duration::from_secs(4)).await; // the circuit closes again
}

/// The answer to the payout call is lost (the partner paid) and the adapter's own question fails:
/// the payout is in doubt. The orchestrator asks by our reference after a while, after the
/// partner's idempotency key has expired (a re-send would pay again): the payout is found, never
/// paid twice, never sent elsewhere.
#[tokio::test]
async fn a_payout_in_doubt_is_resolved_by_a_status_query_never_by_a_second_payment() {
    let _alone = PARTNERS.write().await;
    let (stack, m) = (Stack::get(), Mesh::get());
    let t = tenant();
    let key = key_for(&m, &t);
    let id = format!("doubt-{}", short_id());
    let f = flow(&t, &id);
    // First request naming the payout (its creation): done, answer lost. Second (the adapter's
    // search for it): refused.
    m.sim_post(
        STRIPE,
        "/_sim/faults",
        json!({"matcher": f, "fault": {"kind": "hang_after_effect", "ms": 5000}, "times": 1}),
    )
    .await;
    m.sim_post(
        STRIPE,
        "/_sim/faults",
        json!({"matcher": f, "fault": {"kind": "error", "status": 400}, "times": 1}),
    )
    .await;
    create(
        &m,
        &key,
        &body(&id, "cust-d", "EUR", "77.00", &iban_de(fresh_account())),
    )
    .await;
    m.payout_in(&key, &id, &["in_doubt"], WAIT).await;
    // The key expires at the partner while we wait.
    m.sim_post(STRIPE, "/_sim/clock", json!({"advance_hours": 25})).await;
    let p = m.payout_in(&key, &id, FINAL, WAIT).await;
    assert_eq!(p["status"], "settled", "{p}");
    assert_eq!(p["partner"], "payouts-stripe");
    assert_eq!(
        executions(&m, &t, &id).await,
        (0, 1),
        "paid once, at the first partner only"
    );
    let codec = model_codec(&stack);
    let steps: Vec<PayoutStepChanged> = read_events(
        &stack,
        &codec,
        WAIT,
        Duration::from_millis(500),
        |s: &PayoutStepChanged| s.envelope.tenant_id == t,
        |ss| ss.iter().any(|s| s.step == "processing"),
    )
    .await;
    let names: Vec<&str> = steps.iter().map(|s| s.step.as_str()).collect();
    assert!(names.contains(&"in_doubt"), "{names:?}");
    assert!(!names.contains(&"manual_repair"), "{names:?}");
    m.sim_clear(STRIPE).await;
}

/// A payout the product was told is settled comes back from the bank: the flow emits one reversal
/// (compensation), even when the partner's webhook arrives twice, and the payout shows returned.
#[tokio::test]
async fn a_return_after_settlement_emits_one_reversal() {
    let _shared = PARTNERS.read().await;
    let (stack, m) = (Stack::get(), Mesh::get());
    let t = tenant();
    let key = key_for(&m, &t);
    let id = format!("ret-{}", short_id());
    create(
        &m,
        &key,
        &body(&id, "cust-r", "EUR", "64.00", &iban_de(fresh_account())),
    )
    .await;
    let p = m.payout_in(&key, &id, FINAL, WAIT).await;
    assert_eq!(p["status"], "settled", "{p}");
    let reference = p["provider_reference"].as_str().unwrap().to_string();
    m.sim_post(STRIPE, "/_sim/webhooks", json!({"matcher": reference, "copies": 2}))
        .await;
    m.sim_post(
        STRIPE,
        &format!("/_sim/payouts/{reference}/fail"),
        json!({"failure_code": "account_closed"}),
    )
    .await;
    let p = m.payout_in(&key, &id, &["returned"], WAIT).await;
    assert_eq!(p["reversed"], true, "{p}");
    let reversals = reversals_of(&stack, &t).await;
    assert_eq!(reversals.len(), 1, "{reversals:?}");
    assert_eq!(reversals[0].reason.as_deref(), Some("account_closed"));
    assert_eq!(reversals[0].amount.amount_minor, 6400);
    assert_eq!(executions(&m, &t, &id).await, (0, 1));
    // The partner's notices carry its own time: their delay to us is measured.
    assert!(
        m.webhook_delays("payouts-stripe").await >= 1.0,
        "no webhook delay measured"
    );
}

/// A payout held for review can be cancelled (never paid); one with a partner cannot (409); a
/// payout id is one payout: the same body again answers as before, another body is a conflict.
#[tokio::test]
async fn cancel_while_ours_conflict_after_and_one_payout_per_id() {
    let _shared = PARTNERS.read().await;
    let m = Mesh::get();
    let t = tenant();
    let key = key_for(&m, &t);
    let n = short_id();
    let held = create(
        &m,
        &key,
        &body(&format!("c-{n}"), "risky", "EUR", "55.00", &iban_de(fresh_account())),
    )
    .await;
    m.payout_in(&key, &held, &["held_for_review"], WAIT).await;
    let (code, _) = m.post(&key, &format!("/v1/payouts/{held}/cancel"), &json!({})).await;
    assert_eq!(code, 202);
    let p = m.payout_in(&key, &held, FINAL, WAIT).await;
    assert_eq!(p["status"], "cancelled", "{p}");
    assert_eq!(executions(&m, &t, &held).await, (0, 0));

    let iban = iban_de(fresh_account());
    let paid_body = body(&format!("p-{n}"), "cust-c", "EUR", "12.00", &iban);
    let paid = create(&m, &key, &paid_body).await;
    m.payout_in(&key, &paid, FINAL, WAIT).await;
    let (code, resp) = m.post(&key, &format!("/v1/payouts/{paid}/cancel"), &json!({})).await;
    assert_eq!(code, 409, "{resp}");
    let (code, resp) = m.post(&key, "/v1/payouts", &paid_body).await;
    assert_eq!((code, resp["id"].as_str()), (200, Some(paid.as_str())));
    let mut other = paid_body.clone();
    other["amount"]["value"] = json!("13.00");
    assert_eq!(m.post(&key, "/v1/payouts", &other).await.0, 409);
    assert_eq!(executions(&m, &t, &paid).await.1 + executions(&m, &t, &paid).await.0, 1);
}

/// Both fraud partners down: a small payout goes ahead, flagged `fraud_unscreened` (the route's
/// fail-open limit), and is scored later; a larger one fails closed and is never paid.
#[tokio::test]
async fn fraud_partners_down_fail_closed_except_small_payouts_flagged() {
    let _alone = PARTNERS.write().await;
    let m = Mesh::get();
    let t = tenant();
    let key = key_for(&m, &t);
    let n = short_id();
    let (small_c, large_c) = (format!("down-s-{n}"), format!("down-l-{n}"));
    for sim in [SIFT, SEON] {
        for c in [&small_c, &large_c] {
            m.sim_post(
                sim,
                "/_sim/faults",
                json!({"matcher": c, "fault": {"kind": "error", "status": 503}, "times": 3}),
            )
            .await;
        }
    }
    let small = create(
        &m,
        &key,
        &body(&format!("s-{n}"), &small_c, "EUR", "150.00", &iban_de(fresh_account())),
    )
    .await;
    let large = create(
        &m,
        &key,
        &body(&format!("l-{n}"), &large_c, "EUR", "500.00", &iban_de(fresh_account())),
    )
    .await;
    let p = m.payout_in(&key, &small, FINAL, WAIT).await;
    assert_eq!(p["status"], "settled", "{p}");
    assert!(
        p["reasons"].as_array().unwrap().iter().any(|r| r == "fraud_unscreened"),
        "{p}"
    );
    let p = m.payout_in(&key, &large, FINAL, WAIT).await;
    assert_eq!(
        (p["status"].as_str(), p["failure_code"].as_str()),
        (Some("failed"), Some("fraud_unavailable"))
    );
    assert_eq!(executions(&m, &t, &large).await, (0, 0));
    // The unscreened one is scored once the partner is back (the rescore timer).
    let orch = m.orchestrator_db().await;
    let scored = eventually(Duration::from_secs(40), || {
        let orch = orch.clone();
        let f = flow(&t, &small);
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM flow_history WHERE flow_id = $1 AND event IN ('fraud_scored_late', 'fraud_flagged_late')",
            )
            .bind(f)
            .fetch_one(&orch)
            .await
            .unwrap();
            n == 1
        }
    })
    .await;
    assert!(scored, "the payout paid unscreened was scored later");
    m.sim_clear(SIFT).await;
    m.sim_clear(SEON).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
}

/// Bad input at the payout door: every problem named with its field, the account never echoed.
#[tokio::test]
async fn bad_payouts_are_refused_with_every_problem_named() {
    let m = Mesh::get();
    let key = key_for(&m, &tenant());
    let (code, resp) = m
        .post(
            &key,
            "/v1/payouts",
            &json!({"payout_id": "bad id", "amount": {"currency": "JPY", "value": "10.5"},
                "beneficiary": {"name": "X", "account": {"scheme": "iban", "value": "DE89370400440532013001"}},
                "colour": "blue"}),
        )
        .await;
    assert_eq!(code, 422, "{resp}");
    let text = resp.to_string();
    for field in [
        "payout_id",
        "customer_id",
        "amount.value",
        "beneficiary.account",
        "colour",
    ] {
        assert!(text.contains(field), "{field} missing: {text}");
    }
    assert!(!text.contains("0532013001"), "{text}");
    let reader = m.api_key(&tenant(), "onboarding:read");
    assert_eq!(m.post(&reader, "/v1/payouts", &json!({})).await.0, 403);
}

/// A standalone score: decided by the fraud partner, readable by its transaction id.
#[tokio::test]
async fn a_standalone_fraud_score_is_decided() {
    let _shared = PARTNERS.read().await;
    let m = Mesh::get();
    let key = key_for(&m, &tenant());
    let id = format!("tx-{}", short_id());
    let (code, resp) = m
        .post(
            &key,
            "/v1/fraud/scores",
            &json!({"transaction_id": id, "customer_id": "fraudster", "amount": {"currency": "USD", "value": "25.00"},
                "counterparty_id": "merchant-7", "channel": "web"}),
        )
        .await;
    assert_eq!(code, 202, "{resp}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, s) = m.read(&key, &format!("/v1/fraud/scores/{id}")).await;
        if s["status"] == "scored" {
            assert_eq!(s["decision"], "deny", "{s}");
            assert!(s["score"].as_i64().unwrap() >= 700, "{s}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A Wise-shaped transfer the bank sends back weeks after it was paid (the simulator's clock moved
/// three weeks on): bounced back, cancelled, refunded, each announced; the flow emits one reversal
/// with the canonical reason, and the payout shows returned.
#[tokio::test]
async fn a_transfer_bounced_back_weeks_later_is_reversed_once() {
    let _shared = PARTNERS.read().await;
    let (stack, m) = (Stack::get(), Mesh::get());
    let t = tenant();
    let key = key_for(&m, &t);
    let id = format!("bounce-{}", short_id());
    let mut b = body(&id, "cust-b", "GBP", "42.00", &iban_de(fresh_account()));
    b["priority"] = json!("speed");
    create(&m, &key, &b).await;
    let p = m.payout_in(&key, &id, FINAL, WAIT).await;
    assert_eq!(
        (p["status"].as_str(), p["partner"].as_str()),
        (Some("settled"), Some("payouts-wise")),
        "{p}"
    );
    let transfer = p["provider_reference"].as_str().unwrap().to_string();
    m.sim_post(WISE, "/_sim/clock", json!({"advance_hours": 21.0 * 24.0}))
        .await;
    m.sim_post(WISE, &format!("/_sim/transfers/{transfer}/bounce"), json!({}))
        .await;
    let p = m.payout_in(&key, &id, &["returned"], WAIT).await;
    assert_eq!(p["reversed"], true, "{p}");
    let reversals = reversals_of(&stack, &t).await;
    assert_eq!(reversals.len(), 1, "three notices, one reversal: {reversals:?}");
    assert_eq!(reversals[0].reason.as_deref(), Some("bounced"));
    assert_eq!(reversals[0].amount.amount_minor, 4200);
    assert_eq!(executions(&m, &t, &id).await, (1, 0));
}

/// A payout its partner has not sent yet (held there) is cancelled at the partner: Stripe-shaped
/// while pending, Wise-shaped while processing. It shows cancelled, its velocity is given back, and
/// it never goes to another partner.
#[tokio::test]
async fn a_payout_not_yet_sent_is_cancelled_at_its_partner() {
    let _shared = PARTNERS.read().await;
    let m = Mesh::get();
    let t = tenant();
    let key = key_for(&m, &t);
    for (priority, sim, partner) in [("cost", STRIPE, "payouts-stripe"), ("speed", WISE, "payouts-wise")] {
        let id = format!("cx-{priority}-{}", short_id());
        m.sim_post(sim, "/_sim/hold", json!({"matcher": flow(&t, &id)})).await;
        let mut b = body(&id, "cust-x", "EUR", "33.00", &iban_de(fresh_account()));
        b["priority"] = json!(priority);
        create(&m, &key, &b).await;
        let p = m.payout_in(&key, &id, &["processing"], WAIT).await;
        assert_eq!(p["partner"], partner, "{p}");
        let (code, resp) = m.post(&key, &format!("/v1/payouts/{id}/cancel"), &json!({})).await;
        assert_eq!(code, 202, "{resp}");
        let p = m.payout_in(&key, &id, FINAL, WAIT).await;
        assert_eq!(
            (p["status"].as_str(), p["failure_code"].as_str()),
            (Some("cancelled"), Some("cancelled")),
            "{p}"
        );
        let ledger = m.ledger(sim, &flow(&t, &id)).await;
        assert_eq!(
            (ledger.get("payout").copied(), ledger.get("cancel").copied()),
            (Some(1), Some(1)),
            "{partner}: created once, cancelled once"
        );
        let (w, s) = executions(&m, &t, &id).await;
        assert_eq!(w + s, 1, "no second partner");
    }
}
