//! The effect algorithm every adapter uses (`Partners::effect`), driven with scripted vendor calls
//! against a fresh database: what runs, and what never runs again, after a crash, a replay, a doubt
//! the vendor cannot settle, and a refusal.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the test failing

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use switchyard_model::events::common::FailureClass;
use switchyard_runtime::{
    Metrics,
    effects::{Intent, Ledger, Prior},
};
use switchyard_tests::*;
use switchyard_vendors::{
    VendorError,
    adapter::{Partners, Recovery},
};

fn partners(db: &TestDb) -> Partners<()> {
    Partners::<()>::load(None, &Metrics::new("effects"), &db.pool, |_| Ok(Arc::new(()))).expect("partners")
}

fn intent<'a>(key: &'a str) -> Intent<'a> {
    Intent {
        key,
        partner: "kyc-x",
        operation: "verify",
        request_event_id: uuid::Uuid::new_v4(),
        flow_id: "flow-1",
    }
}

async fn state(db: &TestDb, key: &str) -> String {
    sqlx::query_scalar("SELECT state FROM effect_ledger WHERE idempotency_key = $1")
        .bind(key)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// Runs the algorithm once with counted calls; `send` and `recover` answer as scripted.
async fn run(
    p: &Partners<()>,
    ledger: &Ledger,
    key: &str,
    send: impl Fn() -> Result<String, VendorError> + Sync,
    recover: impl Fn() -> Result<Recovery<String>, VendorError> + Sync,
) -> (
    Result<Result<String, switchyard_model::events::common::Failure>, switchyard_runtime::HandlerError>,
    usize,
    usize,
) {
    let (sent, asked) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let r = p
        .effect(
            ledger,
            intent(key),
            |v: &String| Some(v.clone()),
            |_| {
                sent.fetch_add(1, Ordering::SeqCst);
                let r = send();
                Box::pin(async move { r })
            },
            |_| {
                asked.fetch_add(1, Ordering::SeqCst);
                let r = recover();
                Box::pin(async move { r })
            },
        )
        .await;
    (r, sent.load(Ordering::SeqCst), asked.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_crash_mid_call_is_settled_by_asking_and_an_answer_is_never_fetched_twice() {
    let db = Stack::get().fresh_db("effect_crash").await;
    let (p, ledger) = (partners(&db), Ledger::new(db.pool.clone()));
    // An earlier attempt took the intent and died before the answer was recorded.
    assert_eq!(ledger.take(&intent("k1")).await.unwrap(), Prior::Fresh);
    let (r, sent, asked) = run(
        &p,
        &ledger,
        "k1",
        || Ok("second-case".into()),
        || Ok(Recovery::Found("case-1".into())),
    )
    .await;
    assert_eq!(r.unwrap().unwrap(), "case-1", "the case the earlier call opened");
    assert_eq!((sent, asked), (0, 1), "asked, never sent again");
    assert_eq!(state(&db, "k1").await, "answered");
    // Redelivered: the recorded answer, nobody called.
    let (r, sent, asked) = run(&p, &ledger, "k1", || Ok("x".into()), || Ok(Recovery::SendAgain)).await;
    assert_eq!((r.unwrap().unwrap().as_str(), sent, asked), ("case-1", 0, 0));
    db.drop_db().await;
}

/// A doubt the partner cannot settle goes to an operator, whether the partner says there is no way
/// to know or refuses the question itself (the case we recorded is unknown to it): asked once, never
/// re-sent, and a redelivery tries nothing again (no retry loop holding the request and its
/// partition's slot).
#[tokio::test]
async fn a_doubt_the_vendor_cannot_settle_goes_to_manual_repair_and_stays_there() {
    let db = Stack::get().fresh_db("effect_unknowable").await;
    let (p, ledger) = (partners(&db), Ledger::new(db.pool.clone()));
    type Answer = fn() -> Result<Recovery<String>, VendorError>;
    let answers: [(&str, Answer); 2] = [
        ("k2", || Ok(Recovery::Unknowable)),
        ("k4", || Err(VendorError::Permanent("404 resource_not_found".into()))),
    ];
    for (key, recover) in answers {
        let (r, sent, asked) = run(
            &p,
            &ledger,
            key,
            || Err(VendorError::Ambiguous("timed out".into())),
            recover,
        )
        .await;
        let f = r.unwrap().expect_err("no answer");
        assert_eq!(
            (f.failure_class, f.code.as_str()),
            (FailureClass::ManualRepair, "provider_outcome_unknown"),
            "{key}"
        );
        assert_eq!((sent, asked), (1, 1), "{key}: sent once, asked once, never re-sent");
        assert_eq!(state(&db, key).await, "manual_repair");
        let (r, sent, asked) = run(&p, &ledger, key, || Ok("x".into()), || Ok(Recovery::SendAgain)).await;
        assert_eq!(r.unwrap().unwrap_err().code, "provider_outcome_unknown");
        assert_eq!((sent, asked), (0, 0), "{key}: a redelivery does not try again");
    }
    db.drop_db().await;
}

#[tokio::test]
async fn a_refusal_before_any_effect_is_a_failure_that_may_fail_over() {
    let db = Stack::get().fresh_db("effect_refused").await;
    let (p, ledger) = (partners(&db), Ledger::new(db.pool.clone()));
    let (r, sent, asked) = run(
        &p,
        &ledger,
        "k3",
        || Err(VendorError::Transient("503".into())),
        || Ok(Recovery::SendAgain),
    )
    .await;
    let f = r.unwrap().expect_err("refused");
    assert_eq!(f.failure_class, FailureClass::Transient);
    assert_eq!((sent, asked), (3, 0), "retried (nothing happened), never asked about");
    assert_eq!(state(&db, "k3").await, "not_executed");
    db.drop_db().await;
}
