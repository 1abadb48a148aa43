//! The one exponential backoff of the runtime: connecting at start-up, retrying a message, retrying
//! a partner call.

use std::time::Duration;

/// Doubles from `first` up to `max`; each wait adds a random jitter of up to half of it, so
/// instances that failed together do not retry together.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first, max }
    }

    /// The next wait (and doubles the one after it).
    pub fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = base.as_millis() as u64 / 2;
        let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % (half + 1);
        base + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_at_most_half_again_of_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let bases = [100, 200, 400, 500, 500];
        for base in bases {
            let w = b.next_wait().as_millis() as u64;
            assert!((base..=base + base / 2).contains(&w), "{w} for base {base}");
        }
    }
}
