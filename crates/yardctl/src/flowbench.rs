//! `yardctl bench onboarding`: onboardings end to end through the running mesh, with what bounds
//! them. Printed, never asserted.
//!
//! 1. The PostgreSQL commit ceiling on the same instance: single-row commits/s from as many
//!    connections as a service's pool.
//! 2. After as many warm-up onboardings as measured ones, submitted the same way (every pooled
//!    connection opened, authenticated and its statements prepared, schema ids, partition
//!    assignments after a restart: a fresh mesh pays for these in its first seconds), the maximum rate: `flows` onboardings from `concurrency` submitters; flows/s from the first
//!    acceptance to the last decision (the services' own timestamps), transactions per flow (the
//!    service databases' commit counters) and their share of the ceiling; CPU seconds per 1,000 flows
//!    and peak RSS per service.
//! 3. Latency at half that rate: `flows / 2` onboardings paced at half the measured maximum;
//!    p50/p95/p99 from accepted to decided.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, postgres::PgPoolOptions};

use crate::demo::{Env, percentile};

const SERVICES: [&str; 4] = ["ingress", "orchestrator", "kyc-adapter", "aml-adapter"];
const DATABASES: [&str; 5] = [
    "ingress",
    "orchestrator",
    "kyc_adapter",
    "aml_adapter",
    "webhook_normalizer",
];

fn run_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../local-stack/data/run")
}

/// CPU seconds used so far and peak RSS (MiB) of a running service.
fn usage(service: &str) -> Option<(f64, f64)> {
    let pid = std::fs::read_to_string(run_dir().join(format!("svc-{service}.pid"))).ok()?;
    let pid = pid.trim();
    let (_, cpu) = process_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((cpu, hwm_kb / 1024.0))
}

/// A process's command name and CPU seconds (user and system) from its `/proc/<pid>/stat`.
fn process_cpu(stat: &str) -> Option<(&str, f64)> {
    let (name, rest) = stat.split_once(" (")?.1.rsplit_once(')')?;
    // Fields after the command name: utime and stime are the 12th and 13th.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((name, ticks / 100.0))
}

/// CPU seconds used so far by the whole machine (all cores, every process and the kernel), and by
/// the processes named `postgres` and `java` (PostgreSQL's backends, Kafka and the registry).
fn machine_cpu() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy: f64 = cpu.iter().take(8).sum::<f64>() - cpu.get(3)? - cpu.get(4)?;
    let (mut pg, mut java) = (0.0, 0.0);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        match process_cpu(&stat) {
            Some(("postgres", cpu)) => pg += cpu,
            Some(("java", cpu)) => java += cpu,
            _ => {}
        }
    }
    Some((busy / 100.0, pg, java))
}

/// Commits counted by PostgreSQL in the services' databases.
async fn commits(admin: &str) -> anyhow::Result<i64> {
    let mut c = PgConnection::connect(admin).await?;
    let n: i64 = sqlx::query_scalar("SELECT sum(xact_commit)::bigint FROM pg_stat_database WHERE datname = ANY($1)")
        .bind(DATABASES.map(String::from).to_vec())
        .fetch_one(&mut c)
        .await?;
    Ok(n)
}

