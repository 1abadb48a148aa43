//! Sift's types and their mapping into the canonical model.

use serde::{Deserialize, Serialize};
use switchyard_model::events::fraud::{Channel, FraudDecision};

use crate::fraud::{FraudOutcome, Transaction, reason_codes};

/// The `$transaction` event we send.
#[derive(Debug, Serialize)]
pub struct TransactionEvent<'a> {
    #[serde(rename = "$type")]
    pub kind: &'static str,
    #[serde(rename = "$api_key")]
    pub api_key: &'a str,
    #[serde(rename = "$user_id")]
    pub user_id: &'a str,
    #[serde(rename = "$transaction_id")]
    pub transaction_id: &'a str,
    #[serde(rename = "$transaction_type")]
    pub transaction_type: &'static str,
    #[serde(rename = "$amount")]
    pub amount: i64,
    #[serde(rename = "$currency_code")]
    pub currency_code: &'a str,
    #[serde(rename = "$session_id", skip_serializing_if = "Option::is_none")]
    pub session_id: Option<&'a str>,
    #[serde(rename = "$app", skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    #[serde(rename = "$browser", skip_serializing_if = "Option::is_none")]
    pub browser: Option<Browser>,
    /// A custom field (no `$`): the beneficiary.
    pub beneficiary_id: &'a str,
}

#[derive(Debug, Serialize)]
pub struct App {
    #[serde(rename = "$os")]
    pub os: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Browser {
    #[serde(rename = "$user_agent")]
    pub user_agent: &'static str,
}

impl<'a> TransactionEvent<'a> {
    pub fn new(tx: &'a Transaction, api_key: &'a str, micros: i64) -> Self {
        let (app, browser) = match tx.channel {
            Channel::Mobile => (Some(App { os: "unknown" }), None),
            Channel::Web => (None, Some(Browser { user_agent: "unknown" })),
            Channel::Api | Channel::Branch => (None, None),
        };
        TransactionEvent {
            kind: "$transaction",
            api_key,
            user_id: &tx.customer_id,
            transaction_id: &tx.transaction_id,
            transaction_type: "$withdrawal",
            amount: micros,
            currency_code: &tx.amount.currency,
            session_id: tx.device_id.as_deref(),
            app,
            browser,
            beneficiary_id: &tx.counterparty_id,
        }
    }
}

/// The Events API's answer.
#[derive(Debug, Deserialize)]
pub struct EventResponse {
    pub status: i64,
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub score_response: Option<ScoreResponse>,
}

#[derive(Debug, Deserialize)]
pub struct ScoreResponse {
    #[serde(default)]
    pub scores: std::collections::BTreeMap<String, AbuseScore>,
    #[serde(default)]
    pub workflow_statuses: Vec<WorkflowStatus>,
}

#[derive(Debug, Deserialize)]
pub struct AbuseScore {
    pub score: f64,
    #[serde(default)]
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Deserialize)]
pub struct Reason {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct WorkflowStatus {
    #[serde(default)]
    pub history: Vec<WorkflowStep>,
}

#[derive(Debug, Deserialize)]
pub struct WorkflowStep {
    pub app: String,
    #[serde(default)]
    pub config: Option<StepConfig>,
}

#[derive(Debug, Deserialize)]
pub struct StepConfig {
    #[serde(default)]
    pub decision_id: Option<String>,
}

/// Sift's reason names → canonical codes.
const REASON_TABLE: &[(&[&str], &str)] = &[
    // What a count is of comes first: "number of users sharing this beneficiary" is about the
    // beneficiary, "number of withdrawals in the last hour" about velocity.
    (&["card"], "payment_method"),
    (&["bank account"], "payment_method"),
    (&["beneficiary"], "payment_method"),
    (&["device"], "device"),
    (&["session"], "device"),
    (&["ip address"], "network"),
    (&["proxy"], "network"),
    (&["email"], "identity"),
    (&["name"], "identity"),
    (&["address"], "identity"),
    (&["account age"], "behaviour"),
    (&["amount"], "amount"),
    (&["label"], "list_match"),
    (&["list"], "list_match"),
    (&["number of"], "velocity"),
    (&["velocity"], "velocity"),
];

/// Thresholds on the 0–1 `payment_abuse` score when no workflow decided.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub review_at: f64,
    pub block_at: f64,
}

/// The canonical outcome of an answer, or why it is not one.
pub fn outcome(resp: &EventResponse, t: Thresholds) -> Result<FraudOutcome, String> {
    let scores = resp
        .score_response
        .as_ref()
        .ok_or("no score_response (return_score was not honoured)")?;
    let abuse = scores.scores.get("payment_abuse").ok_or("no payment_abuse score")?;
    if !(0.0..=1.0).contains(&abuse.score) {
        return Err(format!("score {} outside 0..1", abuse.score));
    }
    let decided = scores
        .workflow_statuses
        .iter()
        .flat_map(|w| w.history.iter())
        .filter(|s| s.app == "decision")
        .filter_map(|s| s.config.as_ref()?.decision_id.as_deref())
        .next_back()
        .map(decision_of)
        .transpose()?;
    let decision = decided.unwrap_or(if abuse.score >= t.block_at {
        FraudDecision::Deny
    } else if abuse.score >= t.review_at {
        FraudDecision::Review
    } else {
        FraudDecision::Allow
    });
    Ok(FraudOutcome {
        provider_reference: resp.request.clone(),
        score: (abuse.score * 1000.0).round() as i32,
        decision,
        reasons: reason_codes(abuse.reasons.iter().map(|r| r.name.as_str()), REASON_TABLE),
    })
}

/// A workflow decision id, by the category words Sift's decisions are named with.
fn decision_of(id: &str) -> Result<FraudDecision, String> {
    let d = id.to_lowercase();
    if d.contains("block") {
        Ok(FraudDecision::Deny)
    } else if d.contains("watch") || d.contains("review") || d.contains("hold") {
        Ok(FraudDecision::Review)
    } else if d.contains("accept") || d.contains("allow") || d.contains("approve") {
        Ok(FraudDecision::Allow)
    } else {
        Err(format!(
            "decision {id:?} names no category (block, watch/review/hold, accept/allow)"
        ))
    }
}
