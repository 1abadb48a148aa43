//! The inbox consumer: exactly-once effect for consumed messages.
//!
//! For every message: decode (a poison message goes to `<topic>.dlq` with the reason in headers and
//! is passed), then, in **one** transaction, record `(consumer, event_id)` in `inbox` and run the
//! handler. A message whose event id is already there is a duplicate: acknowledged, not applied. The
//! offset is stored only after the transaction commits, so a crash anywhere redelivers, never loses.
//! Transient failures (database, registry) are retried in place with backoff; they never dead-letter.
//!
//! A handler that calls the outside world (a partner's API) does so in [`Handler::prepare`], which
//! runs before and outside the transaction: no partner call ever holds a transaction open, and what
//! the call must leave durable it commits itself (the effect ledger, [`crate::effects`]). For such
//! handlers (`Handler::CALLS_OUT`) a message already in the inbox is skipped before `prepare`, so a
//! redelivered duplicate calls nobody.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    time::{Duration, Instant},
};

use futures::FutureExt;
use rdkafka::{
    Message, TopicPartitionList,
    consumer::{CommitMode, Consumer as _},
    message::OwnedMessage,
    producer::{FutureProducer, FutureRecord},
};
use sqlx::{PgConnection, PgPool};
use switchyard_model::{EventRecord, topics::dlq};
use tracing::Instrument;

use crate::{
    backoff::Backoff,
    codec::{Codec, DecodeError},
    headers::{self, HeaderMap},
    shutdown::Shutdown,
    telemetry::{ConsumedLabels, DlqLabels, LagLabels, Metrics, RetryLabels, TopicLabels},
};

/// A decoded message, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub schema_id: u32,
    pub headers: HeaderMap,
    pub event: EventRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Try again (the message is redelivered in place after a backoff).
    #[error("transient: {0}")]
    Transient(String),
    /// The message can never be applied: dead-letter it with this reason.
    #[error("rejected: {0}")]
    Permanent(String),
}

/// Database errors classified where they arise: a connection, serialization or deadlock error is
/// retried in place; a constraint or data error would fail the same way every time, so the message
/// is dead-lettered with the SQLSTATE instead of stalling its partition.
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_transient(&e) {
            HandlerError::Transient(e.to_string())
        } else {
            let state = crate::db::sqlstate(&e).unwrap_or_else(|| "-".into());
            HandlerError::Permanent(format!("the database refuses this change (SQLSTATE {state}): {e}"))
        }
    }
}

/// Applies one message: `prepare` outside any transaction (for calls to partners), then `handle`
/// inside the inbox transaction. Everything `handle` writes through `conn` (state and outbox rows)
/// commits together with the inbox row, or not at all.
pub trait Handler: Send + Sync + 'static {
    /// What `prepare` hands to `handle` (`()` for handlers that call nobody).
    type Prepared: Send + 'static;

    /// Whether `prepare` calls the outside world. Only then is a message first looked up in the
    /// inbox before `prepare` (a duplicate must call nobody); for the others the inbox insert in the
    /// transaction is the one check, saving a round trip per message.
    const CALLS_OUT: bool = false;

    fn prepare<'a>(
        &'a self,
        msg: &'a Incoming,
    ) -> impl Future<Output = Result<Self::Prepared, HandlerError>> + Send + 'a;

    fn handle<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        msg: &'a Incoming,
        prepared: Self::Prepared,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;
}

#[derive(Clone, Copy)]
enum Applied {
    Processed,
    Duplicate,
}

/// How many messages a consumer works on at once.
#[derive(Debug, Clone, Copy)]
pub struct Concurrency {
    /// Messages received and not yet done, in all partitions (`kafka.max_in_flight`); at the bound
    /// the consumer stops taking messages.
    pub max_in_flight: usize,
    /// The same per partition (`kafka.max_in_flight_per_partition`); at the bound the partition is
    /// paused until one of its messages is done.
    pub per_partition: usize,
    /// Messages ready at the same time applied in one transaction (`kafka.max_batch`; 1: one
    /// transaction each). Only for handlers that call nobody.
    pub max_batch: usize,
    /// Messages parked while they wait for a partner's turn ([`parked`]), holding no place of
    /// `max_in_flight` or `per_partition` (`kafka.max_parked`; 0: never parked).
    pub max_parked: usize,
}

