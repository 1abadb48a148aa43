//! Wise's webhooks: `transfers#state-change`, signed with Wise's RSA key (`X-Signature-SHA256`:
//! base64 RSA-SHA256 over the raw body), verified with its public key. Deliveries are unordered and
//! may repeat: a notice is identified by the transfer, the new state and the event's own time, so a
//! re-delivery is the same notice, and ordered by that time.

use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::transformers::status;
use crate::{
    kyc::WebhookRejection,
    payouts::PayoutNotice,
    signing::{rsa_sha256_verify, unb64},
};

#[derive(Debug, Deserialize)]
struct Event {
    data: Data,
    event_type: String,
}

#[derive(Debug, Deserialize)]
struct Data {
    resource: Resource,
    current_state: String,
    occurred_at: String,
}

#[derive(Debug, Deserialize)]
struct Resource {
    #[serde(rename = "type")]
    kind: String,
    id: i64,
}

/// Verifies the signature with Wise's public key (RSAPublicKey DER) and reads a state change.
pub fn verify(public_key_der: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<PayoutNotice, WebhookRejection> {
    let sig = headers
        .get("x-signature-sha256")
        .and_then(|v| v.to_str().ok())
        .ok_or(WebhookRejection::MissingSignature)?;
    let sig = unb64(sig).ok_or(WebhookRejection::BadSignature)?;
    if !rsa_sha256_verify(public_key_der, body, &sig) {
        return Err(WebhookRejection::BadSignature);
    }
    let event: Event = serde_json::from_slice(body).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
    if event.event_type != "transfers#state-change" || event.data.resource.kind != "transfer" {
        return Err(WebhookRejection::Malformed(format!(
            "not a transfer state change: {}",
            event.event_type
        )));
    }
    let status = status(&event.data.current_state)
        .ok_or_else(|| WebhookRejection::Malformed(format!("unknown transfer state {:?}", event.data.current_state)))?;
    let occurred = chrono::DateTime::parse_from_rfc3339(&event.data.occurred_at)
        .map_err(|e| WebhookRejection::Malformed(format!("occurred_at: {e}")))?
        .timestamp_millis();
    let reference = event.data.resource.id.to_string();
    Ok(PayoutNotice {
        event_id: format!("{reference}:{}:{occurred}", event.data.current_state),
        provider_reference: reference,
        status,
        occurred_at_ms: occurred,
        reason: match event.data.current_state.as_str() {
            "bounced_back" | "funds_refunded" => Some("bounced"),
            "charged_back" => Some("charged_back"),
            "cancelled" => Some("cancelled"),
            _ => None,
        },
    })
}
