//! Pacing what an agent serves while it downloads from the origin itself, so that
//! its own WAN download keeps its rate (issue 10: a master sending to 15 peers at
//! LAN speed filled its uplink, its acknowledgements to the origin queued behind
//! that data, and its download took 1.34–1.50× as long).
//!
//! While bytes arrive from the origin, content is served at most
//! `ServePaceFactor` times the rate they arrive at (measured over the last
//! second), never below [`FLOOR`]; when no byte came from the origin for
//! [`IDLE`], serving is not paced at all. Why a multiple of the origin's rate:
//! while the master downloads, the office cannot usefully receive faster than the
//! content arrives, and what matters for the master's download is that its port
//! is never full (then its acknowledgements to the origin do not queue). With
//! FanOut each block leaves the master about once or twice, so the pacing costs
//! the peers nothing; without FanOut, peers fall behind the master while it
//! downloads and catch up at full speed afterwards. The default factor 8 was
//! measured against 4 in the 16-host office (BENCHMARKS.md §8): the master's
//! download kept its rate with either, and an office without FanOut finished
//! sooner with 8.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Never paced below this many bytes per second (a slow origin must not starve
/// the office: 4 MiB/s).
pub const FLOOR: f64 = 4.0 * 1024.0 * 1024.0;

/// The origin is considered idle when no byte came from it for this long.
pub const IDLE: Duration = Duration::from_secs(1);

/// The origin's rate is measured over windows of this length.
const WINDOW: Duration = Duration::from_millis(250);

/// Bursts of this much time at the paced rate go out at once.
const BURST: Duration = Duration::from_millis(100);

/// Shared by an agent's origin downloads (which count into
/// [`ServePacer::origin_bytes`]) and its peer-copy servers (which ask
/// [`ServePacer::delay`] before each chunk they send).
#[derive(Debug)]
pub struct ServePacer {
    /// Bytes received from the origin, by every job of the agent (live).
    pub origin_bytes: AtomicU64,
    factor: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The origin counter and the time at the start of the current window.
    window_start: Instant,
    window_bytes: u64,
    /// Bytes per second over the last full window.
    origin_rate: f64,
    /// The origin counter as last seen, and when it last grew.
    seen: u64,
    last_origin: Option<Instant>,
    /// The token bucket: bytes that may go now, and when it was last filled.
    tokens: f64,
    filled: Instant,
}

impl ServePacer {
    /// A pacer serving at most `factor` times the origin's rate while the origin
    /// sends (`factor` ≥ 1).
    pub fn new(factor: u32) -> ServePacer {
        let now = Instant::now();
        ServePacer {
            origin_bytes: AtomicU64::new(0),
            factor: f64::from(factor.max(1)),
            state: Mutex::new(State {
                window_start: now,
                window_bytes: 0,
                origin_rate: 0.0,
                seen: 0,
                last_origin: None,
                tokens: 0.0,
                filled: now,
            }),
        }
    }

    /// How long to wait before sending `len` bytes (zero when the origin is idle),
    /// as of `now`. The bytes are taken from the bucket at once: callers wait the
    /// returned time and then send.
    pub fn delay(&self, len: usize, now: Instant) -> Duration {
        let origin = self.origin_bytes.load(Ordering::Relaxed);
        let mut s = self.state.lock().expect("pacer lock");
        if origin > s.seen {
            s.seen = origin;
            s.last_origin = Some(now);
        }
        let span = now.saturating_duration_since(s.window_start);
        if span >= WINDOW {
            s.origin_rate = (origin - s.window_bytes) as f64 / span.as_secs_f64();
            s.window_start = now;
            s.window_bytes = origin;
        }
        let active = s
            .last_origin
            .is_some_and(|t| now.saturating_duration_since(t) < IDLE);
        if !active {
            s.tokens = 0.0;
            s.filled = now;
            return Duration::ZERO;
        }
        let rate = (s.origin_rate * self.factor).max(FLOOR);
        let burst = rate * BURST.as_secs_f64();
        let elapsed = now.saturating_duration_since(s.filled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * rate).min(burst);
        s.filled = now;
        s.tokens -= len as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }

    /// Whether serving is paced now (the origin sent within [`IDLE`]).
    pub fn pacing(&self, now: Instant) -> bool {
        let s = self.state.lock().expect("pacer lock");
        s.last_origin
            .is_some_and(|t| now.saturating_duration_since(t) < IDLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// Send `total` bytes in 256 KiB chunks starting at `t`, the origin adding
    /// `origin_rate` bytes per second meanwhile; returns the time it took.
    fn serve(p: &ServePacer, t: &mut Instant, total: usize, origin_rate: f64) -> Duration {
        let start = *t;
        let mut sent = 0;
        while sent < total {
            let d = p.delay(256 * 1024, *t);
            let step = d.max(Duration::from_millis(1));
            p.origin_bytes
                .fetch_add((origin_rate * step.as_secs_f64()) as u64, Ordering::Relaxed);
            *t += step;
            sent += 256 * 1024;
        }
        *t - start
    }

    #[test]
    fn serving_is_free_while_the_origin_is_idle() {
        let p = ServePacer::new(4);
        let mut t = Instant::now();
        let took = serve(&p, &mut t, 256 << 20, 0.0);
        // One millisecond per chunk is the test's own clock step, not a delay.
        assert!(took <= Duration::from_millis(1024), "{took:?}");
        assert!(!p.pacing(t));
    }

    #[test]
    fn while_the_origin_sends_serving_keeps_to_its_rate_times_the_factor() {
        let p = ServePacer::new(4);
        let mut t = Instant::now();
        // The origin sends 12.5 MB/s (100 Mbit/s): serving is held near 50 MB/s.
        let origin = 12.5e6;
        serve(&p, &mut t, 16 << 20, origin); // the measurement settles
        let took = serve(&p, &mut t, 200 << 20, origin).as_secs_f64();
        let rate = (200.0 * MIB) / took;
        assert!(p.pacing(t));
        assert!(
            (0.9 * 4.0 * origin..=1.1 * 4.0 * origin).contains(&rate),
            "{rate}"
        );
    }

    #[test]
    fn a_slow_origin_never_paces_below_the_floor_and_an_idle_one_stops_pacing() {
        let p = ServePacer::new(4);
        let mut t = Instant::now();
        serve(&p, &mut t, 8 << 20, 100e3);
        let took = serve(&p, &mut t, 64 << 20, 100e3).as_secs_f64();
        let rate = (64.0 * MIB) / took;
        assert!((0.9 * FLOOR..=1.1 * FLOOR).contains(&rate), "{rate}");
        // The origin stops: a second after its last byte, serving is free again.
        p.delay(0, t);
        t += IDLE + Duration::from_millis(1);
        assert_eq!(p.delay(256 * 1024, t), Duration::ZERO);
        assert!(!p.pacing(t));
    }
}
