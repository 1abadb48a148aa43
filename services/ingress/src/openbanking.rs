//! `/v1/openbanking`: consents (start one and get the bank's authorization link; hand over the
//! callback's code; refresh, revoke; fetch accounts and transactions and read them) and pay-by-bank
//! payments (start one and get the authorization link; read its status). Same keys, scopes
//! (`openbanking:write`, `openbanking:read`), idempotency and tenant rules as the other flows. The
//! provider's tokens never reach the ingress; a callback's code is passed on once, never stored.

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
        openbanking::{
            BankTransactionStatus, OpenBankingAccounts, OpenBankingCompleted, OpenBankingOperation as Op,
            OpenBankingTransactions, RequestOpenBanking, consent_flow_id, payment_flow_id,
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

fn command(tenant: &str, flow: &str, headers: &HeaderMap, customer_id: &str, op: Op) -> RequestOpenBanking {
    let mut e = Envelope::new(
        RequestOpenBanking::RECORD,
        tenant.to_string(),
        flow.to_string(),
        SERVICE,
    );
    e.correlation_id = correlation_id(headers, flow);
    RequestOpenBanking {
        envelope: e,
        customer_id: customer_id.to_string(),
        operation: op,
        consent_id: None,
        institution_id: None,
        amount: None,
        creditor_account: None,
        redirect_uri: None,
        authorization_code: None,
        payment_id: None,
        reference: None,
        beneficiary: None,
    }
}

async fn send(api: &Api, tx: &mut PgConnection, c: &RequestOpenBanking) -> Result<(), ApiError> {
    let record = EventRecord::of(c).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    api.outbox
        .enqueue(tx, RequestOpenBanking::TOPIC, &record)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(())
}

/// `POST /v1/openbanking/consents`.
pub async fn create_consent(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::OPENBANKING_WRITE).await?;
    let value = json_body(&headers, &body)?;
    let c = validate::consent(&value).map_err(ApiError::Validation)?;
    let tenant = caller.tenant_id.clone();
    idempotent(&api, &tenant, &headers, &value, |key, owner| {
        accept_consent(&api, &tenant, &headers, key, owner, &value, c)
    })
    .await
}

async fn accept_consent(
    api: &Api,
    tenant: &str,
    headers: &HeaderMap,
    key: Option<String>,
    owner: uuid::Uuid,
    value: &Value,
    c: validate::NewConsent,
) -> Result<Response, ApiError> {
    let hash = fingerprint(value);
    let link = format!("/v1/openbanking/consents/{}", c.consent_id);
    let answer = json!({"id": c.consent_id, "status": "requested", "links": {"self": link}});
    let mut tx = api.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO ob_consents (tenant_id, consent_id, customer_id, status, request_hash) VALUES ($1, $2, $3, 'requested', $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&c.consent_id)
    .bind(&c.customer_id)
    .bind(&hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        drop(tx);
        return replay_or_conflict(
            &api.pool,
            "SELECT request_hash FROM ob_consents WHERE tenant_id = $1 AND consent_id = $2",
            (tenant, &c.consent_id),
            &hash,
            (link, answer),
            "consent_id",
        )
        .await;
    }
    let flow = consent_flow_id(tenant, &c.consent_id);
    let mut cmd = command(tenant, &flow, headers, &c.customer_id, Op::CreateConsent);
    cmd.envelope.idempotency_key = key.clone();
    cmd.consent_id = Some(c.consent_id.clone());
    cmd.institution_id = c.institution_id;
    cmd.redirect_uri = Some(c.redirect_uri);
    send(api, &mut tx, &cmd).await?;
    if let Some(k) = &key
        && !complete(&mut tx, tenant, k, owner, 202, &answer).await?
    {
        return Err(ApiError::IdempotencyInFlight);
    }
    tx.commit().await?;
    api.outbox.committed();
    Ok((StatusCode::ACCEPTED, [("location", link)], Json(answer)).into_response())
}

type ConsentRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<String>,
    Option<String>,
    Vec<String>,
);

