//! The operators' API of the ingress (behind the admin token): API keys created, listed and revoked
//! with who did it. A key's secret is shown once, in the answer that creates it.
//!
//!   GET  /admin/keys[?tenant=]        every key (never a secret or its hash)
//!   POST /admin/keys                  {"tenant", "scopes": [...], "label", "by"} → the key, once
//!   POST /admin/keys/{id}/revoke      {"by"}

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use sqlx::PgPool;
use switchyard_runtime::admin::{problem, unavailable};

use crate::auth;

pub fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/admin/keys", get(list).post(create))
        .route("/admin/keys/{id}/revoke", post(revoke))
        .with_state(pool)
}

#[derive(Deserialize)]
struct ListQuery {
    tenant: Option<String>,
}

#[derive(Deserialize)]
struct CreateBody {
    tenant: String,
    scopes: Vec<String>,
    #[serde(default)]
    label: String,
    by: String,
}

#[derive(Deserialize)]
struct RevokeBody {
    by: String,
}

async fn list(State(pool): State<PgPool>, Query(q): Query<ListQuery>) -> Response {
    let rows: Result<Vec<serde_json::Value>, _> = sqlx::query_scalar(
        "SELECT jsonb_build_object('key_id', key_id, 'tenant', tenant_id, 'scopes', scopes, 'label', label, \
                'created_at', created_at, 'created_by', created_by, 'revoked_at', revoked_at, 'revoked_by', revoked_by) \
         FROM api_keys WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY created_at, key_id",
    )
    .bind(q.tenant.filter(|t| !t.is_empty()))
    .fetch_all(&pool)
    .await;
    match rows {
        Ok(keys) => Json(serde_json::json!({ "keys": keys })).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn create(State(pool): State<PgPool>, body: Option<Json<CreateBody>>) -> Response {
    let Some(Json(b)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the body must be JSON: {\"tenant\", \"scopes\": [...], \"label\", \"by\"}",
        );
    };
    let mut problems = Vec::new();
    if b.tenant.trim().is_empty() {
        problems.push("tenant must not be empty".to_string());
    }
    if b.by.trim().is_empty() {
        problems.push("by (who creates the key) must not be empty".to_string());
    }
    if b.scopes.is_empty() {
        problems.push(format!("scopes must name at least one of {}", auth::SCOPES.join(", ")));
    }
    for s in &b.scopes {
        if !auth::SCOPES.contains(&s.as_str()) {
            problems.push(format!("unknown scope {s:?} (known: {})", auth::SCOPES.join(", ")));
        }
    }
    if !problems.is_empty() {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, &problems.join("; "));
    }
    match auth::create_key(&pool, &b.tenant, &b.scopes, &b.label, &b.by).await {
        Ok(key) => {
            tracing::info!(tenant = %b.tenant, key_id = %auth::key_id(&key), by = %b.by, scopes = ?b.scopes, "API key created");
            (
                StatusCode::CREATED,
                Json(serde_json::json!({"key": key, "key_id": auth::key_id(&key), "tenant": b.tenant, "scopes": b.scopes})),
            )
                .into_response()
        }
        Err(e) => unavailable(e),
    }
}

async fn revoke(State(pool): State<PgPool>, Path(id): Path<String>, body: Option<Json<RevokeBody>>) -> Response {
    let Some(Json(b)) = body.filter(|b| !b.by.trim().is_empty()) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body must name who revokes the key: {\"by\": ...}",
        );
    };
    let id = auth::key_id(&id).to_string();
    match auth::revoke_key(&pool, &id, &b.by).await {
        Ok(true) => {
            tracing::info!(key_id = %id, by = %b.by, "API key revoked");
            Json(serde_json::json!({"key_id": id, "revoked": true})).into_response()
        }
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            &format!("no active API key with id {id:?} (unknown, or already revoked)"),
        ),
        Err(e) => unavailable(e),
    }
}
