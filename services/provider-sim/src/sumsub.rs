//! Sumsub-shaped simulator: signed requests (`X-App-Token`, `X-App-Access-Ts`, `X-App-Access-Sig`),
//! applicants keyed by `externalUserId` (409 on reuse), review requested via `status/pending`,
//! `applicantPending` and `applicantReviewed` webhooks signed with `x-payload-digest`. Errors are
//! `{description, code, correlationId}`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_vendors::kyc::sumsub::{request_signature, webhooks::sign};

use crate::sim::{Persona, Sim, parse_json, with_faults};

#[derive(Clone)]
pub struct Config {
    pub app_token: String,
    pub secret_key: String,
    pub webhook_secret: String,
    pub webhook_url: String,
    pub complete_after: Duration,
}

#[derive(Clone)]
struct Applicant {
    id: String,
    external_user_id: String,
    name: String,
    last_name: String,
    review_status: &'static str,
    review_result: Option<Value>,
}

#[derive(Clone)]
struct St {
    sim: Sim,
    cfg: Config,
    applicants: Arc<Mutex<HashMap<String, Applicant>>>,
}

pub fn error_body(status: u16) -> Value {
    let description = match status {
        401 => "Invalid signature",
        404 => "Not found",
        409 => "Conflict",
        429 => "Too many requests",
        400 => "Bad request",
        _ => "Internal error",
    };
    json!({"description": description, "code": status, "correlationId": format!("req-{}", uuid::Uuid::new_v4())})
}

fn err(status: StatusCode, description: &str) -> Response {
    let mut body = error_body(status.as_u16());
    body["description"] = Value::String(description.to_string());
    (status, Json(body)).into_response()
}

pub fn router(sim: Sim, cfg: Config) -> Router {
    let st = St {
        sim: sim.clone(),
        cfg,
        applicants: Arc::default(),
    };
    let api = Router::new()
        .route("/resources/applicants", post(create))
        .route("/resources/applicants/{id}/one", get(one))
        .route("/resources/applicants/{id}/status", get(status))
        .route("/resources/applicants/{id}/status/pending", post(request_check))
        .with_state(st);
    with_faults(api, sim, error_body)
}

