//! The mesh runtime against the real stack: round trip, crash safety, late commits, ordering,
//! poison messages.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the test failing

use std::{collections::HashMap, time::Duration};

use apache_avro::{Schema, types::Value};
use switchyard_model::{topics::value_subject, wire};
use switchyard_runtime::{Metrics, Outbox};
use switchyard_tests::*;

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    let Value::Record(fields) = v else {
        panic!("not a record: {v:?}")
    };
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_outbox_relay_and_kafka_in_confluent_wire_format() {
    let stack = Stack::get();
    let db = stack.fresh_db("roundtrip").await;
    let topic = stack.fresh_topic("roundtrip", 1).await;
    let codec = stack.codec_for(&topic).await;
    let outbox = Outbox::new(codec.clone());

    let mut event = sample_event("tenant-a", "flow-rt", 7);
    event.envelope.idempotency_key = Some("idem-1".into());
    let event = switchyard_model::EventRecord::from_value(RECORD, {
        let Value::Record(mut fields) = event.value.clone() else {
            unreachable!()
        };
        fields[0].1 = apache_avro::to_value(&event.envelope).expect("envelope");
        Value::Record(fields)
    })
    .expect("event");
    let mut tx = db.pool.begin().await.expect("tx");
    outbox.enqueue(&mut tx, &topic, &event).await.expect("enqueue");
    tx.commit().await.expect("commit");

    let relay = stack.spawn_relay(&db, "roundtrip", Metrics::new("roundtrip"));
    let got = read_topic(&stack, &topic, 1, Duration::from_secs(30), Duration::from_millis(300)).await;
    relay.trigger();
    assert_eq!(got.len(), 1, "exactly one message expected");
    let msg = &got[0];

    // Key = flow id.
    assert_eq!(msg.key.as_deref(), Some("flow-rt"));
    // Confluent framing: magic 0, big-endian id of the schema registered for <topic>-value.
    assert_eq!(msg.payload[0], 0, "magic byte");
    let id = u32::from_be_bytes([msg.payload[1], msg.payload[2], msg.payload[3], msg.payload[4]]);
    let registered = stack
        .registry()
        .register(
            &value_subject(&topic),
            &codec.catalog().get(MODEL_TOPIC).expect("model").text,
        )
        .await
        .expect("lookup id");
    assert_eq!(id, registered, "schema id in the header is the subject's id");

    // Decode independently of our catalog: the writer schema text as the registry serves it, a plain
    // Avro reader, nothing else (what any Confluent client does).
    let text: serde_json::Value = reqwest::get(format!("{}/schemas/ids/{id}", stack.registry))
        .await
        .expect("registry")
        .json()
        .await
        .expect("json");
    let writer = Schema::parse_str(text["schema"].as_str().expect("schema text")).expect("parse");
    let mut datum = &msg.payload[5..];
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&writer)
        .build()
        .and_then(|r| r.read_value(&mut datum))
        .expect("plain Avro decode");
    assert!(datum.is_empty(), "no trailing bytes");
    let Value::Union(branch, record) = value else {
        panic!("not a union")
    };
    assert_eq!(branch, 0);
    let env = field(&record, "envelope");
    assert_eq!(field(env, "event_id"), &Value::Uuid(event.envelope.event_id));
    assert_eq!(field(env, "tenant_id"), &Value::String("tenant-a".into()));
    assert_eq!(
        field(env, "occurred_at"),
        &Value::TimestampMillis(event.envelope.occurred_at)
    );
    assert_eq!(field(&record, "subject_id"), &Value::String("flow-rt:7".into()));

    // And through the runtime's codec: equal to what was written.
    let (_, decoded) = codec.decode(&topic, Some(&msg.payload)).await.expect("decode");
    assert_eq!(decoded.record, event.record);
    assert_eq!(decoded.envelope, event.envelope);
    assert_eq!(
        decoded.value,
        event.value.clone().resolve(&writer_record(&codec)).expect("resolve")
    );

    // Headers: W3C trace context and CloudEvents binary mode.
    let tp = msg.headers.get("traceparent").expect("traceparent header");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {tp}");
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len()),
        ("00", 32, 16),
        "traceparent {tp}"
    );
    assert_eq!(msg.headers.get("ce_id"), Some(&event.envelope.event_id.to_string()));
    assert_eq!(msg.headers.get("ce_type").map(String::as_str), Some(RECORD));
    assert_eq!(msg.headers.get("ce_specversion").map(String::as_str), Some("1.0"));
    assert_eq!(
        msg.headers.get("ce_source").map(String::as_str),
        Some("/switchyard/test")
    );
    assert!(msg.headers.get("ce_time").is_some_and(|t| t.ends_with('Z')));

    // The relay marked the row.
    assert_eq!(unpublished(&db.pool).await, 0);
    db.drop_db().await;
}

