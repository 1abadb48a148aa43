//! TrueLayer-shaped open-banking simulator, auth server and API on one port.
//!
//! Account information: the auth link (`GET /?response_type=code&client_id&redirect_uri&scope&state`)
//! stands for the customer at their bank: it consents at once and is sent back to `redirect_uri`
//! with a one-time `code` and the `state` (a `providers=` naming `sim-deny` refuses with
//! `error=access_denied`). `POST /connect/token` exchanges a code (once), a refresh token (rotated)
//! or client credentials (scope `payments`); `DELETE /api/delete` revokes a connection. The data
//! API serves two accounts per connection and a fixed history of transactions (booked, and one
//! pending), the same on every fetch. Payments: `POST /v3/payments` with a client-credentials token,
//! an `Idempotency-Key` (the same key and body answer the same payment for 30 days; another body
//! 422; 409 while the first is in flight) and our `Tl-Signature` (ES512, checked with our public
//! key); then the hosted payment page (`GET /hpp?payment_id&resource_token&return_uri`) stands for
//! the customer authorizing it, and the payment moves authorizing → authorized → executed after
//! `complete_after`, each step a webhook signed ES512 with the simulator's key (published at
//! `/.well-known/jwks`, named by `jku`) over `POST <path>`, `X-Tl-Webhook-Timestamp` and the body.
//! `POST /_sim/payments/{id}/fail {"failure_reason"}` fails one. Ledger: `consent`, `payment`.

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
    routing::{delete, get, post},
};
use serde_json::{Value, json};
use switchyard_vendors::{
    openbanking::truelayer::{sign_webhook, verify_request},
    signing::{Es, es_sign, point_xy},
};

use crate::sim::{Sim, with_faults};

#[derive(Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    /// Our request-signing public key (uncompressed P-521 point).
    pub client_signing_point: Vec<u8>,
    /// The simulator's webhook signing key (PKCS#8, P-521).
    pub webhook_key: Vec<u8>,
    pub webhook_url: String,
    /// Its own base URL (the JWKS is published here).
    pub public_url: String,
    pub complete_after: Duration,
    pub state_file: String,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Book {
    /// code → (redirect_uri, consent id)
    codes: HashMap<String, (String, String)>,
    /// access token → connection id; refresh token → connection id
    access: HashMap<String, String>,
    refresh: HashMap<String, String>,
    client_tokens: Vec<String>,
    payments: Vec<Value>,
    /// Idempotency-Key → (body digest, payment id)
    keys: HashMap<String, (String, String)>,
}

#[derive(Clone)]
struct App {
    sim: Sim,
    cfg: Config,
    book: Arc<Mutex<Book>>,
}

const KID: &str = "sim-truelayer-1";

pub fn error_body(status: u16) -> Value {
    json!({"type": "https://docs.truelayer.com/docs/error-types", "title": match status {
        400 => "Invalid Parameters", 401 => "Unauthenticated", 404 => "Not Found", 409 => "Conflict",
        422 => "Unprocessable Entity", 429 => "Too Many Requests", _ => "Internal Server Error" },
        "status": status, "trace_id": uuid::Uuid::new_v4().simple().to_string()})
}

