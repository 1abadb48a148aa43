//! The open-banking adapter: consumes `openbanking.requests.v1` and carries out each operation at
//! the requested provider, writing `openbanking.results.v1`:
//!
//! * `CREATE_CONSENT`: the provider's authorization link (the consent is kept, awaiting the customer);
//! * `COMPLETE_CONSENT`: the bank's callback code exchanged (once: through the effect ledger, whose
//!   answer is the sealed connection) for the provider's tokens, sealed at rest;
//! * `REFRESH_CONSENT`: new tokens, or a re-consent link when the provider offers no refresh;
//! * `REVOKE_CONSENT`: the connection ended at the provider and its tokens forgotten;
//! * `FETCH_ACCOUNTS`, `FETCH_TRANSACTIONS`: accounts and balances; transactions since the last
//!   fetch (the provider's cursor kept), only the new and the changed emitted, withdrawals named;
//!   an access token about to expire is refreshed first;
//! * `INITIATE_PAYMENT`: a single immediate payment through the effect ledger under
//!   `sy-<request event id>` (in doubt: looked up, never re-sent blind); `PAYMENT_STATUS`: asked.
//!
//! Configuration beyond the runtime's: `[[partners]]` (vendors `truelayer`, `plaid`), `catalog_file`,
//! `[provider]` as the other adapters; `[tokens] key` (a secret reference to 32 bytes, base64: the
//! AES-256-GCM key the providers' tokens are sealed with).

use std::{process::ExitCode, sync::Arc};

use axum::Router;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::{Failure, FailureClass},
        openbanking::{
            BankAccount, BankTransaction, BankTransactionStatus, OpenBankingAccountsFetched, OpenBankingOperation,
            OpenBankingRequested, OpenBankingResult, OpenBankingStatus, OpenBankingTransactionsFetched,
        },
    },
};
use switchyard_runtime::{
    Handler, HandlerError, Incoming, Outbox, ServiceConfig,
    effects::{Intent, Ledger},
    provider::idempotency_key,
    service,
};
use switchyard_vendors::{
    adapter::{Partners, emit},
    openbanking::{
        self as ob, Connection, ConsentRequest, OpenBankingVendor, PaymentOrder, PaymentOutcome, PaymentStatus,
        Refreshed, TransactionPage,
    },
    registry,
};

use switchyard_vendors::openbanking::seal::Sealer;

const SERVICE: &str = "openbanking-adapter";
/// Pages of transactions one fetch takes at most (the rest on the next fetch).
const MAX_PAGES: usize = 20;

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokensConfig {
    key: String,
}

struct Adapter {
    partners: Partners<dyn OpenBankingVendor>,
    outbox: Outbox,
    ledger: Ledger,
    sealer: Sealer,
    pool: sqlx::PgPool,
}

/// A consent as the adapter keeps it.
struct Held {
    partner: String,
    customer_key: String,
    redirect_uri: String,
    institution_id: Option<String>,
    sealed: Option<String>,
    cursor: Option<String>,
}

type HeldRow = (String, String, String, Option<String>, Option<String>, Option<String>);

/// A sealed connection: what the effect ledger keeps as the answer of a code exchange.
#[derive(Clone, Serialize, Deserialize)]
struct Sealed {
    sealed: String,
    access_expires_at_ms: Option<i64>,
    consent_expires_at_ms: Option<i64>,
    provider_reference: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// What a request came to, ready to be written.
enum Done {
    Linked(ob::ConsentLink),
    Connected(Sealed),
    Reconsent(ob::ConsentLink),
    Revoked,
    Accounts(Vec<ob::BankAccount>, Option<Sealed>),
    Transactions(TransactionPage, Option<Sealed>),
    Paid(PaymentOutcome),
}

fn failure(code: &str, message: impl Into<String>) -> Failure {
    Failure::new(FailureClass::Permanent, code, message)
}

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

/// An opaque, stable name for a tenant's customer at a provider (no personal data in it).
fn customer_key(tenant: &str, customer_id: &str) -> String {
    let d = switchyard_vendors::signing::sha256_hex(format!("{}.{tenant}.{customer_id}", tenant.len()).as_bytes());
    format!("c-{}", &d[..24])
}

impl Adapter {
    async fn held(&self, consent_key: &str) -> Result<Option<Held>, HandlerError> {
        let row: Option<HeldRow> = sqlx::query_as(
            "SELECT partner, customer_key, redirect_uri, institution_id, sealed, cursor FROM ob_consents WHERE consent_key = $1",
        )
        .bind(consent_key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(partner, customer_key, redirect_uri, institution_id, sealed, cursor)| Held {
                partner,
                customer_key,
                redirect_uri,
                institution_id,
                sealed,
                cursor,
            },
        ))
    }