impl Concurrency {
    /// One message at a time, in offset order, one transaction each.
    pub const SERIAL: Concurrency = Concurrency {
        max_in_flight: 1,
        per_partition: 1,
        max_batch: 1,
        max_parked: 0,
    };
}

/// What a consumer's loop hears from its message tasks.
enum Event {
    Done(Done),
    /// A message of this partition was parked.
    Parked(Partition),
    /// A parked message's wait is over: it asks for a place in flight again, granted through the
    /// sender when one is free (before any new message is taken).
    Unpark(Partition, tokio::sync::oneshot::Sender<()>),
    /// A parked message was dropped before it got its place back (shutdown).
    Abandoned(Partition),
}

/// How a message task parks: set for the task that applies a message.
#[derive(Clone)]
struct Parking {
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    partition: Partition,
    /// Messages parked in this consumer, and the bound.
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
    shutdown: Shutdown,
    /// Told when shutdown comes while the message is parked: its task is dropped there, the
    /// message left for redelivery.
    abandon: std::sync::Arc<tokio::sync::Notify>,
}

tokio::task_local! {
    static PARKING: Parking;
}

/// A parked message, until it has its place in flight back.
struct ParkedPlace {
    parking: Parking,
    /// The grant asked for (None before the wait is over).
    grant: Option<tokio::sync::oneshot::Receiver<()>>,
    granted: bool,
}

impl ParkedPlace {
    /// Waits until the consumer gives this message a place in flight again.
    async fn take_back(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.parking.events.send(Event::Unpark(self.parking.partition, tx));
        let rx = self.grant.insert(rx);
        // A consumer that stopped answering has stopped: nothing left to wait for.
        let _ = rx.await;
        self.granted = true;
    }
}

impl Drop for ParkedPlace {
    fn drop(&mut self) {
        self.parking.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        let granted = self.granted || self.grant.as_mut().is_some_and(|rx| rx.try_recv().is_ok());
        if !granted {
            let _ = self.parking.events.send(Event::Abandoned(self.parking.partition));
        }
    }
}

/// Awaits `wait` (a turn at a rate-limited partner) with the message **parked**: it gives its place
/// among the consumer's messages in flight back while it waits, so the consumer takes other
/// messages (other partners' traffic) instead of filling up with messages that only wait. Its
/// partition's offset stays below it until it is done, and messages with its key stay behind it.
/// The caller must hold no connection or lock while parked. Outside a consumer's message task, or
/// with `kafka.max_parked` messages parked already, it simply waits in place.
///
/// At shutdown a parked message is abandoned where it waits (nothing was sent for it yet) and
/// redelivered to the next instance.
pub async fn parked<F: Future>(wait: F) -> F::Output {
    let parking = PARKING.try_with(Parking::clone).ok().filter(|p| {
        p.count
            .fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |n| (n < p.max).then_some(n + 1),
            )
            .is_ok()
    });
    let Some(parking) = parking else {
        return wait.await;
    };
    let _ = parking.events.send(Event::Parked(parking.partition));
    let mut place = ParkedPlace {
        parking: parking.clone(),
        grant: None,
        granted: false,
    };
    // Its wait over, the message takes a place in flight back before it goes on (what follows
    // takes connections the pool has for messages in flight only).
    let out = tokio::select! {
        out = async {
            let out = wait.await;
            place.take_back().await;
            out
        } => out,
        () = parking.shutdown.wait() => {
            parking.abandon.notify_one();
            std::future::pending().await
        }
    };
    drop(place);
    out
}

/// Consumes topics and applies each message once. Messages with the same key are applied one after
/// another in offset order; messages with different keys run side by side, up to [`Concurrency`].
/// A partition's offset is stored only up to its lowest message not yet done, so a crash
/// redelivers everything that might not be applied, and never skips anything.
pub struct Consumer<H> {
    /// Consumer group id and inbox consumer name.
    pub name: String,
    pub topics: Vec<String>,
    pub bootstrap: String,
    pub codec: Codec,
    pub pool: PgPool,
    pub metrics: Metrics,
    /// Used for dead-lettering.
    pub producer: FutureProducer,
    pub handler: H,
    /// Woken after each commit: what the handlers wrote to the outbox goes out at once.
    pub wake: crate::outbox::Wake,
    /// Static membership name of this instance (`kafka.group_instance_id`); None: dynamic.
    pub instance_id: Option<String>,
    pub concurrency: Concurrency,
}

