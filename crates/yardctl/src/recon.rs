//! `yardctl recon`: the reconciliation service's runs and findings, through its API.
//!
//!   yardctl recon run [--dry-run] [--grace-seconds S]   a run now; its summary
//!   yardctl recon findings [--state open] [--kind K]    findings with their age and value at risk
//!   yardctl recon ack <id> --by <who>                   take a finding
//!   yardctl recon resolve <id> --by <who> --resolution matched_late|written_off|corrected

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum ReconCommand {
    /// Run a reconciliation now and print its summary.
    Run {
        /// Compute and report; store and publish nothing.
        #[arg(long)]
        dry_run: bool,
        /// How old a record must be before its absence counts (the service's default otherwise).
        #[arg(long)]
        grace_seconds: Option<f64>,
    },
    /// List findings.
    Findings {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        kind: Option<String>,
    },
    /// Acknowledge a finding (take it).
    Ack {
        id: i64,
        #[arg(long)]
        by: String,
    },
    /// Resolve a finding with a reason.
    Resolve {
        id: i64,
        #[arg(long)]
        by: String,
        /// matched_late, written_off or corrected.
        #[arg(long)]
        resolution: String,
    },
}

pub async fn run(command: ReconCommand, url: &str) -> anyhow::Result<ExitCode> {
    let http = reqwest::Client::new();
    let answer = |r: reqwest::Response| async move {
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        anyhow::ensure!(status.is_success(), "reconciliation answered {status}: {text}");
        serde_json::from_str::<Value>(&text).context("reconciliation answered something else than JSON")
    };
    match command {
        ReconCommand::Run { dry_run, grace_seconds } => {
            let mut body = json!({"dry_run": dry_run});
            if let Some(g) = grace_seconds {
                body["grace_seconds"] = json!(g);
            }
            let s = answer(http.post(format!("{url}/runs")).json(&body).send().await?).await?;
            println!(
                "run {}{}: partner records {}, report files {}, findings {} ({} new)",
                s["run"],
                if dry_run { " (dry)" } else { "" },
                s["partner_records"],
                s["files"].as_array().map(Vec::len).unwrap_or(0),
                s["findings"],
                s["new_findings"]
            );
            println!("by kind: {}", s["by_kind"]);
            println!("value at risk (minor units): {}", s["value_at_risk_minor"]);
        }
        ReconCommand::Findings { state, kind } => {
            let mut q = vec![];
            if let Some(s) = state {
                q.push(("state", s));
            }
            if let Some(k) = kind {
                q.push(("kind", k));
            }
            let v = answer(http.get(format!("{url}/findings")).query(&q).send().await?).await?;
            let all = v["findings"].as_array().cloned().unwrap_or_default();
            println!(
                "{:>7} {:<20} {:<15} {:<13} {:>14} {:>9}  reference",
                "id", "kind", "partner", "state", "at risk", "age"
            );
            for f in &all {
                let currency = f["currency"].as_str().unwrap_or("");
                let risk = f["amount_at_risk"]
                    .as_i64()
                    .and_then(|m| switchyard_model::money::decimal(m, currency))
                    .map(|d| format!("{d} {currency}"))
                    .unwrap_or_default();
                println!(
                    "{:>7} {:<20} {:<15} {:<13} {:>14} {:>8.0}s  {}",
                    f["id"],
                    f["kind"].as_str().unwrap_or(""),
                    f["partner"].as_str().unwrap_or(""),
                    f["state"].as_str().unwrap_or(""),
                    risk,
                    f["age_seconds"].as_f64().unwrap_or(0.0),
                    f["internal_reference"]
                        .as_str()
                        .or(f["provider_reference"].as_str())
                        .unwrap_or("")
                );
            }
            println!("{} findings", all.len());
        }
        ReconCommand::Ack { id, by } => {
            answer(
                http.post(format!("{url}/findings/{id}/acknowledge"))
                    .json(&json!({"by": by}))
                    .send()
                    .await?,
            )
            .await?;
            println!("finding {id} acknowledged by {by}");
        }
        ReconCommand::Resolve { id, by, resolution } => {
            answer(
                http.post(format!("{url}/findings/{id}/resolve"))
                    .json(&json!({"by": by, "resolution": resolution}))
                    .send()
                    .await?,
            )
            .await?;
            println!("finding {id} resolved by {by}: {resolution}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
