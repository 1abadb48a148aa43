//! What every simulated vendor shares: fault injection, the ledger of effects, webhook delivery with
//! retries, and the control API (`/_sim/...`) tests and the demo drive.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Query, Request, State},
    http::{HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

/// A fault applied to requests whose `METHOD path body` contains `matcher` (empty: every request).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FaultRule {
    #[serde(default)]
    pub matcher: String,
    pub fault: Fault,
    /// How many requests it applies to; forever when absent.
    pub times: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this status (and the vendor's error body for it).
    Error { status: u16 },
    /// Answer 429 with Retry-After.
    RateLimit { retry_after_s: u32 },
    /// Add latency, then answer normally.
    Latency { ms: u64 },
    /// Process the request (its effect happens), then hold the answer this long: the caller times
    /// out not knowing whether it worked.
    HangAfterEffect { ms: u64 },
    /// Process the request (its effect happens), then answer this error status instead of the
    /// result: the caller is told it failed when it did not.
    ErrorAfterEffect { status: u16 },
}

/// Webhook delivery quirks for deliveries whose body (or the person's name) contains `matcher`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhookRule {
    #[serde(default)]
    pub matcher: String,
    /// Deliver every webhook this many times.
    #[serde(default = "one")]
    pub copies: u32,
    /// Delay before delivering.
    #[serde(default)]
    pub delay_ms: u64,
    /// Re-deliver an earlier, non-final notice after the final one.
    #[serde(default)]
    pub out_of_order: bool,
    /// Never deliver it (the vendor's notice is lost for good; only its own records still tell).
    #[serde(default)]
    pub drop: bool,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize)]
pub struct Effect {
    pub kind: String,
    pub key: String,
    pub at: String,
}

/// Makes the simulator treat people whose name contains `matcher` as `persona` (e.g. so one vendor
/// disagrees with another about the same person).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PersonaRule {
    pub matcher: String,
    pub persona: String,
}

#[derive(Default)]
struct Inner {
    personas: Vec<PersonaRule>,
    faults: Vec<FaultRule>,
    webhook_rules: Vec<WebhookRule>,
    ledger: Vec<Effect>,
    deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub url: String,
    pub status: u16,
    pub body_contains_key: String,
}

/// Shared simulator state.
#[derive(Clone, Default)]
pub struct Sim {
    inner: Arc<Mutex<Inner>>,
    pub http: reqwest::Client,
}

impl Sim {
    pub fn new() -> Self {
        Sim {
            inner: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut g| f(&mut g))
    }

    /// Records an effect (something the vendor did that costs or matters: a check, a customer...).
    pub fn record(&self, kind: &str, key: &str) {
        let e = Effect {
            kind: kind.to_string(),
            key: key.to_string(),
            at: chrono::Utc::now().to_rfc3339(),
        };
        self.with(|i| i.ledger.push(e));
    }

    /// The persona of a person: an override whose matcher is in `full_name`, else the markers in
    /// the family name.
    pub fn persona_of(&self, full_name: &str, family_name: &str) -> Persona {
        self.with(|i| {
            i.personas
                .iter()
                .find(|r| full_name.contains(&r.matcher))
                .map(|r| persona(&r.persona))
        })
        .flatten()
        .unwrap_or_else(|| persona(family_name))
    }

