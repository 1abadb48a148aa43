//! Any Confluent client in any language can read what the mesh produces and produce what it consumes:
//! checked with Python's confluent-kafka (librdkafka + fastavro) against the same Kafka and registry.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the test failing

use std::{path::PathBuf, time::Duration};

use switchyard_runtime::{Metrics, Outbox};
use switchyard_tests::*;
use tokio::process::Command;

fn python() -> PathBuf {
    std::env::var_os("SWITCHYARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/switchyard/pyvenv/bin/python")
        })
}

/// Runs the Python client, killed if it has not finished in two minutes.
async fn run_python(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(python());
    cmd.arg(script()).args(args).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the Python client did not finish within 2 minutes")
        .expect("run python (make test installs its venv)")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/confluent_client.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_confluent_consumer_reads_what_the_outbox_published() {
    let stack = Stack::get();
    let db = stack.fresh_db("interop_read").await;
    let topic = stack.fresh_topic("interop-read", 1).await;
    let codec = stack.codec_for(&topic).await;
    let event = sample_event("tenant-py", "flow-py", 42);
    let mut tx = db.pool.begin().await.expect("tx");
    Outbox::new(codec)
        .enqueue(&mut tx, &topic, &event)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    let relay = stack.spawn_relay(&db, "interop", Metrics::new("interop"));

    let event_id = event.envelope.event_id.to_string();
    let out = run_python(&["read", &stack.kafka, &stack.registry, &topic, &event_id]).await;
    relay.trigger();
    assert!(
        out.status.success(),
        "python reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json from python");
    assert_eq!(decoded["record"], RECORD);
    assert_eq!(decoded["value"]["subject_id"], "flow-py:42");
    assert_eq!(decoded["value"]["envelope"]["tenant_id"], "tenant-py");
    assert_eq!(decoded["value"]["person"]["nationality"], "GB");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_consumer_applies_a_command_a_python_producer_sent() {
    let stack = Stack::get();
    let db = stack.fresh_db("interop_write").await;
    let topic = stack.fresh_topic("interop-write", 1).await;
    let codec = stack.codec_for(&topic).await;
    create_effects_table(&db.pool).await;
    let event_id = uuid::Uuid::new_v4();

    let event_id = event_id.to_string();
    let out = run_python(&[
        "produce",
        &stack.kafka,
        &stack.registry,
        &topic,
        &event_id,
        "tenant-py",
        "flow-from-python",
        "flow-from-python:5",
    ])
    .await;
    assert!(
        out.status.success(),
        "python producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (stop, handle) = spawn_consumer(&stack, &db, &topic, codec, Metrics::new("interop"));
    let applied = eventually(Duration::from_secs(30), || async { effects_count(&db.pool).await == 1 }).await;
    stop.trigger();
    handle.await.expect("join").expect("consumer");
    assert!(applied, "the Python-produced command was not applied");
    let (id, flow, seq): (uuid::Uuid, String, i32) = sqlx::query_as("SELECT event_id, flow_id, seq FROM effects")
        .fetch_one(&db.pool)
        .await
        .expect("row");
    assert_eq!((id.to_string(), flow.as_str(), seq), (event_id, "flow-from-python", 5));
    db.drop_db().await;
}
