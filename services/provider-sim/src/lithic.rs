//! Lithic-shaped card issuing simulator: `Authorization: <api key>` (no scheme); cards
//! (`POST /v1/cards`, `GET /v1/cards` paged newest first with `page_size` / `starting_after` →
//! `{data, has_more}`, `GET|PATCH /v1/cards/{token}`). Lithic takes no idempotency key: every POST
//! makes a card. VIRTUAL cards are OPEN at once, PHYSICAL ones PENDING_FULFILLMENT until set OPEN;
//! CLOSED is final. Errors: `{debugging_request_id, message}`. No card number is ever made: only
//! `last_four`.
//!
//! The sandbox's `POST /v1/simulate/authorize` (here by `card_token`: the simulator never takes a
//! card number) sends the authorization to the ASA responder (`--gateway-url`, signed with
//! `X-Lithic-HMAC`: base64 HMAC-SHA256 of the body with the responder secret) and waits
//! `--decision-timeout-ms`; no answer in time and the stand-in rule decides. `simulate/clearing`
//! and `simulate/void` settle or release it (`token`, `amount`). Each change is an event
//! (`card_transaction.updated`, `card.updated`) sent as a Standard Webhook (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the
//! `whsec_` secret). Effects in the ledger: `card`, `card_state`, `authorization`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_vendors::signing::{Alg, b64, hmac, unb64};

use crate::sim::{Sim, parse_json, with_faults};

#[derive(Clone)]
pub struct Config {
    pub api_key: String,
    pub asa_secret: String,
    /// `whsec_<base64>`.
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
    cards: Vec<Value>,
    transactions: Vec<Value>,
}

#[derive(Clone)]
struct App {
    sim: Sim,
    cfg: Config,
    book: Arc<Mutex<Book>>,
}

pub fn error_body(status: u16) -> Value {
    let message = match status {
        400 => "Invalid request",
        401 => "Please provide API key in Authorization header",
        404 => "Not found",
        429 => "Rate limited",
        _ => "Internal server error",
    };
    json!({"debugging_request_id": uuid::Uuid::new_v4().to_string(), "message": message})
}

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(json!({"debugging_request_id": uuid::Uuid::new_v4().to_string(), "message": message})),
    )
        .into_response()
}

pub fn router(sim: Sim, cfg: Config) -> Router {
    let app = App {
        sim: sim.clone(),
        cfg,
        book: Arc::default(),
    };
    crate::sim::persist(&app.cfg.state_file, app.book.clone());
    let api = Router::new()
        .route("/v1/cards", post(create).get(list))
        .route("/v1/cards/{token}", get(show).patch(update))
        .route("/v1/simulate/authorize", post(authorize))
        .route("/v1/simulate/clearing", post(clearing))
        .route("/v1/simulate/void", post(void))
        .with_state(app);
    with_faults(api, sim, error_body)
}

fn authorised(app: &App, h: &HeaderMap) -> Result<(), Response> {
    match h.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == app.cfg.api_key => Ok(()),
        _ => Err(error(401, "Please provide API key in Authorization header")),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn last_four(token: &str) -> String {
    let n = token
        .bytes()
        .fold(11u32, |h, b| h.wrapping_mul(33).wrapping_add(b as u32));
    format!("{:04}", n % 10_000)
}

/// Sends an event as a Standard Webhook.
fn announce(app: &App, event_type: &str, payload: Value, key: &str) {
    if app.cfg.webhook_url.is_empty() {
        return;
    }
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let ts = chrono::Utc::now().timestamp();
    let body = json!({"token": uuid::Uuid::new_v4().to_string(), "event_type": event_type,
        "created": now(), "payload": payload})
    .to_string();
    let secret = app
        .cfg
        .webhook_secret
        .strip_prefix("whsec_")
        .and_then(unb64)
        .unwrap_or_default();
    let sig = b64(&hmac(Alg::Sha256, &secret, format!("{id}.{ts}.{body}").as_bytes()));
    app.sim.deliver(
        app.cfg.webhook_url.clone(),
        vec![
            ("webhook-id".into(), id),
            ("webhook-timestamp".into(), ts.to_string()),
            ("webhook-signature".into(), format!("v1,{sig}")),
        ],
        body,
        key.to_string(),
        None,
    );
}

async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let state = match req["type"].as_str() {
        Some("VIRTUAL" | "SINGLE_USE" | "MERCHANT_LOCKED") => "OPEN",
        Some("PHYSICAL") => "PENDING_FULFILLMENT",
        _ => {
            return error(
                400,
                "type: must be one of VIRTUAL, PHYSICAL, SINGLE_USE, MERCHANT_LOCKED",
            );
        }
    };
    let token = uuid::Uuid::new_v4().to_string();
    let card = json!({"token": token, "created": now(), "last_four": last_four(&token),
        "memo": req["memo"], "type": req["type"], "state": state, "pin_status": "NOT_SET",
        "spend_limit": req["spend_limit"].as_i64().unwrap_or(0),
        "spend_limit_duration": req["spend_limit_duration"].as_str().unwrap_or("TRANSACTION"),
        "product_id": req["product_id"], "exp_month": "11", "exp_year": "2030"});
    if let Ok(mut b) = app.book.lock() {
        b.cards.push(card.clone());
    }
    // Keyed by the memo and product: tests count a card by either.
    let key = format!(
        "{} {}",
        req["memo"].as_str().unwrap_or(&token),
        req["product_id"].as_str().unwrap_or("")
    );
    app.sim.record("card", &key);
    announce(&app, "card.created", card.clone(), &token);
    (StatusCode::CREATED, Json(card)).into_response()
}