/// The record schema of the test topic's first branch (to compare resolved values).
fn writer_record(codec: &switchyard_runtime::Codec) -> Schema {
    let s = &codec.catalog().get(MODEL_TOPIC).expect("model").schema;
    let Schema::Union(u) = s else { panic!("union") };
    u.variants()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_commits_late_is_still_published() {
    let stack = Stack::get();
    let db = stack.fresh_db("late").await;
    let topic = stack.fresh_topic("late", 1).await;
    let codec = stack.codec_for(&topic).await;
    let outbox = Outbox::new(codec.clone());
    let relay = stack.spawn_relay(&db, "late", Metrics::new("late"));

    // A takes the lower id and stays open; B commits after it took a higher id.
    let early = sample_event("t", "flow-late", 1);
    let mut tx_a = db.pool.begin().await.expect("tx a");
    let id_a = outbox.enqueue(&mut tx_a, &topic, &early).await.expect("enqueue a");
    let later = sample_event("t", "flow-other", 2);
    let mut tx_b = db.pool.begin().await.expect("tx b");
    let id_b = outbox.enqueue(&mut tx_b, &topic, &later).await.expect("enqueue b");
    assert!(id_a < id_b);
    tx_b.commit().await.expect("commit b");

    // B is published while A is still open...
    let first = read_topic(&stack, &topic, 1, Duration::from_secs(20), Duration::from_millis(500)).await;
    assert_eq!(first.len(), 1, "only the committed row is visible");
    // ...then A commits, behind a row the relay already passed, and must still go out.
    tx_a.commit().await.expect("commit a");
    let all = read_topic(&stack, &topic, 2, Duration::from_secs(20), Duration::from_millis(500)).await;
    relay.trigger();
    let ids: Vec<String> = all.iter().filter_map(|m| m.headers.get("ce_id").cloned()).collect();
    assert!(
        ids.contains(&early.envelope.event_id.to_string()),
        "late-committed row was skipped"
    );
    assert!(ids.contains(&later.envelope.event_id.to_string()));
    assert_eq!(all.len(), 2);
    db.drop_db().await;
}

/// The relay is woken after the commit, never by the writing transaction: with its poll a minute
/// away, a committed row nobody announces stays put; one announced by this process's commit goes out
/// (in-memory wake), and so does one announced by another instance (a `NOTIFY` of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_is_woken_after_the_commit_in_memory_or_from_another_instance() {
    use switchyard_runtime::outbox::{RelayConfig, Wake};
    let stack = Stack::get();
    let db = stack.fresh_db("wake").await;
    let topic = stack.fresh_topic("wake", 1).await;
    let codec = stack.codec_for(&topic).await;
    let local = Wake::default();
    let outbox = Outbox::new(codec.clone()).with_wake(local.clone());
    let metrics = Metrics::new("wake");
    let relay = switchyard_runtime::Relay::new(
        db.pool.clone(),
        switchyard_runtime::kafka::producer(&stack.kafka, "wake").expect("producer"),
        metrics.clone(),
        RelayConfig {
            service: "wake".into(),
            poll_interval: Duration::from_secs(60),
            batch_size: 100,
            retention: Duration::from_secs(3600),
            pause_after_publish: Duration::ZERO,
            max_attempts: 5,
        },
    )
    .with_wake(local.clone());
    let stop = switchyard_runtime::Shutdown::new();
    tokio::spawn(relay.run(stop.clone()));
    assert!(
        eventually(Duration::from_secs(10), || async {
            metrics
                .render()
                .contains("switchyard_outbox_relay_active{service=\"wake\"} 1")
        })
        .await,
        "the relay became active"
    );
    // Its first round is done once active; a row committed now waits for a wake or the poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let commit = |seq: u32| {
        let (pool, outbox, topic) = (db.pool.clone(), outbox.clone(), topic.clone());
        async move {
            let mut tx = pool.begin().await.expect("tx");
            outbox
                .enqueue(&mut tx, &topic, &sample_event("t", &format!("flow-w{seq}"), seq))
                .await
                .expect("enqueue");
            tx.commit().await.expect("commit");
        }
    };
    commit(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        unpublished(&db.pool).await,
        1,
        "the writing transaction woke the relay by itself"
    );
    // This process's commit: woken in memory (the row above goes too).
    local.committed();
    assert!(
        eventually(Duration::from_secs(10), || async { unpublished(&db.pool).await == 0 }).await,
        "the in-memory wake did not reach the relay"
    );
    // Another instance's commit: its relay is not active, so it sends a NOTIFY of its own.
    commit(2).await;
    Wake::new(db.pool.clone()).committed();
    assert!(
        eventually(Duration::from_secs(10), || async { unpublished(&db.pool).await == 0 }).await,
        "the NOTIFY from another instance did not reach the relay"
    );
    stop.trigger();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_key_arrive_in_commit_order() {
    let stack = Stack::get();
    let db = stack.fresh_db("order").await;
    let topic = stack.fresh_topic("order", 3).await;
    let codec = stack.codec_for(&topic).await;
    let outbox = Outbox::new(codec.clone());
    sqlx::query("CREATE TABLE flows (flow_id TEXT PRIMARY KEY, seq INT NOT NULL)")
        .execute(&db.pool)
        .await
        .expect("flows");
    let flows = 6;
    for f in 0..flows {
        sqlx::query("INSERT INTO flows VALUES ($1, 0)")
            .bind(format!("flow-{f}"))
            .execute(&db.pool)
            .await
            .expect("flow row");
    }
    let relay = stack.spawn_relay(&db, "order", Metrics::new("order"));

    // Eight concurrent writers; each transaction locks its flow's row, bumps its sequence and emits
    // the event, as a service does.
    let per_writer = 60;
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let pool = db.pool.clone();
        let outbox = outbox.clone();
        let topic = topic.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let flow = format!("flow-{}", (w + i) % flows);
                let mut tx = pool.begin().await.expect("tx");
                let seq: i32 = sqlx::query_scalar("UPDATE flows SET seq = seq + 1 WHERE flow_id = $1 RETURNING seq")
                    .bind(&flow)
                    .fetch_one(&mut *tx)
                    .await
                    .expect("lock flow");
                let event = sample_event("t", &flow, u32::try_from(seq).expect("seq"));
                outbox.enqueue(&mut tx, &topic, &event).await.expect("enqueue");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let total = 8 * per_writer as usize;
    let got = read_topic(
        &stack,
        &topic,
        total,
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    relay.trigger();
    assert_eq!(got.len(), total);
    let mut last: HashMap<String, u32> = HashMap::new();
    let mut by_partition: Vec<&Raw> = got.iter().collect();
    by_partition.sort_by_key(|m| (m.partition, m.offset));
    for m in by_partition {
        let (_, event) = codec.decode(&topic, Some(&m.payload)).await.expect("decode");
        let seq = seq_of(&event);
        let prev = last.insert(event.envelope.flow_id.clone(), seq).unwrap_or(0);
        assert_eq!(
            seq,
            prev + 1,
            "flow {} out of order: {seq} after {prev}",
            event.envelope.flow_id
        );
    }
    assert_eq!(last.len(), flows as usize);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dlq_and_the_partition_moves_on() {
    let stack = Stack::get();
    let db = stack.fresh_db("poison").await;
    let topic = stack.fresh_topic("poison", 1).await;
    let codec = stack.codec_for(&topic).await;
    create_effects_table(&db.pool).await;

    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "poison-test").expect("producer");
    let send = |payload: Vec<u8>| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            produce(&producer, &topic, "flow-p", &payload).await;
        }
    };
    let good1 = sample_event("t", "flow-p", 1);
    let good2 = sample_event("t", "flow-p", 2);
    let valid_frame = codec.encode(&topic, &good1).await.expect("encode");
    send(valid_frame.clone()).await;
    send(b"{\"not\": \"avro\"}".to_vec()).await; // garbage
    send(wire::frame(987_654_321, &valid_frame[5..])).await; // unknown schema id
    send(valid_frame[..valid_frame.len() / 2].to_vec()).await; // truncated datum
    send(codec.encode(&topic, &good2).await.expect("encode")).await;

    let expect = Expect {
        effects: 2,
        dead: 3,
        ..Expect::default()
    };
    let Consumed {
        applied,
        dlq,
        metrics: text,
        ..
    } = consume(&stack, &db, &topic, codec.clone(), "poison", expect).await;
    assert!(applied, "the messages behind the poison ones were not processed");

    let reasons: Vec<&str> = dlq
        .iter()
        .filter_map(|m| m.headers.get("dlq_reason").map(String::as_str))
        .collect();
    assert_eq!(
        reasons,
        vec!["undecodable", "unknown_schema", "undecodable"],
        "dlq: {dlq:?}"
    );
    assert_eq!(dlq[0].payload, b"{\"not\": \"avro\"}".to_vec(), "original bytes kept");
    assert!(
        dlq[1]
            .headers
            .get("dlq_detail")
            .is_some_and(|d| d.contains("987654321"))
    );
    assert!(dlq.iter().all(|m| m.headers.get("dlq_source_topic") == Some(&topic)));
    assert!(
        text.contains(&format!(
            "switchyard_dlq_messages_total{{service=\"poison\",topic=\"{topic}\",reason=\"undecodable\"}} 2"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "switchyard_dlq_messages_total{{service=\"poison\",topic=\"{topic}\",reason=\"unknown_schema\"}} 1"
        )),
        "{text}"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_row_kafka_refuses_is_set_aside_and_the_rows_behind_it_flow() {
    let stack = Stack::get();
    let db = stack.fresh_db("set_aside").await;
    let topic = stack.fresh_topic("set_aside", 1).await;
    let codec = stack.codec_for(&topic).await;
    // good, too large for Kafka (2 MB of incompressible bytes), good.
    let mut big = vec![0u8; 2 * 1024 * 1024];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in big.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut ids = Vec::new();
    {
        let mut conn = db.pool.acquire().await.expect("conn");
        for (seq, payload) in [
            (
                1,
                codec
                    .encode(&topic, &sample_event("t", "flow-s", 1))
                    .await
                    .expect("encode"),
            ),
            (2, big),
            (
                3,
                codec
                    .encode(&topic, &sample_event("t", "flow-s", 3))
                    .await
                    .expect("encode"),
            ),
        ] {
            let id = switchyard_runtime::outbox::insert(
                &mut conn,
                &topic,
                "flow-s",
                &payload,
                &std::collections::BTreeMap::new(),
                uuid::Uuid::new_v4(),
            )
            .await
            .expect("insert");
            ids.push((seq, id));
        }
    }
    let metrics = Metrics::new("set_aside");
    let stop = stack.spawn_relay(&db, "set-aside", metrics.clone());
    let got = read_topic(&stack, &topic, 2, Duration::from_secs(30), Duration::from_millis(300)).await;
    let settled = eventually(Duration::from_secs(30), || async {
        let aside: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE set_aside_at IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .expect("q");
        aside == 1
    })
    .await;
    // A row written after the refused one still flows.
    {
        let mut conn = db.pool.acquire().await.expect("conn");
        let payload = codec
            .encode(&topic, &sample_event("t", "flow-s", 4))
            .await
            .expect("encode");
        switchyard_runtime::outbox::insert(
            &mut conn,
            &topic,
            "flow-s",
            &payload,
            &std::collections::BTreeMap::new(),
            uuid::Uuid::new_v4(),
        )
        .await
        .expect("insert");
    }
    let after = read_topic(&stack, &topic, 3, Duration::from_secs(30), Duration::from_millis(300)).await;
    stop.trigger();
    assert_eq!(got.len(), 2, "the good rows around the refused one were published");
    assert!(settled, "the refused row was set aside");
    assert_eq!(after.len(), 3, "and rows behind it keep flowing");
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM outbox WHERE id = $1")
            .bind(ids[1].1)
            .fetch_one(&db.pool)
            .await
            .expect("row");
    assert_eq!(attempts, 5, "set aside after outbox.max_attempts rounds");
    assert!(error.is_some_and(|e| e.to_lowercase().contains("too large")));
    assert!(
        metrics.render().contains(&format!(
            "switchyard_outbox_set_aside_total{{service=\"set_aside\",topic=\"{topic}\"}} 1"
        )),
        "{}",
        metrics.render()
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_change_the_database_refuses_is_dead_lettered_not_retried_for_ever() {
    let stack = Stack::get();
    let db = stack.fresh_db("refused").await;
    let topic = stack.fresh_topic("refused", 1).await;
    let codec = stack.codec_for(&topic).await;
    create_effects_table(&db.pool).await;
    // The handler's write for seq 2 breaks a constraint (SQLSTATE 23514): it will every time.
    sqlx::query("ALTER TABLE effects ADD CONSTRAINT no_second CHECK (seq <> 2)")
        .execute(&db.pool)
        .await
        .expect("constraint");
    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "refused-test").expect("producer");
    for seq in 1..=3 {
        let payload = codec
            .encode(&topic, &sample_event("t", "flow-r", seq))
            .await
            .expect("encode");
        produce(&producer, &topic, "flow-r", &payload).await;
    }
    let expect = Expect {
        effects: 2,
        dead: 1,
        ..Expect::default()
    };
    let Consumed { applied, dlq, .. } = consume(&stack, &db, &topic, codec.clone(), "refused", expect).await;
    assert!(applied, "the message behind the refused one was not processed");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(
        dlq[0].headers.get("dlq_reason").map(String::as_str),
        Some("handler_rejected")
    );
    assert!(
        dlq[0]
            .headers
            .get("dlq_detail")
            .is_some_and(|d| d.contains("SQLSTATE 23514")),
        "{:?}",
        dlq[0].headers
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_is_applied_once() {
    let stack = Stack::get();
    let db = stack.fresh_db("dup").await;
    let topic = stack.fresh_topic("dup", 1).await;
    let codec = stack.codec_for(&topic).await;
    create_effects_table(&db.pool).await;
    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "dup-test").expect("producer");
    let event = sample_event("t", "flow-d", 1);
    let frame = codec.encode(&topic, &event).await.expect("encode");
    for _ in 0..3 {
        produce(&producer, &topic, "flow-d", &frame).await;
    }
    let other = codec
        .encode(&topic, &sample_event("t", "flow-d", 2))
        .await
        .expect("encode");
    produce(&producer, &topic, "flow-d", &other).await;
    let expect = Expect {
        effects: 2,
        duplicates: 2,
        ..Expect::default()
    };
    let Consumed {
        applied: done,
        skipped: dups_seen,
        metrics,
        ..
    } = consume(&stack, &db, &topic, codec, "dup", expect).await;
    assert!(done);
    assert!(dups_seen, "{metrics}");
    assert_eq!(applied_times(&db.pool).await, vec![1, 1]);
    db.drop_db().await;
}

/// A metric's value in Prometheus text (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Messages of different flows that are ready together share a transaction (one inbox insert for
/// all). A batch holding a message the database refuses, or one applied already, is applied again
/// message by message: the refused one alone is dead-lettered, the duplicate alone skipped, and every
/// other message applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_ready_together_share_a_transaction_and_a_bad_one_fails_alone() {
    let stack = Stack::get();
    let db = stack.fresh_db("batch").await;
    let topic = stack.fresh_topic("batch", 1).await;
    let codec = stack.codec_for(&topic).await;
    create_effects_table(&db.pool).await;
    sqlx::query("ALTER TABLE effects ADD CONSTRAINT no_77 CHECK (seq <> 77)")
        .execute(&db.pool)
        .await
        .expect("constraint");
    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "batch-test").expect("producer");
    let mut frames = Vec::new();
    for seq in 1..=300 {
        let flow = format!("flow-b{seq}");
        let frame = codec
            .encode(&topic, &sample_event("t", &flow, seq))
            .await
            .expect("encode");
        produce(&producer, &topic, &flow, &frame).await;
        frames.push((flow, frame));
    }
    // Redelivered copies, behind the originals: they reach batches of other flows' messages.
    for i in [9, 99, 199] {
        let (flow, frame) = &frames[i];
        produce(&producer, &topic, flow, frame).await;
    }
    let expect = Expect {
        effects: 299,
        duplicates: 3,
        dead: 1,
    };
    let Consumed {
        applied,
        skipped,
        dlq,
        metrics: text,
    } = consume(&stack, &db, &topic, codec, "batch", expect).await;
    assert!(applied && skipped, "299 applied and 3 duplicates skipped:\n{text}");
    assert!(
        applied_times(&db.pool).await.iter().all(|n| *n == 1),
        "applied once each"
    );
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].key.as_deref(), Some("flow-b77"));
    let (batches, messages) = (
        metric(&text, "switchyard_consumer_batch_size_count"),
        metric(&text, "switchyard_consumer_batch_size_sum"),
    );
    assert!(
        messages > batches,
        "no two messages ever shared a transaction ({messages} messages in {batches} transactions)"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn the_effect_ledger_reports_what_an_earlier_attempt_left() {
    use switchyard_runtime::{
        effects::{Intent, Ledger, Prior},
        provider::idempotency_key,
    };
    let stack = Stack::get();
    let db = stack.fresh_db("effects").await;
    let ledger = Ledger::new(db.pool.clone());
    let event = uuid::Uuid::new_v4();
    let key = idempotency_key(event);
    let intent = Intent {
        key: &key,
        partner: "kyc-x",
        operation: "verify",
        request_event_id: event,
        flow_id: "flow-a",
    };
    assert_eq!(
        ledger.take(&intent).await.expect("take"),
        Prior::Fresh,
        "a first attempt"
    );
    ledger.sending(&key).await.expect("sending");
    ledger
        .checkpoint(&key, "applicant_id", "app-1")
        .await
        .expect("checkpoint");
    // A crash before the answer: the next attempt must ask, and resumes from the checkpoint.
    assert_eq!(
        ledger.take(&intent).await.expect("take"),
        Prior::Unresolved {
            checkpoint: serde_json::json!({"applicant_id": "app-1"})
        }
    );
    ledger.in_doubt(&key, "timed out").await.expect("in doubt");
    assert!(matches!(
        ledger.take(&intent).await.expect("take"),
        Prior::Unresolved { .. }
    ));
    let answer = serde_json::json!({"provider_reference": "case-42", "status": "PENDING"});
    ledger.answered(&key, Some("case-42"), &answer).await.expect("answered");
    assert_eq!(ledger.take(&intent).await.expect("take"), Prior::Answered(answer));
    let (attempts, reference): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, provider_reference FROM effect_ledger WHERE idempotency_key = $1")
            .bind(&key)
            .fetch_one(&db.pool)
            .await
            .expect("row");
    assert_eq!((attempts, reference.as_deref()), (4, Some("case-42")));

    let other = idempotency_key(uuid::Uuid::new_v4());
    let refused = Intent {
        key: &other,
        ..intent.clone()
    };
    assert_eq!(ledger.take(&refused).await.expect("take"), Prior::Fresh);
    ledger.not_executed(&other, "503").await.expect("not executed");
    assert_eq!(ledger.take(&refused).await.expect("take"), Prior::NotExecuted);
    ledger.manual_repair(&other, "no way to know").await.expect("repair");
    assert_eq!(ledger.take(&refused).await.expect("take"), Prior::ManualRepair);
    db.drop_db().await;
}

#[tokio::test]
async fn the_effect_key_lock_keeps_a_second_caller_out_until_released() {
    use switchyard_runtime::effects::Ledger;
    let stack = Stack::get();
    let db = stack.fresh_db("effect_lock").await;
    let ledger = Ledger::new(db.pool.clone());
    let held = ledger.lock("sy-key-1").await.expect("lock");
    let second = {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.lock("sy-key-1").await.expect("lock") })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "a second holder got the key while the first held it"
    );
    held.release().await;
    let second = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second caller gets the key once it is released")
        .expect("join");
    second.release().await;
    // A holder that dies (dropped without release) frees the key too.
    let dropped = ledger.lock("sy-key-2").await.expect("lock");
    drop(dropped);
    let again = tokio::time::timeout(Duration::from_secs(10), ledger.lock("sy-key-2"))
        .await
        .expect("a dropped holder frees the key")
        .expect("lock");
    again.release().await;
    db.drop_db().await;
}

