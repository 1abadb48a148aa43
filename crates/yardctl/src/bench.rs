//! `yardctl bench`: figures for this machine, printed, never asserted.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Subcommand;
use sqlx::{Connection, PgConnection, postgres::PgPoolOptions};
use switchyard_model::{Envelope, EventRecord, SchemaCatalog};
use switchyard_runtime::{
    Codec, Metrics, Relay, Shutdown, headers, kafka, outbox::RelayConfig, registry::RegistryClient,
};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Outbox relay: drain throughput of a backlog, then publish lag (commit → Kafka ack) under a
    /// steady write rate. Uses a scratch database and topic.
    Relay {
        /// Backlog size for the throughput phase.
        #[arg(long, default_value_t = 20_000)]
        events: u32,
        /// Write rate (events/s) for the lag phase.
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        /// Duration of the lag phase.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        #[arg(long, default_value_t = 500)]
        batch: i64,
        /// Then run our relay and Debezium Server's outbox event router side by side on the same
        /// PostgreSQL and Kafka (`local-stack/debezium.sh` fetches it from Maven Central once).
        #[arg(long)]
        debezium: bool,
    },
    /// Partition stall after a SIGKILL of the orchestrator and an immediate restart, with dynamic
    /// and with static group membership (`make services` first).
    Stall {
        #[arg(long, default_value_t = 3)]
        trials: usize,
    },
    /// Whole payout flows through the running mesh: commands produced to `payouts.commands.v1` at
    /// once (fraud screening, routing to the two payout partners, settlement), terminal outcomes
    /// read back; throughput, then latency from command to outcome at half that rate.
    Payouts {
        #[arg(long, default_value_t = 400)]
        payouts: usize,
    },
    /// Reconciliation through the running service: settled payouts taken in from
    /// `payouts.outcomes.v1`, then a settlement report of as many lines, some off by a cent, some
    /// without our reference (matched by rules); events/s and lines/s.
    Recon {
        #[arg(long, default_value_t = 100_000)]
        lines: usize,
        #[arg(long, default_value_t = 25)]
        inject: usize,
    },
    /// Onboarding flows end to end through the running mesh (`make services` first).
    /// The card authorization decision against PostgreSQL (the store behind the processors'
    /// questions): decisions/s and latency percentiles.
    CardAuth {
        #[arg(long, default_value_t = 5_000)]
        auths: usize,
        #[arg(long, default_value_t = 100)]
        cards: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Real-time authorizations through the running cards adapter's endpoint, as a processor asks
    /// them (`make services` first): answers/s and latency percentiles as the processor sees them.
    CardGateway {
        #[arg(long, default_value_t = 5_000)]
        auths: usize,
        #[arg(long, default_value_t = 50)]
        cards: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    Onboarding {
        #[arg(long, default_value_t = 200)]
        flows: usize,
        #[arg(long, default_value_t = 20)]
        concurrency: usize,
        /// A rate to compare the maximum with (flows/s): how far it is from it is printed.
        #[arg(long)]
        target: Option<f64>,
    },
}

pub async fn run(
    cmd: BenchCommand,
    kafka_url: &str,
    registry_url: &str,
    admin: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let BenchCommand::Relay {
        events,
        rate,
        seconds,
        batch,
        debezium,
    } = cmd
    else {
        anyhow::bail!("not a relay bench");
    };
    let admin = admin.context("--postgres-admin (or POSTGRES_ADMIN_URL) is required")?;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let db_name = format!("bench_{id}");
    let topic = format!("bench.relay.{id}");
    let mut admin_conn = PgConnection::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&mut admin_conn)
        .await?;
    let db_url = format!("{}/{db_name}", admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin));
    let pool = PgPoolOptions::new().max_connections(8).connect(&db_url).await?;
    switchyard_runtime::db::migrate(&pool).await?;
    kafka::ensure_topics(kafka_url, std::slice::from_ref(&topic), 3, 1).await?;
    let codec = Codec::new(
        SchemaCatalog::embedded()?,
        RegistryClient::new(registry_url, Duration::from_secs(10))?,
    );
    codec.register(&topic, "kyc.commands.v1").await?;
    let sample = sample(&codec, &topic).await?;

    println!("bench relay: database {db_name}, topic {topic} (3 partitions), batch {batch}");

    // Phase 1: a backlog, then the relay drains it.
    let mut written = 0u32;
    while written < events {
        let n = (events - written).min(1000);
        insert_rows(&pool, &topic, &sample, n).await?;
        written += n;
    }
    let shutdown = Shutdown::new();
    // This process writes the rows, so its commits wake the relay in memory, as in a service.
    let wake = switchyard_runtime::outbox::Wake::default();
    let relay = Relay::new(
        pool.clone(),
        kafka::producer(kafka_url, "bench")?,
        Metrics::new("bench"),
        RelayConfig {
            service: format!("bench-{id}"),
            poll_interval: Duration::from_millis(500),
            batch_size: batch,
            retention: Duration::from_secs(3600),
            pause_after_publish: Duration::ZERO,
            max_attempts: 5,
        },
    )
    .with_wake(wake.clone());
    let started = Instant::now();
    let task = tokio::spawn(relay.run(shutdown.clone()));
    wait_drained(&pool, Duration::from_secs(600)).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "throughput: {events} events drained in {secs:.2} s = {:.0} events/s ({} bytes/event)",
        f64::from(events) / secs,
        sample.1.len()
    );

    // Phase 2: a steady write rate with the relay running; lag = published_at - created_at.
    sqlx::query("TRUNCATE outbox").execute(&pool).await?;
    let per_tick = (rate / 100).max(1);
    let ticks = seconds * 100;
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..ticks {
        interval.tick().await;
        insert_rows(&pool, &topic, &sample, per_tick).await?;
        wake.committed();
    }
    wait_drained(&pool, Duration::from_secs(120)).await?;
    let (n, p50, p99, max): (i64, f64, f64, f64) = sqlx::query_as(
        "SELECT count(*), \
            percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), \
            percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag) \
         FROM (SELECT (EXTRACT(EPOCH FROM (published_at - created_at)) * 1000)::float8 AS lag FROM outbox) l",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "publish lag at {} events/s for {seconds} s ({n} events, commit to Kafka ack): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        per_tick * 100
    );

    shutdown.trigger();
    let _ = task.await;
    pool.close().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
    )))
    .execute(&mut admin_conn)
    .await;
    if debezium {
        crate::sidebyside::compare(kafka_url, admin, events, rate, seconds).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A realistic encoded event (payload, headers) reused for every row; only the event id differs.
async fn sample(codec: &Codec, topic: &str) -> anyhow::Result<(serde_json::Value, Vec<u8>)> {
    use apache_avro::types::Value;
    let record = "com.switchyard.kyc.VerifyIdentity";
    let env = Envelope::new(record, "bench-tenant", "flow-0", "bench");
    let value = Value::Record(vec![
        ("envelope".into(), apache_avro::to_value(&env)?),
        ("subject_id".into(), Value::String("subject-0001".into())),
        (
            "person".into(),
            Value::Record(vec![
                ("given_name".into(), Value::String("Grace".into())),
                ("family_name".into(), Value::String("Hopper".into())),
                ("date_of_birth".into(), Value::Null),
                ("nationality".into(), Value::String("US".into())),
                ("address".into(), Value::Null),
                ("email".into(), Value::String("g.hopper@example.com".into())),
                ("phone".into(), Value::Null),
            ]),
        ),
        (
            "document_types".into(),
            Value::Array(vec![Value::String("passport".into())]),
        ),
    ]);
    let event = EventRecord::from_value(record, value)?;
    let payload = codec.encode(topic, &event).await?;
    Ok((serde_json::to_value(headers::for_event(&event.envelope))?, payload))
}

async fn insert_rows(
    pool: &sqlx::PgPool,
    topic: &str,
    sample: &(serde_json::Value, Vec<u8>),
    n: u32,
) -> anyhow::Result<()> {
    let keys: Vec<String> = (0..n).map(|i| format!("flow-{}", i % 64)).collect();
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO outbox (topic, msg_key, payload, headers, event_id) \
         SELECT $1, k, $2, $3, e FROM UNNEST($4::text[], $5::uuid[]) AS t(k, e)",
    )
    .bind(topic)
    .bind(&sample.1)
    .bind(&sample.0)
    .bind(&keys)
    .bind(&ids)
    .execute(pool)
    .await?;
    Ok(())
}

async fn wait_drained(pool: &sqlx::PgPool, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(pool)
            .await?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{left} rows still unpublished after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
