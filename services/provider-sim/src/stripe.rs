//! Stripe-shaped payouts simulator (Connect): external bank accounts on a connected account, and
//! payouts created form-encoded with an `Idempotency-Key` remembered for 24 hours of the simulator's
//! clock (`POST /_sim/clock {"advance_hours"}` moves it): within that, a re-send replays the first
//! answer (or is refused with `idempotency_error` for other parameters); after it, a re-send
//! **executes again**, as Stripe's does. Payouts are searchable by metadata
//! (`GET /v1/payouts/search?query=metadata['payout_id']:'...'`) and move pending → in_transit → paid
//! after `complete_after`, each change announced by a signed webhook (`payout.created`,
//! `payout.updated`, `payout.paid`; `Stripe-Signature: t=,v1=` over "t.body" with the endpoint's
//! secret). `POST /_sim/payouts/{id}/fail {"failure_code"}` fails a payout, even a paid one (a bank
//! returning it), with a `payout.failed` event. Every payout created is an execution in the ledger
//! (`payout`, keyed by its `payout_id` metadata). `POST /v1/payouts/{id}/cancel` cancels a pending
//! payout (`payout.canceled`; a later one is refused with `invalid_request_error`);
//! `POST /_sim/hold {"matcher"}` keeps payouts whose metadata id contains it pending (a test's time
//! to cancel).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sim::{Sim, with_faults};

#[derive(Clone)]
pub struct Config {
    pub api_key: String,
    pub complete_after: Duration,
    /// Where events are delivered (none when empty), and the endpoint's signing secret.
    pub webhook_url: String,
    pub webhook_secret: String,
    /// Where settlement reports are dropped.
    pub reports_dir: String,
    /// Where the book is kept across restarts (empty: in memory only).
    pub state_file: String,
}

/// A remembered idempotency key: when it was first used (simulator hours), the request's
/// parameters, and the answer given.
type KeyUse = (f64, Vec<(String, String)>, Value);

#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Book {
    payouts: Vec<Value>,
    keys: HashMap<String, KeyUse>,
    /// Hours the simulator's clock is ahead of the real one.
    offset_hours: f64,
    /// Payouts whose metadata id contains one of these stay pending.
    holds: Vec<String>,
    /// Payouts already in a settlement report, and lines to add to the next one.
    reported: std::collections::HashSet<String>,
    extra_lines: Vec<ExtraLine>,
}

/// A line for the next report that no payout here made (a correction, a late return, a line we
/// never sent).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct ExtraLine {
    /// payout | payout_reversal | adjustment
    category: String,
    payout: String,
    payout_id: Option<String>,
    amount_minor: i64,
    currency: String,
}

#[derive(Clone)]
struct App {
    sim: Sim,
    cfg: Config,
    book: Arc<Mutex<Book>>,
    ids: Arc<AtomicU64>,
}

/// How long Stripe remembers an idempotency key.
const KEY_HOURS: f64 = 24.0;

pub fn error_body(status: u16) -> Value {
    let (kind, message) = match status {
        400 => ("invalid_request_error", "Invalid request"),
        401 => ("invalid_request_error", "Invalid API Key provided"),
        429 => ("rate_limit_error", "Too many requests"),
        _ => ("api_error", "An unknown error occurred"),
    };
    json!({"error": {"type": kind, "message": message}})
}

fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": kind, "code": code, "message": message}})),
    )
        .into_response()
}

pub fn router(sim: Sim, cfg: Config) -> Router {
    let app = App {
        sim: sim.clone(),
        cfg,
        book: Arc::default(),
        ids: Arc::default(),
    };
    crate::sim::persist(&app.cfg.state_file, app.book.clone());
    let api = Router::new()
        .route("/v1/accounts/{acct}/external_accounts", post(external_account))
        .route("/v1/payouts", post(create).get(list))
        .route("/v1/payouts/search", get(search))
        .route("/v1/payouts/{id}", get(show))
        .route("/v1/payouts/{id}/cancel", post(cancel))
        .with_state(app.clone());
    let control = Router::new()
        .route("/_sim/clock", post(clock))
        .route("/_sim/payouts/{id}/fail", post(fail))
        .route("/_sim/hold", post(hold))
        .route("/_sim/payouts/{id}/duplicate", post(duplicate))
        .route("/_sim/payouts/{id}/amount", post(set_amount))
        .route("/_sim/payouts/ghost", post(ghost))
        .route("/_sim/reports", post(report))
        .route("/_sim/reports/lines", post(add_line))
        .with_state(app);
    with_faults(api, sim, error_body).merge(control)
}

