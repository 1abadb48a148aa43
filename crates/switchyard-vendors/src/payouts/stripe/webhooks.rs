//! Stripe's webhook signature: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw
//! body>")>`, several `v1` entries while a secret rolls; a timestamp outside the tolerance (300 s) is
//! refused even when correctly signed (a replay).

use reqwest::header::HeaderMap;
use serde::Deserialize;
use switchyard_model::events::payouts::PayoutStatus;

use super::transformers::status;
use crate::{
    kyc::WebhookRejection,
    payouts::PayoutNotice,
    signing::{Alg, SecretPair, equal, hmac, unhex},
};

/// Stripe's default tolerance.
pub const TOLERANCE_S: i64 = 300;

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: PayoutObject,
}

#[derive(Debug, Deserialize)]
struct PayoutObject {
    id: String,
    object: String,
    status: String,
    #[serde(default)]
    failure_code: Option<String>,
}

/// Verifies the signature and reads a payout event.
pub fn verify(
    secret: &SecretPair,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<PayoutNotice, WebhookRejection> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(WebhookRejection::MissingSignature)?;
    let mut t: Option<i64> = None;
    let mut v1: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse().ok(),
            Some(("v1", v)) => v1.extend(unhex(v)),
            _ => {}
        }
    }
    let t = t.ok_or(WebhookRejection::MissingSignature)?;
    if v1.is_empty() {
        return Err(WebhookRejection::MissingSignature);
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    if !secret.any(|key| {
        let expected = hmac(Alg::Sha256, key, &signed);
        v1.iter().any(|sig| equal(sig, &expected))
    }) {
        return Err(WebhookRejection::BadSignature);
    }
    if (now_ms / 1000 - t).abs() > TOLERANCE_S {
        return Err(WebhookRejection::Stale);
    }
    let event: Event = serde_json::from_slice(body).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
    if event.data.object.object != "payout" || !event.kind.starts_with("payout.") {
        return Err(WebhookRejection::Malformed(format!(
            "not a payout event: {}",
            event.kind
        )));
    }
    let status: PayoutStatus = status(&event.data.object.status)
        .ok_or_else(|| WebhookRejection::Malformed(format!("unknown payout status {:?}", event.data.object.status)))?;
    Ok(PayoutNotice {
        event_id: event.id,
        provider_reference: event.data.object.id,
        status,
        occurred_at_ms: event.created * 1000,
        reason: match event.data.object.failure_code.as_deref() {
            Some(code) => Some(reason(code)),
            None if event.data.object.status == "canceled" => Some("cancelled"),
            None => None,
        },
    })
}

/// A Stripe payout failure code in canonical terms.
fn reason(code: &str) -> &'static str {
    match code {
        "account_closed" => "account_closed",
        "no_account" | "invalid_account_number" | "incorrect_account_holder_name" | "bank_account_restricted" => {
            "account_invalid"
        }
        "declined" | "insufficient_funds" | "debit_not_authorized" | "account_frozen" => "declined",
        _ => "other",
    }
}
