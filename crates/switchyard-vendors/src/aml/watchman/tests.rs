//! Contract tests against recorded Watchman payloads (fixtures/watchman).

use switchyard_model::events::aml::{HitCategory, ScreeningStatus};

use super::transformers::{SearchResponse, outcome};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/watchman/", $name))
    };
}

fn parse(text: &str) -> SearchResponse {
    serde_json::from_str(text).expect("search fixture")
}

#[test]
fn low_scores_are_clear() {
    let (status, hits) = outcome(&parse(fixture!("search_no_match.json")));
    assert_eq!(status, ScreeningStatus::Clear);
    assert!(hits.is_empty());
}

#[test]
fn a_near_exact_sanctions_match_is_confirmed() {
    let (status, hits) = outcome(&parse(fixture!("search_sanctioned.json")));
    assert_eq!(status, ScreeningStatus::ConfirmedMatch);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].category, HitCategory::Sanction);
    assert_eq!(hits[0].score, 99);
    assert_eq!(hits[0].list_name, "US OFAC SDN");
}

#[test]
fn a_close_but_not_exact_match_needs_review() {
    let (status, hits) = outcome(&parse(fixture!("search_possible.json")));
    assert_eq!(status, ScreeningStatus::PossibleMatch);
    assert_eq!(hits[0].score, 93);
}

#[test]
fn an_unknown_source_list_is_an_error() {
    assert!(serde_json::from_str::<SearchResponse>(fixture!("search_unknown_list.json")).is_err());
}

/// A refused search, as recorded: permanent, and the name it echoed stays out of the failure; a
/// server error to a search (a read) is simply retried.
#[tokio::test]
async fn a_refused_search_is_permanent_without_the_name_it_echoed() {
    let e = crate::testing::answer(400, &[], fixture!("error_bad_request.json"), false).await;
    assert!(!e.is_retryable());
    let f = e.to_failure();
    assert_eq!(f.code, "provider_rejected");
    assert!(f.message.starts_with("400"), "{}", f.message);
    assert!(f.message.contains(r#""error":"…""#), "{}", f.message);
    assert!(!f.message.contains("Lovelace"), "{}", f.message);
    let e = crate::testing::answer(500, &[], fixture!("error_bad_request.json"), false).await;
    assert!(e.is_retryable(), "{e:?}");
}
