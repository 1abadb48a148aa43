//! `kyc.requests.v1`, `kyc.results.v1`, `kyc.provider-events.v1`.

use serde::{Deserialize, Serialize};

use super::{
    common::{Failure, Person},
    event,
};
use crate::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KycStatus {
    Approved,
    Rejected,
    NeedsDocuments,
    Pending,
    Review,
}

impl KycStatus {
    /// Final answers end the KYC step; PENDING waits for the partner.
    pub fn is_final(self) -> bool {
        !matches!(self, KycStatus::Pending)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KycVerificationRequested {
    pub envelope: Envelope,
    pub subject_id: String,
    pub person: Person,
    pub partner: String,
    pub attempt: i32,
    pub shadow: bool,
}
event!(
    KycVerificationRequested,
    "com.switchyard.kyc.KycVerificationRequested",
    "kyc.requests.v1"
);

/// Asks for the current status of a live case (no effect at the vendor); answered with a
/// [`KycVerificationResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KycStatusRequested {
    pub envelope: Envelope,
    pub subject_id: String,
    pub partner: String,
    pub provider_reference: String,
}
event!(
    KycStatusRequested,
    "com.switchyard.kyc.KycStatusRequested",
    "kyc.requests.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KycVerificationResult {
    pub envelope: Envelope,
    pub subject_id: String,
    pub partner: String,
    pub provider_reference: Option<String>,
    pub status: KycStatus,
    pub reasons: Vec<String>,
    pub failure: Option<Failure>,
    pub shadow: bool,
}
event!(
    KycVerificationResult,
    "com.switchyard.kyc.KycVerificationResult",
    "kyc.results.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KycProviderEvent {
    pub envelope: Envelope,
    pub partner: String,
    pub provider_reference: String,
    pub provider_event_id: String,
    pub status: KycStatus,
    pub reasons: Vec<String>,
    pub received_at: i64,
}
event!(
    KycProviderEvent,
    "com.switchyard.kyc.KycProviderEvent",
    "kyc.provider-events.v1"
);
