//! The transactional outbox and its relay.
//!
//! A service writes its state change and the events it emits in **one** transaction
//! ([`Outbox::enqueue`]). The [`Relay`] publishes committed rows to Kafka and marks them published.
//!
//! Ordering and completeness: the relay never keeps a cursor. Each round it reads the *unpublished*
//! rows in id order, so a transaction that took a low id but committed late is simply picked up in a
//! later round: nothing is skipped. Rows become visible in commit order, and services take a flow's
//! row lock before writing its events, so per-key id order is commit order. Only one relay per service
//! publishes at a time (a Postgres advisory lock), with an idempotent producer and `acks=all`, which
//! keeps per-partition order across its own retries.
//!
//! A round enqueues its whole batch; every row Kafka acknowledges is marked, and a row that failed is
//! tried again next round. When no row of a round was delivered (Kafka unreachable), the relay steps
//! down and retries, counting nothing against any row. A row that fails in rounds where others were
//! delivered (too large, an unknown topic: Kafka refuses it every time) has its failures counted, and
//! after `max_attempts` it is **set aside** (`set_aside_at`, `last_error`; metric
//! `outbox_set_aside_total{topic}`), so one bad row never holds back the rows behind it. Per-key order
//! holds except around a row that failed while later rows of its key were delivered (logged and
//! counted). A set-aside row is re-queued by an operator (`set_aside_at = NULL`) once fixed.
//!
//! A crash between publishing and marking publishes those rows again: consumers de-duplicate on
//! `event_id` through their inbox. At-least-once delivery, exactly-once effect.
//!
//! Waking the relay: whoever commits outbox rows calls [`Outbox::committed`] after the commit. When
//! this process's relay is the active one it is woken in memory; otherwise a `NOTIFY` reaches the
//! active relay in another instance, sent after the commit in a transaction of its own and coalesced
//! (at most one in flight). A `NOTIFY` inside the writing transaction would make Postgres serialise
//! every such commit, WAL flush included, across the whole cluster. The relay also polls, so a wake
//! that never comes delays rows by at most `poll_interval`, never strands them.

use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value as Json;
use sqlx::{PgConnection, PgPool, Row, postgres::PgListener};
use switchyard_model::EventRecord;

use crate::{
    codec::{Codec, EncodeError},
    headers::{self, HeaderMap},
    shutdown::Shutdown,
    telemetry::{Metrics, TopicLabels},
};

pub const NOTIFY_CHANNEL: &str = "switchyard_outbox";

/// How long a woken relay waits for more commits before it reads (see `Relay::lead`).
const WAKE_COALESCE: Duration = Duration::from_millis(2);

/// Wakes the active relay after outbox rows were committed (see the module's documentation).
#[derive(Clone, Default)]
pub struct Wake(std::sync::Arc<WakeInner>);

#[derive(Default)]
struct WakeInner {
    local: tokio::sync::Notify,
    /// This process's relay holds the relay lock.
    relay_active: std::sync::atomic::AtomicBool,
    /// Where a `NOTIFY` for another instance's relay goes (none: only a local relay is woken).
    pool: Option<PgPool>,
    /// A commit happened that no `NOTIFY` sent so far covers.
    dirty: std::sync::atomic::AtomicBool,
    /// A task is sending `NOTIFY`s.
    notifying: std::sync::atomic::AtomicBool,
}

impl Wake {
    /// A wake that reaches relays in other instances through `pool` too.
    pub fn new(pool: PgPool) -> Self {
        Wake(std::sync::Arc::new(WakeInner {
            pool: Some(pool),
            ..WakeInner::default()
        }))
    }

    /// Marks this process's relay as the active one (or not): only then is it woken in memory.
    fn set_relay_active(&self, active: bool) {
        self.0.relay_active.store(active, std::sync::atomic::Ordering::Release);
    }

    /// Call after committing a transaction that may have written outbox rows.
    pub fn committed(&self) {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        let w = &self.0;
        if w.relay_active.load(Acquire) {
            w.local.notify_one();
            return;
        }
        let Some(pool) = w.pool.clone() else { return };
        w.dirty.store(true, std::sync::atomic::Ordering::Release);
        if w.notifying.swap(true, AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let w = &this.0;
            loop {
                while w.dirty.swap(false, AcqRel) {
                    if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                        .bind(NOTIFY_CHANNEL)
                        .execute(&pool)
                        .await
                    {
                        // The relay's poll picks the rows up.
                        tracing::debug!(error = %e, "outbox wake-up not sent");
                    }
                }
                w.notifying.store(false, std::sync::atomic::Ordering::Release);
                // A commit between the last swap and the store above: take the task up again.
                if !w.dirty.load(Acquire) || w.notifying.swap(true, AcqRel) {
                    return;
                }
            }
        });
    }
}

