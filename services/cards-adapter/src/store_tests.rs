//! The decision store against the real PostgreSQL of the stack (a fresh database per test).

// Amounts in minor units are written <units>_<cents>.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::inconsistent_digit_grouping)]

use sqlx::PgPool;

use crate::{
    authorize::{Authorization, Card, CardState, Controls, Decision, DeclineReason, Merchant},
    store,
};

async fn db(label: &str) -> switchyard_tests::TestDb {
    let db = switchyard_tests::Stack::get().fresh_db(label).await;
    sqlx::migrate!("./migrations").run(&db.pool).await.unwrap();
    db
}

async fn card(pool: &PgPool, available_minor: i64, daily: Option<i64>) {
    let c = Card {
        token: "card-1".into(),
        state: CardState::Active,
        currency: "EUR".into(),
        controls: Controls {
            daily_minor: daily,
            ..Controls::default()
        },
        available_minor,
    };
    store::put_card(pool, "tenant-cards", &c).await.unwrap();
}

fn purchase(id: &str, amount_minor: i64) -> Authorization {
    Authorization {
        partner: "cards-lithic".into(),
        transaction_id: id.into(),
        card_token: "card-1".into(),
        amount_minor,
        currency: "EUR".into(),
        merchant: Merchant {
            name: "Bakery".into(),
            mcc: "5462".into(),
            country: Some("DE".into()),
        },
    }
}

/// An approval holds the money once; the processor asking again gets the same answer and nothing
/// more is held; a decline holds nothing.
#[tokio::test]
async fn a_purchase_asked_twice_is_decided_and_held_once() {
    let db = db("cards_once").await;
    card(&db.pool, 100_00, None).await;
    let first = store::authorize(&db.pool, &purchase("tx-1", 30_00)).await.unwrap();
    assert_eq!((first.decision, first.replayed), (Decision::Approve, false));
    let again = store::authorize(&db.pool, &purchase("tx-1", 30_00)).await.unwrap();
    assert_eq!((again.decision, again.replayed), (Decision::Approve, true));
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(70_00));
    let too_much = store::authorize(&db.pool, &purchase("tx-2", 80_00)).await.unwrap();
    assert_eq!(too_much.decision, Decision::Decline(DeclineReason::InsufficientFunds));
    let asked_again = store::authorize(&db.pool, &purchase("tx-2", 80_00)).await.unwrap();
    assert_eq!(
        asked_again.decision,
        Decision::Decline(DeclineReason::InsufficientFunds)
    );
    assert!(asked_again.replayed);
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(70_00));
    let mut unknown = purchase("tx-3", 1_00);
    unknown.card_token = "no-such-card".into();
    assert_eq!(
        store::authorize(&db.pool, &unknown).await.unwrap().decision,
        Decision::Decline(DeclineReason::UnknownCard)
    );
    db.drop_db().await;
}

/// Twenty purchases of 30.00 at once against 100.00: exactly three are approved, and the card is
/// never held past its money.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_at_once_never_spend_the_same_money_twice() {
    let db = db("cards_race").await;
    card(&db.pool, 100_00, None).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let pool = db.pool.clone();
            tokio::spawn(async move { store::authorize(&pool, &purchase(&format!("race-{i}"), 30_00)).await })
        })
        .collect();
    let mut approved = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().decision == Decision::Approve {
            approved += 1;
        }
    }
    assert_eq!(approved, 3);
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(10_00));
    db.drop_db().await;
}

/// A reversal gives the hold back and no longer counts against the day; a clearing at another
/// amount settles the difference; neither happens twice.
#[tokio::test]
async fn reversals_and_clearings_settle_holds_once() {
    let db = db("cards_settle").await;
    card(&db.pool, 100_00, Some(50_00)).await;
    assert_eq!(
        store::authorize(&db.pool, &purchase("a", 40_00))
            .await
            .unwrap()
            .decision,
        Decision::Approve
    );
    assert_eq!(
        store::authorize(&db.pool, &purchase("b", 20_00))
            .await
            .unwrap()
            .decision,
        Decision::Decline(DeclineReason::DailyLimit)
    );
    assert!(
        store::reverse(&mut db.pool.acquire().await.unwrap(), "cards-lithic", "a")
            .await
            .unwrap()
    );
    assert!(
        !store::reverse(&mut db.pool.acquire().await.unwrap(), "cards-lithic", "a")
            .await
            .unwrap(),
        "reversed once"
    );
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(100_00));
    assert_eq!(
        store::authorize(&db.pool, &purchase("c", 45_00))
            .await
            .unwrap()
            .decision,
        Decision::Approve,
        "the reversed purchase no longer counts against the day"
    );
    // A tip: the purchase of 45.00 clears at 48.00.
    assert!(
        store::clear(&mut db.pool.acquire().await.unwrap(), "cards-lithic", "c", 48_00)
            .await
            .unwrap()
    );
    assert!(
        !store::clear(&mut db.pool.acquire().await.unwrap(), "cards-lithic", "c", 48_00)
            .await
            .unwrap(),
        "cleared once"
    );
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(52_00));
    assert_eq!(
        store::authorize(&db.pool, &purchase("d", 2_01)).await.unwrap().decision,
        Decision::Decline(DeclineReason::DailyLimit),
        "the cleared amount counts against the day"
    );
    assert!(
        !store::reverse(&mut db.pool.acquire().await.unwrap(), "cards-lithic", "d")
            .await
            .unwrap(),
        "a decline holds nothing"
    );
    db.drop_db().await;
}

