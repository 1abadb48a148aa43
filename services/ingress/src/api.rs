//! The HTTP API under `/v1`.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, Path, State},
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
    pub gate: Gate,
    /// Cards are issued only to cardholders whose onboarding here was approved (`[cards]
    /// require_onboarding`); otherwise also to those onboarded elsewhere (none here).
    pub cards_require_onboarding: bool,
}

/// What a request passes before its work: the rate limits, and the authentication between them.
#[derive(Clone)]
pub struct Gate {
    /// Per tenant, and per presented key id before the key is looked up.
    pub limiter: Limiter,
    /// Failed authentications per peer address: once spent, that peer is refused before any look-up
    /// (a client spraying bad keys costs one query per token, not one per request).
    pub failures: Limiter,
}

impl Gate {
    /// Failed authentications allowed per peer: a burst of 20, then one every 2 s.
    pub fn new(limiter: Limiter) -> Gate {
        Gate {
            limiter,
            failures: Limiter::new("too many failed authentications from this address", 0.5, 20.0),
        }
    }
}

/// A token bucket per key (a tenant, a key id, a peer address).
#[derive(Clone)]
pub struct Limiter {
    /// Said in the 429's detail.
    what: &'static str,
    per_second: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl Limiter {
    pub fn new(what: &'static str, per_second: f64, burst: f64) -> Self {
        Limiter {
            what,
            per_second,
            burst,
            buckets: Arc::default(),
        }
    }

    fn take(&self, key: &str) -> Result<(), ApiError> {
        self.spend(key, 1.0)
    }

    /// Refused when `key` has no token left; takes none.
    fn check(&self, key: &str) -> Result<(), ApiError> {
        self.spend(key, 0.0)
    }

    fn spend(&self, key: &str, cost: f64) -> Result<(), ApiError> {
        let Ok(mut b) = self.buckets.lock() else { return Ok(()) };
        let now = Instant::now();
        // Full buckets carry no information: drop them when many keys were seen (bad key ids and
        // peer addresses are unbounded).
        if b.len() > 10_000 {
            let (rate, burst) = (self.per_second, self.burst);
            b.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = b.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= cost;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64;
            Err(ApiError::RateLimited {
                retry_after_s: wait,
                what: self.what,
            })
        }
    }
}

pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/v1/onboardings", post(create))
        .route("/v1/onboardings/{id}", get(fetch))
        .route("/v1/payouts", post(crate::payouts::create))
        .route("/v1/payouts/{id}", get(crate::payouts::fetch))
        .route("/v1/payouts/{id}/cancel", post(crate::payouts::cancel))
        .route("/v1/payouts/{id}/review", post(crate::payouts::review))
        .route("/v1/cards", post(crate::cards::create))
        .route("/v1/cards/{id}", get(crate::cards::fetch))
        .route("/v1/cards/{id}/{action}", post(crate::cards::change))
        .route("/v1/openbanking/consents", post(crate::openbanking::create_consent))
        .route("/v1/openbanking/consents/{id}", get(crate::openbanking::fetch_consent))
        .route(
            "/v1/openbanking/consents/{id}/transactions",
            get(crate::openbanking::consent_transactions),
        )
        .route(
            "/v1/openbanking/consents/{id}/{action}",
            post(crate::openbanking::consent_action),
        )
        .route("/v1/openbanking/payments", post(crate::openbanking::create_payment))
        .route("/v1/openbanking/payments/{id}", get(crate::openbanking::fetch_payment))
        .route("/v1/fraud/scores", post(crate::payouts::score))
        .route("/v1/fraud/scores/{id}", get(crate::payouts::fetch_score))
        .route("/v1/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

async fn openapi() -> impl IntoResponse {
    ([("content-type", "application/json")], include_str!("../openapi.json"))
}

/// Rate limits around authentication, cheapest first: a peer that keeps failing is refused before
/// any look-up, a key id over its rate before its look-up, a tenant over its rate after it.
pub(crate) async fn caller(
    pool: &PgPool,
    gate: &Gate,
    peer: IpAddr,
    headers: &HeaderMap,
    scope: &str,
) -> Result<Caller, ApiError> {
    let peer = peer.to_string();
    gate.failures.check(&peer)?;
    if let Some(id) = auth::presented_key_id(headers) {
        gate.limiter.take(&format!("key:{id}"))?;
    }
    let c = match auth::authenticate(pool, headers).await {
        Err(e @ ApiError::Unauthorized(_)) => {
            let _ = gate.failures.take(&peer);
            if gate.failures.check(&peer).is_err() {
                tracing::warn!(%peer, key_id = auth::presented_key_id(headers).unwrap_or("-"),
                    "address refused after repeated failed authentications");
            }
            return Err(e);
        }
        other => other?,
    };
    c.require(scope)?;
    gate.limiter.take(&format!("tenant:{}", c.tenant_id))?;
    Ok(c)
}

/// The body of a JSON request (`Content-Type: application/json`).
pub(crate) fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))
}

