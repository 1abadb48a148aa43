//! A partner's rate limit against real PostgreSQL and Kafka: two instances share one budget, and a
//! message waiting for its turn holds no place that other partners' traffic needs.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the test failing

use std::time::{Duration, Instant};

use switchyard_runtime::{
    Metrics,
    pace::Pacer,
    provider::{Caller, Policy, ProviderMetrics, Retryable},
};
use switchyard_tests::*;

/// The shortest time any `limit + 1` consecutive turns span (a limit per second is kept when it is at
/// least one second).
fn tightest_second(mut turns: Vec<Instant>, limit: usize) -> Duration {
    turns.sort();
    turns
        .windows(limit + 1)
        .map(|w| w[limit] - w[0])
        .min()
        .expect("more turns than the limit")
}

/// Turns for `n` calls from each of two instances at once.
async fn turns_of(a: Pacer, b: Pacer, n: usize) -> Vec<Instant> {
    let mut tasks = Vec::new();
    for p in [a, b] {
        for _ in 0..n {
            let p = p.clone();
            tasks.push(tokio::spawn(async move { p.turn("kyc-x").await.expect("limited") }));
        }
    }
    let mut turns = Vec::new();
    for t in tasks {
        turns.push(t.await.expect("join"));
    }
    turns
}

/// Two instances of an adapter, each with the partner's limit of 20/s, draw their turns from the
/// budget in their database: any 21 of their turns together span a second at least. Paced alone,
/// each keeps the limit and together they double it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_partners_rate_limit() {
    let db = Stack::get().fresh_db("pace_shared").await;
    let (a, b) = (Pacer::shared(db.pool.clone()), Pacer::shared(db.pool.clone()));
    a.set_limit("kyc-x", 20.0);
    b.set_limit("kyc-x", 20.0);
    let shared = tightest_second(turns_of(a, b, 16).await, 20);
    // Instances see the database's clock through a round trip: a millisecond or two of slack.
    assert!(
        shared >= Duration::from_millis(990),
        "two instances sharing the budget: 21 turns within {shared:?}"
    );

    let (a, b) = (Pacer::default(), Pacer::default());
    a.set_limit("kyc-x", 20.0);
    b.set_limit("kyc-x", 20.0);
    let alone = tightest_second(turns_of(a, b, 16).await, 20);
    assert!(
        alone < Duration::from_millis(600),
        "the check tells a doubled rate apart: 21 turns within {alone:?} when each paces alone"
    );
    db.drop_db().await;
}

#[derive(Debug)]
struct NeverFails;

impl Retryable for NeverFails {
    fn retryable(&self) -> bool {
        false
    }
    fn outcome(&self) -> &'static str {
        "rejected"
    }
}

/// Calls a partner limited to 2 calls/s for messages whose key starts with `slow`, then applies like
/// [`RecordEffects`]; other messages call nobody.
struct CallsSlowPartner {
    caller: Caller,
}

impl switchyard_runtime::Handler for CallsSlowPartner {
    type Prepared = ();
    const CALLS_OUT: bool = true;

    async fn prepare(&self, msg: &switchyard_runtime::Incoming) -> Result<(), switchyard_runtime::HandlerError> {
        if msg.key.as_deref().is_some_and(|k| k.starts_with("slow")) {
            self.caller
                .call("slow-partner", "check", || async { Ok::<_, NeverFails>(()) })
                .await
                .expect("the call succeeds");
        }
        Ok(())
    }

    async fn handle(
        &self,
        conn: &mut sqlx::PgConnection,
        msg: &switchyard_runtime::Incoming,
        (): (),
    ) -> Result<(), switchyard_runtime::HandlerError> {
        RecordEffects.handle(conn, msg, ()).await
    }
}

/// 12 messages for a partner limited to 2/s, then 8 that call nobody, in one partition, with room
/// for 4 messages in flight. Returns how many of the slow ones were applied before the last fast one,
/// and how many were left when the consumer was stopped once the fast ones were in (the next instance
/// applies those).
async fn slow_then_fast(stack: &Stack, db: &TestDb, max_parked: usize) -> (usize, i64, String) {
    let topic = stack.fresh_topic("parked", 1).await;
    let codec = stack.codec_for(&topic).await;
    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "parked-test").expect("producer");
    let keys: Vec<String> = (1..=12)
        .map(|i| format!("slow-{i}"))
        .chain((1..=8).map(|i| format!("fast-{i}")))
        .collect();
    for (seq, key) in keys.iter().enumerate() {
        let frame = codec
            .encode(&topic, &sample_event("t", key, seq as u32))
            .await
            .expect("encode");
        produce(&producer, &topic, key, &frame).await;
    }
    let caller = Caller::new(
        Policy::default(),
        ProviderMetrics::register(&Metrics::new("parked")),
        Pacer::default(),
    );
    caller.set_rate_limit("slow-partner", 2.0);
    let metrics = Metrics::new("parked");
    let shutdown = switchyard_runtime::Shutdown::new();
    let consumer = switchyard_runtime::Consumer {
        name: format!("consumer-{topic}"),
        topics: vec![topic.clone()],
        bootstrap: stack.kafka.clone(),
        codec: codec.clone(),
        pool: db.pool.clone(),
        metrics: metrics.clone(),
        producer,
        handler: CallsSlowPartner { caller },
        wake: Default::default(),
        instance_id: None,
        concurrency: switchyard_runtime::inbox::Concurrency {
            max_in_flight: 4,
            per_partition: 4,
            max_batch: 1,
            max_parked,
        },
    };
    let run = tokio::spawn(consumer.run(shutdown.clone()));
    let fast_in = eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM effects WHERE flow_id LIKE 'fast-%'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        n == 8
    })
    .await;
    assert!(fast_in, "the fast messages were applied");
    let parked_seen = metrics.render();
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("stopped without waiting for the parked turns")
        .expect("join")
        .expect("a clean stop");
    let left = 20 - effects_count(&db.pool).await;
    let order: Vec<String> = sqlx::query_scalar("SELECT flow_id FROM effects ORDER BY applied_order")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let last_fast = order.iter().rposition(|f| f.starts_with("fast")).expect("fast applied");
    let slow_before = order[..last_fast].iter().filter(|f| f.starts_with("slow")).count();

    // The next instance of the group (no limit) applies what was left, each message exactly once.
    let expect = Expect {
        effects: 20,
        ..Expect::default()
    };
    let consumed = consume(stack, db, &topic, codec, "parked-2", expect).await;
    assert!(
        consumed.applied,
        "what the stopped consumer left was redelivered and applied"
    );
    assert_eq!(applied_times(&db.pool).await, vec![1; 20], "each message applied once");
    (slow_before, left, parked_seen)
}

