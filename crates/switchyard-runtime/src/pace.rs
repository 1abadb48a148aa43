//! A partner's rate limit is the partner's, not an instance's: every instance of an adapter draws its
//! turns from one budget in the adapter's database, so two instances together stay under the limit.
//!
//! The budget is one row per partner (`partner_budget`, an unlogged table: no WAL, emptied if
//! PostgreSQL crashes, which only forgets turns already past) holding the time of the next free
//! turn. An instance reserves a block of turns at once (about 50 ms of the limit, at most 64 turns,
//! at least one) by moving that time forward in one statement, and hands them out locally, one per
//! call, each at its own time: turns are `1 / limit` apart across all instances. A turn not used
//! within one interval of its time is dropped, never used late (so calls never bunch up), which
//! only leaves the partner less than its limit.
//!
//! Without a database (unit tests) or while it cannot be reached, an instance paces its own calls at
//! the full limit (and says so in a warning): the adapter's effect ledger cannot work without the
//! database either, so no effect is sent in that state anyway.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::PgPool;

/// How much of the limit one reservation takes.
const BLOCK_SPAN: Duration = Duration::from_millis(50);
const MAX_BLOCK: u32 = 64;

/// One partner's turns in this instance.
#[derive(Debug)]
struct Turns {
    interval: Duration,
    block: u32,
    /// Reserved turns not yet handed out, in time order.
    reserved: VecDeque<Instant>,
    /// Next turn when this instance paces alone.
    next_local: Instant,
}

/// Per-partner rate limits, shared through `budget` when it is set.
#[derive(Clone, Default)]
pub struct Pacer {
    partners: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Turns>>>>>,
    budget: Option<PgPool>,
}

impl Pacer {
    /// Turns drawn from the `partner_budget` table of `pool`, shared with every instance using it.
    pub fn shared(pool: PgPool) -> Self {
        Pacer {
            partners: Arc::default(),
            budget: Some(pool),
        }
    }

    /// Sets a partner's limit (requests per second; 0 or less: unlimited).
    pub fn set_limit(&self, partner: &str, per_second: f64) {
        let Ok(mut p) = self.partners.lock() else { return };
        if per_second <= 0.0 || !per_second.is_finite() {
            p.remove(partner);
            return;
        }
        let interval = Duration::from_secs_f64(1.0 / per_second);
        let block = (BLOCK_SPAN.as_secs_f64() * per_second)
            .floor()
            .clamp(1.0, f64::from(MAX_BLOCK)) as u32;
        p.insert(
            partner.to_string(),
            Arc::new(tokio::sync::Mutex::new(Turns {
                interval,
                block,
                reserved: VecDeque::new(),
                next_local: Instant::now(),
            })),
        );
    }

    /// The time of this call's turn at `partner` (now or later); None when it has no limit.
    pub async fn turn(&self, partner: &str) -> Option<Instant> {
        let turns = self.partners.lock().ok()?.get(partner)?.clone();
        let mut t = turns.lock().await;
        let now = Instant::now();
        let (interval, block) = (t.interval, t.block);
        while t.reserved.front().is_some_and(|at| *at + interval < now) {
            t.reserved.pop_front();
        }
        if t.reserved.is_empty() {
            let first = match &self.budget {
                Some(pool) => match reserve(pool, partner, interval, block).await {
                    Ok(first) => Some(first),
                    Err(e) => {
                        tracing::warn!(partner, error = %e, "shared rate budget unreachable; pacing this instance alone");
                        None
                    }
                },
                None => None,
            };
            match first {
                Some(first) => t.reserved.extend((0..block).map(|k| first + interval * k)),
                None => {
                    let at = t.next_local.max(now);
                    t.next_local = at + interval;
                    t.reserved.push_back(at);
                }
            }
        }
        t.reserved.pop_front()
    }
}

/// Reserves `block` turns of `partner` from the shared budget; returns the first one's time.
async fn reserve(pool: &PgPool, partner: &str, interval: Duration, block: u32) -> Result<Instant, sqlx::Error> {
    let span = interval.as_secs_f64() * f64::from(block);
    // The first turn is the later of the budget's next free turn and now; the budget moves past the
    // block. Both times are the database's, so instances' clocks never matter.
    let offset: f64 = sqlx::query_scalar(
        "INSERT INTO partner_budget AS b (partner, next_at) VALUES ($1, clock_timestamp() + make_interval(secs => $2)) \
         ON CONFLICT (partner) DO UPDATE SET next_at = greatest(b.next_at, clock_timestamp()) + make_interval(secs => $2) \
         RETURNING extract(epoch FROM (next_at - make_interval(secs => $2) - clock_timestamp()))::float8",
    )
    .bind(partner)
    .bind(span)
    .fetch_one(pool)
    .await?;
    Ok(Instant::now() + Duration::from_secs_f64(offset.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn alone_turns_are_one_interval_apart() {
        let p = Pacer::default();
        p.set_limit("p", 100.0);
        let t0 = p.turn("p").await.expect("limited");
        let t1 = p.turn("p").await.expect("limited");
        let t2 = p.turn("p").await.expect("limited");
        assert!(t1 - t0 >= Duration::from_millis(10) - Duration::from_micros(1));
        assert!(t2 - t1 >= Duration::from_millis(10) - Duration::from_micros(1));
        assert!(p.turn("other").await.is_none(), "no limit, no turn");
        p.set_limit("p", 0.0);
        assert!(p.turn("p").await.is_none(), "a limit set to 0 is lifted");
    }
}
