//! SEON's types and their mapping into the canonical model.

use serde::{Deserialize, Serialize};
use switchyard_model::events::fraud::{Channel, FraudDecision};

use crate::fraud::{FraudOutcome, Transaction, reason_codes};

#[derive(Debug, Serialize)]
pub struct FraudRequest<'a> {
    pub action_type: &'static str,
    pub transaction_id: &'a str,
    pub user_id: &'a str,
    /// The major-unit amount as a JSON number: exact decimal text of the minor units.
    pub transaction_amount: serde_json::Number,
    pub transaction_currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<&'a str>,
    pub custom_fields: CustomFields<'a>,
    pub config: ModuleConfig,
}

#[derive(Debug, Serialize)]
pub struct CustomFields<'a> {
    pub beneficiary_id: &'a str,
    pub channel: &'static str,
}

/// Modules switched off: only the transaction rules run (no email, phone or IP look-ups: we send
/// none of those).
#[derive(Debug, Serialize)]
pub struct ModuleConfig {
    pub email_api: bool,
    pub phone_api: bool,
    pub ip_api: bool,
    pub device_fingerprinting: bool,
}

impl<'a> FraudRequest<'a> {
    pub fn new(tx: &'a Transaction, amount: serde_json::Number) -> Self {
        FraudRequest {
            action_type: "withdrawal",
            transaction_id: &tx.transaction_id,
            user_id: &tx.customer_id,
            transaction_amount: amount,
            transaction_currency: &tx.amount.currency,
            device_id: tx.device_id.as_deref(),
            custom_fields: CustomFields {
                beneficiary_id: &tx.counterparty_id,
                channel: match tx.channel {
                    Channel::Web => "web",
                    Channel::Mobile => "mobile",
                    Channel::Api => "api",
                    Channel::Branch => "branch",
                },
            },
            config: ModuleConfig {
                email_api: false,
                phone_api: false,
                ip_api: false,
                device_fingerprinting: tx.device_id.is_some(),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct FraudResponse {
    pub success: bool,
    #[serde(default)]
    pub error: Option<ApiError>,
    /// An object of [`Data`] on success (`{}` with an error).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

impl ApiError {
    pub fn code(&self) -> String {
        match &self.code {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Data {
    pub id: String,
    pub state: State,
    pub fraud_score: f64,
    #[serde(default)]
    pub applied_rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Approve,
    Review,
    Decline,
}

#[derive(Debug, Deserialize)]
pub struct Rule {
    pub name: String,
}

/// SEON's rule names → canonical codes.
const REASON_TABLE: &[(&[&str], &str)] = &[
    (&["velocity"], "velocity"),
    (&["transactions in the last"], "velocity"),
    (&["attempts"], "velocity"),
    (&["device"], "device"),
    (&["browser"], "device"),
    (&["ip address"], "network"),
    (&["vpn"], "network"),
    (&["tor exit"], "network"),
    (&["email"], "identity"),
    (&["phone"], "identity"),
    (&["name"], "identity"),
    (&["card"], "payment_method"),
    (&["beneficiary"], "payment_method"),
    (&["amount"], "amount"),
    (&["blacklist"], "list_match"),
    (&["blocklist"], "list_match"),
    (&["watchlist"], "list_match"),
    (&["new account"], "behaviour"),
    (&["behaviour"], "behaviour"),
    (&["behavior"], "behaviour"),
];

pub fn outcome(data: &Data) -> Result<FraudOutcome, String> {
    if !(0.0..=100.0).contains(&data.fraud_score) {
        return Err(format!("fraud_score {} outside 0..100", data.fraud_score));
    }
    Ok(FraudOutcome {
        provider_reference: Some(data.id.clone()),
        score: (data.fraud_score * 10.0).round() as i32,
        decision: match data.state {
            State::Approve => FraudDecision::Allow,
            State::Review => FraudDecision::Review,
            State::Decline => FraudDecision::Deny,
        },
        reasons: reason_codes(data.applied_rules.iter().map(|r| r.name.as_str()), REASON_TABLE),
    })
}
