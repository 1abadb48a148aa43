//! SEON's HTTP API.

use std::time::Duration;

use futures::future::BoxFuture;
use switchyard_runtime::Secret;

use super::transformers::{Data, FraudRequest, FraudResponse, outcome};
use crate::{
    error::{VendorError, json, send_accepting},
    fraud::{FraudOutcome, FraudVendor, Transaction},
};

#[derive(Debug, Clone)]
pub struct SeonConfig {
    pub partner: String,
    pub base_url: String,
    pub api_key: Secret,
    pub timeout: Duration,
}

pub struct Seon {
    cfg: SeonConfig,
    http: reqwest::Client,
}

/// The major-unit amount as a JSON number whose value is the exact decimal (no float arithmetic: the
/// decimal text is parsed once, and its shortest representation is checked to be the same value).
pub(crate) fn major_amount(amount_minor: i64, currency: &str) -> Result<serde_json::Number, VendorError> {
    let text = switchyard_model::money::decimal(amount_minor, currency)
        .ok_or_else(|| VendorError::Permanent(format!("{currency} is not an ISO 4217 currency")))?;
    let n: serde_json::Number = text
        .parse()
        .map_err(|_| VendorError::Permanent(format!("amount {text} is not a number")))?;
    // "1.00" goes out as 1.0: the same value; what must never happen is a different value.
    let value = |t: &str| -> String {
        match t.split_once('.') {
            Some((i, f)) => {
                let f = f.trim_end_matches('0');
                if f.is_empty() {
                    i.to_string()
                } else {
                    format!("{i}.{f}")
                }
            }
            None => t.to_string(),
        }
    };
    if value(&n.to_string()) != value(&text) {
        return Err(VendorError::Permanent(format!(
            "amount {text} {currency} cannot be sent exactly as a JSON number"
        )));
    }
    Ok(n)
}

impl Seon {
    pub fn new(cfg: SeonConfig) -> Result<Self, VendorError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Seon { cfg, http })
    }

    async fn run(&self, tx: &Transaction) -> Result<FraudOutcome, VendorError> {
        let amount = major_amount(tx.amount.amount_minor, &tx.amount.currency)?;
        let resp = send_accepting(
            self.http
                .post(format!("{}/SeonRestService/fraud-api/v2", self.cfg.base_url))
                .header("X-API-KEY", self.cfg.api_key.expose())
                .json(&FraudRequest::new(tx, amount)),
            true,
            &[400],
        )
        .await?;
        let status = resp.status();
        let answer: FraudResponse = json(resp).await?;
        match (answer.success, answer.data) {
            (true, Some(data)) => serde_json::from_value::<Data>(data)
                .map_err(|e| e.to_string())
                .and_then(|d| outcome(&d))
                .map_err(|e| VendorError::Permanent(format!("unexpected score shape: {e}"))),
            _ => {
                let code = answer.error.map(|e| e.code()).unwrap_or_default();
                Err(VendorError::Permanent(format!("{status}: error {code}")))
            }
        }
    }
}

impl FraudVendor for Seon {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn score<'a>(&'a self, tx: &'a Transaction) -> BoxFuture<'a, Result<FraudOutcome, VendorError>> {
        Box::pin(self.run(tx))
    }
}
