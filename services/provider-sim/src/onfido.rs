//! Onfido-shaped simulator (API v3.6): applicants, checks, reports; `Authorization: Token token=...`;
//! errors as `{"error":{type,message,fields}}`; thin `check.completed` webhooks signed with
//! `X-SHA2-Signature`. No idempotency key (as the real API): every POST is a new effect. Applicants
//! are listed newest first (`GET /applicants?page=&per_page=`). `POST /_sim/checks/{id}/result
//! {"result": "clear"|"consider"}` changes a check's result where it is, with no webhook.

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
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sim::{Persona, Sim, parse_json, with_faults};

#[derive(Clone)]
pub struct Config {
    pub api_token: String,
    pub webhook_secret: String,
    pub webhook_url: String,
    pub complete_after: Duration,
}

#[derive(Clone)]
struct Check {
    id: String,
    applicant_id: String,
    status: &'static str,
    result: Option<&'static str>,
    reports: Vec<Value>,
    tags: Vec<String>,
}

/// First name, last name, created_at (RFC 3339).
type Applicant = (String, String, String);

#[derive(Clone)]
struct St {
    sim: Sim,
    cfg: Config,
    applicants: Arc<Mutex<HashMap<String, Applicant>>>,
    checks: Arc<Mutex<HashMap<String, Check>>>,
}

pub fn error_body(status: u16) -> Value {
    let (kind, message) = match status {
        401 => (
            "authorization_error",
            "Authorization error: please re-check your credentials",
        ),
        404 => ("resource_not_found", "The resource could not be found"),
        422 => ("validation_error", "There was a validation error on this request"),
        429 => ("rate_limit", "Rate limit exceeded. Please try again later"),
        400 => ("bad_request", "Invalid request"),
        _ => ("internal_server_error", "Something went wrong"),
    };
    json!({"error": {"type": kind, "message": message, "fields": {}}})
}

fn err(status: StatusCode) -> Response {
    (status, Json(error_body(status.as_u16()))).into_response()
}

pub fn router(sim: Sim, cfg: Config) -> Router {
    let st = St {
        sim: sim.clone(),
        cfg,
        applicants: Arc::default(),
        checks: Arc::default(),
    };
    let api = Router::new()
        .route("/v3.6/applicants", post(create_applicant).get(list_applicants))
        .route("/_sim/checks/{id}/result", post(set_result))
        .route("/v3.6/checks", post(create_check).get(list_checks))
        .route("/v3.6/checks/{id}", get(get_check))
        .route("/v3.6/reports", get(list_reports))
        .with_state(st);
    with_faults(api, sim, error_body)
}

fn authorized(st: &St, h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Token token={}", st.cfg.api_token))
}

#[derive(Deserialize)]
struct ApplicantIn {
    first_name: Option<String>,
    last_name: Option<String>,
}

async fn create_applicant(State(st): State<St>, h: HeaderMap, body: Bytes) -> Response {
    if !authorized(&st, &h) {
        return err(StatusCode::UNAUTHORIZED);
    }
    let a: ApplicantIn = match parse_json(&body, error_body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (Some(first), Some(last)) = (
        a.first_name.filter(|s| !s.is_empty()),
        a.last_name.filter(|s| !s.is_empty()),
    ) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                json!({"error": {"type": "validation_error", "message": "There was a validation error on this request",
                "fields": {"first_name": ["can't be blank"], "last_name": ["can't be blank"]}}}),
            ),
        )
            .into_response();
    };
    let id = uuid::Uuid::new_v4().to_string();
    st.sim.record("applicant_created", &format!("{first} {last}"));
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Ok(mut m) = st.applicants.lock() {
        m.insert(id.clone(), (first.clone(), last.clone(), created_at.clone()));
    }
    (
        StatusCode::CREATED,
        Json(applicant_json(&id, &first, &last, &created_at)),
    )
        .into_response()
}

fn applicant_json(id: &str, first: &str, last: &str, created_at: &str) -> Value {
    json!({"id": id, "created_at": created_at, "sandbox": true, "first_name": first, "last_name": last,
        "href": format!("/v3.6/applicants/{id}"), "delete_at": null})
}