/// Announces a payout's change as Stripe does: an event, signed, delivered with retries.
fn announce(app: &App, kind: &str, payout: &Value) {
    if app.cfg.webhook_url.is_empty() {
        return;
    }
    let t = chrono::Utc::now().timestamp();
    let event = json!({"id": id(app, "evt"), "object": "event", "api_version": "2024-06-20", "created": t,
        "livemode": false, "type": kind, "data": {"object": payout}});
    let body = event.to_string();
    let sig = switchyard_vendors::signing::hex(&switchyard_vendors::signing::hmac(
        switchyard_vendors::signing::Alg::Sha256,
        app.cfg.webhook_secret.as_bytes(),
        format!("{t}.{body}").as_bytes(),
    ));
    app.sim.deliver(
        app.cfg.webhook_url.clone(),
        vec![("Stripe-Signature".into(), format!("t={t},v1={sig}"))],
        body,
        metadata_id(payout),
        None,
    );
}

#[derive(Deserialize)]
struct Failure {
    failure_code: String,
}

/// A payout fails, even after it was paid (the bank returns it).
async fn fail(State(app): State<App>, Path(pid): Path<String>, Json(f): Json<Failure>) -> Response {
    let failed = app.book.lock().ok().and_then(|mut b| {
        let p = b.payouts.iter_mut().find(|p| p["id"] == pid)?;
        p["status"] = json!("failed");
        p["failure_code"] = json!(f.failure_code);
        Some(p.clone())
    });
    match failed {
        Some(p) => {
            announce(&app, "payout.failed", &p);
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn now_hours(b: &Book) -> f64 {
    chrono::Utc::now().timestamp() as f64 / 3600.0 + b.offset_hours
}

#[derive(Deserialize)]
struct ClockMove {
    advance_hours: f64,
}

async fn clock(State(app): State<App>, Json(m): Json<ClockMove>) -> StatusCode {
    if let Ok(mut b) = app.book.lock() {
        b.offset_hours += m.advance_hours;
    }
    StatusCode::NO_CONTENT
}

fn authorised(app: &App, h: &HeaderMap) -> Result<(), Response> {
    let key_ok = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == app.cfg.api_key);
    if !key_ok {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided",
        ));
    }
    let account_ok = h
        .get("stripe-account")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("acct_"));
    if !account_ok {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("account_invalid"),
            "Stripe-Account must name a connected account",
        ));
    }
    Ok(())
}

/// A new object id, unique across restarts of the simulator (as Stripe's are: a webhook receiver
/// de-duplicates by them).
fn id(app: &App, prefix: &str) -> String {
    let n = app.ids.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}{n:04x}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

async fn external_account(
    State(app): State<App>,
    Path(acct): Path<String>,
    h: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    let number = f.get("external_account[account_number]").cloned().unwrap_or_default();
    if number.len() < 4 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: external_account[account_number].",
        );
    }
    let last4: String = number.chars().skip(number.chars().count() - 4).collect();
    Json(json!({"id": id(&app, "ba"), "object": "bank_account", "account": acct,
        "country": f.get("external_account[country]"), "currency": f.get("external_account[currency]"),
        "last4": last4, "status": "new"}))
    .into_response()
}

async fn create(State(app): State<App>, h: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    let Some(amount) = f.get("amount").and_then(|a| a.parse::<i64>().ok()).filter(|a| *a > 0) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
            "Invalid integer: amount",
        );
    };
    let mut params: Vec<(String, String)> = f.clone().into_iter().collect();
    params.sort();
    let key = h
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Ok(mut b) = app.book.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let now = now_hours(&b);
    if let Some(k) = &key {
        // Keys older than 24 hours are forgotten: a re-send then executes again.
        b.keys.retain(|_, (at, _, _)| now - *at < KEY_HOURS);
        if let Some((_, seen, answer)) = b.keys.get(k) {
            if *seen != params {
                return error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                );
            }
            return Json(answer.clone()).into_response();
        }
    }
    let metadata: serde_json::Map<String, Value> = f
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_string(), json!(v))))
        .collect();
    let payout = json!({"id": id(&app, "po"), "object": "payout", "amount": amount, "currency": f.get("currency"),
        "destination": f.get("destination"), "method": f.get("method").cloned().unwrap_or("standard".into()),
        "statement_descriptor": f.get("statement_descriptor"), "metadata": metadata, "status": "pending",
        "failure_code": null, "failure_message": null, "reconciliation_status": "not_applicable",
        "arrival_date": chrono::Utc::now().timestamp() + 86_400, "type": "bank_account", "livemode": false,
        "created": chrono::Utc::now().timestamp()});
    b.payouts.push(payout.clone());
    if let Some(k) = key {
        b.keys.insert(k, (now, params, payout.clone()));
    }
    drop(b);
    let reference = metadata_id(&payout);
    app.sim.record("payout", &reference);
    announce(&app, "payout.created", &payout);
    let (moving, after, pid) = (app.clone(), app.cfg.complete_after, payout["id"].clone());
    tokio::spawn(async move {
        for (state, kind) in [("in_transit", "payout.updated"), ("paid", "payout.paid")] {
            tokio::time::sleep(after).await;
            let changed = moving.book.lock().ok().and_then(|mut b| {
                let held = b
                    .holds
                    .iter()
                    .any(|h| metadata_id_of(&b.payouts, &pid).contains(h.as_str()));
                let p = b.payouts.iter_mut().find(|p| p["id"] == pid)?;
                // A payout failed or cancelled meanwhile stays so; a held one stays pending.
                (p["status"] != "failed" && p["status"] != "canceled" && !held).then(|| {
                    p["status"] = json!(state);
                    p.clone()
                })
            });
            if let Some(p) = changed {
                announce(&moving, kind, &p);
            }
        }
    });
    Json(payout).into_response()
}

