//! Payouts in the chaos run: whole payout flows, commanded on `payouts.commands.v1` as a product's
//! Kafka producer would (fraud screening, routing by cost or speed: alternately the Stripe- and
//! Wise-shaped partner, payment, webhooks) while the orchestrator and the adapters are SIGKILLed,
//! the payouts-adapter dies between a vendor's answer and its commit, and funding calls are left in
//! doubt. Then every payout's terminal outcome is read back from `payouts.outcomes.v1` and every
//! execution counted in the vendors' own ledgers: a payout executed twice, lost, or told settled
//! while not executed (or failed while executed) fails the run.
//!
//! `yardctl bench payouts` measures whole payout flows the same way.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use anyhow::Context;
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
    producer::FutureRecord,
};
use serde_json::Value;
use switchyard_model::{
    Envelope, EventRecord, SchemaCatalog,
    events::{
        Event,
        common::Money,
        payouts::{
            AccountIdentifier, AccountScheme, Beneficiary, InitiatePayout, PayoutCompleted, PayoutStatus, iban_from,
        },
    },
};
use switchyard_runtime::{Codec, registry::RegistryClient};

use crate::demo::Env;

/// The payout simulators: name, URL.
pub const SIMS: [(&str, &str); 2] = [("wise", "http://127.0.0.1:9307"), ("stripe", "http://127.0.0.1:9308")];
/// What leaves a payout in doubt at each: the call that moves the money.
pub const IN_DOUBT: [(&str, &str); 2] = [("wise", "/payments"), ("stripe", "POST /v1/payouts ")];

fn codec(env: &Env) -> anyhow::Result<Codec> {
    Ok(Codec::new(
        SchemaCatalog::embedded()?,
        RegistryClient::new(env.var("SCHEMA_REGISTRY_URL")?, Duration::from_secs(10))?,
    ))
}

/// The payout ids of a run.
pub fn ids(run: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("cpo-{run}-{i}")).collect()
}

