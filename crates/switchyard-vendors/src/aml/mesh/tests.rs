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
