//! Mesh's types and their exhaustive mapping into the canonical model.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use switchyard_model::events::{
    aml::{HitCategory, ScreeningHit, ScreeningStatus},
    common::Person,
};

#[derive(Debug, Serialize)]
pub(super) struct TokenRequest<'a> {
    pub realm: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct CreateAndScreen {
    pub customer: Customer,
    pub configuration: Configuration,
    pub monitoring: Monitoring,
}

#[derive(Debug, Serialize)]
pub(super) struct Customer {
    pub external_identifier: String,
    pub person: MeshPerson,
}

#[derive(Debug, Serialize)]
pub(super) struct MeshPerson {
    pub first_name: String,
    pub last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<Dob>,
}

#[derive(Debug, Serialize)]
pub(super) struct Dob {
    pub day: u32,
    pub month: u32,
    pub year: i32,
}

#[derive(Debug, Serialize)]
pub(super) struct Configuration {
    pub screening_configuration_identifier: String,
}

#[derive(Debug, Serialize)]
pub(super) struct Monitoring {
    pub entity_screening: Enabled,
}

#[derive(Debug, Serialize)]
pub(super) struct Enabled {
    pub enabled: bool,
}

impl CreateAndScreen {
    pub fn new(external_identifier: &str, p: &Person, configuration: &str) -> Self {
        use chrono::Datelike;
        let dob = p
            .dob_iso()
            .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
            .map(|d| Dob {
                day: d.day(),
                month: d.month(),
                year: d.year(),
            });
        CreateAndScreen {
            customer: Customer {
                external_identifier: external_identifier.to_string(),
                person: MeshPerson {
                    first_name: p.given_name.clone(),
                    last_name: p.family_name.clone(),
                    date_of_birth: dob,
                },
            },
            configuration: Configuration {
                screening_configuration_identifier: configuration.to_string(),
            },
            monitoring: Monitoring {
                entity_screening: Enabled { enabled: false },
            },
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WorkflowResponse {
    pub workflow_instance_identifier: String,
    pub step_details: HashMap<String, StepDetail>,
}

#[derive(Debug, Deserialize)]
pub(super) struct StepDetail {
    #[serde(default)]
    pub step_output: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(super) enum ScreeningResult {
    #[serde(rename = "HAS_PROFILES")]
    HasProfiles,
    #[serde(rename = "NO_PROFILES")]
    NoProfiles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(super) enum RiskLevel {
    #[serde(rename = "LOW-RISK")]
    Low,
    #[serde(rename = "MEDIUM-RISK")]
    Medium,
    #[serde(rename = "HIGH-RISK")]
    High,
    #[serde(rename = "PROHIBITED")]
    Prohibited,
}

/// What the workflow said: customer id, whether profiles matched, and the risk level.
pub(super) struct Screened {
    pub customer_identifier: String,
    pub result: ScreeningResult,
    pub level: Option<RiskLevel>,
}

pub(super) fn screened(w: &WorkflowResponse) -> Result<Screened, String> {
    let out = |step: &str, field: &str| w.step_details.get(step).and_then(|s| s.step_output.get(field)).cloned();
    let customer_identifier = out("customer-creation", "customer_identifier")
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or("no customer-creation.step_output.customer_identifier")?;
    let result: ScreeningResult = serde_json::from_value(
        out("customer-screening", "screening_result").ok_or("no customer-screening.step_output.screening_result")?,
    )
    .map_err(|e| format!("screening_result: {e}"))?;
    let level = match out("initial-risk-scoring", "overall_level") {
        Some(v) => Some(serde_json::from_value(v).map_err(|e| format!("overall_level: {e}"))?),
        None => None,
    };
    Ok(Screened {
        customer_identifier,
        result,
        level,
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct CasesResponse {
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Case {
    pub identifier: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct AlertsResponse {
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Alert {
    pub identifier: String,
    pub profile: Profile,
}

#[derive(Debug, Deserialize)]
pub(super) struct Profile {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RisksResponse {
    pub risks: Vec<Risk>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Risk {
    #[serde(rename = "type")]
    pub kind: RiskType,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum RiskType {
    Sanction,
    Warning,
    #[serde(rename = "PEP_CLASS_1")]
    PepClass1,
    #[serde(rename = "PEP_CLASS_2")]
    PepClass2,
    #[serde(rename = "PEP_CLASS_3")]
    PepClass3,
    #[serde(rename = "PEP_CLASS_4")]
    PepClass4,
    AdverseMediaGeneral,
    AdverseMediaFinancialCrime,
    AdverseMediaViolentCrime,
    AdverseMediaFraud,
    AdverseMediaTerrorism,
    FitnessProbity,
}

pub(super) fn category(r: RiskType) -> HitCategory {
    match r {
        RiskType::Sanction => HitCategory::Sanction,
        RiskType::PepClass1 | RiskType::PepClass2 | RiskType::PepClass3 | RiskType::PepClass4 => HitCategory::Pep,
        RiskType::AdverseMediaGeneral
        | RiskType::AdverseMediaFinancialCrime
        | RiskType::AdverseMediaViolentCrime
        | RiskType::AdverseMediaFraud
        | RiskType::AdverseMediaTerrorism => HitCategory::AdverseMedia,
        RiskType::Warning | RiskType::FitnessProbity => HitCategory::Watchlist,
    }
}

/// A prohibited customer with a sanctions risk is a confirmed match; any other profile match needs
/// review.
pub(super) fn status(level: Option<RiskLevel>, hits: &[ScreeningHit]) -> ScreeningStatus {
    let sanctioned = hits.iter().any(|h| h.category == HitCategory::Sanction);
    match (level, sanctioned, hits.is_empty()) {
        (Some(RiskLevel::Prohibited), true, _) => ScreeningStatus::ConfirmedMatch,
        (_, _, false) => ScreeningStatus::PossibleMatch,
        (Some(RiskLevel::Prohibited), _, true) => ScreeningStatus::PossibleMatch,
        (Some(RiskLevel::Low | RiskLevel::Medium | RiskLevel::High) | None, _, true) => ScreeningStatus::Clear,
    }
}

pub(super) fn hit(alert: &Alert, risk: &Risk, level: Option<RiskLevel>) -> ScreeningHit {
    ScreeningHit {
        list_name: risk.source.clone().unwrap_or_else(|| "complyadvantage".to_string()),
        matched_name: alert.profile.name.clone(),
        category: category(risk.kind),
        score: if level == Some(RiskLevel::Prohibited) { 100 } else { 75 },
    }
}
