//! Contract tests against recorded Onfido payloads (fixtures/onfido).

use reqwest::header::{HeaderMap, HeaderValue};
use switchyard_model::events::kyc::KycStatus;

use super::transformers::{CheckResponse, ChecksResponse, ReportsResponse, check_status, key_tag};
use super::webhooks;
use crate::{kyc::WebhookRejection, signing::SecretPair};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/onfido/", $name))
    };
}

fn check(text: &str) -> CheckResponse {
    serde_json::from_str(text).expect("check fixture")
}

fn reports(text: &str) -> ReportsResponse {
    serde_json::from_str(text).expect("reports fixture")
}

#[test]
fn the_check_an_earlier_start_created_is_found_by_its_key_tag() {
    let list: ChecksResponse =
        serde_json::from_str(fixture!("checks_list_for_applicant.json")).expect("checks list fixture");
    let found: Vec<&str> = list
        .checks
        .iter()
        .filter(|c| c.tags.contains(&key_tag("sy-4f1c")))
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(found, vec!["b2a4c1d8-7e55-4d2b-9c6e-1f0a3b7d9e21"]);
    assert!(!list.checks.iter().any(|c| c.tags.contains(&key_tag("sy-other"))));
}

#[test]
fn check_statuses_map_to_canonical_statuses() {
    assert_eq!(
        check_status(&check(fixture!("check_in_progress.json")), &[]).0,
        KycStatus::Pending
    );
    assert_eq!(
        check_status(&check(fixture!("check_complete_clear.json")), &[]).0,
        KycStatus::Approved
    );
    let (status, reasons) = check_status(&check(fixture!("check_awaiting_applicant.json")), &[]);
    assert_eq!(status, KycStatus::NeedsDocuments);
    assert_eq!(reasons, vec![crate::kyc::reason::DOCUMENTS_REQUIRED.to_string()]);
}

#[test]
fn a_consider_result_is_decided_by_its_reports() {
    let consider = check(fixture!("check_complete_consider.json"));
    let (status, reasons) = check_status(&consider, &reports(fixture!("reports_document_rejected.json")).reports);
    assert_eq!(status, KycStatus::Rejected);
    assert_eq!(reasons, vec![crate::kyc::reason::DOCUMENT_REJECTED.to_string()]);
    let (status, reasons) = check_status(&consider, &reports(fixture!("reports_caution.json")).reports);
    assert_eq!(status, KycStatus::Review);
    assert_eq!(reasons, vec![crate::kyc::reason::DOCUMENT_NEEDS_REVIEW.to_string()]);
}

#[test]
fn an_unknown_check_status_is_an_error_not_a_guess() {
    assert!(serde_json::from_str::<CheckResponse>(fixture!("check_unknown_status.json")).is_err());
}