/// Writes events into the outbox inside the caller's transaction.
#[derive(Clone)]
pub struct Outbox {
    codec: Codec,
    wake: Wake,
}

impl Outbox {
    pub fn new(codec: Codec) -> Self {
        Outbox {
            codec,
            wake: Wake::default(),
        }
    }

    /// The same, waking relays through `wake`.
    pub fn with_wake(self, wake: Wake) -> Self {
        Outbox { wake, ..self }
    }

    /// What wakes the relay: give it to the relay and the consumers of this process.
    pub fn wake(&self) -> Wake {
        self.wake.clone()
    }

    /// Call after committing a transaction that wrote outbox rows: wakes the active relay.
    pub fn committed(&self) {
        self.wake.committed();
    }

    /// Encodes `event` for `topic` and inserts it, keyed by its flow id, in the caller's transaction.
    /// Call after taking the lock of the state the event belongs to.
    pub async fn enqueue(&self, conn: &mut PgConnection, topic: &str, event: &EventRecord) -> Result<i64, OutboxError> {
        let (payload, headers) = self.row(topic, event).await?;
        insert(
            conn,
            topic,
            &event.envelope.flow_id,
            &payload,
            &headers,
            event.envelope.event_id,
        )
        .await
    }

    /// An event's outbox payload (Confluent wire format for `topic`) and headers.
    async fn row(&self, topic: &str, event: &EventRecord) -> Result<(Vec<u8>, HeaderMap), OutboxError> {
        Ok((
            self.codec.encode(topic, event).await?,
            headers::for_event(&event.envelope),
        ))
    }

    /// [`Outbox::enqueue`] for several events, in one statement; their ids follow the given order.
    pub async fn enqueue_all(
        &self,
        conn: &mut PgConnection,
        events: &[(&str, EventRecord)],
    ) -> Result<(), OutboxError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut topics = Vec::with_capacity(events.len());
        let mut keys = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        let mut headers = Vec::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        for (topic, event) in events {
            let (payload, h) = self.row(topic, event).await?;
            payloads.push(payload);
            topics.push(*topic);
            keys.push(event.envelope.flow_id.as_str());
            headers.push(serde_json::to_value(h).unwrap_or(Json::Null));
            ids.push(event.envelope.event_id);
        }
        sqlx::query(
            "INSERT INTO outbox (topic, msg_key, payload, headers, event_id) \
             SELECT t, k, p, h, e FROM unnest($1::text[], $2::text[], $3::bytea[], $4::jsonb[], $5::uuid[]) \
             WITH ORDINALITY AS o (t, k, p, h, e, n) ORDER BY n",
        )
        .bind(topics)
        .bind(keys)
        .bind(payloads)
        .bind(headers)
        .bind(ids)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("outbox insert failed: {0}")]
    Db(#[from] sqlx::Error),
}

/// Inserts an already-encoded message.
pub async fn insert(
    conn: &mut PgConnection,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: &HeaderMap,
    event_id: uuid::Uuid,
) -> Result<i64, OutboxError> {
    let headers = serde_json::to_value(headers).unwrap_or(Json::Null);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (topic, msg_key, payload, headers, event_id) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(topic)
    .bind(key)
    .bind(payload)
    .bind(headers)
    .bind(event_id)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Names the advisory lock: one active relay per service.
    pub service: String,
    pub poll_interval: Duration,
    pub batch_size: i64,
    pub retention: Duration,
    /// Failure-test knob: pause between publishing and marking (0 in production).
    pub pause_after_publish: Duration,
    /// Failed rounds (in which other rows were delivered) before a row is set aside.
    pub max_attempts: u32,
}

/// Publishes committed outbox rows to Kafka.
pub struct Relay {
    pool: PgPool,
    producer: FutureProducer,
    metrics: Metrics,
    cfg: RelayConfig,
    wake: Wake,
}

struct Row_ {
    id: i64,
    topic: String,
    key: String,
    payload: Vec<u8>,
    headers: HeaderMap,
    age: f64,
}

