//! The cards capability: issue a card at a processor and change its state, answer the processor's
//! real-time authorization requests, and read its webhooks. Cards are named by the processor's
//! token; a card number is never asked for (no `show_pan`, no PCI endpoints), so none can reach us.
//!
//! Issuing has an effect and goes through the effect ledger under a deterministic key; a state
//! change names its target state, so asking twice leaves the card where it was asked to be.

pub mod lithic;
pub mod marqeta;

use futures::future::BoxFuture;
use switchyard_model::events::{
    cards::{CardEventKind, CardFormFactor, CardMerchant, CardOperation, CardState},
    common::{Money, Person},
};

use crate::{
    adapter::{Progress, Recovery},
    error::VendorError,
    kyc::WebhookRejection,
};

/// A card to issue.
#[derive(Debug, Clone)]
pub struct CardOrder {
    /// Our id for the card.
    pub card_id: String,
    /// Our deterministic key for this issue (`sy-<request event id>`).
    pub idempotency_key: String,
    /// A stable, opaque name for the cardholder at the processor (per tenant and cardholder; no
    /// personal data in it).
    pub holder_key: String,
    pub cardholder: Option<Person>,
    /// The processor's card product (from configuration when the request names none).
    pub product: String,
    pub form_factor: CardFormFactor,
}

/// A card as the processor has it, in canonical terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CardOutcome {
    pub card_token: String,
    /// The last four digits: the only part of the number we keep.
    pub last4: Option<String>,
    pub state: CardState,
}

/// A state change asked of the processor.
#[derive(Debug, Clone)]
pub struct CardChange {
    pub card_token: String,
    /// Our deterministic key for the change.
    pub idempotency_key: String,
    pub operation: CardOperation,
}

/// The state a lifecycle operation puts a card in.
pub fn target_state(op: CardOperation) -> Option<CardState> {
    match op {
        CardOperation::Activate | CardOperation::Unfreeze => Some(CardState::Active),
        CardOperation::Freeze => Some(CardState::Frozen),
        CardOperation::Terminate => Some(CardState::Terminated),
        CardOperation::Issue | CardOperation::CreateCardholder | CardOperation::Refresh => None,
    }
}

/// A processor's real-time authorization request, read.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthRequest {
    /// The processor's id for the transaction (its retries carry the same).
    pub transaction_id: String,
    pub card_token: String,
    /// In the card's currency, minor units.
    pub amount: Money,
    pub merchant: CardMerchant,
    /// What the processor wants echoed in the answer (its own object), if anything.
    pub echo: serde_json::Value,
}

/// Why an authorization request was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRejection {
    /// The caller is not the processor (credentials or signature wrong).
    #[error("not signed by the processor: {0}")]
    Unauthenticated(String),
    #[error("malformed authorization request: {0}")]
    Malformed(String),
    /// A message the processor sends for information only (a balance inquiry we do not serve, a
    /// reversal notice): acknowledged, nothing decided.
    #[error("not an authorization: {0}")]
    NotAnAuthorization(String),
}

/// A card event a processor announced by webhook (one delivery may carry several).
#[derive(Debug, Clone, PartialEq)]
pub struct CardNotice {
    pub event_id: String,
    pub card_token: String,
    pub kind: CardEventKind,
    /// For transactions: the id of the authorization it belongs to.
    pub transaction_id: Option<String>,
    pub amount: Option<Money>,
    pub state: Option<CardState>,
    pub merchant: Option<CardMerchant>,
    /// A declined authorization's reason, canonical.
    pub decline_reason: Option<String>,
    pub occurred_at_ms: i64,
}

pub trait CardVendor: Send + Sync {
    fn partner(&self) -> &str;
    /// Issues the card (its cardholder first where the processor needs one; what each call learns
    /// is noted in `progress`, so a crash resumes).
    fn issue<'a>(
        &'a self,
        order: &'a CardOrder,
        progress: std::sync::Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<CardOutcome, VendorError>>;
    /// After a crash mid-call or an ambiguous answer: the card issued under our key, if any.
    fn find<'a>(
        &'a self,
        order: &'a CardOrder,
        progress: std::sync::Arc<dyn Progress>,
    ) -> BoxFuture<'a, Result<Recovery<CardOutcome>, VendorError>>;
    /// Puts the card in the operation's target state.
    fn change<'a>(&'a self, change: &'a CardChange) -> BoxFuture<'a, Result<CardOutcome, VendorError>>;
    /// The card as the processor has it now.
    fn card<'a>(&'a self, card_token: &'a str) -> BoxFuture<'a, Result<CardOutcome, VendorError>>;
    /// Authenticates and reads a real-time authorization request.
    fn read_authorization(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<AuthRequest, AuthRejection>;
    /// The processor's answer for a decision (HTTP status and body): approved, or declined for a
    /// canonical reason (`DeclineReason` names) mapped to the processor's own code.
    fn answer_authorization(&self, req: &AuthRequest, decline: Option<&str>) -> (u16, serde_json::Value);
    /// Verifies a webhook delivery and reads its events.
    fn verify_webhook(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Vec<CardNotice>, WebhookRejection>;
}

/// ISO 3166 alpha-2 for the alpha-3 codes card networks send (two letters pass through).
pub fn alpha2(code: &str) -> Option<String> {
    const TABLE: [(&str, &str); 32] = [
        ("USA", "US"),
        ("CAN", "CA"),
        ("MEX", "MX"),
        ("BRA", "BR"),
        ("GBR", "GB"),
        ("IRL", "IE"),
        ("FRA", "FR"),
        ("DEU", "DE"),
        ("ESP", "ES"),
        ("ITA", "IT"),
        ("NLD", "NL"),
        ("BEL", "BE"),
        ("LUX", "LU"),
        ("PRT", "PT"),
        ("AUT", "AT"),
        ("CHE", "CH"),
        ("SWE", "SE"),
        ("NOR", "NO"),
        ("DNK", "DK"),
        ("FIN", "FI"),
        ("POL", "PL"),
        ("CZE", "CZ"),
        ("GRC", "GR"),
        ("TUR", "TR"),
        ("ARE", "AE"),
        ("IND", "IN"),
        ("SGP", "SG"),
        ("JPN", "JP"),
        ("AUS", "AU"),
        ("NZL", "NZ"),
        ("ZAF", "ZA"),
        ("PRK", "KP"),
    ];
    let c = code.trim().to_ascii_uppercase();
    match c.len() {
        2 if c.chars().all(|x| x.is_ascii_alphabetic()) => Some(c),
        3 => TABLE.iter().find(|(a3, _)| *a3 == c).map(|(_, a2)| a2.to_string()),
        _ => None,
    }
}

/// The last four characters of a processor's `last_four`, checked to be four digits.
pub(crate) fn last4(v: Option<&str>) -> Option<String> {
    v.filter(|s| s.len() == 4 && s.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string)
}

/// A decimal amount (a JSON number in the major unit) in minor units, exactly.
pub(crate) fn minor_of(n: &serde_json::Number, currency: &str) -> Result<i64, String> {
    switchyard_model::money::parse_decimal(&n.to_string(), currency)
}

#[cfg(test)]
mod tests;
