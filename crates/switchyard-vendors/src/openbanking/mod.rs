//! The open-banking capability: a customer's consent at their bank (an authorization link, the
//! callback exchanged for a connection, refresh or re-consent before it expires, revocation),
//! account information under it (accounts, balances, transactions, normalized), and payment
//! initiation (a single immediate payment the customer authorizes at their bank), with the same
//! never-pay-twice rules as payouts: a key committed before the call, a payment in doubt looked up,
//! never re-sent blind.
//!
//! Connections hold the provider's access and refresh tokens: credentials. They never leave the
//! adapter (its store keeps them encrypted) and never appear in events or logs.

pub mod plaid;
pub mod seal;
pub mod truelayer;

use futures::future::BoxFuture;
use switchyard_model::events::{common::Money, payouts::AccountIdentifier};

use crate::{
    adapter::{Progress, Recovery},
    error::VendorError,
    kyc::WebhookRejection,
};

/// What a consent asks the bank for.
#[derive(Debug, Clone)]
pub struct ConsentRequest {
    /// Our id for the consent (it comes back with the callback).
    pub consent_id: String,
    /// A stable, opaque name for the customer at the provider (no personal data in it).
    pub customer_key: String,
    /// The provider's id for the bank, when the product chose one.
    pub institution_id: Option<String>,
    /// Where the bank sends the customer back.
    pub redirect_uri: String,
}

/// Where to send the customer to give their consent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsentLink {
    pub authorization_url: String,
    /// The provider's id for the link (its link token, or our state).
    pub provider_reference: String,
    pub expires_at_ms: Option<i64>,
}

/// A connection to a customer's bank, under their consent. Credentials: never logged.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// When the access token expires (refresh before).
    pub access_expires_at_ms: Option<i64>,
    /// When the customer's consent itself expires (re-consent before).
    pub consent_expires_at_ms: Option<i64>,
    /// The provider's id for the connection (item, credentials), if it has one.
    pub provider_reference: Option<String>,
    /// What the customer consented to, in the provider's words.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("access_token", &"<redacted>")
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .field("consent_expires_at_ms", &self.consent_expires_at_ms)
            .field("provider_reference", &self.provider_reference)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// What refreshing a connection gave.
#[derive(Debug, Clone)]
pub enum Refreshed {
    /// New tokens.
    Connection(Connection),
    /// The customer must consent again (the provider offers no refresh): send them here.
    Reconsent(ConsentLink),
}

/// A bank account as the provider shows it, normalized. The account number is never kept whole:
/// its last four characters only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BankAccount {
    pub account_id: String,
    pub name: String,
    /// `current`, `savings`, `credit_card`, `loan`, `other`.
    pub kind: String,
    pub currency: String,
    pub number_last4: Option<String>,
    /// Booked balance, minor units (negative: overdrawn).
    pub current_minor: Option<i64>,
    /// What can be spent now, minor units.
    pub available_minor: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    Booked,
    Pending,
}

/// A transaction, normalized: signed minor units (negative: money out), booking and value dates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BankTransaction {
    pub transaction_id: String,
    pub account_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: TransactionStatus,
    /// When the bank booked it (absent while pending).
    pub booking_date: Option<chrono::NaiveDate>,
    /// When the money moved (the authorization or value date, where the provider gives one).
    pub value_date: Option<chrono::NaiveDate>,
    pub description: String,
    /// A pending transaction this booked one replaces (its id), where the provider says.
    pub replaces: Option<String>,
}

/// One page of transactions: what was added or changed, what was removed, and where to go on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionPage {
    pub transactions: Vec<BankTransaction>,
    /// Ids the provider withdrew (a pending transaction that disappeared).
    pub removed: Vec<String>,
    /// The provider's cursor to fetch from next time (or the next page's).
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// A single immediate payment from the customer's account.
#[derive(Debug, Clone)]
pub struct PaymentOrder {
    pub payment_id: String,
    /// Our deterministic key for the payment (`sy-<request event id>`).
    pub idempotency_key: String,
    pub customer_key: String,
    pub amount: Money,
    pub beneficiary_name: String,
    pub beneficiary: AccountIdentifier,
    /// What the beneficiary sees.
    pub reference: String,
    /// Where the bank sends the customer back after authorizing.
    pub redirect_uri: String,
}

