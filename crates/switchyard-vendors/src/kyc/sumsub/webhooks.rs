//! Sumsub webhooks: `x-payload-digest` = hex HMAC of the raw body with the webhook secret, the
//! algorithm in `x-payload-digest-alg`. No timestamp in the scheme: `createdAtMs` bounds the replay
//! window, and de-duplication by event id absorbs Sumsub's retries (5 min, 1 h, 5 h, 18 h).

use reqwest::header::HeaderMap;

use super::transformers::{WebhookBody, status};
use crate::{
    kyc::{KycOutcome, REPLAY_WINDOW_MS, WebhookNotice, WebhookRejection, header},
    signing::{Alg, SecretPair, equal, hex, hmac, unhex},
};

pub const DIGEST_HEADER: &str = "x-payload-digest";
pub const ALG_HEADER: &str = "x-payload-digest-alg";

pub(super) fn verify(
    secret: &SecretPair,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<WebhookNotice, WebhookRejection> {
    let digest = header(headers, DIGEST_HEADER).ok_or(WebhookRejection::MissingSignature)?;
    let alg = match header(headers, ALG_HEADER).unwrap_or("HMAC_SHA256_HEX") {
        "HMAC_SHA1_HEX" => Alg::Sha1,
        "HMAC_SHA256_HEX" => Alg::Sha256,
        "HMAC_SHA512_HEX" => Alg::Sha512,
        other => return Err(WebhookRejection::Malformed(format!("unknown digest algorithm {other}"))),
    };
    let digest = unhex(digest.trim()).ok_or(WebhookRejection::BadSignature)?;
    if !secret.any(|key| equal(&hmac(alg, key, body), &digest)) {
        return Err(WebhookRejection::BadSignature);
    }
    let parsed: WebhookBody = serde_json::from_slice(body).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
    let created = parsed.created_at_ms.as_deref().and_then(|s| s.parse::<i64>().ok());
    if let Some(at) = created
        && now_ms - at > REPLAY_WINDOW_MS
    {
        return Err(WebhookRejection::Stale);
    }
    // Only a final review carries an answer; other types are progress notices.
    let outcome = (parsed.kind == "applicantReviewed").then(|| {
        let (status, reasons) = status(parsed.review_status, parsed.review_result.as_ref());
        KycOutcome {
            provider_reference: parsed.applicant_id.clone(),
            status,
            reasons,
        }
    });
    Ok(WebhookNotice {
        event_id: parsed.correlation_id.clone().unwrap_or_else(|| {
            format!(
                "{}:{}:{}",
                parsed.applicant_id,
                parsed.kind,
                created.unwrap_or_default()
            )
        }),
        provider_reference: parsed.applicant_id,
        outcome,
    })
}

/// Signs a body the way Sumsub does (for the simulator and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex(&hmac(Alg::Sha256, secret, body))
}
