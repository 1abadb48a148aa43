//! The flow engine's shell against the real PostgreSQL of the stack (a fresh database per test): the
//! interleavings that lost parked events and deadlocked, forced in a fixed order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::PgPool;
use switchyard_model::events::common::Person;

use super::{
    state::{Case, State},
    store::{self, Flow},
};

struct Db {
    pool: PgPool,
    inner: switchyard_tests::TestDb,
}

impl Db {
    async fn fresh() -> Db {
        let inner = switchyard_tests::Stack::get().fresh_db("orch_store").await;
        sqlx::migrate!("./migrations").run(&inner.pool).await.unwrap();
        Db {
            pool: inner.pool.clone(),
            inner,
        }
    }

    async fn drop(self) {
        self.inner.drop_db().await;
    }
}

async fn a_flow(pool: &PgPool, flow_id: &str) {
    let flow = Flow {
        flow_id: flow_id.into(),
        tenant_id: "t".into(),
        applicant_id: "a".into(),
        correlation_id: "c".into(),
        person: Person {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            date_of_birth: None,
            nationality: None,
            address: None,
            email: None,
            phone: None,
        },
        region: "UK".into(),
        risk_tier: "LOW".into(),
        segment: None,
        attempt: 1,
        created_at: chrono::Utc::now(),
    };
    let state = State::Kyc {
        case: Case::at("kyc-a"),
        tried: vec!["kyc-a".into()],
        documents: false,
        checks: 0,
        overdue: false,
    };
    let mut conn = pool.acquire().await.unwrap();
    assert!(store::insert(&mut conn, &flow).await.unwrap());
    store::save(&mut conn, &flow.flow_id, &state, 1, &store::Changes::default())
        .await
        .unwrap();
}

/// A webhook for a case not known yet, and the result that makes the case known, in the order that
/// lost the webhook: the event's transaction looks the case up (unknown) before the result's commits,
/// and parks it after the result's drain ran.
#[tokio::test]
async fn an_event_parked_while_its_case_becomes_known_is_never_stranded() {
    let db = Db::fresh().await;
    a_flow(&db.pool, "flow-1").await;
    let event = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            store::lock_case(&mut tx, "kyc-a", "case-1").await.unwrap();
            assert!(
                store::flow_of_reference(&mut tx, "kyc-a", "case-1")
                    .await
                    .unwrap()
                    .is_none()
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
            store::park(&mut tx, uuid::Uuid::new_v4(), "kyc-a", "case-1", "APPROVED", &[])
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut tx = db.pool.begin().await.unwrap();
    store::lock_case(&mut tx, "kyc-a", "case-1").await.unwrap();
    store::remember_reference(&mut tx, "kyc-a", "case-1", "flow-1", false)
        .await
        .unwrap();
    let drained = store::unpark(&mut tx, "kyc-a", "case-1").await.unwrap();
    tx.commit().await.unwrap();
    event.await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_provider_events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        (drained.len(), left),
        (1, 0),
        "the parked event was applied, not stranded"
    );
    db.drop().await;
}

/// A handler holding a flow re-arms its timer while the timer job takes that flow's due timer: with
/// two lock orders this deadlocked (Postgres aborts one of them); with one, both finish.
#[tokio::test]
async fn the_timer_job_and_a_handler_never_deadlock() {
    let db = Db::fresh().await;
    a_flow(&db.pool, "flow-2").await;
    {
        let mut conn = db.pool.acquire().await.unwrap();
        store::set_timer(&mut conn, "flow-2", "kyc", Duration::ZERO)
            .await
            .unwrap();
    }
    let handler = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await?;
            store::load(&mut tx, "flow-2")
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            tokio::time::sleep(Duration::from_millis(400)).await;
            store::set_timer(&mut tx, "flow-2", "kyc", Duration::from_secs(60))
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            tx.commit().await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let timer = async {
        let mut tx = db.pool.begin().await?;
        let taken = crate::timers::ONBOARDING
            .take_due(&mut tx)
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        if taken.is_some() {
            store::load(&mut tx, "flow-2")
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(taken)
    };
    let taken = timer.await;
    let handled = handler.await.unwrap();
    assert!(handled.is_ok(), "handler: {handled:?}");
    assert!(
        matches!(taken, Ok(None)),
        "the timer job skips a flow a handler holds: {taken:?}"
    );
    // The handler's re-armed timer stands.
    let timers: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_timers WHERE flow_id = 'flow-2'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(timers, 1);
    db.drop().await;
}

/// Retention takes a flow decided long ago with everything that belongs to it, and nothing of a flow
/// still running (however old) or decided recently; unclaimed parked events go after their period.
#[tokio::test]
async fn retention_forgets_old_decided_flows_whole_and_nothing_else() {
    let db = Db::fresh().await;
    for flow in ["old-done", "old-running", "new-done"] {
        a_flow(&db.pool, flow).await;
        let mut conn = db.pool.acquire().await.unwrap();
        store::remember_reference(&mut conn, "kyc-a", &format!("case-{flow}"), flow, false)
            .await
            .unwrap();
        store::set_timer(&mut conn, flow, "kyc", Duration::from_secs(60))
            .await
            .unwrap();
        sqlx::query("INSERT INTO flow_history (flow_id, event, detail) VALUES ($1, 'started', '{}')")
            .bind(flow)
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO shadow_results (flow_id, domain, partner, status, detail) VALUES ($1, 'kyc', 'kyc-b', 'APPROVED', '{}')",
        )
        .bind(flow)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "UPDATE onboarding_flows SET created_at = now() - interval '500 days', \
         completed_at = CASE WHEN flow_id = 'old-done' THEN now() - interval '401 days' END \
         WHERE flow_id LIKE 'old-%'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE onboarding_flows SET completed_at = now() - interval '399 days' WHERE flow_id = 'new-done'")
        .execute(&db.pool)
        .await
        .unwrap();
    for (id, days) in [(uuid::Uuid::new_v4(), 31), (uuid::Uuid::new_v4(), 29)] {
        let mut conn = db.pool.acquire().await.unwrap();
        store::park(&mut conn, id, "kyc-a", "stray", "APPROVED", &[])
            .await
            .unwrap();
        sqlx::query(
            "UPDATE parked_provider_events SET parked_at = now() - make_interval(days => $2) WHERE event_id = $1",
        )
        .bind(id)
        .bind(days)
        .execute(&db.pool)
        .await
        .unwrap();
    }

    let removed = switchyard_runtime::retention::run_once(&db.pool, &store::retention_rules()).await;

    let count = |table: &'static str| {
        let pool = db.pool.clone();
        async move {
            let flows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT flow_id FROM {table} ORDER BY flow_id"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            flows
        }
    };
    let kept = vec!["new-done".to_string(), "old-running".to_string()];
    for table in [
        "onboarding_flows",
        "flow_history",
        "shadow_results",
        "provider_refs",
        "flow_timers",
    ] {
        assert_eq!(count(table).await, kept, "{table}: only the old decided flow's rows go");
    }
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM parked_provider_events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(parked, 1, "the 31-day-old stray event went, the 29-day-old one stays");
    assert!(removed.contains(&("onboarding_flows", 1)), "{removed:?}");
    db.drop().await;
}

