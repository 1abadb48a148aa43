//! Sift's HTTP API.

use std::time::Duration;

use futures::future::BoxFuture;
use switchyard_runtime::Secret;

use super::transformers::{EventResponse, Thresholds, TransactionEvent, outcome};
use crate::{
    error::{VendorError, json, send_accepting},
    fraud::{FraudOutcome, FraudVendor, Transaction},
};

#[derive(Debug, Clone)]
pub struct SiftConfig {
    pub partner: String,
    pub base_url: String,
    pub api_key: Secret,
    /// Score from which a transaction is held for review, and blocked, when no workflow decided.
    pub review_at: f64,
    pub block_at: f64,
    pub timeout: Duration,
}

pub struct Sift {
    cfg: SiftConfig,
    http: reqwest::Client,
}

impl Sift {
    pub fn new(cfg: SiftConfig) -> Result<Self, VendorError> {
        if !(0.0..=1.0).contains(&cfg.review_at) || !(cfg.review_at..=1.0).contains(&cfg.block_at) {
            return Err(VendorError::Permanent(
                "settings review_at and block_at must satisfy 0 <= review_at <= block_at <= 1".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Sift { cfg, http })
    }

    async fn run(&self, tx: &Transaction) -> Result<FraudOutcome, VendorError> {
        let micros =
            switchyard_model::money::to_micros(tx.amount.amount_minor, &tx.amount.currency).ok_or_else(|| {
                VendorError::Permanent(format!("amount in {} cannot be given in micros", tx.amount.currency))
            })?;
        let body = TransactionEvent::new(tx, self.cfg.api_key.expose(), micros);
        // Errors come as an integer status in the body with a 4xx: read it rather than guess.
        let resp = send_accepting(
            self.http
                .post(format!("{}/v205/events", self.cfg.base_url))
                .query(&[("return_score", "true"), ("abuse_types", "payment_abuse")])
                .json(&body),
            true,
            &[400, 401, 403],
        )
        .await?;
        let http_status = resp.status();
        let answer: EventResponse = json(resp).await?;
        match answer.status {
            0 => outcome(
                &answer,
                Thresholds {
                    review_at: self.cfg.review_at,
                    block_at: self.cfg.block_at,
                },
            )
            .map_err(|e| VendorError::Permanent(format!("unexpected score shape: {e}"))),
            51 => Err(VendorError::Auth(format!("{http_status}: status 51 (invalid API key)"))),
            60 => Err(VendorError::RateLimited { retry_after: None }),
            s => Err(VendorError::Permanent(format!("{http_status}: status {s}"))),
        }
    }
}

impl FraudVendor for Sift {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn score<'a>(&'a self, tx: &'a Transaction) -> BoxFuture<'a, Result<FraudOutcome, VendorError>> {
        Box::pin(self.run(tx))
    }
}
