//! Crash safety: the relay is SIGKILLed between publishing a batch and marking it, again and again,
//! while writers keep committing. Every committed row must reach Kafka, and the consumer's inbox must
//! apply each event exactly once, in per-flow order.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the test failing

use std::{collections::HashSet, process::Stdio, time::Duration};

use switchyard_runtime::{Metrics, Outbox};
use switchyard_tests::*;
use tokio::process::{Child, Command};

fn spawn_relay(db_url: &str, bootstrap: &str, pause_ms: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_probe-relay"))
        .args([
            "--database-url",
            db_url,
            "--bootstrap",
            bootstrap,
            "--service",
            "crash-probe",
        ])
        .args(["--pause-ms", &pause_ms.to_string(), "--batch", "40"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn probe-relay")
}

/// A pseudo-random duration in [lo, hi) ms.
fn jitter(lo: u64, hi: u64) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() as u64) % (hi - lo);
    Duration::from_millis(lo + r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_between_publish_and_mark_loses_nothing_and_applies_once() {
    let stack = Stack::get();
    let src = stack.fresh_db("crash_src").await;
    let dst = stack.fresh_db("crash_dst").await;
    let topic = stack.fresh_topic("crash", 3).await;
    let codec = stack.codec_for(&topic).await;
    create_effects_table(&dst.pool).await;
    let metrics = Metrics::new("crash");
    let (stop_consumer, consumer) = spawn_consumer(&stack, &dst, &topic, codec.clone(), metrics.clone());

    // A steady stream of committed writes: 10 flows, one writer, so per-flow commit order = seq.
    let flows = 10u32;
    let total_txs = 300u32;
    let per_tx = 4u32;
    let writer = {
        let pool = src.pool.clone();
        let outbox = Outbox::new(codec.clone());
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut seqs = vec![0u32; flows as usize];
            for t in 0..total_txs {
                let mut tx = pool.begin().await.expect("tx");
                for i in 0..per_tx {
                    let f = ((t * per_tx + i) % flows) as usize;
                    seqs[f] += 1;
                    let event = sample_event("t", &format!("flow-{f}"), seqs[f]);
                    outbox.enqueue(&mut tx, &topic, &event).await.expect("enqueue");
                }
                tx.commit().await.expect("commit");
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
        })
    };

    // Kill the relay at random moments; its pause after publishing makes most kills land between
    // publish and mark.
    let mut kills = 0;
    while !writer.is_finished() || kills < 6 {
        let mut relay = spawn_relay(&src.url, &stack.kafka, 150);
        tokio::time::sleep(jitter(250, 900)).await;
        relay.start_kill().expect("SIGKILL relay");
        let _ = relay.wait().await;
        kills += 1;
    }
    writer.await.expect("writer");
    let total = i64::from(total_txs * per_tx);

    // A last relay, left alone, drains what is left.
    let mut relay = spawn_relay(&src.url, &stack.kafka, 0);
    let drained = eventually(Duration::from_secs(90), || async { unpublished(&src.pool).await == 0 }).await;
    let applied = eventually(Duration::from_secs(90), || async {
        effects_count(&dst.pool).await == total
    })
    .await;
    relay.start_kill().expect("stop relay");
    let _ = relay.wait().await;
    // Let any in-flight duplicate reach the consumer before stopping it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_consumer.trigger();
    consumer.await.expect("join").expect("consumer");
    assert!(drained, "outbox still has unpublished rows");
    assert!(applied, "applied {} of {total}", effects_count(&dst.pool).await);

    // Every committed event was applied, exactly once.
    let committed: HashSet<uuid::Uuid> = sqlx::query_scalar("SELECT event_id FROM outbox")
        .fetch_all(&src.pool)
        .await
        .expect("outbox ids")
        .into_iter()
        .collect();
    let applied_ids: HashSet<uuid::Uuid> = sqlx::query_scalar("SELECT event_id FROM effects")
        .fetch_all(&dst.pool)
        .await
        .expect("effects ids")
        .into_iter()
        .collect();
    assert_eq!(committed.len() as i64, total);
    assert_eq!(committed, applied_ids, "committed and applied events differ");
    let over_applied: i64 = sqlx::query_scalar("SELECT count(*) FROM effects WHERE applied_times <> 1")
        .fetch_one(&dst.pool)
        .await
        .expect("q");
    assert_eq!(over_applied, 0, "some events were applied more than once");

    // Per-flow order of application follows commit order.
    let rows: Vec<(String, i32)> = sqlx::query_as("SELECT flow_id, seq FROM effects ORDER BY applied_order")
        .fetch_all(&dst.pool)
        .await
        .expect("order");
    let mut last = std::collections::HashMap::new();
    for (flow, seq) in rows {
        let prev = last.insert(flow.clone(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "flow {flow} applied {seq} after {prev}");
    }

    // The kills really happened mid-batch: Kafka holds duplicates that the inbox absorbed.
    let on_kafka = read_topic(
        &stack,
        &topic,
        total as usize,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    let duplicates = on_kafka.len() as i64 - total;
    eprintln!(
        "relay kills: {kills}; committed: {total}; on Kafka: {}; duplicates absorbed: {duplicates}",
        on_kafka.len()
    );
    assert!(
        duplicates > 0,
        "no kill landed between publish and mark; the test proved nothing"
    );
    let text = metrics.render();
    assert!(text.contains("switchyard_inbox_duplicates_total"), "{text}");
    src.drop_db().await;
    dst.drop_db().await;
}
