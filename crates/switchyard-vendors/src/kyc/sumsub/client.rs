//! Sumsub's HTTP API, every request signed.

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::{Method, header::HeaderMap};
use switchyard_model::events::kyc::KycStatus;
use switchyard_runtime::Secret;

use super::transformers::{ApplicantResponse, CreateApplicant, StatusResponse, status};
use crate::{
    adapter::{Progress, Recovery},
    error::{VendorError, json, send, send_accepting},
    kyc::{Applicant, KycOutcome, KycVendor, WebhookNotice, WebhookRejection},
    signing::{Alg, SecretPair, hex, hmac},
};

pub const LEVEL: &str = "basic-kyc-level";
const CONFLICT: u16 = 409;

#[derive(Debug, Clone)]
pub struct SumsubConfig {
    pub partner: String,
    /// e.g. `https://api.sumsub.com`
    pub base_url: String,
    pub app_token: Secret,
    pub secret_key: Secret,
    pub webhook_secret: SecretPair,
    /// The webhook digest algorithm configured at the vendor (`settings.webhook_digest_alg`).
    pub webhook_digest_alg: Alg,
    pub timeout: Duration,
}

pub struct Sumsub {
    pub(super) cfg: SumsubConfig,
    http: reqwest::Client,
}

/// `X-App-Access-Sig` over `ts + METHOD + path?query + body`.
pub fn request_signature(secret: &str, ts: i64, method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut msg = format!("{ts}{method}{path_and_query}").into_bytes();
    msg.extend_from_slice(body);
    hex(&hmac(Alg::Sha256, secret.as_bytes(), &msg))
}

impl Sumsub {
    pub fn new(cfg: SumsubConfig) -> Result<Self, VendorError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Sumsub { cfg, http })
    }

    fn signed(&self, method: Method, path_and_query: &str, body: Option<Vec<u8>>) -> reqwest::RequestBuilder {
        let ts = chrono::Utc::now().timestamp();
        let bytes = body.unwrap_or_default();
        let sig = request_signature(
            self.cfg.secret_key.expose(),
            ts,
            method.as_str(),
            path_and_query,
            &bytes,
        );
        let mut req = self
            .http
            .request(method, format!("{}{path_and_query}", self.cfg.base_url))
            .header("X-App-Token", self.cfg.app_token.expose())
            .header("X-App-Access-Ts", ts.to_string())
            .header("X-App-Access-Sig", sig);
        if !bytes.is_empty() {
            req = req.header("Content-Type", "application/json").body(bytes);
        }
        req
    }

    async fn applicant_id(&self, applicant: &Applicant) -> Result<String, VendorError> {
        let body = serde_json::to_vec(&CreateApplicant::new(&applicant.subject_id, &applicant.person))
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        let path = format!("/resources/applicants?levelName={LEVEL}");
        let resp = send_accepting(self.signed(Method::POST, &path, Some(body)), true, &[CONFLICT]).await?;
        if resp.status().as_u16() != CONFLICT {
            return Ok(json::<ApplicantResponse>(resp).await?.id);
        }
        // The external user id is our idempotency: an existing applicant is fetched, not duplicated.
        let path = format!("/resources/applicants/-;externalUserId={}/one", applicant.subject_id);
        Ok(
            json::<ApplicantResponse>(send(self.signed(Method::GET, &path, None), false).await?)
                .await?
                .id,
        )
    }

    async fn begin(&self, applicant: &Applicant) -> Result<KycOutcome, VendorError> {
        let id = self.applicant_id(applicant).await?;
        // A redelivered request finds a reviewed applicant: report it, do not ask for a new review.
        let current = self.pull(&id).await?;
        if current.status != KycStatus::Pending {
            return Ok(current);
        }
        let path = format!("/resources/applicants/{id}/status/pending?reason=switchyard");
        // 409: already pending or queued; the earlier attempt's request for a review stands.
        send_accepting(self.signed(Method::POST, &path, None), true, &[CONFLICT]).await?;
        Ok(KycOutcome {
            provider_reference: id,
            status: KycStatus::Pending,
            reasons: vec![],
        })
    }

    async fn pull(&self, id: &str) -> Result<KycOutcome, VendorError> {
        let path = format!("/resources/applicants/{id}/status");
        let resp: StatusResponse = json(send(self.signed(Method::GET, &path, None), false).await?).await?;
        let (status, reasons) = status(resp.review_status, resp.review_result.as_ref());
        Ok(KycOutcome {
            provider_reference: id.to_string(),
            status,
            reasons,
        })
    }
}

impl KycVendor for Sumsub {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn start<'a>(
        &'a self,
        applicant: &'a Applicant,
        _: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<KycOutcome, VendorError>> {
        Box::pin(self.begin(applicant))
    }

    /// Sumsub de-duplicates by `externalUserId` (a second create answers 409 and we fetch the
    /// existing applicant) and refuses a second review request while one is pending (409): starting
    /// again finds what the earlier call did and adds no effect.
    fn recover<'a>(
        &'a self,
        _: &'a Applicant,
        _: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<Recovery<KycOutcome>, VendorError>> {
        Box::pin(async { Ok(Recovery::SendAgain) })
    }

    fn status<'a>(&'a self, provider_reference: &'a str) -> BoxFuture<'a, Result<KycOutcome, VendorError>> {
        Box::pin(self.pull(provider_reference))
    }

    fn verify_webhook(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<WebhookNotice, WebhookRejection> {
        super::webhooks::verify(
            &self.cfg.webhook_secret,
            self.cfg.webhook_digest_alg,
            headers,
            body,
            now_ms,
        )
    }
}
