//! Contract tests against recorded Sumsub payloads (fixtures/sumsub).

use reqwest::header::{HeaderMap, HeaderValue};
use switchyard_model::events::kyc::KycStatus;

use super::client::request_signature;
use super::transformers::{StatusResponse, status};
use super::webhooks;
use crate::{
    kyc::WebhookRejection,
    signing::{Alg, SecretPair, hex, hmac},
};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sumsub/", $name))
    };
}

fn mapped(text: &str) -> (KycStatus, Vec<String>) {
    let s: StatusResponse = serde_json::from_str(text).expect("status fixture");
    status(s.review_status, s.review_result.as_ref())
}

#[test]
fn review_statuses_map_to_canonical_statuses() {
    assert_eq!(mapped(fixture!("status_init.json")).0, KycStatus::Pending);
    assert_eq!(mapped(fixture!("status_pending.json")).0, KycStatus::Pending);
    assert_eq!(mapped(fixture!("status_green.json")).0, KycStatus::Approved);
    assert_eq!(mapped(fixture!("status_on_hold.json")).0, KycStatus::Review);
    let (s, reasons) = mapped(fixture!("status_red_retry.json"));
    assert_eq!(s, KycStatus::NeedsDocuments, "RED + RETRY is a step-up");
    assert_eq!(
        reasons,
        vec!["document_unreadable", "document_incomplete"],
        "vendor labels become canonical codes"
    );
    assert_eq!(
        mapped(fixture!("status_red_final.json")),
        (KycStatus::Rejected, vec!["document_forged".to_string()])
    );
}

#[test]
fn an_unknown_review_status_is_an_error() {
    let text = fixture!("status_init.json").replace("\"init\"", "\"archived\"");
    assert!(serde_json::from_str::<StatusResponse>(&text).is_err());
}

#[test]
fn request_signature_covers_timestamp_method_path_and_body() {
    // Computed independently: hex(HMAC-SHA256("s3cret", "1700000000POST/resources/applicants?levelName=basic-kyc-level{}")).
    let sig = request_signature(
        "s3cret",
        1_700_000_000,
        "POST",
        "/resources/applicants?levelName=basic-kyc-level",
        b"{}",
    );
    assert_eq!(sig, "d5a55b8469f8260eb5c51127c2e8db8ebaac7eec415b4838256c23cc23ec5906");
    assert_ne!(
        sig,
        request_signature(
            "s3cret",
            1_700_000_001,
            "POST",
            "/resources/applicants?levelName=basic-kyc-level",
            b"{}"
        )
    );
    assert_ne!(
        sig,
        request_signature(
            "s3cret",
            1_700_000_000,
            "GET",
            "/resources/applicants?levelName=basic-kyc-level",
            b"{}"
        )
    );
    assert_ne!(
        sig,
        request_signature(
            "s3cret",
            1_700_000_000,
            "POST",
            "/resources/applicants?levelName=basic-kyc-level",
            b"{ }"
        )
    );
}