#[tokio::test]
async fn the_inbox_forgets_processed_ids_after_its_retention_and_only_those() {
    use switchyard_runtime::retention::{inbox_rule, prune};
    let stack = Stack::get();
    let db = stack.fresh_db("inbox_prune").await;
    // 2,500 old rows of one consumer (more than one pruning batch), 3 recent ones, and old rows of
    // another consumer of the same service.
    for (consumer, age_hours, n) in [("c1", 200, 2500), ("c1", 1, 3), ("c2", 200, 5)] {
        sqlx::query(
            "INSERT INTO inbox (consumer, event_id, topic, kafka_partition, kafka_offset, processed_at) \
             SELECT $1, gen_random_uuid(), 't', 0, g, now() - make_interval(hours => $2) FROM generate_series(1, $3) g",
        )
        .bind(consumer)
        .bind(age_hours)
        .bind(n)
        .execute(&db.pool)
        .await
        .expect("rows");
    }
    let removed = prune(&db.pool, &inbox_rule(Duration::from_secs(168 * 3600)))
        .await
        .expect("prune");
    assert_eq!(removed, 2505);
    let left: Vec<(String, i64)> =
        sqlx::query_as("SELECT consumer, count(*) FROM inbox GROUP BY consumer ORDER BY consumer")
            .fetch_all(&db.pool)
            .await
            .expect("q");
    assert_eq!(left, vec![("c1".to_string(), 3)]);
    db.drop_db().await;
}

