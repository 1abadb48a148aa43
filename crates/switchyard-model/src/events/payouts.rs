//! `payouts.requests.v1`, `payouts.results.v1`.

use serde::{Deserialize, Serialize};

use super::{
    common::{Address, Failure, Money},
    event,
};
use crate::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountScheme {
    Iban,
    SortCodeAccount,
    AchRoutingAccount,
    Wallet,
}

/// A beneficiary's account. Personal data: never logged, never on a non-payout topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountIdentifier {
    pub scheme: AccountScheme,
    pub value: String,
    /// BIC or routing number where the scheme needs one.
    pub bank_code: Option<String>,
}

impl AccountIdentifier {
    /// The account as it may be shown: its last four characters.
    pub fn masked(&self) -> String {
        let tail: String = self
            .value
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("••••{tail}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beneficiary {
    pub name: String,
    pub account: AccountIdentifier,
    pub address: Option<Address>,
}

/// Canonical payout status; UNKNOWN: the outcome is ambiguous and must be pulled from the partner
/// before anything else happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayoutStatus {
    Pending,
    Accepted,
    Settled,
    Failed,
    Returned,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutRequested {
    pub envelope: Envelope,
    pub payout_id: String,
    pub amount: Money,
    pub beneficiary: Beneficiary,
    pub rail: String,
    pub reference: Option<String>,
    pub partner: String,
    pub attempt: i32,
}
event!(
    PayoutRequested,
    "com.switchyard.payouts.PayoutRequested",
    "payouts.requests.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutResult {
    pub envelope: Envelope,
    pub payout_id: String,
    pub partner: String,
    pub provider_reference: Option<String>,
    pub status: PayoutStatus,
    pub failure: Option<Failure>,
}
event!(
    PayoutResult,
    "com.switchyard.payouts.PayoutResult",
    "payouts.results.v1"
);
