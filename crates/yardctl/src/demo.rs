//! `yardctl demo` (the main job's workload) and `yardctl bench onboarding` (a load run): real
//! onboardings through the ingress of the running mesh, against the simulated vendors.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::{Value, json};

/// The running mesh's endpoints and credentials (local-stack/endpoints.env and secrets.env).
#[derive(Clone)]
pub(crate) struct Env {
    vars: BTreeMap<String, String>,
    pub(crate) http: reqwest::Client,
}

impl Env {
    pub(crate) fn load() -> anyhow::Result<Env> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../local-stack");
        let mut vars = BTreeMap::new();
        for f in ["endpoints.env", "data/secrets.env"] {
            let text = std::fs::read_to_string(root.join(f))
                .with_context(|| format!("{f}: is the mesh running (make services)?"))?;
            for (k, v) in text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
            {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        Ok(Env {
            vars,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
        })
    }

    /// The traces the tracing backend (Jaeger, `JAEGER_URL`) keeps for each of the mesh's services,
    /// asked with `query` (e.g. `start` in microseconds, `lookback`); `None` without a backend.
    pub(crate) async fn traces(&self, query: &[(&str, String)]) -> anyhow::Result<Option<Vec<Value>>> {
        let Ok(jaeger) = self.var("JAEGER_URL") else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for service in [
            "ingress",
            "orchestrator",
            "kyc-adapter",
            "aml-adapter",
            "fraud-adapter",
            "payouts-adapter",
            "cards-adapter",
            "openbanking-adapter",
            "webhook-normalizer",
            "reconciliation",
        ] {
            let mut q: Vec<(&str, String)> = vec![("service", service.to_string())];
            q.extend(query.iter().cloned());
            let v: Value = self
                .http
                .get(format!("{jaeger}/api/traces"))
                .query(&q)
                .send()
                .await?
                .json()
                .await?;
            out.extend(v["data"].as_array().into_iter().flatten().cloned());
        }
        Ok(Some(out))
    }

    /// Every endpoint and credential variable, by name.
    pub(crate) fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub(crate) fn var(&self, k: &str) -> anyhow::Result<&str> {
        self.vars
            .get(k)
            .map(String::as_str)
            .with_context(|| format!("{k} unknown"))
    }

    /// The services' admin token (endpoints.env).
    pub(crate) fn admin_token(&self) -> anyhow::Result<&str> {
        self.var("SWITCHYARD_ADMIN__TOKEN")
    }

    pub(crate) async fn api_key(&self, tenant: &str) -> anyhow::Result<String> {
        self.api_key_with(tenant, "onboarding:write,onboarding:read").await
    }

    /// A new API key for `tenant` with `scopes` (comma-separated), through the ingress's admin API.
    pub(crate) async fn api_key_with(&self, tenant: &str, scopes: &str) -> anyhow::Result<String> {
        let admin = crate::admin::Admin::with_token(self.admin_token()?)?;
        let body = json!({"tenant": tenant, "scopes": scopes.split(',').collect::<Vec<_>>(), "label": "demo", "by": "yardctl"});
        let key = admin
            .post(&format!("{}/admin/keys", self.var("INGRESS_URL")?), &body)
            .await?;
        key["key"]
            .as_str()
            .map(str::to_string)
            .context("the ingress answered without a key")
    }

    pub(crate) async fn submit(&self, key: &str, body: &Value) -> anyhow::Result<String> {
        let resp = self
            .http
            .post(format!("{}/v1/onboardings", self.var("INGRESS_URL")?))
            .bearer_auth(key)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(body)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        anyhow::ensure!(status.as_u16() == 202, "submit answered {status}: {v}");
        v["id"].as_str().map(str::to_string).context("no id")
    }

    pub(crate) async fn get(&self, key: &str, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/v1/onboardings/{id}", self.var("INGRESS_URL")?))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?)
    }

    async fn fault(&self, sim: &str, on: bool) -> anyhow::Result<()> {
        let url = format!("{sim}/_sim/faults");
        let r = if on {
            self.http
                .post(url)
                .json(&json!({"matcher": "", "fault": {"kind": "error", "status": 503}}))
                .send()
                .await?
        } else {
            self.http.delete(url).send().await?
        };
        anyhow::ensure!(r.status().is_success(), "simulator control: {}", r.status());
        Ok(())
    }
}

const ONFIDO: &str = "http://127.0.0.1:9301";

/// One applicant of the workload: who, and what must become of them.
struct Case {
    tenant: &'static str,
    region: &'static str,
    given: String,
    family: String,
    expect: &'static str,
    kind: &'static str,
}

struct Tracked {
    case: Case,
    key: String,
    id: String,
    phase: &'static str,
}

fn body(applicant_id: &str, c: &Case) -> Value {
    json!({"applicant_id": applicant_id, "person": {"given_name": c.given, "family_name": c.family, "date_of_birth": "1985-06-15",
        "nationality": "GB", "email": format!("{}.{}@example.test", c.given.to_lowercase(), c.family.to_lowercase())},
        "region": c.region, "risk_tier": "MEDIUM", "segment": "retail"})
}

fn mix(tenant: &'static str, region: &'static str, tag: &str, clean: usize) -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |given: &str, family: &str, expect, kind| {
        v.push(Case {
            tenant,
            region,
            given: format!("{given}{tag}"),
            family: family.to_string(),
            expect,
            kind,
        })
    };
    let names = [
        "Ada", "Grace", "Alan", "Hedy", "Claude", "Radia", "Edsger", "Frances", "Ken", "Barbara",
    ];
    for i in 0..clean {
        add(names[i % names.len()], "Clearwater", "approved", "clean applicant");
    }
    add("Sam", "Stepup", "approved", "documents step-up");
    add("Viktor", "Sanctionov", "rejected", "sanctioned name");
    add("Pepita", "Politica", "manual_review", "PEP possible match");
    add("Fred", "Forger", "rejected", "forged document");
    add("Rita", "Reviewme", "manual_review", "KYC needs review");
    v
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn seconds(v: &Value) -> Option<f64> {
    let created = chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str()?).ok()?;
    let done = chrono::DateTime::parse_from_rfc3339(v["completed_at"].as_str()?).ok()?;
    Some((done - created).num_milliseconds() as f64 / 1000.0)
}

