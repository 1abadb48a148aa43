//! Sumsub's types and their exhaustive mapping into the canonical model.

use serde::{Deserialize, Serialize};
use switchyard_model::events::{common::Person, kyc::KycStatus};

use crate::kyc::reason;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateApplicant {
    pub external_user_id: String,
    pub fixed_info: FixedInfo,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FixedInfo {
    pub first_name: String,
    pub last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dob: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl CreateApplicant {
    pub fn new(external_user_id: &str, p: &Person) -> Self {
        CreateApplicant {
            external_user_id: external_user_id.to_string(),
            fixed_info: FixedInfo {
                first_name: p.given_name.clone(),
                last_name: p.family_name.clone(),
                dob: p.dob_iso(),
                country: p.nationality.as_deref().map(alpha3),
            },
        }
    }
}

/// Sumsub wants ISO 3166-1 alpha-3; the model carries alpha-2.
fn alpha3(alpha2: &str) -> String {
    match alpha2 {
        "GB" => "GBR",
        "DE" => "DEU",
        "FR" => "FRA",
        "ES" => "ESP",
        "IT" => "ITA",
        "NL" => "NLD",
        "IE" => "IRL",
        "US" => "USA",
        "CA" => "CAN",
        "RU" => "RUS",
        other => other,
    }
    .to_string()
}

#[derive(Debug, Deserialize)]
pub(super) struct ApplicantResponse {
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum ReviewStatus {
    Init,
    Pending,
    Prechecked,
    Queued,
    Completed,
    OnHold,
    AwaitingService,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(super) enum ReviewAnswer {
    #[serde(rename = "GREEN")]
    Green,
    #[serde(rename = "RED")]
    Red,
    #[serde(rename = "YELLOW")]
    Yellow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(super) enum RejectType {
    #[serde(rename = "FINAL")]
    Final,
    #[serde(rename = "RETRY")]
    Retry,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReviewResult {
    pub review_answer: ReviewAnswer,
    #[serde(default)]
    pub reject_labels: Vec<String>,
    pub review_reject_type: Option<RejectType>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatusResponse {
    pub review_status: ReviewStatus,
    pub review_result: Option<ReviewResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WebhookBody {
    pub applicant_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub review_status: ReviewStatus,
    pub review_result: Option<ReviewResult>,
    pub created_at_ms: Option<String>,
    pub correlation_id: Option<String>,
}

pub(super) fn status(review: ReviewStatus, result: Option<&ReviewResult>) -> (KycStatus, Vec<String>) {
    match review {
        ReviewStatus::Init
        | ReviewStatus::Pending
        | ReviewStatus::Prechecked
        | ReviewStatus::Queued
        | ReviewStatus::AwaitingService => (KycStatus::Pending, vec![]),
        ReviewStatus::OnHold => (KycStatus::Review, vec![reason::PROVIDER_HOLD.into()]),
        ReviewStatus::Completed => match result {
            None => (KycStatus::Review, vec![reason::PROVIDER_INCOMPLETE_RESULT.into()]),
            Some(r) => match (r.review_answer, r.review_reject_type) {
                (ReviewAnswer::Green, _) => (KycStatus::Approved, vec![]),
                (ReviewAnswer::Yellow, _) => (KycStatus::Review, labels(r)),
                (ReviewAnswer::Red, Some(RejectType::Retry)) => (KycStatus::NeedsDocuments, labels(r)),
                (ReviewAnswer::Red, Some(RejectType::Final)) => (KycStatus::Rejected, labels(r)),
                (ReviewAnswer::Red, None) => (KycStatus::Rejected, labels(r)),
            },
        },
    }
}

/// Sumsub's reject labels as canonical reason codes (each code once).
fn labels(r: &ReviewResult) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for label in &r.reject_labels {
        let code = match label.as_str() {
            "FORGERY" | "GRAPHIC_EDITOR" | "SCREENSHOTS" => reason::DOCUMENT_FORGED,
            "BAD_PHOTO" | "UNSATISFACTORY_PHOTOS" | "DOCUMENT_DAMAGED" => reason::DOCUMENT_UNREADABLE,
            "DOCUMENT_PAGE_MISSING" | "INCOMPLETE_DOCUMENT" => reason::DOCUMENT_INCOMPLETE,
            "EXPIRATION_DATE" => reason::DOCUMENT_EXPIRED,
            "SELFIE_MISMATCH" | "BAD_FACE_MATCHING" => reason::FACE_MISMATCH,
            other => {
                tracing::info!(label = other, "Sumsub reject label with no canonical reason");
                reason::PROVIDER_OTHER
            }
        };
        if !out.iter().any(|c| c == code) {
            out.push(code.to_string());
        }
    }
    out
}