    fn consent_request(&self, req: &OpenBankingRequested, held: Option<&Held>) -> ConsentRequest {
        ConsentRequest {
            consent_id: req.consent_id.clone().unwrap_or_default(),
            customer_key: held
                .map(|h| h.customer_key.clone())
                .unwrap_or_else(|| customer_key(&req.envelope.tenant_id, &req.customer_id)),
            institution_id: req
                .institution_id
                .clone()
                .or_else(|| held.and_then(|h| h.institution_id.clone())),
            redirect_uri: req
                .redirect_uri
                .clone()
                .or_else(|| held.map(|h| h.redirect_uri.clone()))
                .unwrap_or_default(),
        }
    }

    fn sealed(&self, key: &str, c: &Connection) -> Result<Sealed, HandlerError> {
        Ok(Sealed {
            sealed: self.sealer.seal(key, c).map_err(perm)?,
            access_expires_at_ms: c.access_expires_at_ms,
            consent_expires_at_ms: c.consent_expires_at_ms,
            provider_reference: c.provider_reference.clone(),
            scopes: c.scopes.clone(),
        })
    }

    /// The consent's connection, refreshed first when its access token is about to expire (the
    /// new tokens to be saved with the answer).
    async fn connection(
        &self,
        vendor: &Arc<dyn OpenBankingVendor>,
        req: &OpenBankingRequested,
        key: &str,
        held: &Held,
    ) -> Result<Result<(Connection, Option<Sealed>), Failure>, HandlerError> {
        let Some(sealed) = &held.sealed else {
            return Ok(Err(failure(
                "consent_not_authorized",
                "the customer has not authorized this consent",
            )));
        };
        let c = self.sealer.open(key, sealed).map_err(perm)?;
        let soon = chrono::Utc::now().timestamp_millis() + 60_000;
        if c.access_expires_at_ms.is_none_or(|t| t > soon) {
            return Ok(Ok((c, None)));
        }
        let cr = self.consent_request(req, Some(held));
        match self
            .partners
            .call(&held.partner, "refresh", || vendor.refresh(&cr, &c))
            .await
        {
            Ok(Refreshed::Connection(fresh)) => {
                let s = self.sealed(key, &fresh)?;
                Ok(Ok((fresh, Some(s))))
            }
            Ok(Refreshed::Reconsent(_)) => Ok(Err(failure(
                "consent_expired",
                "the consent can no longer be refreshed: the customer must consent again",
            ))),
            Err(f) => Ok(Err(f)),
        }
    }

    async fn pay(
        &self,
        req: &OpenBankingRequested,
        key: &str,
    ) -> Result<Result<PaymentOutcome, Failure>, HandlerError> {
        let vendor = match self.partners.get(&req.partner) {
            Ok(v) => v,
            Err(f) => return Ok(Err(f)),
        };
        let (Some(amount), Some(b)) = (req.amount.clone(), req.beneficiary.clone()) else {
            return Ok(Err(failure(
                "payment_invalid",
                "a payment needs an amount and a beneficiary",
            )));
        };
        if amount.amount_minor <= 0 {
            return Ok(Err(failure("payment_invalid", "the amount must be positive")));
        }
        let order = PaymentOrder {
            payment_id: req.payment_id.clone().unwrap_or_else(|| req.envelope.flow_id.clone()),
            idempotency_key: key.to_string(),
            customer_key: customer_key(&req.envelope.tenant_id, &req.customer_id),
            amount,
            beneficiary_name: b.name,
            beneficiary: b.account,
            reference: req.reference.clone().unwrap_or_default(),
            redirect_uri: req.redirect_uri.clone().unwrap_or_default(),
        };
        let intent = Intent {
            key,
            partner: &req.partner,
            operation: "payment",
            request_event_id: req.envelope.event_id,
            flow_id: &req.envelope.flow_id,
        };
        self.partners
            .effect(
                &self.ledger,
                intent,
                |o: &PaymentOutcome| Some(o.provider_reference.clone()),
                |progress| vendor.pay(&order, progress),
                |progress| vendor.find(&order, progress),
            )
            .await
    }

