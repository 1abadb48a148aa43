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

impl OnboardingDecision {
    /// The decision's name in the API, the database and metrics (`approved`, `manual_review`...).
    pub fn as_str(self) -> &'static str {
        match self {
            OnboardingDecision::Approved => "approved",
            OnboardingDecision::Rejected => "rejected",
            OnboardingDecision::ManualReview => "manual_review",
            OnboardingDecision::Failed => "failed",
        }
    }

    /// The decision named `name` ([`OnboardingDecision::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        [
            OnboardingDecision::Approved,
            OnboardingDecision::Rejected,
            OnboardingDecision::ManualReview,
            OnboardingDecision::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == name)
    }
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

#[cfg(test)]
mod tests {
    use super::OnboardingDecision as D;

    #[test]
    fn decision_names_go_both_ways() {
        for d in [D::Approved, D::Rejected, D::ManualReview, D::Failed] {
            assert_eq!(D::parse(d.as_str()), Some(d));
        }
        assert_eq!(D::ManualReview.as_str(), "manual_review");
        assert_eq!(D::parse("pending"), None);
    }
}
