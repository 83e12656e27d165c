//! The WAN throttle: origin downloads of one agent share `MaxWorkRate` percent of
//! the configured WAN bandwidth (`WanRateKbps`), whatever the number of jobs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::util::TokenBucket;

/// How far ahead of the rate a burst may run (keeps TCP windows busy). An idle link
/// saves up as much again, so a download that resumes fills the windows at once.
const BURST: Duration = Duration::from_millis(100);

/// The agent's WAN budget: a [`TokenBucket`] running at most 100 ms ahead of the
/// rate and saving up another 100 ms while idle; or no limit. The rate can change
/// while downloads run (a reload of the settings): the next chunk is paced by it.
/// It also counts the time it held downloads back (the product's "WAN protected"
/// time): wall-clock time, once however many downloads waited at the same moment.
#[derive(Debug)]
pub struct Throttle {
    /// Bytes per second; 0: not limited (checked without the lock).
    rate: AtomicU64,
    state: Mutex<State>,
    /// Microseconds held back so far.
    held_us: AtomicU64,
}

#[derive(Debug)]
struct State {
    bucket: Option<TokenBucket>,
    /// The end of the latest hold-back booked so far.
    held_until: Option<Instant>,
}

impl Throttle {
    /// A throttle at `bytes_per_sec` (`None`: no limit; 0 is taken as 1).
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        let t = Throttle {
            rate: AtomicU64::new(0),
            state: Mutex::new(State {
                bucket: None,
                held_until: None,
            }),
            held_us: AtomicU64::new(0),
        };
        t.set_rate(bytes_per_sec);
        t
    }

    /// Change the rate (`None`: no limit) from the next booking on.
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        let mut s = self.state.lock().expect("throttle lock");
        match bytes_per_sec {
            Some(r) => {
                let r = r.max(1);
                match &mut s.bucket {
                    Some(b) => b.set_rate(r),
                    None => s.bucket = Some(TokenBucket::new(r, BURST).saving_when_idle(BURST)),
                }
                self.rate.store(r, Ordering::Relaxed);
            }
            None => {
                s.bucket = None;
                self.rate.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The rate in force, `None` when not limited.
    pub fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// Book `n` bytes; returns when they may be taken (`None`: at once, no limit).
    pub fn book(&self, n: usize) -> Option<Instant> {
        if self.rate.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut s = self.state.lock().expect("throttle lock");
        let at = s.bucket.as_mut()?.book(n);
        let now = Instant::now();
        if at > now {
            // Only the part not already counted for an earlier booking.
            let from = s.held_until.map_or(now, |h| h.max(now));
            if at > from {
                let us = (at - from).as_micros() as u64;
                self.held_us.fetch_add(us, Ordering::Relaxed);
                s.held_until = Some(at);
            }
        }
        Some(at)
    }

    /// The time held back so far.
    pub fn held_back(&self) -> Duration {
        Duration::from_micros(self.held_us.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_configured_rate() {
        let t = Throttle::new(Some(1_000_000));
        let start = Instant::now();
        for _ in 0..100 {
            let at = t.book(100_000).unwrap();
            tokio::time::sleep_until(at).await;
        }
        // 10 MB at 1 MB/s: 10 s less the 100 ms burst allowance.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(9_800), "{took:?}");
        assert!(took <= Duration::from_millis(10_100), "{took:?}");
        // Held back all along but for the first burst.
        let held = t.held_back();
        assert!(held >= Duration::from_millis(9_700), "{held:?}");
        assert!(held <= took, "{held:?} > {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn two_downloads_held_back_at_once_count_once() {
        let t = Throttle::new(Some(1_000_000));
        let start = Instant::now();
        // Two downloads booking in turn, as two jobs do through the shared lock.
        let (mut a, mut b) = (start, start);
        for _ in 0..50 {
            a = a.max(t.book(100_000).unwrap());
            b = b.max(t.book(100_000).unwrap());
            tokio::time::sleep_until(a.min(b)).await;
        }
        tokio::time::sleep_until(a.max(b)).await;
        let took = start.elapsed();
        let held = t.held_back();
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
        let t = Throttle::new(Some(1_000_000));
        for _ in 0..10 {
            let at = t.book(10_000).unwrap();
            tokio::time::sleep_until(at).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(t.held_back(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_changes_while_downloading_and_can_be_lifted() {
        let t = Throttle::new(None);
        assert_eq!(t.book(1 << 20), None, "no limit: nothing waits");
        t.set_rate(Some(1_000_000));
        let start = Instant::now();
        for _ in 0..20 {
            let at = t.book(100_000).unwrap();
            tokio::time::sleep_until(at).await;
        }
        // 2 MB at 1 MB/s less the burst, then twice as fast.
        assert!(start.elapsed() >= Duration::from_millis(1_800));
        t.set_rate(Some(2_000_000));
        let mid = Instant::now();
        for _ in 0..20 {
            let at = t.book(100_000).unwrap();
            tokio::time::sleep_until(at).await;
        }
        let took = mid.elapsed();
        assert!(took <= Duration::from_millis(1_100), "{took:?}");
        t.set_rate(None);
        assert_eq!((t.book(1 << 30), t.rate()), (None, None));
    }
}
