//! The webhook normalizer: receives partners' webhooks at `POST /webhooks/{partner}`, verifies each
//! partner's signature scheme (current and previous secret, constant-time compare, replay window),
//! stores every receipt, de-duplicates by the partner's event id, pulls the case's status where the
//! webhook carries none, and emits `kyc.provider-events.v1` through the outbox, all in one
//! transaction. Payout partners (`[[payout_partners]]`) are received the same way and emit
//! `payouts.provider-events.v1`, the envelope's `occurred_at` carrying the vendor's own time of the
//! change (notices come out of order and are ordered by it). Card processors (`[[card_partners]]`)
//! may batch several events in one delivery: each is de-duplicated by its own id and emitted on
//! `cards.provider-events.v1` (keyed by partner and card token, so one card's events stay in
//! order), the delivery kept once. Open-banking providers (`[[openbanking_partners]]`) sign with
//! published keys the normalizer fetches (a JWKS at an allow-listed URL; a key by its id) and emit
//! `openbanking.provider-events.v1` (payment status changes, new transactions, consents expiring).
//! Forged, stale and replayed webhooks are
//! refused and counted, never processed.

use std::{collections::HashMap, process::ExitCode, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};
use sqlx::PgPool;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        cards::CardProcessorEvent,
        kyc::KycProviderEvent,
        openbanking::{OpenBankingProviderEvent, OpenBankingStatus},
        payouts::PayoutProviderEvent,
    },
};
use switchyard_runtime::{Outbox, ServiceConfig, service};
use switchyard_vendors::{
    adapter::Partners,
    cards::CardVendor,
    kyc::{KycVendor, WebhookRejection},
    openbanking::{Notice, OpenBankingVendor, PaymentStatus},
    payouts::PayoutVendor,
    registry::{self, PartnerConnection},
};

const SERVICE: &str = "webhook-normalizer";
/// Platform-level events carry this tenant: the partner does not say whose case it is; the
/// orchestrator resolves it from the provider reference.
const PLATFORM_TENANT: &str = "platform";
/// Signature headers kept with a receipt (no other headers are stored).
const KEPT_HEADERS: &[&str] = &[
    "x-sha2-signature",
    "x-payload-digest",
    "x-payload-digest-alg",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "stripe-signature",
    "x-signature-sha256",
    "x-delivery-id",
    "x-marqeta-signature",
    "tl-signature",
    "x-tl-webhook-timestamp",
    "plaid-verification",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    partner: String,
    /// accepted | duplicate | rejected
    verdict: String,
    reason: String,
}

#[derive(Clone)]
struct App {
    partners: Arc<Partners<dyn KycVendor>>,
    /// Payout partners, for their status webhooks only (the normalizer never calls them).
    payout_partners: Arc<HashMap<String, Arc<dyn PayoutVendor>>>,
    /// Card processors, for their webhooks only.
    card_partners: Arc<HashMap<String, Arc<dyn CardVendor>>>,
    /// Open-banking providers, for their webhooks only.
    openbanking_partners: Arc<HashMap<String, Arc<dyn OpenBankingVendor>>>,
    outbox: Outbox,
    pool: PgPool,
    received: Family<WebhookLabels, Counter>,
    /// From the partner's own time of a change to our receipt of its notice, by partner.
    delay: Family<PartnerLabels, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartnerLabels {
    partner: String,
}

fn delay_histogram() -> Histogram {
    // 50 ms .. ~7 min
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.05, 2.0, 14,
    ))
}

impl App {
    fn count(&self, partner: &str, verdict: &str, reason: &str) {
        self.received
            .get_or_create(&WebhookLabels {
                partner: partner.to_string(),
                verdict: verdict.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }
}

fn kept(headers: &HeaderMap) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for name in KEPT_HEADERS {
        if let Some(v) = headers.get(*name).and_then(|v| v.to_str().ok()) {
            m.insert((*name).to_string(), serde_json::Value::String(v.to_string()));
        }
    }
    serde_json::Value::Object(m)
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    (
        status,
        [("content-type", "application/problem+json")],
        serde_json::json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail})
            .to_string(),
    )
        .into_response()
}

