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
                max_attempts: 5,
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
    type Prepared = ();

    async fn prepare(&self, _: &switchyard_runtime::Incoming) -> Result<(), switchyard_runtime::HandlerError> {
        Ok(())
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        msg: &switchyard_runtime::Incoming,
        (): (),
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
        wake: Default::default(),
        instance_id: None,
        concurrency: switchyard_runtime::inbox::Concurrency {
            max_in_flight: 32,
            per_partition: 16,
            max_batch: 16,
            max_parked: 0,
        },
    };
    let handle = tokio::spawn(consumer.run(shutdown.clone()));
    (shutdown, handle)
}

/// Produces one message (key and raw bytes) to `topic`, waiting for the broker's acknowledgement.
pub async fn produce(producer: &rdkafka::producer::FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            rdkafka::producer::FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// What a [`consume`] run is to wait for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    /// Rows in the effects table.
    pub effects: i64,
    /// Redelivered messages skipped (exactly).
    pub duplicates: u64,
    /// Messages to read from `<topic>.dlq` (at least; none read when 0).
    pub dead: usize,
}

/// What a [`consume`] run saw.
pub struct Consumed {
    /// The effects table reached its count.
    pub applied: bool,
    /// The consumer skipped exactly the duplicates expected.
    pub skipped: bool,
    pub dlq: Vec<Raw>,
    /// The consumer's metrics text.
    pub metrics: String,
}

/// Runs a [`RecordEffects`] consumer of `topic` (metrics labelled `service`) until what `expect`
/// says happened (or its time ran out), then stops it.
pub async fn consume(stack: &Stack, db: &TestDb, topic: &str, codec: Codec, service: &str, expect: Expect) -> Consumed {
    let metrics = Metrics::new(service);
    let (stop, handle) = spawn_consumer(stack, db, topic, codec, metrics.clone());
    let applied = eventually(Duration::from_secs(60), || async {
        effects_count(&db.pool).await == expect.effects
    })
    .await;
    let wanted = format!(
        "switchyard_inbox_duplicates_total{{service=\"{service}\"}} {}\n",
        expect.duplicates
    );
    let skipped = eventually(Duration::from_secs(10), || async { metrics.render().contains(&wanted) }).await;
    let dlq = if expect.dead == 0 {
        Vec::new()
    } else {
        read_topic(
            stack,
            &format!("{topic}.dlq"),
            expect.dead,
            Duration::from_secs(20),
            Duration::from_millis(300),
        )
        .await
    };
    stop.trigger();
    handle.await.expect("join").expect("consumer");
    Consumed {
        applied,
        skipped,
        dlq,
        metrics: metrics.render(),
    }
}