/// When our deadline passed and the fallback answered, the record ends up saying what the
/// processor was told, whichever way the rules' own decision went (or whether it committed at all).
#[tokio::test]
async fn the_record_follows_the_fallbacks_answer() {
    let db = db("cards_fallback").await;
    card(&db.pool, 100_00, None).await;
    let settle = |id: &'static str, answered: Decision| {
        let pool = db.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let changed = store::settle_fallback(&mut tx, &purchase(id, 40_00), answered)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            changed
        }
    };
    let declined = Decision::Decline(DeclineReason::Unavailable);
    // The rules never committed: the fallback's decline is recorded, nothing held.
    assert!(settle("fb-1", declined).await);
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(100_00));
    let asked_again = store::authorize(&db.pool, &purchase("fb-1", 40_00)).await.unwrap();
    assert_eq!((asked_again.decision, asked_again.replayed), (declined, true));
    // The rules approved just after the processor was told no: the hold is given back.
    store::authorize(&db.pool, &purchase("fb-2", 40_00)).await.unwrap();
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(60_00));
    assert!(settle("fb-2", declined).await);
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(100_00));
    assert!(
        !store::clear(&mut db.pool.acquire().await.unwrap(), "cards-lithic", "fb-2", 40_00)
            .await
            .unwrap(),
        "nothing held to clear"
    );
    // The fallback approved what the rules declined: the processor approved, so it is held.
    let mut big = purchase("fb-3", 500_00);
    big.amount_minor = 500_00;
    store::authorize(&db.pool, &big).await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    assert!(store::settle_fallback(&mut tx, &big, Decision::Approve).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(-400_00));
    // Settled already: a second settle changes nothing.
    assert!(!settle("fb-1", declined).await);
}

/// An authorization the processor decided without us is recorded once, as it stands.
#[tokio::test]
async fn a_processors_stand_in_decision_is_recorded_once() {
    let db = db("cards_stand_in").await;
    card(&db.pool, 10_00, None).await;
    let mut conn = db.pool.acquire().await.unwrap();
    assert!(
        store::stand_in(&mut conn, &purchase("si-1", 25_00), Decision::Approve)
            .await
            .unwrap()
    );
    assert!(
        !store::stand_in(&mut conn, &purchase("si-1", 25_00), Decision::Approve)
            .await
            .unwrap()
    );
    assert_eq!(
        store::available(&db.pool, "card-1").await.unwrap(),
        Some(-15_00),
        "approved over the money"
    );
    // One we decided ourselves, as the processor reports it, is not recorded again.
    let ours = store::authorize(&db.pool, &purchase("si-2", 5_00)).await.unwrap();
    assert_eq!(ours.decision, Decision::Decline(DeclineReason::InsufficientFunds));
    assert!(
        !store::stand_in(&mut conn, &purchase("si-2", 5_00), ours.decision)
            .await
            .unwrap()
    );
    let declined = Decision::Decline(DeclineReason::CardFrozen);
    assert!(
        store::stand_in(&mut conn, &purchase("si-3", 1_00), declined)
            .await
            .unwrap()
    );
    let replay = store::authorize(&db.pool, &purchase("si-3", 1_00)).await.unwrap();
    assert_eq!((replay.decision, replay.replayed), (declined, true));
}

/// We approved, but died before the answer reached the processor, whose stand-in declined: the
/// processor's word wins and the hold goes back; the other way round, the money is held.
#[tokio::test]
async fn the_processors_final_word_corrects_a_decision_it_never_heard() {
    let db = db("cards_conform").await;
    card(&db.pool, 100_00, None).await;
    store::authorize(&db.pool, &purchase("cf-1", 30_00)).await.unwrap();
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(70_00));
    let mut conn = db.pool.acquire().await.unwrap();
    let declined = Decision::Decline(DeclineReason::Unavailable);
    assert!(
        store::stand_in(&mut conn, &purchase("cf-1", 30_00), declined)
            .await
            .unwrap()
    );
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(100_00));
    let replay = store::authorize(&db.pool, &purchase("cf-1", 30_00)).await.unwrap();
    assert_eq!(replay.decision, declined);
    assert!(
        !store::stand_in(&mut conn, &purchase("cf-1", 30_00), declined)
            .await
            .unwrap()
    );
    // A decline reported in the processor's words (another reason) is the same decision.
    let frozen = Decision::Decline(DeclineReason::CardFrozen);
    assert!(
        !store::stand_in(&mut conn, &purchase("cf-1", 30_00), frozen)
            .await
            .unwrap()
    );
    assert_eq!(
        store::authorize(&db.pool, &purchase("cf-1", 30_00))
            .await
            .unwrap()
            .decision,
        declined,
        "our reason stands"
    );
    // Declined by us (over the money), approved by the processor: held.
    let big = purchase("cf-2", 500_00);
    store::authorize(&db.pool, &big).await.unwrap();
    assert!(store::stand_in(&mut conn, &big, Decision::Approve).await.unwrap());
    assert_eq!(store::available(&db.pool, "card-1").await.unwrap(), Some(-400_00));
}
