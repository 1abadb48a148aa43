//! Marqeta-shaped card issuing simulator (Core API v3 under `/v3`, HTTP Basic with the application
//! token and the admin access token). Users and cards take a client-chosen `token`: the same token
//! with the same payload answers the object already made, with another payload 409 (`409001`).
//! Cards from a product whose token ends in `-virtual` are ACTIVE at once (DIGITALLY_PRESENTED);
//! others are UNACTIVATED (ISSUED) until a card transition activates them. No card number is ever
//! made or shown: only `last_four`.
//!
//! The sandbox's `POST /v3/simulate/authorization` (by `card_token`, amount a decimal number) asks
//! the program's Gateway JIT Funding endpoint (`--gateway-url`, Basic auth with the funding
//! source's credentials) and waits `--decision-timeout-ms` (3000 as Marqeta); no answer in time (or
//! an error) and the stand-in rule decides (`--stand-in decline|approve`). `simulate/clearing` and
//! `simulate/reversal` settle or release an authorization (`original_transaction_token`, amount).
//! Every transaction and card transition is announced by webhook: up to 10 events a POST grouped by
//! kind, Basic auth, `X-Marqeta-Signature` hex HMAC-SHA1 of the body. Effects in the ledger:
//! `user`, `card` (keyed by token, the card id in its
//! metadata and the product), `transition`, `authorization`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use switchyard_vendors::signing::{Alg, b64, hex, hmac};

use crate::sim::{Sim, parse_json, with_faults};