fn problem(status: u16, title: &str, detail: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/problem+json")],
        Json(
            json!({"type": "https://docs.truelayer.com/docs/error-types", "title": title, "status": status,
            "trace_id": uuid::Uuid::new_v4().simple().to_string(), "detail": detail}),
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
        .route("/", get(auth_link))
        .route("/connect/token", post(token))
        .route("/api/delete", delete(revoke))
        .route("/data/v1/accounts", get(accounts))
        .route("/data/v1/accounts/{id}/balance", get(balance))
        .route("/data/v1/accounts/{id}/transactions", get(transactions))
        .route("/data/v1/accounts/{id}/transactions/pending", get(pending))
        .route("/v3/payments", post(create_payment))
        .route("/v3/payments/{id}", get(show_payment))
        .route("/hpp", get(hpp))
        .route("/hpp/", get(hpp))
        .route("/.well-known/jwks", get(jwks))
        .with_state(app.clone());
    let control = Router::new()
        .route("/_sim/payments/{id}/fail", post(fail))
        .with_state(app);
    with_faults(api, sim, error_body).merge(control)
}

fn new_token(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The customer at their bank: consents (or, for `providers=sim-deny`, refuses) and is sent back.
async fn auth_link(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(client), Some(back), Some(state)) = (q.get("client_id"), q.get("redirect_uri"), q.get("state")) else {
        return problem(
            400,
            "Invalid Parameters",
            "client_id, redirect_uri and state are required",
        );
    };
    if client != &app.cfg.client_id || q.get("response_type").map(String::as_str) != Some("code") {
        return problem(400, "Invalid Parameters", "unknown client or response_type");
    }
    let sep = if back.contains('?') { '&' } else { '?' };
    if q.get("providers").is_some_and(|p| p.contains("sim-deny")) {
        return Redirect::to(&format!("{back}{sep}error=access_denied&state={state}")).into_response();
    }
    let code = new_token("code");
    if let Ok(mut b) = app.book.lock() {
        b.codes.insert(code.clone(), (back.clone(), state.clone()));
    }
    app.sim.record("consent", state);
    Redirect::to(&format!("{back}{sep}code={code}&state={state}")).into_response()
}

async fn token(State(app): State<App>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url_form(&body);
    if form.get("client_id") != Some(&app.cfg.client_id) || form.get("client_secret") != Some(&app.cfg.client_secret) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let Ok(mut b) = app.book.lock() else {
        return problem(500, "Internal Server Error", "");
    };
    let connection = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            let t = new_token("cc");
            b.client_tokens.push(t.clone());
            return Json(json!({"access_token": t, "expires_in": 3600, "token_type": "Bearer", "scope": "payments"}))
                .into_response();
        }
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            match b.codes.remove(&code) {
                Some((back, state)) if Some(&back) == form.get("redirect_uri") => state,
                _ => return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response(),
            }
        }
        Some("refresh_token") => match form.get("refresh_token").and_then(|r| b.refresh.remove(r)) {
            Some(c) => c,
            None => return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response(),
        },
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response();
        }
    };
    let (access, refresh) = (new_token("at"), new_token("rt"));
    b.access.insert(access.clone(), connection.clone());
    b.refresh.insert(refresh.clone(), connection);
    Json(
        json!({"access_token": access, "expires_in": 3600, "token_type": "Bearer", "refresh_token": refresh,
        "scope": "info accounts balance transactions offline_access"}),
    )
    .into_response()
}