/// What applies messages: shared by the consumer's concurrent tasks.
struct Worker<H: Handler> {
    name: String,
    codec: Codec,
    pool: PgPool,
    metrics: Metrics,
    producer: FutureProducer,
    handler: H,
    wake: crate::outbox::Wake,
    /// Where decoded messages wait to be applied together (None: each in its own transaction).
    batches: Option<tokio::sync::mpsc::UnboundedSender<Ready<H::Prepared>>>,
}

/// Transactions a batching consumer runs at once.
const COMMITTERS: usize = 4;

/// How long a batch's statements may wait for a lock before the batch is applied message by message.
const BATCH_LOCK_TIMEOUT: Duration = Duration::from_millis(50);

/// A decoded and prepared message waiting for a batch, and where it goes back to, with its result.
struct Ready<P> {
    msg: Incoming,
    prepared: P,
    span: tracing::Span,
    reply: tokio::sync::oneshot::Sender<(Incoming, Option<Applied>)>,
}

/// Takes the messages waiting for a batch, `max` at a time, and applies each batch in one
/// transaction. The answer is None for every message of a batch that failed: each is then applied
/// alone (and retried or dead-lettered alone), so one bad message never fails its neighbours.
async fn commit_batches<H: Handler>(
    worker: std::sync::Arc<Worker<H>>,
    queue: std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Ready<H::Prepared>>>>,
    max: usize,
) {
    loop {
        let mut batch = Vec::with_capacity(max);
        {
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
            while batch.len() < max {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let (waiting, prepared): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|r| ((r.msg, r.span, r.reply), r.prepared))
            .unzip();
        let msgs: Vec<(&Incoming, &tracing::Span)> = waiting.iter().map(|(m, s, _)| (m, s)).collect();
        // Each message alone takes its locks in the handler's one order; messages of several flows
        // in one transaction do not, and two batches can deadlock (Postgres finds out after a
        // second). A batch waits for no lock longer than BATCH_LOCK_TIMEOUT: then it is applied
        // message by message, each taking its locks in order. So is a batch holding a message
        // applied already: alone, the duplicate is found and skipped.
        let applied = match worker.apply_together(&msgs, prepared, Some(BATCH_LOCK_TIMEOUT)).await {
            Ok(true) => Some(Applied::Processed),
            Ok(false) => None,
            Err(e) => {
                if msgs.len() > 1 {
                    tracing::debug!(error = %e, messages = msgs.len(), "batch not applied; applying its messages one by one");
                }
                None
            }
        };
        worker.metrics.consumer_batch_size.observe(msgs.len() as f64);
        drop(msgs);
        for (msg, _, reply) in waiting {
            let _ = reply.send((msg, applied));
        }
    }
}

/// A message finished (`applied`: applied, skipped or dead-lettered; false: shutdown interrupted a
/// retry, so it stays pending).
struct Done {
    lane: String,
    partition: Partition,
    offset: i64,
    applied: bool,
}

/// A partition, by its topic's index in `Consumer::topics` (no allocation per message).
type Partition = (usize, i32);

/// A partition's messages received and not yet done, and the offset stored for it.
#[derive(Default)]
struct PartitionState {
    /// Offsets received and not yet done, with each message's timestamp (ms since the epoch).
    pending: std::collections::BTreeMap<i64, i64>,
    /// The offset of the message received last (after a rebalance it may go down).
    last: i64,
    /// When messages were first seen waiting beyond the last received, none in hand (ms).
    behind_since: Option<i64>,
    stored: Option<i64>,
    paused: bool,
    /// Pending messages parked (they hold no place of `per_partition`).
    parked: usize,
}

impl PartitionState {
    /// The next offset to consume after a restart: the lowest message not done, or the one after
    /// the last received when all are done.
    fn safe_offset(&self) -> i64 {
        self.pending.first_key_value().map_or(self.last + 1, |(o, _)| *o)
    }

    /// How long the oldest message not done has waited, in ms: the oldest in hand; else, when
    /// librdkafka counts messages beyond those received, since that was first seen (so a consumer
    /// that takes nothing in shows a growing lag, and a message fetched moments after the count
    /// does not borrow the age of the last one received before a quiet hour).
    fn lag_ms(&mut self, behind: i64, now_ms: i64) -> i64 {
        match self.pending.first_key_value() {
            Some((_, ts)) => {
                self.behind_since = None;
                (now_ms - ts).max(0)
            }
            None if behind > 0 => now_ms - *self.behind_since.get_or_insert(now_ms),
            None => {
                self.behind_since = None;
                0
            }
        }
    }

    /// Messages holding a place of the partition's bound.
    fn holding(&self) -> usize {
        self.pending.len().saturating_sub(self.parked)
    }
}

/// Messages with the same key share a lane (one at a time, in order); messages without a key are
/// ordered by partition.
fn lane_of(msg: &OwnedMessage) -> String {
    match msg.key().and_then(|k| std::str::from_utf8(k).ok()) {
        Some(k) => format!("k:{k}"),
        None => format!("p:{}:{}", msg.topic(), msg.partition()),
    }
}

impl<H: Handler> Consumer<H> {
    /// Runs until shutdown; then lets the messages in hand finish, commits the stored offsets and
    /// returns. Messages received but not started are left for redelivery.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let consumer = crate::kafka::consumer(&self.bootstrap, &self.name, self.instance_id.as_deref(), &topics)?;
        consumer.subscribe(&topics)?;
        let Concurrency {
            max_in_flight,
            per_partition,
            max_batch,
            max_parked,
        } = self.concurrency;
        let (max_in_flight, per_partition) = (max_in_flight.max(1), per_partition.max(1));
        // A handler that calls out is never batched: a batch that fails is applied again message by
        // message, and its `prepare` must not run twice.
        let max_batch = if H::CALLS_OUT {
            1
        } else {
            max_batch.clamp(1, max_in_flight)
        };
        tracing::info!(consumer = %self.name, topics = ?self.topics, max_in_flight, per_partition, max_batch, max_parked, "consuming");
        let (batch_tx, batch_rx) = tokio::sync::mpsc::unbounded_channel::<Ready<H::Prepared>>();
        let worker = std::sync::Arc::new(Worker {
            name: self.name.clone(),
            codec: self.codec,
            pool: self.pool,
            metrics: self.metrics.clone(),
            producer: self.producer,
            handler: self.handler,
            wake: self.wake,
            batches: (max_batch > 1).then_some(batch_tx),
        });
        // A few committers: under light load each takes one message as it comes; under load the
        // messages that became ready while they were busy share a transaction.
        let committers: Vec<_> = if max_batch > 1 {
            let queue = std::sync::Arc::new(tokio::sync::Mutex::new(batch_rx));
            (0..COMMITTERS)
                .map(|_| tokio::spawn(commit_batches(worker.clone(), queue.clone(), max_batch)))
                .collect()
        } else {
            Vec::new()
        };
        // Done and parked messages come on one channel: a task's "parked" and "place back" always
        // arrive before its "done".
        let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let parked_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let spawn = |msg: OwnedMessage, lane: String, partition: Partition| {
            let (worker, events_tx, shutdown) = (worker.clone(), events_tx.clone(), shutdown.clone());
            let parking = Parking {
                events: events_tx.clone(),
                partition,
                count: parked_count.clone(),
                max: max_parked,
                shutdown: shutdown.clone(),
                abandon: std::sync::Arc::default(),
            };
            tokio::spawn(async move {
                let offset = msg.offset();
                let abandon = parking.abandon.clone();
                let work = PARKING.scope(parking, async {
                    std::panic::AssertUnwindSafe(worker.process(&msg, &shutdown))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            shutdown.fail(format!(
                                "a handler panicked on {}[{}]@{offset}",
                                msg.topic(),
                                msg.partition()
                            ));
                            false
                        })
                });
                // Shutdown while parked: dropped where it waits (nothing sent yet), not applied.
                let applied = tokio::select! {
                    applied = work => applied,
                    () = abandon.notified() => false,
                };
                let _ = events_tx.send(Event::Done(Done {
                    lane,
                    partition,
                    offset,
                    applied,
                }));
            });
        };
        let partition_of = |msg: &OwnedMessage| -> Partition {
            let topic = self.topics.iter().position(|t| t == msg.topic()).unwrap_or(usize::MAX);
            (topic, msg.partition())
        };
        // Lanes with a message running, and the messages queued behind it.
        let mut lanes: HashMap<String, VecDeque<OwnedMessage>> = HashMap::new();
        let mut partitions: HashMap<Partition, PartitionState> = HashMap::new();
        let (mut in_flight, mut running, mut stopping) = (0usize, 0usize, false);
        let mut parked = 0usize;
        // Parked messages whose wait is over, waiting for a place in flight (served before any new
        // message is taken).
        let mut unparking: VecDeque<(Partition, tokio::sync::oneshot::Sender<()>)> = VecDeque::new();
        let in_flight_gauge = self.metrics.consumer_in_flight.clone();
        let parked_gauge = self.metrics.consumer_parked.clone();
        let mut lag_tick = tokio::time::interval(LAG_EVERY);
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while in_flight.saturating_sub(parked) < max_in_flight {
                let Some((partition, grant)) = unparking.pop_front() else {
                    break;
                };
                // A message dropped meanwhile (shutdown) says so itself: `Abandoned`.
                if grant.send(()).is_ok() {
                    parked = parked.saturating_sub(1);
                    let state = partitions.entry(partition).or_default();
                    state.parked = state.parked.saturating_sub(1);
                    if !state.paused && state.holding() >= per_partition {
                        let topic = self.topics.get(partition.0).map(String::as_str).unwrap_or_default();
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(topic, partition.1);
                        if consumer.pause(&tpl).is_ok() {
                            state.paused = true;
                        }
                    }
                }
            }
            in_flight_gauge.set(in_flight as i64);
            parked_gauge.set(parked as i64);
            tokio::select! {
                biased;
                _ = shutdown.wait(), if !stopping => {
                    // Start nothing more; what is queued stays pending (its offset is never stored).
                    stopping = true;
                    for q in lanes.values_mut() {
                        in_flight -= q.len();
                        q.clear();
                    }
                }
                _ = lag_tick.tick() => report_lag(&self.metrics, &self.name, &self.topics,
                    &consumer.context().snapshot(), &mut partitions),
                Some(event) = events_rx.recv() => match event {
                    Event::Unpark(partition, grant) => unparking.push_back((partition, grant)),
                    Event::Parked(partition) | Event::Abandoned(partition) => {
                        let state = partitions.entry(partition).or_default();
                        if matches!(event, Event::Parked(_)) {
                            parked += 1;
                            state.parked += 1;
                        } else {
                            parked = parked.saturating_sub(1);
                            state.parked = state.parked.saturating_sub(1);
                        }
                        if state.paused && state.holding() < per_partition {
                            let topic = self.topics.get(partition.0).map(String::as_str).unwrap_or_default();
                            let mut tpl = TopicPartitionList::new();
                            tpl.add_partition(topic, partition.1);
                            if consumer.resume(&tpl).is_ok() {
                                state.paused = false;
                            }
                        }
                    }
                    Event::Done(done) => {
                        running -= 1;
                        in_flight -= 1;
                        let state = partitions.entry(done.partition).or_default();
                        let (topic, partition) = (
                            self.topics.get(done.partition.0).map(String::as_str).unwrap_or_default(),
                            done.partition.1,
                        );
                        if done.applied {
                            state.pending.remove(&done.offset);
                            let safe = state.safe_offset();
                            if state.stored != Some(safe) {
                                // `store_offsets` takes the next offset to consume as it is (unlike
                                // `store_offset`, which takes the last one done and adds one).
                                let mut tpl = TopicPartitionList::new();
                                let stored = tpl
                                    .add_partition_offset(topic, partition, rdkafka::Offset::Offset(safe))
                                    .and_then(|()| consumer.store_offsets(&tpl));
                                match stored {
                                    Ok(()) => state.stored = Some(safe),
                                    // The partition was reassigned: the new owner redelivers what is not
                                    // committed, and its inbox skips what was applied.
                                    Err(e) => tracing::warn!(error = %e, topic, partition, offset = safe,
                                        "offset not stored (partition reassigned?)"),
                                }
                            }
                        }
                        if state.paused && state.holding() < per_partition {
                            let mut tpl = TopicPartitionList::new();
                            tpl.add_partition(topic, partition);
                            if consumer.resume(&tpl).is_ok() {
                                state.paused = false;
                            }
                        }
                        match lanes.get_mut(&done.lane).and_then(VecDeque::pop_front) {
                            Some(next) if !stopping => {
                                running += 1;
                                let partition = partition_of(&next);
                                spawn(next, done.lane, partition);
                            }
                            _ => {
                                lanes.remove(&done.lane);
                            }
                        }
                    }
                },
                m = consumer.recv(), if !stopping && unparking.is_empty() && in_flight.saturating_sub(parked) < max_in_flight => {
                    let msg = match m {
                        Ok(m) => m.detach(),
                        Err(e) => {
                            tracing::warn!(error = %e, "kafka receive error");
                            shutdown.sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    in_flight += 1;
                    let partition = partition_of(&msg);
                    let state = partitions.entry(partition).or_default();
                    let timestamp = msg.timestamp().to_millis().unwrap_or_else(now_ms);
                    state.pending.insert(msg.offset(), timestamp);
                    state.last = msg.offset();
                    if !state.paused && state.holding() >= per_partition {
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(msg.topic(), msg.partition());
                        if consumer.pause(&tpl).is_ok() {
                            state.paused = true;
                        }
                    }
                    let lane = lane_of(&msg);
                    match lanes.get_mut(&lane) {
                        Some(queue) => queue.push_back(msg),
                        None => {
                            lanes.insert(lane.clone(), VecDeque::new());
                            running += 1;
                            spawn(msg, lane, partition);
                        }
                    }
                }
            }
            if stopping && running == 0 {
                break;
            }
        }
        in_flight_gauge.set(0);
        // Every message task is done, so no batch is waited for.
        for c in committers {
            c.abort();
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit (nothing stored yet?)");
        }
        tracing::info!(consumer = %self.name, "consumer stopped");
        Ok(())
    }
}