async fn consent_row(api: &Api, tenant: &str, id: &str) -> Result<ConsentRow, ApiError> {
    sqlx::query_as(
        "SELECT consent_id, customer_id, status, partner, authorization_url, consent_expires_at, last_operation, failure_code, \
         scopes FROM ob_consents WHERE tenant_id = $1 AND consent_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&api.pool)
    .await?
    .ok_or(ApiError::NotFound("consent"))
}

/// `GET /v1/openbanking/consents/{id}`: where the consent stands, and its accounts as last fetched.
pub async fn fetch_consent(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::OPENBANKING_READ).await?;
    let (id, customer, status, partner, url, expires, last_op, failure, scopes) =
        consent_row(&api, &caller.tenant_id, &id).await?;
    type AccountRow = (String, String, String, String, Option<String>, Option<i64>, Option<i64>);
    let accounts: Vec<AccountRow> = sqlx::query_as(
        "SELECT account_id, name, kind, currency, number_last4, current_minor, available_minor FROM ob_accounts \
         WHERE tenant_id = $1 AND consent_id = $2 ORDER BY account_id",
    )
    .bind(&caller.tenant_id)
    .bind(&id)
    .fetch_all(&api.pool)
    .await?;
    let accounts: Vec<Value> = accounts
        .into_iter()
        .map(|(aid, name, kind, cur, last4, current, available)| {
            let m = |v: Option<i64>| {
                v.map(|v| json!({"currency": cur, "value": money::decimal(v, &cur), "minor_units": v}))
            };
            json!({"id": aid, "name": name, "kind": kind, "currency": cur, "last4": last4,
                "current": m(current), "available": m(available)})
        })
        .collect();
    Ok(Json(
        json!({"id": id, "customer_id": customer, "status": status, "partner": partner,
        "authorization_url": url, "consent_expires_at": expires, "scopes": scopes, "last_operation": last_op,
        "failure_code": failure,
        "accounts": accounts}),
    )
    .into_response())
}

/// `GET /v1/openbanking/consents/{id}/transactions`: the newest 200.
pub async fn consent_transactions(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::OPENBANKING_READ).await?;
    let (id, ..) = consent_row(&api, &caller.tenant_id, &id).await?;
    type TxnRow = (
        String,
        String,
        i64,
        String,
        String,
        Option<chrono::NaiveDate>,
        Option<chrono::NaiveDate>,
        String,
    );
    let rows: Vec<TxnRow> = sqlx::query_as(
        "SELECT transaction_id, account_id, amount_minor, currency, status, booking_date, value_date, description \
         FROM ob_transactions WHERE tenant_id = $1 AND consent_id = $2 \
         ORDER BY COALESCE(booking_date, value_date) DESC NULLS FIRST, transaction_id LIMIT 200",
    )
    .bind(&caller.tenant_id)
    .bind(&id)
    .fetch_all(&api.pool)
    .await?;
    let txns: Vec<Value> = rows
        .into_iter()
        .map(|(tid, aid, minor, cur, status, booked, value, desc)| {
            json!({"id": tid, "account_id": aid,
                "amount": {"currency": cur, "value": money::decimal(minor.abs(), &cur), "minor_units": minor},
                "direction": if minor < 0 { "out" } else { "in" }, "status": status,
                "booking_date": booked, "value_date": value, "description": desc})
        })
        .collect();
    Ok(Json(json!({"consent_id": id, "transactions": txns})).into_response())
}

/// `POST /v1/openbanking/consents/{id}/{action}`: `callback` (`{"code": "..."}`), `refresh`,
/// `revoke`, `fetch-accounts`, `fetch-transactions`; accepted (202), the outcome shows on the consent.
pub async fn consent_action(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::OPENBANKING_WRITE).await?;
    let op = match action.as_str() {
        "callback" => Op::CompleteConsent,
        "refresh" => Op::RefreshConsent,
        "revoke" => Op::RevokeConsent,
        "fetch-accounts" => Op::FetchAccounts,
        "fetch-transactions" => Op::FetchTransactions,
        _ => {
            return Err(ApiError::NotFound(
                "consent action (callback, refresh, revoke, fetch-accounts, fetch-transactions)",
            ));
        }
    };
    let code = if op == Op::CompleteConsent {
        let v = json_body(&headers, &body)?;
        match v.get("code").and_then(Value::as_str) {
            Some(c) if !c.is_empty() && c.len() <= 512 => Some(c.to_string()),
            _ => {
                return Err(ApiError::Validation(vec![(
                    "code".into(),
                    "is required: the code (or public token) the bank's callback carried".into(),
                )]));
            }
        }
    } else {
        None
    };
    let (id, customer, status, ..) = consent_row(&api, &caller.tenant_id, &id).await?;
    if status == "revoked" {
        return Err(ApiError::Conflict("the consent is revoked".into()));
    }
    let tenant = &caller.tenant_id;
    let flow = consent_flow_id(tenant, &id);
    let mut cmd = command(tenant, &flow, &headers, &customer, op);
    cmd.consent_id = Some(id.clone());
    cmd.authorization_code = code;
    let mut tx = api.pool.begin().await?;
    send(&api, &mut tx, &cmd).await?;
    tx.commit().await?;
    api.outbox.committed();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": format!("{action}_requested"), "links": {"self": format!("/v1/openbanking/consents/{id}")}})),
    )
        .into_response())
}

