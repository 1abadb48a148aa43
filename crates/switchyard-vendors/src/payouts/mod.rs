//! The payouts capability: move money to a beneficiary exactly once. Every payout carries a
//! deterministic key committed before the call (the effect ledger); a timeout or a dropped
//! connection after sending leaves it **in doubt**, resolved by asking the vendor by our reference,
//! never by re-sending under a new key and never by another vendor.

pub mod stripe;
pub mod wise;

use futures::future::BoxFuture;
use switchyard_model::events::{
    common::Money,
    payouts::{Beneficiary, PayoutStatus},
};

use crate::{
    adapter::{Progress, Recovery},
    error::VendorError,
};

/// What is paid out.
#[derive(Debug, Clone)]
pub struct Payout {
    pub payout_id: String,
    /// Our deterministic key for this payout's execution (`sy-<request event id>`).
    pub idempotency_key: String,
    pub amount: Money,
    pub beneficiary: Beneficiary,
    /// What the beneficiary sees.
    pub reference: Option<String>,
}

/// A payout status change a vendor announced by webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutNotice {
    /// The vendor's event id (de-duplication).
    pub event_id: String,
    pub provider_reference: String,
    pub status: PayoutStatus,
    /// When the vendor says it happened: notices arrive out of order and are ordered by this.
    pub occurred_at_ms: i64,
    /// Why it failed or came back, in canonical terms ([`RETURN_REASONS`]), if it did.
    pub reason: Option<&'static str>,
}

/// Canonical reasons a payout fails or comes back: no vendor words past the adapter.
pub const RETURN_REASONS: [&str; 7] = [
    "cancelled",
    "account_closed",
    "account_invalid",
    "declined",
    "bounced",
    "charged_back",
    "other",
];

/// A payout as the vendor has it, in canonical terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PayoutOutcome {
    pub provider_reference: Option<String>,
    pub status: PayoutStatus,
}

/// A payout as the partner lists it: reconciliation's view of the partner's truth.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListedPayout {
    /// The partner's id for it.
    pub provider_reference: String,
    /// Our id for it as the partner keeps it (the payout's flow id), if it has one.
    pub our_reference: Option<String>,
    pub amount: Money,
    pub status: PayoutStatus,
    /// When the partner created it (ms since the epoch).
    pub created_ms: i64,
    /// The partner's record as it answered (evidence; it holds no account number).
    pub raw: serde_json::Value,
}

/// What a line of a partner's settlement report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementKind {
    /// Money paid out.
    Payout,
    /// Money that came back (a return or reversal).
    Return,
    /// The partner corrects an earlier line's amount.
    Correction,
}

/// One line of a partner's settlement report, in canonical terms (amounts in minor units). The
/// beneficiary's name is never read; of the account, only its last four characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SettlementLine {
    /// 1-based, the header not counted.
    pub line: usize,
    pub kind: SettlementKind,
    pub provider_reference: String,
    pub our_reference: Option<String>,
    /// Always positive: the kind says which way the money went.
    pub amount: Money,
    pub at_ms: i64,
    /// The last four characters of the payee's account, where the format carries it (a rule
    /// matching a line with no reference of ours compares it).
    #[serde(default)]
    pub counterparty: Option<String>,
}

/// The last four characters of an account number as written (spaces dropped, upper case): what
/// reconciliation compares, never the account.
pub fn last_four(account: &str) -> Option<String> {
    let v: Vec<char> = account
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect();
    (v.len() >= 4).then(|| v[v.len() - 4..].iter().collect())
}

/// Reads a CSV line into fields (double quotes, with "" inside them).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The rows of a CSV report as maps from its header's column names.
pub fn csv_rows(text: &str) -> Result<Vec<std::collections::HashMap<String, String>>, VendorError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = csv_fields(
        lines
            .next()
            .ok_or_else(|| VendorError::Permanent("empty report".into()))?,
    );
    Ok(lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(csv_fields(l))
                .collect::<std::collections::HashMap<_, _>>()
        })
        .collect())
}

/// One page of a partner's list, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub items: Vec<ListedPayout>,
    pub next: Option<String>,
}

pub trait PayoutVendor: Send + Sync {
    fn partner(&self) -> &str;
    /// Executes the payout (several calls: what each learns is noted in `progress` before the
    /// next, so a crash resumes instead of repeating).
    fn initiate<'a>(
        &'a self,
        payout: &'a Payout,
        progress: std::sync::Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<PayoutOutcome, VendorError>>;
    /// After a crash mid-call or an ambiguous answer: the payout as the vendor has it, looked up by
    /// our reference (`SendAgain` only when the vendor says it has none, or de-duplicates a re-send).
    fn find<'a>(
        &'a self,
        payout: &'a Payout,
        progress: std::sync::Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<Recovery<PayoutOutcome>, VendorError>>;
    /// Cancels the payout (`reference`: the partner's id) if the partner still can; the payout as
    /// the partner has it afterwards (FAILED: cancelled). A payout past cancelling is answered with
    /// its current status. Asking twice is harmless: a cancelled payout stays cancelled.
    fn cancel<'a>(
        &'a self,
        _payout: &'a Payout,
        _reference: &'a str,
    ) -> BoxFuture<'a, Result<PayoutOutcome, VendorError>> {
        Box::pin(async { Err(VendorError::Permanent("this partner offers no cancellation".into())) })
    }
    /// The partner's payouts created since `since_ms`, one page at a time (`cursor`: where the
    /// previous page said the next starts).
    fn list<'a>(&'a self, _since_ms: i64, _cursor: Option<&'a str>) -> BoxFuture<'a, Result<ListPage, VendorError>> {
        Box::pin(async { Err(VendorError::Permanent("this partner offers no payout list".into())) })
    }
    /// Reads the partner's settlement report (its own CSV format) into canonical lines.
    fn parse_report(&self, _text: &str) -> Result<Vec<SettlementLine>, VendorError> {
        Err(VendorError::Permanent("this partner sends no settlement report".into()))
    }
    /// Verifies a status webhook's signature and reads it.
    fn verify_webhook(
        &self,
        _headers: &reqwest::header::HeaderMap,
        _body: &[u8],
        _now_ms: i64,
    ) -> Result<PayoutNotice, crate::kyc::WebhookRejection> {
        Err(crate::kyc::WebhookRejection::Malformed(
            "no webhooks are configured for this partner".into(),
        ))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::{SettlementKind, SettlementLine};

    /// A report's lines as contract tests compare them: kind, the partner's reference, ours, amount
    /// in minor units, currency.
    pub(crate) fn summary(lines: &[SettlementLine]) -> Vec<(SettlementKind, &str, Option<&str>, i64, &str)> {
        lines
            .iter()
            .map(|l| {
                (
                    l.kind,
                    l.provider_reference.as_str(),
                    l.our_reference.as_deref(),
                    l.amount.amount_minor,
                    l.amount.currency.as_str(),
                )
            })
            .collect()
    }
}
