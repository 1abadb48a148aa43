//! Sift-shaped simulator (Events API v205): `POST /v205/events` with the API key in the body,
//! `$amount` in micros; with `return_score=true` a `payment_abuse` score (0–1) with reasons, and a
//! workflow decision for users it would block. Errors: an integer `status` in the body.
//!
//! Personas by `$user_id`: `fraudster` → 0.97 and a block decision; `risky` → 0.72; otherwise a low
//! score. An amount of 10,000 or more (major units) adds an amount reason and at least 0.65.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sim::{Sim, parse_json, with_faults};

#[derive(Clone)]
pub struct Config {
    pub api_key: String,
}

#[derive(Clone)]
struct App {
    sim: Sim,
    cfg: Config,
    requests: std::sync::Arc<AtomicU64>,
}

pub fn error_body(status: u16) -> Value {
    let (code, message) = match status {
        400 => (52, "Invalid field value"),
        401 => (51, "Invalid API key"),
        429 => (60, "Rate limited"),
        _ => (-1, "Internal server error"),
    };
    json!({"status": code, "error_message": message, "time": chrono::Utc::now().timestamp()})
}

pub fn router(sim: Sim, cfg: Config) -> Router {
    let app = App {
        sim: sim.clone(),
        cfg,
        requests: std::sync::Arc::default(),
    };
    let api = Router::new().route("/v205/events", post(events)).with_state(app);
    with_faults(api, sim, error_body)
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    return_score: bool,
    #[serde(default)]
    abuse_types: String,
}

fn refuse(status: StatusCode) -> Response {
    (status, Json(error_body(status.as_u16()))).into_response()
}

async fn events(State(app): State<App>, Query(q): Query<EventsQuery>, body: Bytes) -> Response {
    let event: Value = match parse_json(&body, error_body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if event["$api_key"].as_str() != Some(app.cfg.api_key.as_str()) {
        return refuse(StatusCode::UNAUTHORIZED);
    }
    let (Some(kind), Some(user)) = (event["$type"].as_str(), event["$user_id"].as_str()) else {
        return refuse(StatusCode::BAD_REQUEST);
    };
    if !kind.starts_with('$') && kind.is_empty() {
        return refuse(StatusCode::BAD_REQUEST);
    }
    let reference = event["$transaction_id"].as_str().unwrap_or(user);
    app.sim.record("event", reference);
    let n = app.requests.fetch_add(1, Ordering::Relaxed);
    let mut answer = json!({
        "status": 0,
        "error_message": "OK",
        "time": chrono::Utc::now().timestamp(),
        "request": format!("req-{n:06x}"),
    });
    if q.return_score {
        let micros = event["$amount"].as_i64().unwrap_or(0);
        let (mut score, mut reasons, decision) = match user {
            u if u.contains("fraudster") => (
                0.97,
                vec![
                    json!({"name": "Number of users sharing this beneficiary", "value": "7"}),
                    json!({"name": "Device seen with other users", "value": "3"}),
                ],
                Some("block_payout_payment_abuse"),
            ),
            u if u.contains("risky") => (
                0.72,
                vec![json!({"name": "Email address age", "value": "2 days"})],
                None,
            ),
            _ => (0.04, vec![], None),
        };
        if micros >= 10_000_000_000 {
            score = f64::max(score, 0.65);
            reasons.push(json!({"name": "Transaction amount", "value": micros / 1_000_000}));
        }
        let abuse = if q.abuse_types.is_empty() {
            "payment_abuse"
        } else {
            q.abuse_types.as_str()
        };
        let workflow: Vec<Value> = decision
            .map(|d| {
                json!({"id": format!("wf-{n}"), "state": "finished",
                    "entity": {"type": "user", "id": user},
                    "history": [{"app": "decision", "name": "Block payout", "state": "finished",
                                 "config": {"decision_id": d}}]})
            })
            .into_iter()
            .collect();
        answer["score_response"] = json!({
            "status": 0,
            "error_message": "OK",
            "user_id": user,
            "scores": {abuse: {"score": score, "reasons": reasons}},
            "latest_labels": {},
            "workflow_statuses": workflow,
        });
    }
    Json(answer).into_response()
}