/// How often each effect was applied, in the order applied (exactly once each: all 1).
pub async fn applied_times(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar("SELECT applied_times FROM effects ORDER BY applied_order")
        .fetch_all(pool)
        .await
        .expect("effects")
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

/// The running mesh (`make services`): ingress, simulators, service databases.
pub struct Mesh {
    pub vars: HashMap<String, String>,
    pub http: reqwest::Client,
}

/// Simulator base URLs.
pub const ONFIDO: &str = "http://127.0.0.1:9301";
pub const SUMSUB: &str = "http://127.0.0.1:9302";
pub const MESH: &str = "http://127.0.0.1:9303";
pub const WATCHMAN: &str = "http://127.0.0.1:9304";

impl Mesh {
    pub fn get() -> Mesh {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-stack");
        let mut vars = HashMap::new();
        for file in [dir.join("endpoints.env"), dir.join("data/secrets.env")] {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|_| panic!("{} missing: start the mesh first (make services)", file.display()));
            for (k, v) in text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
            {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        Mesh {
            vars,
            http: reqwest::Client::new(),
        }
    }

    pub fn var(&self, k: &str) -> String {
        self.vars.get(k).cloned().unwrap_or_else(|| panic!("{k} unknown"))
    }

    pub fn ingress(&self) -> String {
        self.var("INGRESS_URL")
    }

    /// A new API key for `tenant` with `scopes`.
    pub fn api_key(&self, tenant: &str, scopes: &str) -> String {
        let out = std::process::Command::new(workspace_bin("ingress"))
            .args(["create-api-key", "--tenant", tenant, "--scopes", scopes])
            .env("SWITCHYARD_DATABASE__URL", self.var("INGRESS_DATABASE_URL"))
            .env_remove("SWITCHYARD_CONFIG")
            .output()
            .expect("ingress create-api-key");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// POSTs an onboarding; returns the status, headers and JSON body.
    pub async fn submit(
        &self,
        key: &str,
        body: &serde_json::Value,
        idem: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/onboardings", self.ingress()))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.expect("POST");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }

    /// Starts an onboarding (asserting it is accepted) and returns its id.
    pub async fn start(&self, key: &str, body: &serde_json::Value) -> String {
        let (status, _, resp) = self.submit(key, body, None).await;
        assert_eq!(status, 202, "{resp}");
        resp["id"].as_str().expect("id").to_string()
    }

    pub async fn fetch(&self, key: &str, id: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(format!("{}/v1/onboardings/{id}", self.ingress()))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET");
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until the onboarding is completed; returns it.
    pub async fn decided(&self, key: &str, id: &str, within: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.fetch(key, id).await;
            if status == 200 && body["status"] == "completed" {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "onboarding {id} not decided in {within:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn sim_post(&self, sim: &str, path: &str, body: serde_json::Value) {
        let r = self
            .http
            .post(format!("{sim}{path}"))
            .json(&body)
            .send()
            .await
            .expect("sim control");
        assert!(r.status().is_success(), "{sim}{path}: {}", r.status());
    }

    pub async fn sim_clear(&self, sim: &str) {
        for path in ["/_sim/faults", "/_sim/webhooks"] {
            self.http
                .delete(format!("{sim}{path}"))
                .send()
                .await
                .expect("sim clear");
        }
    }

    /// Effect counts at a simulator for keys containing `key`.
    pub async fn ledger(&self, sim: &str, key: &str) -> HashMap<String, u64> {
        let v: serde_json::Value = self
            .http
            .get(format!("{sim}/_sim/ledger"))
            .query(&[("key", key)])
            .send()
            .await
            .expect("ledger")
            .json()
            .await
            .expect("ledger json");
        v["counts"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
            .unwrap_or_default()
    }

    pub async fn orchestrator_db(&self) -> PgPool {
        self.service_db("ORCHESTRATOR_DATABASE_URL").await
    }

    /// A small pool on a service's own database (`url_var` names its URL in the endpoints file).
    pub async fn service_db(&self, url_var: &str) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.var(url_var))
            .await
            .unwrap_or_else(|e| panic!("{url_var}: {e}"))
    }

    /// GET `url` and its JSON answer.
    /// The operators' token of the services' admin APIs.
    pub fn admin_token(&self) -> String {
        self.var("SWITCHYARD_ADMIN__TOKEN")
    }

    /// A GET to an admin route (the admin token sent).
    pub fn admin_get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.get(url).bearer_auth(self.admin_token())
    }

    /// A POST to an admin route (the admin token sent).
    pub fn admin_post(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.post(url).bearer_auth(self.admin_token())
    }

    /// GETs an admin route's JSON.
    pub async fn admin_json(&self, url: &str) -> serde_json::Value {
        let r = self
            .admin_get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(r.status().is_success(), "GET {url}: {}", r.status());
        r.json().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    pub async fn get_json(&self, url: &str) -> serde_json::Value {
        self.http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    pub async fn metrics(&self, url_var: &str) -> String {
        self.http
            .get(format!("{}/metrics", self.var(url_var)))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// How many of `partner`'s notices the normalizer has measured the delay of (from the
    /// partner's own time of the change to our receipt).
    pub async fn webhook_delays(&self, partner: &str) -> f64 {
        let text = self.metrics("WEBHOOK_NORMALIZER_URL").await;
        text.lines()
            .find(|l| {
                l.starts_with("switchyard_webhook_delay_seconds_count{")
                    && l.contains(&format!("partner=\"{partner}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    }
}

impl Mesh {
    /// POSTs JSON to the ingress at `path` with `key`; the status and JSON answer.
    pub async fn post(&self, key: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.ingress()))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// GETs `path` from the ingress with `key`; the status and JSON answer.
    pub async fn read(&self, key: &str, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.ingress()))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET");
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until the payout's status is one of `statuses`; returns it.
    pub async fn payout_in(&self, key: &str, id: &str, statuses: &[&str], within: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (code, body) = self.read(key, &format!("/v1/payouts/{id}")).await;
            if code == 200 && statuses.iter().any(|s| body["status"] == *s) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "payout {id} not in {statuses:?} within {within:?}: {code} {body}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// A valid German IBAN (check digits computed, ISO 13616) for account number `n`: a beneficiary
/// of its own per test, so velocity limits of earlier runs never interfere.
pub fn iban_de(n: u64) -> String {
    switchyard_model::events::payouts::iban_from("DE", &format!("37040044{:010}", n % 10_000_000_000))
}

/// A number for [`iban_de`] nobody used before (time-based).
pub fn fresh_account() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    t % 9_000_000_000 + N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 1_000_003
}

/// An onboarding request body.
pub fn applicant(applicant_id: &str, given: &str, family: &str, region: &str, tier: &str) -> serde_json::Value {
    serde_json::json!({
        "applicant_id": applicant_id,
        "person": {"given_name": given, "family_name": family, "date_of_birth": "1988-04-12", "nationality": "GB"},
        "region": region,
        "risk_tier": tier,
    })
}

/// The model's codec on the stack's registry.
pub fn model_codec(stack: &Stack) -> Codec {
    Codec::new(SchemaCatalog::embedded().expect("catalog"), stack.registry())
}

/// Produces a typed event to its topic, keyed by its flow, as a product service (or an upstream
/// service) would: Confluent wire format, the model's schema.
pub async fn produce_event<E: switchyard_model::events::Event>(stack: &Stack, codec: &Codec, event: &E) {
    let payload = codec
        .encode(E::TOPIC, &EventRecord::of(event).expect("record"))
        .await
        .expect("encode");
    let producer = kafka::producer(&stack.kafka, "test-producer").expect("producer");
    produce(&producer, E::TOPIC, &event.envelope().flow_id, &payload).await;
}

/// Reads the typed events of `E`'s topic from its start that `keep` accepts, until `done` says
/// enough arrived, then `settle` longer (to catch a second copy), or until `within` passes.
pub async fn read_events<E: switchyard_model::events::Event>(
    stack: &Stack,
    codec: &Codec,
    within: Duration,
    settle: Duration,
    keep: impl Fn(&E) -> bool,
    done: impl Fn(&[E]) -> bool,
) -> Vec<E> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka)
        .set("group.id", format!("events-reader-{}", short_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(&[E::TOPIC]).expect("subscribe");
    let mut out: Vec<E> = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut until = deadline;
    let mut settling = false;
    loop {
        let Ok(m) = tokio::time::timeout_at(until, consumer.recv()).await else {
            break;
        };
        let m = m.expect("kafka read");
        let Ok((_, record)) = codec.decode(E::TOPIC, m.payload()).await else {
            continue;
        };
        if let Some(Ok(e)) = record.as_event::<E>()
            && keep(&e)
        {
            out.push(e);
            if !settling && done(&out) {
                settling = true;
                until = (tokio::time::Instant::now() + settle).min(deadline);
                if settle.is_zero() {
                    break;
                }
            }
        }
    }
    out
}