/// Single-row commits/s from `connections` connections for `seconds`, on a scratch table.
async fn commit_ceiling(admin: &str, connections: u32, seconds: u64) -> anyhow::Result<f64> {
    let pool = PgPoolOptions::new().max_connections(connections).connect(admin).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_commits (id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers = (0..connections).map(|_| {
        let pool = pool.clone();
        async move {
            let mut n = 0u64;
            while Instant::now() < until {
                sqlx::query("INSERT INTO bench_commits DEFAULT VALUES")
                    .execute(&pool)
                    .await?;
                n += 1;
            }
            Ok::<u64, sqlx::Error>(n)
        }
    });
    let started = Instant::now();
    let mut total = 0;
    for n in futures::future::join_all(workers).await {
        total += n?;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_commits").execute(&pool).await?;
    Ok(rate)
}

fn body(run: &str, i: usize) -> Value {
    json!({"applicant_id": format!("bench-{run}-{i}"),
        "person": {"given_name": format!("Bench{run}x{i}"), "family_name": "Clearwater", "date_of_birth": "1985-06-15", "nationality": "GB"},
        "region": "UK", "risk_tier": "MEDIUM", "segment": "retail"})
}

/// Submits `n` onboardings, `concurrency` at a time, each submitter pacing itself to `rate` in all
/// (None: as fast as accepted); returns their ids.
async fn submit(
    env: &Env,
    key: &str,
    run: &str,
    n: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let submitters = (0..concurrency.max(1)).map(|_| async {
        let mut ids = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i >= n {
                return Ok::<_, anyhow::Error>(ids);
            }
            if let Some(rate) = rate {
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            ids.push(env.submit(key, &body(run, i)).await?);
        }
    });
    let mut all = Vec::new();
    for ids in futures::future::join_all(submitters).await {
        all.extend(ids?);
    }
    Ok(all)
}

/// Waits until every flow is decided; returns (accepted, decided) times of each (the services'
/// timestamps, so how often this asks changes no figure) and how many status reads it made. It asks
/// about the oldest 50 undecided flows at a time, twice a second, to load the mesh as little as it
/// can.
async fn decided(env: &Env, key: &str, ids: &[String]) -> anyhow::Result<(Vec<(f64, f64)>, u64)> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut out: Vec<Option<(f64, f64)>> = vec![None; ids.len()];
    let at = |v: &Value, f: &str| {
        chrono::DateTime::parse_from_rfc3339(v[f].as_str()?)
            .ok()
            .map(|t| t.timestamp_micros() as f64 / 1e6)
    };
    let mut reads = 0u64;
    loop {
        let undecided: Vec<usize> = (0..ids.len()).filter(|i| out[*i].is_none()).take(50).collect();
        for i in undecided {
            let id = &ids[i];
            reads += 1;
            let v = env.get(key, id).await?;
            if v["status"] == "completed" {
                anyhow::ensure!(v["decision"] == "approved", "flow {id}: {v}");
                out[i] = at(&v, "created_at").zip(at(&v, "completed_at"));
            }
        }
        let left = out.iter().filter(|o| o.is_none()).count();
        if left == 0 {
            return Ok((out.into_iter().flatten().collect(), reads));
        }
        anyhow::ensure!(Instant::now() < deadline, "{left} flows not decided in 600 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn onboarding(flows: usize, concurrency: usize, target: Option<f64>) -> anyhow::Result<ExitCode> {
    let env = Env::load()?;
    let admin = env.var("POSTGRES_ADMIN_URL")?.to_string();
    let key = env.api_key("tenant-bench").await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let pool_size = 20;
    println!("bench onboarding: {flows} flows, {concurrency} submitters; the mesh as running now");
    let ceiling = commit_ceiling(&admin, pool_size, 3).await.context("commit ceiling")?;
    println!("PostgreSQL commit ceiling: {ceiling:.0} single-row commits/s ({pool_size} connections)");

    // Warm-up: connections, schema ids, partition assignments after a restart.
    let warm = submit(&env, &key, &format!("{run}w"), flows, concurrency, None).await?;
    decided(&env, &key, &warm).await?;

    // Maximum rate. Second instances (`<service>-b`) are measured too when they run.
    let names: Vec<String> = SERVICES
        .iter()
        .flat_map(|s| [s.to_string(), format!("{s}-b")])
        .filter(|n| run_dir().join(format!("svc-{n}.pid")).exists())
        .collect();
    let before: BTreeMap<&str, (f64, f64)> = names.iter().filter_map(|s| Some((s.as_str(), usage(s)?))).collect();
    let commits_before = commits(&admin).await?;
    let machine_before = machine_cpu();
    let ids = submit(&env, &key, &run, flows, concurrency, None).await?;
    let (times, reads) = decided(&env, &key, &ids).await?;
    let machine_after = machine_cpu();
    let commits_after = commits(&admin).await?;
    let first = times.iter().map(|t| t.0).fold(f64::MAX, f64::min);
    let last = times.iter().map(|t| t.1).fold(f64::MIN, f64::max);
    let rate = flows as f64 / (last - first).max(1e-3);
    // Each status read is two transactions at the ingress (the key, the flow): not the flows' own.
    let tx_per_flow = (commits_after - commits_before - 2 * reads as i64) as f64 / flows as f64;
    println!("maximum: {rate:.1} flows/s end to end (first accepted to last decided, {flows} flows)");
    if let Some(t) = target.filter(|t| *t > 0.0) {
        if rate >= t {
            println!("  target {t:.0} flows/s: reached ({:.0}% of it)", 100.0 * rate / t);
        } else {
            println!(
                "  target {t:.0} flows/s: not reached, {:.0}% of it ({:.1} flows/s short)",
                100.0 * rate / t,
                t - rate
            );
        }
    }
    println!(
        "  {tx_per_flow:.1} transactions per flow: {:.0} commits/s, {:.0}% of the ceiling",
        rate * tx_per_flow,
        100.0 * rate * tx_per_flow / ceiling
    );
    let mut lat: Vec<f64> = times.iter().map(|(a, b)| b - a).collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "  latency under that load: p50 {:.3} s, p99 {:.3} s",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0)
    );
    if let (Some((busy0, pg0, java0)), Some((busy1, pg1, java1))) = (machine_before, machine_after) {
        let per = |a: f64, b: f64| (b - a) * 1000.0 / flows as f64;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let cost = per(busy0, busy1);
        println!(
            "  machine: {cost:.1} CPU s per 1,000 flows (PostgreSQL {:.1}, Kafka and registry {:.1}); \
             {cores:.0} cores at that cost: {:.0} flows/s at most",
            per(pg0, pg1),
            per(java0, java1),
            cores * 1000.0 / cost.max(1e-9)
        );
    }
    for s in names.iter().map(String::as_str) {
        if let (Some((cpu0, _)), Some((cpu1, rss))) = (before.get(s), usage(s)) {
            println!(
                "  {s:<15} {:.2} CPU s per 1,000 flows, peak RSS {rss:.0} MiB",
                (cpu1 - cpu0) * 1000.0 / flows as f64
            );
        }
    }

    // Half of it, paced.
    let half = (rate / 2.0).max(1.0);
    let n = (flows / 2).max(1);
    let ids = submit(&env, &key, &format!("{run}h"), n, concurrency, Some(half)).await?;
    let (times, _) = decided(&env, &key, &ids).await?;
    let mut lat: Vec<f64> = times.iter().map(|(a, b)| b - a).collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "at half that rate ({half:.0} flows/s, {n} flows): latency p50 {:.3} s, p95 {:.3} s, p99 {:.3} s",
        percentile(&lat, 50.0),
        percentile(&lat, 95.0),
        percentile(&lat, 99.0)
    );
    Ok(ExitCode::SUCCESS)
}