fn url_form(body: &[u8]) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body)))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn bearer(h: &HeaderMap) -> Option<String> {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

fn connection(app: &App, h: &HeaderMap) -> Result<String, Response> {
    let t = bearer(h).ok_or_else(|| problem(401, "Unauthenticated", "no token"))?;
    app.book
        .lock()
        .ok()
        .and_then(|b| b.access.get(&t).cloned())
        .ok_or_else(|| problem(401, "Unauthenticated", "invalid or revoked token"))
}

async fn revoke(State(app): State<App>, h: HeaderMap) -> Response {
    let Some(t) = bearer(&h) else {
        return problem(401, "Unauthenticated", "no token");
    };
    if let Ok(mut b) = app.book.lock()
        && let Some(c) = b.access.remove(&t)
    {
        b.refresh.retain(|_, v| *v != c);
        b.access.retain(|_, v| *v != c);
    }
    StatusCode::OK.into_response()
}

/// A connection's accounts: a current account and a savings account, their ids from the connection.
fn account_ids(connection: &str) -> [String; 2] {
    let n = connection
        .bytes()
        .fold(5u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    [format!("acc-{n:016x}-c"), format!("acc-{n:016x}-s")]
}

async fn accounts(State(app): State<App>, h: HeaderMap) -> Response {
    let c = match connection(&app, &h) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let [cur, sav] = account_ids(&c);
    Json(json!({"results": [
        {"account_id": cur, "account_type": "TRANSACTION", "display_name": "Everyday Account", "currency": "GBP",
         "account_number": {"iban": "GB33BUKB20201555555555", "number": "55555555", "sort_code": "20-20-15"},
         "provider": {"display_name": "MOCK BANK", "provider_id": "mock"}},
        {"account_id": sav, "account_type": "SAVINGS", "display_name": "Rainy Day Saver", "currency": "GBP",
         "account_number": {"iban": "GB94BARC10201530093459", "number": "30093459", "sort_code": "20-15-30"},
         "provider": {"display_name": "MOCK BANK", "provider_id": "mock"}}
    ], "status": "Succeeded"}))
    .into_response()
}

async fn balance(State(app): State<App>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = connection(&app, &h) {
        return r;
    }
    let (available, current) = if id.ends_with("-s") {
        (5230.0, 5230.0)
    } else {
        (1161.2, 1238.6)
    };
    Json(
        json!({"results": [{"currency": "GBP", "available": available, "current": current, "overdraft": 0,
        "update_timestamp": chrono::Utc::now().to_rfc3339()}], "status": "Succeeded"}),
    )
    .into_response()
}

async fn transactions(
    State(app): State<App>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = connection(&app, &h) {
        return r;
    }
    let from = q
        .get("from")
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .unwrap_or_default();
    let today = chrono::Utc::now().date_naive();
    // A fixed history: one purchase every third day, a salary on the 25th days.
    let mut out = Vec::new();
    for back in 0..60u64 {
        let day = today - chrono::Days::new(back + 1);
        if day < from || !back.is_multiple_of(3) {
            continue;
        }
        let salary = back % 30 == 0;
        let amount = if salary {
            2500.0
        } else {
            -((back % 7) as f64 * 3.0 + 4.5)
        };
        out.push(json!({"transaction_id": format!("{id}-t{}", day.format("%Y%m%d")),
            "timestamp": format!("{day}T00:00:00+00:00"), "description": if salary { "SALARY" } else { "CARD PAYMENT" },
            "transaction_type": if amount > 0.0 { "CREDIT" } else { "DEBIT" }, "transaction_category": "PURCHASE",
            "amount": amount, "currency": "GBP", "meta": {}}));
    }
    Json(json!({"results": out, "status": "Succeeded"})).into_response()
}

async fn pending(State(app): State<App>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = connection(&app, &h) {
        return r;
    }
    let today = chrono::Utc::now().date_naive();
    Json(
        json!({"results": [{"transaction_id": format!("{id}-p{}", today.format("%Y%m%d")),
        "timestamp": format!("{today}T08:30:00+00:00"), "description": "CORNER CAFE", "transaction_type": "DEBIT",
        "transaction_category": "PURCHASE", "amount": -4.5, "currency": "GBP", "meta": {}}], "status": "Succeeded"}),
    )
    .into_response()
}

async fn create_payment(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    let Some(t) = bearer(&h) else {
        return problem(401, "Unauthenticated", "no token");
    };
    if !app.book.lock().is_ok_and(|b| b.client_tokens.contains(&t)) {
        return problem(401, "Unauthenticated", "not a payments token");
    }
    let Some(key) = h
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return problem(400, "Invalid Parameters", "Idempotency-Key is required");
    };
    let sig = h.get("tl-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !verify_request(
        &app.cfg.client_signing_point,
        "POST",
        "/v3/payments",
        &[("Idempotency-Key", &key)],
        &body,
        sig,
    ) {
        return problem(401, "Invalid Request Signature", "Tl-Signature does not verify");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return problem(400, "Invalid Parameters", "body is not JSON");
    };
    let digest = switchyard_vendors::signing::sha256_hex(&body);
    let Ok(mut b) = app.book.lock() else {
        return problem(500, "Internal Server Error", "");
    };
    if let Some((d, id)) = b.keys.get(&key).cloned() {
        if d != digest {
            return problem(422, "Idempotency-Key Reuse", "the key was used with another request");
        }
        let p = b
            .payments
            .iter()
            .find(|p| p["id"] == id.as_str())
            .cloned()
            .unwrap_or(Value::Null);
        return (StatusCode::CREATED, Json(public_view(&p, true))).into_response();
    }
    let id = uuid::Uuid::new_v4().to_string();
    let p = json!({"id": id, "amount_in_minor": req["amount_in_minor"], "currency": req["currency"],
        "payment_method": req["payment_method"], "user": {"id": req["user"]["id"]}, "metadata": req["metadata"],
        "status": "authorization_required", "resource_token": new_token("rs"),
        "created_at": chrono::Utc::now().to_rfc3339()});
    b.payments.push(p.clone());
    b.keys.insert(key.clone(), (digest, id.clone()));
    drop(b);
    app.sim.record(
        "payment",
        &format!("{key} {}", req["metadata"]["payment_id"].as_str().unwrap_or("")),
    );
    (StatusCode::CREATED, Json(public_view(&p, true))).into_response()
}

fn public_view(p: &Value, created: bool) -> Value {
    if created {
        json!({"id": p["id"], "user": p["user"], "resource_token": p["resource_token"], "status": p["status"]})
    } else {
        let mut v = p.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("resource_token");
        }
        v
    }
}

