//! The client of the services' admin APIs: every call carries the admin token
//! (`SWITCHYARD_ADMIN__TOKEN`, which `local-stack/endpoints.env` sets for the local stack), and a
//! refusal is shown with the service's own words (problem+json `detail`).

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    token: String,
}

impl Admin {
    /// From `SWITCHYARD_ADMIN__TOKEN`.
    pub fn from_env() -> anyhow::Result<Admin> {
        let token = std::env::var("SWITCHYARD_ADMIN__TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .context("SWITCHYARD_ADMIN__TOKEN is not set: the admin token of the services (local stack: set -a; . local-stack/endpoints.env; set +a)")?;
        Admin::with_token(&token)
    }

    pub fn with_token(token: &str) -> anyhow::Result<Admin> {
        Ok(Admin {
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            token: token.to_string(),
        })
    }

    pub async fn get(&self, url: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        answer(
            url,
            self.http.get(url).bearer_auth(&self.token).query(query).send().await,
        )
        .await
    }

    pub async fn post(&self, url: &str, body: &Value) -> anyhow::Result<Value> {
        answer(
            url,
            self.http.post(url).bearer_auth(&self.token).json(body).send().await,
        )
        .await
    }
}

async fn answer(url: &str, sent: reqwest::Result<reqwest::Response>) -> anyhow::Result<Value> {
    let r = sent.with_context(|| format!("{url}: not reachable"))?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if !status.is_success() {
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or(text);
        anyhow::bail!("{url} answered {status}: {detail}");
    }
    serde_json::from_str(&text).with_context(|| format!("{url} answered something else than JSON"))
}

/// Who is acting, for the services' audit records: `--by`, else the login name.
pub fn operator(by: Option<String>) -> anyhow::Result<String> {
    by.or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|b| !b.trim().is_empty())
        .context("say who you are: --by <name> (the services keep it with the change)")
}
