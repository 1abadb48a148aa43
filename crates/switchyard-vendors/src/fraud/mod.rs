//! The fraud capability: score a money movement before it happens. A score has no money effect,
//! but each call is an event in the vendor's history (velocity features count it): calls go through
//! the effect ledger, so a redelivered request replays the recorded score instead of scoring twice.

pub mod seon;
pub mod sift;

use futures::future::BoxFuture;
use switchyard_model::events::{
    common::Money,
    fraud::{Channel, FraudDecision, ScoreBand},
};

use crate::{adapter::Recovery, error::VendorError};

/// What is scored.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub transaction_id: String,
    pub customer_id: String,
    pub amount: Money,
    pub counterparty_id: String,
    pub channel: Channel,
    pub device_id: Option<String>,
}

/// A score in canonical terms: no vendor words past the adapter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FraudOutcome {
    pub provider_reference: Option<String>,
    /// 0 (safe) to 1000 (certain fraud).
    pub score: i32,
    pub decision: FraudDecision,
    /// Canonical reason codes ([`REASONS`]), without repeats, in the vendor's order.
    pub reasons: Vec<String>,
}

impl FraudOutcome {
    pub fn band(&self) -> ScoreBand {
        ScoreBand::of(self.score)
    }
}

/// The canonical reason codes.
pub const REASONS: [&str; 9] = [
    "velocity",
    "device",
    "identity",
    "payment_method",
    "behaviour",
    "network",
    "list_match",
    "amount",
    "other",
];

/// Maps a vendor's reason text to a canonical code by the first table entry whose words all appear
/// in it (case-insensitive); `other` when none does.
pub(crate) fn reason_code(text: &str, table: &[(&[&str], &'static str)]) -> &'static str {
    let t = text.to_lowercase();
    table
        .iter()
        .find(|(words, _)| words.iter().all(|w| t.contains(w)))
        .map(|(_, code)| *code)
        .unwrap_or("other")
}

/// Canonical codes of `texts`, first occurrence kept.
pub(crate) fn reason_codes<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    table: &[(&[&str], &'static str)],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in texts {
        let code = reason_code(t, table);
        if !out.iter().any(|c| c == code) {
            out.push(code.to_string());
        }
    }
    out
}

pub trait FraudVendor: Send + Sync {
    fn partner(&self) -> &str;
    /// Scores the transaction.
    fn score<'a>(&'a self, tx: &'a Transaction) -> BoxFuture<'a, Result<FraudOutcome, VendorError>>;
    /// After a crash mid-call or an ambiguous answer: neither vendor offers a look-up of one scoring
    /// by our reference, and a score moves no money, so scoring again is the answer (the vendor's
    /// history may count the transaction twice; documented).
    fn recover<'a>(&'a self, _tx: &'a Transaction) -> BoxFuture<'a, Result<Recovery<FraudOutcome>, VendorError>> {
        Box::pin(async { Ok(Recovery::SendAgain) })
    }
}