/// `POST /v1/openbanking/payments`.
pub async fn create_payment(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::OPENBANKING_WRITE).await?;
    let value = json_body(&headers, &body)?;
    let p = validate::bank_payment(&value).map_err(ApiError::Validation)?;
    let tenant = caller.tenant_id.clone();
    idempotent(&api, &tenant, &headers, &value, |key, owner| {
        accept_payment(&api, &tenant, &headers, key, owner, &value, p)
    })
    .await
}

async fn accept_payment(
    api: &Api,
    tenant: &str,
    headers: &HeaderMap,
    key: Option<String>,
    owner: uuid::Uuid,
    value: &Value,
    p: validate::NewBankPayment,
) -> Result<Response, ApiError> {
    let hash = fingerprint(value);
    let link = format!("/v1/openbanking/payments/{}", p.payment_id);
    let answer = json!({"id": p.payment_id, "status": "requested", "links": {"self": link}});
    let mut tx = api.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO ob_payments (tenant_id, payment_id, customer_id, status, amount_minor, currency, beneficiary, request_hash) \
         VALUES ($1, $2, $3, 'requested', $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&p.payment_id)
    .bind(&p.customer_id)
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
            "SELECT request_hash FROM ob_payments WHERE tenant_id = $1 AND payment_id = $2",
            (tenant, &p.payment_id),
            &hash,
            (link, answer),
            "payment_id",
        )
        .await;
    }
    let flow = payment_flow_id(tenant, &p.payment_id);
    let mut cmd = command(tenant, &flow, headers, &p.customer_id, Op::InitiatePayment);
    cmd.envelope.idempotency_key = key.clone();
    cmd.payment_id = Some(p.payment_id.clone());
    cmd.amount = Some(p.amount);
    cmd.beneficiary = Some(p.beneficiary);
    cmd.reference = Some(p.reference);
    cmd.redirect_uri = Some(p.redirect_uri);
    send(api, &mut tx, &cmd).await?;
    if let Some(k) = &key
        && !complete(&mut tx, tenant, k, owner, 202, &answer).await?
    {
        return Err(ApiError::IdempotencyInFlight);
    }
    tx.commit().await?;
    api.outbox.committed();
    Ok((StatusCode::ACCEPTED, [("location", link)], Json(answer)).into_response())
}

/// `GET /v1/openbanking/payments/{id}`.
pub async fn fetch_payment(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = caller(&api.pool, &api.gate, peer.ip(), &headers, auth::OPENBANKING_READ).await?;
    type PaymentRow = (
        String,
        String,
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let row: Option<PaymentRow> = sqlx::query_as(
        "SELECT payment_id, status, amount_minor, currency, beneficiary, partner, provider_reference, authorization_url, \
         failure_code FROM ob_payments WHERE tenant_id = $1 AND payment_id = $2",
    )
    .bind(&caller.tenant_id)
    .bind(&id)
    .fetch_optional(&api.pool)
    .await?;
    let Some((id, status, minor, cur, beneficiary, partner, reference, url, failure)) = row else {
        return Err(ApiError::NotFound("payment"));
    };
    Ok(Json(json!({"id": id, "status": status,
        "amount": {"currency": cur, "value": money::decimal(minor, &cur), "minor_units": minor},
        "beneficiary": beneficiary, "partner": partner, "provider_reference": reference,
        "authorization_url": url, "failure_code": failure}))
    .into_response())
}

/// An enum as its Avro symbol, lower case (`AWAITING_AUTHORIZATION` → `awaiting_authorization`).
fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_lowercase))
        .unwrap_or_default()
}

fn date(d: Option<i32>) -> Option<chrono::NaiveDate> {
    d.and_then(|d| chrono::NaiveDate::default().checked_add_days(chrono::Days::new(u64::try_from(d).ok()?)))
}