    fn take_fault(&self, probe: &str) -> Option<Fault> {
        self.with(|i| {
            let pos = i.faults.iter().position(|r| probe.contains(&r.matcher))?;
            let rule = &mut i.faults[pos];
            let fault = rule.fault.clone();
            if let Some(n) = rule.times.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    i.faults.remove(pos);
                }
            }
            Some(fault)
        })
        .flatten()
    }

    /// The rule for a delivery: matched against its body or the case's key (the person's name).
    fn webhook_rule(&self, body: &str, key: &str) -> Option<WebhookRule> {
        self.with(|i| {
            i.webhook_rules
                .iter()
                .find(|r| body.contains(&r.matcher) || key.contains(&r.matcher))
                .cloned()
        })
        .flatten()
    }

    /// Delivers a signed webhook in the background, with the vendor's retries (any answer but 2xx is
    /// tried again, backing off from 250 ms to 5 s, for about a minute: vendors retry for days, a
    /// restarting receiver must not lose a notice) and any
    /// delivery quirks configured for it. `earlier` is a stale notice re-sent after it when the rule
    /// asks for out-of-order delivery.
    pub fn deliver(
        &self,
        url: String,
        headers: Vec<(String, String)>,
        body: String,
        key: String,
        earlier: Option<(Vec<(String, String)>, String)>,
    ) {
        let sim = self.clone();
        tokio::spawn(async move {
            let rule = sim.webhook_rule(&body, &key);
            if rule.as_ref().is_some_and(|r| r.drop) {
                sim.with(|i| {
                    i.deliveries.push(Delivery {
                        url,
                        status: 0,
                        body_contains_key: key,
                    })
                });
                return;
            }
            let (copies, delay) = rule.as_ref().map(|r| (r.copies.max(1), r.delay_ms)).unwrap_or((1, 0));
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            for _ in 0..copies {
                sim.post_with_retries(&url, &headers, &body, &key).await;
            }
            if rule.is_some_and(|r| r.out_of_order)
                && let Some((h, b)) = earlier
            {
                sim.post_with_retries(&url, &h, &b, &key).await;
            }
        });
    }

    async fn post_with_retries(&self, url: &str, headers: &[(String, String)], body: &str, key: &str) {
        for attempt in 0..WEBHOOK_ATTEMPTS {
            let mut req = self
                .http
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_string());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let status = match req.send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            let d = Delivery {
                url: url.to_string(),
                status,
                body_contains_key: key.to_string(),
            };
            self.with(|i| i.deliveries.push(d));
            if (200..300).contains(&status) {
                return;
            }
            if attempt + 1 < WEBHOOK_ATTEMPTS {
                tokio::time::sleep(Duration::from_millis((250 * 2u64.pow(attempt)).min(5_000))).await;
            }
        }
    }
}

/// Delivery attempts of one webhook: 250 ms, 0.5, 1, 2, 4, then every 5 s: about a minute in all.
const WEBHOOK_ATTEMPTS: u32 = 16;

#[derive(Deserialize)]
struct LedgerQuery {
    #[serde(default)]
    key: String,
}

/// The control API.
pub fn control_routes(sim: Sim) -> Router {
    Router::new()
        .route("/_sim/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/personas", post(add_persona).delete(clear_personas))
        .route("/_sim/webhooks", post(add_webhook_rule).delete(clear_webhook_rules))
        .route("/_sim/ledger", get(ledger))
        .route("/_sim/deliveries", get(deliveries))
        .route("/_sim/health", get(|| async { "ok" }))
        .with_state(sim)
}

async fn add_persona(State(sim): State<Sim>, Json(rule): Json<PersonaRule>) -> StatusCode {
    sim.with(|i| i.personas.push(rule));
    StatusCode::NO_CONTENT
}

async fn clear_personas(State(sim): State<Sim>) -> StatusCode {
    sim.with(|i| i.personas.clear());
    StatusCode::NO_CONTENT
}

async fn add_fault(State(sim): State<Sim>, Json(rule): Json<FaultRule>) -> StatusCode {
    sim.with(|i| i.faults.push(rule));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ClearQuery {
    matcher: Option<String>,
}

async fn clear_faults(State(sim): State<Sim>, Query(q): Query<ClearQuery>) -> StatusCode {
    sim.with(|i| match &q.matcher {
        Some(m) => i.faults.retain(|r| &r.matcher != m),
        None => i.faults.clear(),
    });
    StatusCode::NO_CONTENT
}

async fn add_webhook_rule(State(sim): State<Sim>, Json(rule): Json<WebhookRule>) -> StatusCode {
    sim.with(|i| i.webhook_rules.push(rule));
    StatusCode::NO_CONTENT
}

async fn clear_webhook_rules(State(sim): State<Sim>) -> StatusCode {
    sim.with(|i| i.webhook_rules.clear());
    StatusCode::NO_CONTENT
}

async fn ledger(State(sim): State<Sim>, Query(q): Query<LedgerQuery>) -> Json<serde_json::Value> {
    let effects: Vec<Effect> = sim
        .with(|i| i.ledger.iter().filter(|e| e.key.contains(&q.key)).cloned().collect())
        .unwrap_or_default();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &effects {
        *counts.entry(e.kind.clone()).or_default() += 1;
    }
    Json(serde_json::json!({ "counts": counts, "effects": effects }))
}

async fn deliveries(State(sim): State<Sim>, Query(q): Query<LedgerQuery>) -> Json<Vec<Delivery>> {
    Json(
        sim.with(|i| {
            i.deliveries
                .iter()
                .filter(|d| d.body_contains_key.contains(&q.key))
                .cloned()
                .collect()
        })
        .unwrap_or_default(),
    )
}

/// Keeps a simulator's book in `file` (loaded at start, written when it changed, at most twice a
/// second): a vendor does not forget its payouts when its simulator restarts.
pub fn persist<B>(file: &str, book: std::sync::Arc<std::sync::Mutex<B>>)
where
    B: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    if file.is_empty() {
        return;
    }
    if let Ok(text) = std::fs::read_to_string(file) {
        match serde_json::from_str::<B>(&text) {
            Ok(loaded) => {
                if let Ok(mut b) = book.lock() {
                    *b = loaded;
                }
            }
            Err(e) => tracing::warn!(file, error = %e, "simulator state unreadable; starting empty"),
        }
    }
    let file = file.to_string();
    tokio::spawn(async move {
        let mut last = String::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(text) = book.lock().map(|b| serde_json::to_string(&*b).unwrap_or_default()) else {
                continue;
            };
            if text == last || text.is_empty() {
                continue;
            }
            let tmp = format!("{file}.tmp");
            if std::fs::write(&tmp, &text)
                .and_then(|()| std::fs::rename(&tmp, &file))
                .is_ok()
            {
                last = text;
            }
        }
    });
}