/// `yardctl bench payouts`: whole payout flows (fraud screening, routing, payment, the partner's
/// settlement webhook). First `n` commands at once: payouts/s from the first command to the last
/// terminal outcome. Then `n / 2` commands paced at half that rate: latency percentiles from each
/// command to its outcome (Kafka's timestamps). Printed, never asserted.
pub async fn bench(n: usize) -> anyhow::Result<std::process::ExitCode> {
    let env = Env::load()?;
    println!(
        "bench payouts: {n} whole payout flows at once (fraud screening, routing by cost or speed to the Stripe- and Wise-shaped partners, settlement webhooks)"
    );
    let burst = measure(&env, n, None).await?;
    println!(
        "throughput: {n} payouts in {:.2} s = {:.1} payouts/s ({}); latency p50 {:.3} s, p99 {:.3} s",
        burst.secs,
        burst.rate(),
        burst.summary(),
        burst.p(50.0),
        burst.p(99.0)
    );
    let half = (burst.rate() / 2.0).max(1.0);
    let paced = (n / 2).max(1);
    let run = measure(&env, paced, Some(half)).await?;
    println!(
        "at half that rate ({half:.1}/s, {paced} payouts): command to terminal outcome p50 {:.3} s, p95 {:.3} s, p99 {:.3} s ({})",
        run.p(50.0),
        run.p(95.0),
        run.p(99.0),
        run.summary()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

struct Measured {
    secs: f64,
    latencies: Vec<f64>,
    by_status: BTreeMap<String, usize>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.secs
    }
    fn p(&self, p: f64) -> f64 {
        crate::demo::percentile(&self.latencies, p)
    }
    fn summary(&self) -> String {
        self.by_status
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Commands `n` payouts (all at once, or `rate` a second) and reads their terminal outcomes.
async fn measure(env: &Env, n: usize, rate: Option<f64>) -> anyhow::Result<Measured> {
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let codec = codec(env)?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.var("KAFKA_BOOTSTRAP_SERVERS")?)
        .set("group.id", format!("bench-payouts-{run}"))
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[PayoutCompleted::TOPIC])?;
    // Assigned before the first command (so no outcome is missed).
    let ready = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 && Instant::now() < ready {
        let _ = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await;
    }
    let window = rate.map_or(Duration::ZERO, |r| Duration::from_secs_f64(n as f64 / r));
    let first = chrono::Utc::now().timestamp_millis();
    let sent = {
        let (env, run) = (Env::clone(env), run.clone());
        tokio::spawn(async move { submit(&env, &run, n, window).await })
    };
    let mut latencies = Vec::with_capacity(n);
    let mut last = first;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + window + Duration::from_secs(300);
    while latencies.len() < n {
        let Ok(m) = tokio::time::timeout_at(deadline.into(), consumer.recv()).await else {
            anyhow::bail!("{} of {n} payouts completed in time", latencies.len());
        };
        let m = m?;
        let Ok((_, record)) = codec.decode(PayoutCompleted::TOPIC, m.payload()).await else {
            continue;
        };
        let Some(Ok(c)) = record.as_event::<PayoutCompleted>() else {
            continue;
        };
        if !c.payout_id.starts_with(&format!("cpo-{run}-")) || !seen.insert(c.payout_id.clone()) {
            continue;
        }
        let at = m.timestamp().to_millis().unwrap_or(c.envelope.occurred_at);
        last = last.max(at);
        // The command's time: the payout's index spread over the window from the first command.
        let i: usize = c.payout_id.rsplit('-').next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let asked = first + (window.as_secs_f64() * 1000.0 * i as f64 / n.max(1) as f64) as i64;
        latencies.push((at - asked).max(0) as f64 / 1000.0);
        *by_status.entry(format!("{:?}", c.status).to_lowercase()).or_default() += 1;
    }
    sent.await??;
    latencies.sort_by(f64::total_cmp);
    Ok(Measured {
        secs: ((last - first) as f64 / 1000.0).max(1e-3),
        latencies,
        by_status,
    })
}

/// The tenant of chaos payouts.
pub const TENANT: &str = "tenant-chaos";

/// The flow id the orchestrator gives a payout (its key on Kafka, its id at the partners).
use switchyard_model::events::payouts::flow_id as flow_of;

/// A payout command of a run: a beneficiary of its own (velocity limits never bite), every other
/// one asking for speed (the Wise-shaped partner) instead of cost (the Stripe-shaped one).
pub fn command(tenant: &str, id: &str, i: usize, account: u64) -> InitiatePayout {
    InitiatePayout {
        envelope: Envelope::new(InitiatePayout::RECORD, tenant, flow_of(tenant, id), "chaos"),
        payout_id: id.to_string(),
        customer_id: format!("chaos-customer-{i}"),
        amount: Money {
            amount_minor: 10_000 + i as i64,
            currency: "EUR".into(),
        },
        beneficiary: Beneficiary {
            name: format!("Chaos Beneficiary {i}"),
            account: AccountIdentifier {
                scheme: AccountScheme::Iban,
                value: iban_from("DE", &format!("37040044{:010}", account % 10_000_000_000)),
                bank_code: None,
            },
            address: None,
        },
        rail: None,
        reference: None,
        country: None,
        priority: Some(if i.is_multiple_of(2) { "speed" } else { "cost" }.into()),
        channel: Some(switchyard_model::events::fraud::Channel::Api),
        device_id: None,
    }
}

/// Produces `n` payout commands spread over `window`, each retried until Kafka takes it (the broker
/// may be down for a while).
pub async fn submit(env: &Env, run: &str, n: usize, window: Duration) -> anyhow::Result<()> {
    let codec = codec(env)?;
    let producer = switchyard_runtime::kafka::producer(env.var("KAFKA_BOOTSTRAP_SERVERS")?, "chaos-payouts")?;
    let started = Instant::now();
    let per = window.as_secs_f64() / n.max(1) as f64;
    let base = chrono::Utc::now().timestamp_micros().unsigned_abs() % 1_000_000_000 * 10;
    for (i, id) in ids(run, n).into_iter().enumerate() {
        tokio::time::sleep_until((started + Duration::from_secs_f64(per * i as f64)).into()).await;
        let cmd = command(TENANT, &id, i, base + i as u64);
        let payload = codec.encode(InitiatePayout::TOPIC, &EventRecord::of(&cmd)?).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let sent = producer
                .send(
                    FutureRecord::to(InitiatePayout::TOPIC)
                        .key(&cmd.envelope.flow_id)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await;
            match sent {
                Ok(_) => break,
                Err((e, _)) => {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "payout {id} not taken by Kafka in 120 s: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    Ok(())
}

/// What became of a run's payouts.
pub struct Report {
    pub by_status: BTreeMap<String, usize>,
    pub lost: Vec<String>,
    pub duplicate_results: usize,
    /// The same result event published again by a relay after a crash (skipped by consumers).
    pub republished: usize,
    /// Payouts executed more than once at a vendor.
    pub double_executions: Vec<String>,
    /// Payouts executed but reported failed (or reported paid and never executed).
    pub wrong: Vec<String>,
    pub executions: BTreeMap<&'static str, u64>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicate_results == 0
            && self.double_executions.is_empty()
            && self.wrong.is_empty()
    }

    pub fn print(&self, n: usize) {
        println!(
            "  payouts with a result: {}/{n}  ({})",
            n - self.lost.len(),
            self.by_status
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  payouts executed twice at a vendor: {}  (executions: {})",
            self.double_executions.len(),
            self.executions
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  payouts whose result contradicts the vendor's ledger: {}; second results: {} (the same result re-published by a relay after a crash: {})",
            self.wrong.len(),
            self.duplicate_results,
            self.republished
        );
        for w in self
            .wrong
            .iter()
            .chain(&self.double_executions)
            .chain(&self.lost)
            .take(10)
        {
            println!("  payout: {w}");
        }
    }
}

/// Reads every terminal outcome of the run's payouts (waiting up to `settle` for all), and the
/// vendors' ledgers.
pub async fn verify(env: &Env, run: &str, n: usize, settle: Duration) -> anyhow::Result<Report> {
    let codec = codec(env)?;
    let want = ids(run, n);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.var("KAFKA_BOOTSTRAP_SERVERS")?)
        .set("group.id", format!("chaos-payouts-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[PayoutCompleted::TOPIC])?;
    let mut results: HashMap<String, Vec<PayoutCompleted>> = HashMap::new();
    let mut republished = 0usize;
    let deadline = Instant::now() + settle;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let until = quiet_until.unwrap_or(deadline).min(deadline);
        let Ok(m) = tokio::time::timeout_at(until.into(), consumer.recv()).await else {
            break;
        };
        let m = m.context("reading payouts.outcomes.v1")?;
        let Ok((_, record)) = codec.decode(PayoutCompleted::TOPIC, m.payload()).await else {
            continue;
        };
        let Some(Ok(r)) = record.as_event::<PayoutCompleted>() else {
            continue;
        };
        if r.envelope.tenant_id == TENANT && r.payout_id.starts_with(&format!("cpo-{run}-")) {
            // The relay publishes at least once (a crash between publishing and marking re-publishes
            // the same event, which consumers skip by its id): only a second *distinct* result counts.
            let seen = results.entry(r.payout_id.clone()).or_default();
            if seen.iter().any(|s| s.envelope.event_id == r.envelope.event_id) {
                republished += 1;
                continue;
            }
            seen.push(r);
            if quiet_until.is_none() && want.iter().all(|id| results.contains_key(id)) {
                // Everything answered: a little longer, for any second result.
                quiet_until = Some(Instant::now() + Duration::from_secs(3));
            }
        }
    }
    let mut executed: HashMap<String, u64> = HashMap::new();
    let mut executions = BTreeMap::new();
    for (sim, url) in SIMS {
        let v: Value = env
            .http
            .get(format!("{url}/_sim/ledger"))
            .query(&[("key", format!("cpo-{run}-"))])
            .send()
            .await?
            .json()
            .await?;
        for e in v["effects"].as_array().into_iter().flatten() {
            if e["kind"] != "payout" {
                continue;
            }
            // Wise keys carry "<customerTransactionId> <reference>", Stripe's the payout id; both
            // end with the flow id (`<n>.<tenant>.<payout id>`).
            let key = e["key"].as_str().unwrap_or_default();
            let id = key
                .split(' ')
                .find_map(|w| w.find("cpo-").map(|at| &w[at..]))
                .unwrap_or(key)
                .to_string();
            *executed.entry(id).or_default() += 1;
            *executions.entry(sim).or_default() += 1;
        }
    }
    let mut report = Report {
        by_status: BTreeMap::new(),
        lost: Vec::new(),
        duplicate_results: 0,
        republished,
        double_executions: Vec::new(),
        wrong: Vec::new(),
        executions,
    };
    for id in &want {
        let times = executed.get(id).copied().unwrap_or(0);
        if times > 1 {
            report.double_executions.push(format!("{id}: executed {times} times"));
        }
        let Some(rs) = results.get(id) else {
            report.lost.push(format!("{id}: no result"));
            continue;
        };
        report.duplicate_results += rs.len() - 1;
        let status = rs[0].status;
        *report
            .by_status
            .entry(format!("{status:?}").to_lowercase())
            .or_default() += 1;
        let consistent = match status {
            PayoutStatus::Settled => times == 1,
            PayoutStatus::Failed => times == 0,
            // A return may follow an execution; nothing else is terminal.
            PayoutStatus::Returned => times <= 1,
            PayoutStatus::Accepted | PayoutStatus::Pending | PayoutStatus::Unknown => false,
        };
        if !consistent {
            report.wrong.push(format!(
                "{id}: reported {status:?} ({}), executed {times} times",
                rs[0].failure.as_ref().map(|f| f.code.as_str()).unwrap_or("")
            ));
        }
    }
    Ok(report)
}
