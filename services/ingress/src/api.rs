//! The HTTP API under `/v1`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use switchyard_model::{
    Envelope, EventRecord,
    events::{Event, onboarding::StartOnboarding},
};
use switchyard_runtime::Outbox;

use crate::{
    auth::{self, Caller},
    problem::ApiError,
    validate,
};

pub const SERVICE: &str = "ingress";
pub const MAX_BODY: usize = 64 * 1024;
/// How long an Idempotency-Key is remembered (published in the OpenAPI document).
pub const IDEMPOTENCY_RETENTION_HOURS: i64 = 24;
/// An in-flight record older than this is from a request that died; its key may be retried.
const IN_FLIGHT_ABANDONED_SECONDS: i64 = 60;

#[derive(Clone)]
pub struct Api {
    pub pool: PgPool,
    pub outbox: Outbox,
    pub limiter: Limiter,
}

/// A token bucket per tenant.
#[derive(Clone)]
pub struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl Limiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Limiter {
            per_second,
            burst,
            buckets: Arc::default(),
        }
    }

    fn take(&self, tenant: &str) -> Result<(), ApiError> {
        let Ok(mut b) = self.buckets.lock() else { return Ok(()) };
        let now = Instant::now();
        let (tokens, at) = b.entry(tenant.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64;
            Err(ApiError::RateLimited { retry_after_s: wait })
        }
    }
}

pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/v1/onboardings", post(create))
        .route("/v1/onboardings/{id}", get(fetch))
        .route("/v1/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

async fn openapi() -> impl IntoResponse {
    ([("content-type", "application/json")], include_str!("../openapi.json"))
}

async fn caller(api: &Api, headers: &HeaderMap, scope: &str) -> Result<Caller, ApiError> {
    let c = auth::authenticate(&api.pool, headers).await?;
    c.require(scope)?;
    api.limiter.take(&c.tenant_id)?;
    Ok(c)
}

fn fingerprint(body: &Value) -> String {
    auth::hash(&body.to_string())
}

/// A stored key: request hash, state, response status and body, expired, abandoned in flight.
type Stored = (String, String, Option<i32>, Option<Value>, bool, bool);

/// Claims `key` for this request; returns a stored response to replay if it is done.
async fn claim(pool: &PgPool, tenant: &str, key: &str, hash: &str) -> Result<Option<(u16, Value)>, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, idem_key, request_hash, state, expires_at) \
         VALUES ($1, $2, $3, 'in_flight', now() + make_interval(hours => $4)) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(key)
    .bind(hash)
    .bind(IDEMPOTENCY_RETENTION_HOURS as i32)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    let row: Option<Stored> = sqlx::query_as(
        "SELECT request_hash, state, response_status, response_body, expires_at < now(), \
         created_at < now() - make_interval(secs => $3) FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2",
    )
    .bind(tenant)
    .bind(key)
    .bind(IN_FLIGHT_ABANDONED_SECONDS as f64)
    .fetch_optional(pool)
    .await?;
    let Some((stored_hash, state, status, body, expired, abandoned)) = row else {
        // Deleted between the two statements (expired and pruned): try once more.
        return Box::pin(claim(pool, tenant, key, hash)).await;
    };
    if expired || (state == "in_flight" && abandoned) {
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET request_hash = $3, state = 'in_flight', response_status = NULL, response_body = NULL, \
             created_at = now(), expires_at = now() + make_interval(hours => $4) \
             WHERE tenant_id = $1 AND idem_key = $2 AND (expires_at < now() OR (state = 'in_flight' AND created_at < now() - make_interval(secs => $5)))",
        )
        .bind(tenant)
        .bind(key)
        .bind(hash)
        .bind(IDEMPOTENCY_RETENTION_HOURS as i32)
        .bind(IN_FLIGHT_ABANDONED_SECONDS as f64)
        .execute(pool)
        .await?
        .rows_affected();
        return if taken == 1 {
            Ok(None)
        } else {
            Err(ApiError::IdempotencyInFlight)
        };
    }
    if stored_hash != hash {
        return Err(ApiError::IdempotencyMismatch);
    }
    match (state.as_str(), status, body) {
        ("done", Some(s), Some(b)) => Ok(Some((u16::try_from(s).unwrap_or(200), b))),
        _ => Err(ApiError::IdempotencyInFlight),
    }
}

