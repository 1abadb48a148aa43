//! The KYC capability: verify a person's identity with a partner.

pub mod onfido;
pub mod sumsub;

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use switchyard_model::events::{common::Person, kyc::KycStatus};

use crate::{
    adapter::{Progress, Recovery},
    error::VendorError,
};

/// Canonical reason codes a KYC result carries. Vendors map their own labels and report names into
/// these, so no vendor vocabulary reaches the orchestrator or a product team.
pub mod reason {
    pub const DOCUMENTS_REQUIRED: &str = "documents_required";
    pub const DOCUMENT_UNREADABLE: &str = "document_unreadable";
    pub const DOCUMENT_INCOMPLETE: &str = "document_incomplete";
    pub const DOCUMENT_EXPIRED: &str = "document_expired";
    pub const DOCUMENT_REJECTED: &str = "document_rejected";
    pub const DOCUMENT_FORGED: &str = "document_forged";
    pub const DOCUMENT_NEEDS_REVIEW: &str = "document_needs_review";
    pub const FACE_MISMATCH: &str = "face_mismatch";
    pub const IDENTITY_UNIDENTIFIED: &str = "identity_unidentified";
    pub const VERIFICATION_NEEDS_REVIEW: &str = "verification_needs_review";
    pub const CHECK_WITHDRAWN: &str = "check_withdrawn";
    pub const PROVIDER_HOLD: &str = "provider_hold";
    pub const PROVIDER_INCOMPLETE_RESULT: &str = "provider_incomplete_result";
    /// A vendor label with no canonical meaning yet (the adapter logs the label itself).
    pub const PROVIDER_OTHER: &str = "provider_other";
}

/// Who to verify, with the idempotency key derived from the request event.
#[derive(Debug, Clone)]
pub struct Applicant {
    /// The bank's stable id for the person (sent to vendors that accept an external id).
    pub subject_id: String,
    pub idempotency_key: String,
    pub person: Person,
}

/// A vendor's answer in canonical terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KycOutcome {
    /// The vendor's id for the case (check, applicant...), used for status pulls and webhooks.
    pub provider_reference: String,
    pub status: KycStatus,
    pub reasons: Vec<String>,
}

/// A verified webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookNotice {
    /// De-duplication key: the same delivery (or a retry of it) has the same id.
    pub event_id: String,
    pub provider_reference: String,
    /// The outcome when the webhook carries it; None when only a status pull can tell.
    pub outcome: Option<KycOutcome>,
}

/// Why a webhook was refused (each is counted under its own reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    #[error("signature header missing")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("event is older than the replay window")]
    Stale,
    #[error("malformed webhook: {0}")]
    Malformed(String),
}

impl WebhookRejection {
    pub fn reason(&self) -> &'static str {
        match self {
            WebhookRejection::MissingSignature => "missing_signature",
            WebhookRejection::BadSignature => "bad_signature",
            WebhookRejection::Stale => "stale",
            WebhookRejection::Malformed(_) => "malformed",
        }
    }
}

/// A case as the partner lists it: reconciliation's view of the partner's truth.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ListedCase {
    /// The partner's id for the case (the same as a result's `provider_reference`).
    pub provider_reference: String,
    /// Our idempotency key for the request that started it, when the case carries it.
    pub our_reference: Option<String>,
    pub status: KycStatus,
    /// When the partner created it (ms since the epoch).
    pub created_ms: i64,
    /// The partner's record as it answered (evidence; no personal data).
    pub raw: serde_json::Value,
}

/// One page of a partner's list of cases, and where the next starts.
#[derive(Debug, Clone, PartialEq)]
pub struct CasePage {
    pub items: Vec<ListedCase>,
    pub next: Option<String>,
}

/// Events older than this are refused even when correctly signed (vendors' retry schedules end
/// within a day; a replayed old delivery is never acted on).
pub const REPLAY_WINDOW_MS: i64 = 72 * 3600 * 1000;

pub trait KycVendor: Send + Sync {
    /// The partner id from the partner catalog.
    fn partner(&self) -> &str;
    /// Starts a verification (idempotent per `applicant.idempotency_key` where the vendor allows).
    /// What it learns between calls it notes in `progress`, and resumes from there.
    fn start<'a>(
        &'a self,
        applicant: &'a Applicant,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<KycOutcome, VendorError>>;
    /// After a crash mid-call or an ambiguous answer: what became of the verification started for
    /// this applicant and key (found by the vendor's own means: tag, external id...).
    fn recover<'a>(
        &'a self,
        applicant: &'a Applicant,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<Recovery<KycOutcome>, VendorError>>;
    /// The current status of a case.
    fn status<'a>(&'a self, provider_reference: &'a str) -> BoxFuture<'a, Result<KycOutcome, VendorError>>;
    /// Verifies a webhook's signature and reads it.
    fn verify_webhook(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<WebhookNotice, WebhookRejection>;
    /// The cases created since `since_ms`, a page at a time (`cursor`: the page the last answer
    /// named). None when the partner has no such list: reconciliation then knows its cases from
    /// results and webhooks alone.
    fn list<'a>(
        &'a self,
        _since_ms: i64,
        _cursor: Option<&'a str>,
    ) -> Option<BoxFuture<'a, Result<CasePage, VendorError>>> {
        None
    }
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
