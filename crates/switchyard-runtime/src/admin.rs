//! The operators' API: every service serves its admin routes under `/admin`, behind one bearer
//! token (`admin.token`, from a secret). Without a configured token the admin API is off: every
//! admin route answers 503 and says why. `yardctl` is its client.
//!
//! Every service's own routes here read the runtime's tables only: the effect ledger (what was asked
//! of which partner, for a flow) and the outbox (what was published for a key). A service adds its
//! own admin routes through [`protect`].

use axum::{
    Json, Router,
    extract::{Query, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use sqlx::PgPool;

use crate::secret::Secret;

/// Puts `routes` behind the admin token.
pub fn protect(routes: Router, token: &Secret) -> Router {
    routes.layer(middleware::from_fn_with_state(token.clone(), require_token))
}

async fn require_token(State(token): State<Secret>, request: Request, next: Next) -> Response {
    if token.is_empty() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the admin API is off: set admin.token (SWITCHYARD_ADMIN__TOKEN) from a secret",
        );
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if same(p.as_bytes(), token.expose().as_bytes()) => next.run(request).await,
        Some(_) => problem(StatusCode::UNAUTHORIZED, "the admin token is not the one configured"),
        None => problem(
            StatusCode::UNAUTHORIZED,
            "an admin token is required (Authorization: Bearer …)",
        ),
    }
}

/// Compares without stopping at the first difference (the time taken says nothing of the token).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A problem+json answer.
pub fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::json!({"title": status.canonical_reason().unwrap_or("error"), "status": status.as_u16(), "detail": detail})
            .to_string(),
    )
        .into_response()
}

/// The runtime's admin routes, served by every service: `/admin/effects?flow_id=` and
/// `/admin/outbox?key=`.
pub fn runtime_routes(pool: PgPool) -> Router {
    Router::new()
        .route("/admin/effects", get(effects))
        .route("/admin/outbox", get(outbox))
        .with_state(pool)
}

#[derive(Deserialize)]
struct FlowQuery {
    flow_id: Option<String>,
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// The answer when the database did not answer (logged; the caller may try again).
pub fn unavailable(e: sqlx::Error) -> Response {
    tracing::warn!(error = %e, "admin query failed");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database did not answer; try again",
    )
}

/// The rows of a `SELECT jsonb_build_object(...) ... WHERE x = $1` query, as JSON values.
pub async fn json_rows(pool: &PgPool, sql: &'static str, value: &str) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar(sql).bind(value).fetch_all(pool).await
}

/// The calls asked of partners for one flow (the effect ledger), oldest first.
async fn effects(State(pool): State<PgPool>, Query(q): Query<FlowQuery>) -> Response {
    let Some(flow_id) = q.flow_id.filter(|f| !f.is_empty()) else {
        return problem(StatusCode::BAD_REQUEST, "query parameter flow_id is required");
    };
    let rows = json_rows(
        &pool,
        "SELECT jsonb_build_object('idempotency_key', idempotency_key, 'partner', partner, \
                'operation', operation, 'state', state, 'provider_reference', provider_reference, \
                'attempts', attempts, 'sends', sends, 'last_error', last_error, \
                'created_at', created_at, 'updated_at', updated_at) \
         FROM effect_ledger WHERE flow_id = $1 ORDER BY created_at LIMIT 200",
        &flow_id,
    )
    .await;
    match rows {
        Ok(rows) => Json(serde_json::json!({"flow_id": flow_id, "effects": rows})).into_response(),
        Err(e) => unavailable(e),
    }
}

/// The events this service wrote to its outbox under one Kafka key, oldest first, with whether and
/// when each was published (or set aside, and why).
async fn outbox(State(pool): State<PgPool>, Query(q): Query<KeyQuery>) -> Response {
    let Some(key) = q.key.filter(|k| !k.is_empty()) else {
        return problem(StatusCode::BAD_REQUEST, "query parameter key is required");
    };
    let rows = json_rows(
        &pool,
        "SELECT jsonb_build_object('id', id, 'topic', topic, 'event_id', event_id, \
                'created_at', created_at, 'published_at', published_at, 'attempts', attempts, \
                'set_aside_at', set_aside_at, 'last_error', last_error) \
         FROM outbox WHERE msg_key = $1 ORDER BY id LIMIT 200",
        &key,
    )
    .await;
    match rows {
        Ok(rows) => Json(serde_json::json!({"key": key, "outbox": rows})).into_response(),
        Err(e) => unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!same(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!same(b"", b"x"));
    }
}
