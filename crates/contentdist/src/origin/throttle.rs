//! The WAN throttle: origin downloads of one agent share `MaxWorkRate` percent of
//! the configured WAN bandwidth (`WanRateKbps`), whatever the number of jobs.

use std::time::Duration;

use tokio::time::Instant;

/// How far ahead of the rate a burst may run (keeps TCP windows busy).
const BURST: Duration = Duration::from_millis(100);

/// A pacing token bucket: each byte books its slot in time.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    next: Instant,
}

impl Throttle {
    /// A throttle at `bytes_per_sec` (must be > 0).
    pub fn new(bytes_per_sec: u64) -> Self {
        Throttle {
            bytes_per_sec: bytes_per_sec.max(1),
            next: Instant::now(),
        }
    }

    /// Book `n` bytes; returns when they may be taken.
    pub fn book(&mut self, n: usize) -> Instant {
        let now = Instant::now();
        if self.next + BURST < now {
            self.next = now - BURST;
        }
        self.next += Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
        if self.next > now + BURST {
            self.next - BURST
        } else {
            now
        }
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
