//! `yardctl bench card-auth`: the authorization decision as a processor's question meets it, minus
//! the HTTP hop: `cards_adapter::store::authorize` (the card's row locked, usage summed, the decision
//! and its hold committed) against a scratch PostgreSQL database, several questions at once over many
//! cards. Prints decisions/s and the latency percentiles of one decision; asserts nothing.

use std::{process::ExitCode, time::Instant};

use anyhow::Context;
use cards_adapter::{
    authorize::{Authorization, Card, CardState, Controls, Decision, Merchant},
    store,
};
use sqlx::{Connection, PgConnection, postgres::PgPoolOptions};

pub async fn bench(admin: Option<&str>, auths: usize, cards: usize, concurrency: usize) -> anyhow::Result<ExitCode> {
    let admin = admin.context("--postgres-admin (or POSTGRES_ADMIN_URL) is required")?;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let db_name = format!("bench_cards_{id}");
    let mut admin_conn = PgConnection::connect(admin).await?;
    // The name is made here from hex digits only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&mut admin_conn)
        .await?;
    let db_url = format!("{}/{db_name}", admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin));
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(concurrency.max(1) + 2).unwrap_or(16))
        .connect(&db_url)
        .await?;
    switchyard_runtime::db::migrate(&pool).await?;
    sqlx::migrate!("../../services/cards-adapter/migrations")
        .run(&pool)
        .await?;
    let cards = cards.max(1);
    for c in 0..cards {
        let card = Card {
            token: format!("card-{c}"),
            state: CardState::Active,
            currency: "EUR".into(),
            controls: Controls {
                per_transaction_minor: Some(50_000),
                daily_minor: Some(10_000_000),
                monthly_minor: Some(100_000_000),
                allowed_mccs: vec![],
                blocked_mccs: vec!["7995".into()],
                allowed_countries: vec![],
            },
            available_minor: 1_000_000_000,
        };
        store::put_card(&pool, "tenant-bench", &card).await?;
    }
    println!("bench card-auth: {auths} authorizations over {cards} cards, {concurrency} at once, database {db_name}");
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (pool, next) = (pool.clone(), next.clone());
            tokio::spawn(async move {
                let mut took = Vec::new();
                let mut approved = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= auths {
                        break;
                    }
                    let auth = Authorization {
                        partner: "cards-bench".into(),
                        transaction_id: format!("tx-{i}"),
                        card_token: format!("card-{}", i % cards),
                        amount_minor: 1_000 + (i as i64 % 7_000),
                        currency: "EUR".into(),
                        merchant: Merchant {
                            name: "Shop".into(),
                            mcc: if i % 50 == 0 { "7995" } else { "5411" }.into(),
                            country: Some("DE".into()),
                        },
                    };
                    let t = Instant::now();
                    let d = store::authorize(&pool, &auth).await?;
                    took.push(t.elapsed().as_secs_f64() * 1000.0);
                    if d.decision == Decision::Approve {
                        approved += 1;
                    }
                }
                Ok::<_, sqlx::Error>((took, approved))
            })
        })
        .collect();
    let (mut took, mut approved) = (Vec::new(), 0);
    for w in workers {
        let (t, a) = w.await??;
        took.extend(t);
        approved += a;
    }
    let wall = started.elapsed().as_secs_f64();
    took.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        took.get(((took.len() as f64 * p) as usize).min(took.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "  {:.0} decisions/s; one decision p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {approved} approved, {} declined",
        took.len() as f64 / wall,
        pct(0.50),
        pct(0.95),
        pct(0.99),
        took.last().copied().unwrap_or(0.0),
        took.len() - approved
    );
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db_name}")))
        .execute(&mut admin_conn)
        .await?;
    Ok(ExitCode::SUCCESS)
}
