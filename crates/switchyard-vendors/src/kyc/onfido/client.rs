//! Onfido's HTTP API.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;

use super::transformers::{
    ApplicantRequest, ApplicantResponse, ApplicantsResponse, CheckRequest, CheckResponse, ChecksResponse,
    ReportsResponse, check_status, key_of, key_tag,
};
use crate::{
    adapter::{Progress, Recovery},
    error::{VendorError, json, send},
    kyc::{Applicant, CasePage, KycOutcome, KycVendor, ListedCase, WebhookNotice, WebhookRejection},
    signing::SecretPair,
};
use switchyard_runtime::Secret;

#[derive(Debug, Clone)]
pub struct OnfidoConfig {
    pub partner: String,
    /// e.g. `https://api.eu.onfido.com/v3.6`
    pub base_url: String,
    pub api_token: Secret,
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
        req.header("Authorization", format!("Token token={}", self.cfg.api_token.expose()))
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

    /// Applicant, then check. Onfido takes no idempotency key: the applicant's id is committed to the
    /// effect ledger (`progress`) before the check is asked for, and the check carries our key as a
    /// tag, so an interrupted start resumes with the same applicant and [`Onfido::find`] can tell
    /// whether the check exists.
    async fn begin(&self, applicant: &Applicant, progress: &dyn Progress) -> Result<KycOutcome, VendorError> {
        let base = &self.cfg.base_url;
        let applicant_id = match progress.get(APPLICANT) {
            Some(id) => id,
            None => {
                let created: ApplicantResponse = json(
                    send(
                        self.auth(self.http.post(format!("{base}/applicants")))
                            .json(&ApplicantRequest::from(&applicant.person)),
                        true,
                    )
                    .await?,
                )
                .await?;
                progress.note(APPLICANT, &created.id).await?;
                created.id
            }
        };
        let check: CheckResponse = json(
            send(
                self.auth(self.http.post(format!("{base}/checks"))).json(&CheckRequest {
                    applicant_id,
                    report_names: vec!["document", "facial_similarity_photo"],
                    tags: vec![key_tag(&applicant.idempotency_key)],
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

    /// The check an earlier start created for this key, if any: listed by applicant, matched by tag.
    /// Without a recorded applicant no check can exist (the applicant is recorded before the check
    /// is asked for), so starting again is safe.
    async fn find(&self, applicant: &Applicant, progress: &dyn Progress) -> Result<Recovery<KycOutcome>, VendorError> {
        let Some(applicant_id) = progress.get(APPLICANT) else {
            return Ok(Recovery::SendAgain);
        };
        let base = &self.cfg.base_url;
        let list: ChecksResponse = json(
            send(
                self.auth(
                    self.http
                        .get(format!("{base}/checks"))
                        .query(&[("applicant_id", &applicant_id)]),
                ),
                false,
            )
            .await?,
        )
        .await?;
        let tag = key_tag(&applicant.idempotency_key);
        match list.checks.into_iter().find(|c| c.tags.contains(&tag)) {
            Some(c) => Ok(Recovery::Found(self.check(&c.id).await?)),
            None => Ok(Recovery::SendAgain),
        }
    }
}

/// Applicants listed per page when reconciliation reads the partner's cases.
const PER_PAGE: usize = 100;

impl Onfido {
    /// One page of applicants (newest first) created since `since_ms`, with their checks: each
    /// check a case, its status from the check alone (a `consider` reads as review: the reports
    /// say more, reconciliation needs only clear or not).
    async fn cases(&self, since_ms: i64, page: Option<&str>) -> Result<CasePage, VendorError> {
        let base = &self.cfg.base_url;
        let page: usize = page.and_then(|p| p.parse().ok()).unwrap_or(1);
        let listed: ApplicantsResponse = json(
            send(
                self.auth(
                    self.http
                        .get(format!("{base}/applicants"))
                        .query(&[("page", page), ("per_page", PER_PAGE)]),
                ),
                false,
            )
            .await?,
        )
        .await?;
        let full = listed.applicants.len() == PER_PAGE;
        let mut items = Vec::new();
        let mut older = false;
        for a in listed.applicants {
            let created_ms = a
                .created_at
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|c| c.timestamp_millis())
                .ok_or_else(|| VendorError::Permanent(format!("applicant {} has no created_at", a.id)))?;
            if created_ms < since_ms {
                older = true;
                continue;
            }
            let checks: ChecksResponse = json(
                send(
                    self.auth(
                        self.http
                            .get(format!("{base}/checks"))
                            .query(&[("applicant_id", &a.id)]),
                    ),
                    false,
                )
                .await?,
            )
            .await?;
            for c in checks.checks {
                let (status, _) = check_status(&c, &[]);
                items.push(ListedCase {
                    provider_reference: c.id.clone(),
                    our_reference: key_of(&c.tags),
                    status,
                    created_ms,
                    raw: serde_json::json!({"applicant_id": a.id, "check": c}),
                });
            }
        }
        Ok(CasePage {
            items,
            next: (full && !older).then(|| (page + 1).to_string()),
        })
    }
}

/// The checkpoint name of the applicant created for a verification.
const APPLICANT: &str = "applicant_id";

impl KycVendor for Onfido {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn start<'a>(
        &'a self,
        applicant: &'a Applicant,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<KycOutcome, VendorError>> {
        Box::pin(self.begin(applicant, progress))
    }

    fn recover<'a>(
        &'a self,
        applicant: &'a Applicant,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<Recovery<KycOutcome>, VendorError>> {
        Box::pin(self.find(applicant, progress))
    }

    fn status<'a>(&'a self, provider_reference: &'a str) -> BoxFuture<'a, Result<KycOutcome, VendorError>> {
        Box::pin(self.check(provider_reference))
    }

    fn verify_webhook(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<WebhookNotice, WebhookRejection> {
        super::webhooks::verify(&self.cfg.webhook_secret, headers, body, now_ms)
    }

    fn list<'a>(
        &'a self,
        since_ms: i64,
        cursor: Option<&'a str>,
    ) -> Option<BoxFuture<'a, Result<CasePage, VendorError>>> {
        Some(Box::pin(self.cases(since_ms, cursor)))
    }
}