/// Applies like [`RecordEffects`], as scripted: the message with sequence number `hold` never finishes
/// (it hangs before its transaction, like a partner that never answers, so a crashed instance's task
/// holds no lock); every other one takes `slow` after saying it is in hand.
struct Scripted {
    hold: Option<u32>,
    slow: Duration,
    in_hand: std::sync::Arc<tokio::sync::Notify>,
}

impl Scripted {
    fn slow(slow: Duration, in_hand: std::sync::Arc<tokio::sync::Notify>) -> Self {
        Scripted {
            hold: None,
            slow,
            in_hand,
        }
    }

    fn holding(seq: u32) -> Self {
        Scripted {
            hold: Some(seq),
            slow: Duration::ZERO,
            in_hand: std::sync::Arc::default(),
        }
    }
}

impl switchyard_runtime::Handler for Scripted {
    type Prepared = ();

    async fn prepare(&self, msg: &switchyard_runtime::Incoming) -> Result<(), switchyard_runtime::HandlerError> {
        if Some(seq_of(&msg.event)) == self.hold {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        conn: &mut sqlx::PgConnection,
        msg: &switchyard_runtime::Incoming,
        (): (),
    ) -> Result<(), switchyard_runtime::HandlerError> {
        self.in_hand.notify_one();
        tokio::time::sleep(self.slow).await;
        RecordEffects.handle(conn, msg, ()).await
    }
}

/// SIGTERM's drain (the shutdown signal) while a message is in hand: that message is finished and
/// committed, its offset is committed on the way out, and the next instance of the group starts
/// after it: nothing redelivered, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_message_in_hand_and_commits_its_offset() {
    let stack = Stack::get();
    let db = stack.fresh_db("drain").await;
    let topic = stack.fresh_topic("drain", 1).await;
    let codec = stack.codec_for(&topic).await;
    create_effects_table(&db.pool).await;
    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "drain-test").expect("producer");
    for seq in 1..=3 {
        let frame = codec
            .encode(&topic, &sample_event("t", "flow-drain", seq))
            .await
            .expect("encode");
        produce(&producer, &topic, "flow-drain", &frame).await;
    }
    let in_hand = std::sync::Arc::new(tokio::sync::Notify::new());
    let shutdown = switchyard_runtime::Shutdown::new();
    let slow = switchyard_runtime::Consumer {
        name: format!("consumer-{topic}"),
        topics: vec![topic.clone()],
        bootstrap: stack.kafka.clone(),
        codec: codec.clone(),
        pool: db.pool.clone(),
        metrics: Metrics::new("drain-1"),
        producer: producer.clone(),
        handler: Scripted::slow(Duration::from_millis(1500), in_hand.clone()),
        wake: Default::default(),
        instance_id: None,
        concurrency: switchyard_runtime::inbox::Concurrency {
            max_in_flight: 32,
            per_partition: 16,
            max_batch: 16,
            max_parked: 0,
        },
    };
    let run = tokio::spawn(slow.run(shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(30), in_hand.notified())
        .await
        .expect("the first message reached the handler");
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("drained within the deadline")
        .expect("join")
        .expect("a clean stop");
    let seqs: Vec<i32> = sqlx::query_scalar("SELECT seq FROM effects ORDER BY seq")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(seqs, [1], "the message in hand was finished, no other was started");

    // The next instance of the group: the two others, and not the first again.
    let expect = Expect {
        effects: 3,
        duplicates: 0,
        ..Expect::default()
    };
    let Consumed {
        applied: all,
        skipped: none_again,
        metrics,
        ..
    } = consume(&stack, &db, &topic, codec, "drain-2", expect).await;
    assert!(all, "the two messages not yet applied were delivered");
    assert!(none_again, "the finished message was not redelivered: {metrics}");
    assert_eq!(applied_times(&db.pool).await, [1, 1, 1]);
    db.drop_db().await;
}

