//! `fraud.commands.v1`, `fraud.requests.v1`, `fraud.results.v1`, `fraud.outcomes.v1`.

use serde::{Deserialize, Serialize};

use super::{
    common::{Failure, Money},
    event,
};
use crate::Envelope;

/// The decision hint of a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FraudDecision {
    Allow,
    /// Hold for a person to look at.
    Review,
    /// Block.
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    Web,
    Mobile,
    Api,
    Branch,
}

/// The risk band of a score (0–1000): low below 300, medium below 700, high from 700.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScoreBand {
    Low,
    Medium,
    High,
}

impl ScoreBand {
    pub fn of(score: i32) -> Self {
        match score {
            ..300 => ScoreBand::Low,
            300..700 => ScoreBand::Medium,
            _ => ScoreBand::High,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FraudScoreRequested {
    pub envelope: Envelope,
    pub customer_id: String,
    pub transaction_id: String,
    pub amount: Money,
    pub counterparty_id: String,
    pub channel: Channel,
    pub device_id: Option<String>,
    pub partner: String,
    pub attempt: i32,
    pub shadow: bool,
}
event!(
    FraudScoreRequested,
    "com.switchyard.fraud.FraudScoreRequested",
    "fraud.requests.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FraudScoreResult {
    pub envelope: Envelope,
    pub transaction_id: String,
    pub partner: String,
    pub provider_reference: Option<String>,
    /// 0 (safe) to 1000 (certain fraud).
    pub score: i32,
    pub band: Option<ScoreBand>,
    pub decision: FraudDecision,
    /// Canonical reason codes.
    pub reasons: Vec<String>,
    pub failure: Option<Failure>,
    pub shadow: bool,
}
event!(
    FraudScoreResult,
    "com.switchyard.fraud.FraudScoreResult",
    "fraud.results.v1"
);

/// Score a transaction on its own (`fraud.commands.v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreTransaction {
    pub envelope: Envelope,
    pub customer_id: String,
    pub transaction_id: String,
    pub amount: Money,
    pub counterparty_id: String,
    pub channel: Channel,
    pub device_id: Option<String>,
}
event!(
    ScoreTransaction,
    "com.switchyard.fraud.ScoreTransaction",
    "fraud.commands.v1"
);

/// A standalone score's final decision (`fraud.outcomes.v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FraudCheckCompleted {
    pub envelope: Envelope,
    pub transaction_id: String,
    pub decision: FraudDecision,
    pub score: i32,
    pub partner: String,
    pub band: Option<ScoreBand>,
    pub reasons: Vec<String>,
    /// Set when no partner could score it: the decision is then the route's fail mode.
    pub failure: Option<Failure>,
}
event!(
    FraudCheckCompleted,
    "com.switchyard.fraud.FraudCheckCompleted",
    "fraud.outcomes.v1"
);