#[derive(Clone)]
pub struct Config {
    pub application_token: String,
    pub admin_token: String,
    /// What we present to the program's gateway and webhook endpoint.
    pub callback_username: String,
    pub callback_password: String,
    pub webhook_secret: String,
    pub webhook_url: String,
    pub gateway_url: String,
    pub decision_timeout: Duration,
    pub stand_in_approves: bool,
    pub state_file: String,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Book {
    users: Vec<Value>,
    cards: Vec<Value>,
    transitions: Vec<Value>,
    transactions: Vec<Value>,
}

#[derive(Clone)]
struct App {
    sim: Sim,
    cfg: Config,
    book: Arc<Mutex<Book>>,
    outgoing: Arc<Mutex<Vec<(&'static str, Value)>>>,
}

pub fn error_body(status: u16) -> Value {
    let (code, message) = match status {
        400 => ("400000", "Malformed request"),
        401 => ("401000", "Invalid application token or admin access token"),
        404 => ("404000", "Not found"),
        429 => ("429000", "Too many requests"),
        _ => ("500000", "Internal server error"),
    };
    json!({"error_code": code, "error_message": message})
}

fn error(status: u16, code: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(json!({"error_code": code, "error_message": message})),
    )
        .into_response()
}

pub fn router(sim: Sim, cfg: Config) -> Router {
    let app = App {
        sim: sim.clone(),
        cfg,
        book: Arc::default(),
        outgoing: Arc::default(),
    };
    crate::sim::persist(&app.cfg.state_file, app.book.clone());
    let api = Router::new()
        .route("/v3/users", post(create_user))
        .route("/v3/users/{token}", get(show_user))
        .route("/v3/cards", post(create_card))
        .route("/v3/cards/{token}", get(show_card))
        .route("/v3/cardtransitions", post(transition))
        .route("/v3/simulate/authorization", post(authorization))
        .route("/v3/simulate/clearing", post(clearing))
        .route("/v3/simulate/reversal", post(reversal))
        .with_state(app);
    with_faults(api, sim, error_body)
}

fn authorised(app: &App, h: &HeaderMap) -> Result<(), Response> {
    let want = format!(
        "Basic {}",
        b64(format!("{}:{}", app.cfg.application_token, app.cfg.admin_token).as_bytes())
    );
    match h.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == want => Ok(()),
        _ => Err(error(401, "401000", "Invalid application token or admin access token")),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Finds an object by token, or makes it: the same token and payload answer the first object; a
/// different payload is a conflict.
fn idempotent(
    list: &mut Vec<Value>,
    token: &str,
    request: &Value,
    make: impl FnOnce() -> Value,
) -> Result<(Value, bool), Response> {
    if let Some(existing) = list.iter().find(|o| o["token"] == token) {
        if existing["_request"] != *request {
            return Err(error(
                409,
                "409001",
                "Token already associated with a different payload",
            ));
        }
        return Ok((existing.clone(), false));
    }
    let mut made = make();
    made["_request"] = request.clone();
    list.push(made.clone());
    Ok((made, true))
}

fn public(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("_request");
    }
    v
}

async fn create_user(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let token = req["token"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if token.len() > 36 {
        return error(400, "400601", "token: size must be between 1 and 36");
    }
    let made = app.book.lock().map_err(|_| ()).map(|mut b| {
        idempotent(&mut b.users, &token, &req, || {
            json!({"token": token, "active": req["active"].as_bool().unwrap_or(true),
                "first_name": req["first_name"], "last_name": req["last_name"], "status": "ACTIVE",
                "uses_parent_account": false, "created_time": now(), "last_modified_time": now()})
        })
    });
    match made {
        Ok(Ok((user, created))) => {
            if created {
                app.sim.record("user", &token);
            }
            (StatusCode::CREATED, Json(public(user))).into_response()
        }
        Ok(Err(r)) => r,
        Err(()) => error(500, "500000", "Internal server error"),
    }
}

async fn show_user(State(app): State<App>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let found = app
        .book
        .lock()
        .ok()
        .and_then(|b| b.users.iter().find(|u| u["token"] == token).cloned());
    match found {
        Some(u) => Json(public(u)).into_response(),
        None => error(404, "404041", "Cannot find user"),
    }
}

fn last_four(token: &str) -> String {
    let n = token
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    format!("{:04}", n % 10_000)
}

async fn create_card(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (Some(user), Some(product)) = (req["user_token"].as_str(), req["card_product_token"].as_str()) else {
        return error(400, "400300", "user_token and card_product_token are required");
    };
    let token = req["token"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if token.len() > 36 {
        return error(400, "400601", "token: size must be between 1 and 36");
    }
    let virtual_card = product.ends_with("-virtual");
    let made = app.book.lock().map_err(|_| ()).map(|mut b| {
        if !b.users.iter().any(|u| u["token"] == user) {
            return Err(error(400, "400061", "User not found"));
        }
        idempotent(&mut b.cards, &token, &req, || {
            json!({"token": token, "user_token": user, "card_product_token": product,
                "last_four": last_four(&token), "expiration": "1130", "pin_is_set": false,
                "state": if virtual_card { "ACTIVE" } else { "UNACTIVATED" },
                "state_reason": "New card",
                "fulfillment_status": if virtual_card { "DIGITALLY_PRESENTED" } else { "ISSUED" },
                "instrument_type": if virtual_card { "VIRTUAL_PAN" } else { "PHYSICAL_MSR" },
                "metadata": req["metadata"], "available_minor": 0,
                "created_time": now(), "last_modified_time": now()})
        })
    });
    match made {
        Ok(Ok((card, created))) => {
            if created {
                // Keyed by the token, the card id in its metadata and the product: tests count a
                // card by any of them.
                let key = format!(
                    "{token} {} {}",
                    req["metadata"]["card_id"].as_str().unwrap_or(""),
                    product
                );
                app.sim.record("card", &key);
            }
            (StatusCode::CREATED, Json(card_view(card))).into_response()
        }
        Ok(Err(r)) => r,
        Err(()) => error(500, "500000", "Internal server error"),
    }
}

fn card_view(card: Value) -> Value {
    let mut v = public(card);
    if let Some(m) = v.as_object_mut() {
        m.remove("available_minor");
    }
    v
}

async fn show_card(State(app): State<App>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let found = app
        .book
        .lock()
        .ok()
        .and_then(|b| b.cards.iter().find(|c| c["token"] == token).cloned());
    match found {
        Some(c) => Json(card_view(c)).into_response(),
        None => error(404, "404070", "Cannot find card"),
    }
}

async fn transition(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (Some(card_token), Some(target), Some(_channel)) = (
        req["card_token"].as_str(),
        req["state"].as_str(),
        req["channel"].as_str(),
    ) else {
        return error(400, "400300", "card_token, state and channel are required");
    };
    if !["ACTIVE", "SUSPENDED", "TERMINATED"].contains(&target) {
        return error(400, "400302", "state must be ACTIVE, SUSPENDED or TERMINATED");
    }
    let token = req["token"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let done = app.book.lock().map_err(|_| ()).map(|mut b| {
        let Some(card) = b.cards.iter().find(|c| c["token"] == card_token).cloned() else {
            return Err(error(400, "400070", "Card not found"));
        };
        if b.transitions.iter().all(|t| t["token"] != token) && card["state"] == "TERMINATED" {
            return Err(error(400, "400305", "Card is terminated; no further transitions"));
        }
        let kind = match (card["state"].as_str(), target) {
            (Some("UNACTIVATED"), "ACTIVE") => "state.activated",
            (_, "ACTIVE") => "state.reinstated",
            (_, "SUSPENDED") => "state.suspended",
            _ => "state.terminated",
        };
        let (t, created) = idempotent(&mut b.transitions, &token, &req, || {
            json!({"token": token, "card_token": card_token, "user_token": card["user_token"],
                "state": target, "channel": req["channel"], "reason_code": req["reason_code"],
                "type": kind, "created_time": now()})
        })?;
        if created && let Some(c) = b.cards.iter_mut().find(|c| c["token"] == card_token) {
            c["state"] = json!(target);
            c["last_modified_time"] = json!(now());
        }
        Ok((t, created))
    });
    match done {
        Ok(Ok((t, created))) => {
            if created {
                app.sim.record("transition", &token);
                queue(&app, "cardtransitions", public(t.clone()));
            }
            (StatusCode::CREATED, Json(public(t))).into_response()
        }
        Ok(Err(r)) => r,
        Err(()) => error(500, "500000", "Internal server error"),
    }
}

/// Queues a webhook event; a delivery goes out 100 ms after the first event queued, with up to 10.
fn queue(app: &App, group: &'static str, event: Value) {
    if app.cfg.webhook_url.is_empty() {
        return;
    }
    let first = app
        .outgoing
        .lock()
        .map(|mut q| {
            q.push((group, event));
            q.len() == 1
        })
        .unwrap_or(false);
    if first {
        let app = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            loop {
                let batch: Vec<(&'static str, Value)> = match app.outgoing.lock() {
                    Ok(mut q) if !q.is_empty() => {
                        let n = q.len().min(10);
                        q.drain(..n).collect()
                    }
                    _ => break,
                };
                let mut body = json!({});
                let mut key = String::new();
                for (group, e) in batch {
                    key.push_str(e["card_token"].as_str().unwrap_or_default());
                    key.push(' ');
                    match body[group].as_array_mut() {
                        Some(list) => list.push(e),
                        None => body[group] = json!([e]),
                    }
                }
                let text = body.to_string();
                let sig = hex(&hmac(Alg::Sha1, app.cfg.webhook_secret.as_bytes(), text.as_bytes()));
                let auth = format!(
                    "Basic {}",
                    b64(format!("{}:{}", app.cfg.callback_username, app.cfg.callback_password).as_bytes())
                );
                app.sim.deliver(
                    app.cfg.webhook_url.clone(),
                    vec![("Authorization".into(), auth), ("X-Marqeta-Signature".into(), sig)],
                    text,
                    key,
                    None,
                );
            }
        });
    }
}

fn amount_of(v: &Value) -> Option<serde_json::Number> {
    v.as_number().cloned()
}

/// Asks the program's gateway (JIT Funding) about a transaction; the answer's status and body, and
/// how long it took; None when it did not answer in time.
async fn ask_gateway(app: &App, request: &Value) -> (Option<(u16, Value)>, Duration) {
    let started = Instant::now();
    let auth = format!(
        "Basic {}",
        b64(format!("{}:{}", app.cfg.callback_username, app.cfg.callback_password).as_bytes())
    );
    let sent = app
        .sim
        .http
        .post(&app.cfg.gateway_url)
        .header("Authorization", auth)
        .json(request)
        .timeout(app.cfg.decision_timeout)
        .send()
        .await;
    let answer = match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.json::<Value>().await.unwrap_or(Value::Null);
            Some((status, body))
        }
        Err(_) => None,
    };
    (answer, started.elapsed())
}

