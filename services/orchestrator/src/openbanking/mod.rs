//! The open-banking flows (consents and payments) in the same shape as the others:
//! [`transition`] is the pure step; this module reads messages and timers into inputs and carries
//! out effects in the same transaction (requests and outcomes to the outbox, references, timers,
//! history). Accounts and transactions fetched are relayed to products as they come.

pub mod transition;

#[cfg(test)]
mod tests;

use std::time::Duration;

use sqlx::{PgConnection, Row};
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::Money,
        openbanking::{
            OpenBankingAccounts, OpenBankingAccountsFetched, OpenBankingCompleted, OpenBankingOperation as Op,
            OpenBankingProviderEvent, OpenBankingRequested, OpenBankingResult, OpenBankingStatus,
            OpenBankingTransactions, OpenBankingTransactionsFetched, RequestOpenBanking, consent_flow_id,
            payment_flow_id,
        },
        payouts::Beneficiary,
    },
};
use switchyard_runtime::{HandlerError, Incoming, Outbox};

use self::transition::{Answer, Asked, Ctx, Effect, Flow, Input, Kind};
use crate::routing::{Routing, Subject};

const SERVICE: &str = "orchestrator";

type R<T> = Result<T, HandlerError>;

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

/// What a flow's requests carry beyond the operation (a payment's order; a consent's redirect).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Order {
    consent_id: Option<String>,
    payment_id: Option<String>,
    institution_id: Option<String>,
    redirect_uri: Option<String>,
    amount: Option<Money>,
    reference: Option<String>,
    beneficiary: Option<Beneficiary>,
}

struct Row_ {
    flow_id: String,
    tenant_id: String,
    customer_id: String,
    correlation_id: String,
    flow: Flow,
    order: Order,
}

#[derive(Clone)]
pub struct OpenBanking {
    pub routing: Routing,
    pub outbox: Outbox,
    pub check_after: Duration,
    pub max_checks: u32,
}