async fn create(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let caller = caller(&api, &headers, auth::WRITE).await?;
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be ASCII".into()))?;
            if k.is_empty() || k.len() > 255 {
                return Err(ApiError::BadRequest(
                    "Idempotency-Key must be 1 to 255 characters".into(),
                ));
            }
            Some(k.to_string())
        }
    };
    let request = validate::onboarding(&value).map_err(ApiError::Validation)?;
    if let Some(k) = &key
        && let Some((status, stored)) = claim(&api.pool, &caller.tenant_id, k, &fingerprint(&value)).await?
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        return Ok((status, [("idempotent-replayed", "true")], Json(stored)).into_response());
    }
    let flow_id = uuid::Uuid::now_v7().to_string();
    let mut envelope = Envelope::new(
        StartOnboarding::RECORD,
        caller.tenant_id.clone(),
        flow_id.clone(),
        SERVICE,
    );
    envelope.correlation_id = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| flow_id.clone());
    envelope.idempotency_key = key.clone();
    let command = StartOnboarding {
        envelope,
        applicant_id: request.applicant_id.clone(),
        person: request.person,
        region: request.region,
        risk_tier: request.risk_tier,
        segment: request.segment,
    };
    let response = json!({"id": flow_id, "applicant_id": request.applicant_id, "status": "accepted",
        "links": {"self": format!("/v1/onboardings/{flow_id}")}});
    let record = EventRecord::of(&command).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut tx = api.pool.begin().await?;
    sqlx::query("INSERT INTO onboardings (flow_id, tenant_id, applicant_id, status) VALUES ($1, $2, $3, 'accepted')")
        .bind(&flow_id)
        .bind(&caller.tenant_id)
        .bind(&request.applicant_id)
        .execute(&mut *tx)
        .await?;
    api.outbox
        .enqueue(&mut tx, StartOnboarding::TOPIC, &record)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if let Some(k) = &key {
        sqlx::query("UPDATE idempotency_keys SET state = 'done', response_status = 202, response_body = $3 WHERE tenant_id = $1 AND idem_key = $2")
            .bind(&caller.tenant_id)
            .bind(k)
            .bind(&response)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(flow_id, tenant = %caller.tenant_id, "onboarding accepted");
    Ok((
        StatusCode::ACCEPTED,
        [("location", format!("/v1/onboardings/{flow_id}"))],
        Json(response),
    )
        .into_response())
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<String>,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
);

async fn fetch(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let caller = caller(&api, &headers, auth::READ).await?;
    // Another tenant's flow is "not found": existence is not disclosed.
    let row: Option<Row> = sqlx::query_as(
        "SELECT flow_id, applicant_id, status, step, decision, kyc_partner, aml_partner, reasons, failure_code, \
         created_at, updated_at, completed_at FROM onboardings WHERE flow_id = $1 AND tenant_id = $2",
    )
    .bind(&id)
    .bind(&caller.tenant_id)
    .fetch_optional(&api.pool)
    .await?;
    let Some((flow_id, applicant_id, status, step, decision, kyc, aml, reasons, failure, created, updated, completed)) =
        row
    else {
        return Err(ApiError::NotFound);
    };
    Ok(Json(
        json!({"id": flow_id, "applicant_id": applicant_id, "status": status, "step": step, "decision": decision,
        "kyc_partner": kyc, "aml_partner": aml, "reasons": reasons, "failure_code": failure,
        "created_at": created, "updated_at": updated, "completed_at": completed}),
    )
    .into_response())
}

/// Forgets expired idempotency keys.
pub async fn prune(pool: PgPool, shutdown: switchyard_runtime::Shutdown) {
    while shutdown.sleep(Duration::from_secs(60)).await {
        if let Err(e) = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < now()")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "idempotency key pruning failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Limiter;

    #[test]
    fn the_rate_limit_is_per_tenant_with_a_burst() {
        let l = Limiter::new(1.0, 3.0);
        for _ in 0..3 {
            assert!(l.take("a").is_ok());
        }
        assert!(matches!(
            l.take("a"),
            Err(crate::problem::ApiError::RateLimited { retry_after_s: 1 })
        ));
        assert!(l.take("b").is_ok(), "another tenant has its own bucket");
    }
}
