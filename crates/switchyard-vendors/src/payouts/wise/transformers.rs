//! Wise's types and the mapping of its transfer states.

use serde::{Deserialize, Serialize};
use switchyard_model::events::payouts::{AccountScheme, Beneficiary, PayoutStatus};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuoteRequest<'a> {
    pub source_currency: &'a str,
    pub target_currency: &'a str,
    pub target_amount: serde_json::Number,
    pub pay_out: &'static str,
}

#[derive(Debug, Deserialize)]
pub struct Quote {
    pub id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientRequest<'a> {
    pub profile: &'a str,
    pub account_holder_name: &'a str,
    pub currency: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub details: serde_json::Value,
}

impl<'a> RecipientRequest<'a> {
    /// The recipient of a beneficiary, by account scheme; a scheme Wise does not take is refused.
    pub fn new(profile: &'a str, currency: &'a str, b: &'a Beneficiary) -> Result<Self, String> {
        let a = &b.account;
        let (kind, details) = match a.scheme {
            AccountScheme::Iban => ("iban", serde_json::json!({"legalType": "PRIVATE", "IBAN": a.value})),
            AccountScheme::SortCodeAccount => {
                let sort = a
                    .bank_code
                    .as_deref()
                    .ok_or("a sort code account needs its sort code (bank_code)")?;
                (
                    "sort_code",
                    serde_json::json!({"legalType": "PRIVATE", "sortCode": sort, "accountNumber": a.value}),
                )
            }
            AccountScheme::AchRoutingAccount => {
                let routing = a
                    .bank_code
                    .as_deref()
                    .ok_or("an ACH account needs its routing number (bank_code)")?;
                let addr = b.address.as_ref().ok_or("an ACH recipient needs an address")?;
                (
                    "aba",
                    serde_json::json!({"legalType": "PRIVATE", "abartn": routing, "accountNumber": a.value,
                        "accountType": "CHECKING",
                        "address": {"country": addr.country, "city": addr.city, "postCode": addr.postal_code,
                                    "firstLine": addr.line1}}),
                )
            }
            AccountScheme::Wallet => return Err("Wise pays to bank accounts, not wallets".into()),
        };
        Ok(RecipientRequest {
            profile,
            account_holder_name: &b.name,
            currency,
            kind,
            details,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct Recipient {
    pub id: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequest<'a> {
    pub target_account: i64,
    pub quote_uuid: &'a str,
    pub customer_transaction_id: &'a str,
    pub details: TransferDetails<'a>,
}

#[derive(Debug, Serialize)]
pub struct TransferDetails<'a> {
    pub reference: &'a str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub id: i64,
    pub status: String,
    #[serde(default)]
    pub customer_transaction_id: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    /// A decimal in the major unit.
    #[serde(default)]
    pub target_value: Option<serde_json::Number>,
    #[serde(default)]
    pub target_currency: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    #[serde(default)]
    pub created: Option<String>,
}

/// Minor units of a major-unit JSON number ("150.25" EUR → 15025; "9000.0" JPY → 9000).
pub fn minor_units(n: &serde_json::Number, currency: &str) -> Option<i64> {
    let text = n.to_string();
    let text = match text.split_once('.') {
        Some((i, f)) if f.trim_end_matches('0').is_empty() => i.to_string(),
        Some((i, f)) => format!("{i}.{}", f.trim_end_matches('0')),
        None => text,
    };
    switchyard_model::money::parse_decimal(&text, currency).ok()
}

#[derive(Debug, Serialize)]
pub struct FundRequest {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundResponse {
    pub status: String,
    #[serde(default)]
    pub error_code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Errors {
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorItem {
    pub code: String,
}

/// A transfer state in canonical terms; None for a state we do not know (an error, never a guess).
pub fn status(state: &str) -> Option<PayoutStatus> {
    Some(match state {
        "incoming_payment_waiting" => PayoutStatus::Pending,
        "incoming_payment_initiated" | "processing" | "funds_converted" => PayoutStatus::Accepted,
        "outgoing_payment_sent" => PayoutStatus::Settled,
        "cancelled" => PayoutStatus::Failed,
        "bounced_back" | "funds_refunded" | "charged_back" => PayoutStatus::Returned,
        _ => return None,
    })
}
