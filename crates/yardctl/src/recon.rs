//! `yardctl recon`: the reconciliation service's runs and findings, through its API.
//!
//!   yardctl recon run [--dry-run] [--grace-seconds S]   a run now; its summary
//!   yardctl recon findings [--state open] [--kind K]    findings with their age and value at risk
//!   yardctl recon ack <id> --by <who>                   take a finding
//!   yardctl recon resolve <id> --by <who> --resolution matched_late|written_off|corrected

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

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
    let admin = crate::admin::Admin::from_env()?;
    match command {
        ReconCommand::Run { dry_run, grace_seconds } => {
            let mut body = json!({"dry_run": dry_run});
            if let Some(g) = grace_seconds {
                body["grace_seconds"] = json!(g);
            }
            let s = admin.post(&format!("{url}/runs"), &body).await?;
            println!(
                "run {}{}: partner records {}, report files {}, findings {} ({} new)",
                s["run"],
                if dry_run { " (dry)" } else { "" },
                s["partner_records"],
                s["files"].as_array().map(Vec::len).unwrap_or(0),
                s["findings"],
                s["new_findings"]
            );
            if let Some(u) = s["partners_unavailable"].as_object().filter(|u| !u.is_empty()) {
                println!("left out (could not be read): {}", Value::Object(u.clone()));
            }
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
            let v = admin.get(&format!("{url}/findings"), &q).await?;
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
            admin
                .post(&format!("{url}/findings/{id}/acknowledge"), &json!({"by": by}))
                .await?;
            println!("finding {id} acknowledged by {by}");
        }
        ReconCommand::Resolve { id, by, resolution } => {
            admin
                .post(
                    &format!("{url}/findings/{id}/resolve"),
                    &json!({"by": by, "resolution": resolution}),
                )
                .await?;
            println!("finding {id} resolved by {by}: {resolution}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `yardctl bench recon`: `lines` settled payouts made known to the running reconciliation service
/// the way the mesh does it (`PayoutCompleted` on `payouts.outcomes.v1`), then a Stripe-shaped
/// settlement report of as many lines dropped where the partner drops its reports: `inject` lines
/// one cent off (each must be an amount mismatch) and `inject` lines that lost our reference (each
/// must be matched by the rules, amount and date). One run through the service's API. Prints
/// events/s taken in, lines/s reconciled, findings found vs injected; asserts nothing. Its
/// synthetic payouts are removed from the service's tables afterwards.
pub async fn bench(lines: usize, inject: usize) -> anyhow::Result<ExitCode> {
    use futures::StreamExt;
    use switchyard_model::{
        Envelope, EventRecord, SchemaCatalog,
        events::{
            Event,
            common::Money,
            payouts::{PayoutCompleted, PayoutStatus, flow_id},
        },
    };

    let env = crate::demo::Env::load()?;
    let run = format!("{:x}", chrono::Utc::now().timestamp_millis());
    let tenant = format!("tenant-rbench-{run}");
    let every = (lines / inject.max(1)).max(2);
    let payout = |i: usize| PayoutCompleted {
        envelope: Envelope::new(
            PayoutCompleted::RECORD,
            &tenant,
            flow_id(&tenant, &format!("p{i}")),
            "bench",
        ),
        payout_id: format!("p{i}"),
        status: PayoutStatus::Settled,
        amount: Money {
            amount_minor: 100_000 + i as i64,
            currency: "EUR".into(),
        },
        partner: "payouts-stripe".into(),
        provider_reference: Some(format!("po_rb{run}_{i}")),
        failure: None,
        reasons: vec![],
    };
    println!(
        "bench recon: {lines} settled payouts at the Stripe-shaped partner, then its settlement report of {lines} lines \
         ({inject} one cent off, {inject} without our reference), one run through the service"
    );

    let codec = switchyard_runtime::Codec::new(
        SchemaCatalog::embedded()?,
        switchyard_runtime::registry::RegistryClient::new(env.var("SCHEMA_REGISTRY_URL")?, Duration::from_secs(10))?,
    );
    let producer = switchyard_runtime::kafka::producer(env.var("KAFKA_BOOTSTRAP_SERVERS")?, "bench-recon")?;
    // The schema's id once, before thousands of encodes ask the registry at the same moment.
    codec
        .encode(PayoutCompleted::TOPIC, &EventRecord::of(&payout(0))?)
        .await?;
    let started = Instant::now();
    let sent: Vec<anyhow::Result<()>> = futures::stream::iter(0..lines)
        .map(|i| {
            let (codec, producer, event) = (&codec, &producer, payout(i));
            async move {
                let payload = codec.encode(PayoutCompleted::TOPIC, &EventRecord::of(&event)?).await?;
                producer
                    .send(
                        rdkafka::producer::FutureRecord::to(PayoutCompleted::TOPIC)
                            .key(&event.envelope.flow_id)
                            .payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
                Ok(())
            }
        })
        .buffer_unordered(2_000)
        .collect()
        .await;
    sent.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    // Taken in: counted in the service's own table (read only).
    let db = sqlx::PgPool::connect(env.var("RECONCILIATION_DATABASE_URL")?).await?;
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payouts_seen WHERE tenant_id = $1")
            .bind(&tenant)
            .fetch_one(&db)
            .await?;
        if n as usize >= lines {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "only {n} of {lines} outcomes taken in after 900 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let taken = started.elapsed();
    println!(
        "taken in: {lines} outcomes in {:.2} s = {:.0} events/s (produce, consume, inbox, store)",
        taken.as_secs_f64(),
        lines as f64 / taken.as_secs_f64()
    );

    let when = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S");
    let mut text = String::with_capacity(lines * 120);
    text.push_str("balance_transaction_id,created_utc,reporting_category,currency,gross,fee,net,automatic_payout_id,payout_metadata[payout_id],description\n");
    let (mut off, mut unnamed) = (0, 0);
    for i in 0..lines {
        let p = payout(i);
        let mut minor = p.amount.amount_minor;
        let (mut reference, mut ours) = (format!("po_rb{run}_{i}"), p.envelope.flow_id.clone());
        if i % every == 0 && off < inject {
            off += 1;
            minor += 1;
        } else if i % every == every / 2 && unnamed < inject {
            unnamed += 1;
            reference = format!("po_rbx{run}_{i}");
            ours.clear();
        }
        let gross = switchyard_model::money::decimal(minor, "EUR").unwrap_or_default();
        text.push_str(&format!(
            "txn_rb{run}_{i},{when},payout,eur,-{gross},0.00,-{gross},{reference},{ours},STRIPE PAYOUT\n"
        ));
    }
    let data = std::env::var("SWITCHYARD_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../local-stack/data"));
    let dir = data.join("reports/payouts-stripe");
    std::fs::create_dir_all(&dir)?;
    let name = format!("bench-{run}.csv");
    std::fs::write(dir.join(&name), &text)?;
    println!("report: {name}, {} MB", text.len() / 1_000_000);

    let url = env.var("RECONCILIATION_URL")?;
    let started = Instant::now();
    let r = env
        .http
        .post(format!("{url}/runs"))
        .bearer_auth(env.admin_token()?)
        .json(&json!({"grace_seconds": 0}))
        .timeout(Duration::from_secs(900))
        .send()
        .await?;
    let status = r.status();
    let s: Value = r.json().await.context("the run's summary")?;
    anyhow::ensure!(status.is_success(), "reconciliation answered {status}: {s}");
    let took = started.elapsed();
    std::fs::remove_file(dir.join(&name)).ok();
    let file = s["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["file"] == name.as_str()))
        .cloned()
        .context("the run did not read the report")?;
    let file_ms = file["ms"].as_f64().unwrap_or(0.0);
    println!(
        "run: {:.2} s in all (partners' lists too); the report: {} lines in {:.2} s = {:.0} lines/s \
         (read, parse, match, store)",
        took.as_secs_f64(),
        file["lines"],
        file_ms / 1000.0,
        lines as f64 / (file_ms / 1000.0).max(1e-9)
    );
    println!("matched by rule: {}", file["matched_by_rule"]);
    // The bench's payouts are synthetic (no partner paid them): left behind, every later run
    // would find each one missing at the partner. They go, with what the run made of them.
    let ours = format!("{}.{tenant}.%", tenant.len());
    for sql in [
        "DELETE FROM findings WHERE internal_reference LIKE $1",
        "DELETE FROM line_matches WHERE flow_id LIKE $1",
        "DELETE FROM payouts_seen WHERE flow_id LIKE $1",
    ] {
        sqlx::query(sql).bind(&ours).execute(&db).await?;
    }
    let by_rule = &file["matched_by_rule"];
    let right = file["findings"].as_u64() == Some(off as u64)
        && by_rule["amount_date"].as_u64() == Some(unnamed as u64)
        && by_rule["reference"].as_u64() == Some((lines - unnamed) as u64);
    println!(
        "findings: {} for {off} injected amounts; {} of {unnamed} lines without our reference matched by the rules: {}",
        file["findings"],
        by_rule["amount_date"],
        if right { "all found, nothing else" } else { "DISAGREES" }
    );
    Ok(ExitCode::SUCCESS)
}
