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
    /// The request's URL is left out of the text: a query string can carry personal data.
    pub fn from_transport(e: reqwest::Error, mutating: bool) -> Self {
        let ambiguous = mutating && !e.is_connect() && !e.is_builder();
        let e = e.without_url();
        if ambiguous {
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
    let resp = req.send().await.map_err(|e| VendorError::from_transport(e, mutating))?;
    let status = resp.status();
    if status.is_success() || statuses.contains(&status.as_u16()) {
        return Ok(resp);
    }
    // A 500, 502 or 504 to a call with effects may come after the effect happened (a gateway timing
    // out, a crash after the write): unknown, not "failed". 503 and 429 are refusals before any work.
    if mutating && matches!(status.as_u16(), 500 | 502 | 504) {
        let detail = redact_body(&resp.text().await.unwrap_or_default());
        return Err(VendorError::Ambiguous(format!("{status}: {detail}")));
    }
    let retry_after = resp
        .headers()
        .get("retry-after")
        .or_else(|| resp.headers().get("ratelimit-reset"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let detail = redact_body(&resp.text().await.unwrap_or_default());
    Err(VendorError::from_status(status, retry_after.as_deref(), detail))
}

/// A vendor's error body, fit for logs and events: vendors echo the fields they refused, so a JSON
/// body keeps its keys, numbers and the strings under code-like keys (`code`, `type`, `status`,
/// e.g. `errorCode`, `error.type`, and request ids for the vendor's support) and loses every other
/// string; any other body (an HTML error
/// page, plain text) is reported by its length only. At most 200 characters either way.
pub fn redact_body(body: &str) -> String {
    fn scrub(v: &mut serde_json::Value, key: &str) {
        match v {
            serde_json::Value::String(s) => {
                let k = key.to_ascii_lowercase();
                let code_like = ["code", "type", "status", "correlationid", "requestid"]
                    .iter()
                    .any(|c| k.contains(c));
                if !code_like || s.len() > 64 || s.contains(char::is_whitespace) {
                    *s = "…".to_string();
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| scrub(i, key)),
            serde_json::Value::Object(m) => m.iter_mut().for_each(|(k, v)| scrub(v, k)),
            _ => {}
        }
    }
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(mut v) => {
            scrub(&mut v, "");
            v.to_string()
        }
        Err(_) if body.is_empty() => String::new(),
        Err(_) => format!("({} bytes, not JSON)", body.len()),
    };
    text.chars().take(200).collect()
}

/// Reads a JSON body, classifying an unreadable one.
pub(crate) async fn json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, VendorError> {
    let bytes = resp.bytes().await.map_err(|e| VendorError::Transient(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        VendorError::Permanent(format!(
            "unexpected response shape: {}",
            switchyard_model::redact::redact_values(&e.to_string())
        ))
    })
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

#[cfg(test)]
mod redaction_tests {
    use super::redact_body;

    #[test]
    fn a_vendor_error_body_keeps_its_codes_and_loses_what_it_echoed() {
        let body = r#"{"error":{"type":"validation_error","message":"first_name Ada Lovelace is invalid",
            "fields":{"dob":["1815-12-10 is in the future"]}},"errorCode":1003,"status":"rejected"}"#;
        let r = redact_body(body);
        assert!(!r.contains("Ada") && !r.contains("1815"), "{r}");
        assert!(r.contains(r#""type":"validation_error""#), "{r}");
        assert!(
            r.contains(r#""errorCode":1003"#) && r.contains(r#""status":"rejected""#),
            "{r}"
        );
        let html = redact_body("<html>Bad request for Ada Lovelace born 18151210</html>");
        assert_eq!(html, "(55 bytes, not JSON)");
        assert!(redact_body(&"x".repeat(500)).chars().count() <= 200);
    }
}
