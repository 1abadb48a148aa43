//! Contract tests against recorded Mesh payloads (fixtures/mesh).

use switchyard_model::events::aml::{HitCategory, ScreeningStatus};

use super::transformers::{Alert, Profile, RisksResponse, ScreeningResult, WorkflowResponse, hit, screened, status};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/mesh/", $name))
    };
}

fn workflow(text: &str) -> WorkflowResponse {
    serde_json::from_str(text).expect("workflow fixture")
}

fn alert() -> Alert {
    Alert {
        identifier: "alert-1".into(),
        profile: Profile {
            name: "Pepita Politica".into(),
        },
    }
}

#[test]
fn no_profiles_is_clear() {
    let s = screened(&workflow(fixture!("workflow_no_profiles.json"))).expect("shape");
    assert_eq!(s.result, ScreeningResult::NoProfiles);
    assert_eq!(s.customer_identifier, "cust-31a8");
    assert_eq!(status(s.level, &[]), ScreeningStatus::Clear);
}

#[test]
fn pep_risks_are_a_possible_match() {
    let s = screened(&workflow(fixture!("workflow_no_profiles.json"))).expect("shape");
    let risks: RisksResponse = serde_json::from_str(fixture!("risks_pep.json")).expect("risks");
    let hits: Vec<_> = risks.risks.iter().map(|r| hit(&alert(), r, s.level)).collect();
    assert_eq!(
        hits.iter().map(|h| h.category).collect::<Vec<_>>(),
        vec![HitCategory::Pep, HitCategory::AdverseMedia]
    );
    assert_eq!(status(s.level, &hits), ScreeningStatus::PossibleMatch);
}

#[test]
fn a_prohibited_customer_with_a_sanction_risk_is_confirmed() {
    let s = screened(&workflow(fixture!("workflow_has_profiles_prohibited.json"))).expect("shape");
    let risks: RisksResponse = serde_json::from_str(fixture!("risks_sanction.json")).expect("risks");
    let hits: Vec<_> = risks.risks.iter().map(|r| hit(&alert(), r, s.level)).collect();
    assert_eq!(hits[0].list_name, "OFAC SDN List");
    assert_eq!(hits[0].score, 100);
    assert_eq!(status(s.level, &hits), ScreeningStatus::ConfirmedMatch);
}

#[test]
fn an_unknown_risk_level_or_type_is_an_error() {
    assert!(screened(&workflow(fixture!("workflow_bad_level.json"))).is_err());
    assert!(serde_json::from_str::<RisksResponse>(r#"{"risks":[{"type":"ASTROLOGY"}]}"#).is_err());
}

/// A rate limit, as recorded with its reset header: retried after the delay the vendor names; a
/// gateway error to a screening (which may have run) is in doubt, not failed.
#[tokio::test]
async fn rate_limits_carry_the_reset_delay_and_gateway_errors_leave_doubt() {
    let e = crate::testing::answer(
        429,
        &[("ratelimit-reset", "7")],
        fixture!("error_rate_limited.json"),
        true,
    )
    .await;
    assert!(matches!(e, crate::VendorError::RateLimited { retry_after: Some(d) } if d.as_secs() == 7));
    assert!(e.is_retryable());
    let e = crate::testing::answer(504, &[], fixture!("error_rate_limited.json"), true).await;
    assert!(matches!(e, crate::VendorError::Ambiguous(_)), "{e:?}");
    let e = crate::testing::answer(504, &[], fixture!("error_rate_limited.json"), false).await;
    assert!(
        matches!(e, crate::VendorError::Transient(_)),
        "a read is simply retried: {e:?}"
    );
}

/// A token Mesh no longer honours (it restarted, or revoked it early) is replaced once: the refused
/// screening (401: nothing was done) is sent again with a fresh token.
#[tokio::test]
async fn a_refused_token_is_replaced_once_and_the_screening_sent_again() {
    #![allow(clippy::unwrap_used)]
    use crate::aml::{AmlVendor, Subject};
    const TOKEN: &str = r#"{"access_token":"tok-a","expires_in":3600,"token_type":"Bearer"}"#;
    let (base, seen) = crate::testing::scripted(vec![
        (200, TOKEN),
        (401, r#"{"title":"Unauthorized","detail":"token not recognised"}"#),
        (200, TOKEN),
        (200, fixture!("workflow_no_profiles.json")),
    ])
    .await;
    let mesh = mesh(base);
    let subject = Subject {
        subject_id: "s-1".into(),
        idempotency_key: "sy-1".into(),
        person: switchyard_model::events::common::Person {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            date_of_birth: None,
            nationality: None,
            address: None,
            email: None,
            phone: None,
        },
    };
    let out = mesh.screen(&subject).await.unwrap();
    assert_eq!(out.status, ScreeningStatus::Clear);
    let seen = seen.await.unwrap();
    let heads: Vec<&str> = seen.iter().map(|r| r.lines().next().unwrap()).collect();
    assert_eq!(
        heads,
        [
            "POST /v2/token HTTP/1.1",
            "POST /v2/workflows/sync/create-and-screen HTTP/1.1",
            "POST /v2/token HTTP/1.1",
            "POST /v2/workflows/sync/create-and-screen HTTP/1.1",
        ]
    );
}

/// Reconciliation reads a screening back by its workflow: what the screening step found, and a
/// workflow Mesh does not have (404) is no screening, not an error.
#[tokio::test]
async fn a_kept_screening_is_read_back_by_its_workflow() {
    #![allow(clippy::unwrap_used)]
    use crate::aml::AmlVendor;
    const TOKEN: &str = r#"{"access_token":"tok-a","expires_in":3600,"token_type":"Bearer"}"#;
    let (base, seen) = crate::testing::scripted(vec![
        (200, TOKEN),
        (200, fixture!("workflow_has_profiles_prohibited.json")),
        (200, fixture!("workflow_no_profiles.json")),
        (404, r#"{"title":"Not Found","detail":"workflow not found"}"#),
    ])
    .await;
    let mesh = mesh(base);
    let hit = mesh.kept("wf-1").expect("Mesh keeps workflows").await.unwrap().unwrap();
    assert!(hit.has_hits);
    let clear = mesh.kept("wf-2").expect("Mesh keeps workflows").await.unwrap().unwrap();
    assert!(!clear.has_hits);
    assert_eq!(clear.raw["screening_result"], "NO_PROFILES");
    assert_eq!(
        mesh.kept("wf-3").unwrap().await.unwrap(),
        None,
        "404: Mesh has no such workflow"
    );
    let seen = seen.await.unwrap();
    assert!(seen[1].starts_with("GET /v2/workflows/wf-1 HTTP/1.1"), "{}", seen[1]);
    assert_eq!(seen.len(), 4, "one token for all");
}

/// The client against a recorded server at `base`.
fn mesh(base: String) -> super::Mesh {
    #![allow(clippy::unwrap_used)]
    super::Mesh::new(super::MeshConfig {
        partner: "aml-mesh".into(),
        base_url: base,
        realm: "r".into(),
        username: switchyard_runtime::Secret::new("u"),
        password: switchyard_runtime::Secret::new("p"),
        screening_configuration: "c".into(),
        timeout: std::time::Duration::from_secs(5),
    })
    .unwrap()
}
