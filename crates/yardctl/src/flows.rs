//! `yardctl flows show|list`: a flow as the mesh holds it, from the services' admin APIs (the
//! orchestrator's flow, every service's effect ledger and outbox rows for it) and the dead-letter
//! topics (messages of its key).

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::admin::Admin;

#[derive(clap::Subcommand)]
pub enum FlowsCommand {
    /// One flow: state, history, partners' references, timers, calls to partners, events
    /// published and dead letters.
    Show {
        flow_id: String,
        /// Print everything gathered as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Flows by state, tenant and age, oldest first.
    List {
        /// onboarding or payout.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// Only flows started longer ago than this (e.g. 90s, 15m, 2h, 1d).
        #[arg(long)]
        older_than: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

/// The services whose admin APIs are asked, by the variable naming each one's URL.
const SERVICES: [(&str, &str); 6] = [
    ("ingress", "INGRESS_URL"),
    ("orchestrator", "ORCHESTRATOR_URL"),
    ("kyc-adapter", "KYC_ADAPTER_URL"),
    ("aml-adapter", "AML_ADAPTER_URL"),
    ("fraud-adapter", "FRAUD_ADAPTER_URL"),
    ("payouts-adapter", "PAYOUTS_ADAPTER_URL"),
];

fn url_of(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|u| !u.is_empty())
}

/// `90s`, `15m`, `2h`, `1d` (or plain seconds) in seconds.
pub fn seconds(text: &str) -> anyhow::Result<f64> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let n: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration (e.g. 90s, 15m, 2h, 1d)"))?;
    let factor = match unit {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => anyhow::bail!("{text:?}: the unit must be s, m, h or d"),
    };
    anyhow::ensure!(n >= 0.0, "{text:?} must not be negative");
    Ok(n * factor)
}

/// Everything the mesh holds about `flow_id`.
pub async fn gather(admin: &Admin, kafka: &str, flow_id: &str) -> anyhow::Result<Value> {
    let orchestrator = url_of("ORCHESTRATOR_URL").unwrap_or_else(|| "http://127.0.0.1:8101".into());
    let mut flow = admin
        .get(&format!("{orchestrator}/admin/flows/{}", encode(flow_id)), &[])
        .await?;
    let (mut effects, mut outbox, mut unreachable) = (Vec::new(), Vec::new(), Vec::new());
    for (service, var) in SERVICES {
        let Some(url) = url_of(var) else { continue };
        let q = [("flow_id", flow_id.to_string())];
        match admin.get(&format!("{url}/admin/effects"), &q).await {
            Ok(v) => {
                for e in v["effects"].as_array().into_iter().flatten() {
                    let mut e = e.clone();
                    e["service"] = json!(service);
                    effects.push(e);
                }
            }
            Err(e) => unreachable.push(json!({"service": service, "error": e.to_string()})),
        }
        let q = [("key", flow_id.to_string())];
        if let Ok(v) = admin.get(&format!("{url}/admin/outbox"), &q).await {
            for row in v["outbox"].as_array().into_iter().flatten() {
                let mut row = row.clone();
                row["service"] = json!(service);
                outbox.push(row);
            }
        }
    }
    outbox.sort_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
    let dead: Vec<Value> = crate::dlq::of_key(kafka, flow_id)?
        .iter()
        .map(|d| {
            json!({"id": d.id(), "reason": d.header("dlq_reason"), "consumer": d.header("dlq_consumer"),
                   "at": d.header("dlq_at"), "detail": d.header("dlq_detail")})
        })
        .collect();
    flow["effects"] = effects.into();
    flow["outbox"] = outbox.into();
    flow["dead_letters"] = dead.into();
    flow["unreachable"] = unreachable.into();
    Ok(flow)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ts(v: &Value) -> String {
    v.as_str()
        .map(|t| t.get(..23).unwrap_or(t).replace('T', " "))
        .unwrap_or_else(|| "-".into())
}

/// Prints a flow as `gather` found it.
pub fn print(f: &Value) {
    println!(
        "flow {}  ({}, tenant {})",
        s(&f["flow_id"]),
        s(&f["kind"]),
        s(&f["tenant"])
    );
    println!("  state        {}", s(&f["state"]));
    if let Some(trace) = f["trace_id"].as_str() {
        match std::env::var("JAEGER_URL") {
            Ok(j) => println!("  trace        {trace}  ({j}/trace/{trace})"),
            Err(_) => println!("  trace        {trace}"),
        }
    }
    println!(
        "  started      {}   updated {}   completed {}",
        ts(&f["created_at"]),
        ts(&f["updated_at"]),
        ts(&f["completed_at"])
    );
    match f["kind"].as_str() {
        Some("onboarding") => {
            for d in ["kyc", "aml"] {
                let c = &f[d];
                println!(
                    "  {d:<12} partner {}  reference {}  verdict {}  tried {}",
                    s(&c["partner"]),
                    s(&c["reference"]),
                    s(&c["verdict"]),
                    s(&c["tried"])
                );
            }
            println!(
                "  decision     reasons {}  failure class {}  failovers {}",
                s(&f["reasons"]),
                s(&f["failure_class"]),
                s(&f["failovers"])
            );
        }
        Some("payout") => {
            let currency = f["currency"].as_str().unwrap_or("");
            let amount = f["amount_minor"]
                .as_i64()
                .and_then(|m| switchyard_model::money::decimal(m, currency))
                .unwrap_or_default();
            println!("  amount       {amount} {currency}   flags {}", s(&f["flags"]));
            println!("  execution    {}", s(&f["detail"]));
        }
        _ => {}
    }
    println!("history");
    for h in f["history"].as_array().into_iter().flatten() {
        println!("  {:<23}  {:<22} {}", ts(&h["at"]), s(&h["event"]), s(&h["detail"]));
    }
    let refs = f["references"].as_array().cloned().unwrap_or_default();
    if !refs.is_empty() {
        println!("partners' references");
        for r in &refs {
            let shadow = if r["shadow"] == true { " (shadow)" } else { "" };
            println!("  {:<18} {}{shadow}", s(&r["partner"]), s(&r["reference"]));
        }
    }
    let timers = f["timers"].as_array().cloned().unwrap_or_default();
    println!("timers{}", if timers.is_empty() { ": none" } else { "" });
    for t in &timers {
        println!("  {:<18} due {}", s(&t["timer"]), ts(&t["due_at"]));
    }
    let effects = f["effects"].as_array().cloned().unwrap_or_default();
    println!(
        "calls to partners (effect ledger){}",
        if effects.is_empty() { ": none" } else { "" }
    );
    for e in &effects {
        println!(
            "  {:<16} {:<18} {:<14} {:<13} ref {:<24} attempts {} sends {}{}",
            s(&e["service"]),
            s(&e["partner"]),
            s(&e["operation"]),
            s(&e["state"]),
            s(&e["provider_reference"]),
            s(&e["attempts"]),
            s(&e["sends"]),
            e["last_error"]
                .as_str()
                .map(|x| format!("  last error: {x}"))
                .unwrap_or_default()
        );
    }
    let outbox = f["outbox"].as_array().cloned().unwrap_or_default();
    println!("events written for it (outbox)");
    for o in &outbox {
        let state = if !o["published_at"].is_null() {
            format!("published {}", ts(&o["published_at"]))
        } else if !o["set_aside_at"].is_null() {
            format!("SET ASIDE: {}", s(&o["last_error"]))
        } else {
            "pending".into()
        };
        println!("  {:<16} {:<28} {}", s(&o["service"]), s(&o["topic"]), state);
    }
    let dead = f["dead_letters"].as_array().cloned().unwrap_or_default();
    println!("dead letters{}", if dead.is_empty() { ": none" } else { "" });
    for d in &dead {
        println!(
            "  {}  {}  {}  {}",
            s(&d["id"]),
            s(&d["reason"]),
            s(&d["consumer"]),
            s(&d["detail"])
        );
    }
    for u in f["unreachable"].as_array().into_iter().flatten() {
        println!("(not asked: {}: {})", s(&u["service"]), s(&u["error"]));
    }
}

pub async fn run(command: FlowsCommand, kafka: &str) -> anyhow::Result<ExitCode> {
    let admin = Admin::from_env()?;
    match command {
        FlowsCommand::Show { flow_id, json } => {
            let f = gather(&admin, kafka, &flow_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                print(&f);
            }
        }
        FlowsCommand::List {
            kind,
            state,
            tenant,
            older_than,
            limit,
        } => {
            let orchestrator = url_of("ORCHESTRATOR_URL").unwrap_or_else(|| "http://127.0.0.1:8101".into());
            let mut q = vec![("limit", limit.to_string())];
            for (k, v) in [("kind", kind), ("state", state), ("tenant", tenant)] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            if let Some(o) = older_than {
                q.push(("older_than_seconds", seconds(&o)?.to_string()));
            }
            let v = admin.get(&format!("{orchestrator}/admin/flows"), &q).await?;
            let flows = v["flows"].as_array().cloned().unwrap_or_default();
            println!(
                "  {:<46} {:<11} {:<18} {:<16} {:>10}",
                "flow id", "kind", "tenant", "state", "age"
            );
            for f in &flows {
                println!(
                    "  {:<46} {:<11} {:<18} {:<16} {:>9.0}s",
                    s(&f["flow_id"]),
                    s(&f["kind"]),
                    s(&f["tenant"]),
                    s(&f["state"]),
                    f["age_seconds"].as_f64().unwrap_or(0.0)
                );
            }
            println!(
                "{} flows{}",
                flows.len(),
                if flows.len() as i64 >= limit {
                    " (limit reached: --limit)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(seconds("90").unwrap(), 90.0);
        assert_eq!(seconds("90s").unwrap(), 90.0);
        assert_eq!(seconds("15m").unwrap(), 900.0);
        assert_eq!(seconds("2h").unwrap(), 7200.0);
        assert_eq!(seconds("1d").unwrap(), 86400.0);
        assert!(seconds("5w").is_err());
        assert!(seconds("soon").is_err());
        assert!(seconds("-3m").is_err());
    }

    #[test]
    fn flow_ids_are_encoded_for_a_path() {
        assert_eq!(encode("8.tenant-a.po/1 x"), "8.tenant-a.po%2F1%20x");
    }
}
