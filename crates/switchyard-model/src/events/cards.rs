//! `cards.commands.v1`, `cards.requests.v1`, `cards.results.v1`, `cards.provider-events.v1`,
//! `cards.outcomes.v1`. Cards are named by our `card_id` and the processor's token; a card number
//! never appears here (only its last four digits).

use serde::{Deserialize, Serialize};

use super::{
    common::{Failure, Money, Person},
    event,
};
use crate::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardOperation {
    CreateCardholder,
    Issue,
    Activate,
    Freeze,
    Unfreeze,
    Terminate,
    /// Internal between the orchestrator and the cards adapter: read the card's state at its
    /// processor (after the processor reported a change of its own), for the flow and the
    /// adapter's decision store alike. Not a product command.
    Refresh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardState {
    Requested,
    Inactive,
    Active,
    Frozen,
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardFormFactor {
    Virtual,
    Physical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardTransactionKind {
    Authorization,
    Clearing,
    Reversal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardEventKind {
    Authorization,
    Clearing,
    Reversal,
    StatusChange,
}

/// Spend controls the mesh enforces in its own authorization decisions (minor units).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendControls {
    pub per_transaction_minor: Option<i64>,
    pub daily_minor: Option<i64>,
    pub monthly_minor: Option<i64>,
    #[serde(default)]
    pub allowed_mccs: Vec<String>,
    #[serde(default)]
    pub blocked_mccs: Vec<String>,
    #[serde(default)]
    pub allowed_countries: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardMerchant {
    pub name: String,
    pub mcc: String,
    pub country: Option<String>,
    pub city: Option<String>,
}

/// A product's request about a card (`cards.commands.v1`): issue one, or change its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestCardOperation {
    pub envelope: Envelope,
    pub cardholder_id: String,
    pub operation: CardOperation,
    pub card_token: Option<String>,
    pub cardholder: Option<Person>,
    pub spend_limit: Option<Money>,
    pub card_id: Option<String>,
    pub product: Option<String>,
    pub form_factor: Option<CardFormFactor>,
    pub controls: Option<SpendControls>,
    pub funding: Option<Money>,
    pub reason: Option<String>,
}
event!(
    RequestCardOperation,
    "com.switchyard.cards.RequestCardOperation",
    "cards.commands.v1"
);

/// The orchestrator asks the cards adapter to carry out an operation at one processor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardOperationRequested {
    pub envelope: Envelope,
    pub cardholder_id: String,
    pub operation: CardOperation,
    pub card_token: Option<String>,
    pub cardholder: Option<Person>,
    pub spend_limit: Option<Money>,
    pub partner: String,
    pub attempt: i32,
    pub card_id: Option<String>,
    pub product: Option<String>,
    pub form_factor: Option<CardFormFactor>,
    pub controls: Option<SpendControls>,
    pub funding: Option<Money>,
    pub reason: Option<String>,
}
event!(
    CardOperationRequested,
    "com.switchyard.cards.CardOperationRequested",
    "cards.requests.v1"
);

/// The orchestrator tells the cards adapter a processor cleared or reversed an authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyCardTransaction {
    pub envelope: Envelope,
    pub partner: String,
    pub card_token: String,
    pub kind: CardTransactionKind,
    pub provider_transaction_id: String,
    pub amount: Money,
    pub approved: bool,
    pub decline_reason: Option<String>,
    pub merchant: Option<CardMerchant>,
}
event!(
    ApplyCardTransaction,
    "com.switchyard.cards.ApplyCardTransaction",
    "cards.requests.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardOperationResult {
    pub envelope: Envelope,
    pub cardholder_id: String,
    pub partner: String,
    pub provider_reference: Option<String>,
    pub operation: CardOperation,
    pub card_token: Option<String>,
    pub last4: Option<String>,
    pub state: CardState,
    pub failure: Option<Failure>,
    pub card_id: Option<String>,
    pub form_factor: Option<CardFormFactor>,
}
event!(
    CardOperationResult,
    "com.switchyard.cards.CardOperationResult",
    "cards.results.v1"
);

/// The cards adapter answered a processor's real-time authorization request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardAuthorizationDecided {
    pub envelope: Envelope,
    pub partner: String,
    pub card_token: String,
    pub provider_transaction_id: String,
    pub amount: Money,
    pub merchant: CardMerchant,
    pub approved: bool,
    pub decline_reason: Option<String>,
    pub fallback: bool,
    pub latency_ms: i64,
}
event!(
    CardAuthorizationDecided,
    "com.switchyard.cards.CardAuthorizationDecided",
    "cards.results.v1"
);

/// A processor's webhook, normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardProcessorEvent {
    pub envelope: Envelope,
    pub partner: String,
    pub provider_event_id: String,
    pub card_token: String,
    pub kind: CardEventKind,
    pub amount: Option<Money>,
    pub state: Option<CardState>,
    pub received_at: i64,
    pub provider_transaction_id: Option<String>,
    pub merchant: Option<CardMerchant>,
    pub decline_reason: Option<String>,
}
event!(
    CardProcessorEvent,
    "com.switchyard.cards.CardProcessorEvent",
    "cards.provider-events.v1"
);

/// A card's state changed (or an operation on it failed: `failure`, with the state it kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardStateChanged {
    pub envelope: Envelope,
    pub cardholder_id: String,
    pub card_token: String,
    pub state: CardState,
    pub partner: String,
    pub card_id: Option<String>,
    pub operation: Option<CardOperation>,
    pub last4: Option<String>,
    pub form_factor: Option<CardFormFactor>,
    pub failure: Option<Failure>,
}
event!(
    CardStateChanged,
    "com.switchyard.cards.CardStateChanged",
    "cards.outcomes.v1"
);

/// A card transaction, normalized for products.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardTransaction {
    pub envelope: Envelope,
    pub card_id: Option<String>,
    pub card_token: String,
    pub partner: String,
    pub kind: CardTransactionKind,
    pub provider_transaction_id: String,
    pub amount: Money,
    pub merchant: Option<CardMerchant>,
    pub approved: Option<bool>,
    pub decline_reason: Option<String>,
    pub latency_ms: Option<i64>,
    pub fallback: bool,
}
event!(
    CardTransaction,
    "com.switchyard.cards.CardTransaction",
    "cards.outcomes.v1"
);

/// The flow id of a tenant's card: `card.<length of tenant>.<tenant>.<card id>` (injective; every
/// operation and transaction of one card is keyed by it, so they stay in order).
pub fn flow_id(tenant: &str, card_id: &str) -> String {
    format!("card.{}.{tenant}.{card_id}", tenant.len())
}
