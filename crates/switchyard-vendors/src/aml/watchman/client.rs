//! Watchman's HTTP API.

use std::time::Duration;

use futures::future::BoxFuture;

use super::transformers::{SearchResponse, outcome};
use crate::{
    adapter::Recovery,
    aml::{AmlOutcome, AmlVendor, Subject},
    error::{VendorError, json, send},
};

#[derive(Debug, Clone)]
pub struct WatchmanConfig {
    pub partner: String,
    pub base_url: String,
    pub timeout: Duration,
}

pub struct Watchman {
    cfg: WatchmanConfig,
    http: reqwest::Client,
}

impl Watchman {
    pub fn new(cfg: WatchmanConfig) -> Result<Self, VendorError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Watchman { cfg, http })
    }

    async fn search(&self, subject: &Subject) -> Result<AmlOutcome, VendorError> {
        let name = subject.person.full_name();
        let mut query = vec![
            ("type", "person".to_string()),
            ("name", name),
            ("limit", "10".to_string()),
            ("minMatch", "0.80".to_string()),
            ("requestID", subject.idempotency_key.clone()),
        ];
        if let Some(dob) = subject.person.dob_iso() {
            query.push(("birthDate", dob));
        }
        // A read: a timeout is simply retried.
        let resp: SearchResponse = json(
            send(
                self.http.get(format!("{}/v2/search", self.cfg.base_url)).query(&query),
                false,
            )
            .await?,
        )
        .await?;
        let (status, hits) = outcome(&resp);
        Ok(AmlOutcome {
            provider_reference: None,
            status,
            hits,
        })
    }
}

impl AmlVendor for Watchman {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn screen<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<AmlOutcome, VendorError>> {
        Box::pin(self.search(subject))
    }

    /// A search is a read with no effect at the vendor: searching again is safe.
    fn recover<'a>(&'a self, _: &'a Subject) -> BoxFuture<'a, Result<Recovery<AmlOutcome>, VendorError>> {
        Box::pin(async { Ok(Recovery::SendAgain) })
    }
}
