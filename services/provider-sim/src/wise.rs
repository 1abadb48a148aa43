//! Wise-shaped payouts simulator: quotes, recipients, transfers keyed by `customerTransactionId`
//! (a re-send returns the same transfer), funding from the balance (once: a second funding is
//! refused with `transfer.invalid-state`), and transfer states that move on by themselves:
//! processing → funds_converted → outgoing_payment_sent after `complete_after`, each change
//! announced by a `transfers#state-change` webhook signed with the simulator's RSA key
//! (`X-Signature-SHA256`, base64 RSA-SHA256 over the body). Every funding is an execution in the
//! ledger (`payout`, keyed by the customerTransactionId and the reference).
//!
//! Returns: `POST /_sim/transfers/{id}/bounce` bounces a sent transfer back (the beneficiary's bank
//! refused it): bounced_back, then cancelled, then funds_refunded, each announced. The simulator's
//! clock (`POST /_sim/clock {"advance_hours"}`) dates later notices that much later, so a return can
//! come "weeks later" in a test that takes seconds.
//!
//! Statements: `POST /_sim/reports` drops a balance statement (CSV, Wise's columns, the payee's
//! account included) of the transfers not in one yet; `POST /_sim/reports/lines {kind (payout,
//! return, correction, batch), transfer_id, reference, amount_minor, currency, payee_account}` adds
//! a line to the next one.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
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

use crate::sim::{Sim, parse_json, with_faults};

#[derive(Clone)]
pub struct Config {
    pub api_token: String,
    pub complete_after: Duration,
    /// Where state changes are delivered (none when empty), and the key they are signed with
    /// (PKCS#8 DER).
    pub webhook_url: String,
    /// Where balance statements are dropped.
    pub reports_dir: String,
    /// Where the book is kept across restarts (empty: in memory only).
    pub state_file: String,
    pub private_key: Vec<u8>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Book {
    quotes: HashMap<String, Value>,
    recipients: HashMap<i64, Value>,
    transfers: HashMap<i64, Value>,
    by_ctid: HashMap<String, i64>,
    /// How far the simulator's clock is ahead of the real one (the time-acceleration knob).
    offset_hours: f64,
    /// Transfers whose key (customerTransactionId and reference) contains one of these stay in
    /// processing.
    holds: Vec<String>,
    /// Transfers already in a statement, and lines to add to the next one.
    reported: std::collections::HashSet<i64>,
    extra_lines: Vec<ExtraLine>,
}

/// A line for the next statement: money back for a transfer (`return`), a correction, money sent
/// that no transfer here made (`payout`), or one line funding several transfers (`batch`, its id
/// `BATCH-<transfer_id>`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct ExtraLine {
    kind: String,
    transfer_id: i64,
    reference: Option<String>,
    amount_minor: i64,
    currency: String,
    #[serde(default)]
    payee_account: Option<String>,
}

#[derive(Clone)]
struct App {
    sim: Sim,
    cfg: Config,
    book: Arc<Mutex<Book>>,
    ids: Arc<AtomicI64>,
}

pub fn error_body(status: u16) -> Value {
    match status {
        400 | 422 => {
            json!({"errors": [{"code": "NOT_VALID", "message": "Invalid request", "path": "", "arguments": []}]})
        }
        401 | 403 => json!({"error": "unauthorized", "error_description": "Invalid token"}),
        _ => json!({"timestamp": chrono::Utc::now().to_rfc3339(), "status": status, "error": "Internal Server Error",
                    "message": "", "path": ""}),
    }
}

pub fn router(sim: Sim, cfg: Config) -> Router {
    let app = App {
        sim: sim.clone(),
        cfg,
        book: Arc::default(),
        // Unique across restarts of the simulator (webhook receivers and tests key on them).
        ids: Arc::new(AtomicI64::new(chrono::Utc::now().timestamp_micros())),
    };
    crate::sim::persist(&app.cfg.state_file, app.book.clone());
    let api = Router::new()
        .route("/v3/profiles/{profile}/quotes", post(quote))
        .route("/v1/accounts", post(recipient))
        .route("/v1/transfers", post(transfer).get(list))
        .route("/v1/transfers/{id}", get(show))
        .route("/v3/profiles/{profile}/transfers/{id}/payments", post(fund))
        .route("/v1/transfers/{id}/cancel", axum::routing::put(cancel))
        .with_state(app.clone());
    let control = Router::new()
        .route("/_sim/clock", post(clock))
        .route("/_sim/transfers/{id}/bounce", post(bounce))
        .route("/_sim/hold", post(hold))
        .route("/_sim/reports", post(report))
        .route("/_sim/reports/lines", post(add_line))
        .with_state(app);
    with_faults(api, sim, error_body).merge(control)
}

