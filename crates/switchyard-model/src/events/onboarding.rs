//! `onboarding.commands.v1` and `onboarding.outcomes.v1`.

use serde::{Deserialize, Serialize};

use super::{
    common::{Failure, Person},
    event,
};
use crate::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskTier {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartOnboarding {
    pub envelope: Envelope,
    pub applicant_id: String,
    pub person: Person,
    pub region: String,
    pub risk_tier: RiskTier,
    pub segment: Option<String>,
}
event!(
    StartOnboarding,
    "com.switchyard.onboarding.StartOnboarding",
    "onboarding.commands.v1"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnboardingStepChanged {
    pub envelope: Envelope,
    pub applicant_id: String,
    pub step: String,
    pub partner: Option<String>,
}
event!(
    OnboardingStepChanged,
    "com.switchyard.onboarding.OnboardingStepChanged",
    "onboarding.outcomes.v1"
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnboardingDecision {
    Approved,
    Rejected,
    ManualReview,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnboardingCompleted {
    pub envelope: Envelope,
    pub applicant_id: String,
    pub decision: OnboardingDecision,
    pub kyc_partner: Option<String>,
    pub aml_partner: Option<String>,
    pub reasons: Vec<String>,
    pub failure: Option<Failure>,
}
event!(
    OnboardingCompleted,
    "com.switchyard.onboarding.OnboardingCompleted",
    "onboarding.outcomes.v1"
);
