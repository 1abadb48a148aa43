//! `yardctl routes show|set` and `yardctl partners`: the routing in force (the orchestrator's
//! admin API), an operator's change to it (kept with who made it and why), and the partner catalog
//! with each partner's live health from Prometheus.

use std::{collections::BTreeMap, process::ExitCode, time::Duration};

use serde_json::{Value, json};

use crate::admin::{Admin, operator};

#[derive(clap::Subcommand)]
pub enum RoutesCommand {
    /// The routes and partners in force, the operators' overrides and the last changes.
    Show,
    /// Switch a partner on or off, make it primary where it is secondary, or take an override away.
    Set {
        partner: String,
        #[arg(long, group = "action")]
        enable: bool,
        #[arg(long, group = "action")]
        disable: bool,
        #[arg(long, group = "action")]
        primary: bool,
        /// Back to what the routing file says.
        #[arg(long, group = "action")]
        reset: bool,
        /// Why (kept with the change).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        by: Option<String>,
    },
}

fn orchestrator() -> String {
    std::env::var("ORCHESTRATOR_URL").unwrap_or_else(|_| "http://127.0.0.1:8101".into())
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "any".into(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

pub async fn run(command: RoutesCommand) -> anyhow::Result<ExitCode> {
    let admin = Admin::from_env()?;
    let url = format!("{}/admin/routing", orchestrator());
    match command {
        RoutesCommand::Show => {
            let r = admin.get(&url, &[]).await?;
            println!("routes (first match wins)");
            println!(
                "  {:<9} {:<18} {:<18} {:<18} {:>7} {:<4}  match",
                "domain", "primary", "secondary", "shadow", "rollout", "on"
            );
            for x in r["routes"].as_array().into_iter().flatten() {
                let m = &x["match"];
                println!(
                    "  {:<9} {:<18} {:<18} {:<18} {:>6}% {:<4}  tenants {} regions {} tiers {} segments {}",
                    s(&x["domain"]),
                    s(&x["primary"]),
                    s(&x["secondary"]),
                    s(&x["shadow"]),
                    s(&x["rollout_percent"]),
                    s(&x["state"]),
                    s(&m["tenants"]),
                    s(&m["regions"]),
                    s(&m["risk_tiers"]),
                    s(&m["segments"])
                );
            }
            println!("partners");
            for p in r["partners"].as_array().into_iter().flatten() {
                println!(
                    "  {:<18} {:<11} {}",
                    s(&p["id"]),
                    s(&p["domain"]),
                    if p["enabled"] == true { "enabled" } else { "DISABLED" }
                );
            }
            println!("overrides in force: {}", r["overrides"]);
            let changes = r["changes"].as_array().cloned().unwrap_or_default();
            println!("last changes{}", if changes.is_empty() { ": none" } else { "" });
            for c in &changes {
                println!(
                    "  #{:<5} {:<23} {:<14} {:<8} {:<18} {}",
                    s(&c["id"]),
                    s(&c["at"]).get(..19).unwrap_or("").replace('T', " "),
                    s(&c["by"]),
                    s(&c["action"]),
                    s(&c["partner"]),
                    s(&c["reason"])
                );
            }
        }
        RoutesCommand::Set {
            partner,
            enable,
            disable,
            primary,
            reset,
            reason,
            by,
        } => {
            let action = match (enable, disable, primary, reset) {
                (true, ..) => "enable",
                (_, true, ..) => "disable",
                (_, _, true, _) => "primary",
                (.., true) => "reset",
                _ => anyhow::bail!("say what to do: --enable, --disable, --primary or --reset"),
            };
            let v = admin
                .post(
                    &format!("{url}/partners/{partner}"),
                    &json!({"action": action, "by": operator(by)?, "reason": reason}),
                )
                .await?;
            println!(
                "change #{}: {action} {partner}; in force on every orchestrator within seconds",
                v["change"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One PromQL instant query's values by `partner`.
async fn by_partner(http: &reqwest::Client, prometheus: &str, expr: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let v: Value = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(v["status"] == "success", "Prometheus: {}", v["error"]);
    Ok(v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let p = r["metric"]["partner"].as_str()?.to_string();
            let x: f64 = r["value"][1].as_str()?.parse().ok()?;
            Some((p, x))
        })
        .collect())
}

/// `yardctl partners`: the catalog in force with each partner's health over the last 5 minutes.
pub async fn partners() -> anyhow::Result<ExitCode> {
    let admin = Admin::from_env()?;
    let r = admin.get(&format!("{}/admin/routing", orchestrator()), &[]).await?;
    let prometheus = std::env::var("PROMETHEUS_URL").unwrap_or_else(|_| "http://127.0.0.1:9090".into());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let queries = [
        (
            "calls",
            "sum by (partner) (rate(switchyard_provider_requests_total[5m]))",
        ),
        (
            "errors",
            "sum by (partner) (rate(switchyard_provider_requests_total{outcome!=\"ok\"}[5m])) / sum by (partner) (rate(switchyard_provider_requests_total[5m]))",
        ),
        (
            "p95",
            "histogram_quantile(0.95, sum by (le, partner) (rate(switchyard_provider_request_duration_seconds_bucket[5m])))",
        ),
        ("circuit", "max by (partner) (switchyard_provider_circuit_state)"),
    ];
    let mut health: BTreeMap<&str, BTreeMap<String, f64>> = BTreeMap::new();
    let mut prometheus_error = None;
    for (name, q) in queries {
        match by_partner(&http, &prometheus, q).await {
            Ok(v) => {
                health.insert(name, v);
            }
            Err(e) => {
                prometheus_error = Some(e.to_string());
                break;
            }
        }
    }
    println!(
        "  {:<18} {:<11} {:<9} {:>8} {:>7} {:>9} {:<10} {:<14} last disaster test",
        "partner", "domain", "routing", "calls/s", "errors", "p95", "circuit", "owner"
    );
    let get = |k: &str, p: &str| health.get(k).and_then(|m| m.get(p)).copied();
    for p in r["partners"].as_array().into_iter().flatten() {
        let id = s(&p["id"]);
        let circuit = match get("circuit", &id) {
            Some(x) if x >= 2.0 => "OPEN",
            Some(x) if x >= 1.0 => "half-open",
            Some(_) => "closed",
            None => "-",
        };
        println!(
            "  {:<18} {:<11} {:<9} {:>8} {:>7} {:>9} {:<10} {:<14} {}",
            id,
            s(&p["domain"]),
            if p["enabled"] == true { "enabled" } else { "DISABLED" },
            get("calls", &id)
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            get("errors", &id)
                .filter(|x| x.is_finite())
                .map(|x| format!("{:.1}%", x * 100.0))
                .unwrap_or_else(|| "-".into()),
            get("p95", &id)
                .filter(|x| x.is_finite())
                .map(|x| format!("{:.0} ms", x * 1000.0))
                .unwrap_or_else(|| "-".into()),
            circuit,
            s(&p["owner"]),
            s(&p["last_disaster_test"])
        );
    }
    if let Some(e) = prometheus_error {
        println!("(health unknown: Prometheus at {prometheus} did not answer: {e})");
    } else {
        println!("(health: the last 5 minutes, from Prometheus at {prometheus}; - where a partner had no calls)");
    }
    Ok(ExitCode::SUCCESS)
}
