//! Watchman-shaped simulator (v2): unauthenticated `GET /v2/search` over a small built-in list,
//! scores 0–1 by name similarity (Jaro-Winkler over sorted name tokens), `{"error": "..."}` errors.

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sim::{Sim, with_faults};

/// The simulated lists: (name, entity type, source list, source id).
const LISTED: &[(&str, &str, &str, &str)] = &[
    ("SANCTIONOV, Viktor", "person", "us_ofac", "90210"),
    ("SANCTIONOV, Viktor Petrovich", "person", "eu_csl", "EU.4411.22"),
    ("KRAVETS, Boris", "person", "un_csl", "QDi.412"),
    ("ORLOVA, Marta", "person", "uk_csl", "RUS1877"),
    ("DELACROIX, Jean-Marc", "person", "us_non_sdn", "NS-3321"),
    ("ACME SHELL HOLDINGS", "business", "us_fincen_311", "311-77"),
];

pub fn error_body(status: u16) -> Value {
    json!({"error": match status { 400 => "bad request", 429 => "too many requests", _ => "internal error" }})
}

pub fn router(sim: Sim) -> Router {
    let api = Router::new()
        .route("/v2/search", get(search))
        .route("/v2/listinfo", get(listinfo))
        .with_state(sim.clone());
    with_faults(api, sim, error_body)
}

#[derive(Deserialize)]
struct SearchQuery {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "minMatch")]
    min_match: Option<f64>,
}

async fn search(State(sim): State<Sim>, Query(q): Query<SearchQuery>) -> Response {
    let Some(name) = q.name.filter(|n| !n.trim().is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "missing name parameter"})),
        )
            .into_response();
    };
    let kind = q.kind.unwrap_or_default();
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let min = q.min_match.unwrap_or(0.0);
    sim.record("search", &name);
    let mut entities: Vec<(f64, Value)> = LISTED
        .iter()
        .filter(|(_, t, _, _)| kind.is_empty() || *t == kind)
        .map(|(n, t, list, id)| {
            let score = (similarity(&name, n) * 1000.0).round() / 1000.0;
            (
                score,
                json!({"name": n, "entityType": t, "sourceList": list, "sourceID": id, "match": score,
                "sanctionsInfo": {"programs": ["SIM"], "secondary": false}}),
            )
        })
        .filter(|(s, _)| *s >= min)
        .collect();
    entities.sort_by(|a, b| b.0.total_cmp(&a.0));
    entities.truncate(limit);
    Json(json!({"query": {"name": name, "entityType": kind}, "entities": entities.into_iter().map(|(_, e)| e).collect::<Vec<_>>()}))
        .into_response()
}

async fn listinfo() -> Json<Value> {
    Json(
        json!({"lists": {"us_ofac": 1, "eu_csl": 1, "un_csl": 1, "uk_csl": 1, "us_non_sdn": 1, "us_fincen_311": 1},
        "version": "sim", "startedAt": chrono::Utc::now().to_rfc3339()}),
    )
}

fn tokens(s: &str) -> String {
    let mut t: Vec<String> = s
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    t.sort();
    t.join(" ")
}

/// Jaro-Winkler similarity of sorted lower-case tokens; a query whose tokens are all in the listed
/// name compares against just those tokens (so "Viktor Sanctionov" matches "SANCTIONOV, Viktor
/// Petrovich" closely).
fn similarity(query: &str, listed: &str) -> f64 {
    let q = tokens(query);
    let l = tokens(listed);
    let qs: Vec<&str> = q.split(' ').collect();
    let subset: Vec<&str> = l
        .split(' ')
        .filter(|w| qs.iter().any(|x| jaro_winkler(x, w) > 0.9))
        .collect();
    let partial = if subset.len() == qs.len() {
        jaro_winkler(&q, &subset.join(" ")) * 0.99
    } else {
        0.0
    };
    jaro_winkler(&q, &l).max(partial)
}

fn jaro_winkler(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut a_match = vec![false; a.len()];
    let mut b_match = vec![false; b.len()];
    let mut matches = 0.0;
    for (i, ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for j in lo..hi {
            if !b_match[j] && b[j] == *ca {
                a_match[i] = true;
                b_match[j] = true;
                matches += 1.0;
                break;
            }
        }
    }
    if matches == 0.0 {
        return 0.0;
    }
    let a_seq: Vec<char> = a.iter().zip(&a_match).filter(|(_, m)| **m).map(|(c, _)| *c).collect();
    let b_seq: Vec<char> = b.iter().zip(&b_match).filter(|(_, m)| **m).map(|(c, _)| *c).collect();
    let transpositions = a_seq.iter().zip(&b_seq).filter(|(x, y)| x != y).count() as f64 / 2.0;
    let jaro = (matches / a.len() as f64 + matches / b.len() as f64 + (matches - transpositions) / matches) / 3.0;
    let prefix = a.iter().zip(&b).take(4).take_while(|(x, y)| x == y).count() as f64;
    jaro + prefix * 0.1 * (1.0 - jaro)
}

#[cfg(test)]
mod tests {
    use super::similarity;

    #[test]
    fn exact_and_near_names_score_high_and_others_low() {
        assert!(similarity("Viktor Sanctionov", "SANCTIONOV, Viktor") > 0.99);
        assert!(similarity("Viktor Sanctionow", "SANCTIONOV, Viktor") > 0.9);
        assert!(similarity("Ada Lovelace", "SANCTIONOV, Viktor") < 0.7);
    }
}
