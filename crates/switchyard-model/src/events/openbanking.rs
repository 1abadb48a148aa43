//! `openbanking.commands.v1`, `openbanking.requests.v1`, `openbanking.results.v1`,
//! `openbanking.provider-events.v1`, `openbanking.outcomes.v1`. A consent is named by our
//! `consent_id`; the provider's tokens never travel on a topic.

use serde::{Deserialize, Serialize};

use super::{
    common::{Failure, Money},
    event,
    payouts::Beneficiary,
};
use crate::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OpenBankingOperation {
    CreateConsent,
    FetchAccounts,
    FetchTransactions,
    InitiatePayment,
    PaymentStatus,
    CompleteConsent,
    RefreshConsent,
    RevokeConsent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OpenBankingStatus {
    AwaitingAuthorization,
    Authorized,
    Rejected,
    Completed,
    Failed,
    Expired,
    Pending,
    Revoked,
    Executed,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankAccount {
    pub account_id: String,
    pub name: String,
    pub kind: String,
    pub currency: String,
    pub number_last4: Option<String>,
    pub current_minor: Option<i64>,
    pub available_minor: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BankTransactionStatus {
    Booked,
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankTransaction {
    pub transaction_id: String,
    pub account_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: BankTransactionStatus,
    /// Days since 1970-01-01 (Avro `date`).
    pub booking_date: Option<i32>,
    pub value_date: Option<i32>,
    pub description: String,
    pub replaces: Option<String>,
}

/// A product's open-banking request (`openbanking.commands.v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestOpenBanking {
    pub envelope: Envelope,
    pub customer_id: String,
    pub operation: OpenBankingOperation,
    pub consent_id: Option<String>,
    pub institution_id: Option<String>,
    pub amount: Option<Money>,
    pub creditor_account: Option<String>,
    pub redirect_uri: Option<String>,
    pub authorization_code: Option<String>,
    pub payment_id: Option<String>,
    pub reference: Option<String>,
    pub beneficiary: Option<Beneficiary>,
}
event!(
    RequestOpenBanking,
    "com.switchyard.openbanking.RequestOpenBanking",
    "openbanking.commands.v1"
);

/// The orchestrator asks the open-banking adapter to do one operation at one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenBankingRequested {
    pub envelope: Envelope,
    pub customer_id: String,
    pub operation: OpenBankingOperation,
    pub consent_id: Option<String>,
    pub institution_id: Option<String>,
    pub amount: Option<Money>,
    pub creditor_account: Option<String>,
    pub redirect_uri: Option<String>,
    pub partner: String,
    pub attempt: i32,
    pub authorization_code: Option<String>,
    pub payment_id: Option<String>,
    pub reference: Option<String>,
    pub beneficiary: Option<Beneficiary>,
}
event!(
    OpenBankingRequested,
    "com.switchyard.openbanking.OpenBankingRequested",
    "openbanking.requests.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenBankingResult {
    pub envelope: Envelope,
    pub customer_id: String,
    pub partner: String,
    pub provider_reference: Option<String>,
    pub operation: OpenBankingOperation,
    pub status: OpenBankingStatus,
    pub authorization_url: Option<String>,
    pub consent_id: Option<String>,
    pub account_count: i32,
    pub failure: Option<Failure>,
    pub payment_id: Option<String>,
    pub consent_expires_at: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
}
event!(
    OpenBankingResult,
    "com.switchyard.openbanking.OpenBankingResult",
    "openbanking.results.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenBankingAccountsFetched {
    pub envelope: Envelope,
    pub customer_id: String,
    pub consent_id: String,
    pub partner: String,
    pub accounts: Vec<BankAccount>,
}
event!(
    OpenBankingAccountsFetched,
    "com.switchyard.openbanking.OpenBankingAccountsFetched",
    "openbanking.results.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenBankingTransactionsFetched {
    pub envelope: Envelope,
    pub customer_id: String,
    pub consent_id: String,
    pub partner: String,
    pub transactions: Vec<BankTransaction>,
    #[serde(default)]
    pub removed: Vec<String>,
}
event!(
    OpenBankingTransactionsFetched,
    "com.switchyard.openbanking.OpenBankingTransactionsFetched",
    "openbanking.results.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenBankingProviderEvent {
    pub envelope: Envelope,
    pub partner: String,
    pub provider_reference: String,
    pub provider_event_id: String,
    pub status: OpenBankingStatus,
    pub received_at: i64,
    pub notice: String,
    pub failure_reason: Option<String>,
    pub expires_at: Option<i64>,
}
event!(
    OpenBankingProviderEvent,
    "com.switchyard.openbanking.OpenBankingProviderEvent",
    "openbanking.provider-events.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenBankingCompleted {
    pub envelope: Envelope,
    pub customer_id: String,
    pub operation: OpenBankingOperation,
    pub status: OpenBankingStatus,
    pub consent_id: Option<String>,
    pub partner: String,
    pub authorization_url: Option<String>,
    pub payment_id: Option<String>,
    pub provider_reference: Option<String>,
    pub consent_expires_at: Option<i64>,
    pub failure: Option<Failure>,
    #[serde(default)]
    pub scopes: Vec<String>,
}
event!(
    OpenBankingCompleted,
    "com.switchyard.openbanking.OpenBankingCompleted",
    "openbanking.outcomes.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenBankingAccounts {
    pub envelope: Envelope,
    pub customer_id: String,
    pub consent_id: String,
    pub partner: String,
    pub accounts: Vec<BankAccount>,
}
event!(
    OpenBankingAccounts,
    "com.switchyard.openbanking.OpenBankingAccounts",
    "openbanking.outcomes.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenBankingTransactions {
    pub envelope: Envelope,
    pub customer_id: String,
    pub consent_id: String,
    pub partner: String,
    pub transactions: Vec<BankTransaction>,
    #[serde(default)]
    pub removed: Vec<String>,
}
event!(
    OpenBankingTransactions,
    "com.switchyard.openbanking.OpenBankingTransactions",
    "openbanking.outcomes.v1"
);

/// The flow id of a tenant's consent: `obc.<length of tenant>.<tenant>.<consent id>` (injective).
pub fn consent_flow_id(tenant: &str, consent_id: &str) -> String {
    format!("obc.{}.{tenant}.{consent_id}", tenant.len())
}

/// The flow id of a tenant's payment: `obp.<length of tenant>.<tenant>.<payment id>` (injective).
pub fn payment_flow_id(tenant: &str, payment_id: &str) -> String {
    format!("obp.{}.{tenant}.{payment_id}", tenant.len())
}
