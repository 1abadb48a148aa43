//! `payouts.commands.v1`, `payouts.requests.v1`, `payouts.results.v1`, `payouts.provider-events.v1`,
//! `payouts.outcomes.v1`.

use serde::{Deserialize, Serialize};

use super::{
    common::{Address, Failure, Money},
    event,
    fraud::Channel,
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

/// Send money to a beneficiary (`payouts.commands.v1`): executed at most once per tenant and
/// `payout_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitiatePayout {
    pub envelope: Envelope,
    pub payout_id: String,
    pub customer_id: String,
    pub amount: Money,
    pub beneficiary: Beneficiary,
    pub rail: Option<String>,
    pub reference: Option<String>,
    /// ISO 3166 alpha-2 country of the beneficiary's bank; from the IBAN when absent.
    pub country: Option<String>,
    /// `cost` (default) or `speed`.
    pub priority: Option<String>,
    pub channel: Option<Channel>,
    pub device_id: Option<String>,
}
event!(
    InitiatePayout,
    "com.switchyard.payouts.InitiatePayout",
    "payouts.commands.v1"
);

/// The flow id of a tenant's payout: `<length of tenant>.<tenant>.<payout id>`, injective (the
/// length says where the tenant ends) and the id partners see (a payout id alone may be another
/// tenant's too).
pub fn flow_id(tenant: &str, payout_id: &str) -> String {
    format!("{}.{tenant}.{payout_id}", tenant.len())
}

/// Whether a partner's free-text reference is a flow id as [`flow_id`] makes them.
pub fn is_flow_id(s: &str) -> bool {
    s.split_once('.')
        .and_then(|(n, rest)| Some((n.parse::<usize>().ok()?, rest)))
        .is_some_and(|(n, rest)| rest.len() > n && rest.as_bytes()[n] == b'.')
}

/// The partner's own record of a payout the flow holds in doubt (or left to an operator), found
/// by reconciliation: applied only while the payout is in doubt or in manual repair at `partner`;
/// it never starts a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvePayout {
    pub envelope: Envelope,
    pub payout_id: String,
    pub partner: String,
    pub provider_reference: String,
    pub status: PayoutStatus,
    pub amount: Money,
    pub evidence: String,
}
event!(
    ResolvePayout,
    "com.switchyard.payouts.ResolvePayout",
    "payouts.commands.v1"
);

/// Cancel a payout no partner was asked to pay yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelPayout {
    pub envelope: Envelope,
    pub payout_id: String,
    pub reason: Option<String>,
}
event!(
    CancelPayout,
    "com.switchyard.payouts.CancelPayout",
    "payouts.commands.v1"
);

/// A reviewer's decision on a payout held after fraud screening.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPayout {
    pub envelope: Envelope,
    pub payout_id: String,
    /// true: pay it; false: reject it.
    pub release: bool,
    pub reviewer: String,
    pub note: Option<String>,
}
event!(
    ReviewPayout,
    "com.switchyard.payouts.ReviewPayout",
    "payouts.commands.v1"
);

/// What became of a payout left in doubt: looked up at the partner by our reference, never re-sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutStatusRequested {
    pub envelope: Envelope,
    pub payout_id: String,
    pub partner: String,
    /// The event id of the request whose execution is in doubt (its idempotency key's origin).
    pub request_event_id: String,
    pub amount: Money,
    pub beneficiary: Beneficiary,
    pub reference: Option<String>,
}
event!(
    PayoutStatusRequested,
    "com.switchyard.payouts.PayoutStatusRequested",
    "payouts.requests.v1"
);

/// Cancel a payout at its partner while the partner still can.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutCancelRequested {
    pub envelope: Envelope,
    pub payout_id: String,
    pub partner: String,
    pub request_event_id: String,
    pub provider_reference: String,
    pub amount: Money,
    pub beneficiary: Beneficiary,
}
event!(
    PayoutCancelRequested,
    "com.switchyard.payouts.PayoutCancelRequested",
    "payouts.requests.v1"
);

