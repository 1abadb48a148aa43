//! Retention against the stack's PostgreSQL: expired rows go in batches, everything else stays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard_runtime::retention::{self, Rule};
use switchyard_tests::Stack;

/// More expired rows than one batch holds all go in one run; rows not yet expired and rows the
/// condition protects stay.
#[tokio::test]
async fn a_rule_removes_every_expired_row_in_batches_and_only_those() {
    let db = Stack::get().fresh_db("retention_rule").await;
    sqlx::query("CREATE TABLE receipts (id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, at TIMESTAMPTZ NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    let expired = 2 * retention::BATCH + 500;
    sqlx::query(
        "INSERT INTO receipts (kind, at) SELECT 'done', now() - interval '3 hours' FROM generate_series(1, $1) \
         UNION ALL SELECT 'done', now() - interval '30 minutes' FROM generate_series(1, 10) \
         UNION ALL SELECT 'held', now() - interval '3 hours' FROM generate_series(1, 5)",
    )
    .bind(expired)
    .execute(&db.pool)
    .await
    .unwrap();
    let rule = Rule {
        name: "receipts",
        table: "receipts",
        expired: "kind = 'done' AND at < now() - make_interval(secs => $1)",
        keep: Duration::from_secs(3600),
    };
    let removed = retention::prune(&db.pool, &rule).await.unwrap();
    assert_eq!(removed, expired as u64);
    let left: Vec<(String, i64)> = sqlx::query_as("SELECT kind, count(*) FROM receipts GROUP BY kind ORDER BY kind")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, vec![("done".into(), 10), ("held".into(), 5)]);
    assert_eq!(
        retention::prune(&db.pool, &rule).await.unwrap(),
        0,
        "a second run finds nothing"
    );
    db.drop_db().await;
}

/// Settled partner calls are forgotten after their period; calls in doubt or waiting for repair
/// never are, however old.
#[tokio::test]
async fn the_effect_ledger_keeps_every_unsettled_call() {
    let db = Stack::get().fresh_db("retention_ledger").await;
    for (key, state, days) in [
        ("old-answered", "answered", 91),
        ("old-refused", "not_executed", 91),
        ("old-doubt", "in_doubt", 400),
        ("old-repair", "manual_repair", 400),
        ("old-intent", "intent", 400),
        ("new-answered", "answered", 89),
    ] {
        sqlx::query(
            "INSERT INTO effect_ledger (idempotency_key, partner, operation, request_event_id, flow_id, state, updated_at) \
             VALUES ($1, 'p', 'op', $2, 'f', $3, now() - make_interval(days => $4))",
        )
        .bind(key)
        .bind(uuid::Uuid::new_v4())
        .bind(state)
        .bind(days)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let removed = retention::run_once(&db.pool, &[retention::effect_ledger_rule()]).await;
    assert_eq!(removed, vec![("effect_ledger", 2)]);
    let left: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM effect_ledger ORDER BY 1")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, ["new-answered", "old-doubt", "old-intent", "old-repair"]);
    db.drop_db().await;
}
