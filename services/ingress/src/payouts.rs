//! `/v1/payouts` and `/v1/fraud/scores`: the same keys, scopes, idempotency and tenant rules as
//! onboarding. A payout is created once per tenant and `payout_id` (a second create with the same
//! body answers as the first did; with another body it is a conflict). Account numbers are never
//! stored here, logged or echoed, nor is the beneficiary's name: the read model keeps the account's
//! last four characters.

use std::net::SocketAddr;

use axum::{
    Json,
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        fraud::ScoreTransaction,
        payouts::{CancelPayout, InitiatePayout, ReviewPayout},
    },
    money,
};

use crate::{
    api::{Api, SERVICE, caller, complete, correlation_id, fingerprint, idempotent, json_body, replay_or_conflict},
    auth,
    problem::ApiError,
    validate,
};

use switchyard_model::events::payouts::flow_id;

fn envelope(record: &str, tenant: &str, flow_id: &str, headers: &HeaderMap, key: Option<&str>) -> Envelope {
    let mut e = Envelope::new(record, tenant.to_string(), flow_id.to_string(), SERVICE);
    e.correlation_id = correlation_id(headers, flow_id);
    e.idempotency_key = key.map(str::to_string);
    e
}

pub async fn create(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::PAYOUTS_WRITE).await?;
    let value = json_body(&headers, &body)?;
    let request = validate::payout(&value).map_err(ApiError::Validation)?;
    let tenant = caller.tenant_id.clone();
    idempotent(&api, &tenant, &headers, &value, |key, owner| {
        accept(&api, &tenant, &headers, key, owner, &value, request)
    })
    .await
}

async fn accept(
    api: &Api,
    tenant: &str,
    headers: &HeaderMap,
    key: Option<String>,
    owner: uuid::Uuid,
    body: &Value,
    p: validate::NewPayout,
) -> Result<Response, ApiError> {
    let flow = flow_id(tenant, &p.payout_id);
    let hash = fingerprint(body);
    let link = format!("/v1/payouts/{}", p.payout_id);
    let response = json!({"id": p.payout_id, "status": "accepted", "links": {"self": link}});
    let mut tx = api.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO payouts (tenant_id, payout_id, flow_id, status, amount_minor, currency, beneficiary, request_hash) \
         VALUES ($1, $2, $3, 'accepted', $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&p.payout_id)
    .bind(&flow)
    .bind(p.amount.amount_minor)
    .bind(&p.amount.currency)
    .bind(p.beneficiary.account.masked())
    .bind(&hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        drop(tx);
        return replay_or_conflict(
            &api.pool,
            "SELECT request_hash FROM payouts WHERE tenant_id = $1 AND payout_id = $2",
            (tenant, &p.payout_id),
            &hash,
            (link, response),
            "payout_id",
        )
        .await;
    }
    let command = InitiatePayout {
        envelope: envelope(InitiatePayout::RECORD, tenant, &flow, headers, key.as_deref()),
        payout_id: p.payout_id.clone(),
        customer_id: p.customer_id,
        amount: p.amount,
        beneficiary: p.beneficiary,
        rail: p.rail,
        reference: p.reference,
        country: p.country,
        priority: p.priority,
        channel: p.channel,
        device_id: p.device_id,
    };
    let record = EventRecord::of(&command).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    api.outbox
        .enqueue(&mut tx, InitiatePayout::TOPIC, &record)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if let Some(k) = &key
        && !complete(&mut tx, tenant, k, owner, 202, &response).await?
    {
        return Err(ApiError::IdempotencyInFlight);
    }
    tx.commit().await?;
    api.outbox.committed();
    tracing::info!(payout_id = %p.payout_id, tenant, "payout accepted");
    Ok((StatusCode::ACCEPTED, [("location", link)], Json(response)).into_response())
}

type PayoutRow = (
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Vec<String>,
    Option<String>,
    bool,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
);

async fn row(api: &Api, tenant: &str, id: &str) -> Result<PayoutRow, ApiError> {
    // Another tenant's payout is "not found": existence is not disclosed.
    let row: Option<PayoutRow> = sqlx::query_as(
        "SELECT payout_id, status, amount_minor, currency, beneficiary, partner, provider_reference, reasons, \
         failure_code, reversed, created_at, updated_at, completed_at FROM payouts WHERE tenant_id = $1 AND payout_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&api.pool)
    .await?;
    row.ok_or(ApiError::NotFound("payout"))
}

pub async fn fetch(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::PAYOUTS_READ).await?;
    let (
        id,
        status,
        minor,
        currency,
        beneficiary,
        partner,
        reference,
        reasons,
        failure,
        reversed,
        created,
        updated,
        completed,
    ) = row(&api, &caller.tenant_id, &id).await?;
    Ok(Json(json!({"id": id, "status": status,
        "amount": {"currency": currency, "value": money::decimal(minor, &currency), "minor_units": minor},
        "beneficiary": beneficiary, "partner": partner, "provider_reference": reference, "reasons": reasons,
        "failure_code": failure, "reversed": reversed, "cancellable": cancellable(&status),
        "created_at": created, "updated_at": updated, "completed_at": completed}))
    .into_response())
}

/// While no partner was asked to pay it, a payout is ours alone to stop; while its partner has it
/// and has not sent it, the partner is asked to cancel it (and decides).
fn cancellable(status: &str) -> bool {
    matches!(status, "accepted" | "screening" | "held_for_review" | "processing")
}

