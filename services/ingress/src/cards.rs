//! `/v1/cards`: issue a card (once per tenant and `card_id`: the same body again answers as the
//! first did, another body is a conflict), read it with its recent transactions, and change its
//! state (`/activate`, `/freeze`, `/unfreeze`, `/terminate`). Same keys, scopes, idempotency and
//! tenant rules as the other flows. Card numbers are never accepted, stored or shown: the
//! processor's token and the last four digits only.

use std::net::SocketAddr;

use axum::{
    Json,
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        cards::{
            CardFormFactor, CardOperation, CardState, CardStateChanged, CardTransaction, RequestCardOperation, flow_id,
        },
    },
    money,
};
use switchyard_runtime::HandlerError;

use crate::{
    api::{Api, SERVICE, caller, complete, correlation_id, fingerprint, idempotent, json_body, replay_or_conflict},
    auth,
    problem::ApiError,
    validate,
};

fn envelope(record: &str, tenant: &str, flow_id: &str, headers: &HeaderMap, key: Option<&str>) -> Envelope {
    let mut e = Envelope::new(record, tenant.to_string(), flow_id.to_string(), SERVICE);
    e.correlation_id = correlation_id(headers, flow_id);
    e.idempotency_key = key.map(str::to_string);
    e
}

/// `POST /v1/cards`.
pub async fn create(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::CARDS_WRITE).await?;
    let value = json_body(&headers, &body)?;
    let card = validate::card(&value).map_err(ApiError::Validation)?;
    let tenant = caller.tenant_id.clone();
    cardholder_standing(&api, &tenant, &card.cardholder_id).await?;
    idempotent(&api, &tenant, &headers, &value, |key, owner| {
        accept(&api, &tenant, &headers, key, owner, &value, card)
    })
    .await
}

/// A card is issued to a customer whose onboarding here was approved: one rejected, under review
/// or still running is refused; one with no onboarding here is refused only when the ingress
/// requires it (`[cards] require_onboarding`: a tenant may onboard its customers elsewhere).
async fn cardholder_standing(api: &Api, tenant: &str, cardholder_id: &str) -> Result<(), ApiError> {
    let latest: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, decision FROM onboardings WHERE tenant_id = $1 AND applicant_id = $2 \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(cardholder_id)
    .fetch_optional(&api.pool)
    .await?;
    let refuse = |why: String| Err(ApiError::Validation(vec![("cardholder_id".into(), why)]));
    match latest {
        Some((_, Some(d))) if d == "approved" => Ok(()),
        Some((_, Some(d))) => refuse(format!(
            "the cardholder's onboarding was decided {d}: cards are issued to approved customers"
        )),
        Some((status, None)) => refuse(format!(
            "the cardholder's onboarding is {status}: cards are issued to approved customers"
        )),
        None if api.cards_require_onboarding => refuse("the cardholder has no approved onboarding".into()),
        None => Ok(()),
    }
}

async fn accept(
    api: &Api,
    tenant: &str,
    headers: &HeaderMap,
    key: Option<String>,
    owner: uuid::Uuid,
    body: &Value,
    c: validate::NewCard,
) -> Result<Response, ApiError> {
    let flow = flow_id(tenant, &c.card_id);
    let hash = fingerprint(body);
    let link = format!("/v1/cards/{}", c.card_id);
    let response = json!({"id": c.card_id, "status": "requested", "links": {"self": link}});
    let form = match c.form_factor {
        CardFormFactor::Virtual => "virtual",
        CardFormFactor::Physical => "physical",
    };
    let mut tx = api.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO cards (tenant_id, card_id, flow_id, cardholder_id, status, form_factor, product, request_hash) \
         VALUES ($1, $2, $3, $4, 'requested', $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&c.card_id)
    .bind(&flow)
    .bind(&c.cardholder_id)
    .bind(form)
    .bind(&c.product)
    .bind(&hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        drop(tx);
        return replay_or_conflict(
            &api.pool,
            "SELECT request_hash FROM cards WHERE tenant_id = $1 AND card_id = $2",
            (tenant, &c.card_id),
            &hash,
            (link, response),
            "card_id",
        )
        .await;
    }
    let command = RequestCardOperation {
        envelope: envelope(RequestCardOperation::RECORD, tenant, &flow, headers, key.as_deref()),
        cardholder_id: c.cardholder_id,
        operation: CardOperation::Issue,
        card_token: None,
        cardholder: c.cardholder,
        spend_limit: None,
        card_id: Some(c.card_id.clone()),
        product: c.product,
        form_factor: Some(c.form_factor),
        controls: c.controls,
        funding: c.funding,
        reason: None,
    };
    let record = EventRecord::of(&command).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    api.outbox
        .enqueue(&mut tx, RequestCardOperation::TOPIC, &record)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if let Some(k) = &key
        && !complete(&mut tx, tenant, k, owner, 202, &response).await?
    {
        return Err(ApiError::IdempotencyInFlight);
    }
    tx.commit().await?;
    api.outbox.committed();
    tracing::info!(card_id = %c.card_id, tenant, "card requested");
    Ok((StatusCode::ACCEPTED, [("location", link)], Json(response)).into_response())
}

type CardRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
);

async fn row(api: &Api, tenant: &str, id: &str) -> Result<CardRow, ApiError> {
    // Another tenant's card is "not found": existence is not disclosed.
    sqlx::query_as(
        "SELECT card_id, cardholder_id, status, form_factor, product, partner, card_token, last4, last_operation, \
         failure_code, created_at, updated_at FROM cards WHERE tenant_id = $1 AND card_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&api.pool)
    .await?
    .ok_or(ApiError::NotFound("card"))
}

type TxnRow = (
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<String>,
    Option<i64>,
    bool,
    chrono::DateTime<chrono::Utc>,
);

/// `GET /v1/cards/{id}`: the card and its last 50 transactions.
pub async fn fetch(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::CARDS_READ).await?;
    let (id, holder, status, form, product, partner, token, last4, last_op, failure, created, updated) =
        row(&api, &caller.tenant_id, &id).await?;
    let txns: Vec<TxnRow> = sqlx::query_as(
        "SELECT provider_transaction_id, kind, amount_minor, currency, merchant, mcc, approved, decline_reason, \
         latency_ms, fallback, at FROM card_transactions WHERE tenant_id = $1 AND card_id = $2 ORDER BY at DESC LIMIT 50",
    )
    .bind(&caller.tenant_id)
    .bind(&id)
    .fetch_all(&api.pool)
    .await?;
    let transactions: Vec<Value> = txns
        .into_iter()
        .map(
            |(txn, kind, minor, currency, merchant, mcc, approved, reason, latency, fallback, at)| {
                json!({"id": txn, "kind": kind,
                "amount": {"currency": currency, "value": money::decimal(minor, &currency), "minor_units": minor},
                "merchant": merchant, "mcc": mcc, "approved": approved, "decline_reason": reason,
                "decision_ms": latency, "fallback": fallback, "at": at})
            },
        )
        .collect();
    Ok(Json(
        json!({"id": id, "cardholder_id": holder, "status": status, "form_factor": form, "product": product,
        "partner": partner, "processor_token": token, "last4": last4, "last_operation": last_op, "failure_code": failure,
        "created_at": created, "updated_at": updated, "transactions": transactions}),
    )
    .into_response())
}

/// `POST /v1/cards/{id}/{action}` (activate, freeze, unfreeze, terminate; optional
/// `{"reason": "..."}`): accepted (202); the card's state changes when its processor has done it.
pub async fn change(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::CARDS_WRITE).await?;
    let operation = match action.as_str() {
        "activate" => CardOperation::Activate,
        "freeze" => CardOperation::Freeze,
        "unfreeze" => CardOperation::Unfreeze,
        "terminate" => CardOperation::Terminate,
        _ => {
            return Err(ApiError::NotFound(
                "card action (activate, freeze, unfreeze, terminate)",
            ));
        }
    };
    let reason = if body.is_empty() {
        None
    } else {
        let v = json_body(&headers, &body)?;
        match v.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.chars().take(200).collect::<String>()),
            Some(_) => return Err(ApiError::Validation(vec![("reason".into(), "must be a string".into())])),
        }
    };
    let (id, holder, status, ..) = row(&api, &caller.tenant_id, &id).await?;
    if status == "terminated" || status == "failed" {
        return Err(ApiError::Conflict(format!(
            "the card is {status}: nothing more can change"
        )));
    }
    let tenant = &caller.tenant_id;
    let flow = flow_id(tenant, &id);
    let command = RequestCardOperation {
        envelope: envelope(RequestCardOperation::RECORD, tenant, &flow, &headers, None),
        cardholder_id: holder,
        operation,
        card_token: None,
        cardholder: None,
        spend_limit: None,
        card_id: Some(id.clone()),
        product: None,
        form_factor: None,
        controls: None,
        funding: None,
        reason,
    };
    let record = EventRecord::of(&command).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut tx = api.pool.begin().await?;
    api.outbox
        .enqueue(&mut tx, RequestCardOperation::TOPIC, &record)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    tx.commit().await?;
    api.outbox.committed();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": format!("{action}_requested"), "links": {"self": format!("/v1/cards/{id}")}})),
    )
        .into_response())
}