    async fn run(&self, req: &OpenBankingRequested, key: &str) -> Result<Result<Done, Failure>, HandlerError> {
        use OpenBankingOperation as Op;
        let vendor = match self.partners.get(&req.partner) {
            Ok(v) => v.clone(),
            Err(f) => return Ok(Err(f)),
        };
        let consent_key = req.envelope.flow_id.as_str();
        let held = self.held(consent_key).await?;
        Ok(match req.operation {
            Op::CreateConsent => {
                let cr = self.consent_request(req, None);
                if cr.redirect_uri.is_empty() {
                    return Ok(Err(failure("consent_invalid", "a consent needs a redirect_uri")));
                }
                self.partners
                    .call(&req.partner, "consent_link", || vendor.consent_link(&cr))
                    .await
                    .map(Done::Linked)
            }
            Op::CompleteConsent => {
                let Some(h) = held else {
                    return Ok(Err(failure("consent_unknown", "no consent was started under this id")));
                };
                let Some(code) = req.authorization_code.clone() else {
                    return Ok(Err(failure("consent_invalid", "the callback carried no code")));
                };
                let cr = self.consent_request(req, Some(&h));
                let intent = Intent {
                    key,
                    partner: &h.partner,
                    operation: "consent_exchange",
                    request_event_id: req.envelope.event_id,
                    flow_id: &req.envelope.flow_id,
                };
                let v = vendor.clone();
                let sealer = &self.sealer;
                let exchanged = self
                    .partners
                    .effect(
                        &self.ledger,
                        intent,
                        |s: &Sealed| s.provider_reference.clone(),
                        |_| {
                            let (cr, code, v) = (cr.clone(), code.clone(), v.clone());
                            Box::pin(async move {
                                let c = v.complete(&cr, &code).await?;
                                Ok(Sealed {
                                    sealed: sealer
                                        .seal(consent_key, &c)
                                        .map_err(switchyard_vendors::VendorError::Permanent)?,
                                    access_expires_at_ms: c.access_expires_at_ms,
                                    consent_expires_at_ms: c.consent_expires_at_ms,
                                    provider_reference: c.provider_reference.clone(),
                                    scopes: c.scopes.clone(),
                                })
                            })
                        },
                        // A code is good once: an exchange whose answer was lost cannot be asked
                        // again; the customer consents again.
                        |_| Box::pin(async { Ok(switchyard_vendors::adapter::Recovery::Unknowable) }),
                    )
                    .await?;
                exchanged.map(Done::Connected)
            }
            Op::RefreshConsent => {
                let Some(h) = held else {
                    return Ok(Err(failure("consent_unknown", "no such consent")));
                };
                let Some(sealed) = &h.sealed else {
                    return Ok(Err(failure("consent_not_authorized", "nothing to refresh yet")));
                };
                let c = self.sealer.open(consent_key, sealed).map_err(perm)?;
                let cr = self.consent_request(req, Some(&h));
                match self
                    .partners
                    .call(&h.partner, "refresh", || vendor.refresh(&cr, &c))
                    .await
                {
                    Ok(Refreshed::Connection(fresh)) => Ok(Done::Connected(self.sealed(consent_key, &fresh)?)),
                    Ok(Refreshed::Reconsent(link)) => Ok(Done::Reconsent(link)),
                    Err(f) => Err(f),
                }
            }
            Op::RevokeConsent => {
                let Some(h) = held else {
                    return Ok(Err(failure("consent_unknown", "no such consent")));
                };
                if let Some(sealed) = &h.sealed {
                    let c = self.sealer.open(consent_key, sealed).map_err(perm)?;
                    if let Err(f) = self.partners.call(&h.partner, "revoke", || vendor.revoke(&c)).await {
                        return Ok(Err(f));
                    }
                }
                Ok(Done::Revoked)
            }
            Op::FetchAccounts | Op::FetchTransactions => {
                let Some(h) = held else {
                    return Ok(Err(failure("consent_unknown", "no such consent")));
                };
                let (c, refreshed) = match self.connection(&vendor, req, consent_key, &h).await? {
                    Ok(x) => x,
                    Err(f) => return Ok(Err(f)),
                };
                if req.operation == Op::FetchAccounts {
                    self.partners
                        .call(&h.partner, "accounts", || vendor.accounts(&c))
                        .await
                        .map(|a| Done::Accounts(a, refreshed))
                } else {
                    let mut all = TransactionPage {
                        cursor: h.cursor.clone(),
                        ..TransactionPage::default()
                    };
                    for _ in 0..MAX_PAGES {
                        let cursor = all.cursor.clone();
                        match self
                            .partners
                            .call(&h.partner, "transactions", || {
                                vendor.transactions(&c, cursor.as_deref())
                            })
                            .await
                        {
                            Ok(p) => {
                                all.transactions.extend(p.transactions);
                                all.removed.extend(p.removed);
                                all.cursor = p.cursor.or(all.cursor);
                                all.has_more = p.has_more;
                                if !p.has_more {
                                    break;
                                }
                            }
                            Err(f) => return Ok(Err(f)),
                        }
                    }
                    Ok(Done::Transactions(all, refreshed))
                }
            }
            Op::InitiatePayment => self.pay(req, key).await?.map(Done::Paid),
            Op::PaymentStatus => {
                let Some(reference) = req.creditor_account.clone().or_else(|| req.payment_id.clone()) else {
                    return Ok(Err(failure("payment_unknown", "no provider reference to ask about")));
                };
                self.partners
                    .call(&req.partner, "payment_status", || vendor.payment(&reference))
                    .await
                    .map(Done::Paid)
            }
        })
    }
}

