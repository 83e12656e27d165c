//! Keeping one source from costing the server much: a cap on the connections one
//! address holds open, and refusals logged at most once per source per interval.
//!
//! Hostile testing sent 5,000 unauthenticated requests in half a second and got
//! 5,000 WARN lines (1.2 MB of log). Every refusal is still counted
//! ([`super::PeerServerCounters`]); the log gets the first one from a source, then
//! at most one line per interval saying how many were not logged since.
//!
//! # What a source is
//!
//! An IPv4 address, or an IPv6 /64 (one host usually holds a whole /64, so keying
//! on the full address would let it open 2^64 "sources"). IPv4-mapped IPv6
//! addresses count as their IPv4 address.
//!
//! # Bounded state
//!
//! The connection counts hold one entry per source with a connection open, removed
//! when its last connection closes: bounded by the open connections, each of which
//! took a TCP handshake. The log's per-source windows are capped at
//! [`PeerServerLimits::max_logged_sources`]; when full, windows whose interval
//! passed are dropped (with their count of unlogged refusals, which the counters
//! still hold), and sources that still do not fit share one window, logged as
//! "other sources". A flood from many addresses therefore costs a fixed amount of
//! memory and at most two lines per interval beyond the sources already tracked.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::counters::PeerServerCounters;

/// How much one source may hold of a peer-copy server, and how often its refusals
/// are logged. `Default` is what an agent runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerServerLimits {
    /// Connections one source may hold open at once; the next is closed unread
    /// (and counted, and logged under the refusal rate limit) until one of them
    /// ends. 0: no cap. Default 64: a peer holds at most two per job it runs (its
    /// data pool and its long-poll pool) and runs four jobs at once, so 64 leaves
    /// room for several agents behind one address (a NAT, or agents sharing a host
    /// and its loopback address, as `contentdist lab` does).
    pub max_connections_per_source: usize,
    /// At most one refusal line per source per this long. Default one minute.
    pub refusal_log_interval: Duration,
    /// Sources whose refusals are tracked one by one (the rest share one line).
    /// Default 1024.
    pub max_logged_sources: usize,
    /// Responses sending content (file bytes) at once, over all sources
    /// (`MaxServingConnections`); the next request for content is answered 503
    /// "busy" with `Retry-After`, and a FanOut peer asks another holder. `have`
    /// and the manifest are never refused for it (they are small, and they are how
    /// a peer learns of the other holders). 0: no limit. Default 8.
    pub max_serving: usize,
    /// From this many responses sending at once, chunks of stamped files are read
    /// on the async thread from the page cache rather than ahead on the blocking
    /// pool (see `cached`). `None` (the default): the machine's cores.
    pub inline_reads_from: Option<usize>,
}

impl Default for PeerServerLimits {
    fn default() -> Self {
        PeerServerLimits {
            max_connections_per_source: 64,
            refusal_log_interval: Duration::from_secs(60),
            max_logged_sources: 1024,
            max_serving: 8,
            inline_reads_from: None,
        }
    }
}

/// The address a connection counts against: IPv4 as is, IPv6 cut to its /64.
pub(super) fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Whether a refusal gets a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LogVerdict {
    /// Log it; `not_logged` refusals of this source were not, since its last line.
    Source { not_logged: u64 },
    /// Log it as one of the sources not tracked one by one; `not_logged` refusals
    /// of those were not logged since their last line.
    Others { not_logged: u64 },
    /// Count it only.
    Quiet,
}

/// One source's (or the others') last line and what was not logged since.
#[derive(Debug, Default)]
struct Window {
    logged_at: Option<Instant>,
    not_logged: u64,
}

impl Window {
    /// `Some(not_logged)` when a line is due (and the window restarts).
    fn hit(&mut self, now: Instant, interval: Duration) -> Option<u64> {
        match self.logged_at {
            Some(t) if now.saturating_duration_since(t) < interval => {
                self.not_logged += 1;
                None
            }
            _ => {
                self.logged_at = Some(now);
                Some(std::mem::take(&mut self.not_logged))
            }
        }
    }

    fn expired(&self, now: Instant, interval: Duration) -> bool {
        self.logged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= interval)
    }
}

/// The refusal log's windows: one per tracked source, one for the rest.
#[derive(Debug)]
pub(super) struct RefusalLog {
    interval: Duration,
    cap: usize,
    sources: HashMap<IpAddr, Window>,
    others: Window,
    /// When expired windows were last dropped: at most once a second, so a flood of
    /// new sources against a full map does not rescan it on every refusal.
    pruned_at: Option<Instant>,
}

impl RefusalLog {
    pub(super) fn new(interval: Duration, cap: usize) -> RefusalLog {
        RefusalLog {
            interval,
            cap,
            sources: HashMap::new(),
            others: Window::default(),
            pruned_at: None,
        }
    }

    /// One refusal from `source` at `now`: whether to log it.
    pub(super) fn note(&mut self, source: IpAddr, now: Instant) -> LogVerdict {
        let interval = self.interval;
        if let Some(w) = self.sources.get_mut(&source) {
            return match w.hit(now, interval) {
                Some(not_logged) => LogVerdict::Source { not_logged },
                None => LogVerdict::Quiet,
            };
        }
        if self.sources.len() >= self.cap {
            self.prune(now);
        }
        if self.sources.len() < self.cap {
            let mut w = Window::default();
            w.hit(now, interval);
            self.sources.insert(source, w);
            return LogVerdict::Source { not_logged: 0 };
        }
        match self.others.hit(now, interval) {
            Some(not_logged) => LogVerdict::Others { not_logged },
            None => LogVerdict::Quiet,
        }
    }

