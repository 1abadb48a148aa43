//! The cards adapter: consumes `cards.requests.v1` and carries out card operations at the
//! requested processor (issue through the write-ahead effect ledger under `sy-<request event id>`;
//! state changes by target state), writing `cards.results.v1`; applies clearings and reversals the
//! orchestrator relays to the holds it keeps; and answers the processors' real-time authorization
//! requests at `POST /authorizations/{partner}` (Marqeta-style JIT Funding, Lithic-style ASA) from
//! its own store, never from a Kafka round trip.
//!
//! An authorization is decided within `authorization.deadline_ms` (default 800; the processors wait
//! about 3 s before their stand-in rules decide). When our own parts are slower (the database
//! unreachable or locked), the fallback answers: `authorization.fallback = "decline"` (default), or
//! `"approve_below"` with `authorization.approve_below_minor` (small purchases go through; the
//! rest are declined `UNAVAILABLE`). Whatever was answered is what the store records, so a
//! processor asking again gets the same answer and nothing is held twice. Each decision is
//! published as `CardAuthorizationDecided` through the outbox, in the decision's transaction.
//!
//! Cards issued with no funding get `cards.default_currency` (default USD) and nothing to spend
//! until funded. Card numbers never come here: only processor tokens and last four digits.

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use cards_adapter::{
    authorize::{self, Authorization, Decision, DeclineReason, Merchant},
    store,
};
use prometheus_client::metrics::{
    counter::Counter,
    family::Family,
    histogram::{Histogram, exponential_buckets},
};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        cards::{
            ApplyCardTransaction, CardAuthorizationDecided, CardFormFactor, CardMerchant, CardOperation,
            CardOperationRequested, CardOperationResult, CardState, CardTransactionKind,
        },
        common::{Failure, FailureClass},
    },
};
use switchyard_runtime::{
    Handler, HandlerError, Incoming, Outbox, ServiceConfig,
    effects::{Intent, Ledger},
    provider::idempotency_key,
    service,
};
use switchyard_vendors::{
    adapter::{Partners, Recovery, emit},
    cards::{AuthRejection, AuthRequest, CardChange, CardOrder, CardOutcome, CardVendor, target_state},
    registry,
};

const SERVICE: &str = "cards-adapter";

#[derive(Deserialize, Clone)]
#[serde(default)]
struct AuthorizationConfig {
    deadline_ms: u64,
    fallback: String,
    approve_below_minor: i64,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            deadline_ms: 800,
            fallback: "decline".into(),
            approve_below_minor: 0,
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(default)]
struct CardsConfig {
    default_currency: String,
}

impl Default for CardsConfig {
    fn default() -> Self {
        CardsConfig {
            default_currency: "USD".into(),
        }
    }
}

struct CardsAdapter {
    partners: Arc<Partners<dyn CardVendor>>,
    outbox: Outbox,
    ledger: Ledger,
    cards: CardsConfig,
}

/// The mesh's card state for a processor's.
fn held_state(s: CardState) -> authorize::CardState {
    match s {
        CardState::Requested | CardState::Inactive => authorize::CardState::Inactive,
        CardState::Active => authorize::CardState::Active,
        CardState::Frozen => authorize::CardState::Frozen,
        CardState::Terminated => authorize::CardState::Terminated,
    }
}

/// An opaque, stable name for a tenant's cardholder at a processor (no personal data in it).
fn holder_key(tenant: &str, cardholder_id: &str) -> String {
    let digest =
        switchyard_vendors::signing::sha256_hex(format!("{}.{tenant}.{cardholder_id}", tenant.len()).as_bytes());
    format!("h-{}", &digest[..32])
}