/// Keeps a consent's new tokens (sealed) and when they and the consent expire.
async fn save_tokens(conn: &mut PgConnection, consent_key: &str, s: Sealed) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE ob_consents SET sealed = $2, status = 'authorized', \
         access_expires_at = to_timestamp($3::double precision / 1000), \
         consent_expires_at = COALESCE(to_timestamp($4::double precision / 1000), consent_expires_at), \
         provider_reference = COALESCE($5, provider_reference), updated_at = now() WHERE consent_key = $1",
    )
    .bind(consent_key)
    .bind(&s.sealed)
    .bind(s.access_expires_at_ms.map(|v| v as f64))
    .bind(s.consent_expires_at_ms.map(|v| v as f64))
    .bind(&s.provider_reference)
    .execute(conn)
    .await?;
    Ok(())
}

fn payment_status(s: PaymentStatus) -> OpenBankingStatus {
    match s {
        PaymentStatus::AwaitingAuthorization => OpenBankingStatus::AwaitingAuthorization,
        PaymentStatus::Pending => OpenBankingStatus::Pending,
        PaymentStatus::Executed => OpenBankingStatus::Executed,
        PaymentStatus::Settled => OpenBankingStatus::Completed,
        PaymentStatus::Failed => OpenBankingStatus::Failed,
    }
}

fn days(d: Option<chrono::NaiveDate>) -> Option<i32> {
    d.and_then(|d| i32::try_from((d - chrono::NaiveDate::default()).num_days()).ok())
}

fn account(a: ob::BankAccount) -> BankAccount {
    BankAccount {
        account_id: a.account_id,
        name: a.name,
        kind: a.kind,
        currency: a.currency,
        number_last4: a.number_last4,
        current_minor: a.current_minor,
        available_minor: a.available_minor,
    }
}

fn transaction(t: ob::BankTransaction) -> BankTransaction {
    BankTransaction {
        transaction_id: t.transaction_id,
        account_id: t.account_id,
        amount_minor: t.amount_minor,
        currency: t.currency,
        status: match t.status {
            ob::TransactionStatus::Booked => BankTransactionStatus::Booked,
            ob::TransactionStatus::Pending => BankTransactionStatus::Pending,
        },
        booking_date: days(t.booking_date),
        value_date: days(t.value_date),
        description: t.description,
        replaces: t.replaces,
    }
}

impl Handler for Adapter {
    type Prepared = (Box<OpenBankingRequested>, String, Result<Done, Failure>);
    const CALLS_OUT: bool = true;