fn metadata_id_of(payouts: &[Value], id: &Value) -> String {
    payouts
        .iter()
        .find(|p| p["id"] == *id)
        .map(metadata_id)
        .unwrap_or_default()
}

/// `GET /v1/payouts?created[gte]=&limit=&starting_after=`: payouts newest first, as Stripe lists
/// them, in pages.
async fn list(State(app): State<App>, h: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    let since: i64 = q.get("created[gte]").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(10).clamp(1, 100);
    let all: Vec<Value> = app
        .book
        .lock()
        .map(|b| {
            b.payouts
                .iter()
                .rev()
                .filter(|p| p["created"].as_i64().unwrap_or(0) >= since)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let start = match q.get("starting_after") {
        Some(after) => all.iter().position(|p| p["id"] == *after).map_or(all.len(), |i| i + 1),
        None => 0,
    };
    let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < all.len();
    Json(json!({"object": "list", "url": "/v1/payouts", "has_more": has_more, "data": page})).into_response()
}

async fn add_line(State(app): State<App>, Json(l): Json<ExtraLine>) -> StatusCode {
    if let Ok(mut b) = app.book.lock() {
        b.extra_lines.push(l);
    }
    StatusCode::NO_CONTENT
}

/// Drops an itemized payout reconciliation report: every payout not reported yet (failed and
/// cancelled ones are not money out), then the lines added for it.
async fn report(State(app): State<App>) -> Response {
    let text = app.book.lock().ok().map(|mut b| {
        let mut rows = vec![
            "balance_transaction_id,created_utc,reporting_category,currency,gross,fee,net,automatic_payout_id,payout_metadata[payout_id],description"
                .to_string(),
        ];
        let when = |secs: i64| {
            chrono::DateTime::from_timestamp(secs, 0)
                .unwrap_or_default()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        let fresh: Vec<Value> = b
            .payouts
            .iter()
            .filter(|p| p["status"] != "failed" && p["status"] != "canceled")
            .filter(|p| !b.reported.contains(p["id"].as_str().unwrap_or_default()))
            .cloned()
            .collect();
        let mut line = |category: &str, id: &str, payout_id: &str, minor: i64, currency: &str, secs: i64, text: &str| {
            let cur = currency.to_uppercase();
            let gross = switchyard_model::money::decimal(minor, &cur).unwrap_or_default();
            let signed = if category == "payout_reversal" { gross.clone() } else { format!("-{gross}") };
            rows.push(format!(
                "txn_{},{},{category},{},{signed},0.00,{signed},{id},{},{}",
                &uuid::Uuid::new_v4().simple().to_string()[..16],
                when(secs),
                currency.to_lowercase(),
                crate::sim::csv(payout_id),
                crate::sim::csv(text)
            ));
        };
        for p in &fresh {
            line(
                "payout",
                p["id"].as_str().unwrap_or_default(),
                &metadata_id(p),
                p["amount"].as_i64().unwrap_or(0),
                p["currency"].as_str().unwrap_or_default(),
                p["created"].as_i64().unwrap_or(0),
                "STRIPE PAYOUT",
            );
        }
        let now = chrono::Utc::now().timestamp();
        for l in std::mem::take(&mut b.extra_lines) {
            line(&l.category, &l.payout, l.payout_id.as_deref().unwrap_or(""), l.amount_minor, &l.currency, now, "adjusted by the bank");
        }
        for p in &fresh {
            b.reported.insert(p["id"].as_str().unwrap_or_default().to_string());
        }
        (rows.len() - 1, rows.join("\n") + "\n")
    });
    let Some((lines, text)) = text else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match crate::sim::write_report(&app.cfg.reports_dir, "stripe-payout-reconciliation", &text) {
        Ok(file) => Json(json!({"file": file, "lines": lines})).into_response(),
        Err(e) => (StatusCode::CONFLICT, e.to_string()).into_response(),
    }
}

/// Injected discrepancy: the payout executed a second time (a new payout, the same metadata).
async fn duplicate(State(app): State<App>, Path(pid): Path<String>) -> Response {
    let copy = app.book.lock().ok().and_then(|mut b| {
        let mut p = b.payouts.iter().find(|p| p["id"] == pid)?.clone();
        p["id"] = json!(id(&app, "po"));
        b.payouts.push(p.clone());
        Some(p)
    });
    match copy {
        Some(p) => {
            app.sim.record("payout", &metadata_id(&p));
            Json(p).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
struct NewAmount {
    amount: i64,
}

/// Injected discrepancy: the payout's amount reported differently from now on.
async fn set_amount(State(app): State<App>, Path(pid): Path<String>, Json(a): Json<NewAmount>) -> StatusCode {
    let changed = app.book.lock().ok().and_then(|mut b| {
        let p = b.payouts.iter_mut().find(|p| p["id"] == pid)?;
        p["amount"] = json!(a.amount);
        Some(())
    });
    if changed.is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[derive(Deserialize)]
struct Ghost {
    payout_id: String,
    amount: i64,
    currency: String,
}

/// Injected discrepancy: a paid payout nobody asked for (our id in its metadata).
async fn ghost(State(app): State<App>, Json(g): Json<Ghost>) -> Response {
    let p = json!({"id": id(&app, "po"), "object": "payout", "amount": g.amount, "currency": g.currency.to_lowercase(),
        "metadata": {"payout_id": g.payout_id}, "status": "paid", "failure_code": null, "type": "bank_account",
        "livemode": false, "created": chrono::Utc::now().timestamp()});
    if let Ok(mut b) = app.book.lock() {
        b.payouts.push(p.clone());
    }
    app.sim.record("payout", &metadata_id(&p));
    Json(p).into_response()
}

#[derive(Deserialize)]
struct Hold {
    matcher: String,
}

async fn hold(State(app): State<App>, Json(h): Json<Hold>) -> StatusCode {
    if let Ok(mut b) = app.book.lock() {
        b.holds.push(h.matcher);
    }
    StatusCode::NO_CONTENT
}

/// Cancels a pending payout, as Stripe does; any other is refused.
async fn cancel(State(app): State<App>, headers: HeaderMap, Path(pid): Path<String>) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let result = app.book.lock().ok().and_then(|mut b| {
        let p = b.payouts.iter_mut().find(|p| p["id"] == pid)?;
        if p["status"] != "pending" {
            return Some(Err(p["status"].as_str().unwrap_or_default().to_string()));
        }
        p["status"] = json!("canceled");
        Some(Ok(p.clone()))
    });
    match result {
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such payout: '{pid}'"), "param": "id"}})),
        )
            .into_response(),
        Some(Err(status)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"type": "invalid_request_error", "code": "payout_not_cancelable",
                "message": format!("Payouts can only be canceled while they are pending; this one is {status}.")}})),
        )
            .into_response(),
        Some(Ok(p)) => {
            app.sim.record("cancel", &metadata_id(&p));
            announce(&app, "payout.canceled", &p);
            Json(p).into_response()
        }
    }
}

fn metadata_id(p: &Value) -> String {
    p["metadata"]["payout_id"].as_str().unwrap_or_default().to_string()
}

#[derive(Deserialize)]
struct SearchQuery {
    query: String,
}

async fn search(State(app): State<App>, h: HeaderMap, Query(q): Query<SearchQuery>) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    // The one query shape the simulator understands: metadata['<field>']:'<value>'.
    let parsed = q
        .query
        .strip_prefix("metadata['")
        .and_then(|r| r.split_once("']:'"))
        .and_then(|(field, v)| Some((field.to_string(), v.strip_suffix('\'')?.to_string())));
    let Some((field, value)) = parsed else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("search_query_invalid"),
            "Unsupported query",
        );
    };
    let data: Vec<Value> = app
        .book
        .lock()
        .map(|b| {
            b.payouts
                .iter()
                .filter(|p| p["metadata"][&field] == value)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Json(json!({"object": "search_result", "url": "/v1/payouts/search", "has_more": false, "data": data}))
        .into_response()
}

async fn show(State(app): State<App>, h: HeaderMap, Path(pid): Path<String>) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    match app
        .book
        .lock()
        .ok()
        .and_then(|b| b.payouts.iter().find(|p| p["id"] == pid).cloned())
    {
        Some(p) => Json(p).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            "No such payout",
        ),
    }
}