impl CardsAdapter {
    async fn issue(
        &self,
        req: &CardOperationRequested,
        key: &str,
    ) -> Result<Result<CardOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&req.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let order = CardOrder {
            card_id: req.card_id.clone().unwrap_or_default(),
            idempotency_key: key.to_string(),
            holder_key: holder_key(&req.envelope.tenant_id, &req.cardholder_id),
            cardholder: req.cardholder.clone(),
            product: req.product.clone().unwrap_or_default(),
            form_factor: req.form_factor.unwrap_or(CardFormFactor::Virtual),
        };
        let intent = Intent {
            key,
            partner: &req.partner,
            operation: "issue",
            request_event_id: req.envelope.event_id,
            flow_id: &req.envelope.flow_id,
        };
        self.partners
            .effect(
                &self.ledger,
                intent,
                |o: &CardOutcome| Some(o.card_token.clone()),
                |progress| vendor.issue(&order, progress),
                |progress| vendor.find(&order, progress),
            )
            .await
    }

    async fn change(
        &self,
        req: &CardOperationRequested,
        key: &str,
    ) -> Result<Result<CardOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&req.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let (Some(token), Some(target)) = (req.card_token.clone(), target_state(req.operation)) else {
            return Ok(Err(Failure::new(
                FailureClass::Permanent,
                "card_operation_invalid",
                format!("{:?} needs a card token", req.operation),
            )));
        };
        let change = CardChange {
            card_token: token.clone(),
            idempotency_key: key.to_string(),
            operation: req.operation,
        };
        let intent = Intent {
            key,
            partner: &req.partner,
            operation: operation_name(req.operation),
            request_event_id: req.envelope.event_id,
            flow_id: &req.envelope.flow_id,
        };
        let token = &token;
        self.partners
            .effect(
                &self.ledger,
                intent,
                |o: &CardOutcome| Some(o.card_token.clone()),
                |_| vendor.change(&change),
                // A change names its target state: the card in it means it happened; otherwise
                // asking again is harmless.
                |_| {
                    Box::pin(async move {
                        let now = vendor.card(token).await?;
                        Ok(if now.state == target {
                            Recovery::Found(now)
                        } else {
                            Recovery::SendAgain
                        })
                    })
                },
            )
            .await
    }

    /// The card as its processor has it now (a read: no effect, asked again freely). The answer
    /// sets the decision store's state in [`Handler::handle`], as any operation's does.
    async fn refresh(&self, req: &CardOperationRequested) -> Result<CardOutcome, Failure> {
        let vendor = self.partners.get(&req.partner)?;
        let Some(token) = req.card_token.as_deref() else {
            return Err(Failure::new(
                FailureClass::Permanent,
                "card_operation_invalid",
                "REFRESH needs a card token",
            ));
        };
        self.partners.call(&req.partner, "card", || vendor.card(token)).await
    }

    async fn apply(&self, conn: &mut PgConnection, t: &ApplyCardTransaction) -> Result<(), HandlerError> {
        let done = match t.kind {
            CardTransactionKind::Clearing => {
                store::clear(conn, &t.partner, &t.provider_transaction_id, t.amount.amount_minor).await?
            }
            CardTransactionKind::Reversal => store::reverse(conn, &t.partner, &t.provider_transaction_id).await?,
            CardTransactionKind::Authorization => {
                let merchant = t.merchant.clone().unwrap_or(CardMerchant {
                    name: String::new(),
                    mcc: String::new(),
                    country: None,
                    city: None,
                });
                let auth = Authorization {
                    partner: t.partner.clone(),
                    transaction_id: t.provider_transaction_id.clone(),
                    card_token: t.card_token.clone(),
                    amount_minor: t.amount.amount_minor,
                    currency: t.amount.currency.clone(),
                    merchant: Merchant {
                        name: merchant.name.clone(),
                        mcc: merchant.mcc.clone(),
                        country: merchant.country.clone(),
                    },
                };
                let decision = if t.approved {
                    Decision::Approve
                } else {
                    // The processor's own reason, canonical already; one we cannot name is ours to
                    // report as unavailable.
                    Decision::Decline(
                        t.decline_reason
                            .as_deref()
                            .and_then(DeclineReason::parse)
                            .unwrap_or(DeclineReason::Unavailable),
                    )
                };
                let fresh = store::stand_in(conn, &auth, decision).await?;
                if fresh {
                    // Products hear of it as of any decision (a correction of ours, if we had
                    // decided otherwise), marked as not ours (fallback, 0 ms).
                    let owner = store::owner(conn, &t.card_token).await?;
                    let record = decision_event(
                        owner,
                        &t.partner,
                        &t.card_token,
                        &t.provider_transaction_id,
                        &t.amount,
                        &merchant,
                        decision,
                        true,
                        Duration::ZERO,
                    )
                    .map_err(HandlerError::Permanent)?;
                    emit(conn, &self.outbox, CardAuthorizationDecided::TOPIC, &record).await?;
                }
                fresh
            }
        };
        tracing::info!(partner = %t.partner, transaction = %t.provider_transaction_id, kind = ?t.kind, applied = done,
            "card transaction applied");
        Ok(())
    }
}

