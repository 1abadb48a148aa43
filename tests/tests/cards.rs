//! Cards through the running mesh (`make services`): cards issued at the Marqeta- and
//! Lithic-shaped simulators through `/v1/cards`, authorizations asked by the simulators of the
//! cards adapter's real-time endpoint, clearings and reversals by their webhooks, the outcomes read
//! back through the ingress; failover, issues in doubt, our own store too slow to answer, and bad
//! input at each door.

// Amounts in minor units are written <units>_<cents>.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::inconsistent_digit_grouping)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::*;

const MARQETA: &str = "http://127.0.0.1:9309";
const LITHIC: &str = "http://127.0.0.1:9310";
/// Tenants routed to each processor (routing.toml: the Lithic program matches its tenant).
const ON_MARQETA: &str = "tenant-cards";
const ON_LITHIC: &str = "tenant-lithic-program";

fn issue(card_id: &str, family: &str) -> Value {
    json!({"card_id": card_id, "cardholder_id": format!("cust-{card_id}"),
        "cardholder": {"given_name": "Grace", "family_name": family},
        "form_factor": "virtual", "funding": {"currency": "USD", "value": "100.00"},
        "controls": {"per_transaction": {"currency": "USD", "value": "50.00"}, "blocked_mccs": ["7995"]}})
}