/// A payout reached a terminal state. `SETTLED` may later be followed by [`PayoutReversed`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutCompleted {
    pub envelope: Envelope,
    pub payout_id: String,
    pub status: PayoutStatus,
    pub amount: Money,
    pub partner: String,
    pub provider_reference: Option<String>,
    pub failure: Option<Failure>,
    pub reasons: Vec<String>,
}
event!(
    PayoutCompleted,
    "com.switchyard.payouts.PayoutCompleted",
    "payouts.outcomes.v1"
);

/// A payout moved to another step (`screening`, `held_for_review`, `routed`, `processing`,
/// `in_doubt`, `manual_repair`...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutStepChanged {
    pub envelope: Envelope,
    pub payout_id: String,
    pub step: String,
    pub partner: Option<String>,
    pub reasons: Vec<String>,
}
event!(
    PayoutStepChanged,
    "com.switchyard.payouts.PayoutStepChanged",
    "payouts.outcomes.v1"
);

/// Compensation: a payout reported `SETTLED` came back; a ledger reverses the debit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutReversed {
    pub envelope: Envelope,
    pub payout_id: String,
    pub amount: Money,
    pub partner: String,
    pub provider_reference: Option<String>,
    pub reason: Option<String>,
}
event!(
    PayoutReversed,
    "com.switchyard.payouts.PayoutReversed",
    "payouts.outcomes.v1"
);

/// The IBAN of a country's basic bank account number, its check digits computed (ISO 13616: 98 minus
/// the mod-97 of the BBAN followed by the country's letters as numbers and "00").
pub fn iban_from(country: &str, bban: &str) -> String {
    let digits: String = bban
        .chars()
        .chain(country.chars())
        .chain("00".chars())
        .map(|c| match c {
            'A'..='Z' => (c as u32 - 'A' as u32 + 10).to_string(),
            _ => c.to_string(),
        })
        .collect();
    let rem = digits
        .bytes()
        .fold(0u32, |r, b| (r * 10 + u32::from(b.wrapping_sub(b'0'))) % 97);
    format!("{country}{:02}{bban}", 98 - rem)
}

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

/// What is wrong with an account identifier, by its scheme (the account is never quoted).
pub fn account_problem(a: &AccountIdentifier) -> Option<&'static str> {
    let digits =
        |s: &str, n: std::ops::RangeInclusive<usize>| n.contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit());
    let bank = a.bank_code.as_deref().unwrap_or("");
    match a.scheme {
        AccountScheme::Iban if !iban_valid(&a.value) => Some("the IBAN fails its check digits (ISO 13616 mod 97)"),
        AccountScheme::SortCodeAccount if !digits(&a.value, 8..=8) || !digits(&bank.replace('-', ""), 6..=6) => {
            Some("a UK account is 8 digits with a 6-digit sort code as bank_code")
        }
        AccountScheme::AchRoutingAccount if !digits(&a.value, 4..=17) || !aba_valid(bank) => {
            Some("a US account is 4 to 17 digits with a valid 9-digit ABA routing number as bank_code")
        }
        AccountScheme::Wallet if a.value.trim().is_empty() => Some("a wallet id must not be blank"),
        _ => None,
    }
}

/// An ABA routing number's checksum: 3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10).
pub fn aba_valid(routing: &str) -> bool {
    let d: Vec<u32> = routing.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 9 || routing.len() != 9 {
        return false;
    }
    (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])).is_multiple_of(10)
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
    fn flow_ids_are_made_and_told_from_free_text() {
        assert_eq!(flow_id("tenant-chaos", "cpo-1"), "12.tenant-chaos.cpo-1");
        assert!(is_flow_id("12.tenant-chaos.cpo-1"));
        assert!(is_flow_id("1.t.a"));
        assert!(!is_flow_id("demo payout"));
        assert!(!is_flow_id("3.ab"));
    }

    #[test]
    fn check_digits_are_computed() {
        assert_eq!(iban_from("DE", "370400440532013000"), "DE89370400440532013000");
        assert_eq!(iban_from("GB", "WEST12345698765432"), "GB82WEST12345698765432");
        assert!(iban_valid(&iban_from("FR", "30006000011234567890189")));
    }

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