fn operation_name(op: CardOperation) -> &'static str {
    match op {
        CardOperation::CreateCardholder => "create_cardholder",
        CardOperation::Issue => "issue",
        CardOperation::Activate => "activate",
        CardOperation::Freeze => "freeze",
        CardOperation::Unfreeze => "unfreeze",
        CardOperation::Terminate => "terminate",
        CardOperation::Refresh => "card",
    }
}

enum Asked {
    Operation(Box<CardOperationRequested>, String, Result<CardOutcome, Failure>),
    Apply(Box<ApplyCardTransaction>),
}

impl Handler for CardsAdapter {
    type Prepared = Asked;
    const CALLS_OUT: bool = true;

    async fn prepare(&self, msg: &Incoming) -> Result<Self::Prepared, HandlerError> {
        let perm = |e: switchyard_model::SchemaError| HandlerError::Permanent(e.to_string());
        if let Some(t) = msg.event.as_event::<ApplyCardTransaction>() {
            return Ok(Asked::Apply(Box::new(t.map_err(perm)?)));
        }
        let Some(req) = msg.event.as_event::<CardOperationRequested>() else {
            return Err(HandlerError::Permanent(format!(
                "{} is not a card request",
                msg.event.record
            )));
        };
        let req = req.map_err(perm)?;
        let key = idempotency_key(req.envelope.event_id);
        let outcome = match req.operation {
            CardOperation::Issue => self.issue(&req, &key).await?,
            CardOperation::CreateCardholder => Err(Failure::new(
                FailureClass::Permanent,
                "card_operation_invalid",
                "cardholders are made with their first card (ISSUE)",
            )),
            CardOperation::Refresh => self.refresh(&req).await,
            _ => self.change(&req, &key).await?,
        };
        Ok(Asked::Operation(Box::new(req), key, outcome))
    }

