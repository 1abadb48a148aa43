//! Service binaries boot on the real stack, serve health and metrics, refuse bad configuration with a
//! clear message, and stop cleanly on SIGTERM.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the test failing

use std::{process::Stdio, time::Duration};

use switchyard_tests::*;
use tokio::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_boots_serves_health_and_metrics_and_stops_on_sigterm() {
    let stack = Stack::get();
    let db = stack.fresh_db("svc").await;
    let port = free_port();
    // A service with no consumer group of its own here, so it cannot take partitions from the running
    // mesh's services.
    let mut child = Command::new(workspace_bin("reconciliation"))
        .env("SWITCHYARD_DATABASE__URL", &db.url)
        .env("SWITCHYARD_KAFKA__BOOTSTRAP_SERVERS", &stack.kafka)
        .env("SWITCHYARD_REGISTRY__URL", &stack.registry)
        .env("SWITCHYARD_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHYARD_TELEMETRY__LOG_FILTER", "warn")
        .env_remove("SWITCHYARD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn reconciliation (build the workspace binaries first)");
    let base = format!("http://127.0.0.1:{port}");
    let ready = eventually(Duration::from_secs(60), || async {
        matches!(reqwest::get(format!("{base}/readyz")).await, Ok(r) if r.status() == 200)
    })
    .await;
    assert!(ready, "the service never became ready");
    let health = reqwest::get(format!("{base}/healthz")).await.expect("healthz");
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("switchyard_outbox_relay_active{service=\"reconciliation\"} 1"),
        "{metrics}"
    );
    // The runtime tables exist in its database.
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('outbox', 'inbox')")
            .fetch_one(&db.pool)
            .await
            .expect("q");
    assert_eq!(tables, 2);

    let pid = child.id().expect("pid");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(status.success());
    let exited = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    let status = exited.expect("did not stop within 15 s of SIGTERM").expect("wait");
    assert!(status.success(), "exit status {status}");
    db.drop_db().await;
}

#[tokio::test]
async fn bad_configuration_is_refused_with_the_field_named() {
    for (key, value, field) in [
        ("SWITCHYARD_DATABASE__URL", "", "database.url"),
        ("SWITCHYARD_OUTBOX__BATCH_SIZE", "0", "outbox.batch_size"),
        ("SWITCHYARD_HTTP__LISTEN", "everywhere", "http.listen"),
    ] {
        let out = Command::new(workspace_bin("kyc-adapter"))
            .env("SWITCHYARD_DATABASE__URL", "postgres://u:p@127.0.0.1:1/x")
            .env(key, value)
            .output()
            .await
            .expect("run kyc-adapter");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {stderr}");
        assert!(stderr.contains(field), "{key}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_refuses_a_missing_or_invalid_routing_policy() {
    let stack = Stack::get();
    let db = stack.fresh_db("routing").await;
    let bad = std::env::temp_dir().join(format!("routing-{}.toml", short_id()));
    std::fs::write(
        &bad,
        "[[partners]]\nid = \"kyc-a\"\ndomain = \"kyc\"\n[[routes]]\ndomain = \"kyc\"\nprimary = \"kyc-a\"\nsecondary = \"kyc-ghost\"\n",
    )
    .expect("write");
    for (file, expected) in [
        (std::path::PathBuf::from("/nonexistent/routing.toml"), "No such file"),
        (bad, "kyc-ghost"),
    ] {
        let out = Command::new(workspace_bin("orchestrator"))
            .env("SWITCHYARD_DATABASE__URL", &db.url)
            .env("SWITCHYARD_KAFKA__BOOTSTRAP_SERVERS", &stack.kafka)
            .env("SWITCHYARD_REGISTRY__URL", &stack.registry)
            .env("SWITCHYARD_ROUTING_FILE", &file)
            .env_remove("SWITCHYARD_CONFIG")
            .output()
            .await
            .expect("run orchestrator");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("routing_file") && stderr.contains(expected), "{stderr}");
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_refuses_partner_configuration_it_cannot_honour() {
    let stack = Stack::get();
    let db = stack.fresh_db("partners").await;
    let dir = std::env::temp_dir().join(format!("adapter-{}", short_id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let partner = "[[partners]]\nid = \"kyc-x\"\nvendor = \"onfido\"\nbase_url = \"http://127.0.0.1:9\"\n\
                   secrets = { api_token = \"env:SWITCHYARD_TEST_MISSING_TOKEN\", webhook_secret = \"env:SWITCHYARD_TEST_MISSING_SECRET\" }\n";
    let cases = [
        (partner.to_string(), "partners.kyc-x.secrets.api_token"),
        (partner.replace("onfido", "telepathy"), "no KYC vendor named"),
        (
            partner.replace("env:SWITCHYARD_TEST_MISSING_TOKEN", "hunter2"),
            "never a literal",
        ),
        (
            format!("catalog_file = \"missing-catalog.toml\"\n{partner}"),
            "catalog_file",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.join(format!("kyc-{i}.toml"));
        std::fs::write(&file, text).expect("write");
        // Kafka points nowhere: should a case wrongly start, it cannot join the running mesh's
        // consumer group; partner configuration is checked before any consumer starts.
        let mut cmd = Command::new(workspace_bin("kyc-adapter"));
        cmd.env("SWITCHYARD_CONFIG", &file)
            .env("SWITCHYARD_DATABASE__URL", &db.url)
            .env("SWITCHYARD_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .env("SWITCHYARD_KAFKA__ENSURE_TOPICS", "false")
            .env("SWITCHYARD_REGISTRY__URL", &stack.registry)
            .kill_on_drop(true);
        if *expected == "catalog_file" || *expected == "no KYC vendor named" {
            cmd.env("SWITCHYARD_TEST_MISSING_TOKEN", "t")
                .env("SWITCHYARD_TEST_MISSING_SECRET", "s");
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("case {i}: the adapter started instead of refusing its configuration"))
            .expect("run kyc-adapter");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stderr}");
        assert!(stderr.contains(expected), "case {i}: expected {expected:?} in {stderr}");
        assert!(!stderr.contains("hunter2"), "a secret must never be printed: {stderr}");
    }
    db.drop_db().await;
}
