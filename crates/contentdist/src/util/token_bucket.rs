//! [`TokenBucket`]: pacing bytes to a rate, shared by the origin download throttle and
//! the lab origin's WAN link.
//!
//! Written as pacing rather than as a counter of tokens: each caller books its bytes
//! and gets back the instant it may send them, so a sender sleeps once per chunk
//! instead of polling for tokens, and many senders sharing one bucket (behind a
//! mutex) are served in booking order.

use std::time::Duration;

use tokio::time::Instant;

/// A pacing token bucket over tokio's clock (so a paused test clock works).
///
/// `ahead` is how far ahead of the rate a sender may run: the first `ahead` worth of
/// bytes go at once. `saved_when_idle` is how much an idle link saves up on top of
/// that (0 unless set with [`TokenBucket::saving_when_idle`]). In token terms the
/// bucket holds `ahead + saved_when_idle` worth of bytes and starts with `ahead`.
#[derive(Debug)]
pub struct TokenBucket {
    bytes_per_sec: u64,
    ahead: Duration,
    saved_when_idle: Duration,
    /// When everything booked so far will have been paid for at the rate.
    next: Instant,
}

impl TokenBucket {
    /// A bucket at `bytes_per_sec` (0 is taken as 1) letting a sender run `ahead` of it.
    pub fn new(bytes_per_sec: u64, ahead: Duration) -> Self {
        TokenBucket {
            bytes_per_sec: bytes_per_sec.max(1),
            ahead,
            saved_when_idle: Duration::ZERO,
            next: Instant::now(),
        }
    }

    /// Let an idle link save up `saved` worth of bytes, sent at once when it wakes.
    pub fn saving_when_idle(mut self, saved: Duration) -> Self {
        self.saved_when_idle = saved;
        self
    }

    /// Change the rate (0 is taken as 1); what is booked already stays booked.
    pub fn set_rate(&mut self, bytes_per_sec: u64) {
        self.bytes_per_sec = bytes_per_sec.max(1);
    }

    /// Book `n` bytes; returns when they may be sent (now, or later when the sender
    /// is more than `ahead` in advance of the rate).
    pub fn book(&mut self, n: usize) -> Instant {
        let now = Instant::now();
        // An idle link's account restarts at most `saved_when_idle` in the past.
        let floor = now.checked_sub(self.saved_when_idle).unwrap_or(now);
        self.next = self.next.max(floor);
        self.next += Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
        self.next
            .checked_sub(self.ahead)
            .map_or(now, |at| at.max(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn one_burst_goes_at_once_then_the_rate_holds() {
        let mut b = TokenBucket::new(1000, 50 * MS);
        let start = Instant::now();
        assert_eq!(b.book(50), start);
        // Paid at 150 ms, sendable 50 ms earlier.
        assert_eq!(b.book(100), start + 100 * MS);
        assert_eq!(b.book(1000), start + 1100 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_link_saves_only_what_it_is_allowed() {
        let mut plain = TokenBucket::new(1000, 50 * MS);
        let mut saving = TokenBucket::new(1000, 50 * MS).saving_when_idle(50 * MS);
        tokio::time::advance(Duration::from_secs(10)).await;
        let now = Instant::now();
        // Without savings: one burst (50 bytes), then paced.
        assert_eq!(plain.book(50), now);
        assert_eq!(plain.book(10), now + 10 * MS);
        // With 50 ms saved: 100 bytes at once, then paced.
        assert_eq!(saving.book(100), now);
        assert_eq!(saving.book(10), now + 10 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn many_chunks_take_the_rate_less_the_burst() {
        let mut b = TokenBucket::new(1_000_000, 100 * MS).saving_when_idle(100 * MS);
        let start = Instant::now();
        for _ in 0..100 {
            let at = b.book(100_000);
            tokio::time::sleep_until(at).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(9_800), "{took:?}");
        assert!(took <= Duration::from_millis(10_100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_rate_is_taken_as_one_byte_per_second() {
        let mut b = TokenBucket::new(0, Duration::ZERO);
        let start = Instant::now();
        assert_eq!(b.book(2), start + 2 * Duration::from_secs(1));
    }
}