/// A refused signature, as recorded: an operator must act (manual repair), and the vendor's code and
/// correlation id (what its support asks for) survive.
#[tokio::test]
async fn auth_errors_are_manual_repair_with_the_vendors_correlation_id() {
    let e = crate::testing::answer(401, &[], fixture!("error_unauthorized.json"), false).await;
    let f = e.to_failure();
    assert_eq!(
        f.failure_class,
        switchyard_model::events::common::FailureClass::ManualRepair
    );
    assert_eq!(f.code, "provider_auth");
    assert!(f.message.contains(r#""code":401"#), "{}", f.message);
    assert!(
        f.message.contains("req-6d1f0e2c-1b8a-4c55-9e7a-0d3f2c1b0a99"),
        "{}",
        f.message
    );
}

fn headers(digest: &str, alg: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(webhooks::DIGEST_HEADER, HeaderValue::from_str(digest).expect("h"));
    h.insert(webhooks::ALG_HEADER, HeaderValue::from_str(alg).expect("h"));
    h
}

// createdAtMs of the fixtures is 1795600000000 (2026-11-25T07:06:40Z).
const SOON_AFTER: i64 = 1_795_600_060_000;

#[test]
fn a_reviewed_webhook_carries_the_answer() {
    let body = fixture!("webhook_reviewed_retry.json").as_bytes();
    let secret = SecretPair::new("sumsub-fixture-secret", None).expect("secret");
    let n = webhooks::verify(
        &secret,
        Alg::Sha256,
        &headers(fixture!("webhook_reviewed_retry.sha256"), "HMAC_SHA256_HEX"),
        body,
        SOON_AFTER,
    )
    .expect("valid");
    assert_eq!(n.provider_reference, "5f7e2c1b9a8d7e6f5a4b3c2d");
    assert_eq!(n.event_id, "req-a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d");
    let outcome = n.outcome.expect("reviewed carries an outcome");
    assert_eq!(outcome.status, KycStatus::NeedsDocuments);
}

#[test]
fn a_progress_webhook_signed_with_sha512_is_a_notice_without_outcome() {
    let body = fixture!("webhook_pending.json").as_bytes();
    let secret = SecretPair::new("sumsub-fixture-secret", None).expect("secret");
    // A partner configured (as at the vendor) for SHA-512 digests.
    let n = webhooks::verify(
        &secret,
        Alg::Sha512,
        &headers(fixture!("webhook_pending.sha512"), "HMAC_SHA512_HEX"),
        body,
        SOON_AFTER,
    )
    .expect("valid");
    assert_eq!(n.outcome, None);
}

#[test]
fn forged_stale_and_malformed_webhooks_are_refused() {
    let body = fixture!("webhook_reviewed_retry.json").as_bytes();
    let sig = fixture!("webhook_reviewed_retry.sha256");
    let secret = SecretPair::new("sumsub-fixture-secret", None).expect("secret");
    let other = SecretPair::new("not-the-secret", None).expect("secret");
    assert_eq!(
        webhooks::verify(&other, Alg::Sha256, &headers(sig, "HMAC_SHA256_HEX"), body, SOON_AFTER),
        Err(WebhookRejection::BadSignature)
    );
    // The right digest under the wrong algorithm does not verify.
    assert_eq!(
        webhooks::verify(&secret, Alg::Sha256, &headers(sig, "HMAC_SHA1_HEX"), body, SOON_AFTER),
        Err(WebhookRejection::BadSignature)
    );
    assert!(matches!(
        webhooks::verify(&secret, Alg::Sha256, &headers(sig, "ROT13"), body, SOON_AFTER),
        Err(WebhookRejection::Malformed(_))
    ));
    let four_days_later = SOON_AFTER + 4 * 24 * 3600 * 1000;
    assert_eq!(
        webhooks::verify(
            &secret,
            Alg::Sha256,
            &headers(sig, "HMAC_SHA256_HEX"),
            body,
            four_days_later
        ),
        Err(WebhookRejection::Stale)
    );
    assert_eq!(
        webhooks::verify(&secret, Alg::Sha256, &HeaderMap::new(), body, SOON_AFTER),
        Err(WebhookRejection::MissingSignature)
    );
}

#[test]
fn the_sender_cannot_choose_a_weaker_digest_than_the_one_configured() {
    let body = fixture!("webhook_reviewed_retry.json").as_bytes();
    let secret = SecretPair::new("sumsub-fixture-secret", None).expect("secret");
    // A correct SHA-1 digest, announced as SHA-1: refused by a partner configured for SHA-256.
    let sha1 = hex(&hmac(Alg::Sha1, b"sumsub-fixture-secret", body));
    assert_eq!(
        webhooks::verify(&secret, Alg::Sha256, &headers(&sha1, "HMAC_SHA1_HEX"), body, SOON_AFTER),
        Err(WebhookRejection::BadSignature)
    );
    // Accepted only where SHA-1 is what was configured.
    assert!(webhooks::verify(&secret, Alg::Sha1, &headers(&sha1, "HMAC_SHA1_HEX"), body, SOON_AFTER).is_ok());
    // Without the header, the configured algorithm applies.
    let mut bare = HeaderMap::new();
    bare.insert(
        webhooks::DIGEST_HEADER,
        HeaderValue::from_str(fixture!("webhook_reviewed_retry.sha256")).expect("h"),
    );
    assert!(webhooks::verify(&secret, Alg::Sha256, &bare, body, SOON_AFTER).is_ok());
    assert!(webhooks::digest_alg("HMAC_MD5_HEX").is_err());
}
