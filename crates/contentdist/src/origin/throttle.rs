//! The WAN throttle: origin downloads of one agent share `MaxWorkRate` percent of
//! the configured WAN bandwidth (`WanRateKbps`), whatever the number of jobs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::util::TokenBucket;

/// How far ahead of the rate a burst may run (keeps TCP windows busy). An idle link
/// saves up as much again, so a download that resumes fills the windows at once.
const BURST: Duration = Duration::from_millis(100);

/// The agent's WAN budget: a [`TokenBucket`] running at most 100 ms ahead of the
/// rate and saving up another 100 ms while idle. It also counts the time it held
/// downloads back (the product's "WAN protected" time): wall-clock time, once
/// however many downloads waited at the same moment.
#[derive(Debug)]
pub struct Throttle {
    bucket: TokenBucket,
    /// The end of the latest hold-back booked so far.
    held_until: Option<Instant>,
    /// Microseconds held back, readable without the throttle's lock.
    held_us: std::sync::Arc<AtomicU64>,
}

impl Throttle {
    /// A throttle at `bytes_per_sec` (0 is taken as 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        Throttle {
            bucket: TokenBucket::new(bytes_per_sec, BURST).saving_when_idle(BURST),
            held_until: None,
            held_us: Default::default(),
        }
    }

    /// Book `n` bytes; returns when they may be taken.
    pub fn book(&mut self, n: usize) -> Instant {
        let at = self.bucket.book(n);
        let now = Instant::now();
        if at > now {
            // Only the part not already counted for an earlier booking.
            let from = self.held_until.map_or(now, |h| h.max(now));
            if at > from {
                let us = (at - from).as_micros() as u64;
                self.held_us.fetch_add(us, Ordering::Relaxed);
                self.held_until = Some(at);
            }
        }
        at
    }

    /// The time held back so far, in microseconds, kept up to date as it grows.
    pub fn held_us(&self) -> std::sync::Arc<AtomicU64> {
        std::sync::Arc::clone(&self.held_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_configured_rate() {
        let mut t = Throttle::new(1_000_000);
        let start = Instant::now();
        for _ in 0..100 {
            let at = t.book(100_000);
            tokio::time::sleep_until(at).await;
        }
        // 10 MB at 1 MB/s: 10 s less the 100 ms burst allowance.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(9_800), "{took:?}");
        assert!(took <= Duration::from_millis(10_100), "{took:?}");
        // Held back all along but for the first burst.
        let held = Duration::from_micros(t.held_us().load(Ordering::Relaxed));
        assert!(held >= Duration::from_millis(9_700), "{held:?}");
        assert!(held <= took, "{held:?} > {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn two_downloads_held_back_at_once_count_once() {
        let mut t = Throttle::new(1_000_000);
        let start = Instant::now();
        // Two downloads booking in turn, as two jobs do through the shared lock.
        let (mut a, mut b) = (start, start);
        for _ in 0..50 {
            a = a.max(t.book(100_000));
            b = b.max(t.book(100_000));
            tokio::time::sleep_until(a.min(b)).await;
        }
        tokio::time::sleep_until(a.max(b)).await;
        let took = start.elapsed();
        let held = Duration::from_micros(t.held_us().load(Ordering::Relaxed));
        assert!(
            held <= took,
            "held {held:?} counted more than the {took:?} that passed"
        );
        assert!(
            held >= took - Duration::from_millis(200),
            "{held:?} of {took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn under_the_rate_nothing_is_held_back() {
        let mut t = Throttle::new(1_000_000);
        for _ in 0..10 {
            let at = t.book(10_000);
            tokio::time::sleep_until(at).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(t.held_us().load(Ordering::Relaxed), 0);
    }
}