async fn receive(State(app): State<App>, Path(partner): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let handled = if let Ok(vendor) = app.partners.get(&partner).cloned() {
        handle(&app, &partner, vendor.as_ref(), &headers, &body).await
    } else if let Some(vendor) = app.payout_partners.get(&partner).cloned() {
        handle_payout(&app, &partner, vendor.as_ref(), &headers, &body).await
    } else if let Some(vendor) = app.card_partners.get(&partner).cloned() {
        handle_cards(&app, &partner, vendor.as_ref(), &headers, &body).await
    } else if let Some(vendor) = app.openbanking_partners.get(&partner).cloned() {
        handle_openbanking(&app, &partner, vendor.as_ref(), &headers, &body).await
    } else {
        return problem(
            StatusCode::NOT_FOUND,
            "Unknown partner",
            "no webhook endpoint for this partner",
        );
    };
    match handled {
        Ok(verdict) => {
            app.count(&partner, verdict, "");
            (StatusCode::OK, verdict).into_response()
        }
        Err(Refused::Rejected(r)) => {
            // Logged without the payload: it may carry personal data.
            tracing::warn!(partner, reason = r.reason(), "webhook rejected");
            app.count(&partner, "rejected", r.reason());
            let _ = store(&app.pool, &partner, &headers, &body, "rejected", Some(r.reason()), None).await;
            let status = match r {
                WebhookRejection::MissingSignature | WebhookRejection::BadSignature => StatusCode::UNAUTHORIZED,
                WebhookRejection::Stale | WebhookRejection::Malformed(_) => StatusCode::BAD_REQUEST,
            };
            problem(status, "Webhook rejected", &r.to_string())
        }
        Err(Refused::Later(why)) => {
            tracing::warn!(partner, error = %why, "webhook not processed yet; the partner will retry");
            app.count(&partner, "deferred", "");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "the webhook could not be processed now",
            )
        }
    }
}

enum Refused {
    Rejected(WebhookRejection),
    Later(String),
}

/// Keeps a receipt (in the accepting transaction, or on its own for refusals and duplicates), with
/// the body's SHA-256 and length. The body itself is kept only when its signature was verified: an
/// unauthenticated sender must not be able to fill the database or plant data in it.
async fn store<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    partner: &str,
    headers: &HeaderMap,
    body: &[u8],
    verdict: &str,
    reason: Option<&str>,
    event_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    let kept_body: &[u8] = if verdict == "rejected" { &[] } else { body };
    sqlx::query(
        "INSERT INTO webhook_receipts (partner, headers, body, body_sha256, body_len, verdict, reason, event_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(partner)
    .bind(kept(headers))
    .bind(kept_body)
    .bind(switchyard_vendors::signing::sha256_hex(body))
    .bind(body.len() as i32)
    .bind(verdict)
    .bind(reason)
    .bind(event_id)
    .execute(exec)
    .await?;
    Ok(())
}

