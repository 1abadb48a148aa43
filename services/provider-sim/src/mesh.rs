//! ComplyAdvantage-Mesh-shaped simulator: `POST /v2/token` login, a synchronous create-and-screen
//! workflow (idempotent for a byte-identical re-send; 409 for a different body with the same
//! `external_identifier`), cases → alerts → risks, `application/problem+json` errors, 429 with
//! `Ratelimit-*` headers. `GET /v2/workflows/{id}` reads a workflow back; `POST /_sim/screenings/result
//! {"matcher", "screening_result"}` changes what a customer's screening found, with no notice.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
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
    pub username: String,
    pub password: String,
}

#[derive(Clone)]
struct Customer {
    id: String,
    name: String,
    request: Bytes,
    response: Value,
    case: Option<(String, String, Vec<Value>)>,
}

#[derive(Clone)]
struct St {
    sim: Sim,
    cfg: Config,
    tokens: Arc<Mutex<Vec<String>>>,
    customers: Arc<Mutex<HashMap<String, Customer>>>,
}

pub fn error_body(status: u16) -> Value {
    if status == 429 {
        return json!({"message": "API rate limit exceeded"});
    }
    let title = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Internal Server Error",
    };
    json!({"title": title, "detail": title, "identifier": uuid::Uuid::new_v4().to_string(), "timestamp": chrono::Utc::now().to_rfc3339()})
}

fn problem(status: StatusCode, detail: &str) -> Response {
    let mut body = error_body(status.as_u16());
    body["detail"] = Value::String(detail.to_string());
    (status, [("content-type", "application/problem+json")], body.to_string()).into_response()
}

pub fn router(sim: Sim, cfg: Config) -> Router {
    let st = St {
        sim: sim.clone(),
        cfg,
        tokens: Arc::default(),
        customers: Arc::default(),
    };
    let api = Router::new()
        .route("/v2/token", post(token))
        .route("/v2/workflows/sync/create-and-screen", post(create_and_screen))
        .route("/v2/workflows/{id}", get(workflow))
        .route("/_sim/screenings/result", post(set_result))
        .route("/v2/cases", get(cases))
        .route("/v2/cases/{case}/alerts", get(alerts))
        .route("/v2/cases/{case}/alerts/{alert}/risks", get(risks))
        .with_state(st);
    with_faults(api, sim, error_body)
}

#[derive(Deserialize)]
struct TokenIn {
    username: String,
    password: String,
}

async fn token(State(st): State<St>, body: Bytes) -> Response {
    let t: TokenIn = match parse_json(&body, error_body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if t.username != st.cfg.username || t.password != st.cfg.password {
        return problem(StatusCode::UNAUTHORIZED, "invalid credentials");
    }
    let token = format!("mesh_{}", uuid::Uuid::new_v4().simple());
    if let Ok(mut v) = st.tokens.lock() {
        v.push(token.clone());
    }
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 86400, "scope": "mesh"})).into_response()
}

fn authorized(st: &St, h: &HeaderMap) -> bool {
    let Some(t) = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    st.tokens.lock().map(|v| v.iter().any(|x| x == t)).unwrap_or(false)
}

#[derive(Deserialize)]
struct ScreenIn {
    customer: CustomerIn,
}

#[derive(Deserialize)]
struct CustomerIn {
    external_identifier: String,
    person: PersonIn,
}

#[derive(Deserialize)]
struct PersonIn {
    first_name: Option<String>,
    last_name: String,
}

async fn create_and_screen(State(st): State<St>, h: HeaderMap, body: Bytes) -> Response {
    if !authorized(&st, &h) {
        return problem(StatusCode::UNAUTHORIZED, "missing or expired token");
    }
    let s: ScreenIn = match parse_json(&body, error_body) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ext = s.customer.external_identifier.clone();
    let Ok(mut m) = st.customers.lock() else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "lock");
    };
    if let Some(c) = m.get(&ext) {
        // Idempotent for a byte-identical re-send; anything else is a conflict.
        if c.request == body {
            return Json(c.response.clone()).into_response();
        }
        let mut b = error_body(409);
        b["detail"] = json!("customer with this external_identifier already exists");
        b["customer_identifier"] = json!(c.id);
        return (
            StatusCode::CONFLICT,
            [("content-type", "application/problem+json")],
            b.to_string(),
        )
            .into_response();
    }
    let name = format!(
        "{} {}",
        s.customer.person.first_name.unwrap_or_default(),
        s.customer.person.last_name
    );
    let customer_id = format!("cust-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let (result, level, risks) = match st.sim.persona_of(&name, &s.customer.person.last_name) {
        Persona::Sanctioned => (
            "HAS_PROFILES",
            "PROHIBITED",
            vec![json!({"identifier": "risk-s1", "type": "SANCTION", "source": "OFAC SDN List"})],
        ),
        Persona::Pep => (
            "HAS_PROFILES",
            "MEDIUM-RISK",
            vec![
                json!({"identifier": "risk-p1", "type": "PEP_CLASS_2", "source": "complyadvantage-pep"}),
                json!({"identifier": "risk-p2", "type": "ADVERSE_MEDIA_GENERAL", "source": "adverse-media"}),
            ],
        ),
        Persona::Clear | Persona::StepUp | Persona::Forger | Persona::Review => ("NO_PROFILES", "LOW-RISK", vec![]),
    };
    let case = (!risks.is_empty()).then(|| {
        (
            format!("case-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            format!("alert-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            risks,
        )
    });
    let response = json!({"workflow_instance_identifier": format!("wf-{}", uuid::Uuid::new_v4().simple()), "workflow_type": "create-and-screen",
        "status": "COMPLETED", "step_details": {
            "customer-creation": {"status": "COMPLETED", "step_output": {"customer_identifier": customer_id}},
            "initial-risk-scoring": {"status": "COMPLETED", "step_output": {"overall_level": level}},
            "customer-screening": {"status": "COMPLETED", "step_output": {"screening_result": result}},
            "alerting": {"status": if case.is_some() { "COMPLETED" } else { "SKIPPED" },
                "step_output": case.as_ref().map(|(_, a, _)| json!({"identifier": a})).unwrap_or(json!({}))}}});
    st.sim.record("customer_screened", &name);
    m.insert(
        ext,
        Customer {
            id: customer_id,
            name: name.clone(),
            request: body,
            response: response.clone(),
            case,
        },
    );
    Json(response).into_response()
}

