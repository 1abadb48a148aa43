//! SEON-shaped simulator (Fraud API v2): `POST /SeonRestService/fraud-api/v2` with `X-API-KEY`, a
//! flat body; a `fraud_score` (0–100), a `state` and the rules that applied. Errors: `success:
//! false` with an `error.code`.
//!
//! Personas by `user_id`: `fraudster` → DECLINE; `risky` → REVIEW; otherwise APPROVE. An amount of
//! 10,000 or more (major units) applies an amount rule and asks for review at least.

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

use crate::sim::{Sim, with_faults};

#[derive(Clone)]
pub struct Config {
    pub api_key: String,
}

#[derive(Clone)]
struct App {
    sim: Sim,
    cfg: Config,
}

pub fn error_body(status: u16) -> Value {
    let (code, message) = match status {
        400 => ("1006", "Invalid JSON"),
        401 => ("2002", "Invalid license key"),
        429 => ("3001", "Too many requests"),
        _ => ("5000", "Internal error"),
    };
    json!({"success": false, "error": {"code": code, "message": message}, "data": {}})
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"success": false, "error": {"code": code, "message": message}, "data": {}})),
    )
        .into_response()
}

pub fn router(sim: Sim, cfg: Config) -> Router {
    let app = App { sim: sim.clone(), cfg };
    let api = Router::new()
        .route("/SeonRestService/fraud-api/v2", post(fraud))
        .with_state(app);
    with_faults(api, sim, error_body)
}

async fn fraud(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        None => return error(StatusCode::UNAUTHORIZED, "2001", "Missing license key"),
        Some(k) if k != app.cfg.api_key => return error(StatusCode::UNAUTHORIZED, "2002", "Invalid license key"),
        Some(_) => {}
    }
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, "1000", "Empty request body");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "1006", "Invalid JSON");
    };
    let user = req["user_id"].as_str().unwrap_or_default();
    let reference = req["transaction_id"].as_str().unwrap_or(user);
    app.sim.record("transaction", reference);
    let amount = req["transaction_amount"].as_f64().unwrap_or(0.0);
    let (mut score, mut state, mut rules) = match user {
        u if u.contains("fraudster") => (
            97.25,
            "DECLINE",
            vec![
                json!({"id": "L001", "name": "User ID is on a blacklist", "operation": "+", "score": 80.0}),
                json!({"id": "D310", "name": "Device used by several customers", "operation": "+", "score": 17.25}),
            ],
        ),
        u if u.contains("risky") => (
            64.0,
            "REVIEW",
            vec![
                json!({"id": "V104", "name": "5 or more transactions in the last hour", "operation": "+", "score": 30.0}),
            ],
        ),
        _ => (
            6.5,
            "APPROVE",
            vec![
                json!({"id": "P110", "name": "Customer has a long history of transactions", "operation": "-", "score": -5.0}),
            ],
        ),
    };
    if amount >= 10_000.0 {
        rules.push(json!({"id": "A201", "name": "Transaction amount much higher than the customer's average", "operation": "+", "score": 25.0}));
        score = f64::max(score, 55.0);
        if state == "APPROVE" {
            state = "REVIEW";
        }
    }
    Json(json!({
        "success": true,
        "error": {},
        "data": {
            "id": uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            "state": state,
            "fraud_score": score,
            "applied_rules": rules,
            "version": "v2",
            "calculation_time": 12
        }
    }))
    .into_response()
}