async fn handle(
    app: &App,
    partner: &str,
    vendor: &dyn KycVendor,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, Refused> {
    let now = chrono::Utc::now().timestamp_millis();
    let notice = vendor.verify_webhook(headers, body, now).map_err(Refused::Rejected)?;
    let later = |e: sqlx::Error| Refused::Later(e.to_string());
    // Thin webhooks say only that something changed: ask the partner for the case itself, before
    // any transaction (no connection is held across a partner call). A redelivery already taken is
    // told apart first, so it costs the partner nothing.
    let outcome = match notice.outcome.clone() {
        Some(o) => o,
        None => {
            let seen: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_dedup WHERE partner = $1 AND event_id = $2)")
                    .bind(partner)
                    .bind(&notice.event_id)
                    .fetch_one(&app.pool)
                    .await
                    .map_err(later)?;
            if seen {
                return duplicate(app, partner, headers, body, &notice.event_id).await;
            }
            app.partners
                .call(partner, "status", || vendor.status(&notice.provider_reference))
                .await
                .map_err(|f| Refused::Later(format!("{}: {}", f.code, f.message)))?
        }
    };
    let flow = format!("{partner}:{}", notice.provider_reference);
    let event = KycProviderEvent {
        envelope: Envelope::new(KycProviderEvent::RECORD, PLATFORM_TENANT, flow, SERVICE),
        partner: partner.to_string(),
        provider_reference: notice.provider_reference.clone(),
        provider_event_id: notice.event_id.clone(),
        status: outcome.status,
        reasons: outcome.reasons,
        received_at: now,
    };
    let verdict = accept(
        app,
        partner,
        headers,
        body,
        &notice.event_id,
        KycProviderEvent::TOPIC,
        &event,
    )
    .await?;
    if verdict == "accepted" {
        tracing::info!(partner, reference = %notice.provider_reference, status = ?event.status, "webhook accepted");
    }
    Ok(verdict)
}

/// The one transaction that takes a verified notice: the partner's event id is recorded (a second
/// delivery is a duplicate: its receipt kept, nothing else), the event goes to the outbox and the
/// receipt is kept, together.
async fn accept<E: Event>(
    app: &App,
    partner: &str,
    headers: &HeaderMap,
    body: &[u8],
    event_id: &str,
    topic: &str,
    event: &E,
) -> Result<&'static str, Refused> {
    let later = |e: sqlx::Error| Refused::Later(e.to_string());
    let record = EventRecord::of(event).map_err(|e| Refused::Later(e.to_string()))?;
    let mut tx = app.pool.begin().await.map_err(later)?;
    let fresh = sqlx::query("INSERT INTO webhook_dedup (partner, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(partner)
        .bind(event_id)
        .execute(&mut *tx)
        .await
        .map_err(later)?
        .rows_affected()
        == 1;
    if !fresh {
        tx.rollback().await.map_err(later)?;
        return duplicate(app, partner, headers, body, event_id).await;
    }
    app.outbox
        .enqueue(&mut tx, topic, &record)
        .await
        .map_err(|e| Refused::Later(e.to_string()))?;
    store(&mut *tx, partner, headers, body, "accepted", None, Some(event_id))
        .await
        .map_err(later)?;
    tx.commit().await.map_err(later)?;
    app.outbox.committed();
    Ok("accepted")
}