#[derive(Deserialize)]
struct Page {
    page: Option<usize>,
    per_page: Option<usize>,
}

/// `GET /applicants?page=&per_page=`: newest first, 20 a page by default, at most 500.
async fn list_applicants(State(st): State<St>, h: HeaderMap, Query(q): Query<Page>) -> Response {
    if !authorized(&st, &h) {
        return err(StatusCode::UNAUTHORIZED);
    }
    let (page, per_page) = (q.page.unwrap_or(1).max(1), q.per_page.unwrap_or(20).clamp(1, 500));
    let mut all: Vec<(String, Applicant)> = st
        .applicants
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    all.sort_by(|a, b| b.1.2.cmp(&a.1.2).then(a.0.cmp(&b.0)));
    let applicants: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(id, (first, last, at))| applicant_json(id, first, last, at))
        .collect();
    Json(json!({"applicants": applicants})).into_response()
}

#[derive(Deserialize)]
struct SetResult {
    result: String,
}

/// Changes a completed check's result where it is, with no webhook: the vendor's record and ours
/// now disagree, and only reconciliation can tell.
async fn set_result(State(st): State<St>, Path(id): Path<String>, Json(r): Json<SetResult>) -> StatusCode {
    let result = match r.result.as_str() {
        "clear" => "clear",
        "consider" => "consider",
        _ => return StatusCode::UNPROCESSABLE_ENTITY,
    };
    let Ok(mut m) = st.checks.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let Some(c) = m.get_mut(&id) else {
        return StatusCode::NOT_FOUND;
    };
    c.status = "complete";
    c.result = Some(result);
    c.reports = if result == "clear" {
        vec![
            report(&id, &id, "document", "clear", Some("clear")),
            report(&id, &id, "facial_similarity_photo", "clear", None),
        ]
    } else {
        vec![
            report(&id, &id, "document", "consider", Some("rejected")),
            report(&id, &id, "facial_similarity_photo", "clear", None),
        ]
    };
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct CheckIn {
    applicant_id: Option<String>,
    #[serde(default)]
    report_names: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

fn check_json(c: &Check) -> Value {
    json!({"id": c.id, "status": c.status, "result": c.result, "applicant_id": c.applicant_id, "tags": c.tags,
        "href": format!("/v3.6/checks/{}", c.id), "report_ids": c.reports.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
        "sandbox": true})
}

fn report(id: &str, check: &str, name: &str, result: &str, sub: Option<&str>) -> Value {
    json!({"id": format!("{id}-{name}"), "name": name, "status": "complete", "result": result, "sub_result": sub, "check_id": check})
}

async fn create_check(State(st): State<St>, h: HeaderMap, body: Bytes) -> Response {
    if !authorized(&st, &h) {
        return err(StatusCode::UNAUTHORIZED);
    }
    let c: CheckIn = match parse_json(&body, error_body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(applicant_id) = c.applicant_id else {
        return err(StatusCode::UNPROCESSABLE_ENTITY);
    };
    if c.report_names.is_empty() {
        return err(StatusCode::UNPROCESSABLE_ENTITY);
    }
    let Some((first, last, _)) = st.applicants.lock().ok().and_then(|m| m.get(&applicant_id).cloned()) else {
        return err(StatusCode::UNPROCESSABLE_ENTITY);
    };
    let name = format!("{first} {last}");
    let id = uuid::Uuid::new_v4().to_string();
    let p = st.sim.persona_of(&name, &last);
    let check = Check {
        id: id.clone(),
        applicant_id,
        status: if p == Persona::StepUp {
            "awaiting_applicant"
        } else {
            "in_progress"
        },
        result: None,
        reports: vec![],
        tags: c.tags,
    };
    st.sim.record("check_created", &name);
    if let Ok(mut m) = st.checks.lock() {
        m.insert(id.clone(), check.clone());
    }
    let body = check_json(&check);
    tokio::spawn(complete_later(st, id, p, name));
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Runs the check to completion (after documents "arrive" for a step-up) and sends the webhook.
async fn complete_later(st: St, id: String, p: Persona, name: String) {
    let mut wait = st.cfg.complete_after;
    if p == Persona::StepUp {
        // The applicant uploads more documents a little later.
        tokio::time::sleep(wait * 3).await;
        if let Ok(mut m) = st.checks.lock()
            && let Some(c) = m.get_mut(&id)
        {
            c.status = "in_progress";
        }
        wait = st.cfg.complete_after;
    }
    tokio::time::sleep(wait).await;
    let (result, reports) = match p {
        Persona::Forger => (
            "consider",
            vec![
                report(&id, &id, "document", "consider", Some("rejected")),
                report(&id, &id, "facial_similarity_photo", "clear", None),
            ],
        ),
        Persona::Review => (
            "consider",
            vec![
                report(&id, &id, "document", "consider", Some("caution")),
                report(&id, &id, "facial_similarity_photo", "clear", None),
            ],
        ),
        Persona::Clear | Persona::StepUp | Persona::Sanctioned | Persona::Pep => (
            "clear",
            vec![
                report(&id, &id, "document", "clear", Some("clear")),
                report(&id, &id, "facial_similarity_photo", "clear", None),
            ],
        ),
    };
    if let Ok(mut m) = st.checks.lock()
        && let Some(c) = m.get_mut(&id)
    {
        c.status = "complete";
        c.result = Some(result);
        c.reports = reports;
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = json!({"payload": {"resource_type": "check", "action": "check.completed", "object": {"id": id, "status": "complete",
        "completed_at_iso8601": now, "href": format!("https://api.onfido.sim/v3.6/checks/{id}")}}})
    .to_string();
    let earlier = json!({"payload": {"resource_type": "check", "action": "check.started", "object": {"id": id, "status": "in_progress",
        "href": format!("https://api.onfido.sim/v3.6/checks/{id}")}}})
    .to_string();
    let secret = st.cfg.webhook_secret.as_bytes();
    let sign = |b: &str| {
        vec![(
            "X-SHA2-Signature".to_string(),
            switchyard_vendors::kyc::onfido::webhooks::sign(secret, b.as_bytes()),
        )]
    };
    st.sim.deliver(
        st.cfg.webhook_url.clone(),
        sign(&body),
        body,
        name,
        Some((sign(&earlier), earlier)),
    );
}

async fn get_check(State(st): State<St>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&st, &h) {
        return err(StatusCode::UNAUTHORIZED);
    }
    match st.checks.lock().ok().and_then(|m| m.get(&id).cloned()) {
        Some(c) => Json(check_json(&c)).into_response(),
        None => err(StatusCode::NOT_FOUND),
    }
}

#[derive(Deserialize)]
struct ChecksQuery {
    applicant_id: Option<String>,
}

/// `GET /checks?applicant_id=`: an applicant's checks (the API requires the applicant).
async fn list_checks(State(st): State<St>, h: HeaderMap, Query(q): Query<ChecksQuery>) -> Response {
    if !authorized(&st, &h) {
        return err(StatusCode::UNAUTHORIZED);
    }
    let Some(applicant_id) = q.applicant_id else {
        return err(StatusCode::UNPROCESSABLE_ENTITY);
    };
    if !st
        .applicants
        .lock()
        .map(|m| m.contains_key(&applicant_id))
        .unwrap_or(false)
    {
        return err(StatusCode::NOT_FOUND);
    }
    let checks: Vec<Value> = st
        .checks
        .lock()
        .map(|m| {
            m.values()
                .filter(|c| c.applicant_id == applicant_id)
                .map(check_json)
                .collect()
        })
        .unwrap_or_default();
    Json(json!({"checks": checks})).into_response()
}

#[derive(Deserialize)]
struct ReportsQuery {
    check_id: String,
}

async fn list_reports(State(st): State<St>, h: HeaderMap, Query(q): Query<ReportsQuery>) -> Response {
    if !authorized(&st, &h) {
        return err(StatusCode::UNAUTHORIZED);
    }
    match st.checks.lock().ok().and_then(|m| m.get(&q.check_id).cloned()) {
        Some(c) => Json(json!({"reports": c.reports})).into_response(),
        None => err(StatusCode::NOT_FOUND),
    }
}
