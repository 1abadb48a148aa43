//! Vendor call failures, classified where they arise.

use std::time::Duration;

use switchyard_model::events::common::{Failure, FailureClass};

#[derive(Debug, Clone, thiserror::Error)]
pub enum VendorError {
    /// The vendor could not be reached, refused to work (503), or a read failed: nothing happened at
    /// the vendor; retry, then fail over.
    #[error("vendor unavailable: {0}")]
    Transient(String),
    /// 429: slow down; `retry_after` when the vendor said how long.
    #[error("vendor rate limit (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// The request may or may not have taken effect (timeout or reset after sending, 500/502/504 to a
    /// call with effects): ask the vendor what happened; never re-send blind, never fail over.
    #[error("outcome unknown: {0}")]
    Ambiguous(String),
    /// The vendor refused the request as invalid; retrying will not help.
    #[error("vendor rejected the request: {0}")]
    Permanent(String),
    /// Credentials or permissions are wrong: an operator must fix the configuration.
    #[error("vendor refused our credentials: {0}")]
    Auth(String),
}

impl VendorError {
    /// Whether calling again at once is safe and may succeed: only for errors that guarantee the
    /// partner did nothing. An ambiguous call is never simply repeated: it is resolved by asking the
    /// partner (see `adapter::Partners::effect`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, VendorError::Transient(_) | VendorError::RateLimited { .. })
    }

    /// Classifies a transport error. For calls with effects (`mutating`), anything after the
    /// connection was made (a timeout, a reset, a truncated answer) leaves the outcome unknown; only a
    /// failure to connect proves nothing was sent. Reads are plain transient.
    pub fn from_transport(e: &reqwest::Error, mutating: bool) -> Self {
        if mutating && !e.is_connect() && !e.is_builder() {
            VendorError::Ambiguous(format!("no answer after sending: {e}"))
        } else {
            VendorError::Transient(e.to_string())
        }
    }

    /// Classifies an HTTP error status with the vendor's error text (already stripped of PII).
    pub fn from_status(status: reqwest::StatusCode, retry_after: Option<&str>, detail: String) -> Self {
        match status.as_u16() {
            429 => VendorError::RateLimited {
                retry_after: retry_after
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            },
            401 | 403 => VendorError::Auth(format!("{status}: {detail}")),
            408 => VendorError::Ambiguous(format!("{status}: {detail}")),
            500..=599 => VendorError::Transient(format!("{status}: {detail}")),
            _ => VendorError::Permanent(format!("{status}: {detail}")),
        }
    }

    /// The canonical failure carried in a result event.
    pub fn to_failure(&self) -> Failure {
        match self {
            VendorError::Transient(m) => Failure::new(FailureClass::Transient, "provider_unavailable", m.clone()),
            VendorError::RateLimited { .. } => {
                Failure::new(FailureClass::Transient, "provider_rate_limited", self.to_string())
            }
            VendorError::Ambiguous(m) => Failure::new(FailureClass::Ambiguous, "provider_outcome_unknown", m.clone()),
            VendorError::Permanent(m) => Failure::new(FailureClass::Permanent, "provider_rejected", m.clone()),
            VendorError::Auth(m) => Failure::new(FailureClass::ManualRepair, "provider_auth", m.clone()),
        }
    }
}

/// Sends a request and turns a non-success status into a classified error.
pub(crate) async fn send(req: reqwest::RequestBuilder, mutating: bool) -> Result<reqwest::Response, VendorError> {
    send_accepting(req, mutating, &[]).await
}

/// As [`send`], but also hands back responses with one of `statuses` (which the caller treats as
/// a meaningful answer, e.g. Sumsub's 409 for an existing applicant) instead of classifying them.
pub(crate) async fn send_accepting(
    req: reqwest::RequestBuilder,
    mutating: bool,
    statuses: &[u16],
) -> Result<reqwest::Response, VendorError> {
    let resp = req
        .send()
        .await
        .map_err(|e| VendorError::from_transport(&e, mutating))?;
    let status = resp.status();
    if status.is_success() || statuses.contains(&status.as_u16()) {
        return Ok(resp);
    }
    // A 500, 502 or 504 to a call with effects may come after the effect happened (a gateway timing
    // out, a crash after the write): unknown, not "failed". 503 and 429 are refusals before any work.
    if mutating && matches!(status.as_u16(), 500 | 502 | 504) {
        let body = resp.text().await.unwrap_or_default();
        let detail: String = body.chars().take(200).collect();
        return Err(VendorError::Ambiguous(format!("{status}: {detail}")));
    }
    let retry_after = resp
        .headers()
        .get("retry-after")
        .or_else(|| resp.headers().get("ratelimit-reset"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.text().await.unwrap_or_default();
    // Keep only a short prefix of vendor error text: enough to explain, no room for PII dumps.
    let detail: String = body.chars().take(200).collect();
    Err(VendorError::from_status(status, retry_after.as_deref(), detail))
}

/// Reads a JSON body, classifying an unreadable one.
pub(crate) async fn json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, VendorError> {
    let bytes = resp.bytes().await.map_err(|e| VendorError::Transient(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| VendorError::Permanent(format!("unexpected response shape: {e}")))
}

impl switchyard_runtime::provider::Retryable for VendorError {
    fn retryable(&self) -> bool {
        self.is_retryable()
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            VendorError::RateLimited { retry_after } => *retry_after,
            VendorError::Transient(_)
            | VendorError::Ambiguous(_)
            | VendorError::Permanent(_)
            | VendorError::Auth(_) => None,
        }
    }

    /// The partner failed us (down, throttling, no clear answer); a refused request or refused
    /// credentials are ours to fix and say nothing about its health.
    fn partner_fault(&self) -> bool {
        match self {
            VendorError::Transient(_) | VendorError::RateLimited { .. } | VendorError::Ambiguous(_) => true,
            VendorError::Permanent(_) | VendorError::Auth(_) => false,
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            VendorError::Transient(_) => "transient",
            VendorError::RateLimited { .. } => "rate_limited",
            VendorError::Ambiguous(_) => "ambiguous",
            VendorError::Permanent(_) => "rejected",
            VendorError::Auth(_) => "auth",
        }
    }
}