async fn authorization(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (Some(card_token), Some(amount)) = (req["card_token"].as_str(), amount_of(&req["amount"])) else {
        return error(400, "400300", "card_token and amount are required");
    };
    let Some(card) = app
        .book
        .lock()
        .ok()
        .and_then(|b| b.cards.iter().find(|c| c["token"] == card_token).cloned())
    else {
        return error(400, "400070", "Card not found");
    };
    let token = uuid::Uuid::new_v4().to_string();
    let acceptor = json!({"mid": req["mid"].as_str().unwrap_or("000000000011111"),
        "mcc": req["card_acceptor"]["mcc"].as_str().unwrap_or("5999"),
        "name": req["card_acceptor"]["name"].as_str().unwrap_or("Simulated Merchant"),
        "city": req["card_acceptor"]["city"], "country_code": req["card_acceptor"]["country_code"].as_str().unwrap_or("USA")});
    let jit = json!({"token": uuid::Uuid::new_v4().to_string(), "method": "pgfs.authorization",
        "user_token": card["user_token"], "acting_user_token": card["user_token"], "amount": amount});
    let mut txn = json!({"type": "authorization", "state": "PENDING", "token": token,
        "user_token": card["user_token"], "acting_user_token": card["user_token"], "card_token": card_token,
        "amount": amount, "currency_code": req["currency_code"].as_str().unwrap_or("USD"),
        "network": "VISA", "card_acceptor": acceptor,
        "gpa_order": {"token": uuid::Uuid::new_v4().to_string(), "amount": amount, "state": "PENDING",
            "transaction_token": token, "jit_funding": jit, "currency_code": "USD"},
        "created_time": now(), "user_transaction_time": now()});
    // The card's own state comes first, as the platform checks it before funding.
    let (approved, decline_reason, answered, took) = if card["state"] != "ACTIVE" {
        (false, Some("CARD_NOT_ACTIVE".to_string()), true, Duration::ZERO)
    } else {
        let (answer, took) = ask_gateway(&app, &txn).await;
        match answer {
            Some((200, _)) => (true, None, true, took),
            Some((402, b)) => (
                false,
                b["jit_funding"]["decline_reason"].as_str().map(str::to_string),
                true,
                took,
            ),
            // No answer in time, or not an answer: the stand-in rule decides.
            _ => (app.cfg.stand_in_approves, None, false, took),
        }
    };
    app.sim.record("authorization", &token);
    txn["state"] = json!(if approved { "PENDING" } else { "DECLINED" });
    txn["response"] = if approved {
        json!({"code": "0000", "memo": "Approved or completed successfully"})
    } else {
        json!({"code": "1016", "memo": decline_reason.clone().unwrap_or_else(|| "Stand-in decline".into())})
    };
    if let Some(r) = &decline_reason {
        txn["gpa_order"]["jit_funding"]["decline_reason"] = json!(r);
    }
    txn["jit_funding_answered"] = json!(answered);
    txn["duration"] = json!(took.as_millis() as u64);
    if let Ok(mut b) = app.book.lock() {
        b.transactions.push(txn.clone());
    }
    queue(&app, "transactions", txn.clone());
    (StatusCode::CREATED, Json(json!({"transaction": txn}))).into_response()
}