/// Sets the lag gauges of every subscribed topic: messages summed over the partitions this member
/// is assigned, seconds the oldest of them (0 for a topic it holds no partition of).
fn report_lag(
    metrics: &Metrics,
    group: &str,
    topics: &[String],
    lag: &HashMap<(String, i32), i64>,
    partitions: &mut HashMap<Partition, PartitionState>,
) {
    let now = now_ms();
    for (index, topic) in topics.iter().enumerate() {
        let (mut messages, mut oldest_ms) = (0i64, 0i64);
        for ((t, partition), behind) in lag {
            if t != topic {
                continue;
            }
            messages += behind;
            let waited = partitions.entry((index, *partition)).or_default().lag_ms(*behind, now);
            oldest_ms = oldest_ms.max(waited);
        }
        let labels = LagLabels {
            group: group.to_string(),
            topic: topic.clone(),
        };
        metrics.consumer_lag_messages.get_or_create(&labels).set(messages);
        metrics
            .consumer_lag_seconds
            .get_or_create(&labels)
            .set(oldest_ms as f64 / 1000.0);
    }
}

/// How often the lag gauges are set (librdkafka's statistics come every 5 s).
const LAG_EVERY: Duration = Duration::from_secs(5);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl<H: Handler> Worker<H> {
    /// Returns true when the message is done with (applied, skipped or dead-lettered).
    async fn process(&self, msg: &OwnedMessage, shutdown: &Shutdown) -> bool {
        let topic = msg.topic().to_string();
        let headers = headers::from_kafka(msg.headers());
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("consume {topic}"),
            otel.kind = "consumer",
            consumer = %self.name,
            topic = %topic,
            partition = msg.partition(),
            offset = msg.offset(),
            event_id = tracing::field::Empty,
            event_type = tracing::field::Empty,
            flow_id = tracing::field::Empty,
            tenant = tracing::field::Empty,
        );
        headers::set_parent_from(&span, &headers);
        let started = Instant::now();
        let done = async {
            let mut backoff = message_backoff();
            let (schema_id, event) = loop {
                match self.codec.decode(&topic, msg.payload()).await {
                    Ok(ok) => break ok,
                    Err(DecodeError::Poison { reason, detail }) => {
                        return self.dead_letter(msg, &headers, reason, &detail, shutdown).await;
                    }
                    Err(DecodeError::Unavailable(e)) => {
                        tracing::warn!(error = %e, "cannot decode yet; retrying");
                        self.retried(&topic, "decode");
                        if !shutdown.sleep(backoff.next_wait()).await {
                            return false;
                        }
                    }
                }
            };
            let span = tracing::Span::current();
            span.record("event_id", tracing::field::display(&event.envelope.event_id));
            span.record("event_type", event.envelope.event_type.as_str());
            span.record("flow_id", event.envelope.flow_id.as_str());
            span.record("tenant", event.envelope.tenant_id.as_str());
            let incoming = Incoming {
                topic: topic.clone(),
                partition: msg.partition(),
                offset: msg.offset(),
                key: msg.key().and_then(|k| std::str::from_utf8(k).ok()).map(str::to_string),
                schema_id,
                headers: headers.clone(),
                event,
            };
            let (incoming, mut batched) = match &self.batches {
                Some(queue) => match self.in_batch(queue, incoming).await {
                    Some(back) => back,
                    None => {
                        shutdown.fail(format!(
                            "a batch with {topic}[{}]@{} was lost (a handler panicked?)",
                            msg.partition(),
                            msg.offset()
                        ));
                        return false;
                    }
                },
                None => (incoming, None),
            };
            let mut backoff = message_backoff();
            loop {
                let applied = match batched.take() {
                    Some(applied) => Ok(applied),
                    None => self.apply(&incoming).await,
                };
                match applied {
                    Ok(Applied::Processed) => {
                        self.count(&topic, "processed");
                        return true;
                    }
                    Ok(Applied::Duplicate) => {
                        self.metrics.inbox_duplicates.inc();
                        self.count(&topic, "duplicate");
                        tracing::debug!("duplicate skipped");
                        return true;
                    }
                    Err(HandlerError::Permanent(reason)) => {
                        return self
                            .dead_letter(msg, &headers, "handler_rejected", &reason, shutdown)
                            .await;
                    }
                    Err(HandlerError::Transient(e)) => {
                        tracing::warn!(error = %e, "handler failed transiently; retrying");
                        self.retried(&topic, "handler");
                        if !shutdown.sleep(backoff.next_wait()).await {
                            return false;
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await;
        self.metrics
            .handler_duration
            .get_or_create(&TopicLabels { topic })
            .observe(started.elapsed().as_secs_f64());
        done
    }

    async fn apply(&self, msg: &Incoming) -> Result<Applied, HandlerError> {
        // Not redundant with the effect ledger's replay: a request the partner refused is recorded
        // `not_executed`, and taking it up again would send it again, possibly after the flow moved
        // on to another partner. An applied message must call nobody.
        if H::CALLS_OUT {
            let seen: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2)")
                    .bind(&self.name)
                    .bind(msg.event.envelope.event_id)
                    .fetch_one(&self.pool)
                    .await?;
            if seen {
                return Ok(Applied::Duplicate);
            }
        }
        let prepared = self.handler.prepare(msg).await?;
        let span = tracing::Span::current();
        if self.apply_together(&[(msg, &span)], [prepared], None).await? {
            Ok(Applied::Processed)
        } else {
            Ok(Applied::Duplicate)
        }
    }

    /// Hands a message to the batch committers, prepared here in its own task (a slow `prepare`
    /// holds no batch); gets it back with the result, None when its batch failed (it is then
    /// applied alone, prepared again: it calls nobody). None when no committer answers.
    async fn in_batch(
        &self,
        queue: &tokio::sync::mpsc::UnboundedSender<Ready<H::Prepared>>,
        msg: Incoming,
    ) -> Option<(Incoming, Option<Applied>)> {
        let Ok(prepared) = self.handler.prepare(&msg).await else {
            return Some((msg, None));
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let ready = Ready {
            msg,
            prepared,
            span: tracing::Span::current(),
            reply,
        };
        if let Err(back) = queue.send(ready) {
            return Some((back.0.msg, None));
        }
        answer.await.ok()
    }

    /// Applies messages (of different keys) in one transaction: their inbox rows, then each one's
    /// handler in its own span. False, with nothing applied, when one of them was applied already;
    /// any error leaves nothing applied either. `lock_timeout`: see [`InboxTx::begin`].
    async fn apply_together(
        &self,
        msgs: &[(&Incoming, &tracing::Span)],
        prepared: impl IntoIterator<Item = H::Prepared>,
        lock_timeout: Option<Duration>,
    ) -> Result<bool, HandlerError> {
        let Some(mut tx) = InboxTx::begin(&self.pool, &self.name, msgs.iter().map(|(m, _)| *m), lock_timeout).await?
        else {
            return Ok(false);
        };
        for ((msg, span), prepared) in msgs.iter().zip(prepared) {
            if let Err(e) = self
                .handler
                .handle(tx.conn()?, msg, prepared)
                .instrument((*span).clone())
                .await
            {
                tx.rollback().await;
                return Err(e);
            }
        }
        tx.commit().await?;
        self.wake.committed();
        Ok(true)
    }

    fn retried(&self, topic: &str, reason: &str) {
        self.metrics
            .handler_retries
            .get_or_create(&RetryLabels {
                topic: topic.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    fn count(&self, topic: &str, outcome: &str) {
        self.metrics
            .messages_consumed
            .get_or_create(&ConsumedLabels {
                topic: topic.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Sends the original message to `<topic>.dlq` with the reason in headers; retries until Kafka
    /// takes it (or shutdown, returning false so the offset is not stored).
    async fn dead_letter(
        &self,
        msg: &OwnedMessage,
        original: &HeaderMap,
        reason: &'static str,
        detail: &str,
        shutdown: &Shutdown,
    ) -> bool {
        let topic = msg.topic();
        let target = dlq(topic);
        tracing::warn!(reason, detail, dlq = %target, "dead-lettering message");
        let mut h = original.clone();
        h.insert("dlq_reason".into(), reason.into());
        h.insert("dlq_detail".into(), detail.chars().take(1000).collect());
        h.insert("dlq_source_topic".into(), topic.into());
        h.insert("dlq_source_partition".into(), msg.partition().to_string());
        h.insert("dlq_source_offset".into(), msg.offset().to_string());
        h.insert("dlq_consumer".into(), self.name.clone());
        h.insert("dlq_at".into(), chrono::Utc::now().to_rfc3339());
        let mut backoff = message_backoff();
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&target).headers(headers::to_kafka(&h));
            if let Some(k) = msg.key() {
                record = record.key(k);
            }
            if let Some(p) = msg.payload() {
                record = record.payload(p);
            }
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => {
                    self.metrics
                        .dlq_messages
                        .get_or_create(&DlqLabels {
                            topic: topic.to_string(),
                            reason: reason.to_string(),
                        })
                        .inc();
                    self.count(topic, "dead_lettered");
                    return true;
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, dlq = %target, "cannot write to dead-letter topic; retrying");
                    if !shutdown.sleep(backoff.next_wait()).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// A transaction opened with the inbox rows of its messages, in one round trip: `BEGIN` and the
/// insert go together as one simple query (its values are literals: uuids, numbers and quoted
/// names). Dropped without [`InboxTx::commit`] or [`InboxTx::rollback`] (a cancelled future, a
/// panic), it closes its connection, so Postgres rolls the transaction back and no open transaction
/// ever returns to the pool.
struct InboxTx {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl InboxTx {
    /// None when one of `msgs` is in the inbox already (nothing is left open then).
    /// `lock_timeout`: how long any statement of the transaction may wait for a lock.
    async fn begin<'m>(
        pool: &PgPool,
        consumer: &str,
        msgs: impl Iterator<Item = &'m Incoming>,
        lock_timeout: Option<Duration>,
    ) -> Result<Option<InboxTx>, HandlerError> {
        use std::fmt::Write as _;
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let consumer = quote(consumer);
        let mut sql = String::from("BEGIN; ");
        if let Some(t) = lock_timeout {
            let _ = write!(sql, "SET LOCAL lock_timeout = {}; ", t.as_millis().max(1));
        }
        sql.push_str("INSERT INTO inbox (consumer, event_id, topic, kafka_partition, kafka_offset) VALUES ");
        for (i, m) in msgs.enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(
                sql,
                "{sep}({consumer}, '{}', {}, {}, {})",
                m.event.envelope.event_id,
                quote(&m.topic),
                m.partition,
                m.offset
            );
        }
        let mut tx = InboxTx {
            conn: Some(pool.acquire().await?),
        };
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(tx.conn()?).await {
            Ok(_) => Ok(Some(tx)),
            Err(e) => {
                // Postgres holds the aborted transaction open until told.
                tx.rollback().await;
                if crate::db::sqlstate(&e).as_deref() == Some("23505") {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// The transaction's connection (an error only after it ended, which its owner never sees).
    fn conn(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        self.conn.as_deref_mut().ok_or(sqlx::Error::PoolClosed)
    }

    async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::query("COMMIT").execute(self.conn()?).await?;
        // Committed: the connection goes back to the pool.
        self.conn.take();
        Ok(())
    }

    async fn rollback(mut self) {
        let Ok(conn) = self.conn() else { return };
        if sqlx::query("ROLLBACK").execute(conn).await.is_ok() {
            self.conn.take();
        }
    }
}

impl Drop for InboxTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// Retrying a message: 100 ms doubling to 5 s.
fn message_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}
