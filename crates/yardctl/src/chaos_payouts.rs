//! Payouts in the chaos run: payout requests produced to `payouts.requests.v1` (alternately to the
//! Wise- and Stripe-shaped partner) while the payouts-adapter is SIGKILLed and dies between a
//! vendor's answer and its commit, and funding calls are left in doubt. Then every payout's result
//! is read back and every execution counted in the vendors' own ledgers: a payout executed twice,
//! lost, or executed while reported failed fails the run.

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
        payouts::{AccountIdentifier, AccountScheme, Beneficiary, PayoutRequested, PayoutResult, PayoutStatus},
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

/// `yardctl bench payouts`: `n` payouts produced at once, then every result read back: payouts/s
/// from the first request to the last result, and latency percentiles from each request to its
/// result (the producers' timestamps). Printed, never asserted.
pub async fn bench(n: usize) -> anyhow::Result<std::process::ExitCode> {
    let env = Env::load()?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    println!("bench payouts: {n} payouts (Wise- and Stripe-shaped, alternately) through the running payouts adapter");
    let first = chrono::Utc::now().timestamp_millis();
    submit(&env, &run, n, Duration::ZERO).await?;
    let codec = codec(&env)?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.var("KAFKA_BOOTSTRAP_SERVERS")?)
        .set("group.id", format!("bench-payouts-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[PayoutResult::TOPIC])?;
    let mut latencies = Vec::with_capacity(n);
    let mut last = first;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while latencies.len() < n {
        let Ok(m) = tokio::time::timeout_at(deadline.into(), consumer.recv()).await else {
            anyhow::bail!("{} of {n} payouts answered in 300 s", latencies.len());
        };
        let m = m?;
        let Ok((_, record)) = codec.decode(PayoutResult::TOPIC, m.payload()).await else {
            continue;
        };
        let Some(Ok(r)) = record.as_event::<PayoutResult>() else {
            continue;
        };
        if !r.payout_id.starts_with(&format!("cpo-{run}-")) {
            continue;
        }
        let at = m.timestamp().to_millis().unwrap_or(r.envelope.occurred_at);
        last = last.max(at);
        // The request's time is in its event id (a UUIDv7), the result's cause.
        let asked = r
            .envelope
            .causation_id
            .as_deref()
            .and_then(|c| uuid::Uuid::parse_str(c).ok())
            .and_then(|u| u.get_timestamp())
            .map(|t| {
                let (s, ns) = t.to_unix();
                s as i64 * 1000 + i64::from(ns / 1_000_000)
            })
            .unwrap_or(first);
        latencies.push((at - asked).max(0) as f64 / 1000.0);
        *by_status.entry(format!("{:?}", r.status).to_lowercase()).or_default() += 1;
    }
    latencies.sort_by(f64::total_cmp);
    let secs = ((last - first) as f64 / 1000.0).max(1e-3);
    println!(
        "throughput: {n} payouts in {secs:.2} s = {:.1} payouts/s ({})",
        n as f64 / secs,
        by_status
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "latency from the request to its result on Kafka: p50 {:.3} s, p99 {:.3} s",
        crate::demo::percentile(&latencies, 50.0),
        crate::demo::percentile(&latencies, 99.0)
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Produces `n` payout requests spread over `window`, each retried until Kafka takes it (the broker
/// may be down for a while).
pub async fn submit(env: &Env, run: &str, n: usize, window: Duration) -> anyhow::Result<()> {
    let codec = codec(env)?;
    let producer = switchyard_runtime::kafka::producer(env.var("KAFKA_BOOTSTRAP_SERVERS")?, "chaos-payouts")?;
    let started = Instant::now();
    let per = window.as_secs_f64() / n.max(1) as f64;
    for (i, id) in ids(run, n).into_iter().enumerate() {
        tokio::time::sleep_until((started + Duration::from_secs_f64(per * i as f64)).into()).await;
        let partner = if i % 2 == 0 { "payouts-wise" } else { "payouts-stripe" };
        let req = PayoutRequested {
            envelope: Envelope::new(PayoutRequested::RECORD, "tenant-chaos", format!("flow-{id}"), "chaos"),
            payout_id: id.clone(),
            amount: Money {
                amount_minor: 10_000 + i as i64,
                currency: "EUR".into(),
            },
            beneficiary: Beneficiary {
                name: format!("Chaos Beneficiary {i}"),
                account: AccountIdentifier {
                    scheme: AccountScheme::Iban,
                    value: "DE89370400440532013000".into(),
                    bank_code: None,
                },
                address: None,
            },
            rail: "sepa".into(),
            reference: None,
            partner: partner.into(),
            attempt: 1,
        };
        let payload = codec.encode(PayoutRequested::TOPIC, &EventRecord::of(&req)?).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let sent = producer
                .send(
                    FutureRecord::to(PayoutRequested::TOPIC)
                        .key(&req.envelope.flow_id)
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

/// Reads every result of the run's payouts (waiting up to `settle` for all), and the vendors' ledgers.
pub async fn verify(env: &Env, run: &str, n: usize, settle: Duration) -> anyhow::Result<Report> {
    let codec = codec(env)?;
    let want = ids(run, n);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.var("KAFKA_BOOTSTRAP_SERVERS")?)
        .set("group.id", format!("chaos-payouts-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[PayoutResult::TOPIC])?;
    let mut results: HashMap<String, Vec<PayoutResult>> = HashMap::new();
    let mut republished = 0usize;
    let deadline = Instant::now() + settle;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let until = quiet_until.unwrap_or(deadline).min(deadline);
        let Ok(m) = tokio::time::timeout_at(until.into(), consumer.recv()).await else {
            break;
        };
        let m = m.context("reading payouts.results.v1")?;
        let Ok((_, record)) = codec.decode(PayoutResult::TOPIC, m.payload()).await else {
            continue;
        };
        let Some(Ok(r)) = record.as_event::<PayoutResult>() else {
            continue;
        };
        if r.payout_id.starts_with(&format!("cpo-{run}-")) {
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
            // Wise keys carry "<customerTransactionId> <reference>", Stripe's the payout id.
            let key = e["key"].as_str().unwrap_or_default();
            let id = key
                .split(' ')
                .find(|w| w.starts_with("cpo-"))
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
            PayoutStatus::Accepted | PayoutStatus::Settled => times == 1,
            // Pending: created at the vendor, not funded.
            PayoutStatus::Failed | PayoutStatus::Pending => times == 0,
            // An operator finds out: either is possible, never more than one.
            PayoutStatus::Unknown | PayoutStatus::Returned => times <= 1,
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