/// The request's `Idempotency-Key`, if it has one.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be ASCII".into()))?;
    if k.is_empty() || k.len() > 255 {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 characters".into(),
        ));
    }
    Ok(Some(k.to_string()))
}

/// The caller's correlation id, or `default`.
pub(crate) fn correlation_id(headers: &HeaderMap, default: &str) -> String {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| default.to_string())
}

pub(crate) fn fingerprint(body: &Value) -> String {
    auth::hash(&body.to_string())
}

/// A stored key: request hash, state, response status and body, expired, abandoned in flight.
type Stored = (String, String, Option<i32>, Option<Value>, bool, bool);

/// Claims `key` for this request (`owner`); returns a stored response to replay if it is done.
pub(crate) async fn claim(
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
pub(crate) async fn complete(
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
pub(crate) async fn release(pool: &PgPool, tenant: &str, key: &str, owner: uuid::Uuid) {
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

async fn create(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::WRITE).await?;
    let value = json_body(&headers, &body)?;
    let key = idempotency_key(&headers)?;
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
    envelope.correlation_id = correlation_id(headers, &flow_id);
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
    api.outbox.committed();
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

async fn fetch(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::READ).await?;
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
        return Err(ApiError::NotFound("onboarding"));
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
/// * `completed_onboardings` (default 400 days): the read model of flows decided that long ago;
/// * `completed_payouts` (default 400 days): the read models of payouts and scores completed that long ago.
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
        Rule::hours(
            "completed_payouts",
            "payouts",
            "completed_at < now() - make_interval(secs => $1)",
            400 * 24,
        ),
        Rule::hours(
            "completed_payouts",
            "fraud_scores",
            "completed_at < now() - make_interval(secs => $1)",
            400 * 24,
        ),
        // Bank transactions are personal data: kept for the API this long after they moved.
        Rule::hours(
            "bank_transactions",
            "ob_transactions",
            "COALESCE(booking_date, value_date) < (now() - make_interval(secs => $1))::date",
            400 * 24,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::Limiter;

    #[test]
    fn the_rate_limit_is_per_tenant_with_a_burst() {
        let l = Limiter::new("tenant limit", 1.0, 3.0);
        assert!(l.check("a").is_ok(), "a check takes no token");
        for _ in 0..3 {
            assert!(l.take("a").is_ok());
        }
        assert!(matches!(
            l.take("a"),
            Err(crate::problem::ApiError::RateLimited {
                retry_after_s: 1,
                what: "tenant limit"
            })
        ));
        assert!(l.check("a").is_err());
        assert!(l.take("b").is_ok(), "another tenant has its own bucket");
    }
}

/// The gate against the stack's PostgreSQL.
#[cfg(test)]
mod gate_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::{IpAddr, Ipv4Addr};

    use axum::http::{HeaderMap, HeaderValue};

    use super::{Gate, Limiter, caller};
    use crate::{auth, problem::ApiError};

    fn bearer(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        );
        h
    }

    /// A peer spraying bad keys gets its 20 answers of 401, then 429s that cost no database look-up
    /// (proved by closing the pool: a look-up would fail as unavailable); other peers and good keys
    /// are unaffected.
    #[tokio::test]
    async fn a_peer_spraying_bad_keys_is_refused_before_any_look_up() {
        let db = switchyard_tests::Stack::get().fresh_db("ingress_gate").await;
        sqlx::migrate!("./migrations").run(&db.pool).await.unwrap();
        let good = auth::create_key(&db.pool, "t1", &[auth::READ.to_string()], "test", "test")
            .await
            .unwrap();
        let gate = Gate::new(Limiter::new("tenant", 1000.0, 1000.0));
        let (sprayer, other) = (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        );
        for i in 0..20 {
            let r = caller(&db.pool, &gate, sprayer, &bearer(&format!("sy_bad{i}_x")), auth::READ).await;
            assert!(matches!(r, Err(ApiError::Unauthorized(_))), "{i}: {r:?}");
        }
        assert!(caller(&db.pool, &gate, other, &bearer(&good), auth::READ).await.is_ok());
        db.pool.close().await;
        for i in 20..40 {
            let r = caller(&db.pool, &gate, sprayer, &bearer(&format!("sy_bad{i}_x")), auth::READ).await;
            assert!(matches!(r, Err(ApiError::RateLimited { .. })), "{i}: {r:?}");
        }
        let r = caller(&db.pool, &gate, sprayer, &bearer(&good), auth::READ).await;
        assert!(
            matches!(r, Err(ApiError::RateLimited { .. })),
            "even a good key waits: {r:?}"
        );
        db.drop_db().await;
    }

    /// One key over its rate is refused before its look-up.
    #[tokio::test]
    async fn a_key_over_its_rate_is_refused_before_its_look_up() {
        let db = switchyard_tests::Stack::get().fresh_db("ingress_gate_key").await;
        sqlx::migrate!("./migrations").run(&db.pool).await.unwrap();
        let good = auth::create_key(&db.pool, "t1", &[auth::READ.to_string()], "test", "test")
            .await
            .unwrap();
        let gate = Gate::new(Limiter::new("tenant", 0.001, 3.0));
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(caller(&db.pool, &gate, peer, &bearer(&good), auth::READ).await.is_ok());
        db.pool.close().await;
        // The key's own bucket still has tokens (the tenant's is separate): the look-up is tried…
        let r = caller(&db.pool, &gate, peer, &bearer(&good), auth::READ).await;
        assert!(matches!(r, Err(ApiError::Unavailable(_))), "{r:?}");
        let r = caller(&db.pool, &gate, peer, &bearer(&good), auth::READ).await;
        assert!(matches!(r, Err(ApiError::Unavailable(_))), "{r:?}");
        // …until it is spent: refused with no look-up.
        let r = caller(&db.pool, &gate, peer, &bearer(&good), auth::READ).await;
        assert!(matches!(r, Err(ApiError::RateLimited { .. })), "{r:?}");
        db.drop_db().await;
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
        for (payout, done_days_ago) in [("old-paid", Some(401)), ("new-paid", Some(30)), ("processing", None)] {
            sqlx::query(
                "INSERT INTO payouts (tenant_id, payout_id, flow_id, status, amount_minor, currency, beneficiary, request_hash, \
                 completed_at) VALUES ('t', $1, $1, 'settled', 100, 'EUR', '••••3000', 'h', now() - make_interval(days => $2))",
            )
            .bind(payout)
            .bind(done_days_ago)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        switchyard_runtime::retention::run_once(&db.pool, &super::retention_rules()).await;
        let payouts: Vec<String> = sqlx::query_scalar("SELECT payout_id FROM payouts ORDER BY payout_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(payouts, ["new-paid", "processing"]);
        db.drop_db().await;
    }

    /// Within its 24 hours a completed key replays its response and refuses another body; once
    /// expired it is a new key: a different body is served afresh, not refused.
    #[tokio::test]
    async fn an_expired_key_is_a_new_key() {
        let db = db("idem_expiry").await;
        let first = uuid::Uuid::new_v4();
        assert!(claim(&db.pool, "t", "k3", "h1", first).await.unwrap().is_none());
        let mut tx = db.pool.begin().await.unwrap();
        let response = serde_json::json!({"id": "flow-1"});
        assert!(complete(&mut tx, "t", "k3", first, 202, &response).await.unwrap());
        tx.commit().await.unwrap();
        let replay = claim(&db.pool, "t", "k3", "h1", uuid::Uuid::new_v4()).await.unwrap();
        assert_eq!(replay, Some((202, response)));
        assert!(matches!(
            claim(&db.pool, "t", "k3", "h2", uuid::Uuid::new_v4()).await,
            Err(ApiError::IdempotencyMismatch)
        ));
        sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE idem_key = 'k3'")
            .execute(&db.pool)
            .await
            .unwrap();
        let later = uuid::Uuid::new_v4();
        assert!(claim(&db.pool, "t", "k3", "h2", later).await.unwrap().is_none());
        let owner: Option<uuid::Uuid> = sqlx::query_scalar("SELECT owner FROM idempotency_keys WHERE idem_key = 'k3'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(owner, Some(later), "the new request owns the key");
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

/// Runs `create` under the request's Idempotency-Key (replaying a finished request's answer) and
/// gives the key back if it fails.
pub(crate) async fn idempotent<F, Fut>(
    api: &Api,
    tenant: &str,
    headers: &HeaderMap,
    body: &Value,
    create: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Option<String>, uuid::Uuid) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let key = idempotency_key(headers)?;
    let owner = uuid::Uuid::new_v4();
    if let Some(k) = &key
        && let Some((status, stored)) = claim(&api.pool, tenant, k, &fingerprint(body), owner).await?
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        return Ok((status, [("idempotent-replayed", "true")], Json(stored)).into_response());
    }
    let created = create(key.clone(), owner).await;
    if created.is_err()
        && let Some(k) = &key
    {
        release(&api.pool, tenant, k, owner).await;
    }
    created
}

/// After an insert found the id taken: the same request again is answered as the first was (200,
/// at its location); another request under the id is a conflict. `sql` reads the first request's
/// hash by tenant and id.
pub(crate) async fn replay_or_conflict(
    pool: &PgPool,
    sql: &'static str,
    (tenant, id): (&str, &str),
    hash: &str,
    (location, answer): (String, serde_json::Value),
    what: &str,
) -> Result<Response, ApiError> {
    let first: Option<String> = sqlx::query_scalar(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    if first.as_deref() == Some(hash) {
        Ok((StatusCode::OK, [("location", location)], Json(answer)).into_response())
    } else {
        Err(ApiError::Conflict(format!(
            "{what} {id} is already used by another request of this tenant"
        )))
    }
}