impl OpenBanking {
    pub async fn handle(&self, conn: &mut PgConnection, msg: &Incoming) -> R<bool> {
        let e = &msg.event;
        if let Some(c) = e.as_event::<RequestOpenBanking>() {
            self.command(conn, c.map_err(perm)?).await?;
        } else if let Some(r) = e.as_event::<OpenBankingResult>() {
            self.result(conn, r.map_err(perm)?).await?;
        } else if let Some(a) = e.as_event::<OpenBankingAccountsFetched>() {
            self.accounts(conn, a.map_err(perm)?).await?;
        } else if let Some(t) = e.as_event::<OpenBankingTransactionsFetched>() {
            self.transactions(conn, t.map_err(perm)?).await?;
        } else if let Some(p) = e.as_event::<OpenBankingProviderEvent>() {
            self.notice(conn, p.map_err(perm)?).await?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn candidates(&self, flow_id: &str, tenant: &str, amount: Option<&Money>) -> Vec<String> {
        let subject = Subject::plain(flow_id, tenant);
        let policy = self.routing.get();
        let candidates = policy
            .decide("openbanking", &subject)
            .map(|d| d.candidates)
            .unwrap_or_default();
        // A payment only where the provider pays its currency.
        match amount {
            Some(m) => candidates
                .into_iter()
                .filter(|c| {
                    policy
                        .partners
                        .iter()
                        .any(|p| &p.id == c && (p.currencies.is_empty() || p.currencies.contains(&m.currency)))
                })
                .collect(),
            None => candidates,
        }
    }

    fn ctx<'a>(&self, candidates: &'a [String]) -> Ctx<'a> {
        Ctx {
            candidates,
            next_request: uuid::Uuid::now_v7(),
            check_after: self.check_after.as_secs().max(1),
            max_checks: self.max_checks,
            now_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    async fn command(&self, conn: &mut PgConnection, c: RequestOpenBanking) -> R<()> {
        let tenant = c.envelope.tenant_id.clone();
        let (kind, flow_id) = match c.operation {
            Op::InitiatePayment | Op::PaymentStatus => (
                Kind::Payment,
                payment_flow_id(
                    &tenant,
                    c.payment_id
                        .as_deref()
                        .ok_or_else(|| perm("a payment command must name its payment_id"))?,
                ),
            ),
            _ => (
                Kind::Consent,
                consent_flow_id(
                    &tenant,
                    c.consent_id
                        .as_deref()
                        .ok_or_else(|| perm("a consent command must name its consent_id"))?,
                ),
            ),
        };
        let asked = Asked {
            op: c.operation,
            command: c.envelope.event_id,
            code: c.authorization_code.clone(),
        };
        if let Some(row) = load(conn, &flow_id).await? {
            return self.feed(conn, row, Input::Command(asked), &c.envelope).await;
        }
        if !matches!(c.operation, Op::CreateConsent | Op::InitiatePayment) {
            // Nothing to act on: answered at once.
            let mut e = Envelope::new(OpenBankingCompleted::RECORD, tenant.clone(), flow_id.clone(), SERVICE);
            e.causation_id = Some(c.envelope.event_id.to_string());
            let out = OpenBankingCompleted {
                envelope: e,
                customer_id: c.customer_id.clone(),
                operation: c.operation,
                status: OpenBankingStatus::Failed,
                consent_id: c.consent_id.clone(),
                partner: String::new(),
                authorization_url: None,
                payment_id: c.payment_id.clone(),
                provider_reference: None,
                consent_expires_at: None,
                failure: Some(switchyard_model::events::common::Failure::new(
                    switchyard_model::events::common::FailureClass::Permanent,
                    "unknown",
                    "no such consent or payment for this tenant",
                )),
                scopes: vec![],
            };
            return self
                .outbox
                .enqueue(conn, OpenBankingCompleted::TOPIC, &EventRecord::of(&out).map_err(perm)?)
                .await
                .map(|_| ())
                .map_err(|e| HandlerError::Transient(e.to_string()));
        }
        let order = Order {
            consent_id: c.consent_id.clone(),
            payment_id: c.payment_id.clone(),
            institution_id: c.institution_id.clone(),
            redirect_uri: c.redirect_uri.clone(),
            amount: c.amount.clone(),
            reference: c.reference.clone(),
            beneficiary: c.beneficiary.clone(),
        };
        let candidates = self.candidates(&flow_id, &tenant, order.amount.as_ref());
        let (flow, effects) = transition::start(kind, asked, &self.ctx(&candidates));
        let row = Row_ {
            flow_id,
            tenant_id: tenant,
            customer_id: c.customer_id.clone(),
            correlation_id: c.envelope.correlation_id.clone(),
            flow,
            order,
        };
        insert(conn, &row).await?;
        self.apply(conn, row, effects, &c.envelope).await
    }

    async fn feed(&self, conn: &mut PgConnection, row: Row_, input: Input, cause: &Envelope) -> R<()> {
        let candidates = self.candidates(&row.flow_id, &row.tenant_id, row.order.amount.as_ref());
        let (next, effects) = transition::step(&row.flow, input, &self.ctx(&candidates));
        self.apply(conn, Row_ { flow: next, ..row }, effects, cause).await
    }

    async fn result(&self, conn: &mut PgConnection, r: OpenBankingResult) -> R<()> {
        let Some(row) = load(conn, &r.envelope.flow_id).await? else {
            return Ok(());
        };
        let Some(request) = request_of(&r.envelope) else {
            return Err(perm("an open-banking result without its request's key"));
        };
        let input = Input::Answer(Answer {
            request,
            partner: r.partner.clone(),
            status: r.status,
            failure: r.failure.clone(),
            reference: r.provider_reference.clone(),
            authorization_url: r.authorization_url.clone(),
            consent_expires_at: r.consent_expires_at,
            scopes: r.scopes.clone(),
        });
        self.feed(conn, row, input, &r.envelope).await
    }

    async fn accounts(&self, conn: &mut PgConnection, a: OpenBankingAccountsFetched) -> R<()> {
        let Some(row) = load(conn, &a.envelope.flow_id).await? else {
            return Ok(());
        };
        let out = OpenBankingAccounts {
            envelope: envelope(&row, OpenBankingAccounts::RECORD, &a.envelope),
            customer_id: row.customer_id.clone(),
            consent_id: a.consent_id.clone(),
            partner: a.partner.clone(),
            accounts: a.accounts.clone(),
        };
        self.outbox
            .enqueue(conn, OpenBankingAccounts::TOPIC, &EventRecord::of(&out).map_err(perm)?)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let input = Input::Fetched {
            request: request_of(&a.envelope).unwrap_or_default(),
            failure: None,
        };
        self.feed(conn, row, input, &a.envelope).await
    }

    async fn transactions(&self, conn: &mut PgConnection, t: OpenBankingTransactionsFetched) -> R<()> {
        let Some(row) = load(conn, &t.envelope.flow_id).await? else {
            return Ok(());
        };
        let out = OpenBankingTransactions {
            envelope: envelope(&row, OpenBankingTransactions::RECORD, &t.envelope),
            customer_id: row.customer_id.clone(),
            consent_id: t.consent_id.clone(),
            partner: t.partner.clone(),
            transactions: t.transactions.clone(),
            removed: t.removed.clone(),
        };
        self.outbox
            .enqueue(
                conn,
                OpenBankingTransactions::TOPIC,
                &EventRecord::of(&out).map_err(perm)?,
            )
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let input = Input::Fetched {
            request: request_of(&t.envelope).unwrap_or_default(),
            failure: None,
        };
        self.feed(conn, row, input, &t.envelope).await
    }

    async fn notice(&self, conn: &mut PgConnection, p: OpenBankingProviderEvent) -> R<()> {
        let flow_id: Option<String> =
            sqlx::query_scalar("SELECT flow_id FROM ob_refs WHERE partner = $1 AND provider_reference = $2")
                .bind(&p.partner)
                .bind(&p.provider_reference)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(row) = (match flow_id {
            Some(f) => load(conn, &f).await?,
            None => None,
        }) else {
            tracing::info!(partner = %p.partner, reference = %p.provider_reference, notice = %p.notice,
                "open-banking notice for nothing the mesh holds; ignored");
            return Ok(());
        };
        let input = match p.notice.as_str() {
            "payment" => Input::Notice {
                status: p.status,
                reason: p.failure_reason.clone(),
            },
            "transactions_available" => Input::Command(Asked {
                op: Op::FetchTransactions,
                command: p.envelope.event_id,
                code: None,
            }),
            _ => Input::Command(Asked {
                op: Op::RefreshConsent,
                command: p.envelope.event_id,
                code: None,
            }),
        };
        self.feed(conn, row, input, &p.envelope).await
    }

    /// A payment's status question (or a consent's renewal) is due.
    pub async fn timed_out(&self, conn: &mut PgConnection, flow_id: &str) -> R<()> {
        let Some(row) = load(conn, flow_id).await? else {
            return Ok(());
        };
        let cause = Envelope::new(
            "com.switchyard.orchestrator.Timer",
            row.tenant_id.clone(),
            flow_id.to_string(),
            SERVICE,
        );
        self.feed(conn, row, Input::StatusCheck, &cause).await
    }

    async fn apply(&self, conn: &mut PgConnection, row: Row_, effects: Vec<Effect>, cause: &Envelope) -> R<()> {
        let mut out: Vec<(&'static str, EventRecord)> = Vec::new();
        let mut history: Vec<(&str, serde_json::Value)> = Vec::new();
        for e in effects {
            match e {
                Effect::Note(what, detail) => history.push((what, detail)),
                Effect::Reference { partner, reference } => {
                    sqlx::query(
                        "INSERT INTO ob_refs (partner, provider_reference, flow_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(&partner)
                    .bind(&reference)
                    .bind(&row.flow_id)
                    .execute(&mut *conn)
                    .await?;
                }
                Effect::Timer(after) => crate::timers::OPEN_BANKING.set(conn, &row.flow_id, after).await?,
                Effect::Request {
                    asked,
                    partner,
                    request,
                } => {
                    let mut env = envelope(&row, OpenBankingRequested::RECORD, cause);
                    env.event_id = request;
                    let o = &row.order;
                    let req = OpenBankingRequested {
                        envelope: env,
                        customer_id: row.customer_id.clone(),
                        operation: asked.op,
                        consent_id: o.consent_id.clone(),
                        institution_id: o.institution_id.clone(),
                        amount: o.amount.clone(),
                        // A status question names the provider's reference.
                        creditor_account: (asked.op == Op::PaymentStatus)
                            .then(|| row.flow.reference.clone())
                            .flatten(),
                        redirect_uri: o.redirect_uri.clone(),
                        partner,
                        attempt: row.flow.tried.len() as i32,
                        authorization_code: asked.code.clone(),
                        payment_id: o.payment_id.clone(),
                        reference: o.reference.clone(),
                        beneficiary: (asked.op == Op::InitiatePayment)
                            .then(|| o.beneficiary.clone())
                            .flatten(),
                    };
                    out.push((OpenBankingRequested::TOPIC, EventRecord::of(&req).map_err(perm)?));
                }
                Effect::Outcome {
                    op,
                    status,
                    failure,
                    authorization_url,
                    consent_expires_at,
                    scopes,
                } => {
                    let done = OpenBankingCompleted {
                        envelope: envelope(&row, OpenBankingCompleted::RECORD, cause),
                        customer_id: row.customer_id.clone(),
                        operation: op,
                        status,
                        consent_id: row.order.consent_id.clone(),
                        partner: row.flow.partner.clone().unwrap_or_default(),
                        authorization_url,
                        payment_id: row.order.payment_id.clone(),
                        provider_reference: row.flow.reference.clone(),
                        consent_expires_at,
                        failure,
                        scopes,
                    };
                    out.push((OpenBankingCompleted::TOPIC, EventRecord::of(&done).map_err(perm)?));
                }
            }
        }
        save(conn, &row, &history).await?;
        self.outbox
            .enqueue_all(conn, &out)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }
}

fn request_of(e: &Envelope) -> Option<uuid::Uuid> {
    e.idempotency_key
        .as_deref()
        .and_then(|k| k.strip_prefix("sy-"))
        .and_then(|k| uuid::Uuid::parse_str(k).ok())
}

fn envelope(row: &Row_, record: &str, cause: &Envelope) -> Envelope {
    let mut e = Envelope::new(record, row.tenant_id.clone(), row.flow_id.clone(), SERVICE);
    e.correlation_id = row.correlation_id.clone();
    e.causation_id = Some(cause.event_id.to_string());
    e
}

fn status_name(s: OpenBankingStatus) -> String {
    format!("{s:?}").to_lowercase()
}

async fn insert(conn: &mut PgConnection, row: &Row_) -> R<()> {
    sqlx::query(
        "INSERT INTO ob_flows (flow_id, tenant_id, kind, customer_id, correlation_id, status, flow, \"order\") \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (flow_id) DO NOTHING",
    )
    .bind(&row.flow_id)
    .bind(&row.tenant_id)
    .bind(match row.flow.kind {
        Kind::Consent => "consent",
        Kind::Payment => "payment",
    })
    .bind(&row.customer_id)
    .bind(&row.correlation_id)
    .bind(status_name(row.flow.status))
    .bind(serde_json::to_value(&row.flow).map_err(perm)?)
    .bind(serde_json::to_value(&row.order).map_err(perm)?)
    .execute(conn)
    .await?;
    Ok(())
}

async fn load(conn: &mut PgConnection, flow_id: &str) -> R<Option<Row_>> {
    let Some(r) = sqlx::query(
        "SELECT tenant_id, customer_id, correlation_id, flow, \"order\" FROM ob_flows WHERE flow_id = $1 FOR UPDATE",
    )
    .bind(flow_id)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(Row_ {
        flow_id: flow_id.to_string(),
        tenant_id: r.get("tenant_id"),
        customer_id: r.get("customer_id"),
        correlation_id: r.get("correlation_id"),
        flow: serde_json::from_value(r.get("flow")).map_err(perm)?,
        order: serde_json::from_value(r.get("order")).unwrap_or_default(),
    }))
}

async fn save(conn: &mut PgConnection, row: &Row_, history: &[(&str, serde_json::Value)]) -> R<()> {
    let (events, details): (Vec<&str>, Vec<&serde_json::Value>) = history.iter().map(|(e, d)| (*e, d)).unzip();
    sqlx::query(
        "WITH history AS (INSERT INTO flow_history (flow_id, event, detail) \
           SELECT $1, e, d FROM unnest($4::text[], $5::jsonb[]) WITH ORDINALITY AS h (e, d, n) ORDER BY n) \
         UPDATE ob_flows SET status = $2, flow = $3, updated_at = now() WHERE flow_id = $1",
    )
    .bind(&row.flow_id)
    .bind(status_name(row.flow.status))
    .bind(serde_json::to_value(&row.flow).map_err(perm)?)
    .bind(events)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}
