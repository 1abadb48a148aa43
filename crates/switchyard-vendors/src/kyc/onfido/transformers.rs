//! Onfido's types and their mapping into the canonical model. Statuses are matched exhaustively: a
//! status Onfido adds later fails to parse (and is reported), never silently maps to something.

use serde::{Deserialize, Serialize};
use switchyard_model::events::{common::Person, kyc::KycStatus};

use crate::kyc::reason;

#[derive(Debug, Serialize)]
pub(super) struct ApplicantRequest {
    pub first_name: String,
    pub last_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dob: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl From<&Person> for ApplicantRequest {
    fn from(p: &Person) -> Self {
        ApplicantRequest {
            first_name: p.given_name.clone(),
            last_name: p.family_name.clone(),
            dob: p.dob_iso(),
            email: p.email.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ApplicantResponse {
    pub id: String,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `GET /applicants?page=&per_page=` (newest first).
#[derive(Debug, Deserialize)]
pub(super) struct ApplicantsResponse {
    pub applicants: Vec<ApplicantResponse>,
}

/// The idempotency key a check's tags carry, if it is one of ours.
pub(super) fn key_of(tags: &[String]) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix("switchyard:"))
        .map(str::to_string)
}

#[derive(Debug, Serialize)]
pub(super) struct CheckRequest {
    pub applicant_id: String,
    pub report_names: Vec<&'static str>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum CheckStatus {
    InProgress,
    AwaitingApplicant,
    Complete,
    Withdrawn,
    Paused,
    Reopened,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum CheckResult {
    Clear,
    Consider,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub(super) struct CheckResponse {
    pub id: String,
    pub status: CheckStatus,
    pub result: Option<CheckResult>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `GET /checks?applicant_id=`.
#[derive(Debug, Deserialize)]
pub(super) struct ChecksResponse {
    pub checks: Vec<CheckResponse>,
}

/// The tag our checks carry: how a check started for an idempotency key is found again.
pub(super) fn key_tag(idempotency_key: &str) -> String {
    format!("switchyard:{idempotency_key}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ReportStatus {
    AwaitingData,
    AwaitingApproval,
    Cancelled,
    Complete,
    Withdrawn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ReportResult {
    Clear,
    Consider,
    Unidentified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum SubResult {
    Clear,
    Rejected,
    Suspected,
    Caution,
}

#[derive(Debug, Deserialize)]
pub(super) struct Report {
    pub status: ReportStatus,
    pub result: Option<ReportResult>,
    pub sub_result: Option<SubResult>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ReportsResponse {
    pub reports: Vec<Report>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WebhookBody {
    pub payload: WebhookPayload,
}

#[derive(Debug, Deserialize)]
pub(super) struct WebhookPayload {
    pub resource_type: String,
    pub action: String,
    pub object: WebhookObject,
}

#[derive(Debug, Deserialize)]
pub(super) struct WebhookObject {
    pub id: String,
    #[serde(default)]
    pub completed_at_iso8601: Option<String>,
}

/// The canonical status of a check (with its reports once complete).
pub(super) fn check_status(check: &CheckResponse, reports: &[Report]) -> (KycStatus, Vec<String>) {
    match check.status {
        CheckStatus::InProgress | CheckStatus::Paused | CheckStatus::Reopened => (KycStatus::Pending, vec![]),
        CheckStatus::AwaitingApplicant => (KycStatus::NeedsDocuments, vec![reason::DOCUMENTS_REQUIRED.into()]),
        CheckStatus::Withdrawn => (KycStatus::Review, vec![reason::CHECK_WITHDRAWN.into()]),
        CheckStatus::Complete => match check.result {
            Some(CheckResult::Clear) => (KycStatus::Approved, vec![]),
            Some(CheckResult::Consider) => consider(reports),
            None => (KycStatus::Review, vec![reason::PROVIDER_INCOMPLETE_RESULT.into()]),
        },
    }
}

fn consider(reports: &[Report]) -> (KycStatus, Vec<String>) {
    let mut reasons = Vec::new();
    let mut status = KycStatus::Review;
    for r in reports {
        let outcome = match (r.status, r.result, r.sub_result) {
            (ReportStatus::Complete, Some(ReportResult::Clear), _) => None,
            (_, _, Some(SubResult::Rejected)) => Some((KycStatus::Rejected, reason::DOCUMENT_REJECTED)),
            (_, _, Some(SubResult::Suspected)) => Some((KycStatus::Rejected, reason::DOCUMENT_FORGED)),
            (_, _, Some(SubResult::Caution)) => Some((KycStatus::Review, reason::DOCUMENT_NEEDS_REVIEW)),
            (ReportStatus::AwaitingData, _, _) => Some((KycStatus::NeedsDocuments, reason::DOCUMENTS_REQUIRED)),
            (_, Some(ReportResult::Unidentified), _) => Some((KycStatus::Review, reason::IDENTITY_UNIDENTIFIED)),
            (_, Some(ReportResult::Consider), _) => Some((KycStatus::Review, reason::VERIFICATION_NEEDS_REVIEW)),
            (
                ReportStatus::AwaitingApproval
                | ReportStatus::Cancelled
                | ReportStatus::Withdrawn
                | ReportStatus::Complete,
                _,
                Some(SubResult::Clear) | None,
            ) => None,
        };
        if let Some((s, why)) = outcome {
            if !reasons.iter().any(|x| x == why) {
                reasons.push(why.to_string());
            }
            status = worse(status, s);
        }
    }
    (status, reasons)
}

/// Rejected beats needs-documents beats review.
fn worse(a: KycStatus, b: KycStatus) -> KycStatus {
    let rank = |s| match s {
        KycStatus::Rejected => 3,
        KycStatus::NeedsDocuments => 2,
        KycStatus::Review => 1,
        KycStatus::Approved | KycStatus::Pending => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}