/// `POST /v1/payouts/{id}/cancel`: accepted (202) while the payout is cancellable; the outcome
/// (`cancelled`, or unchanged if its partner had already sent it) shows on the payout.
pub async fn cancel(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::PAYOUTS_WRITE).await?;
    let (id, status, ..) = row(&api, &caller.tenant_id, &id).await?;
    if !cancellable(&status) {
        return Err(ApiError::Conflict(format!(
            "the payout is {status}: only a payout not yet sent by its partner can be cancelled"
        )));
    }
    let tenant = &caller.tenant_id;
    let command = CancelPayout {
        envelope: envelope(CancelPayout::RECORD, tenant, &flow_id(tenant, &id), &headers, None),
        payout_id: id.clone(),
        reason: None,
    };
    send(&api, &command).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "cancel_requested", "links": {"self": format!("/v1/payouts/{id}")}})),
    )
        .into_response())
}

/// `POST /v1/payouts/{id}/review` with `{"release": true|false, "note": "..."}`: a reviewer's decision
/// on a payout held after fraud screening (scope `payouts:review`; the reviewer is the key's label).
pub async fn review(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::PAYOUTS_REVIEW).await?;
    let value = json_body(&headers, &body)?;
    let release = match value.get("release") {
        Some(Value::Bool(b)) => *b,
        _ => {
            return Err(ApiError::Validation(vec![(
                "release".into(),
                "is required: true to pay the payout, false to reject it".into(),
            )]));
        }
    };
    let note = value
        .get("note")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(500).collect::<String>());
    let (id, status, ..) = row(&api, &caller.tenant_id, &id).await?;
    if status != "held_for_review" {
        return Err(ApiError::Conflict(format!(
            "the payout is {status}, not held for review"
        )));
    }
    let tenant = &caller.tenant_id;
    let reviewer = auth::presented_key_id(&headers).unwrap_or("unknown").to_string();
    let command = ReviewPayout {
        envelope: envelope(ReviewPayout::RECORD, tenant, &flow_id(tenant, &id), &headers, None),
        payout_id: id.clone(),
        release,
        reviewer: format!("key:{reviewer}"),
        note,
    };
    send(&api, &command).await?;
    tracing::info!(payout_id = %id, release, "payout review decision");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": if release { "release_requested" } else { "reject_requested" }})),
    )
        .into_response())
}

/// Publishes one command (through the outbox, in its own transaction).
async fn send<E: Event>(api: &Api, command: &E) -> Result<(), ApiError> {
    let record = EventRecord::of(command).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut tx = api.pool.begin().await?;
    api.outbox
        .enqueue(&mut tx, E::TOPIC, &record)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    tx.commit().await?;
    api.outbox.committed();
    Ok(())
}

/// `POST /v1/fraud/scores`: a standalone score (scope `fraud:score`), once per tenant and
/// transaction id; the decision at `GET /v1/fraud/scores/{id}`.
pub async fn score(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::FRAUD_SCORE).await?;
    let value = json_body(&headers, &body)?;
    let s = validate::score(&value).map_err(ApiError::Validation)?;
    let tenant = caller.tenant_id.clone();
    idempotent(&api, &tenant, &headers, &value, |key, owner| {
        accept_score(&api, &tenant, &headers, key, owner, &value, s)
    })
    .await
}

async fn accept_score(
    api: &Api,
    tenant: &str,
    headers: &HeaderMap,
    key: Option<String>,
    owner: uuid::Uuid,
    value: &Value,
    s: validate::NewScore,
) -> Result<Response, ApiError> {
    {
        let hash = fingerprint(value);
        let link = format!("/v1/fraud/scores/{}", s.transaction_id);
        let response = json!({"id": s.transaction_id, "status": "accepted", "links": {"self": link}});
        let mut tx = api.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO fraud_scores (tenant_id, transaction_id, status, request_hash) VALUES ($1, $2, 'accepted', $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(&s.transaction_id)
        .bind(&hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(ApiError::Conflict(format!(
                "transaction_id {} was already scored for this tenant",
                s.transaction_id
            )));
        }
        let command = ScoreTransaction {
            envelope: envelope(
                ScoreTransaction::RECORD,
                tenant,
                &s.transaction_id,
                headers,
                key.as_deref(),
            ),
            customer_id: s.customer_id,
            transaction_id: s.transaction_id.clone(),
            amount: s.amount,
            counterparty_id: s.counterparty_id,
            channel: s.channel,
            device_id: s.device_id,
        };
        let record = EventRecord::of(&command).map_err(|e| ApiError::Unavailable(e.to_string()))?;
        api.outbox
            .enqueue(&mut tx, ScoreTransaction::TOPIC, &record)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        if let Some(k) = &key
            && !complete(&mut tx, tenant, k, owner, 202, &response).await?
        {
            return Err(ApiError::IdempotencyInFlight);
        }
        tx.commit().await?;
        api.outbox.committed();
        Ok((StatusCode::ACCEPTED, [("location", link)], Json(response)).into_response())
    }
}

type ScoreRow = (
    String,
    String,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
    Vec<String>,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
);

pub async fn fetch_score(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::FRAUD_SCORE).await?;
    let row: Option<ScoreRow> = sqlx::query_as(
        "SELECT transaction_id, status, decision, score, band, partner, reasons, failure_code, created_at, completed_at \
         FROM fraud_scores WHERE tenant_id = $1 AND transaction_id = $2",
    )
    .bind(&caller.tenant_id)
    .bind(&id)
    .fetch_optional(&api.pool)
    .await?;
    let Some((id, status, decision, score, band, partner, reasons, failure, created, completed)) = row else {
        return Err(ApiError::NotFound("fraud score"));
    };
    Ok(Json(json!({"id": id, "status": status, "decision": decision, "score": score, "band": band,
        "partner": partner, "reasons": reasons, "failure_code": failure, "created_at": created, "completed_at": completed}))
    .into_response())
}