/// A flow has one timer: arming another replaces it, arming the same one moves its due time.
#[tokio::test]
async fn arming_a_timer_replaces_the_flows_other_timer() {
    let db = Db::fresh().await;
    a_flow(&db.pool, "flow-t").await;
    let mut conn = db.pool.acquire().await.unwrap();
    store::set_timer(&mut conn, "flow-t", "kyc", Duration::from_secs(60))
        .await
        .unwrap();
    store::set_timer(&mut conn, "flow-t", "kyc_documents", Duration::from_secs(600))
        .await
        .unwrap();
    store::set_timer(&mut conn, "flow-t", "kyc_documents", Duration::from_secs(900))
        .await
        .unwrap();
    let timers: Vec<(String, f64)> = sqlx::query_as(
        "SELECT state, extract(epoch FROM due_at - now())::float8 FROM flow_timers WHERE flow_id = 'flow-t'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(timers.len(), 1, "{timers:?}");
    assert_eq!(timers[0].0, "kyc_documents");
    assert!(timers[0].1 > 600.0, "the later arming wins: {timers:?}");
    drop(conn);
    db.drop().await;
}

/// One save writes the state with everything else the message changed: history in order, the
/// decision's reasons and failure class, the failover count, and the timer (cleared here).
#[tokio::test]
async fn a_save_writes_the_history_decision_failovers_and_timer_with_the_state() {
    let db = Db::fresh().await;
    a_flow(&db.pool, "flow-s").await;
    let mut conn = db.pool.acquire().await.unwrap();
    store::set_timer(&mut conn, "flow-s", "kyc", Duration::from_secs(60))
        .await
        .unwrap();
    let mut changes = store::Changes {
        decided: Some((vec!["possible match".into()], Some("manual_repair"))),
        failovers: 2,
        timer: Some(None),
        ..store::Changes::default()
    };
    for event in ["failover", "failover", "manual_review"] {
        changes.note(event, serde_json::json!({}));
    }
    let decided = State::Decided {
        decision: switchyard_model::events::onboarding::OnboardingDecision::ManualReview,
        kyc: Some(Case::at("kyc-a")),
        aml: None,
    };
    store::save(&mut conn, "flow-s", &decided, 3, &changes).await.unwrap();
    let (state, reasons, class, failovers, attempt, completed): (String, Vec<String>, Option<String>, i32, i32, bool) =
        sqlx::query_as(
            "SELECT state, reasons, failure_class, failovers, attempt, completed_at IS NOT NULL \
             FROM onboarding_flows WHERE flow_id = 'flow-s'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        (state.as_str(), reasons, class.as_deref(), failovers, attempt, completed),
        (
            "manual_review",
            vec!["possible match".to_string()],
            Some("manual_repair"),
            2,
            3,
            true
        )
    );
    let history: Vec<String> =
        sqlx::query_scalar("SELECT event FROM flow_history WHERE flow_id = 'flow-s' ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(history, ["failover", "failover", "manual_review"]);
    let timers: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_timers WHERE flow_id = 'flow-s'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(timers, 0, "the timer was cleared");
    drop(conn);
    db.drop().await;
}
