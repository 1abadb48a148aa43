//! Plaid-shaped open-banking simulator (every call a `POST` with `PLAID-CLIENT-ID`, `PLAID-SECRET`;
//! errors `{error_type, error_code, error_message, display_message, request_id}`).
//!
//! `/link/token/create` answers a `hosted_link_url` on this simulator; following it stands for the
//! customer in Link: for a consent it sends them back to `redirect_uri` with a one-time
//! `public_token`; for a payment (`payment_initiation.payment_id`) it authorizes the payment, which
//! then moves AUTHORISING → INITIATED → EXECUTED after `complete_after`. `/item/public_token/exchange`,
//! `/item/get` (a consent expiring in 180 days), `/item/remove`, `/accounts/balance/get` (a checking
//! and a credit account), `/transactions/sync` (a cursor: the first sync adds the history and a
//! pending purchase; a later one posts that purchase, removing the pending one, and adds nothing
//! else). Payments: `/payment_initiation/recipient/create`, `/payment/create` (no idempotency: every
//! call makes a payment, in the ledger as `payment` keyed by its reference and recipient's name), `/payment/get`,
//! `/payment/list`. Webhooks (`PAYMENT_INITIATION` / `PAYMENT_STATUS_UPDATE`, `TRANSACTIONS` /
//! `SYNC_UPDATES_AVAILABLE`) carry `Plaid-Verification`, an ES256 JWT whose key
//! `/webhook_verification_key/get` serves. `POST /_sim/payments/{id}/status {"status"}` moves a
//! payment (e.g. PAYMENT_STATUS_INSUFFICIENT_FUNDS).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use switchyard_vendors::{
    openbanking::plaid::sign_webhook,
    signing::{Es, es_sign, point_xy},
};

use crate::sim::{Sim, with_faults};

#[derive(Clone)]
pub struct Config {
    pub client_id: String,
    pub secret: String,
    /// The simulator's webhook signing key (PKCS#8, P-256).
    pub webhook_key: Vec<u8>,
    /// Its own base URL (hosted Link lives here).
    pub public_url: String,
    pub complete_after: Duration,
    pub state_file: String,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Book {
    /// link token → the request that made it
    links: HashMap<String, Value>,
    /// public token → item id
    public: HashMap<String, String>,
    /// access token → item id
    items: HashMap<String, String>,
    /// item id → webhook URL
    webhooks: HashMap<String, String>,
    /// item id → syncs made
    syncs: HashMap<String, u32>,
    recipients: HashMap<String, Value>,
    payments: Vec<Value>,
    /// payment id → webhook URL of the link that authorized it
    payment_hooks: HashMap<String, String>,
}

#[derive(Clone)]
struct App {
    sim: Sim,
    cfg: Config,
    book: Arc<Mutex<Book>>,
}

const KID: &str = "sim-plaid-1";

pub fn error_body(status: u16) -> Value {
    let (t, c) = match status {
        400 => ("INVALID_REQUEST", "INVALID_FIELD"),
        401 => ("INVALID_INPUT", "INVALID_API_KEYS"),
        429 => ("RATE_LIMIT_EXCEEDED", "RATE_LIMIT"),
        _ => ("API_ERROR", "INTERNAL_SERVER_ERROR"),
    };
    json!({"error_type": t, "error_code": c, "error_message": "simulated", "display_message": null,
        "request_id": uuid::Uuid::new_v4().simple().to_string()})
}

fn error(status: u16, t: &str, code: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(
            json!({"error_type": t, "error_code": code, "error_message": message, "display_message": null,
            "request_id": uuid::Uuid::new_v4().simple().to_string()}),
        ),
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
        .route("/link/token/create", post(link_create))
        .route("/item/public_token/exchange", post(exchange))
        .route("/item/get", post(item_get))
        .route("/item/remove", post(item_remove))
        .route("/accounts/balance/get", post(balances))
        .route("/transactions/sync", post(sync))
        .route("/payment_initiation/recipient/create", post(recipient))
        .route("/payment_initiation/payment/create", post(payment_create))
        .route("/payment_initiation/payment/get", post(payment_get))
        .route("/payment_initiation/payment/list", post(payment_list))
        .route("/webhook_verification_key/get", post(verification_key))
        .with_state(app.clone());
    let open = Router::new()
        .route("/link/{token}", get(hosted_link))
        .route("/_sim/payments/{id}/status", post(set_status))
        .route("/_sim/items/{item}/sync-updates", post(sync_updates))
        .with_state(app);
    with_faults(api, sim, error_body).merge(open)
}

/// The request's JSON, once its keys are right.
fn authed(app: &App, h: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok());
    if get("plaid-client-id") != Some(app.cfg.client_id.as_str())
        || get("plaid-secret") != Some(app.cfg.secret.as_str())
    {
        return Err(error(
            400,
            "INVALID_INPUT",
            "INVALID_API_KEYS",
            "invalid client_id or secret provided",
        ));
    }
    serde_json::from_slice(body).map_err(|_| error(400, "INVALID_REQUEST", "INVALID_BODY", "body could not be parsed"))
}