/// `GET /v1/transfers?profile=&createdDateStart=&limit=&offset=`: transfers created since a date,
/// as Wise lists them, in pages.
async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let since = q.get("createdDateStart").cloned().unwrap_or_default();
    let limit: usize = q
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut all: Vec<Value> = app
        .book
        .lock()
        .map(|b| {
            b.transfers
                .values()
                .filter(|t| t["created"].as_str().unwrap_or_default() >= since.as_str())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    all.sort_by_key(|t| t["id"].as_i64().unwrap_or(0));
    Json(all.into_iter().skip(offset).take(limit).collect::<Vec<_>>()).into_response()
}

async fn add_line(State(app): State<App>, Json(l): Json<ExtraLine>) -> StatusCode {
    if let Ok(mut b) = app.book.lock() {
        b.extra_lines.push(l);
    }
    StatusCode::NO_CONTENT
}

/// Drops a balance statement: every funded transfer not in one yet (money sent, negative), then
/// the lines added for it.
async fn report(State(app): State<App>) -> Response {
    use crate::sim::csv;
    let text = app.book.lock().ok().map(|mut b| {
        let mut rows = vec![
            "\"TransferWise ID\",\"Date\",\"Amount\",\"Currency\",\"Description\",\"Payment Reference\",\"Running Balance\",\"Payee Name\",\"Payee Account Number\",\"Total fees\""
                .to_string(),
        ];
        let today = chrono::Utc::now().format("%d-%m-%Y").to_string();
        let mut ids: Vec<i64> = b
            .transfers
            .iter()
            .filter(|(id, t)| {
                !b.reported.contains(*id) && t["status"] != "incoming_payment_waiting" && t["status"] != "cancelled"
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        for id in &ids {
            let t = &b.transfers[id];
            let cur = t["targetCurrency"].as_str().unwrap_or_default().to_string();
            // The major-unit decimal as the statement writes it ("9000", not "9000.0").
            let value = t["targetValue"].to_string();
            let value = match value.split_once('.') {
                Some((i, f)) if f.trim_end_matches('0').is_empty() => i.to_string(),
                _ => value,
            };
            let payee = t["targetAccount"]
                .as_i64()
                .and_then(|a| b.recipients.get(&a))
                .and_then(|r| r["details"]["IBAN"].as_str().or(r["details"]["accountNumber"].as_str()))
                .unwrap_or_default();
            rows.push(format!(
                "TRANSFER-{id},{today},-{value},{cur},Sent money,{},,,{},0.00",
                csv(t["reference"].as_str().unwrap_or_default()),
                csv(payee)
            ));
        }
        for l in std::mem::take(&mut b.extra_lines) {
            let amount = switchyard_model::money::decimal(l.amount_minor, &l.currency).unwrap_or_default();
            let (id, signed, description) = match l.kind.as_str() {
                "return" => ("TRANSFER", amount, "Money returned".to_string()),
                "correction" => (
                    "TRANSFER",
                    format!("-{amount}"),
                    format!("Correction of transfer {}", l.transfer_id),
                ),
                "batch" => ("BATCH", format!("-{amount}"), "Batch payment".to_string()),
                _ => ("TRANSFER", format!("-{amount}"), "Sent money".to_string()),
            };
            rows.push(format!(
                "{id}-{},{today},{signed},{},{},{},,,{},0.00",
                l.transfer_id,
                l.currency,
                csv(&description),
                csv(l.reference.as_deref().unwrap_or_default()),
                csv(l.payee_account.as_deref().unwrap_or_default())
            ));
        }
        b.reported.extend(ids);
        (rows.len() - 1, rows.join("\n") + "\n")
    });
    let Some((lines, text)) = text else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match crate::sim::write_report(&app.cfg.reports_dir, "wise-statement", &text) {
        Ok(file) => Json(json!({"file": file, "lines": lines})).into_response(),
        Err(e) => (StatusCode::CONFLICT, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Hold {
    matcher: String,
}

async fn hold(State(app): State<App>, Json(h): Json<Hold>) -> StatusCode {
    if let Ok(mut b) = app.book.lock() {
        b.holds.push(h.matcher);
    }
    StatusCode::NO_CONTENT
}

/// Cancels a transfer not yet converted (waiting for its funds, or processing); a later one is
/// refused with `transfer.invalid-state`, as Wise does.
async fn cancel(State(app): State<App>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(r) = authorised(&app, &headers) {
        return r;
    }
    let result = app.book.lock().ok().and_then(|mut b| {
        let t = b.transfers.get_mut(&id)?;
        let status = t["status"].as_str().unwrap_or_default().to_string();
        if status != "incoming_payment_waiting" && status != "processing" {
            return Some(Err(()));
        }
        t["status"] = json!("cancelled");
        let key = format!(
            "{} {}",
            t["customerTransactionId"].as_str().unwrap_or_default(),
            t["reference"].as_str().unwrap_or_default()
        );
        Some(Ok((t.clone(), status, key)))
    });
    match result {
        None => (StatusCode::NOT_FOUND, Json(error_body(404))).into_response(),
        Some(Err(())) => invalid(
            "transfer.invalid-state",
            "Transfer can no longer be cancelled",
            "transferId",
        ),
        Some(Ok((t, previous, key))) => {
            app.sim.record("cancel", &key);
            announce(&app, &t, &previous, &key);
            Json(t).into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct ClockMove {
    advance_hours: f64,
}

async fn clock(State(app): State<App>, Json(m): Json<ClockMove>) -> StatusCode {
    if let Ok(mut b) = app.book.lock() {
        b.offset_hours += m.advance_hours;
    }
    StatusCode::NO_CONTENT
}

/// The beneficiary's bank sends a transfer back: bounced_back → cancelled → funds_refunded.
async fn bounce(State(app): State<App>, Path(id): Path<i64>) -> Response {
    let found = app.book.lock().ok().and_then(|b| {
        let t = b.transfers.get(&id)?;
        let key = format!(
            "{} {}",
            t["customerTransactionId"].as_str().unwrap_or_default(),
            t["reference"].as_str().unwrap_or_default()
        );
        Some((t["status"].as_str().unwrap_or_default().to_string(), key))
    });
    let Some((status, key)) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if status != "outgoing_payment_sent" {
        return invalid(
            "transfer.invalid-state",
            "Only a sent transfer can bounce",
            "transferId",
        );
    }
    let mut previous = status;
    for state in ["bounced_back", "cancelled", "funds_refunded"] {
        let changed = app.book.lock().ok().and_then(|mut b| {
            let t = b.transfers.get_mut(&id)?;
            t["status"] = json!(state);
            Some(t.clone())
        });
        if let Some(t) = changed {
            announce(&app, &t, &previous, &key);
        }
        previous = state.to_string();
        // Each step a moment later (their own times order them).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

fn key_of_transfer(b: &Book, id: i64) -> String {
    b.transfers
        .get(&id)
        .map(|t| {
            format!(
                "{} {}",
                t["customerTransactionId"].as_str().unwrap_or_default(),
                t["reference"].as_str().unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

/// Announces a transfer's state change as Wise does: signed with its RSA key, delivered with retries.
fn announce(app: &App, t: &Value, previous: &str, key: &str) {
    if app.cfg.webhook_url.is_empty() {
        return;
    }
    let offset = app.book.lock().map(|b| b.offset_hours).unwrap_or(0.0);
    let now = (chrono::Utc::now() + chrono::Duration::milliseconds((offset * 3_600_000.0) as i64))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = json!({"data": {"resource": {"type": "transfer", "id": t["id"], "profile_id": 2001,
            "account_id": t["targetAccount"]}, "current_state": t["status"], "previous_state": previous,
            "occurred_at": now},
        "subscription_id": "sub-local", "event_type": "transfers#state-change", "schema_version": "2.0.0",
        "sent_at": now})
    .to_string();
    let Ok(sig) = switchyard_vendors::signing::rsa_sha256_sign(&app.cfg.private_key, body.as_bytes()) else {
        tracing::warn!("webhook not signed: bad private key");
        return;
    };
    app.sim.deliver(
        app.cfg.webhook_url.clone(),
        vec![
            ("X-Signature-SHA256".into(), switchyard_vendors::signing::b64(&sig)),
            ("X-Delivery-Id".into(), uuid::Uuid::new_v4().to_string()),
        ],
        body,
        key.to_string(),
        None,
    );
}

fn authorised(app: &App, h: &HeaderMap) -> Result<(), Response> {
    let ok = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == app.cfg.api_token);
    if ok {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, Json(error_body(401))).into_response())
    }
}

fn invalid(code: &str, message: &str, path: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"errors": [{"code": code, "message": message, "path": path, "arguments": []}]})),
    )
        .into_response()
}

async fn quote(State(app): State<App>, Path(profile): Path<String>, h: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(amount) = req["targetAmount"].as_f64().filter(|a| *a > 0.0) else {
        return invalid("NOT_VALID", "targetAmount must be positive", "targetAmount");
    };
    let id = uuid::Uuid::new_v4().to_string();
    let q = json!({"id": id, "profile": profile, "sourceCurrency": req["sourceCurrency"], "targetCurrency": req["targetCurrency"],
        "targetAmount": amount, "rate": 1, "rateType": "FIXED", "providedAmountType": "TARGET",
        "rateExpirationTime": (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339(),
        "paymentOptions": [{"payIn": "BALANCE", "payOut": "BANK_TRANSFER", "fee": {"total": 0.41}, "disabled": false}]});
    if let Ok(mut b) = app.book.lock() {
        b.quotes.insert(id, q.clone());
    }
    Json(q).into_response()
}

async fn recipient(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let field = match req["type"].as_str() {
        Some("iban") => "IBAN",
        Some("sort_code") => "accountNumber",
        Some("aba") => "accountNumber",
        _ => return invalid("NOT_VALID", "unsupported recipient type", "type"),
    };
    if req["details"][field].as_str().is_none_or(str::is_empty) {
        return invalid("NOT_VALID", "account details missing", field);
    }
    let id = app.ids.fetch_add(1, Ordering::Relaxed);
    let mut r = req.clone();
    r["id"] = json!(id);
    if let Ok(mut b) = app.book.lock() {
        b.recipients.insert(id, r.clone());
    }
    Json(r).into_response()
}

async fn transfer(State(app): State<App>, h: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(ctid) = req["customerTransactionId"].as_str().map(str::to_string) else {
        return invalid(
            "NOT_VALID",
            "customerTransactionId is required",
            "customerTransactionId",
        );
    };
    let Ok(mut b) = app.book.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // The same customerTransactionId: the same transfer, not a second one.
    if let Some(t) = b.by_ctid.get(&ctid).and_then(|id| b.transfers.get(id)) {
        return Json(t.clone()).into_response();
    }
    let Some(quote) = req["quoteUuid"].as_str().and_then(|q| b.quotes.get(q)).cloned() else {
        return invalid("NOT_VALID", "quote not found", "quoteUuid");
    };
    let Some(target) = req["targetAccount"].as_i64().filter(|a| b.recipients.contains_key(a)) else {
        return invalid("NOT_VALID", "recipient not found", "targetAccount");
    };
    let id = app.ids.fetch_add(1, Ordering::Relaxed);
    let t = json!({"id": id, "targetAccount": target, "quoteUuid": quote["id"], "status": "incoming_payment_waiting",
        "reference": req["details"]["reference"], "customerTransactionId": ctid,
        "targetValue": quote["targetAmount"], "targetCurrency": quote["targetCurrency"],
        "created": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()});
    b.transfers.insert(id, t.clone());
    b.by_ctid.insert(ctid, id);
    Json(t).into_response()
}

async fn show(State(app): State<App>, Path(id): Path<i64>, h: HeaderMap) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    match app.book.lock().ok().and_then(|b| b.transfers.get(&id).cloned()) {
        Some(t) => Json(t).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"errors": [{"code": "transfer.not-found", "message": "Transfer not found", "path": "id", "arguments": [id]}]})),
        )
            .into_response(),
    }
}

async fn fund(State(app): State<App>, Path((_, id)): Path<(String, i64)>, h: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&app, &h) {
        return r;
    }
    let req: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if req["type"] != "BALANCE" {
        return invalid("NOT_VALID", "only BALANCE funding", "type");
    }
    let (key, funded) = {
        let Ok(mut b) = app.book.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let Some(t) = b.transfers.get_mut(&id) else {
            return invalid("transfer.not-found", "Transfer not found", "transferId");
        };
        if t["status"] != "incoming_payment_waiting" {
            return invalid(
                "transfer.invalid-state",
                "Transfer is in an invalid state for this operation",
                "transferId",
            );
        }
        t["status"] = json!("processing");
        let key = format!(
            "{} {}",
            t["customerTransactionId"].as_str().unwrap_or_default(),
            t["reference"].as_str().unwrap_or_default()
        );
        (key, t.clone())
    };
    app.sim.record("payout", &key);
    announce(&app, &funded, "incoming_payment_waiting", &key);
    // The transfer moves on by itself.
    let (moving, after) = (app.clone(), app.cfg.complete_after);
    tokio::spawn(async move {
        let mut previous = "processing";
        for state in ["funds_converted", "outgoing_payment_sent"] {
            tokio::time::sleep(after).await;
            let changed = moving.book.lock().ok().and_then(|mut b| {
                let held = b.holds.iter().any(|h| key_of_transfer(&b, id).contains(h.as_str()));
                let t = b.transfers.get_mut(&id)?;
                // A cancelled transfer stays cancelled; a held one stays where it is.
                if held || t["status"] == "cancelled" {
                    return None;
                }
                t["status"] = json!(state);
                Some(t.clone())
            });
            if let Some(t) = changed {
                announce(&moving, &t, previous, &key);
            }
            previous = state;
        }
    });
    (
        StatusCode::CREATED,
        Json(json!({"type": "BALANCE", "status": "COMPLETED", "errorCode": null})),
    )
        .into_response()
}