async fn wait_all(env: &Env, flows: &[Tracked], within: Duration) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + within;
    let mut out = vec![Value::Null; flows.len()];
    loop {
        let mut pending = 0;
        for (i, f) in flows.iter().enumerate() {
            if out[i]["status"] == "completed" {
                continue;
            }
            out[i] = env.get(&f.key, &f.id).await?;
            if out[i]["status"] != "completed" {
                pending += 1;
            }
        }
        if pending == 0 || Instant::now() > deadline {
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The project's alert rules that went pending or fired since `began`, read from Prometheus.
async fn alerts_during(env: &Env, began: chrono::DateTime<chrono::Utc>) {
    let Ok(prometheus) = env.var("PROMETHEUS_URL") else {
        return;
    };
    let answer = env
        .http
        .get(format!("{prometheus}/api/v1/query_range"))
        .query(&[
            ("query", "ALERTS".to_string()),
            ("start", began.timestamp().to_string()),
            ("end", chrono::Utc::now().timestamp().to_string()),
            ("step", "5".to_string()),
        ])
        .send()
        .await;
    let Ok(v) = (match answer {
        Ok(r) => r.json::<Value>().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }) else {
        println!("\nalerts during the run: Prometheus at {prometheus} did not answer");
        return;
    };
    let mut seen: BTreeMap<(String, String), (String, i64)> = BTreeMap::new();
    for series in v["data"]["result"].as_array().into_iter().flatten() {
        let m = &series["metric"];
        let labels: Vec<String> = m
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !["__name__", "alertname", "alertstate", "severity"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        let first = series["values"][0][0].as_f64().unwrap_or(0.0) as i64;
        let key = (m["alertname"].as_str().unwrap_or("?").to_string(), labels.join(" "));
        let state = m["alertstate"].as_str().unwrap_or("?").to_string();
        let entry = seen.entry(key).or_insert((state.clone(), first));
        if state == "firing" {
            *entry = (state, first);
        }
    }
    println!("\nalerts during the run (from Prometheus; pending: the condition held, not yet for the rule's `for:`):");
    if seen.is_empty() {
        println!("  none");
    }
    for ((name, labels), (state, since)) in &seen {
        let at = chrono::DateTime::from_timestamp(*since, 0)
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_default();
        println!("  {name:<34} {state:<8} from {at}  {labels}");
    }
}

pub async fn demo() -> anyhow::Result<ExitCode> {
    let env = Env::load()?;
    let began = chrono::Utc::now();
    let run = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let alpha = env.api_key("tenant-alpha").await?;
    let beta = env.api_key("tenant-beta").await?;
    println!("== switchyard demo: onboarding for two tenants (run {run}) ==");
    println!("tenant-alpha (UK): KYC primary kyc-onfido, secondary kyc-sumsub; AML aml-mesh, then aml-watchman");
    println!("tenant-beta  (EU): KYC primary kyc-sumsub, secondary kyc-onfido; AML aml-mesh, then aml-watchman\n");
    let mut flows = Vec::new();
    let started = Instant::now();
    let submit = async |cases: Vec<Case>, phase: &'static str, flows: &mut Vec<Tracked>| -> anyhow::Result<()> {
        for (i, c) in cases.into_iter().enumerate() {
            let key = if c.tenant == "tenant-alpha" {
                alpha.clone()
            } else {
                beta.clone()
            };
            let id = env
                .submit(&key, &body(&format!("demo-{run}-{phase}-{}-{i}", c.tenant), &c))
                .await?;
            flows.push(Tracked {
                case: c,
                key,
                id,
                phase,
            });
        }
        Ok(())
    };
    println!("phase 1: normal traffic");
    submit(mix("tenant-alpha", "UK", &format!("{run}a"), 6), "normal", &mut flows).await?;
    submit(mix("tenant-beta", "EU", &format!("{run}b"), 4), "normal", &mut flows).await?;
    wait_all(&env, &flows, Duration::from_secs(60)).await?;
    println!("phase 2: kyc-onfido outage (every call answers 503)");
    env.fault(ONFIDO, true).await?;
    submit(mix("tenant-alpha", "UK", &format!("{run}c"), 5), "outage", &mut flows).await?;
    wait_all(&env, &flows, Duration::from_secs(60)).await?;
    println!("phase 3: kyc-onfido recovers");
    env.fault(ONFIDO, false).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    submit(
        mix("tenant-alpha", "UK", &format!("{run}d"), 4),
        "recovered",
        &mut flows,
    )
    .await?;
    let results = wait_all(&env, &flows, Duration::from_secs(120)).await?;
    let wall = started.elapsed().as_secs_f64();

    println!(
        "\n{:<14} {:<10} {:<22} {:<14} {:<14} {:<12} {:<10} ok",
        "tenant", "phase", "case", "expected", "decision", "kyc", "aml"
    );
    let mut wrong = 0;
    let mut by_outcome: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_vendor: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut failed_over = 0;
    // The flow shown in full at the end: one that failed over during the outage.
    let mut interesting = None;
    for (f, r) in flows.iter().zip(&results) {
        let decision = r["decision"].as_str().unwrap_or("(pending)");
        let kyc = r["kyc_partner"].as_str().unwrap_or("-");
        let aml = r["aml_partner"].as_str().unwrap_or("-");
        let primary = if f.case.tenant == "tenant-alpha" {
            "kyc-onfido"
        } else {
            "kyc-sumsub"
        };
        let mut ok = decision == f.case.expect;
        // During the outage alpha's KYC must have failed over; before and after it must not.
        if f.case.tenant == "tenant-alpha" && kyc != "-" {
            ok &= (kyc != primary) == (f.phase == "outage");
        }
        if kyc != "-" && kyc != primary {
            failed_over += 1;
            interesting.get_or_insert_with(|| f.id.clone());
        }
        if !ok {
            wrong += 1;
        }
        *by_outcome.entry(decision.to_string()).or_default() += 1;
        *by_vendor.entry(format!("kyc {kyc}")).or_default() += 1;
        if aml != "-" {
            *by_vendor.entry(format!("aml {aml}")).or_default() += 1;
        }
        if let Some(s) = seconds(r) {
            latencies.push(s);
        }
        println!(
            "{:<14} {:<10} {:<22} {:<14} {:<14} {:<12} {:<10} {}",
            f.case.tenant,
            f.phase,
            f.case.kind,
            f.case.expect,
            decision,
            kyc,
            aml,
            if ok { "yes" } else { "NO" }
        );
    }
    latencies.sort_by(f64::total_cmp);
    println!("\nflows: {} in {wall:.1} s", flows.len());
    println!(
        "by outcome: {}",
        by_outcome
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "by vendor:  {}",
        by_vendor
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("failovers:  {failed_over} flows verified by their secondary KYC vendor");
    println!(
        "flow latency (accepted to decided): p50 {:.2} s, p95 {:.2} s, p99 {:.2} s (step-up flows wait for documents by design)",
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        percentile(&latencies, 99.0)
    );
    let payouts_ok = crate::demo_payouts::run(&env, run).await?;
    let cards_ok = crate::demo_cards::run(&env, run).await?;
    let openbanking_ok = crate::demo_openbanking::run(&env, run).await?;
    println!("\nwhere to look next:");
    println!(
        "  dashboards deploy/grafana/mesh-overview.json, partner-scorecard.json, service.json (import into Grafana \
         with the Prometheus at {}; `yardctl dashboards check` runs every panel's query)",
        env.var("PROMETHEUS_URL")?
    );
    println!("  API        {}/v1/openapi.json", env.var("INGRESS_URL")?);
    println!(
        "  operators  yardctl flows list|show, dlq list, routes show, partners, keys list (admin token in local-stack/endpoints.env)"
    );
    println!(
        "  metrics    {}/metrics (each service), Prometheus {}",
        env.var("KYC_ADAPTER_URL")?,
        env.var("PROMETHEUS_URL")?
    );
    println!("  logs       local-stack/data/logs/");
    if let Ok(jaeger) = env.var("JAEGER_URL") {
        println!("  traces     {jaeger} (Jaeger: every flow's trace, from the API to the partners and their webhooks)");
    }
    if let Some(id) = interesting {
        println!(
            "\none flow in full, an onboarding moved to its secondary KYC vendor during the outage (yardctl flows show {id}):"
        );
        let admin = crate::admin::Admin::with_token(env.admin_token()?)?;
        match crate::flows::gather(&admin, env.var("KAFKA_BOOTSTRAP_SERVERS")?, &id).await {
            Ok(f) => crate::flows::print(&f),
            Err(e) => println!("  (not shown: {e})"),
        }
    }
    alerts_during(&env, began).await;
    if wrong > 0 {
        eprintln!("\n{wrong} flow(s) did not reach the state they should have");
        return Ok(ExitCode::from(1));
    }
    if !payouts_ok {
        eprintln!("\nthe payout run disagrees with the partners' ledgers or its expectations");
        return Ok(ExitCode::from(1));
    }
    if !openbanking_ok {
        eprintln!("\nthe open-banking run disagrees with its expectations");
        return Ok(ExitCode::from(1));
    }
    if !cards_ok {
        eprintln!("\nthe card run disagrees with its expectations (decisions or the money left)");
        return Ok(ExitCode::from(1));
    }
    println!(
        "\nevery flow, payout, card, consent and bank payment reached the state it should; \
         every payout and bank payment executed was executed once"
    );
    Ok(ExitCode::SUCCESS)
}
