//! Onfido's HTTP API.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;

use super::transformers::{
    ApplicantRequest, ApplicantResponse, CheckRequest, CheckResponse, ReportsResponse, check_status,
};
use crate::{
    error::{VendorError, json, send},
    kyc::{Applicant, KycOutcome, KycVendor, WebhookNotice, WebhookRejection},
    signing::SecretPair,
};

#[derive(Debug, Clone)]
pub struct OnfidoConfig {
    pub partner: String,
    /// e.g. `https://api.eu.onfido.com/v3.6`
    pub base_url: String,
    pub api_token: String,
    pub webhook_secret: SecretPair,
    pub timeout: Duration,
}

pub struct Onfido {
    pub(super) cfg: OnfidoConfig,
    http: reqwest::Client,
}

impl Onfido {
    pub fn new(cfg: OnfidoConfig) -> Result<Self, VendorError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Onfido { cfg, http })
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("Authorization", format!("Token token={}", self.cfg.api_token))
    }

    async fn check(&self, check_id: &str) -> Result<KycOutcome, VendorError> {
        let base = &self.cfg.base_url;
        let check: CheckResponse =
            json(send(self.auth(self.http.get(format!("{base}/checks/{check_id}"))), false).await?).await?;
        let reports: ReportsResponse = if check.result.is_some() {
            json(
                send(
                    self.auth(
                        self.http
                            .get(format!("{base}/reports"))
                            .query(&[("check_id", &check.id)]),
                    ),
                    false,
                )
                .await?,
            )
            .await?
        } else {
            ReportsResponse { reports: vec![] }
        };
        let (status, reasons) = check_status(&check, &reports.reports);
        Ok(KycOutcome {
            provider_reference: check.id,
            status,
            reasons,
        })
    }

    async fn begin(&self, applicant: &Applicant) -> Result<KycOutcome, VendorError> {
        let base = &self.cfg.base_url;
        // Onfido takes no idempotency key: the adapter records each attempt before calling, and the
        // check carries our key as a tag so a duplicate can be traced.
        let created: ApplicantResponse = json(
            send(
                self.auth(self.http.post(format!("{base}/applicants")))
                    .json(&ApplicantRequest::from(&applicant.person)),
                true,
            )
            .await?,
        )
        .await?;
        let check: CheckResponse = json(
            send(
                self.auth(self.http.post(format!("{base}/checks"))).json(&CheckRequest {
                    applicant_id: created.id,
                    report_names: vec!["document", "facial_similarity_photo"],
                    tags: vec![format!("switchyard:{}", applicant.idempotency_key)],
                }),
                true,
            )
            .await?,
        )
        .await?;
        let (status, reasons) = check_status(&check, &[]);
        Ok(KycOutcome {
            provider_reference: check.id,
            status,
            reasons,
        })
    }
}

impl KycVendor for Onfido {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn start<'a>(&'a self, applicant: &'a Applicant) -> BoxFuture<'a, Result<KycOutcome, VendorError>> {
        Box::pin(self.begin(applicant))
    }

    fn status<'a>(&'a self, provider_reference: &'a str) -> BoxFuture<'a, Result<KycOutcome, VendorError>> {
        Box::pin(self.check(provider_reference))
    }

    fn verify_webhook(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<WebhookNotice, WebhookRejection> {
        super::webhooks::verify(&self.cfg.webhook_secret, headers, body, now_ms)
    }
}