/// Messages waiting for their turn at a rate-limited partner are parked: they give their in-flight
/// place back, and the traffic behind them that calls nobody is applied at once, long before their
/// turns come. With parking off (`max_parked = 0`) the same traffic waits behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_waiting_for_its_turn_holds_no_place_in_flight() {
    let stack = Stack::get();
    let db = stack.fresh_db("parked_on").await;
    create_effects_table(&db.pool).await;
    let (slow_before, left, metrics) = slow_then_fast(&stack, &db, 1000).await;
    // At 2 calls/s, the first turns come at 0, 0.5 and 1 s; the fast messages need far less.
    assert!(
        slow_before <= 3,
        "{slow_before} of the 12 rate-limited messages were applied before the last of the others"
    );
    assert!(
        left > 0,
        "the messages still parked at shutdown were left for redelivery"
    );
    assert!(
        metrics.contains("switchyard_consumer_parked"),
        "the parked gauge is exported"
    );
    db.drop_db().await;

    let db = stack.fresh_db("parked_off").await;
    create_effects_table(&db.pool).await;
    let (slow_before, _, _) = slow_then_fast(&stack, &db, 0).await;
    assert!(
        slow_before >= 8,
        "without parking the others wait behind the rate-limited messages (only {slow_before} before them)"
    );
    db.drop_db().await;
}

/// Parks every message for the same 300 ms, then works 50 ms holding a place: counts how many work
/// at once.
struct ParksThenWorks {
    working: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl switchyard_runtime::Handler for ParksThenWorks {
    type Prepared = ();
    const CALLS_OUT: bool = true;

    async fn prepare(&self, _: &switchyard_runtime::Incoming) -> Result<(), switchyard_runtime::HandlerError> {
        use std::sync::atomic::Ordering;
        switchyard_runtime::inbox::parked(tokio::time::sleep(Duration::from_millis(300))).await;
        let now = self.working.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.working.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    async fn handle(
        &self,
        conn: &mut sqlx::PgConnection,
        msg: &switchyard_runtime::Incoming,
        (): (),
    ) -> Result<(), switchyard_runtime::HandlerError> {
        RecordEffects.handle(conn, msg, ()).await
    }
}

/// Parked messages hold no place while they wait, but take one back before they go on: 20 messages
/// whose waits end together never work more than `max_in_flight` (4) at once, so what a message
/// does after its turn (a key lock, a ledger write) never needs more connections than the pool has
/// for messages in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_message_takes_a_place_back_before_it_goes_on() {
    let stack = Stack::get();
    let db = stack.fresh_db("unpark").await;
    create_effects_table(&db.pool).await;
    let topic = stack.fresh_topic("unpark", 1).await;
    let codec = stack.codec_for(&topic).await;
    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "unpark-test").expect("producer");
    for seq in 1..=20u32 {
        let key = format!("flow-{seq}");
        let frame = codec
            .encode(&topic, &sample_event("t", &key, seq))
            .await
            .expect("encode");
        produce(&producer, &topic, &key, &frame).await;
    }
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shutdown = switchyard_runtime::Shutdown::new();
    let consumer = switchyard_runtime::Consumer {
        name: format!("consumer-{topic}"),
        topics: vec![topic.clone()],
        bootstrap: stack.kafka.clone(),
        codec,
        pool: db.pool.clone(),
        metrics: Metrics::new("unpark"),
        producer,
        handler: ParksThenWorks {
            working: std::sync::Arc::default(),
            most: most.clone(),
        },
        wake: Default::default(),
        instance_id: None,
        concurrency: switchyard_runtime::inbox::Concurrency {
            max_in_flight: 4,
            per_partition: 4,
            max_batch: 1,
            max_parked: 1000,
        },
    };
    let run = tokio::spawn(consumer.run(shutdown.clone()));
    assert!(
        eventually(Duration::from_secs(30), || async {
            effects_count(&db.pool).await == 20
        })
        .await,
        "every message applied"
    );
    shutdown.trigger();
    run.await.expect("join").expect("a clean stop");
    assert_eq!(applied_times(&db.pool).await, vec![1; 20]);
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=4).contains(&most),
        "{most} messages worked at once after their waits (at most 4 places; more than one parked together)"
    );
    db.drop_db().await;
}
