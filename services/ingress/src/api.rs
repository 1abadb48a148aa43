//! The HTTP API under `/v1`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
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

/// Claims `key` for this request (`owner`); returns a stored response to replay if it is done.
async fn claim(
    pool: &PgPool,
    tenant: &str,
    key: &str,
    hash: &str,
    owner: uuid::Uuid,
) -> Result<Option<(u16, Value)>, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, idem_key, request_hash, state, owner, expires_at) \
         VALUES ($1, $2, $3, 'in_flight', $5, now() + make_interval(hours => $4)) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(key)
    .bind(hash)
    .bind(IDEMPOTENCY_RETENTION_HOURS as i32)
    .bind(owner)
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
        // Deleted between the two statements (released or pruned): try once more.
        return Box::pin(claim(pool, tenant, key, hash, owner)).await;
    };
    if expired || (state == "in_flight" && abandoned) {
        // Taken over with a new owner: the earlier owner, if it is only slow, can no longer
        // complete it (see `complete`).
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET request_hash = $3, state = 'in_flight', owner = $6, response_status = NULL, \
             response_body = NULL, created_at = now(), expires_at = now() + make_interval(hours => $4) \
             WHERE tenant_id = $1 AND idem_key = $2 AND (expires_at < now() OR (state = 'in_flight' AND created_at < now() - make_interval(secs => $5)))",
        )
        .bind(tenant)
        .bind(key)
        .bind(hash)
        .bind(IDEMPOTENCY_RETENTION_HOURS as i32)
        .bind(IN_FLIGHT_ABANDONED_SECONDS as f64)
        .bind(owner)
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

/// Stores the response under the key, in the transaction that creates the flow, if this request
/// still owns the key. False: another request took it over; the caller must roll back.
async fn complete(
    conn: &mut sqlx::PgConnection,
    tenant: &str,
    key: &str,
    owner: uuid::Uuid,
    status: u16,
    response: &Value,
) -> Result<bool, ApiError> {
    let done = sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $4, response_body = $5 \
         WHERE tenant_id = $1 AND idem_key = $2 AND owner = $3 AND state = 'in_flight'",
    )
    .bind(tenant)
    .bind(key)
    .bind(owner)
    .bind(i32::from(status))
    .bind(response)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Gives a claimed key back when the request failed before creating anything, so a retry is served
/// at once instead of being refused as in flight until the claim counts as abandoned.
async fn release(pool: &PgPool, tenant: &str, key: &str, owner: uuid::Uuid) {
    let released = sqlx::query(
        "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2 AND owner = $3 AND state = 'in_flight'",
    )
    .bind(tenant)
    .bind(key)
    .bind(owner)
    .execute(pool)
    .await;
    if let Err(e) = released {
        tracing::warn!(error = %e, "could not release an idempotency key; it frees itself when abandoned");
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
    let owner = uuid::Uuid::new_v4();
    if let Some(k) = &key
        && let Some((status, stored)) = claim(&api.pool, &caller.tenant_id, k, &fingerprint(&value), owner).await?
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        return Ok((status, [("idempotent-replayed", "true")], Json(stored)).into_response());
    }
    let created = accept(&api, &caller.tenant_id, &headers, key.as_deref(), owner, request).await;
    if created.is_err()
        && let Some(k) = &key
    {
        release(&api.pool, &caller.tenant_id, k, owner).await;
    }
    created
}

/// Creates the flow: its read-model row, its command in the outbox and the key's stored response,
/// in one transaction.
async fn accept(
    api: &Api,
    tenant: &str,
    headers: &HeaderMap,
    key: Option<&str>,
    owner: uuid::Uuid,
    request: validate::NewOnboarding,
) -> Result<Response, ApiError> {
    let flow_id = uuid::Uuid::now_v7().to_string();
    let mut envelope = Envelope::new(StartOnboarding::RECORD, tenant.to_string(), flow_id.clone(), SERVICE);
    envelope.correlation_id = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| flow_id.clone());
    envelope.idempotency_key = key.map(str::to_string);
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
        .bind(tenant)
        .bind(&request.applicant_id)
        .execute(&mut *tx)
        .await?;
    api.outbox
        .enqueue(&mut tx, StartOnboarding::TOPIC, &record)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if let Some(k) = key
        && !complete(&mut tx, tenant, k, owner, 202, &response).await?
    {
        // Taken over by a retry while this request was slow: that retry creates the flow.
        return Err(ApiError::IdempotencyInFlight);
    }
    tx.commit().await?;
    tracing::info!(flow_id, tenant, "onboarding accepted");
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