/// `GET /v2/workflows/{id}`: a workflow as its create-and-screen answered it.
async fn workflow(State(st): State<St>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&st, &h) {
        return problem(StatusCode::UNAUTHORIZED, "missing or expired token");
    }
    let found = st.customers.lock().ok().and_then(|m| {
        m.values()
            .find(|c| c.response["workflow_instance_identifier"] == id.as_str())
            .map(|c| c.response.clone())
    });
    match found {
        Some(w) => Json(w).into_response(),
        None => problem(StatusCode::NOT_FOUND, "workflow not found"),
    }
}

#[derive(Deserialize)]
struct SetResult {
    /// Part of the screened customer's name.
    matcher: String,
    screening_result: String,
}

/// Changes what the screening of the customer whose name contains `matcher` found, where it is,
/// with no notice (a list refresh that matched the customer later): the partner's record and ours
/// now disagree. Answers the workflow's id.
async fn set_result(State(st): State<St>, Json(r): Json<SetResult>) -> Response {
    if !matches!(r.screening_result.as_str(), "HAS_PROFILES" | "NO_PROFILES") || r.matcher.is_empty() {
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    }
    let Ok(mut m) = st.customers.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match m.values_mut().find(|c| c.name.contains(&r.matcher)) {
        Some(c) => {
            c.response["step_details"]["customer-screening"]["step_output"]["screening_result"] =
                json!(r.screening_result);
            Json(json!({"workflow": c.response["workflow_instance_identifier"]})).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
struct CasesQuery {
    #[serde(rename = "customer.identifier")]
    customer: String,
}

async fn cases(State(st): State<St>, h: HeaderMap, Query(q): Query<CasesQuery>) -> Response {
    if !authorized(&st, &h) {
        return problem(StatusCode::UNAUTHORIZED, "missing or expired token");
    }
    let cases: Vec<Value> = st
        .customers
        .lock()
        .map(|m| {
            m.values()
                .filter(|c| c.id == q.customer)
                .filter_map(|c| {
                    c.case
                        .as_ref()
                        .map(|(id, _, _)| json!({"identifier": id, "state": "ONBOARDING_IN_PROGRESS"}))
                })
                .collect()
        })
        .unwrap_or_default();
    Json(json!({"cases": cases, "page_number": 1, "page_size": 25})).into_response()
}

fn find_case(st: &St, case: &str) -> Option<(String, Vec<Value>, String)> {
    let m = st.customers.lock().ok()?;
    m.values().find_map(|c| {
        let (id, alert, risks) = c.case.as_ref()?;
        (id == case).then(|| (alert.clone(), risks.clone(), c.name.clone()))
    })
}

async fn alerts(State(st): State<St>, h: HeaderMap, Path(case): Path<String>) -> Response {
    if !authorized(&st, &h) {
        return problem(StatusCode::UNAUTHORIZED, "missing or expired token");
    }
    let Some((alert, _, name)) = find_case(&st, &case) else {
        return problem(StatusCode::NOT_FOUND, "case not found");
    };
    Json(json!({"alerts": [{"identifier": alert, "profile": {"identifier": format!("prof-{case}"), "name": name}}]}))
        .into_response()
}

async fn risks(State(st): State<St>, h: HeaderMap, Path((case, alert)): Path<(String, String)>) -> Response {
    if !authorized(&st, &h) {
        return problem(StatusCode::UNAUTHORIZED, "missing or expired token");
    }
    match find_case(&st, &case) {
        Some((a, risks, _)) if a == alert => Json(json!({"risks": risks})).into_response(),
        _ => problem(StatusCode::NOT_FOUND, "alert not found"),
    }
}