/// Canonical payment status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// The customer must authorize it at their bank.
    AwaitingAuthorization,
    /// Authorized or being processed; not yet executed.
    Pending,
    /// The bank has executed it (terminal for external accounts).
    Executed,
    /// Money arrived in our account (terminal for merchant accounts).
    Settled,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PaymentOutcome {
    pub provider_reference: String,
    pub status: PaymentStatus,
    /// Where the customer authorizes it (while awaiting authorization).
    pub authorization_url: Option<String>,
    /// Why it failed, canonical: `rejected`, `insufficient_funds`, `cancelled`, `expired`,
    /// `provider_error`, `other`.
    pub failure_reason: Option<String>,
}

/// A provider's webhook, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Payment {
        event_id: String,
        provider_reference: String,
        status: PaymentStatus,
        failure_reason: Option<String>,
        occurred_at_ms: i64,
    },
    /// New transactions can be fetched for this connection.
    TransactionsAvailable { event_id: String, connection: String },
    /// The consent behind this connection expires soon (or has): re-consent.
    ConsentExpiring {
        event_id: String,
        connection: String,
        expires_at_ms: Option<i64>,
    },
}

pub trait OpenBankingVendor: Send + Sync {
    fn partner(&self) -> &str;
    /// Where to send the customer to consent.
    fn consent_link<'a>(&'a self, req: &'a ConsentRequest) -> BoxFuture<'a, Result<ConsentLink, VendorError>>;
    /// The bank's callback (`code`: an authorization code or public token) made a connection.
    fn complete<'a>(&'a self, req: &'a ConsentRequest, code: &'a str)
    -> BoxFuture<'a, Result<Connection, VendorError>>;
    /// New tokens before the access token expires, or a re-consent link.
    fn refresh<'a>(
        &'a self,
        req: &'a ConsentRequest,
        c: &'a Connection,
    ) -> BoxFuture<'a, Result<Refreshed, VendorError>>;
    /// Ends the connection at the provider (asking twice is harmless).
    fn revoke<'a>(&'a self, c: &'a Connection) -> BoxFuture<'a, Result<(), VendorError>>;
    /// The accounts under the consent, with their balances.
    fn accounts<'a>(&'a self, c: &'a Connection) -> BoxFuture<'a, Result<Vec<BankAccount>, VendorError>>;
    /// Transactions of every account under the consent since `cursor` (a provider cursor, or the
    /// date to fetch from as `YYYY-MM-DD`), one page; the same transaction may come again (a
    /// changed one, an overlap of dates): the store keeps one per id.
    fn transactions<'a>(
        &'a self,
        c: &'a Connection,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TransactionPage, VendorError>>;
    /// Creates the payment (several calls: what each learns is noted in `progress`).
    fn pay<'a>(
        &'a self,
        order: &'a PaymentOrder,
        progress: std::sync::Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<PaymentOutcome, VendorError>>;
    /// After a crash mid-call or an ambiguous answer: the payment made under our key, if any.
    fn find<'a>(
        &'a self,
        order: &'a PaymentOrder,
        progress: std::sync::Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<Recovery<PaymentOutcome>, VendorError>>;
    /// The payment as the provider has it now.
    fn payment<'a>(&'a self, provider_reference: &'a str) -> BoxFuture<'a, Result<PaymentOutcome, VendorError>>;
    /// Verifies a webhook (fetching the provider's published keys when it must) and reads it.
    fn verify_webhook<'a>(
        &'a self,
        headers: &'a reqwest::header::HeaderMap,
        path: &'a str,
        body: &'a [u8],
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Notice, WebhookRejection>>;
}

/// A decimal amount (a JSON number in the major unit) in minor units, exactly; `negate` turns a
/// provider's "positive is money out" into ours.
pub(crate) fn minor(n: &serde_json::Number, currency: &str) -> Result<i64, String> {
    let text = n.to_string();
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text.as_str()),
    };
    let m = switchyard_model::money::parse_decimal(digits, currency)?;
    Ok(if neg { -m } else { m })
}

/// The last four characters of an account number, if it has four.
pub(crate) fn last4(v: Option<&str>) -> Option<String> {
    let v: Vec<char> = v?.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    (v.len() >= 4).then(|| v[v.len() - 4..].iter().collect())
}

#[cfg(test)]
mod tests;