    async fn handle(&self, conn: &mut PgConnection, _: &Incoming, asked: Self::Prepared) -> Result<(), HandlerError> {
        let (req, key, outcome) = match asked {
            Asked::Apply(t) => return self.apply(conn, &t).await,
            Asked::Operation(req, key, outcome) => (req, key, outcome),
        };
        let mut envelope = Envelope::caused_by(&req.envelope, CardOperationResult::RECORD, SERVICE);
        envelope.idempotency_key = Some(key);
        let result = match outcome {
            Ok(o) => {
                if req.operation == CardOperation::Issue {
                    let funding = req.funding.clone();
                    let card = authorize::Card {
                        token: o.card_token.clone(),
                        state: held_state(o.state),
                        currency: funding
                            .as_ref()
                            .map(|m| m.currency.clone())
                            .unwrap_or_else(|| self.cards.default_currency.clone()),
                        controls: controls_of(&req),
                        available_minor: funding.map(|m| m.amount_minor).unwrap_or(0),
                    };
                    store::open_account(conn, &req.envelope.tenant_id, &req.envelope.flow_id, &card).await?;
                } else {
                    store::set_state(conn, &o.card_token, held_state(o.state)).await?;
                }
                CardOperationResult {
                    envelope,
                    cardholder_id: req.cardholder_id.clone(),
                    partner: req.partner.clone(),
                    provider_reference: Some(o.card_token.clone()),
                    operation: req.operation,
                    card_token: Some(o.card_token),
                    last4: o.last4,
                    state: o.state,
                    failure: None,
                    card_id: req.card_id.clone(),
                    form_factor: req.form_factor,
                }
            }
            Err(f) => CardOperationResult {
                envelope,
                cardholder_id: req.cardholder_id.clone(),
                partner: req.partner.clone(),
                provider_reference: None,
                operation: req.operation,
                card_token: req.card_token.clone(),
                last4: None,
                state: CardState::Requested,
                failure: Some(f),
                card_id: req.card_id.clone(),
                form_factor: req.form_factor,
            },
        };
        tracing::info!(card_id = ?result.card_id, partner = %result.partner, operation = ?result.operation,
            state = ?result.state, failure = ?result.failure.as_ref().map(|f| f.code.as_str()), "card operation");
        let record = EventRecord::of(&result).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        emit(conn, &self.outbox, CardOperationResult::TOPIC, &record).await
    }
}