/// Whether Kafka refused this message itself (it would refuse it every time), as opposed to being
/// unreachable or unavailable.
fn refused_row(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
        )
    )
}

/// A stable 64-bit key for the service's relay lock.
pub fn lock_key(service: &str) -> i64 {
    i64::from_ne_bytes(fnv1a(&["switchyard.outbox-relay:", service]).to_ne_bytes())
}

/// FNV-1a (64-bit) over the concatenated parts: a stable hash for lock keys and rollout buckets,
/// the same in every process and release.
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Relay {
    pub fn new(pool: PgPool, producer: FutureProducer, metrics: Metrics, cfg: RelayConfig) -> Self {
        Relay {
            pool,
            producer,
            metrics,
            cfg,
            wake: Wake::default(),
        }
    }

    /// The same, woken in memory by the commits of this process (see [`Outbox::committed`]).
    pub fn with_wake(self, wake: Wake) -> Self {
        Relay { wake, ..self }
    }

    /// Runs until shutdown: waits to become the active relay, then publishes.
    pub async fn run(self, shutdown: Shutdown) {
        let key = lock_key(&self.cfg.service);
        while !shutdown.is_triggered() {
            let mut lock_conn = match self.pool.acquire().await {
                Ok(c) => c.detach(),
                Err(e) => {
                    tracing::warn!(error = %e, "relay cannot reach the database");
                    shutdown.sleep(self.cfg.poll_interval).await;
                    continue;
                }
            };
            let got: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut lock_conn)
                .await;
            match got {
                Ok(true) => {}
                Ok(false) => {
                    // Another instance is active; stand by.
                    shutdown.sleep(self.cfg.poll_interval * 2).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay lock query failed");
                    shutdown.sleep(self.cfg.poll_interval).await;
                    continue;
                }
            }
            tracing::info!(service = %self.cfg.service, "outbox relay active");
            self.metrics.outbox_relay_active.set(1);
            self.wake.set_relay_active(true);
            let result = self.lead(&mut lock_conn, &shutdown).await;
            self.wake.set_relay_active(false);
            self.metrics.outbox_relay_active.set(0);
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut lock_conn)
                .await;
            drop(lock_conn);
            if let Err(e) = result {
                tracing::warn!(error = %e, "outbox relay stepped down; retrying");
                shutdown.sleep(self.cfg.poll_interval).await;
            }
        }
        tracing::info!("outbox relay stopped");
    }

    async fn lead(&self, lock_conn: &mut PgConnection, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        let mut last_gauge = Instant::now() - Duration::from_secs(60);
        let mut last_prune = Instant::now();
        loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            let published = self.publish_batch(shutdown).await?;
            if published as i64 >= self.cfg.batch_size {
                continue;
            }
            if last_gauge.elapsed() >= Duration::from_secs(1) {
                self.update_gauges().await?;
                last_gauge = Instant::now();
            }
            if last_prune.elapsed() >= Duration::from_secs(60) {
                self.prune().await?;
                last_prune = Instant::now();
            }
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                () = self.wake.0.local.notified() => {}
                n = listener.recv() => {
                    n?;
                    while let Some(n) = listener.recv().now_or_never() {
                        n?;
                    }
                }
                _ = tokio::time::sleep(self.cfg.poll_interval) => {
                    // Still the lock holder? (A lost connection releases the lock.)
                    sqlx::query("SELECT 1").execute(&mut *lock_conn).await?;
                    continue;
                }
            }
            // Woken: under load commits arrive close together; let those of the next few
            // milliseconds share one round (one read, one mark) instead of one each.
            shutdown.sleep(WAKE_COALESCE).await;
        }
    }

    /// Publishes up to one batch of unpublished rows; returns how many were published and marked.
    pub async fn publish_batch(&self, shutdown: &Shutdown) -> anyhow::Result<usize> {
        let rows = sqlx::query(
            "SELECT id, topic, msg_key, payload, headers, \
                    EXTRACT(EPOCH FROM (clock_timestamp() - created_at))::float8 AS age \
             FROM outbox WHERE published_at IS NULL AND set_aside_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.cfg.batch_size)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let rows: Vec<Row_> = rows
            .into_iter()
            .map(|r| Row_ {
                id: r.get("id"),
                topic: r.get("topic"),
                key: r.get("msg_key"),
                payload: r.get("payload"),
                headers: serde_json::from_value(r.get::<Json, _>("headers")).unwrap_or_default(),
                age: r.get("age"),
            })
            .collect();
        // Enqueue the whole batch without waiting (librdkafka keeps per-partition order and the
        // idempotent producer keeps it across retries), then collect the acknowledgements in order.
        let mut deliveries = Vec::with_capacity(rows.len());
        let mut failed: Vec<(&Row_, KafkaError)> = Vec::new();
        for row in &rows {
            let mut record = FutureRecord::to(&row.topic)
                .key(&row.key)
                .payload(&row.payload)
                .headers(headers::to_kafka(&row.headers));
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push((row, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        self.producer.poll(Duration::from_millis(10));
                    }
                    // Refused before sending (too large, invalid): this row's failure only.
                    Err((e, _)) => {
                        failed.push((row, e));
                        break;
                    }
                }
            }
        }
        let mut ok_ids = Vec::with_capacity(rows.len());
        for (row, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {
                    ok_ids.push(row.id);
                    self.metrics
                        .messages_produced
                        .get_or_create(&TopicLabels {
                            topic: row.topic.clone(),
                        })
                        .inc();
                }
                Ok(Err((e, _))) => failed.push((row, e)),
                Err(_) => failed.push((row, KafkaError::Canceled)),
            }
        }
        if !self.cfg.pause_after_publish.is_zero() {
            shutdown.sleep(self.cfg.pause_after_publish).await;
        }
        if !ok_ids.is_empty() {
            sqlx::query("UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1)")
                .bind(&ok_ids)
                .execute(&self.pool)
                .await?;
            for row in rows.iter().filter(|r| ok_ids.contains(&r.id)) {
                self.metrics.outbox_publish_lag.observe(row.age);
            }
        }
        if failed.is_empty() {
            return Ok(ok_ids.len());
        }
        // A failure counts against its row when Kafka refused that row itself, or took other rows of
        // the same round; when nothing got through for reasons not about the rows, Kafka itself is
        // the problem: step down and retry without counting.
        let delivered = !ok_ids.is_empty();
        let (counted, not_counted): (Vec<_>, Vec<_>) =
            failed.into_iter().partition(|(_, e)| delivered || refused_row(e));
        if counted.is_empty()
            && let Some((row, e)) = not_counted.first()
        {
            anyhow::bail!("delivery of outbox row {} to {} failed: {e}", row.id, row.topic);
        }
        for (row, e) in counted {
            let e = e.to_string();
            let set_aside: bool = sqlx::query_scalar(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                 set_aside_at = CASE WHEN attempts + 1 >= $3 THEN clock_timestamp() END \
                 WHERE id = $1 RETURNING set_aside_at IS NOT NULL",
            )
            .bind(row.id)
            .bind(&e)
            .bind(i32::try_from(self.cfg.max_attempts).unwrap_or(i32::MAX))
            .fetch_one(&self.pool)
            .await?;
            if set_aside {
                self.metrics
                    .outbox_set_aside
                    .get_or_create(&TopicLabels {
                        topic: row.topic.clone(),
                    })
                    .inc();
                tracing::error!(id = row.id, topic = %row.topic, error = %e,
                    "outbox row set aside after repeated delivery failures; the relay goes on without it");
            } else {
                tracing::warn!(id = row.id, topic = %row.topic, error = %e, "outbox row not delivered; retrying next round");
            }
        }
        Ok(ok_ids.len())
    }

    async fn update_gauges(&self) -> anyhow::Result<()> {
        let row = sqlx::query(
            "SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM (clock_timestamp() - min(created_at))), 0)::float8 AS age \
             FROM outbox WHERE published_at IS NULL AND set_aside_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        self.metrics.outbox_pending.set(row.get::<i64, _>("n"));
        self.metrics
            .outbox_oldest_pending_age
            .set(row.get::<f64, _>("age") as i64);
        Ok(())
    }

    async fn prune(&self) -> anyhow::Result<()> {
        let secs = self.cfg.retention.as_secs_f64();
        let n = sqlx::query("DELETE FROM outbox WHERE published_at < clock_timestamp() - make_interval(secs => $1)")
            .bind(secs)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n > 0 {
            tracing::debug!(rows = n, "pruned published outbox rows");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("orchestrator"), lock_key("orchestrator"));
        assert_ne!(lock_key("orchestrator"), lock_key("ingress"));
    }
}