fn id(prefix: &str) -> String {
    format!("{prefix}-sandbox-{}", uuid::Uuid::new_v4())
}

fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..15].to_string()
}

async fn link_create(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if req["user"]["client_user_id"].as_str().is_none() || req["country_codes"].as_array().is_none() {
        return error(
            400,
            "INVALID_REQUEST",
            "MISSING_FIELDS",
            "user.client_user_id and country_codes are required",
        );
    }
    let token = id("link");
    if let Ok(mut b) = app.book.lock() {
        b.links.insert(token.clone(), req);
    }
    let expiration =
        (chrono::Utc::now() + chrono::Duration::hours(4)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Json(json!({"link_token": token, "expiration": expiration,
        "hosted_link_url": format!("{}/link/{token}", app.cfg.public_url), "request_id": request_id()}))
    .into_response()
}

/// The customer in hosted Link.
async fn hosted_link(State(app): State<App>, Path(token): Path<String>) -> Response {
    let Some(req) = app.book.lock().ok().and_then(|b| b.links.get(&token).cloned()) else {
        return error(400, "INVALID_INPUT", "INVALID_LINK_TOKEN", "unknown link token");
    };
    let back = req["redirect_uri"].as_str().unwrap_or_default().to_string();
    let sep = if back.contains('?') { '&' } else { '?' };
    if let Some(pid) = req["payment_initiation"]["payment_id"].as_str() {
        let pid = pid.to_string();
        if let Ok(mut b) = app.book.lock() {
            if let Some(p) = b.payments.iter_mut().find(|p| p["payment_id"] == pid.as_str())
                && p["status"] == "PAYMENT_STATUS_INPUT_NEEDED"
            {
                p["status"] = json!("PAYMENT_STATUS_AUTHORISING");
            }
            b.payment_hooks
                .insert(pid.clone(), req["webhook"].as_str().unwrap_or_default().to_string());
        }
        let app2 = app.clone();
        let pid2 = pid.clone();
        tokio::spawn(async move {
            for s in ["PAYMENT_STATUS_INITIATED", "PAYMENT_STATUS_EXECUTED"] {
                tokio::time::sleep(app2.cfg.complete_after).await;
                move_payment(&app2, &pid2, s, false);
            }
        });
        return Redirect::to(&format!("{back}{sep}payment_id={pid}")).into_response();
    }
    let item = id("item");
    let public = id("public");
    if let Ok(mut b) = app.book.lock() {
        b.public.insert(public.clone(), item.clone());
        b.webhooks
            .insert(item.clone(), req["webhook"].as_str().unwrap_or_default().to_string());
    }
    app.sim
        .record("consent", req["user"]["client_user_id"].as_str().unwrap_or_default());
    Redirect::to(&format!("{back}{sep}public_token={public}")).into_response()
}

async fn exchange(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let public = req["public_token"].as_str().unwrap_or_default();
    let Some(item) = app.book.lock().ok().and_then(|mut b| b.public.remove(public)) else {
        return error(
            400,
            "INVALID_INPUT",
            "INVALID_PUBLIC_TOKEN",
            "provided public token is in an invalid format or expired",
        );
    };
    let access = id("access");
    if let Ok(mut b) = app.book.lock() {
        b.items.insert(access.clone(), item.clone());
    }
    Json(json!({"access_token": access, "item_id": item, "request_id": request_id()})).into_response()
}

fn item_of(app: &App, req: &Value) -> Result<String, Response> {
    let access = req["access_token"].as_str().unwrap_or_default();
    app.book
        .lock()
        .ok()
        .and_then(|b| b.items.get(access).cloned())
        .ok_or_else(|| {
            error(
                400,
                "INVALID_INPUT",
                "INVALID_ACCESS_TOKEN",
                "provided access token is in an invalid format",
            )
        })
}

async fn item_get(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let item = match item_of(&app, &req) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let expires = (chrono::Utc::now() + chrono::Duration::days(180)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Json(
        json!({"item": {"item_id": item, "institution_id": "ins_sim", "consent_expiration_time": expires,
        "products": ["transactions"]}, "status": null, "request_id": request_id()}),
    )
    .into_response()
}

async fn item_remove(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let access = req["access_token"].as_str().unwrap_or_default().to_string();
    if let Ok(mut b) = app.book.lock() {
        b.items.remove(&access);
    }
    Json(json!({"request_id": request_id()})).into_response()
}

fn accounts_of(item: &str) -> [String; 2] {
    let n = item
        .bytes()
        .fold(3u64, |h, b| h.wrapping_mul(37).wrapping_add(b as u64));
    [format!("acc{n:016x}chk"), format!("acc{n:016x}crd")]
}

async fn balances(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let item = match item_of(&app, &req) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let [chk, crd] = accounts_of(&item);
    Json(json!({"accounts": [
        {"account_id": chk, "balances": {"available": 100.0, "current": 110.25, "iso_currency_code": "EUR"},
         "mask": "0000", "name": "Sim Checking", "subtype": "checking", "type": "depository"},
        {"account_id": crd, "balances": {"available": null, "current": -410.5, "iso_currency_code": "EUR", "limit": 2000},
         "mask": "3333", "name": "Sim Credit Card", "subtype": "credit card", "type": "credit"}
    ], "item": {"item_id": item}, "request_id": request_id()}))
    .into_response()
}

async fn sync(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let item = match item_of(&app, &req) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let [chk, _] = accounts_of(&item);
    let today = chrono::Utc::now().date_naive();
    let first = req["cursor"].as_str().is_none_or(str::is_empty);
    let n = app
        .book
        .lock()
        .map(|mut b| {
            let e = b.syncs.entry(item.clone()).or_default();
            *e += 1;
            *e
        })
        .unwrap_or(1);
    let pending_id = format!("{chk}-pending-cafe");
    let txn = |tid: String, amount: f64, day: chrono::NaiveDate, name: &str, pending: bool, replaces: Option<&str>| {
        json!({"transaction_id": tid, "account_id": chk, "amount": amount, "iso_currency_code": "EUR",
            "date": day.to_string(), "authorized_date": (day - chrono::Days::new(1)).to_string(), "name": name,
            "pending": pending, "pending_transaction_id": replaces})
    };
    let (added, removed) = if first {
        let mut added: Vec<Value> = (1..=10u64)
            .map(|i| {
                let day = today - chrono::Days::new(i * 3);
                txn(
                    format!("{chk}-t{i}"),
                    3.0 * i as f64 + 0.25,
                    day,
                    "Sim Grocer",
                    false,
                    None,
                )
            })
            .collect();
        added.push(txn(
            format!("{chk}-salary"),
            -1500.0,
            today - chrono::Days::new(5),
            "Payroll",
            false,
            None,
        ));
        added.push(txn(pending_id.clone(), 4.5, today, "Corner Cafe", true, None));
        (added, vec![])
    } else {
        // The pending purchase posts: a new transaction replacing it.
        (
            vec![txn(
                format!("{chk}-cafe-posted"),
                4.5,
                today,
                "Corner Cafe",
                false,
                Some(&pending_id),
            )],
            vec![json!({"transaction_id": pending_id})],
        )
    };
    Json(json!({"added": added, "modified": [], "removed": removed,
        "next_cursor": format!("cur-{item}-{n}"), "has_more": false,
        "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE", "request_id": request_id()}))
    .into_response()
}

async fn recipient(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if req["name"].as_str().is_none() || (req["iban"].is_null() && req["bacs"].is_null()) {
        return error(
            400,
            "INVALID_REQUEST",
            "MISSING_FIELDS",
            "name and iban or bacs are required",
        );
    }
    let rid = id("recipient-id");
    if let Ok(mut b) = app.book.lock() {
        b.recipients.insert(rid.clone(), req);
    }
    Json(json!({"recipient_id": rid, "request_id": request_id()})).into_response()
}

async fn payment_create(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let reference = req["reference"].as_str().unwrap_or_default().to_string();
    if reference.is_empty() || reference.len() > 18 {
        return error(
            400,
            "INVALID_REQUEST",
            "INVALID_FIELD",
            "reference must be 1 to 18 characters",
        );
    }
    let rid = req["recipient_id"].as_str().unwrap_or_default().to_string();
    if !app.book.lock().is_ok_and(|b| b.recipients.contains_key(&rid)) {
        return error(400, "INVALID_INPUT", "INVALID_RECIPIENT_ID", "unknown recipient");
    }
    let pid = id("payment-id");
    let p = json!({"payment_id": pid, "status": "PAYMENT_STATUS_INPUT_NEEDED", "reference": reference,
        "amount": req["amount"], "recipient_id": rid, "last_status_update": chrono::Utc::now().to_rfc3339()});
    let name = app
        .book
        .lock()
        .ok()
        .and_then(|mut b| {
            b.payments.push(p);
            b.recipients
                .get(&rid)
                .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        })
        .unwrap_or_default();
    // Keyed by the reference and the recipient's name: tests count a payment by either.
    app.sim.record("payment", &format!("{reference} {name}"));
    Json(json!({"payment_id": pid, "status": "PAYMENT_STATUS_INPUT_NEEDED", "request_id": request_id()}))
        .into_response()
}

async fn payment_get(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let pid = req["payment_id"].as_str().unwrap_or_default();
    match app
        .book
        .lock()
        .ok()
        .and_then(|b| b.payments.iter().find(|p| p["payment_id"] == pid).cloned())
    {
        Some(p) => Json(p).into_response(),
        None => error(400, "INVALID_INPUT", "INVALID_PAYMENT_ID", "unknown payment"),
    }
}

async fn payment_list(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let count = req["count"].as_u64().unwrap_or(10).clamp(1, 200) as usize;
    let skip: usize = req["cursor"].as_str().and_then(|c| c.parse().ok()).unwrap_or(0);
    let all = app.book.lock().map(|b| b.payments.clone()).unwrap_or_default();
    let page: Vec<Value> = all.iter().rev().skip(skip).take(count).cloned().collect();
    let next = (skip + page.len() < all.len()).then(|| (skip + page.len()).to_string());
    Json(json!({"payments": page, "next_cursor": next.unwrap_or_default(), "request_id": request_id()})).into_response()
}

async fn verification_key(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let req = match authed(&app, &h, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if req["key_id"] != KID {
        return error(
            400,
            "INVALID_INPUT",
            "INVALID_WEBHOOK_VERIFICATION_KEY_ID",
            "unknown key id",
        );
    }
    let Some((x, y)) = es_sign(Es::Es256, &app.cfg.webhook_key, b"key")
        .ok()
        .and_then(|(_, p)| point_xy(&p))
    else {
        return error(500, "API_ERROR", "INTERNAL_SERVER_ERROR", "no key");
    };
    Json(
        json!({"key": {"alg": "ES256", "crv": "P-256", "kid": KID, "kty": "EC", "use": "sig", "x": x, "y": y,
        "created_at": 1_700_000_000, "expired_at": null}, "request_id": request_id()}),
    )
    .into_response()
}

/// Moves a payment and announces it (`force`: whatever its status).
fn move_payment(app: &App, pid: &str, status: &str, force: bool) -> bool {
    let moved = app.book.lock().ok().and_then(|mut b| {
        let hook = b.payment_hooks.get(pid).cloned().unwrap_or_default();
        let p = b.payments.iter_mut().find(|p| p["payment_id"] == pid)?;
        let old = p["status"].as_str().unwrap_or_default().to_string();
        let terminal = [
            "PAYMENT_STATUS_EXECUTED",
            "PAYMENT_STATUS_FAILED",
            "PAYMENT_STATUS_INSUFFICIENT_FUNDS",
            "PAYMENT_STATUS_REJECTED",
            "PAYMENT_STATUS_CANCELLED",
            "PAYMENT_STATUS_BLOCKED",
        ];
        if !force && terminal.contains(&old.as_str()) {
            return None;
        }
        p["status"] = json!(status);
        p["last_status_update"] = json!(chrono::Utc::now().to_rfc3339());
        Some((hook, old, p["reference"].clone()))
    });
    let Some((hook, old, reference)) = moved else {
        return false;
    };
    let body = json!({"webhook_type": "PAYMENT_INITIATION", "webhook_code": "PAYMENT_STATUS_UPDATE",
        "payment_id": pid, "new_payment_status": status, "old_payment_status": old, "original_reference": reference,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "error": null,
        "environment": "sandbox"});
    send_hook(app, &hook, body, pid);
    true
}

fn send_hook(app: &App, url: &str, body: Value, key: &str) {
    if url.is_empty() {
        return;
    }
    let text = body.to_string();
    let Ok(jwt) = sign_webhook(
        &app.cfg.webhook_key,
        KID,
        text.as_bytes(),
        chrono::Utc::now().timestamp(),
    ) else {
        return;
    };
    app.sim.deliver(
        url.to_string(),
        vec![("Plaid-Verification".into(), jwt)],
        text,
        key.to_string(),
        None,
    );
}

#[derive(serde::Deserialize)]
struct NewStatus {
    status: String,
}

async fn set_status(State(app): State<App>, Path(pid): Path<String>, Json(s): Json<NewStatus>) -> Response {
    if move_payment(&app, &pid, &s.status, true) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// New transactions at an item: a `SYNC_UPDATES_AVAILABLE` webhook.
async fn sync_updates(
    State(app): State<App>,
    Path(item): Path<String>,
    Query(_): Query<HashMap<String, String>>,
) -> Response {
    let Some(hook) = app.book.lock().ok().and_then(|b| b.webhooks.get(&item).cloned()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = json!({"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "item_id": item,
        "initial_update_complete": true, "historical_update_complete": true, "environment": "sandbox"});
    send_hook(&app, &hook, body, &item);
    StatusCode::NO_CONTENT.into_response()
}
