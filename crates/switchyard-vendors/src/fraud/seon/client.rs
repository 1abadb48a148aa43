//! SEON's HTTP API.

use std::time::Duration;

use futures::future::BoxFuture;
use switchyard_runtime::Secret;

use super::transformers::{Data, FraudRequest, FraudResponse, outcome};
use crate::{
    decimal::major_amount,
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