/// A payout partner's status webhook: verified, de-duplicated by the partner's event id, kept, and
/// emitted on `payouts.provider-events.v1` in one transaction.
async fn handle_payout(
    app: &App,
    partner: &str,
    vendor: &dyn PayoutVendor,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, Refused> {
    let now = chrono::Utc::now().timestamp_millis();
    let notice = vendor.verify_webhook(headers, body, now).map_err(Refused::Rejected)?;
    let mut envelope = Envelope::new(
        PayoutProviderEvent::RECORD,
        PLATFORM_TENANT,
        format!("{partner}:{}", notice.provider_reference),
        SERVICE,
    );
    envelope.occurred_at = notice.occurred_at_ms;
    let event = PayoutProviderEvent {
        envelope,
        partner: partner.to_string(),
        provider_reference: notice.provider_reference.clone(),
        provider_event_id: notice.event_id.clone(),
        status: notice.status,
        return_reason: notice.reason.map(str::to_string),
        received_at: now,
    };
    let verdict = accept(
        app,
        partner,
        headers,
        body,
        &notice.event_id,
        PayoutProviderEvent::TOPIC,
        &event,
    )
    .await?;
    if verdict == "accepted" {
        observe_delay(app, partner, now, notice.occurred_at_ms);
        tracing::info!(partner, reference = %notice.provider_reference, status = ?notice.status, "payout webhook accepted");
    }
    Ok(verdict)
}

/// How long after the partner's own time of a change its notice reached us (notices that carry
/// that time only).
fn observe_delay(app: &App, partner: &str, now_ms: i64, occurred_at_ms: i64) {
    if occurred_at_ms > 0 {
        app.delay
            .get_or_create(&PartnerLabels {
                partner: partner.to_string(),
            })
            .observe((now_ms - occurred_at_ms).max(0) as f64 / 1000.0);
    }
}

/// A card processor's delivery (one or several events): verified once; each event de-duplicated by
/// its own id and emitted on `cards.provider-events.v1`; the delivery kept once; one transaction.
async fn handle_cards(
    app: &App,
    partner: &str,
    vendor: &dyn CardVendor,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, Refused> {
    let now = chrono::Utc::now().timestamp_millis();
    let notices = vendor.verify_webhook(headers, body, now).map_err(Refused::Rejected)?;
    let later = |e: sqlx::Error| Refused::Later(e.to_string());
    let mut tx = app.pool.begin().await.map_err(later)?;
    let mut fresh = 0;
    let mut times = Vec::new();
    for n in &notices {
        let first = sqlx::query("INSERT INTO webhook_dedup (partner, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(partner)
            .bind(&n.event_id)
            .execute(&mut *tx)
            .await
            .map_err(later)?
            .rows_affected()
            == 1;
        if !first {
            continue;
        }
        fresh += 1;
        times.push(n.occurred_at_ms);
        let mut envelope = Envelope::new(
            CardProcessorEvent::RECORD,
            PLATFORM_TENANT,
            format!("{partner}:{}", n.card_token),
            SERVICE,
        );
        if n.occurred_at_ms > 0 {
            envelope.occurred_at = n.occurred_at_ms;
        }
        let event = CardProcessorEvent {
            envelope,
            partner: partner.to_string(),
            provider_event_id: n.event_id.clone(),
            card_token: n.card_token.clone(),
            kind: n.kind,
            amount: n.amount.clone(),
            state: n.state,
            received_at: now,
            provider_transaction_id: n.transaction_id.clone(),
            merchant: n.merchant.clone(),
            decline_reason: n.decline_reason.clone(),
        };
        let record = EventRecord::of(&event).map_err(|e| Refused::Later(e.to_string()))?;
        app.outbox
            .enqueue(&mut tx, CardProcessorEvent::TOPIC, &record)
            .await
            .map_err(|e| Refused::Later(e.to_string()))?;
        tracing::info!(partner, card = %n.card_token, kind = ?n.kind, "card webhook event accepted");
    }
    let verdict = if fresh > 0 || notices.is_empty() {
        "accepted"
    } else {
        "duplicate"
    };
    let first_id = notices.first().map(|n| n.event_id.as_str());
    store(&mut *tx, partner, headers, body, verdict, None, first_id)
        .await
        .map_err(later)?;
    tx.commit().await.map_err(later)?;
    app.outbox.committed();
    for t in times {
        observe_delay(app, partner, now, t);
    }
    Ok(verdict)
}

/// An open-banking provider's webhook: verified (with the provider's published key), de-duplicated
/// by its event id, kept, and emitted on `openbanking.provider-events.v1`, keyed by partner and
/// payment (or connection) so one payment's notices stay in order.
async fn handle_openbanking(
    app: &App,
    partner: &str,
    vendor: &dyn OpenBankingVendor,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, Refused> {
    let now = chrono::Utc::now().timestamp_millis();
    let path = format!("/webhooks/{partner}");
    let notice = vendor
        .verify_webhook(headers, &path, body, now)
        .await
        .map_err(Refused::Rejected)?;
    let (event_id, reference, status, kind, reason, at, expires) = match notice {
        Notice::Payment {
            event_id,
            provider_reference,
            status,
            failure_reason,
            occurred_at_ms,
        } => (
            event_id,
            provider_reference,
            match status {
                PaymentStatus::AwaitingAuthorization => OpenBankingStatus::AwaitingAuthorization,
                PaymentStatus::Pending => OpenBankingStatus::Pending,
                PaymentStatus::Executed => OpenBankingStatus::Executed,
                PaymentStatus::Settled => OpenBankingStatus::Completed,
                PaymentStatus::Failed => OpenBankingStatus::Failed,
            },
            "payment",
            failure_reason,
            occurred_at_ms,
            None,
        ),
        Notice::TransactionsAvailable { event_id, connection } => (
            event_id,
            connection,
            OpenBankingStatus::Authorized,
            "transactions_available",
            None,
            now,
            None,
        ),
        Notice::ConsentExpiring {
            event_id,
            connection,
            expires_at_ms,
        } => (
            event_id,
            connection,
            OpenBankingStatus::Expired,
            "consent_expiring",
            None,
            now,
            expires_at_ms,
        ),
    };
    let mut envelope = Envelope::new(
        OpenBankingProviderEvent::RECORD,
        PLATFORM_TENANT,
        format!("{partner}:{reference}"),
        SERVICE,
    );
    envelope.occurred_at = at;
    let event = OpenBankingProviderEvent {
        envelope,
        partner: partner.to_string(),
        provider_reference: reference.clone(),
        provider_event_id: event_id.clone(),
        status,
        received_at: now,
        notice: kind.to_string(),
        failure_reason: reason,
        expires_at: expires,
    };
    let verdict = accept(
        app,
        partner,
        headers,
        body,
        &event_id,
        OpenBankingProviderEvent::TOPIC,
        &event,
    )
    .await?;
    if verdict == "accepted" {
        // Only a payment's notice carries the provider's time of the change.
        if kind == "payment" {
            observe_delay(app, partner, now, at);
        }
        tracing::info!(partner, reference = %reference, notice = kind, status = ?status, "open-banking webhook accepted");
    }
    Ok(verdict)
}

/// A delivery of an event already taken: its receipt is kept, nothing else happens.
async fn duplicate(
    app: &App,
    partner: &str,
    headers: &HeaderMap,
    body: &[u8],
    event_id: &str,
) -> Result<&'static str, Refused> {
    store(&app.pool, partner, headers, body, "duplicate", None, Some(event_id))
        .await
        .map_err(|e| Refused::Later(e.to_string()))?;
    Ok("duplicate")
}

/// What the normalizer forgets, and when (`retention.<name>_hours`):
/// * `webhook_receipts` (default 90 days): verified receipts (accepted and duplicates);
/// * `rejected_webhooks` (default 7 days): receipts of refused webhooks (digest and headers only);
/// * `webhook_dedup` (default 30 days): accepted event ids; a partner redelivery later than this
///   would be taken as new (partners retry for hours to a few days), and the flow's inbox and state
///   machine still ignore an event for a decided case.
fn retention_rules() -> Vec<switchyard_runtime::retention::Rule> {
    use switchyard_runtime::retention::Rule;
    vec![
        Rule::hours(
            "webhook_receipts",
            "webhook_receipts",
            "verdict <> 'rejected' AND received_at < now() - make_interval(secs => $1)",
            90 * 24,
        ),
        Rule::hours(
            "rejected_webhooks",
            "webhook_receipts",
            "verdict = 'rejected' AND received_at < now() - make_interval(secs => $1)",
            7 * 24,
        ),
        Rule::hours(
            "webhook_dedup",
            "webhook_dedup",
            "first_seen < now() - make_interval(secs => $1)",
            30 * 24,
        ),
    ]
}

#[tokio::main]
async fn main() -> ExitCode {
    service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let rt = service::boot(SERVICE).await?;
    if !rt.migrate(sqlx::migrate!("./migrations")).await? {
        return Ok(());
    }
    let partners =
        Partners::load(rt.config_file.as_deref(), &rt.metrics, &rt.pool, registry::kyc).map_err(anyhow::Error::msg)?;
    let received: Family<WebhookLabels, Counter> = Family::default();
    rt.metrics.register(
        "webhooks_received",
        "Webhooks by partner, verdict and rejection reason",
        received.clone(),
    );
    let delay = Family::new_with_constructor(delay_histogram as fn() -> Histogram);
    rt.metrics.register(
        "webhook_delay_seconds",
        "From the partner's own time of a change to our receipt of its notice (partners whose notices carry that time)",
        delay.clone(),
    );
    // Payout partners: built for their webhook schemes only.
    let connections: Vec<PartnerConnection> =
        ServiceConfig::section(rt.config_file.as_deref(), "payout_partners", Vec::new())?;
    let mut payout_partners: HashMap<String, Arc<dyn PayoutVendor>> = HashMap::new();
    for c in &connections {
        let vendor = registry::payouts(c).map_err(|e| anyhow::anyhow!("configuration field `{e}`"))?;
        payout_partners.insert(c.id.clone(), vendor);
    }
    let connections: Vec<PartnerConnection> =
        ServiceConfig::section(rt.config_file.as_deref(), "card_partners", Vec::new())?;
    let mut card_partners: HashMap<String, Arc<dyn CardVendor>> = HashMap::new();
    for c in &connections {
        let vendor = registry::cards(c).map_err(|e| anyhow::anyhow!("configuration field `{e}`"))?;
        card_partners.insert(c.id.clone(), vendor);
    }
    let connections: Vec<PartnerConnection> =
        ServiceConfig::section(rt.config_file.as_deref(), "openbanking_partners", Vec::new())?;
    let mut openbanking_partners: HashMap<String, Arc<dyn OpenBankingVendor>> = HashMap::new();
    for c in &connections {
        let vendor = registry::openbanking(c).map_err(|e| anyhow::anyhow!("configuration field `{e}`"))?;
        openbanking_partners.insert(c.id.clone(), vendor);
    }
    let app = App {
        partners: Arc::new(partners),
        payout_partners: Arc::new(payout_partners),
        card_partners: Arc::new(card_partners),
        openbanking_partners: Arc::new(openbanking_partners),
        outbox: rt.outbox.clone(),
        pool: rt.pool.clone(),
        received,
        delay,
    };
    let routes = Router::new()
        .route("/webhooks/{partner}", post(receive))
        .layer(DefaultBodyLimit::max(256 * 1024))
        .with_state(app);
    let tasks = vec![rt.spawn_relay(), rt.spawn_retention(retention_rules())?];
    rt.serve_until_shutdown(routes, tasks).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// Each kind of receipt and every dedup entry goes after its own period, no sooner.
    #[tokio::test]
    async fn retention_keeps_each_kind_of_receipt_for_its_own_period() {
        let db = switchyard_tests::Stack::get().fresh_db("webhook_retention").await;
        sqlx::migrate!("./migrations").run(&db.pool).await.unwrap();
        for (verdict, days) in [
            ("accepted", 91),
            ("accepted", 89),
            ("duplicate", 91),
            ("rejected", 8),
            ("rejected", 6),
        ] {
            sqlx::query(
                "INSERT INTO webhook_receipts (partner, headers, body, verdict, received_at) \
                 VALUES ('p', '{}', '', $1, now() - make_interval(days => $2))",
            )
            .bind(verdict)
            .bind(days)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        for (event, days) in [("e-old", 31), ("e-new", 29)] {
            sqlx::query("INSERT INTO webhook_dedup (partner, event_id, first_seen) VALUES ('p', $1, now() - make_interval(days => $2))")
                .bind(event)
                .bind(days)
                .execute(&db.pool)
                .await
                .unwrap();
        }
        switchyard_runtime::retention::run_once(&db.pool, &super::retention_rules()).await;
        let receipts: Vec<(String, i32)> = sqlx::query_as(
            "SELECT verdict, extract(day FROM now() - received_at)::int FROM webhook_receipts ORDER BY verdict",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert_eq!(receipts, vec![("accepted".into(), 89), ("rejected".into(), 6)]);
        let dedup: Vec<String> = sqlx::query_scalar("SELECT event_id FROM webhook_dedup")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(dedup, ["e-new"]);
        db.drop_db().await;
    }
}
