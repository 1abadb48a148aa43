//! Test harness for tests against the running local stack (`make up`): real Kafka, registry and
//! Postgres. Every test gets its own database and its own topics, so tests run in parallel and never
//! depend on order; the stack is shared, the data is not.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the test failing

use std::{collections::HashMap, path::PathBuf, time::Duration};

use apache_avro::types::Value;
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
};
use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};
use switchyard_model::{Envelope, EventRecord, SchemaCatalog};
use switchyard_runtime::{
    Codec, Metrics, Relay,
    headers::{self, HeaderMap},
    kafka,
    outbox::RelayConfig,
    registry::RegistryClient,
};

/// The model topic whose schema test topics carry.
pub const MODEL_TOPIC: &str = "kyc.commands.v1";
pub const RECORD: &str = "com.switchyard.kyc.VerifyIdentity";

/// Endpoints of the running stack, from the environment or `local-stack/endpoints.env`.
#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka: String,
    pub registry: String,
    pub postgres_admin: String,
}

impl Stack {
    pub fn get() -> Stack {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-stack/endpoints.env");
        let mut vars: HashMap<String, String> = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for k in ["KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "POSTGRES_ADMIN_URL"] {
            if let Ok(v) = std::env::var(k) {
                vars.insert(k.to_string(), v);
            }
        }
        let need = |k: &str| {
            vars.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{k} unknown: start the local stack first (`make up`)"))
        };
        Stack {
            kafka: need("KAFKA_BOOTSTRAP_SERVERS"),
            registry: need("SCHEMA_REGISTRY_URL"),
            postgres_admin: need("POSTGRES_ADMIN_URL"),
        }
    }

    /// A fresh, migrated database for one test.
    pub async fn fresh_db(&self, label: &str) -> TestDb {
        let name = format!("t_{label}_{}", short_id());
        let mut admin = PgConnection::connect(&self.postgres_admin)
            .await
            .expect("postgres admin connection");
        // The name is generated here from a label and hex digits only.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = match self.postgres_admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("POSTGRES_ADMIN_URL has no database part"),
        };
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect(&url)
            .await
            .expect("connect test database");
        switchyard_runtime::db::migrate(&pool).await.expect("migrate");
        TestDb {
            name,
            url,
            pool,
            admin_url: self.postgres_admin.clone(),
        }
    }

    /// A fresh topic (and its `.dlq`) with `partitions` partitions.
    pub async fn fresh_topic(&self, label: &str, partitions: i32) -> String {
        let topic = format!("test.{label}.{}", short_id());
        kafka::ensure_topics(&self.kafka, &[topic.clone(), format!("{topic}.dlq")], partitions, 1)
            .await
            .expect("create test topics");
        topic
    }

    pub fn registry(&self) -> RegistryClient {
        RegistryClient::new(&self.registry, Duration::from_secs(10)).expect("registry client")
    }

    /// A codec that produces and consumes `topic` with the model schema of [`MODEL_TOPIC`].
    pub async fn codec_for(&self, topic: &str) -> Codec {
        let codec = Codec::new(SchemaCatalog::embedded().expect("catalog"), self.registry());
        codec.register(topic, MODEL_TOPIC).await.expect("register test subject");
        codec
    }

    /// A relay for `db` running in this process until the returned shutdown is triggered.
    pub fn spawn_relay(&self, db: &TestDb, service: &str, metrics: Metrics) -> switchyard_runtime::Shutdown {
        let shutdown = switchyard_runtime::Shutdown::new();
        let producer = kafka::producer(&self.kafka, service).expect("producer");
        let relay = Relay::new(
            db.pool.clone(),
            producer,
            metrics,
            RelayConfig {
                service: service.to_string(),
                poll_interval: Duration::from_millis(100),
                batch_size: 200,
                retention: Duration::from_secs(3600),
                pause_after_publish: Duration::ZERO,
            },
        );
        tokio::spawn(relay.run(shutdown.clone()));
        shutdown
    }
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
}

impl TestDb {
    /// Drops the database (call at the end of a passing test; a failed test leaves it to look at).
    pub async fn drop_db(self) {
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
        }
    }
}