fn controls_of(req: &CardOperationRequested) -> authorize::Controls {
    let c = req.controls.clone().unwrap_or_default();
    authorize::Controls {
        per_transaction_minor: c.per_transaction_minor,
        daily_minor: c.daily_minor,
        // The older `spend_limit` field is a monthly limit where no controls name one.
        monthly_minor: c
            .monthly_minor
            .or_else(|| req.spend_limit.as_ref().map(|m| m.amount_minor)),
        allowed_mccs: c.allowed_mccs,
        blocked_mccs: c.blocked_mccs,
        allowed_countries: c.allowed_countries,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct DecisionLabels {
    partner: String,
    /// approved | declined
    outcome: String,
    /// rules | fallback | replayed
    decided_by: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RefusedLabels {
    partner: String,
    reason: String,
}

#[derive(Clone)]
struct Gateway {
    partners: Arc<Partners<dyn CardVendor>>,
    pool: PgPool,
    outbox: Outbox,
    cfg: AuthorizationConfig,
    decisions: Family<DecisionLabels, Counter>,
    latency: Family<DecisionLabels, Histogram>,
    refused: Family<RefusedLabels, Counter>,
}

/// The decision's event, keyed by the card's flow (a card the mesh did not issue: by its token).
#[allow(clippy::too_many_arguments)]
fn decision_event(
    owner: Option<(String, Option<String>)>,
    partner: &str,
    card_token: &str,
    transaction_id: &str,
    amount: &switchyard_model::events::common::Money,
    merchant: &CardMerchant,
    d: Decision,
    fallback: bool,
    took: Duration,
) -> Result<EventRecord, String> {
    let (tenant, flow) = match owner {
        Some((tenant, Some(flow))) => (tenant, flow),
        Some((tenant, None)) => (tenant, format!("card-token.{card_token}")),
        None => (String::new(), format!("card-token.{card_token}")),
    };
    let mut envelope = Envelope::new(CardAuthorizationDecided::RECORD, tenant, flow, SERVICE);
    envelope.idempotency_key = Some(format!("{partner}.{transaction_id}"));
    let e = CardAuthorizationDecided {
        envelope,
        partner: partner.to_string(),
        card_token: card_token.to_string(),
        provider_transaction_id: transaction_id.to_string(),
        amount: amount.clone(),
        merchant: merchant.clone(),
        approved: d == Decision::Approve,
        decline_reason: match d {
            Decision::Decline(r) => Some(r.as_str().to_string()),
            Decision::Approve => None,
        },
        fallback,
        latency_ms: took.as_millis() as i64,
    };
    EventRecord::of(&e).map_err(|e| e.to_string())
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~4 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

impl Gateway {
    /// The fallback's answer when our own parts did not decide in time.
    fn fallback(&self, amount_minor: i64) -> Decision {
        if self.cfg.fallback == "approve_below" && amount_minor > 0 && amount_minor < self.cfg.approve_below_minor {
            Decision::Approve
        } else {
            Decision::Decline(DeclineReason::Unavailable)
        }
    }

    /// Decides and records within the caller's deadline (a transaction: decision + event).
    async fn decide(
        &self,
        partner: &str,
        req: &AuthRequest,
        auth: &Authorization,
        started: Instant,
    ) -> Result<store::Decided, String> {
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        let decided = store::authorize_in(&mut tx, auth).await.map_err(|e| e.to_string())?;
        if !decided.replayed {
            let owner = store::owner(&mut tx, &auth.card_token)
                .await
                .map_err(|e| e.to_string())?;
            let record = decision_event(
                owner,
                partner,
                &req.card_token,
                &req.transaction_id,
                &req.amount,
                &req.merchant,
                decided.decision,
                false,
                started.elapsed(),
            )?;
            self.outbox
                .enqueue(&mut tx, CardAuthorizationDecided::TOPIC, &record)
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        self.outbox.committed();
        Ok(decided)
    }

    /// After a fallback answer: the store made to say what the processor was told (retried until
    /// it does; a processor asking again meanwhile gets the rules' answer or this one).
    async fn settle(&self, partner: String, req: AuthRequest, auth: Authorization, answered: Decision, took: Duration) {
        for attempt in 0..60u32 {
            let done: Result<(), String> = async {
                let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
                if store::settle_fallback(&mut tx, &auth, answered)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    let owner = store::owner(&mut tx, &auth.card_token)
                        .await
                        .map_err(|e| e.to_string())?;
                    let record = decision_event(
                        owner,
                        &partner,
                        &req.card_token,
                        &req.transaction_id,
                        &req.amount,
                        &req.merchant,
                        answered,
                        true,
                        took,
                    )?;
                    self.outbox
                        .enqueue(&mut tx, CardAuthorizationDecided::TOPIC, &record)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                tx.commit().await.map_err(|e| e.to_string())?;
                self.outbox.committed();
                Ok(())
            }
            .await;
            match done {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(%partner, transaction = %req.transaction_id, attempt, error = %e,
                        "fallback decision not recorded yet");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt.min(10) + 1))).await;
                }
            }
        }
        tracing::error!(%partner, transaction = %req.transaction_id,
            "fallback decision never recorded; the processor's clearing or reversal will show it");
    }
}

async fn authorization(
    State(g): State<Gateway>,
    Path(partner): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let Ok(vendor) = g.partners.get(&partner) else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no such partner"})),
        )
            .into_response();
    };
    let req = match vendor.read_authorization(&headers, &body) {
        Ok(r) => r,
        Err(e) => {
            let (status, reason) = match &e {
                AuthRejection::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
                AuthRejection::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
                AuthRejection::NotAnAuthorization(_) => (StatusCode::OK, "not_an_authorization"),
            };
            g.refused
                .get_or_create(&RefusedLabels {
                    partner: partner.clone(),
                    reason: reason.into(),
                })
                .inc();
            tracing::warn!(%partner, %reason, error = %e, "authorization request not decided");
            return (status, Json(serde_json::json!({"error": e.to_string()}))).into_response();
        }
    };
    let auth = Authorization {
        partner: partner.clone(),
        transaction_id: req.transaction_id.clone(),
        card_token: req.card_token.clone(),
        amount_minor: req.amount.amount_minor,
        currency: req.amount.currency.clone(),
        merchant: Merchant {
            name: req.merchant.name.clone(),
            mcc: req.merchant.mcc.clone(),
            country: req.merchant.country.clone(),
        },
    };
    let deadline = Duration::from_millis(g.cfg.deadline_ms);
    let (decision, decided_by) = match tokio::time::timeout(deadline, g.decide(&partner, &req, &auth, started)).await {
        Ok(Ok(d)) => (d.decision, if d.replayed { "replayed" } else { "rules" }),
        failed => {
            let why = match failed {
                Ok(Err(e)) => e,
                _ => format!("no decision within {} ms", g.cfg.deadline_ms),
            };
            let d = g.fallback(req.amount.amount_minor);
            tracing::warn!(%partner, transaction = %req.transaction_id, error = %why, fallback = ?d,
                "authorization decided by the fallback");
            let g2 = g.clone();
            let (p, r, a, took) = (partner.clone(), req.clone(), auth.clone(), started.elapsed());
            tokio::spawn(async move { g2.settle(p, r, a, d, took).await });
            (d, "fallback")
        }
    };
    let (status, answer) = vendor.answer_authorization(
        &req,
        match decision {
            Decision::Approve => None,
            Decision::Decline(r) => Some(r.as_str()),
        },
    );
    let labels = DecisionLabels {
        partner: partner.clone(),
        outcome: if decision == Decision::Approve {
            "approved"
        } else {
            "declined"
        }
        .into(),
        decided_by: decided_by.into(),
    };
    g.decisions.get_or_create(&labels).inc();
    g.latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(%partner, transaction = %req.transaction_id, card = %req.card_token, ?decision, decided_by,
        ms = started.elapsed().as_millis() as u64, "authorization answered");
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(answer)).into_response()
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
    let file = rt.config_file.as_deref();
    let auth_cfg: AuthorizationConfig = ServiceConfig::section(file, "authorization", AuthorizationConfig::default())?;
    if !["decline", "approve_below"].contains(&auth_cfg.fallback.as_str()) {
        anyhow::bail!("configuration field `authorization.fallback`: must be decline or approve_below");
    }
    let cards: CardsConfig = ServiceConfig::section(file, "cards", CardsConfig::default())?;
    let partners = Arc::new(Partners::load(file, &rt.metrics, &rt.pool, registry::cards).map_err(anyhow::Error::msg)?);
    let decisions: Family<DecisionLabels, Counter> = Family::default();
    let latency: Family<DecisionLabels, Histogram> = Family::new_with_constructor(latency_histogram);
    let refused: Family<RefusedLabels, Counter> = Family::default();
    rt.metrics.register(
        "card_authorizations",
        "Real-time authorization requests answered, by partner, outcome and who decided (rules, fallback, replayed)",
        decisions.clone(),
    );
    rt.metrics.register(
        "card_authorization_seconds",
        "From a processor's authorization request arriving to our answer",
        latency.clone(),
    );
    rt.metrics.register(
        "card_authorizations_refused",
        "Authorization requests not decided (unauthenticated, malformed, not an authorization)",
        refused.clone(),
    );
    let gateway = Gateway {
        partners: partners.clone(),
        pool: rt.pool.clone(),
        outbox: rt.outbox.clone(),
        cfg: auth_cfg,
        decisions,
        latency,
        refused,
    };
    let handler = CardsAdapter {
        partners,
        outbox: rt.outbox.clone(),
        ledger: Ledger::new(rt.pool.clone()),
        cards,
    };
    let consumer = rt.consumer(SERVICE, &[CardOperationRequested::TOPIC], handler);
    let routes = Router::new()
        .route("/authorizations/{partner}", post(authorization))
        .with_state(gateway);
    let tasks = vec![
        rt.spawn_relay(),
        rt.spawn_consumer(consumer),
        rt.spawn_retention(Vec::new())?,
    ];
    rt.serve_until_shutdown(routes, tasks).await
}