    fn prune(&mut self, now: Instant) {
        if self
            .pruned_at
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.pruned_at = Some(now);
        let interval = self.interval;
        self.sources.retain(|_, w| !w.expired(now, interval));
    }

    /// Sources tracked one by one now.
    #[cfg(test)]
    pub(super) fn tracked(&self) -> usize {
        self.sources.len()
    }
}

/// Per-source connection counts and the refusal log of one server.
#[derive(Debug)]
pub(super) struct SourceGuard {
    max_connections: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    log: Mutex<RefusalLog>,
    counters: Arc<PeerServerCounters>,
}

/// One admitted connection; its source's count goes down when this is dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    guard: Arc<SourceGuard>,
    source: IpAddr,
}

impl SourceGuard {
    pub(super) fn new(limits: &PeerServerLimits, counters: Arc<PeerServerCounters>) -> Self {
        SourceGuard {
            max_connections: limits.max_connections_per_source,
            open: Mutex::new(HashMap::new()),
            log: Mutex::new(RefusalLog::new(
                limits.refusal_log_interval,
                limits.max_logged_sources,
            )),
            counters,
        }
    }

    /// Admit one more connection from `ip`, or say how many its source holds
    /// already (then the caller refuses it and counts it).
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, usize> {
        let source = source_of(ip);
        let mut open = self.open.lock().expect("connection counts lock");
        let n = open.entry(source).or_insert(0);
        if self.max_connections > 0 && *n >= self.max_connections {
            return Err(*n);
        }
        *n += 1;
        self.counters
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionPermit {
            guard: Arc::clone(self),
            source,
        })
    }

    /// The cap this guard enforces (0: none).
    pub(super) fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// One refusal (request or connection) from `ip`: whether to log it. Counts the
    /// line, or the refusal not logged.
    pub(super) fn note_refusal(&self, ip: IpAddr) -> LogVerdict {
        let verdict = self
            .log
            .lock()
            .expect("refusal log lock")
            .note(source_of(ip), Instant::now());
        let counter = match verdict {
            LogVerdict::Quiet => &self.counters.refusals_not_logged,
            _ => &self.counters.refusal_lines_logged,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        verdict
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.guard.open.lock().expect("connection counts lock");
        if let Some(n) = open.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.source);
            }
        }
        self.guard
            .counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_is_logged_once_per_interval_with_what_was_not_logged_since() {
        let mut log = RefusalLog::new(MINUTE, 16);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(log.note(a, t0), LogVerdict::Source { not_logged: 0 });
        for i in 0..4999 {
            let at = t0 + Duration::from_millis(i / 10);
            assert_eq!(log.note(a, at), LogVerdict::Quiet);
        }
        // Another source has its own window.
        assert_eq!(
            log.note(ip("192.0.2.2"), t0),
            LogVerdict::Source { not_logged: 0 }
        );
        assert_eq!(
            log.note(a, t0 + MINUTE),
            LogVerdict::Source { not_logged: 4999 }
        );
        assert_eq!(log.note(a, t0 + MINUTE), LogVerdict::Quiet);
    }

    #[test]
    fn sources_beyond_the_cap_share_one_window_until_expired_ones_make_room() {
        let mut log = RefusalLog::new(MINUTE, 3);
        let t0 = Instant::now();
        for i in 1..=3 {
            assert!(matches!(
                log.note(ip(&format!("10.0.0.{i}")), t0),
                LogVerdict::Source { .. }
            ));
        }
        // A flood of new addresses: one line for all of them, the map stays at 3.
        assert_eq!(
            log.note(ip("10.0.1.1"), t0),
            LogVerdict::Others { not_logged: 0 }
        );
        for i in 2..=250 {
            assert_eq!(log.note(ip(&format!("10.0.1.{i}")), t0), LogVerdict::Quiet);
        }
        assert_eq!(log.tracked(), 3);
        // A minute on, the old windows expired: a new source is tracked again.
        let later = t0 + MINUTE;
        assert_eq!(
            log.note(ip("10.0.2.1"), later),
            LogVerdict::Source { not_logged: 0 }
        );
        assert_eq!(log.tracked(), 1);
    }

    #[test]
    fn ipv6_sources_are_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:ffff:1:2:3")),
            source_of(ip("2001:db8:1:2::9"))
        );
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn a_source_at_the_cap_is_refused_until_one_of_its_connections_ends() {
        let counters = Arc::new(PeerServerCounters::default());
        let limits = PeerServerLimits {
            max_connections_per_source: 2,
            ..Default::default()
        };
        let guard = Arc::new(SourceGuard::new(&limits, Arc::clone(&counters)));
        let a = ip("192.0.2.1");
        let first = guard.admit(a).unwrap();
        let _second = guard.admit(a).unwrap();
        assert_eq!(guard.admit(a).unwrap_err(), 2);
        let _other = guard.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(counters.snapshot().connections_open, 3);
        drop(first);
        let _third = guard.admit(a).unwrap();
        drop(_other);
        assert!(!guard.open.lock().unwrap().contains_key(&ip("192.0.2.2")));
    }
}