pub fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A `VerifyIdentity` event of `flow` for `tenant`, its subject id carrying `seq`.
pub fn sample_event(tenant: &str, flow: &str, seq: u32) -> EventRecord {
    let env = Envelope::new(RECORD, tenant, flow, "test");
    let value = Value::Record(vec![
        ("envelope".into(), apache_avro::to_value(&env).expect("envelope")),
        ("subject_id".into(), Value::String(format!("{flow}:{seq}"))),
        (
            "person".into(),
            Value::Record(vec![
                ("given_name".into(), Value::String("Ada".into())),
                ("family_name".into(), Value::String("Lovelace".into())),
                ("date_of_birth".into(), Value::Null),
                ("nationality".into(), Value::String("GB".into())),
                ("address".into(), Value::Null),
                ("email".into(), Value::Null),
                ("phone".into(), Value::Null),
            ]),
        ),
        (
            "document_types".into(),
            Value::Array(vec![Value::String("passport".into())]),
        ),
    ]);
    EventRecord::from_value(RECORD, value).expect("sample event")
}

/// The `seq` carried in a sample event's subject id.
pub fn seq_of(event: &EventRecord) -> u32 {
    let Value::Record(fields) = &event.value else {
        panic!("not a record")
    };
    let subject = fields
        .iter()
        .find_map(|(k, v)| match (k.as_str(), v) {
            ("subject_id", Value::String(s)) => Some(s.clone()),
            _ => None,
        })
        .expect("subject_id");
    subject.rsplit(':').next().and_then(|s| s.parse().ok()).expect("seq")
}

/// One message as read back from Kafka.
#[derive(Debug, Clone)]
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: HeaderMap,
}

/// Reads `topic` from the beginning with a fresh group until `want` messages arrived or `within`
/// passed, then keeps reading for `settle` to catch extras.
pub async fn read_topic(stack: &Stack, topic: &str, want: usize, within: Duration, settle: Duration) -> Vec<Raw> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka)
        .set("group.id", format!("reader-{}", short_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut settle_until: Option<tokio::time::Instant> = None;
    loop {
        let until = settle_until.unwrap_or(deadline);
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(m)) => {
                out.push(Raw {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().and_then(|k| std::str::from_utf8(k).ok()).map(str::to_string),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: headers::from_kafka(m.headers()),
                });
                if out.len() >= want && settle_until.is_none() {
                    settle_until = Some(tokio::time::Instant::now() + settle);
                }
            }
            Ok(Err(e)) => panic!("kafka read error: {e}"),
            Err(_) => break,
        }
    }
    out
}

/// Polls `check` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Path of a workspace binary built alongside the tests.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    dir.join(name)
}

/// Test consumer effect: one row per applied event, counting how often it was applied.
pub struct RecordEffects;

pub async fn create_effects_table(pool: &PgPool) {
    sqlx::query(
        "CREATE TABLE effects (event_id UUID PRIMARY KEY, flow_id TEXT NOT NULL, seq INT NOT NULL, \
         applied_times INT NOT NULL, applied_order BIGSERIAL)",
    )
    .execute(pool)
    .await
    .expect("effects table");
}

impl switchyard_runtime::Handler for RecordEffects {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        msg: &switchyard_runtime::Incoming,
    ) -> Result<(), switchyard_runtime::HandlerError> {
        let seq = i32::try_from(seq_of(&msg.event)).unwrap_or(i32::MAX);
        sqlx::query(
            "INSERT INTO effects (event_id, flow_id, seq, applied_times) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (event_id) DO UPDATE SET applied_times = effects.applied_times + 1",
        )
        .bind(msg.event.envelope.event_id)
        .bind(&msg.event.envelope.flow_id)
        .bind(seq)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Runs an inbox consumer of `topic` into `db` (applying [`RecordEffects`]) until shutdown.
pub fn spawn_consumer(
    stack: &Stack,
    db: &TestDb,
    topic: &str,
    codec: Codec,
    metrics: Metrics,
) -> (
    switchyard_runtime::Shutdown,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let shutdown = switchyard_runtime::Shutdown::new();
    let consumer = switchyard_runtime::Consumer {
        name: format!("consumer-{topic}"),
        topics: vec![topic.to_string()],
        bootstrap: stack.kafka.clone(),
        codec,
        pool: db.pool.clone(),
        metrics,
        producer: kafka::producer(&stack.kafka, "test-dlq").expect("producer"),
        handler: RecordEffects,
    };
    let handle = tokio::spawn(consumer.run(shutdown.clone()));
    (shutdown, handle)
}

/// Count of rows in the effects table.
pub async fn effects_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Count of unpublished outbox rows.
pub async fn unpublished(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}
