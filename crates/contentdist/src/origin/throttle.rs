//! The WAN throttle: origin downloads of one agent share `MaxWorkRate` percent of
//! the configured WAN bandwidth (`WanRateKbps`), whatever the number of jobs.

use std::time::Duration;

use tokio::time::Instant;

use crate::util::TokenBucket;

/// How far ahead of the rate a burst may run (keeps TCP windows busy). An idle link
/// saves up as much again, so a download that resumes fills the windows at once.
const BURST: Duration = Duration::from_millis(100);

/// The agent's WAN budget: a [`TokenBucket`] running at most 100 ms ahead of the
/// rate and saving up another 100 ms while idle.
#[derive(Debug)]
pub struct Throttle(TokenBucket);

impl Throttle {
    /// A throttle at `bytes_per_sec` (0 is taken as 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        Throttle(TokenBucket::new(bytes_per_sec, BURST).saving_when_idle(BURST))
    }

    /// Book `n` bytes; returns when they may be taken.
    pub fn book(&mut self, n: usize) -> Instant {
        self.0.book(n)
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
    }
}
