//! `yardctl bench relay --debezium`: our outbox relay and Debezium Server's outbox event router
//! (`local-stack/debezium.sh`) side by side, on the same PostgreSQL and Kafka, measured the same way
//! from outside both: each row's commit time (`created_at` of a one-statement transaction) against
//! the time Kafka appended its message (topics with `message.timestamp.type=LogAppendTime`), matched
//! by the message key (unique per row).
//!
//! 1. A burst: `events` rows written in transactions of 1,000 as fast as one connection can, while
//!    the relay runs; throughput = rows / (last appended − first committed).
//! 2. Once the burst is all in Kafka, a steady rate for `seconds`: lag p50/p99/max from commit to
//!    appended.
//!
//! Debezium runs with the settings a latency-minded operator would pick: `pgoutput`, no snapshot,
//! `poll.interval.ms=5` (default 500: an idle engine looks at its queue twice a second), a producer
//! with `acks=all`, idempotence and no linger, as ours.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::Timestamp,
};
use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};
use switchyard_runtime::{Metrics, Relay, Shutdown, kafka, outbox::RelayConfig};

/// What one relay did.
struct Figures {
    burst_events_per_s: f64,
    lag_ms: (f64, f64, f64),
    steady_rate: u32,
}

/// Which relay publishes the outbox.
#[derive(Clone, Copy, PartialEq)]
enum Which {
    Ours,
    Debezium,
}

pub async fn compare(kafka_url: &str, admin: &str, events: u32, rate: u32, seconds: u32) -> anyhow::Result<()> {
    let script = local_stack().join("debezium.sh");
    let fetched = tokio::process::Command::new(&script).arg("fetch").status().await?;
    if !fetched.success() {
        println!(
            "side by side: Debezium Server could not be fetched ({} fetch failed); ours only above",
            script.display()
        );
        return Ok(());
    }
    println!(
        "side by side: {events} rows in bursts of 1,000, then {rate} rows/s for {seconds} s; commit to appended in Kafka"
    );
    for which in [Which::Ours, Which::Debezium] {
        let name = match which {
            Which::Ours => "switchyard relay",
            Which::Debezium => "Debezium Server 3.6.1 (pgoutput, outbox event router)",
        };
        match run_one(which, kafka_url, admin, events, rate, seconds).await {
            Ok(f) => println!(
                "  {name:<54} burst {:>6.0} events/s; lag at {} events/s p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                f.burst_events_per_s, f.steady_rate, f.lag_ms.0, f.lag_ms.1, f.lag_ms.2
            ),
            Err(e) => println!("  {name:<54} not measured: {e:#}"),
        }
    }
    Ok(())
}

fn local_stack() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../local-stack")
}

async fn run_one(
    which: Which,
    kafka_url: &str,
    admin: &str,
    events: u32,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<Figures> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let db_name = format!("bench_side_{id}");
    let outbox_topic = format!("bench.side.{id}");
    // Debezium's router names the topic from the row's `topic` column this way.
    let kafka_topic = match which {
        Which::Ours => outbox_topic.clone(),
        Which::Debezium => format!("outbox.event.{outbox_topic}"),
    };
    let mut admin_conn = PgConnection::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&mut admin_conn)
        .await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&format!("{base}/{db_name}"))
        .await?;
    switchyard_runtime::db::migrate(&pool).await?;
    create_log_append_topic(kafka_url, &kafka_topic).await?;

    let shutdown = Shutdown::new();
    let wake = switchyard_runtime::outbox::Wake::default();
    let mut running: Running = match which {
        Which::Ours => {
            let relay = Relay::new(
                pool.clone(),
                kafka::producer(kafka_url, "bench-side")?,
                Metrics::new("bench-side"),
                RelayConfig {
                    service: format!("bench-side-{id}"),
                    poll_interval: Duration::from_millis(500),
                    batch_size: 500,
                    retention: Duration::from_secs(3600),
                    pause_after_publish: Duration::ZERO,
                    max_attempts: 5,
                },
            )
            .with_wake(wake.clone());
            Running::Ours(tokio::spawn(relay.run(shutdown.clone())))
        }
        Which::Debezium => Running::Debezium(start_debezium(admin, &db_name, id, kafka_url).await?),
    };
    let result = measure(
        &pool,
        kafka_url,
        &outbox_topic,
        &kafka_topic,
        &wake,
        events,
        rate,
        seconds,
    )
    .await;

    // Stop the relay; a logical slot left behind would hold WAL for ever: drop it before the database.
    match &mut running {
        Running::Ours(task) => {
            shutdown.trigger();
            let _ = task.await;
        }
        Running::Debezium(child) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
    pool.close().await;
    if which == Which::Debezium {
        drop_slot(&mut admin_conn, &slot_name(id)).await;
    }
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
    )))
    .execute(&mut admin_conn)
    .await;
    result
}