    async fn prepare(&self, msg: &Incoming) -> Result<Self::Prepared, HandlerError> {
        let Some(req) = msg.event.as_event::<OpenBankingRequested>() else {
            return Err(perm(format!("{} is not an open-banking request", msg.event.record)));
        };
        let req = req.map_err(perm)?;
        let key = idempotency_key(req.envelope.event_id);
        let done = self.run(&req, &key).await?;
        Ok((Box::new(req), key, done))
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        _: &Incoming,
        (req, key, done): Self::Prepared,
    ) -> Result<(), HandlerError> {
        let consent_key = req.envelope.flow_id.clone();
        let mut envelope = Envelope::caused_by(&req.envelope, OpenBankingResult::RECORD, SERVICE);
        envelope.idempotency_key = Some(key);
        let mut result = OpenBankingResult {
            envelope: envelope.clone(),
            customer_id: req.customer_id.clone(),
            partner: req.partner.clone(),
            provider_reference: None,
            operation: req.operation,
            status: OpenBankingStatus::Failed,
            authorization_url: None,
            consent_id: req.consent_id.clone(),
            account_count: 0,
            failure: None,
            payment_id: req.payment_id.clone(),
            consent_expires_at: None,
            scopes: vec![],
        };
        let (topic, record) = match done {
            Err(f) => {
                result.status = if matches!(f.failure_class, FailureClass::ManualRepair | FailureClass::Ambiguous) {
                    OpenBankingStatus::Unknown
                } else {
                    OpenBankingStatus::Failed
                };
                result.failure = Some(f);
                (OpenBankingResult::TOPIC, EventRecord::of(&result).map_err(perm)?)
            }
            Ok(Done::Linked(link)) => {
                sqlx::query(
                    "INSERT INTO ob_consents (consent_key, tenant_id, partner, customer_key, status, redirect_uri, institution_id, \
                     provider_reference) VALUES ($1, $2, $3, $4, 'awaiting_authorization', $5, $6, $7) \
                     ON CONFLICT (consent_key) DO NOTHING",
                )
                .bind(&consent_key)
                .bind(&req.envelope.tenant_id)
                .bind(&req.partner)
                .bind(customer_key(&req.envelope.tenant_id, &req.customer_id))
                .bind(req.redirect_uri.clone().unwrap_or_default())
                .bind(&req.institution_id)
                .bind(&link.provider_reference)
                .execute(&mut *conn)
                .await?;
                result.status = OpenBankingStatus::AwaitingAuthorization;
                result.authorization_url = Some(link.authorization_url);
                result.provider_reference = Some(link.provider_reference);
                (OpenBankingResult::TOPIC, EventRecord::of(&result).map_err(perm)?)
            }
            Ok(Done::Connected(s)) => {
                result.status = OpenBankingStatus::Authorized;
                result.consent_expires_at = s.consent_expires_at_ms;
                result.scopes = s.scopes.clone();
                result.provider_reference = s.provider_reference.clone();
                save_tokens(&mut *conn, &consent_key, s).await?;
                (OpenBankingResult::TOPIC, EventRecord::of(&result).map_err(perm)?)
            }
            Ok(Done::Reconsent(link)) => {
                result.status = OpenBankingStatus::AwaitingAuthorization;
                result.authorization_url = Some(link.authorization_url);
                (OpenBankingResult::TOPIC, EventRecord::of(&result).map_err(perm)?)
            }
            Ok(Done::Revoked) => {
                sqlx::query("UPDATE ob_consents SET sealed = NULL, status = 'revoked', updated_at = now() WHERE consent_key = $1")
                    .bind(&consent_key)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("DELETE FROM ob_transactions WHERE consent_key = $1")
                    .bind(&consent_key)
                    .execute(&mut *conn)
                    .await?;
                result.status = OpenBankingStatus::Revoked;
                (OpenBankingResult::TOPIC, EventRecord::of(&result).map_err(perm)?)
            }
            Ok(Done::Accounts(accounts, refreshed)) => {
                if let Some(s) = refreshed {
                    save_tokens(&mut *conn, &consent_key, s).await?;
                }
                let mut e = envelope.clone();
                e.event_type = OpenBankingAccountsFetched::RECORD.into();
                let out = OpenBankingAccountsFetched {
                    envelope: e,
                    customer_id: req.customer_id.clone(),
                    consent_id: req.consent_id.clone().unwrap_or_default(),
                    partner: req.partner.clone(),
                    accounts: accounts.into_iter().map(account).collect(),
                };
                (OpenBankingAccountsFetched::TOPIC, EventRecord::of(&out).map_err(perm)?)
            }
            Ok(Done::Transactions(page, refreshed)) => {
                if let Some(s) = refreshed {
                    save_tokens(&mut *conn, &consent_key, s).await?;
                }
                // Only what products have not seen, or what changed since.
                let mut fresh = Vec::new();
                for t in page.transactions {
                    let digest = switchyard_vendors::signing::sha256_hex(
                        serde_json::to_string(&t).unwrap_or_default().as_bytes(),
                    );
                    let changed = sqlx::query(
                        "INSERT INTO ob_transactions (consent_key, transaction_id, digest) VALUES ($1, $2, $3) \
                         ON CONFLICT (consent_key, transaction_id) DO UPDATE SET digest = EXCLUDED.digest \
                         WHERE ob_transactions.digest <> EXCLUDED.digest",
                    )
                    .bind(&consent_key)
                    .bind(&t.transaction_id)
                    .bind(&digest)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                        == 1;
                    if changed {
                        fresh.push(transaction(t));
                    }
                }
                let mut removed = Vec::new();
                for id in page.removed {
                    let gone =
                        sqlx::query("DELETE FROM ob_transactions WHERE consent_key = $1 AND transaction_id = $2")
                            .bind(&consent_key)
                            .bind(&id)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected()
                            == 1;
                    if gone {
                        removed.push(id);
                    }
                }
                sqlx::query("UPDATE ob_consents SET cursor = $2, updated_at = now() WHERE consent_key = $1")
                    .bind(&consent_key)
                    .bind(&page.cursor)
                    .execute(&mut *conn)
                    .await?;
                let mut e = envelope.clone();
                e.event_type = OpenBankingTransactionsFetched::RECORD.into();
                let out = OpenBankingTransactionsFetched {
                    envelope: e,
                    customer_id: req.customer_id.clone(),
                    consent_id: req.consent_id.clone().unwrap_or_default(),
                    partner: req.partner.clone(),
                    transactions: fresh,
                    removed,
                };
                (
                    OpenBankingTransactionsFetched::TOPIC,
                    EventRecord::of(&out).map_err(perm)?,
                )
            }
            Ok(Done::Paid(p)) => {
                result.status = payment_status(p.status);
                result.provider_reference = Some(p.provider_reference);
                result.authorization_url = p.authorization_url;
                if p.status == PaymentStatus::Failed {
                    let reason = p.failure_reason.unwrap_or_else(|| "other".into());
                    result.failure = Some(failure(
                        &reason,
                        format!("{} failed the payment: {reason}", req.partner),
                    ));
                }
                (OpenBankingResult::TOPIC, EventRecord::of(&result).map_err(perm)?)
            }
        };
        tracing::info!(partner = %req.partner, operation = ?req.operation, flow = %req.envelope.flow_id,
            record = %record.record, "open-banking request answered");
        emit(conn, &self.outbox, topic, &record).await
    }
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
    let tokens: TokensConfig = ServiceConfig::section(file, "tokens", TokensConfig::default())?;
    let key =
        registry::resolve_secret(&tokens.key).map_err(|e| anyhow::anyhow!("configuration field `tokens.key`: {e}"))?;
    let sealer = Sealer::new(&key).map_err(|e| anyhow::anyhow!("configuration field `{e}`"))?;
    let partners = Partners::load(file, &rt.metrics, &rt.pool, registry::openbanking).map_err(anyhow::Error::msg)?;
    let adapter = Adapter {
        partners,
        outbox: rt.outbox.clone(),
        ledger: Ledger::new(rt.pool.clone()),
        sealer,
        pool: rt.pool.clone(),
    };
    let consumer = rt.consumer(SERVICE, &[OpenBankingRequested::TOPIC], adapter);
    let tasks = vec![
        rt.spawn_relay(),
        rt.spawn_consumer(consumer),
        rt.spawn_retention(Vec::new())?,
    ];
    rt.serve_until_shutdown(Router::new(), tasks).await
}
