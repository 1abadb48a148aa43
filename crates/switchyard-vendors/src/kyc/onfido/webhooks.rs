//! Onfido webhooks: `X-SHA2-Signature` = hex HMAC-SHA256(raw body, webhook token). The scheme has no
//! timestamp; the object's completion time bounds the replay window, and the body carries only an id
//! and a status, so the receiver pulls the check before anything changes.

use reqwest::header::HeaderMap;

use super::transformers::WebhookBody;
use crate::{
    kyc::{REPLAY_WINDOW_MS, WebhookNotice, WebhookRejection, header},
    signing::{Alg, SecretPair, equal, hmac, unhex},
};

pub const SIGNATURE_HEADER: &str = "x-sha2-signature";

pub(super) fn verify(
    secret: &SecretPair,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<WebhookNotice, WebhookRejection> {
    let sig = header(headers, SIGNATURE_HEADER).ok_or(WebhookRejection::MissingSignature)?;
    let sig = unhex(sig.trim()).ok_or(WebhookRejection::BadSignature)?;
    if !secret.any(|key| equal(&hmac(Alg::Sha256, key, body), &sig)) {
        return Err(WebhookRejection::BadSignature);
    }
    let parsed: WebhookBody = serde_json::from_slice(body).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
    let p = parsed.payload;
    if let Some(done) = p.object.completed_at_iso8601.as_deref()
        && let Ok(at) = chrono::DateTime::parse_from_rfc3339(done)
        && now_ms - at.timestamp_millis() > REPLAY_WINDOW_MS
    {
        return Err(WebhookRejection::Stale);
    }
    Ok(WebhookNotice {
        event_id: format!(
            "{}:{}:{}:{}",
            p.resource_type,
            p.object.id,
            p.action,
            p.object.completed_at_iso8601.unwrap_or_default()
        ),
        provider_reference: p.object.id,
        outcome: None,
    })
}

/// Signs a body the way Onfido does (for the simulator and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    crate::signing::hex(&hmac(Alg::Sha256, secret, body))
}