/// What the ingress forgets, and when (`retention.<name>_hours`):
/// * `idempotency_keys` (default 0): a key is forgotten this long after it expires (24 h after its
///   request, see `IDEMPOTENCY_RETENTION_HOURS`);
/// * `completed_onboardings` (default 400 days): the read model of flows decided that long ago.
pub fn retention_rules() -> Vec<switchyard_runtime::retention::Rule> {
    use switchyard_runtime::retention::Rule;
    vec![
        Rule::hours(
            "idempotency_keys",
            "idempotency_keys",
            "expires_at < now() - make_interval(secs => $1)",
            0,
        ),
        Rule::hours(
            "completed_onboardings",
            "onboardings",
            "completed_at < now() - make_interval(secs => $1)",
            400 * 24,
        ),
    ]
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

/// The idempotency-key protocol against the stack's PostgreSQL (a fresh database per test).
#[cfg(test)]
mod idempotency_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::{claim, complete, release};
    use crate::problem::ApiError;

    async fn db(label: &str) -> switchyard_tests::TestDb {
        let db = switchyard_tests::Stack::get().fresh_db(label).await;
        sqlx::migrate!("./migrations").run(&db.pool).await.unwrap();
        db
    }

    /// Expired keys go at once, decided onboardings after their period; nothing else.
    #[tokio::test]
    async fn retention_forgets_expired_keys_and_old_decided_onboardings() {
        let db = db("ingress_retention").await;
        for (key, expired) in [("gone", true), ("kept", false)] {
            sqlx::query(
                "INSERT INTO idempotency_keys (tenant_id, idem_key, request_hash, state, expires_at) \
                 VALUES ('t', $1, 'h', 'done', now() + CASE WHEN $2 THEN interval '-1 second' ELSE interval '1 hour' END)",
            )
            .bind(key)
            .bind(expired)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        for (flow, done_days_ago) in [("old-done", Some(401)), ("new-done", Some(399)), ("running", None)] {
            sqlx::query(
                "INSERT INTO onboardings (flow_id, tenant_id, applicant_id, status, created_at, completed_at) \
                 VALUES ($1, 't', 'a', 'in_progress', now() - interval '500 days', now() - make_interval(days => $2))",
            )
            .bind(flow)
            .bind(done_days_ago)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        switchyard_runtime::retention::run_once(&db.pool, &super::retention_rules()).await;
        let keys: Vec<String> = sqlx::query_scalar("SELECT idem_key FROM idempotency_keys")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(keys, ["kept"]);
        let flows: Vec<String> = sqlx::query_scalar("SELECT flow_id FROM onboardings ORDER BY flow_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(flows, ["new-done", "running"]);
        db.drop_db().await;
    }

    #[tokio::test]
    async fn a_key_whose_request_failed_is_free_for_the_retry_at_once() {
        let db = db("idem_release").await;
        let (first, retry) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        assert!(claim(&db.pool, "t", "k1", "h", first).await.unwrap().is_none());
        // While the first request is in flight, a retry is refused...
        assert!(matches!(
            claim(&db.pool, "t", "k1", "h", retry).await,
            Err(ApiError::IdempotencyInFlight)
        ));
        // ...and once it failed and gave the key back, the retry is served.
        release(&db.pool, "t", "k1", first).await;
        assert!(claim(&db.pool, "t", "k1", "h", retry).await.unwrap().is_none());
        db.drop_db().await;
    }

    #[tokio::test]
    async fn a_slow_original_cannot_complete_a_key_a_retry_took_over() {
        let db = db("idem_owner").await;
        let (slow, retry) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        assert!(claim(&db.pool, "t", "k2", "h", slow).await.unwrap().is_none());
        // The original looks abandoned (older than the in-flight limit): the retry takes the key.
        sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '1 hour' WHERE idem_key = 'k2'")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(claim(&db.pool, "t", "k2", "h", retry).await.unwrap().is_none());
        let response = serde_json::json!({"id": "flow-from-retry"});
        // The slow original finishes: it may not store (and so must not create) anything.
        let mut tx = db.pool.begin().await.unwrap();
        assert!(
            !complete(
                &mut tx,
                "t",
                "k2",
                slow,
                202,
                &serde_json::json!({"id": "flow-from-slow"})
            )
            .await
            .unwrap()
        );
        tx.rollback().await.unwrap();
        // A failed original does not release the retry's claim either.
        release(&db.pool, "t", "k2", slow).await;
        let mut tx = db.pool.begin().await.unwrap();
        assert!(complete(&mut tx, "t", "k2", retry, 202, &response).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(
            claim(&db.pool, "t", "k2", "h", uuid::Uuid::new_v4()).await.unwrap(),
            Some((202, response)),
            "later requests replay the retry's response"
        );
        db.drop_db().await;
    }
}
