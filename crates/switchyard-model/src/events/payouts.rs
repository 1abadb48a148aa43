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

/// Whether an IBAN passes ISO 13616's check: 15 to 34 characters (spaces ignored), a country code, two
/// check digits, and the mod-97 of the rearranged number equal to 1.
pub fn iban_valid(iban: &str) -> bool {
    let s: String = iban.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len())
        || !s.chars().all(|c| c.is_ascii_alphanumeric())
        || !s[..2].chars().all(|c| c.is_ascii_uppercase())
        || !s[2..4].chars().all(|c| c.is_ascii_digit())
    {
        return false;
    }
    let rearranged = s[4..].chars().chain(s[..4].chars());
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A payout's status as its vendor announced it (a webhook), on `payouts.provider-events.v1`. The
/// envelope's `occurred_at` is the vendor's own time of the change: notices arrive out of order and
/// twice, and are ordered by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutProviderEvent {
    pub envelope: Envelope,
    pub partner: String,
    pub provider_reference: String,
    pub provider_event_id: String,
    pub status: PayoutStatus,
    pub return_reason: Option<String>,
    /// When we received it (ms since the epoch).
    pub received_at: i64,
}
event!(
    PayoutProviderEvent,
    "com.switchyard.payouts.PayoutProviderEvent",
    "payouts.provider-events.v1"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iban_check_digits() {
        assert!(iban_valid("DE89370400440532013000"));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_valid("DE89370400440532013001"), "one digit off");
        assert!(!iban_valid("GB82WEST"), "too short");
        assert!(!iban_valid("gb82WEST12345698765432"), "lower-case country");
    }

    #[test]
    fn accounts_are_shown_by_their_last_four() {
        let a = AccountIdentifier {
            scheme: AccountScheme::Iban,
            value: "DE89370400440532013000".into(),
            bank_code: None,
        };
        assert_eq!(a.masked(), "••••3000");
    }
}
