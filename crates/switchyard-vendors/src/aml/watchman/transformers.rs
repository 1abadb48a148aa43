//! Watchman's types and their exhaustive mapping into the canonical model.

use serde::Deserialize;
use switchyard_model::events::aml::{HitCategory, ScreeningHit, ScreeningStatus};

#[derive(Debug, Deserialize)]
pub(super) struct SearchResponse {
    #[serde(default)]
    pub entities: Vec<Entity>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Entity {
    pub name: String,
    pub source_list: SourceList,
    #[serde(rename = "match")]
    pub score: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum SourceList {
    UsOfac,
    UsCsl,
    UsNonSdn,
    UsFincen311,
    UkCsl,
    EuCsl,
    UnCsl,
}

fn category(s: SourceList) -> HitCategory {
    match s {
        SourceList::UsOfac | SourceList::UsCsl | SourceList::UkCsl | SourceList::EuCsl | SourceList::UnCsl => {
            HitCategory::Sanction
        }
        SourceList::UsNonSdn | SourceList::UsFincen311 => HitCategory::Watchlist,
    }
}

fn list_name(s: SourceList) -> &'static str {
    match s {
        SourceList::UsOfac => "US OFAC SDN",
        SourceList::UsCsl => "US Consolidated Screening List",
        SourceList::UsNonSdn => "US OFAC non-SDN",
        SourceList::UsFincen311 => "US FinCEN 311",
        SourceList::UkCsl => "UK Consolidated List",
        SourceList::EuCsl => "EU Consolidated List",
        SourceList::UnCsl => "UN Consolidated List",
    }
}

/// Scores at or above this on a sanctions list are a confirmed match.
pub(super) const CONFIRMED: f64 = 0.97;
/// Scores at or above this need review.
pub(super) const POSSIBLE: f64 = 0.85;

pub(super) fn outcome(resp: &SearchResponse) -> (ScreeningStatus, Vec<ScreeningHit>) {
    let hits: Vec<(f64, ScreeningHit)> = resp
        .entities
        .iter()
        .filter(|e| e.score >= POSSIBLE)
        .map(|e| {
            (
                e.score,
                ScreeningHit {
                    list_name: list_name(e.source_list).to_string(),
                    matched_name: e.name.clone(),
                    category: category(e.source_list),
                    score: (e.score * 100.0).round().clamp(0.0, 100.0) as i32,
                },
            )
        })
        .collect();
    let confirmed = hits
        .iter()
        .any(|(s, h)| *s >= CONFIRMED && h.category == HitCategory::Sanction);
    let status = match (confirmed, hits.is_empty()) {
        (true, _) => ScreeningStatus::ConfirmedMatch,
        (false, false) => ScreeningStatus::PossibleMatch,
        (false, true) => ScreeningStatus::Clear,
    };
    (status, hits.into_iter().map(|(_, h)| h).collect())
}