/// Drops the field `field` from every record named `record` in a schema's JSON.
fn without_field(schema: &mut serde_json::Value, record: &str, field: &str) {
    match schema {
        serde_json::Value::Object(m) => {
            if m.get("type").and_then(|t| t.as_str()) == Some("record")
                && m.get("name").and_then(|n| n.as_str()) == Some(record)
                && let Some(serde_json::Value::Array(fields)) = m.get_mut("fields")
            {
                fields.retain(|f| f["name"] != field);
            }
            m.values_mut().for_each(|v| without_field(v, record, field));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| without_field(v, record, field)),
        _ => {}
    }
}

/// A producer still on an older version of a topic's schema (before the person's `phone` was
/// added, with its default): today's consumer reads its messages, applies them, and sees the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_written_with_an_older_schema_version_is_read_by_new_code() {
    let stack = Stack::get();
    let db = stack.fresh_db("older").await;
    let topic = stack.fresh_topic("older", 1).await;
    let codec = stack.codec_for(&topic).await;
    create_effects_table(&db.pool).await;
    let current = &codec.catalog().get(MODEL_TOPIC).expect("model").text;
    let mut older: serde_json::Value = serde_json::from_str(current).expect("schema json");
    without_field(&mut older, "Person", "phone");
    let older_text = older.to_string();
    assert_ne!(&older_text, current, "the older version really lacks the field");
    let writer = Schema::parse_str(&older_text).expect("older schema");
    let id = stack
        .registry()
        .register(&format!("{topic}-older-producer-value"), &older_text)
        .await
        .expect("register the older version");

    // The older producer's event: no phone at all.
    let event = sample_event("t", "flow-older", 1);
    let mut value = event.value.clone();
    if let Value::Record(fields) = &mut value
        && let Some((_, Value::Record(person))) = fields.iter_mut().find(|(n, _)| n == "person")
    {
        person.retain(|(n, _)| n != "phone");
    }
    let value = Value::Union(0, Box::new(value))
        .resolve(&writer)
        .expect("an older event");
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&writer)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .expect("older datum");
    let mut frame = vec![0u8];
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&datum);

    let (_, decoded) = codec
        .decode(&topic, Some(&frame))
        .await
        .expect("new code reads the older message");
    assert_eq!(decoded.envelope, event.envelope);
    let person = field(&decoded.value, "person");
    assert_eq!(
        field(person, "phone"),
        &Value::Union(0, Box::new(Value::Null)),
        "the default"
    );
    assert_eq!(field(person, "given_name"), &Value::String("Ada".into()));

    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "older-test").expect("producer");
    produce(&producer, &topic, "flow-older", &frame).await;
    let (stop, handle) = spawn_consumer(&stack, &db, &topic, codec, Metrics::new("older"));
    let applied = eventually(Duration::from_secs(30), || async { effects_count(&db.pool).await == 1 }).await;
    stop.trigger();
    handle.await.expect("join").expect("consumer");
    assert!(applied, "the consumer applied it (not dead-lettered)");
    db.drop_db().await;
}

