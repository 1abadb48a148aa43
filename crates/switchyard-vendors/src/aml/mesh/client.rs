//! Mesh's HTTP API.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use switchyard_model::events::aml::ScreeningStatus;
use switchyard_runtime::Secret;

use super::transformers::{
    AlertsResponse, CasesResponse, CreateAndScreen, RisksResponse, ScreeningResult, TokenRequest, TokenResponse,
    WorkflowResponse, hit, screened, status,
};
use crate::{
    adapter::Recovery,
    aml::{AmlOutcome, AmlVendor, KeptScreening, Subject},
    error::{VendorError, json, send},
};

#[derive(Debug, Clone)]
pub struct MeshConfig {
    pub partner: String,
    pub base_url: String,
    pub realm: String,
    pub username: Secret,
    pub password: Secret,
    pub screening_configuration: String,
    pub timeout: Duration,
}

pub struct Mesh {
    cfg: MeshConfig,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl Mesh {
    pub fn new(cfg: MeshConfig) -> Result<Self, VendorError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VendorError::Permanent(e.to_string()))?;
        Ok(Mesh {
            cfg,
            http,
            token: Mutex::new(None),
        })
    }

    async fn token(&self) -> Result<String, VendorError> {
        if let Ok(guard) = self.token.lock()
            && let Some((t, until)) = guard.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let resp: TokenResponse = json(
            send(
                self.http
                    .post(format!("{}/v2/token", self.cfg.base_url))
                    .json(&TokenRequest {
                        realm: &self.cfg.realm,
                        username: self.cfg.username.expose(),
                        password: self.cfg.password.expose(),
                    }),
                false,
            )
            .await?,
        )
        .await?;
        // Renew a minute early.
        let until = Instant::now() + Duration::from_secs(resp.expires_in.saturating_sub(60));
        if let Ok(mut guard) = self.token.lock() {
            *guard = Some((resp.access_token.clone(), until));
        }
        Ok(resp.access_token)
    }

    /// Forgets the cached token (Mesh no longer honours it: expired early, revoked, or issued before
    /// a restart of its token service).
    fn forget_token(&self) {
        if let Ok(mut guard) = self.token.lock() {
            *guard = None;
        }
    }

    /// Sends with the current token; a 401 is answered once with a fresh token (a refused token
    /// proves nothing was done).
    async fn authorised(
        &self,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
        mutating: bool,
    ) -> Result<reqwest::Response, VendorError> {
        let token = self.token().await?;
        match send(request(&token), mutating).await {
            Err(VendorError::Auth(why)) if why.starts_with("401") => {
                self.forget_token();
                let token = self.token().await?;
                send(request(&token), mutating).await
            }
            other => other,
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, VendorError> {
        let url = format!("{}{path}", self.cfg.base_url);
        json(
            self.authorised(|token| self.http.get(&url).bearer_auth(token).query(query), false)
                .await?,
        )
        .await
    }

    async fn run(&self, subject: &Subject) -> Result<AmlOutcome, VendorError> {
        // The sync workflow is idempotent for a byte-identical request: a retry re-sends exactly this.
        let body = CreateAndScreen::new(
            &screening_identifier(subject),
            &subject.person,
            &self.cfg.screening_configuration,
        );
        let url = format!("{}/v2/workflows/sync/create-and-screen", self.cfg.base_url);
        let workflow: WorkflowResponse = json(
            self.authorised(|token| self.http.post(&url).bearer_auth(token).json(&body), true)
                .await?,
        )
        .await?;
        let s = screened(&workflow).map_err(|e| VendorError::Permanent(format!("unexpected workflow shape: {e}")))?;
        let mut hits = Vec::new();
        if s.result == ScreeningResult::HasProfiles {
            let cases: CasesResponse = self
                .get("/v2/cases", &[("customer.identifier", &s.customer_identifier)])
                .await?;
            for case in &cases.cases {
                let alerts: AlertsResponse = self.get(&format!("/v2/cases/{}/alerts", case.identifier), &[]).await?;
                for alert in &alerts.alerts {
                    let risks: RisksResponse = self
                        .get(
                            &format!("/v2/cases/{}/alerts/{}/risks", case.identifier, alert.identifier),
                            &[],
                        )
                        .await?;
                    hits.extend(risks.risks.iter().map(|r| hit(alert, r, s.level)));
                }
            }
        }
        let status = if s.result == ScreeningResult::NoProfiles {
            ScreeningStatus::Clear
        } else {
            status(s.level, &hits)
        };
        Ok(AmlOutcome {
            provider_reference: Some(workflow.workflow_instance_identifier),
            status,
            hits,
        })
    }
}

impl Mesh {
    /// `GET /v2/workflows/{id}`: the workflow a screening ran as, and what its screening step found.
    async fn workflow(&self, id: &str) -> Result<Option<KeptScreening>, VendorError> {
        let url = format!("{}/v2/workflows/{id}", self.cfg.base_url);
        let raw: serde_json::Value = match self
            .authorised(|token| self.http.get(&url).bearer_auth(token), false)
            .await
        {
            Ok(r) => json(r).await?,
            Err(VendorError::Permanent(m)) if m.starts_with("404") => return Ok(None),
            Err(e) => return Err(e),
        };
        let w: WorkflowResponse = serde_json::from_value(raw.clone())
            .map_err(|e| VendorError::Permanent(format!("unexpected workflow shape: {e}")))?;
        let s = screened(&w).map_err(|e| VendorError::Permanent(format!("unexpected workflow shape: {e}")))?;
        Ok(Some(KeptScreening {
            has_hits: s.result == ScreeningResult::HasProfiles,
            raw: serde_json::json!({"workflow_instance_identifier": w.workflow_instance_identifier,
                "customer_identifier": s.customer_identifier, "screening_result": raw["step_details"]["customer-screening"]["step_output"]["screening_result"]}),
        }))
    }
}

/// The Mesh customer a screening runs on: one per screening request (`<subject>.<request key>`).
/// Every flow's screening is fresh (Mesh would replay an earlier flow's screening for a byte-identical
/// request, and refuse a changed one for an existing external id), while a re-send of the same
/// request stays byte-identical and is de-duplicated by Mesh.
pub fn screening_identifier(subject: &Subject) -> String {
    format!("{}.{}", subject.subject_id, subject.idempotency_key)
}

impl AmlVendor for Mesh {
    fn partner(&self) -> &str {
        &self.cfg.partner
    }

    fn screen<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<AmlOutcome, VendorError>> {
        Box::pin(self.run(subject))
    }

    fn kept<'a>(
        &'a self,
        provider_reference: &'a str,
    ) -> Option<BoxFuture<'a, Result<Option<KeptScreening>, VendorError>>> {
        Some(Box::pin(self.workflow(provider_reference)))
    }

    /// Mesh documents its sync create-and-screen as idempotent for a byte-identical request (a
    /// re-send returns the earlier workflow, no second screening): re-sending is the lookup.
    fn recover<'a>(&'a self, _: &'a Subject) -> BoxFuture<'a, Result<Recovery<AmlOutcome>, VendorError>> {
        Box::pin(async { Ok(Recovery::SendAgain) })
    }
}