async fn show_payment(State(app): State<App>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(t) = bearer(&h) else {
        return problem(401, "Unauthenticated", "no token");
    };
    let Ok(b) = app.book.lock() else {
        return problem(500, "Internal Server Error", "");
    };
    if !b.client_tokens.contains(&t) {
        return problem(401, "Unauthenticated", "not a payments token");
    }
    match b.payments.iter().find(|p| p["id"] == id.as_str()) {
        Some(p) => Json(public_view(p, false)).into_response(),
        None => problem(404, "Not Found", "no such payment"),
    }
}

/// The customer on the hosted payment page: authorizes, and is sent back; the payment then moves on.
async fn hpp(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(id), Some(token)) = (q.get("payment_id"), q.get("resource_token")) else {
        return problem(400, "Invalid Parameters", "payment_id and resource_token are required");
    };
    let ok = app.book.lock().is_ok_and(|mut b| {
        b.payments
            .iter_mut()
            .find(|p| p["id"] == id.as_str() && p["resource_token"] == token.as_str())
            .map(|p| {
                if p["status"] == "authorization_required" {
                    p["status"] = json!("authorizing");
                }
            })
            .is_some()
    });
    if !ok {
        return problem(404, "Not Found", "no such payment");
    }
    let (app2, id2) = (app.clone(), id.clone());
    tokio::spawn(async move {
        for (status, event) in [("authorized", "payment_authorized"), ("executed", "payment_executed")] {
            tokio::time::sleep(app2.cfg.complete_after).await;
            let moved = app2.book.lock().ok().and_then(|mut b| {
                let p = b.payments.iter_mut().find(|p| p["id"] == id2.as_str())?;
                (p["status"] != "failed").then(|| {
                    p["status"] = json!(status);
                    p[&format!("{status}_at")] = json!(chrono::Utc::now().to_rfc3339());
                })
            });
            if moved.is_some() {
                announce(&app2, event, &id2, None);
            }
        }
    });
    match q.get("return_uri") {
        Some(back) => Redirect::to(&format!(
            "{back}{}payment_id={id}",
            if back.contains('?') { '&' } else { '?' }
        ))
        .into_response(),
        None => StatusCode::OK.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Failure {
    failure_reason: String,
}

async fn fail(State(app): State<App>, Path(id): Path<String>, Json(f): Json<Failure>) -> Response {
    let done = app.book.lock().ok().and_then(|mut b| {
        let p = b.payments.iter_mut().find(|p| p["id"] == id.as_str())?;
        p["status"] = json!("failed");
        p["failure_reason"] = json!(f.failure_reason);
        Some(())
    });
    match done {
        Some(()) => {
            announce(&app, "payment_failed", &id, Some(&f.failure_reason));
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn announce(app: &App, kind: &str, payment_id: &str, reason: Option<&str>) {
    if app.cfg.webhook_url.is_empty() {
        return;
    }
    let mut body = json!({"type": kind, "event_id": uuid::Uuid::new_v4().to_string(), "event_version": 1,
        "payment_id": payment_id, "payment_method": {"type": "bank_transfer"}});
    if let Some(r) = reason {
        body["failure_reason"] = json!(r);
        body["failure_stage"] = json!("authorizing");
    }
    let text = body.to_string();
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = reqwest::Url::parse(&app.cfg.webhook_url)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let jku = format!("{}/.well-known/jwks", app.cfg.public_url);
    let Ok(sig) = sign_webhook(&app.cfg.webhook_key, KID, &jku, &path, &ts, text.as_bytes()) else {
        return;
    };
    app.sim.deliver(
        app.cfg.webhook_url.clone(),
        vec![("Tl-Signature".into(), sig), ("X-Tl-Webhook-Timestamp".into(), ts)],
        text,
        payment_id.to_string(),
        None,
    );
}

async fn jwks(State(app): State<App>) -> Response {
    let Ok((_, point)) = es_sign(Es::Es512, &app.cfg.webhook_key, b"jwks") else {
        return problem(500, "Internal Server Error", "");
    };
    let Some((x, y)) = point_xy(&point) else {
        return problem(500, "Internal Server Error", "");
    };
    Json(json!({"keys": [{"kty": "EC", "crv": "P-521", "alg": "ES512", "kid": KID, "x": x, "y": y}]})).into_response()
}