/// Checks the request signature the way Sumsub does (±60 s clock skew).
fn signed(st: &St, method: &Method, uri: &Uri, h: &HeaderMap, body: &[u8]) -> Result<(), Response> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if get("x-app-token") != st.cfg.app_token {
        return Err(err(StatusCode::UNAUTHORIZED, "Invalid access token"));
    }
    let ts: i64 = get("x-app-access-ts").parse().unwrap_or(0);
    if (chrono::Utc::now().timestamp() - ts).abs() > 60 {
        return Err(err(StatusCode::UNAUTHORIZED, "Request timestamp is out of range"));
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    let expected = request_signature(&st.cfg.secret_key, ts, method.as_str(), path, body);
    if expected != get("x-app-access-sig") {
        return Err(err(StatusCode::UNAUTHORIZED, "Invalid signature"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateIn {
    external_user_id: Option<String>,
    fixed_info: Option<FixedInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FixedInfo {
    first_name: Option<String>,
    last_name: Option<String>,
}

fn applicant_json(a: &Applicant) -> Value {
    json!({"id": a.id, "externalUserId": a.external_user_id, "createdAt": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        "clientId": "switchyard-sim", "review": {"reviewStatus": a.review_status}, "type": "individual"})
}

async fn create(State(st): State<St>, method: Method, uri: Uri, h: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = signed(&st, &method, &uri, &h, &body) {
        return r;
    }
    let c: CreateIn = match parse_json(&body, error_body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(ext) = c.external_user_id.filter(|e| !e.is_empty()) else {
        return err(StatusCode::BAD_REQUEST, "externalUserId is required");
    };
    let (first, last) = c
        .fixed_info
        .map(|f| (f.first_name.unwrap_or_default(), f.last_name.unwrap_or_default()))
        .unwrap_or_default();
    let Ok(mut m) = st.applicants.lock() else {
        return err(StatusCode::INTERNAL_SERVER_ERROR, "lock");
    };
    if let Some(existing) = m.values().find(|a| a.external_user_id == ext) {
        return err(
            StatusCode::CONFLICT,
            &format!(
                "Applicant with external user id '{ext}' already exists: {}",
                existing.id
            ),
        );
    }
    let a = Applicant {
        id: uuid::Uuid::new_v4().simple().to_string()[..24].to_string(),
        external_user_id: ext,
        name: format!("{first} {last}"),
        last_name: last,
        review_status: "init",
        review_result: None,
    };
    st.sim.record("applicant_created", &a.name);
    let out = applicant_json(&a);
    m.insert(a.id.clone(), a);
    (StatusCode::CREATED, Json(out)).into_response()
}

fn find<'a>(m: &'a HashMap<String, Applicant>, id: &str) -> Option<&'a Applicant> {
    match id.strip_prefix("-;externalUserId=") {
        Some(ext) => m.values().find(|a| a.external_user_id == ext),
        None => m.get(id),
    }
}

async fn one(State(st): State<St>, method: Method, uri: Uri, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = signed(&st, &method, &uri, &h, b"") {
        return r;
    }
    match st.applicants.lock().ok().and_then(|m| find(&m, &id).cloned()) {
        Some(a) => Json(applicant_json(&a)).into_response(),
        None => err(StatusCode::NOT_FOUND, "Applicant not found"),
    }
}

async fn status(State(st): State<St>, method: Method, uri: Uri, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = signed(&st, &method, &uri, &h, b"") {
        return r;
    }
    match st.applicants.lock().ok().and_then(|m| m.get(&id).cloned()) {
        Some(a) => {
            let mut v = json!({"reviewId": format!("rv-{}", &a.id[..8]), "attemptCnt": 1, "levelName": "basic-kyc-level",
                "reviewStatus": a.review_status, "priority": 0});
            if let Some(r) = a.review_result {
                v["reviewResult"] = r;
            }
            Json(v).into_response()
        }
        None => err(StatusCode::NOT_FOUND, "Applicant not found"),
    }
}

async fn request_check(
    State(st): State<St>,
    method: Method,
    uri: Uri,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = signed(&st, &method, &uri, &h, b"") {
        return r;
    }
    let a = {
        let Ok(mut m) = st.applicants.lock() else {
            return err(StatusCode::INTERNAL_SERVER_ERROR, "lock");
        };
        let Some(a) = m.get_mut(&id) else {
            return err(StatusCode::NOT_FOUND, "Applicant not found");
        };
        if matches!(a.review_status, "pending" | "queued" | "prechecked") {
            return err(StatusCode::CONFLICT, "Applicant is already pending");
        }
        a.review_status = "pending";
        a.clone()
    };
    st.sim.record("review_requested", &a.name);
    tokio::spawn(review_later(st, a));
    Json(json!({"ok": 1})).into_response()
}

fn webhook(a: &Applicant, kind: &str, status: &str, result: Option<&Value>, created_ms: i64) -> String {
    let mut v = json!({"applicantId": a.id, "inspectionId": format!("insp-{}", &a.id[..8]), "correlationId": format!("req-{}", uuid::Uuid::new_v4()),
        "levelName": "basic-kyc-level", "externalUserId": a.external_user_id, "type": kind, "sandboxMode": true,
        "reviewStatus": status, "createdAtMs": created_ms.to_string(), "clientId": "switchyard-sim"});
    if let Some(r) = result {
        v["reviewResult"] = r.clone();
    }
    v.to_string()
}

async fn review_later(st: St, a: Applicant) {
    let secret = st.cfg.webhook_secret.clone();
    let headers = |b: &str| {
        vec![
            ("x-payload-digest".to_string(), sign(secret.as_bytes(), b.as_bytes())),
            ("x-payload-digest-alg".to_string(), "HMAC_SHA256_HEX".to_string()),
        ]
    };
    let pending = webhook(
        &a,
        "applicantPending",
        "pending",
        None,
        chrono::Utc::now().timestamp_millis(),
    );
    st.sim.deliver(
        st.cfg.webhook_url.clone(),
        headers(&pending),
        pending.clone(),
        a.name.clone(),
        None,
    );
    let p = st.sim.persona_of(&a.name, &a.last_name);
    let mut reviews = match p {
        Persona::StepUp => vec![
            json!({"reviewAnswer": "RED", "rejectLabels": ["BAD_PHOTO"], "reviewRejectType": "RETRY",
                "clientComment": "Document photo unreadable"}),
            json!({"reviewAnswer": "GREEN"}),
        ],
        Persona::Forger => {
            vec![json!({"reviewAnswer": "RED", "rejectLabels": ["FORGERY"], "reviewRejectType": "FINAL"})]
        }
        Persona::Review => vec![],
        Persona::Clear | Persona::Sanctioned | Persona::Pep => vec![json!({"reviewAnswer": "GREEN"})],
    };
    if reviews.is_empty() {
        tokio::time::sleep(st.cfg.complete_after).await;
        set(&st, &a.id, "onHold", None);
        let body = webhook(
            &a,
            "applicantOnHold",
            "onHold",
            None,
            chrono::Utc::now().timestamp_millis(),
        );
        st.sim
            .deliver(st.cfg.webhook_url.clone(), headers(&body), body, a.name.clone(), None);
        return;
    }
    let last = reviews.len() - 1;
    for (i, r) in reviews.drain(..).enumerate() {
        tokio::time::sleep(if i == 0 {
            st.cfg.complete_after
        } else {
            st.cfg.complete_after * 3
        })
        .await;
        set(&st, &a.id, "completed", Some(r.clone()));
        let body = webhook(
            &a,
            "applicantReviewed",
            "completed",
            Some(&r),
            chrono::Utc::now().timestamp_millis(),
        );
        let earlier = (i == last).then(|| (headers(&pending), pending.clone()));
        st.sim.deliver(
            st.cfg.webhook_url.clone(),
            headers(&body),
            body,
            a.name.clone(),
            earlier,
        );
    }
}

fn set(st: &St, id: &str, status: &'static str, result: Option<Value>) {
    if let Ok(mut m) = st.applicants.lock()
        && let Some(a) = m.get_mut(id)
    {
        a.review_status = status;
        a.review_result = result;
    }
}