/// The committed offset of `group` on partition 0 of `topic` (None: nothing committed).
fn committed(stack: &Stack, group: &str, topic: &str) -> Option<i64> {
    use rdkafka::consumer::Consumer as _;
    let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka)
        .set("group.id", group)
        .create()
        .expect("offset reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    match got.find_partition(topic, 0).map(|p| p.offset()) {
        Some(rdkafka::Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

/// A fresh topic holding three flows' messages, A (seq 1), B and C, in one partition, and a database
/// with the effects table: the setting of the tests where A hangs.
struct ThreeFlows {
    stack: Stack,
    db: TestDb,
    topic: String,
    codec: switchyard_runtime::Codec,
    producer: rdkafka::producer::FutureProducer,
}

impl ThreeFlows {
    async fn new(label: &str) -> ThreeFlows {
        let stack = Stack::get();
        let db = stack.fresh_db(label).await;
        let topic = stack.fresh_topic(label, 1).await;
        let codec = stack.codec_for(&topic).await;
        create_effects_table(&db.pool).await;
        let producer = switchyard_runtime::kafka::producer(&stack.kafka, &format!("{label}-test")).expect("producer");
        for (seq, key) in [(1, "flow-a"), (2, "flow-b"), (3, "flow-c")] {
            let frame = codec
                .encode(&topic, &sample_event("t", key, seq))
                .await
                .expect("encode");
            produce(&producer, &topic, key, &frame).await;
        }
        ThreeFlows {
            stack,
            db,
            topic,
            codec,
            producer,
        }
    }

    /// A consumer of the topic in the group `consumer-<topic>` applying `handler`.
    fn consumer(
        &self,
        metrics: Metrics,
        handler: Scripted,
        max_batch: usize,
    ) -> switchyard_runtime::Consumer<Scripted> {
        switchyard_runtime::Consumer {
            name: format!("consumer-{}", self.topic),
            topics: vec![self.topic.clone()],
            bootstrap: self.stack.kafka.clone(),
            codec: self.codec.clone(),
            pool: self.db.pool.clone(),
            metrics,
            producer: self.producer.clone(),
            handler,
            wake: Default::default(),
            instance_id: None,
            concurrency: switchyard_runtime::inbox::Concurrency {
                max_in_flight: 32,
                per_partition: 16,
                max_batch,
                max_parked: 0,
            },
        }
    }
}

/// Concurrency inside a partition never moves its offset past a message not yet applied: the first
/// message (key A) hangs while the two behind it (keys B and C) are applied; the committed offset stays
/// at A through auto-commits and the crash of the consumer, and the next instance applies A, skipping
/// B and C as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_a_slow_message_behind_faster_ones_loses_nothing() {
    let setting = ThreeFlows::new("lowmark").await;
    let ThreeFlows {
        stack,
        db,
        topic,
        codec,
        ..
    } = &setting;
    let group = format!("consumer-{topic}");
    let held = setting.consumer(Metrics::new("lowmark-1"), Scripted::holding(1), 16);
    let run = tokio::spawn(held.run(switchyard_runtime::Shutdown::new()));
    assert!(
        eventually(Duration::from_secs(30), || async { effects_count(&db.pool).await == 2 }).await,
        "B and C are applied while A hangs"
    );
    // Through two auto-commit intervals, the committed offset never passes A.
    for _ in 0..8 {
        let c = committed(stack, &group, topic);
        assert!(c.is_none_or(|o| o <= 0), "committed past the unfinished message: {c:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    run.abort(); // the crash
    let _ = run.await;
    assert!(committed(stack, &group, topic).is_none_or(|o| o <= 0));

    let expect = Expect {
        effects: 3,
        duplicates: 2,
        ..Expect::default()
    };
    let Consumed {
        applied: all,
        skipped,
        metrics,
        ..
    } = consume(stack, db, topic, codec.clone(), "lowmark-2", expect).await;
    assert!(all, "A was redelivered and applied");
    assert!(skipped, "B and C redelivered and skipped: {metrics}");
    assert_eq!(applied_times(&db.pool).await, [1, 1, 1]);
    setting.db.drop_db().await;
}

/// Consumer lag, as the dashboards and the lag alert read it: a message that hangs keeps its
/// partition's lag up, in messages (counted from the offset stored, so the messages done behind it
/// count too) and in seconds (its age, growing); once it is done the lag is 0 in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_reported_in_messages_and_seconds_and_falls_to_zero_when_done() {
    let setting = ThreeFlows::new("lag").await;
    let db = &setting.db;
    let consumer = |metrics: Metrics, handler: Scripted| setting.consumer(metrics, handler, 1);
    let held_metrics = Metrics::new("lag-1");
    let run =
        tokio::spawn(consumer(held_metrics.clone(), Scripted::holding(1)).run(switchyard_runtime::Shutdown::new()));
    let lag = |m: &Metrics| {
        let text = m.render();
        (
            metric(&text, "switchyard_consumer_lag_messages"),
            metric(&text, "switchyard_consumer_lag_seconds"),
        )
    };
    assert!(
        eventually(Duration::from_secs(30), || async {
            effects_count(&db.pool).await == 2 && lag(&held_metrics).0 == 3.0
        })
        .await,
        "B and C applied, and 3 messages behind the stored offset: {}",
        held_metrics.render()
    );
    let first = lag(&held_metrics).1;
    assert!(
        eventually(Duration::from_secs(30), || async {
            lag(&held_metrics).1 >= first + 4.0
        })
        .await,
        "the hanging message's age grows from {first} s: {}",
        held_metrics.render()
    );
    run.abort();
    let _ = run.await;

    let done_metrics = Metrics::new("lag-2");
    let shutdown = switchyard_runtime::Shutdown::new();
    let run = tokio::spawn(consumer(done_metrics.clone(), Scripted::holding(0)).run(shutdown.clone()));
    assert!(
        eventually(Duration::from_secs(40), || async {
            let text = done_metrics.render();
            effects_count(&db.pool).await == 3
                && text.contains("switchyard_consumer_lag_messages{")
                && lag(&done_metrics) == (0.0, 0.0)
        })
        .await,
        "A applied and nothing left behind: {}",
        done_metrics.render()
    );
    shutdown.trigger();
    let _ = run.await;
    setting.db.drop_db().await;
}