async fn clearing(state: State<App>, headers: HeaderMap, body: Bytes) -> Response {
    follow_up(state, headers, body, "authorization.clearing", "COMPLETION").await
}

async fn reversal(state: State<App>, headers: HeaderMap, body: Bytes) -> Response {
    follow_up(state, headers, body, "authorization.reversal", "CLEARED").await
}

/// A clearing or reversal of an earlier approved authorization.
async fn follow_up(State(app): State<App>, headers: HeaderMap, body: Bytes, kind: &str, state: &str) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (Some(original), Some(amount)) = (req["original_transaction_token"].as_str(), amount_of(&req["amount"])) else {
        return error(400, "400300", "original_transaction_token and amount are required");
    };
    let Some(auth) = app.book.lock().ok().and_then(|b| {
        b.transactions
            .iter()
            .find(|t| t["token"] == original && t["type"] == "authorization" && t["state"] == "PENDING")
            .cloned()
    }) else {
        return error(400, "400500", "Original transaction not found or not open");
    };
    let token = uuid::Uuid::new_v4().to_string();
    let txn = json!({"type": kind, "state": state, "token": token,
        "preceding_related_transaction_token": original, "user_token": auth["user_token"],
        "card_token": auth["card_token"], "amount": amount, "currency_code": auth["currency_code"],
        "card_acceptor": auth["card_acceptor"], "created_time": now()});
    if let Ok(mut b) = app.book.lock() {
        if let Some(a) = b.transactions.iter_mut().find(|t| t["token"] == original) {
            a["state"] = json!(if kind.ends_with("clearing") {
                "COMPLETION"
            } else {
                "CLEARED"
            });
        }
        b.transactions.push(txn.clone());
    }
    queue(&app, "transactions", txn.clone());
    (StatusCode::CREATED, Json(json!({"transaction": txn}))).into_response()
}