#[derive(Deserialize)]
struct Page {
    page_size: Option<usize>,
    starting_after: Option<String>,
}

async fn list(State(app): State<App>, headers: HeaderMap, Query(p): Query<Page>) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let size = p.page_size.unwrap_or(50).clamp(1, 100);
    let Ok(b) = app.book.lock() else {
        return error(500, "Internal server error");
    };
    let newest_first: Vec<&Value> = b.cards.iter().rev().collect();
    let start = match &p.starting_after {
        Some(t) => match newest_first.iter().position(|c| c["token"] == *t) {
            Some(i) => i + 1,
            None => return error(400, "starting_after: no such card"),
        },
        None => 0,
    };
    let data: Vec<Value> = newest_first
        .iter()
        .skip(start)
        .take(size)
        .map(|c| (*c).clone())
        .collect();
    let has_more = start + data.len() < newest_first.len();
    Json(json!({"data": data, "has_more": has_more})).into_response()
}

async fn show(State(app): State<App>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    match app
        .book
        .lock()
        .ok()
        .and_then(|b| b.cards.iter().find(|c| c["token"] == token).cloned())
    {
        Some(c) => Json(c).into_response(),
        None => error(404, "Card not found"),
    }
}

async fn update(State(app): State<App>, headers: HeaderMap, Path(token): Path<String>, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let target = req["state"].as_str().map(str::to_string);
    let changed = app.book.lock().ok().and_then(|mut b| {
        let c = b.cards.iter_mut().find(|c| c["token"] == token)?;
        Some(match target.as_deref() {
            None => Ok((c.clone(), false)),
            Some(_) if c["state"] == "CLOSED" => Err(error(400, "Card is closed and cannot be updated")),
            Some(t @ ("OPEN" | "PAUSED" | "CLOSED")) => {
                let moved = c["state"] != t;
                c["state"] = json!(t);
                Ok((c.clone(), moved))
            }
            Some(_) => Err(error(400, "state: must be one of OPEN, PAUSED, CLOSED")),
        })
    });
    match changed {
        None => error(404, "Card not found"),
        Some(Err(r)) => r,
        Some(Ok((card, moved))) => {
            if moved {
                app.sim.record("card_state", &token);
                announce(&app, "card.updated", card.clone(), &token);
            }
            Json(card).into_response()
        }
    }
}

/// Asks the ASA responder; its answer's body and how long it took (None: no answer in time).
async fn ask_responder(app: &App, request: &Value) -> (Option<Value>, Duration) {
    let started = Instant::now();
    let body = request.to_string();
    let sig = b64(&hmac(Alg::Sha256, app.cfg.asa_secret.as_bytes(), body.as_bytes()));
    let sent = app
        .sim
        .http
        .post(&app.cfg.gateway_url)
        .header("Content-Type", "application/json")
        .header("X-Lithic-HMAC", sig)
        .body(body)
        .timeout(app.cfg.decision_timeout)
        .send()
        .await;
    let answer = match sent {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
        _ => None,
    };
    (answer, started.elapsed())
}