/// Waits until the card's status is `status`; returns it.
async fn card_in(m: &Mesh, key: &str, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = m.read(key, &format!("/v1/cards/{id}")).await;
        if code == 200 && body["status"] == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "card {id} not {status} within 30 s: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Waits until the card shows `n` transactions; returns them, oldest first.
async fn transactions(m: &Mesh, key: &str, id: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = m.read(key, &format!("/v1/cards/{id}")).await;
        let mut t = body["transactions"].as_array().cloned().unwrap_or_default();
        if t.len() >= n {
            t.reverse();
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "card {id}: {} of {n} transactions within 30 s: {body}",
            t.len()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        switchyard_vendors::signing::b64(format!("{user}:{password}").as_bytes())
    )
}

/// A purchase at the processor's simulator (which asks the adapter); its own answer.
async fn purchase(m: &Mesh, sim: &str, token: &str, cents: i64, mcc: &str) -> Value {
    let req = if sim == MARQETA {
        m.http
            .post(format!("{MARQETA}/v3/simulate/authorization"))
            .header(
                "authorization",
                basic(&m.var("MARQETA_APPLICATION_TOKEN"), &m.var("MARQETA_ADMIN_TOKEN")),
            )
            .json(&json!({"card_token": token, "amount": cents as f64 / 100.0,
                "card_acceptor": {"mcc": mcc, "name": "Corner Store", "country_code": "USA"}}))
    } else {
        m.http
            .post(format!("{LITHIC}/v1/simulate/authorize"))
            .header("authorization", m.var("LITHIC_API_KEY"))
            .json(
                &json!({"card_token": token, "amount": cents, "mcc": mcc, "descriptor": "CORNER STORE",
                "merchant_country": "USA"}),
            )
    };
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{sim}: {}", r.status());
    r.json().await.unwrap()
}

fn transaction_id(sim: &str, answer: &Value) -> String {
    if sim == MARQETA {
        answer["transaction"]["token"].as_str().unwrap().to_string()
    } else {
        answer["token"].as_str().unwrap().to_string()
    }
}

async fn settle(m: &Mesh, sim: &str, txn: &str, cents: i64, clear: bool) {
    let r = if sim == MARQETA {
        let path = if clear { "clearing" } else { "reversal" };
        m.http
            .post(format!("{MARQETA}/v3/simulate/{path}"))
            .header(
                "authorization",
                basic(&m.var("MARQETA_APPLICATION_TOKEN"), &m.var("MARQETA_ADMIN_TOKEN")),
            )
            .json(&json!({"original_transaction_token": txn, "amount": cents as f64 / 100.0}))
    } else {
        let path = if clear { "clearing" } else { "void" };
        m.http
            .post(format!("{LITHIC}/v1/simulate/{path}"))
            .header("authorization", m.var("LITHIC_API_KEY"))
            .json(&json!({"token": txn, "amount": cents}))
    };
    let r = r.send().await.unwrap();
    assert!(r.status().is_success(), "{sim}: {}", r.status());
}

async fn available(m: &Mesh, token: &str) -> i64 {
    let db = m.service_db("CARDS_ADAPTER_DATABASE_URL").await;
    sqlx::query_scalar("SELECT available_minor FROM card_accounts WHERE card_token = $1")
        .bind(token)
        .fetch_one(&db)
        .await
        .unwrap()
}

/// On each processor: a card is issued once, decided from its controls and money (approved,
/// over its per-purchase limit, a blocked merchant category), cleared at a different amount and
/// reversed; frozen, a purchase is declined by the processor itself and products hear of it; the
/// money held follows every step.
#[tokio::test]
async fn a_card_is_issued_and_used_on_each_processor() {
    let m = Mesh::get();
    for (tenant, sim, partner) in [
        (ON_MARQETA, MARQETA, "cards-marqeta"),
        (ON_LITHIC, LITHIC, "cards-lithic"),
    ] {
        let key = m.api_key(tenant, "cards:write,cards:read");
        let id = format!("card-{}", short_id());
        let (code, body) = m.post(&key, "/v1/cards", &issue(&id, "Hopper")).await;
        assert_eq!(code, 202, "{body}");
        let card = card_in(&m, &key, &id, "active").await;
        assert_eq!(card["partner"], partner);
        assert_eq!(card["last4"].as_str().map(str::len), Some(4));
        let token = card["processor_token"].as_str().unwrap().to_string();
        if sim == MARQETA {
            assert_eq!(m.ledger(sim, &id).await.get("card"), Some(&1), "issued once");
        }

        let coffee = purchase(&m, sim, &token, 12_50, "5814").await;
        let big = purchase(&m, sim, &token, 60_00, "5814").await;
        let casino = purchase(&m, sim, &token, 5_00, "7995").await;
        let lunch = purchase(&m, sim, &token, 20_00, "5812").await;
        let t = transactions(&m, &key, &id, 4).await;
        let decided: Vec<(bool, Option<&str>)> = t
            .iter()
            .map(|x| (x["approved"].as_bool().unwrap(), x["decline_reason"].as_str()))
            .collect();
        assert_eq!(
            decided,
            [
                (true, None),
                (false, Some("PER_TRANSACTION_LIMIT")),
                (false, Some("MERCHANT_CATEGORY_BLOCKED")),
                (true, None)
            ],
            "{t:?}"
        );
        assert!(t.iter().all(|x| x["kind"] == "authorization" && x["fallback"] == false));
        assert!(
            t.iter().all(|x| x["decision_ms"].as_i64().is_some()),
            "each decision's latency"
        );
        assert_eq!(available(&m, &token).await, 100_00 - 12_50 - 20_00);

        settle(&m, sim, &transaction_id(sim, &coffee), 14_25, true).await;
        settle(&m, sim, &transaction_id(sim, &lunch), 20_00, false).await;
        let t = transactions(&m, &key, &id, 6).await;
        let kinds: Vec<&str> = t[4..].iter().map(|x| x["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"clearing") && kinds.contains(&"reversal"), "{kinds:?}");
        // The processor's notices carry its own time: their delay to us is measured.
        assert!(
            m.webhook_delays(partner).await >= 2.0,
            "{partner}: no webhook delay measured"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while available(&m, &token).await != 100_00 - 14_25 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "hold not settled: {}",
                available(&m, &token).await
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        // The declines held nothing, and neither did their processor's own answer.
        let _ = (big, casino);

        let (code, _) = m
            .post(&key, &format!("/v1/cards/{id}/freeze"), &json!({"reason": "lost"}))
            .await;
        assert_eq!(code, 202);
        card_in(&m, &key, &id, "frozen").await;
        let refused = purchase(&m, sim, &token, 1_00, "5814").await;
        let state = if sim == MARQETA {
            refused["transaction"]["state"].clone()
        } else {
            refused["result"].clone()
        };
        assert_ne!(state, json!("PENDING"), "{refused}");
        assert_ne!(state, json!("APPROVED"), "{refused}");
        let t = transactions(&m, &key, &id, 7).await;
        let last = t.last().unwrap();
        assert_eq!(last["approved"], false, "{last}");
        assert_eq!(available(&m, &token).await, 100_00 - 14_25);
        m.post(&key, &format!("/v1/cards/{id}/unfreeze"), &json!({})).await;
        card_in(&m, &key, &id, "active").await;
        m.post(&key, &format!("/v1/cards/{id}/terminate"), &json!({})).await;
        card_in(&m, &key, &id, "terminated").await;
        let (code, body) = m.post(&key, &format!("/v1/cards/{id}/unfreeze"), &json!({})).await;
        assert_eq!(code, 409, "{body}");
    }
}

/// The first processor refusing every attempt (503) leaves no live card there: the card is issued
/// at the second, once, and stays there.
#[tokio::test]
async fn an_issue_fails_over_when_the_first_processor_is_down() {
    let m = Mesh::get();
    let key = m.api_key(ON_MARQETA, "cards:write,cards:read");
    let id = format!("card-fo-{}", short_id());
    m.sim_post(
        MARQETA,
        "/_sim/faults",
        json!({"matcher": id.clone(), "fault": {"kind": "error", "status": 503}}),
    )
    .await;
    let (code, _) = m.post(&key, "/v1/cards", &issue(&id, "Failover")).await;
    assert_eq!(code, 202);
    let card = card_in(&m, &key, &id, "active").await;
    assert_eq!(card["partner"], "cards-lithic");
    assert_eq!(
        m.ledger(MARQETA, &id).await.get("card"),
        None,
        "nothing issued at the first"
    );
    let token = card["processor_token"].as_str().unwrap();
    let r = m
        .http
        .get(format!("{LITHIC}/v1/cards/{token}"))
        .header("authorization", m.var("LITHIC_API_KEY"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // Later operations go to the issuer, whatever the route says.
    m.post(&key, &format!("/v1/cards/{id}/freeze"), &json!({})).await;
    card_in(&m, &key, &id, "frozen").await;
    let _ = m
        .http
        .delete(format!("{MARQETA}/_sim/faults?matcher={id}"))
        .send()
        .await;
}

/// An issue whose answer is lost after the processor made the card (an error after the effect, a
/// hang past our timeout) is found by our key, never issued twice: at Marqeta by the card's token,
/// at Lithic (no idempotency) by the memo in its card list.
#[tokio::test]
async fn an_issue_in_doubt_is_found_not_repeated() {
    let m = Mesh::get();
    // Marqeta: the card is made, then the answer hangs past the adapter's 3 s timeout.
    let key = m.api_key(ON_MARQETA, "cards:write,cards:read");
    let id = format!("card-doubt-{}", short_id());
    m.sim_post(
        MARQETA,
        "/_sim/faults",
        json!({"matcher": id.clone(), "fault": {"kind": "hang_after_effect", "ms": 4000}, "times": 1}),
    )
    .await;
    let mut body = issue(&id, "Doubt");
    m.post(&key, "/v1/cards", &body).await;
    card_in(&m, &key, &id, "active").await;
    assert_eq!(m.ledger(MARQETA, &id).await.get("card"), Some(&1));
    // Lithic: the card is made, then a 500 comes back instead of it.
    let key = m.api_key(ON_LITHIC, "cards:write,cards:read");
    let id = format!("card-doubt-{}", short_id());
    let product = format!("prod-{}", short_id());
    m.sim_post(
        LITHIC,
        "/_sim/faults",
        json!({"matcher": product.clone(), "fault": {"kind": "error_after_effect", "status": 500}, "times": 1}),
    )
    .await;
    body = issue(&id, "Doubt");
    body["product"] = json!(product);
    m.post(&key, "/v1/cards", &body).await;
    let card = card_in(&m, &key, &id, "active").await;
    assert_eq!(
        card["partner"], "cards-lithic",
        "in doubt: never sent to another processor"
    );
    assert_eq!(
        m.ledger(LITHIC, &product).await.get("card"),
        Some(&1),
        "one card, found by its memo"
    );
}

/// Our own store too slow to answer within the deadline (the card's row locked): the fallback
/// declines at once, and the store ends up saying so: the rules' approval that commits later is
/// undone, nothing stays held, and a processor asking again hears the same.
#[tokio::test]
async fn the_fallback_answers_when_our_store_is_too_slow() {
    let m = Mesh::get();
    let key = m.api_key(ON_MARQETA, "cards:write,cards:read");
    let id = format!("card-slow-{}", short_id());
    m.post(&key, "/v1/cards", &issue(&id, "Slow")).await;
    let card = card_in(&m, &key, &id, "active").await;
    let token = card["processor_token"].as_str().unwrap().to_string();
    let db = m.service_db("CARDS_ADAPTER_DATABASE_URL").await;
    let mut lock = db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM card_accounts WHERE card_token = $1 FOR UPDATE")
        .bind(&token)
        .execute(&mut *lock)
        .await
        .unwrap();
    let answer = purchase(&m, MARQETA, &token, 10_00, "5814").await;
    // Held long enough for the deadline to pass, then let go: the rules' decision commits late.
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.rollback().await.unwrap();
    assert_eq!(answer["transaction"]["state"], "DECLINED", "{answer}");
    assert_eq!(
        answer["transaction"]["gpa_order"]["jit_funding"]["decline_reason"], "TRANSACTION_NOT_PERMITTED",
        "our UNAVAILABLE, in the processor's terms"
    );
    let t = transactions(&m, &key, &id, 1).await;
    assert_eq!(t[0]["fallback"], true, "{t:?}");
    assert_eq!(t[0]["decline_reason"], "UNAVAILABLE");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let row: (String, String) =
            sqlx::query_as("SELECT decision, status FROM card_authorizations WHERE card_token = $1")
                .bind(&token)
                .fetch_one(&db)
                .await
                .unwrap();
        if row == ("DECLINED".to_string(), "declined".to_string()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "record says {row:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(
        available(&m, &token).await,
        100_00,
        "nothing held for a declined purchase"
    );
}

/// Bad input at every door gets a clear answer and reaches nothing: a card request with a card
/// number or bad controls; another tenant's card; a forged authorization request; a forged webhook.
#[tokio::test]
async fn bad_input_is_refused_at_every_door() {
    let m = Mesh::get();
    let key = m.api_key(ON_MARQETA, "cards:write,cards:read");
    let mut body = issue("card-bad 1", "Bad");
    body["pan"] = json!("4111111111111111");
    body["controls"]["blocked_mccs"] = json!(["79"]);
    let (code, answer) = m.post(&key, "/v1/cards", &body).await;
    assert_eq!(code, 422, "{answer}");
    let text = answer.to_string();
    for field in ["card_id", "pan", "controls.blocked_mccs.0"] {
        assert!(text.contains(field), "{field}: {text}");
    }
    assert!(!text.contains("4111111111111111"), "the number is never echoed");
    let (code, _) = m.read(&key, "/v1/cards/no-such-card").await;
    assert_eq!(code, 404);
    let id = format!("card-mine-{}", short_id());
    m.post(&key, "/v1/cards", &issue(&id, "Mine")).await;
    let other = m.api_key("tenant-cards-other", "cards:write,cards:read");
    assert_eq!(
        m.read(&other, &format!("/v1/cards/{id}")).await.0,
        404,
        "another tenant's card"
    );
    assert_eq!(
        m.post(&other, &format!("/v1/cards/{id}/freeze"), &json!({})).await.0,
        404
    );
    let read_only = m.api_key(ON_MARQETA, "cards:read");
    assert_eq!(m.post(&read_only, "/v1/cards", &issue("card-x", "X")).await.0, 403);
    // Same card id, other body: a conflict; same body: the first answer.
    assert_eq!(m.post(&key, "/v1/cards", &issue(&id, "Mine")).await.0, 200);
    assert_eq!(m.post(&key, "/v1/cards", &issue(&id, "Other")).await.0, 409);

    let adapter = m.var("CARDS_ADAPTER_URL");
    let forged = m
        .http
        .post(format!("{adapter}/authorizations/cards-marqeta"))
        .header("authorization", basic("switchyard", "not-the-funding-source-password"))
        .body(r#"{"type":"authorization","token":"t","card_token":"c","amount":1,"gpa_order":{"jit_funding":{"method":"pgfs.authorization"}},"card_acceptor":{"mcc":"5814"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let unsigned = m
        .http
        .post(format!("{adapter}/authorizations/cards-lithic"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    let hook = m
        .http
        .post(format!("{}/webhooks/cards-marqeta", m.var("WEBHOOK_NORMALIZER_URL")))
        .header("authorization", basic("switchyard", "guess-guess-guess-guess"))
        .body(r#"{"transactions":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status().as_u16(), 401);
}

/// A card goes to a customer the tenant's onboarding approved: one rejected (a sanctioned name)
/// is refused at the door, one approved gets their card.
#[tokio::test]
async fn a_card_is_issued_only_to_an_approved_customer() {
    let m = Mesh::get();
    let key = m.api_key(ON_MARQETA, "onboarding:write,onboarding:read,cards:write,cards:read");
    let run = short_id();
    let refused = format!("app-no-{run}");
    let approved = format!("app-ok-{run}");
    let id_no = m
        .start(
            &key,
            &applicant(&refused, &format!("Cx{run}"), "Sanctionov", "EU", "LOW"),
        )
        .await;
    let id_ok = m
        .start(
            &key,
            &applicant(&approved, &format!("Cy{run}"), "Clearwater", "EU", "LOW"),
        )
        .await;
    assert_eq!(
        m.decided(&key, &id_no, Duration::from_secs(40)).await["decision"],
        "rejected"
    );
    assert_eq!(
        m.decided(&key, &id_ok, Duration::from_secs(40)).await["decision"],
        "approved"
    );
    let mut body = issue(&format!("card-{run}-no"), "Sanctionov");
    body["cardholder_id"] = json!(refused);
    let (code, answer) = m.post(&key, "/v1/cards", &body).await;
    assert_eq!(code, 422, "{answer}");
    assert!(answer.to_string().contains("rejected"), "{answer}");
    let mut body = issue(&format!("card-{run}-ok"), "Clearwater");
    body["cardholder_id"] = json!(approved);
    let (code, answer) = m.post(&key, "/v1/cards", &body).await;
    assert_eq!(code, 202, "{answer}");
}

/// A change made at the processor itself (its console, its fraud rules) becomes the card's state
/// in the flow and in the adapter's decision store alike: a card frozen through us and reinstated
/// at the processor is approved again by our real-time answer (not declined as frozen), and one
/// suspended there is shown frozen. The processor's notice only prompts a read of the card there.
#[tokio::test]
async fn a_change_made_at_the_processor_is_the_cards_state_everywhere() {
    let m = Mesh::get();
    for (tenant, sim) in [(ON_MARQETA, MARQETA), (ON_LITHIC, LITHIC)] {
        let key = m.api_key(tenant, "cards:write,cards:read");
        let id = format!("card-{}", short_id());
        let (code, body) = m.post(&key, "/v1/cards", &issue(&id, "Lovelace")).await;
        assert_eq!(code, 202, "{body}");
        let card = card_in(&m, &key, &id, "active").await;
        let token = card["processor_token"].as_str().unwrap().to_string();
        let (code, _) = m
            .post(&key, &format!("/v1/cards/{id}/freeze"), &json!({"reason": "misplaced"}))
            .await;
        assert_eq!(code, 202);
        card_in(&m, &key, &id, "frozen").await;

        // The processor's console, not us: reinstated, then suspended.
        let at_processor = |state: &str| {
            if sim == MARQETA {
                m.http
                    .post(format!("{MARQETA}/v3/cardtransitions"))
                    .header(
                        "authorization",
                        basic(&m.var("MARQETA_APPLICATION_TOKEN"), &m.var("MARQETA_ADMIN_TOKEN")),
                    )
                    .json(&json!({"card_token": token, "channel": "ADMIN", "reason_code": "00",
                        "state": if state == "open" { "ACTIVE" } else { "SUSPENDED" }}))
            } else {
                m.http
                    .patch(format!("{LITHIC}/v1/cards/{token}"))
                    .header("authorization", m.var("LITHIC_API_KEY"))
                    .json(&json!({"state": if state == "open" { "OPEN" } else { "PAUSED" }}))
            }
        };
        let r = at_processor("open").send().await.unwrap();
        assert!(r.status().is_success(), "{sim}: {}", r.status());
        card_in(&m, &key, &id, "active").await;
        purchase(&m, sim, &token, 7_50, "5814").await;
        let t = transactions(&m, &key, &id, 1).await;
        let last = t.last().unwrap();
        assert_eq!(
            last["approved"], true,
            "{sim}: decided as the processor has the card: {last}"
        );
        assert_eq!(last["fallback"], false, "{last}");
        assert_eq!(available(&m, &token).await, 100_00 - 7_50);

        let r = at_processor("suspend").send().await.unwrap();
        assert!(r.status().is_success(), "{sim}: {}", r.status());
        card_in(&m, &key, &id, "frozen").await;
        let db = m.service_db("CARDS_ADAPTER_DATABASE_URL").await;
        let held: String = sqlx::query_scalar("SELECT state FROM card_accounts WHERE card_token = $1")
            .bind(&token)
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(held.to_ascii_lowercase(), "frozen", "{sim}: the decision store follows");
    }
}

/// The processor reports a change of its own but cannot be read just then (every attempt of the
/// read refused): the card is read again by its timer, and the change is taken then.
#[tokio::test]
async fn a_change_the_processor_could_not_be_asked_about_is_read_again_later() {
    let m = Mesh::get();
    let key = m.api_key(ON_LITHIC, "cards:write,cards:read");
    let id = format!("card-{}", short_id());
    let (code, body) = m.post(&key, "/v1/cards", &issue(&id, "Noether")).await;
    assert_eq!(code, 202, "{body}");
    let card = card_in(&m, &key, &id, "active").await;
    let token = card["processor_token"].as_str().unwrap().to_string();
    m.post(&key, &format!("/v1/cards/{id}/freeze"), &json!({})).await;
    card_in(&m, &key, &id, "frozen").await;

    // One read's every attempt (three) refused: fewer than open the processor's circuit.
    m.sim_post(
        LITHIC,
        "/_sim/faults",
        json!({"matcher": format!("GET /v1/cards/{token}"), "fault": {"kind": "error", "status": 503}, "times": 3}),
    )
    .await;
    let r = m
        .http
        .patch(format!("{LITHIC}/v1/cards/{token}"))
        .header("authorization", m.var("LITHIC_API_KEY"))
        .json(&json!({"state": "OPEN"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    card_in(&m, &key, &id, "active").await;
    let db = m.service_db("ORCHESTRATOR_DATABASE_URL").await;
    let history: Vec<String> = sqlx::query_scalar("SELECT event FROM flow_history WHERE flow_id = $1 ORDER BY id")
        .bind(switchyard_model::events::cards::flow_id(ON_LITHIC, &id))
        .fetch_all(&db)
        .await
        .unwrap();
    let failed = history.iter().position(|e| e == "card_refresh_failed");
    let taken = history.iter().rposition(|e| e == "card_state_changed_by_processor");
    assert!(
        matches!((failed, taken), (Some(f), Some(t)) if f < t),
        "a failed read, then the change taken: {history:?}"
    );
    purchase(&m, LITHIC, &token, 4_00, "5814").await;
    let t = transactions(&m, &key, &id, 1).await;
    assert_eq!(t.last().unwrap()["approved"], true, "{t:?}");
}