enum Running {
    Ours(tokio::task::JoinHandle<()>),
    Debezium(tokio::process::Child),
}

fn slot_name(id: &str) -> String {
    format!("switchyard_bench_{id}")
}

/// Drops the bench's replication slot, waiting for the killed server's walsender to let it go.
async fn drop_slot(admin: &mut PgConnection, slot: &str) {
    for _ in 0..50 {
        let dropped = sqlx::query(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active",
        )
        .bind(slot)
        .execute(&mut *admin)
        .await;
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1")
            .bind(slot)
            .fetch_one(&mut *admin)
            .await
            .unwrap_or(1);
        if dropped.is_ok() && left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("replication slot {slot} could not be dropped: drop it by hand (it holds WAL)");
}

/// Starts Debezium Server on `db_name` and waits until it streams from its slot.
async fn start_debezium(
    admin: &str,
    db_name: &str,
    id: &str,
    kafka_url: &str,
) -> anyhow::Result<tokio::process::Child> {
    let opts: sqlx::postgres::PgConnectOptions = admin.parse()?;
    let password = admin
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(cred, _)| cred.split_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let dir = local_stack().join("data/debezium").join(id);
    std::fs::create_dir_all(dir.join("config"))?;
    let slot = slot_name(id);
    let props = format!(
        "quarkus.http.port=0\n\
         quarkus.log.level=WARN\n\
         debezium.sink.type=kafka\n\
         debezium.sink.kafka.producer.bootstrap.servers={kafka_url}\n\
         debezium.sink.kafka.producer.key.serializer=org.apache.kafka.common.serialization.StringSerializer\n\
         debezium.sink.kafka.producer.value.serializer=org.apache.kafka.common.serialization.ByteArraySerializer\n\
         debezium.sink.kafka.producer.acks=all\n\
         debezium.sink.kafka.producer.enable.idempotence=true\n\
         debezium.sink.kafka.producer.linger.ms=0\n\
         debezium.format.key=simplestring\n\
         debezium.format.value=binary\n\
         debezium.source.connector.class=io.debezium.connector.postgresql.PostgresConnector\n\
         debezium.source.offset.storage.file.filename={offsets}\n\
         debezium.source.offset.flush.interval.ms=0\n\
         debezium.source.database.hostname={host}\n\
         debezium.source.database.port={port}\n\
         debezium.source.database.user={user}\n\
         debezium.source.database.password={password}\n\
         debezium.source.database.dbname={db_name}\n\
         debezium.source.topic.prefix=bench{id}\n\
         debezium.source.plugin.name=pgoutput\n\
         debezium.source.slot.name={slot}\n\
         debezium.source.publication.name={slot}\n\
         debezium.source.publication.autocreate.mode=filtered\n\
         debezium.source.table.include.list=public.outbox\n\
         debezium.source.snapshot.mode=no_data\n\
         debezium.source.poll.interval.ms=5\n\
         debezium.source.binary.handling.mode=bytes\n\
         debezium.transforms=outbox\n\
         debezium.transforms.outbox.type=io.debezium.transforms.outbox.EventRouter\n\
         debezium.transforms.outbox.table.field.event.id=event_id\n\
         debezium.transforms.outbox.table.field.event.key=msg_key\n\
         debezium.transforms.outbox.table.field.event.payload=payload\n\
         debezium.transforms.outbox.route.by.field=topic\n",
        offsets = dir.join("offsets.dat").display(),
        host = opts.get_host(),
        port = opts.get_port(),
        user = opts.get_username(),
    );
    std::fs::write(dir.join("config/application.properties"), props)?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = tokio::process::Command::new(local_stack().join("debezium.sh"))
        .arg("run")
        .arg(&dir)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .context("starting Debezium Server")?;
    let mut conn = PgConnection::connect(admin).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let active: Option<bool> = sqlx::query_scalar("SELECT active FROM pg_replication_slots WHERE slot_name = $1")
            .bind(&slot)
            .fetch_optional(&mut conn)
            .await?;
        if active == Some(true) {
            return Ok(child);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Debezium Server did not start streaming within 120 s (see {})",
            dir.join("server.log").display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn create_log_append_topic(kafka_url: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", kafka_url).create()?;
    let new = NewTopic::new(topic, 3, TopicReplication::Fixed(1)).set("message.timestamp.type", "LogAppendTime");
    for r in admin.create_topics([&new], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    pool: &PgPool,
    kafka_url: &str,
    outbox_topic: &str,
    kafka_topic: &str,
    wake: &switchyard_runtime::outbox::Wake,
    events: u32,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<Figures> {
    let payload = vec![0u8; 184];
    let write = |prefix: &'static str, from: u32, n: u32| {
        let keys: Vec<String> = (from..from + n).map(|i| format!("{prefix}-{i}")).collect();
        let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::now_v7()).collect();
        let payload = payload.clone();
        async move {
            sqlx::query(
                "INSERT INTO outbox (topic, msg_key, payload, headers, event_id) \
                 SELECT $1, k, $2, '{}'::jsonb, e FROM UNNEST($3::text[], $4::uuid[]) AS t(k, e)",
            )
            .bind(outbox_topic)
            .bind(&payload)
            .bind(&keys)
            .bind(&ids)
            .execute(pool)
            .await?;
            wake.committed();
            anyhow::Ok(())
        }
    };
    let mut written = 0;
    while written < events {
        let n = (events - written).min(1000);
        write("b", written, n).await?;
        written += n;
    }
    appended_at(kafka_url, kafka_topic, events as usize, Duration::from_secs(120)).await?;
    let per_tick = (rate / 100).max(1);
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    let mut steady = 0;
    for _ in 0..seconds * 100 {
        interval.tick().await;
        write("s", steady, per_tick).await?;
        steady += per_tick;
    }
    let total = (events + steady) as usize;
    let appended = appended_at(kafka_url, kafka_topic, total, Duration::from_secs(120)).await?;
    let committed: Vec<(String, f64)> =
        sqlx::query_as("SELECT msg_key, (EXTRACT(EPOCH FROM created_at) * 1000)::float8 FROM outbox")
            .fetch_all(pool)
            .await?;
    let mut first_burst = f64::MAX;
    let mut last_burst = f64::MIN;
    let mut lags = Vec::new();
    for (key, at) in &committed {
        let Some(&ap) = appended.get(key) else {
            anyhow::bail!("row {key} never reached Kafka");
        };
        if key.starts_with("b-") {
            first_burst = first_burst.min(*at);
            last_burst = last_burst.max(ap as f64);
        } else {
            lags.push(ap as f64 - at);
        }
    }
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| lags[((lags.len() as f64 - 1.0) * p).round() as usize];
    Ok(Figures {
        burst_events_per_s: f64::from(events) / ((last_burst - first_burst) / 1000.0).max(1e-3),
        lag_ms: (pct(0.5), pct(0.99), lags.last().copied().unwrap_or_default()),
        steady_rate: per_tick * 100,
    })
}

/// Reads `want` messages of `topic` from the start: key → the time Kafka appended it (ms).
async fn appended_at(
    kafka_url: &str,
    topic: &str,
    want: usize,
    within: Duration,
) -> anyhow::Result<HashMap<String, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_url)
        .set("group.id", format!("bench-side-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + within;
    let mut out = HashMap::with_capacity(want);
    tokio::task::block_in_place(|| {
        while out.len() < want {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} of {want} messages reached {topic} within {within:?}",
                out.len()
            );
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m?;
            let at = match m.timestamp() {
                Timestamp::LogAppendTime(ms) => ms,
                other => anyhow::bail!("{topic}: expected log-append times, got {other:?}"),
            };
            if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                out.insert(key.to_string(), at);
            }
        }
        Ok(())
    })?;
    Ok(out)
}