/// The read model's part for open banking.
pub async fn project(conn: &mut PgConnection, msg: &switchyard_runtime::Incoming) -> Result<bool, HandlerError> {
    let perm = |e: switchyard_model::SchemaError| HandlerError::Permanent(e.to_string());
    if let Some(c) = msg.event.as_event::<OpenBankingCompleted>() {
        let c = c.map_err(perm)?;
        let status = snake(&c.status);
        let op = snake(&c.operation);
        let failure = c.failure.as_ref().map(|f| f.code.clone());
        if let Some(pid) = &c.payment_id {
            sqlx::query(
                "UPDATE ob_payments SET status = CASE WHEN $3 THEN status ELSE $4 END, partner = COALESCE(NULLIF($5, ''), partner), \
                 provider_reference = COALESCE($6, provider_reference), authorization_url = COALESCE($7, authorization_url), \
                 failure_code = COALESCE($8, failure_code), updated_at = now() WHERE tenant_id = $1 AND payment_id = $2",
            )
            .bind(&c.envelope.tenant_id)
            .bind(pid)
            .bind(c.failure.is_some() && c.operation == Op::PaymentStatus)
            .bind(&status)
            .bind(&c.partner)
            .bind(&c.provider_reference)
            .bind(&c.authorization_url)
            .bind(&failure)
            .execute(conn)
            .await?;
        } else if let Some(cid) = &c.consent_id {
            // A failed fetch or refresh leaves the consent where it was.
            let moves = c.failure.is_none() || matches!(c.operation, Op::CreateConsent | Op::CompleteConsent);
            sqlx::query(
                "UPDATE ob_consents SET status = CASE WHEN $3 THEN $4 ELSE status END, partner = COALESCE(NULLIF($5, ''), partner), \
                 authorization_url = CASE WHEN $4 = 'awaiting_authorization' THEN COALESCE($6, authorization_url) ELSE NULL END, \
                 consent_expires_at = COALESCE(to_timestamp($7::double precision / 1000), consent_expires_at), \
                 last_operation = $8, failure_code = $9, scopes = CASE WHEN cardinality($10::text[]) > 0 THEN $10 ELSE scopes END, \
                 updated_at = now() WHERE tenant_id = $1 AND consent_id = $2",
            )
            .bind(&c.envelope.tenant_id)
            .bind(cid)
            .bind(moves)
            .bind(&status)
            .bind(&c.partner)
            .bind(&c.authorization_url)
            .bind(c.consent_expires_at.map(|v| v as f64))
            .bind(&op)
            .bind(&failure)
            .bind(&c.scopes)
            .execute(conn)
            .await?;
        }
        return Ok(true);
    }
    if let Some(a) = msg.event.as_event::<OpenBankingAccounts>() {
        let a = a.map_err(perm)?;
        for x in &a.accounts {
            sqlx::query(
                "INSERT INTO ob_accounts (tenant_id, consent_id, account_id, name, kind, currency, number_last4, current_minor, \
                 available_minor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, consent_id, account_id) \
                 DO UPDATE SET name = $4, kind = $5, currency = $6, number_last4 = $7, current_minor = $8, available_minor = $9, \
                 fetched_at = now()",
            )
            .bind(&a.envelope.tenant_id)
            .bind(&a.consent_id)
            .bind(&x.account_id)
            .bind(&x.name)
            .bind(&x.kind)
            .bind(&x.currency)
            .bind(&x.number_last4)
            .bind(x.current_minor)
            .bind(x.available_minor)
            .execute(&mut *conn)
            .await?;
        }
        return Ok(true);
    }
    if let Some(t) = msg.event.as_event::<OpenBankingTransactions>() {
        let t = t.map_err(perm)?;
        for x in &t.transactions {
            sqlx::query(
                "INSERT INTO ob_transactions (tenant_id, consent_id, transaction_id, account_id, amount_minor, currency, status, \
                 booking_date, value_date, description) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (tenant_id, consent_id, transaction_id) DO UPDATE SET amount_minor = $5, status = $7, \
                 booking_date = $8, value_date = $9, description = $10",
            )
            .bind(&t.envelope.tenant_id)
            .bind(&t.consent_id)
            .bind(&x.transaction_id)
            .bind(&x.account_id)
            .bind(x.amount_minor)
            .bind(&x.currency)
            .bind(match x.status {
                BankTransactionStatus::Booked => "booked",
                BankTransactionStatus::Pending => "pending",
            })
            .bind(date(x.booking_date))
            .bind(date(x.value_date))
            .bind(&x.description)
            .execute(&mut *conn)
            .await?;
            if let Some(r) = &x.replaces {
                sqlx::query(
                    "DELETE FROM ob_transactions WHERE tenant_id = $1 AND consent_id = $2 AND transaction_id = $3",
                )
                .bind(&t.envelope.tenant_id)
                .bind(&t.consent_id)
                .bind(r)
                .execute(&mut *conn)
                .await?;
            }
        }
        for r in &t.removed {
            sqlx::query("DELETE FROM ob_transactions WHERE tenant_id = $1 AND consent_id = $2 AND transaction_id = $3")
                .bind(&t.envelope.tenant_id)
                .bind(&t.consent_id)
                .bind(r)
                .execute(&mut *conn)
                .await?;
        }
        return Ok(true);
    }
    Ok(false)
}
