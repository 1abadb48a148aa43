//! Sumsub webhooks: `x-payload-digest` = hex HMAC of the raw body with the webhook secret, the
//! algorithm in `x-payload-digest-alg`. The algorithm is the one configured for the partner (as in
//! the vendor's dashboard), never the sender's choice: a delivery naming another one (a downgrade to
//! SHA-1, say) is refused as badly signed. No timestamp in the scheme: `createdAtMs` bounds the replay
//! window, and de-duplication by event id absorbs Sumsub's retries (5 min, 1 h, 5 h, 18 h).

use reqwest::header::HeaderMap;

use super::transformers::{WebhookBody, status};
use crate::{
    kyc::{KycOutcome, REPLAY_WINDOW_MS, WebhookNotice, WebhookRejection, header},
    signing::{Alg, SecretPair, equal, hex, hmac, unhex},
};

pub const DIGEST_HEADER: &str = "x-payload-digest";
pub const ALG_HEADER: &str = "x-payload-digest-alg";

/// The digest algorithm named `name` (`HMAC_SHA1_HEX`, `HMAC_SHA256_HEX`, `HMAC_SHA512_HEX`).
pub fn digest_alg(name: &str) -> Result<Alg, String> {
    match name {
        "HMAC_SHA1_HEX" => Ok(Alg::Sha1),
        "HMAC_SHA256_HEX" => Ok(Alg::Sha256),
        "HMAC_SHA512_HEX" => Ok(Alg::Sha512),
        other => Err(format!(
            "unknown digest algorithm {other} (HMAC_SHA1_HEX, HMAC_SHA256_HEX, HMAC_SHA512_HEX)"
        )),
    }
}

pub(super) fn verify(
    secret: &SecretPair,
    expected: Alg,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<WebhookNotice, WebhookRejection> {
    let digest = header(headers, DIGEST_HEADER).ok_or(WebhookRejection::MissingSignature)?;
    if let Some(named) = header(headers, ALG_HEADER) {
        let named = digest_alg(named).map_err(WebhookRejection::Malformed)?;
        if named != expected {
            return Err(WebhookRejection::BadSignature);
        }
    }
    let alg = expected;
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