/// A validation error, as recorded, through the client's own response path: permanent, with the
/// vendor's error type and the refused field's name kept and its free text dropped.
#[tokio::test]
async fn a_validation_error_is_permanent_and_keeps_the_vendors_error_type() {
    let e = crate::testing::answer(422, &[], fixture!("error_validation.json"), true).await;
    assert!(!e.is_retryable());
    let f = e.to_failure();
    assert_eq!(f.code, "provider_rejected");
    assert!(f.message.starts_with("422"), "{}", f.message);
    assert!(f.message.contains(r#""type":"validation_error""#), "{}", f.message);
    assert!(f.message.contains("last_name"), "{}", f.message);
    assert!(!f.message.contains("can't be blank"), "{}", f.message);
}

fn headers(sig: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(webhooks::SIGNATURE_HEADER, HeaderValue::from_str(sig).expect("header"));
    h
}

/// 2026-11-25T07:06:40Z: more than 72 h after the fixture completed.
const NOW_MS: i64 = 1_795_600_000_000;

#[test]
fn a_signed_webhook_is_accepted_and_asks_for_a_status_pull() {
    let body = fixture!("webhook_check_completed.json").as_bytes();
    let sig = fixture!("webhook_check_completed.sig");
    let secret = SecretPair::new("onfido-fixture-secret", None).expect("secret");
    // Completed 2026-11-20T10:16:41Z; received an hour later.
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-20T11:16:41Z")
        .expect("t")
        .timestamp_millis();
    let notice = webhooks::verify(&secret, &headers(sig), body, now).expect("valid webhook");
    assert_eq!(notice.provider_reference, "b2a4c1d8-7e55-4d2b-9c6e-1f0a3b7d9e21");
    assert_eq!(notice.outcome, None, "Onfido webhooks carry no result: pull the check");
    assert!(notice.event_id.contains("check.completed"));
    // The previous secret still verifies during a rotation.
    let rotated = SecretPair::new("new-secret", Some("onfido-fixture-secret")).expect("secret");
    assert!(webhooks::verify(&rotated, &headers(sig), body, now).is_ok());
}

#[test]
fn forged_tampered_stale_and_unsigned_webhooks_are_refused() {
    let body = fixture!("webhook_check_completed.json").as_bytes();
    let sig = fixture!("webhook_check_completed.sig");
    let secret = SecretPair::new("onfido-fixture-secret", None).expect("secret");
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-20T11:16:41Z")
        .expect("t")
        .timestamp_millis();
    let wrong = SecretPair::new("someone-else", None).expect("secret");
    assert_eq!(
        webhooks::verify(&wrong, &headers(sig), body, now),
        Err(WebhookRejection::BadSignature)
    );
    let mut tampered = body.to_vec();
    tampered[20] ^= 1;
    assert_eq!(
        webhooks::verify(&secret, &headers(sig), &tampered, now),
        Err(WebhookRejection::BadSignature)
    );
    assert_eq!(
        webhooks::verify(&secret, &HeaderMap::new(), body, now),
        Err(WebhookRejection::MissingSignature)
    );
    assert_eq!(
        webhooks::verify(&secret, &headers("zz"), body, now),
        Err(WebhookRejection::BadSignature)
    );
    assert!(NOW_MS > now);
    assert_eq!(
        webhooks::verify(&secret, &headers(sig), body, NOW_MS),
        Err(WebhookRejection::Stale)
    );
}

/// The replay window where the scheme has none: a webhook whose object carries no completion time
/// (a check started, awaiting the applicant) cannot be dated, so it is accepted however late, but it
/// can only ever make the receiver ask Onfido for the check's current status: it carries no outcome
/// of its own, so a replay cannot move a case back to an old state.
#[test]
fn an_undated_webhook_can_only_trigger_a_status_pull() {
    let body = br#"{"payload":{"resource_type":"check","action":"check.started","object":{"id":"c-undated","status":"in_progress","href":"https://api.eu.onfido.com/v3.6/checks/c-undated"}}}"#;
    let secret = SecretPair::new("onfido-fixture-secret", None).expect("secret");
    let sig = webhooks::sign(b"onfido-fixture-secret", body);
    let notice = webhooks::verify(&secret, &headers(&sig), body, NOW_MS).expect("accepted");
    assert_eq!(notice.outcome, None);
    assert_eq!(notice.provider_reference, "c-undated");
    assert_eq!(
        notice.event_id, "check:c-undated:check.started:",
        "a replay is a duplicate"
    );
}

/// Reconciliation's list: applicants newest first, each one's checks; a check's key tag gives our
/// reference (a check without one names nothing of ours); an applicant older than the window ends
/// the list (no further page asked for, its checks not read); no personal data in the evidence.
#[tokio::test]
async fn cases_are_listed_by_applicant_with_our_key_from_the_tag() {
    use crate::kyc::KycVendor;
    let (base, seen) = crate::testing::scripted(vec![
        (200, fixture!("applicants_page.json")),
        (200, fixture!("checks_list_for_applicant.json")),
    ])
    .await;
    let onfido = super::Onfido::new(super::OnfidoConfig {
        partner: "kyc-onfido".into(),
        base_url: base,
        api_token: switchyard_runtime::Secret::new("t"),
        webhook_secret: SecretPair::new("w", None).unwrap(),
        timeout: std::time::Duration::from_secs(5),
    })
    .unwrap();
    let since = chrono::DateTime::parse_from_rfc3339("2026-11-10T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    let page = onfido.list(since, None).expect("Onfido lists its cases").await.unwrap();
    let got: Vec<_> = page
        .items
        .iter()
        .map(|c| (c.provider_reference.as_str(), c.our_reference.as_deref(), c.status))
        .collect();
    assert_eq!(
        got,
        [
            ("7d1e2f30-4a5b-4c6d-8e9f-0a1b2c3d4e5f", None, KycStatus::Review),
            (
                "b2a4c1d8-7e55-4d2b-9c6e-1f0a3b7d9e21",
                Some("sy-4f1c"),
                KycStatus::Pending
            ),
        ]
    );
    assert_eq!(page.next, None, "an applicant older than the window ends the list");
    let seen = seen.await.unwrap();
    assert_eq!(seen.len(), 2, "the old applicant's checks are not read");
    assert!(
        seen[0].starts_with("GET /applicants?page=1&per_page=100 "),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].starts_with("GET /checks?applicant_id=0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f "),
        "{}",
        seen[1]
    );
    let evidence = serde_json::to_string(&page.items).unwrap();
    assert!(!evidence.contains("Lovelace"), "{evidence}");
}
