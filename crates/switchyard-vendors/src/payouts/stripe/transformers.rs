//! Stripe's types and the mapping of its payout statuses.

use serde::Deserialize;
use switchyard_model::events::payouts::{AccountScheme, Beneficiary, PayoutStatus};

#[derive(Debug, Deserialize)]
pub struct ExternalAccount {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct PayoutObject {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Minor units.
    #[serde(default)]
    pub amount: i64,
    /// Lower case, as Stripe writes it.
    #[serde(default)]
    pub currency: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
}

#[derive(Debug, Deserialize)]
pub struct PayoutList {
    pub data: Vec<serde_json::Value>,
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Debug, Deserialize)]
pub struct SearchResult {
    pub data: Vec<PayoutObject>,
}

/// The form fields of the beneficiary's bank account.
pub fn external_account(b: &Beneficiary, currency: &str) -> Result<Vec<(&'static str, String)>, String> {
    let a = &b.account;
    let mut f = vec![
        ("external_account[object]", "bank_account".to_string()),
        ("external_account[currency]", currency.to_lowercase()),
        ("external_account[account_holder_name]", b.name.clone()),
        ("external_account[account_number]", a.value.clone()),
    ];
    match a.scheme {
        AccountScheme::Iban => {
            let country: String = a.value.chars().take(2).collect();
            if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
                return Err("an IBAN starts with its country code".into());
            }
            f.push(("external_account[country]", country));
        }
        AccountScheme::AchRoutingAccount => {
            f.push(("external_account[country]", "US".into()));
            f.push((
                "external_account[routing_number]",
                a.bank_code
                    .clone()
                    .ok_or("an ACH account needs its routing number (bank_code)")?,
            ));
        }
        AccountScheme::SortCodeAccount => {
            f.push(("external_account[country]", "GB".into()));
            f.push((
                "external_account[routing_number]",
                a.bank_code
                    .clone()
                    .ok_or("a sort code account needs its sort code (bank_code)")?,
            ));
        }
        AccountScheme::Wallet => return Err("Stripe pays out to bank accounts, not wallets".into()),
    }
    Ok(f)
}

/// A payout status in canonical terms; None for a status we do not know.
pub fn status(s: &str) -> Option<PayoutStatus> {
    Some(match s {
        "pending" | "in_transit" => PayoutStatus::Accepted,
        "paid" => PayoutStatus::Settled,
        "failed" | "canceled" => PayoutStatus::Failed,
        _ => return None,
    })
}