/// Writes a settlement report into `dir` as `<prefix>-<n>.csv` (numbered after those there);
/// returns its path.
pub fn write_report(dir: &str, prefix: &str, text: &str) -> std::io::Result<String> {
    anyhow_free_create(dir)?;
    let n = std::fs::read_dir(dir)?.count() + 1;
    let path = format!(
        "{dir}/{prefix}-{:06}-{}.csv",
        n,
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3f")
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

fn anyhow_free_create(dir: &str) -> std::io::Result<()> {
    if dir.is_empty() {
        return Err(std::io::Error::other("no --reports-dir"));
    }
    std::fs::create_dir_all(dir)
}

/// A CSV field, quoted when it must be.
pub fn csv(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// A vendor's error body for an injected status.
pub type ErrorBody = fn(u16) -> serde_json::Value;

/// Middleware applying injected faults before (or, for hangs, after) the vendor's handler.
pub fn with_faults(router: Router, sim: Sim, error_body: ErrorBody) -> Router {
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let sim = sim.clone();
        async move { apply_faults(sim, error_body, req, next).await }
    }))
}

async fn apply_faults(sim: Sim, error_body: ErrorBody, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 4 * 1024 * 1024).await.unwrap_or_default();
    let probe = format!(
        "{} {} {}",
        parts.method,
        parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
        String::from_utf8_lossy(&bytes)
    );
    let fault = sim.take_fault(&probe);
    let req = Request::from_parts(parts, Body::from(bytes));
    match fault {
        None => next.run(req).await,
        Some(Fault::Error { status }) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, Json(error_body(status))).into_response()
        }
        Some(Fault::RateLimit { retry_after_s }) => {
            let mut h = HeaderMap::new();
            if let Ok(v) = retry_after_s.to_string().parse() {
                h.insert("retry-after", v);
            }
            (StatusCode::TOO_MANY_REQUESTS, h, Json(error_body(429))).into_response()
        }
        Some(Fault::Latency { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(req).await
        }
        Some(Fault::ErrorAfterEffect { status }) => {
            let _done = next.run(req).await;
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, Json(error_body(status))).into_response()
        }
        Some(Fault::HangAfterEffect { ms }) => {
            let resp = next.run(req).await;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            resp
        }
    }
}

/// Reads a JSON body, answering the vendor's 400 shape when it is not JSON.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes, error_body: ErrorBody) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|_| (StatusCode::BAD_REQUEST, Json(error_body(400))).into_response())
}

/// Test personas: outcomes are chosen by markers in the person's family name, so tests and the demo
/// pick outcomes without a control call. (Documented in the README.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persona {
    Clear,
    /// KYC asks for more documents first, then clears after they "arrive".
    StepUp,
    /// KYC finds a forged document.
    Forger,
    /// KYC needs manual review.
    Review,
    /// AML: a sanctioned person.
    Sanctioned,
    /// AML: a politically exposed person.
    Pep,
}

pub fn persona(text: &str) -> Persona {
    let t = text.to_lowercase();
    if t.contains("stepup") {
        Persona::StepUp
    } else if t.contains("forger") {
        Persona::Forger
    } else if t.contains("reviewme") {
        Persona::Review
    } else if t.contains("sanctionov") {
        Persona::Sanctioned
    } else if t.contains("politica") {
        Persona::Pep
    } else {
        Persona::Clear
    }
}