async fn authorize(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (Some(card_token), Some(amount)) = (req["card_token"].as_str(), req["amount"].as_i64()) else {
        return error(400, "card_token and amount (cents) are required");
    };
    let Some(card) = app
        .book
        .lock()
        .ok()
        .and_then(|b| b.cards.iter().find(|c| c["token"] == card_token).cloned())
    else {
        return error(400, "Card not found");
    };
    let token = uuid::Uuid::new_v4().to_string();
    let merchant = json!({"acceptor_id": req["merchant_acceptor_id"].as_str().unwrap_or("174030075991"),
        "descriptor": req["descriptor"].as_str().unwrap_or("SIMULATED MERCHANT"),
        "mcc": req["mcc"].as_str().unwrap_or("5999"), "city": req["merchant_city"].as_str().unwrap_or(""),
        "state": "", "country": req["merchant_country"].as_str().unwrap_or("USA")});
    let card_view = json!({"token": card_token, "last_four": card["last_four"], "memo": card["memo"],
        "state": card["state"], "type": card["type"], "spend_limit": card["spend_limit"]});
    let (result, answered, took) = if card["state"] != "OPEN" {
        let r = if card["state"] == "CLOSED" {
            "CARD_CLOSED"
        } else {
            "CARD_PAUSED"
        };
        (r.to_string(), true, Duration::ZERO)
    } else {
        let asa = json!({"token": token, "status": "AUTHORIZATION", "amount": amount,
            "authorization_amount": amount, "settled_currency": "USD", "merchant_amount": amount,
            "merchant_currency": "USD", "acquirer_fee": 0, "cash_amount": 0, "card": card_view,
            "merchant": merchant, "created": now(), "events": []});
        let (answer, took) = ask_responder(&app, &asa).await;
        match answer.as_ref().and_then(|a| a["result"].as_str()) {
            Some(r) => (r.to_string(), true, took),
            None => (
                if app.cfg.stand_in_approves {
                    "APPROVED"
                } else {
                    "INSUFFICIENT_FUNDS"
                }
                .to_string(),
                false,
                took,
            ),
        }
    };
    app.sim.record("authorization", &token);
    let approved = result == "APPROVED";
    let txn = json!({"token": token, "card_token": card_token,
        "status": if approved { "PENDING" } else { "DECLINED" }, "result": result,
        "amount": amount, "settled_amount": 0, "currency": "USD", "merchant": merchant,
        "events": [{"token": uuid::Uuid::new_v4().to_string(), "type": "AUTHORIZATION", "amount": amount,
            "result": result, "created": now()}],
        "created": now(), "asa_answered": answered, "asa_ms": took.as_millis() as u64});
    if let Ok(mut b) = app.book.lock() {
        b.transactions.push(txn.clone());
    }
    announce(&app, "card_transaction.updated", txn.clone(), card_token);
    (
        StatusCode::CREATED,
        Json(json!({"token": token, "result": result, "asa_answered": answered,
        "asa_ms": took.as_millis() as u64})),
    )
        .into_response()
}

async fn clearing(state: State<App>, headers: HeaderMap, body: Bytes) -> Response {
    follow_up(state, headers, body, "CLEARING").await
}

async fn void(state: State<App>, headers: HeaderMap, body: Bytes) -> Response {
    follow_up(state, headers, body, "AUTHORIZATION_REVERSAL").await
}

async fn follow_up(State(app): State<App>, headers: HeaderMap, body: Bytes, kind: &str) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(token) = req["token"].as_str() else {
        return error(400, "token is required");
    };
    let updated = app.book.lock().ok().and_then(|mut b| {
        let t = b
            .transactions
            .iter_mut()
            .find(|t| t["token"] == token && t["status"] == "PENDING")?;
        let amount = req["amount"].as_i64().or_else(|| t["amount"].as_i64()).unwrap_or(0);
        t["status"] = json!(if kind == "CLEARING" { "SETTLED" } else { "VOIDED" });
        if kind == "CLEARING" {
            t["settled_amount"] = json!(amount);
        }
        if let Some(events) = t["events"].as_array_mut() {
            events.push(json!({"token": uuid::Uuid::new_v4().to_string(), "type": kind,
                "amount": amount, "result": "APPROVED", "created": now()}));
        }
        Some(t.clone())
    });
    match updated {
        Some(t) => {
            let card = t["card_token"].as_str().unwrap_or_default().to_string();
            announce(&app, "card_transaction.updated", t.clone(), &card);
            (
                StatusCode::CREATED,
                Json(json!({"debugging_request_id": uuid::Uuid::new_v4().to_string()})),
            )
                .into_response()
        }
        None => error(400, "Transaction not found or not pending"),
    }
}
