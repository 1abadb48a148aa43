//! `aml.requests.v1`, `aml.results.v1`.

use serde::{Deserialize, Serialize};

use super::{
    common::{Failure, Person},
    event,
};
use crate::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScreeningStatus {
    Clear,
    PossibleMatch,
    ConfirmedMatch,
    Pending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HitCategory {
    Sanction,
    Pep,
    AdverseMedia,
    Watchlist,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreeningHit {
    pub list_name: String,
    pub matched_name: String,
    pub category: HitCategory,
    pub score: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmlScreeningRequested {
    pub envelope: Envelope,
    pub subject_id: String,
    pub person: Person,
    pub partner: String,
    pub attempt: i32,
    pub shadow: bool,
}
event!(
    AmlScreeningRequested,
    "com.switchyard.aml.AmlScreeningRequested",
    "aml.requests.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmlScreeningResult {
    pub envelope: Envelope,
    pub subject_id: String,
    pub partner: String,
    pub provider_reference: Option<String>,
    pub status: ScreeningStatus,
    pub hits: Vec<ScreeningHit>,
    pub failure: Option<Failure>,
    pub shadow: bool,
}
event!(
    AmlScreeningResult,
    "com.switchyard.aml.AmlScreeningResult",
    "aml.results.v1"
);
