//! The payout store's queries against the real PostgreSQL of the stack (a fresh database per test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::PgPool;

/// A payout row in `state_name`, live at `partner`, started `minutes` ago.
async fn payout(pool: &PgPool, id: &str, state_name: &str, partner: &str, minutes: i32) {
    sqlx::query(
        "INSERT INTO payouts (flow_id, tenant_id, payout_id, correlation_id, command, currency, amount_minor, \
         beneficiary_key, state_name, state, created_at) \
         VALUES ($1, 't', $1, 'c', '{}', 'EUR', 100, 'b', $2, \
                 jsonb_build_object('state', $2::text, 'live', jsonb_build_object('partner', $3::text)), \
                 now() - make_interval(mins => $4))",
    )
    .bind(id)
    .bind(state_name)
    .bind(partner)
    .bind(minutes)
    .execute(pool)
    .await
    .unwrap();
}

/// The in-doubt gauges: payouts whose outcome is unknown, counted per state and partner with the
/// age of the oldest; settled and processing payouts are not counted.
#[tokio::test]
async fn unsettled_payouts_are_counted_per_state_and_partner_with_the_oldest_age() {
    let db = switchyard_tests::Stack::get().fresh_db("orch_unsettled").await;
    sqlx::migrate!("./migrations").run(&db.pool).await.unwrap();
    payout(&db.pool, "p1", "in_doubt", "payouts-stripe", 30).await;
    payout(&db.pool, "p2", "in_doubt", "payouts-stripe", 2).await;
    payout(&db.pool, "p3", "in_doubt", "payouts-wise", 5).await;
    payout(&db.pool, "p4", "manual_repair", "payouts-wise", 90).await;
    payout(&db.pool, "p5", "settled", "payouts-stripe", 600).await;
    payout(&db.pool, "p6", "processing", "payouts-wise", 600).await;
    let mut rows = super::store::unsettled(&db.pool).await.unwrap();
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let summary: Vec<(&str, &str, i64, i64)> = rows
        .iter()
        .map(|(s, p, n, age)| (s.as_str(), p.as_str(), *n, (*age / 60.0).round() as i64))
        .collect();
    assert_eq!(
        summary,
        [
            ("in_doubt", "payouts-stripe", 2, 30),
            ("in_doubt", "payouts-wise", 1, 5),
            ("manual_repair", "payouts-wise", 1, 90),
        ]
    );
    db.drop_db().await;
}