fn status_of(s: CardState) -> &'static str {
    match s {
        CardState::Requested => "requested",
        CardState::Inactive => "inactive",
        CardState::Active => "active",
        CardState::Frozen => "frozen",
        CardState::Terminated => "terminated",
    }
}

/// The read model's part for cards: state changes and transactions.
pub async fn project(conn: &mut PgConnection, msg: &switchyard_runtime::Incoming) -> Result<bool, HandlerError> {
    let perm = |e: switchyard_model::SchemaError| HandlerError::Permanent(e.to_string());
    if let Some(s) = msg.event.as_event::<CardStateChanged>() {
        let s = s.map_err(perm)?;
        let Some(card_id) = &s.card_id else {
            return Ok(true);
        };
        let issue_failed = s.failure.is_some()
            && s.operation == Some(CardOperation::Issue)
            && !matches!(
                s.failure.as_ref().map(|f| f.failure_class),
                Some(switchyard_model::events::common::FailureClass::ManualRepair)
                    | Some(switchyard_model::events::common::FailureClass::Ambiguous)
            );
        let status = if issue_failed { "failed" } else { status_of(s.state) };
        sqlx::query(
            "UPDATE cards SET status = CASE WHEN status = 'terminated' THEN status ELSE $3 END, \
             partner = COALESCE(NULLIF($4, ''), partner), card_token = COALESCE(NULLIF($5, ''), card_token), \
             last4 = COALESCE($6, last4), last_operation = $7, failure_code = $8, updated_at = now() \
             WHERE tenant_id = $1 AND card_id = $2",
        )
        .bind(&s.envelope.tenant_id)
        .bind(card_id)
        .bind(status)
        .bind(&s.partner)
        .bind(&s.card_token)
        .bind(&s.last4)
        .bind(s.operation.map(|o| format!("{o:?}").to_lowercase()))
        .bind(s.failure.as_ref().map(|f| f.code.clone()))
        .execute(conn)
        .await?;
        return Ok(true);
    }
    // A later event about the same transaction corrects it (an authorization whose answer never
    // reached the processor is recorded as the processor decided).
    if let Some(t) = msg.event.as_event::<CardTransaction>() {
        let t = t.map_err(perm)?;
        let Some(card_id) = &t.card_id else {
            return Ok(true);
        };
        sqlx::query(
            "INSERT INTO card_transactions (tenant_id, card_id, partner, provider_transaction_id, kind, amount_minor, \
             currency, merchant, mcc, approved, decline_reason, latency_ms, fallback) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (partner, provider_transaction_id, kind) DO UPDATE SET approved = EXCLUDED.approved, \
             decline_reason = EXCLUDED.decline_reason, fallback = EXCLUDED.fallback, \
             latency_ms = COALESCE(card_transactions.latency_ms, EXCLUDED.latency_ms)",
        )
        .bind(&t.envelope.tenant_id)
        .bind(card_id)
        .bind(&t.partner)
        .bind(&t.provider_transaction_id)
        .bind(format!("{:?}", t.kind).to_lowercase())
        .bind(t.amount.amount_minor)
        .bind(&t.amount.currency)
        .bind(t.merchant.as_ref().map(|m| m.name.clone()))
        .bind(t.merchant.as_ref().map(|m| m.mcc.clone()))
        .bind(t.approved)
        .bind(&t.decline_reason)
        .bind(t.latency_ms)
        .bind(t.fallback)
        .execute(conn)
        .await?;
        return Ok(true);
    }
    Ok(false)
}
