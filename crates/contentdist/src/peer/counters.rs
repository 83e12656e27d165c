//! What one peer-copy server counts: traffic, refusals by reason, connections turned
//! away, and how much of that reached the log. One struct per server instance (many
//! agents live in one test process), read with [`PeerServerCounters::snapshot`].
//!
//! Refusals are counted exactly, every one; the log only samples them (see
//! `limits`), so these counters are where a flood shows its size.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::auth::Refusal;

/// Counters of one server instance, updated as requests and connections arrive.
#[derive(Debug, Default)]
pub struct PeerServerCounters {
    /// Body bytes sent (file contents, manifests and `have` answers).
    pub bytes_served: AtomicU64,
    /// Requests received, refused ones included.
    pub requests: AtomicU64,
    /// Requests refused for their credentials (403), whatever the reason; the sum
    /// of the three `refused_*` counters.
    pub requests_refused: AtomicU64,
    /// Refused: no `Authorization` header, or one that is not HTTP Basic.
    pub refused_no_credentials: AtomicU64,
    /// Refused: an unknown user, or a known one with the wrong password.
    pub refused_bad_credentials: AtomicU64,
    /// Refused: a machine account while `AuthenticatedUsers` does not allow them, or
    /// no machine key to check one with.
    pub refused_account_not_allowed: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections closed unread because their source address already had
    /// [`super::PeerServerLimits::max_connections_per_source`] open.
    pub connections_refused_per_source: AtomicU64,
    /// WARN lines written about refused requests and connections.
    pub refusal_lines_logged: AtomicU64,
    /// Refusals (requests and connections) not logged because their source had a
    /// line in the last interval; counted here and in the next line for the source.
    pub refusals_not_logged: AtomicU64,
    /// Cached blocks found changed on disk as they were about to be sent.
    pub blocks_changed: AtomicU64,
    /// Ranges answered 409 because a block was found changed before the head went
    /// (the client asks elsewhere or later, as for any block not held).
    pub changed_ranges_refused: AtomicU64,
    /// Responses ended early after their head: a block was found changed or
    /// unreadable mid-body, or the server stopped.
    pub responses_aborted: AtomicU64,
    /// HTTPS connections whose TLS handshake failed or timed out (a client that
    /// does not trust the certificate, speaks plain HTTP to the HTTPS port, or an
    /// old TLS version): nothing was served on them.
    pub tls_handshakes_failed: AtomicU64,
    /// Requests for content answered 503 "busy": `MaxServingConnections`
    /// responses were sending already.
    pub busy_refusals: AtomicU64,
    /// Responses sending content now.
    pub serving_now: AtomicU64,
    /// Content body bytes sent (file bytes only), by protocol: live, for the
    /// metrics.
    pub content_served_http: AtomicU64,
    pub content_served_https: AtomicU64,
    /// Chunks of content read from the page cache on the server's own thread
    /// (stamped files: no hand-off, no hashing).
    pub reads_cached: AtomicU64,
    /// Chunks read on the blocking pool (not cached, not stamped: each block
    /// hashed unless its file's stamp matched).
    pub reads_pooled: AtomicU64,
}

/// The counters of a [`PeerServerCounters`] at one moment, as plain numbers (for
/// `contentdist status`; the field names are its JSON keys).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PeerServerStats {
    /// See [`PeerServerCounters::bytes_served`].
    pub bytes_served: u64,
    /// See [`PeerServerCounters::requests`].
    pub requests: u64,
    /// See [`PeerServerCounters::requests_refused`].
    pub requests_refused: u64,
    /// See [`PeerServerCounters::refused_no_credentials`].
    pub refused_no_credentials: u64,
    /// See [`PeerServerCounters::refused_bad_credentials`].
    pub refused_bad_credentials: u64,
    /// See [`PeerServerCounters::refused_account_not_allowed`].
    pub refused_account_not_allowed: u64,
    /// See [`PeerServerCounters::connections_open`].
    pub connections_open: u64,
    /// See [`PeerServerCounters::connections_refused_per_source`].
    pub connections_refused_per_source: u64,
    /// See [`PeerServerCounters::refusal_lines_logged`].
    pub refusal_lines_logged: u64,
    /// See [`PeerServerCounters::refusals_not_logged`].
    pub refusals_not_logged: u64,
    /// See [`PeerServerCounters::blocks_changed`].
    pub blocks_changed: u64,
    /// See [`PeerServerCounters::changed_ranges_refused`].
    pub changed_ranges_refused: u64,
    /// See [`PeerServerCounters::responses_aborted`].
    pub responses_aborted: u64,
    /// See [`PeerServerCounters::tls_handshakes_failed`].
    #[serde(default)]
    pub tls_handshakes_failed: u64,
    /// See [`PeerServerCounters::busy_refusals`].
    #[serde(default)]
    pub busy_refusals: u64,
    /// See [`PeerServerCounters::serving_now`].
    #[serde(default)]
    pub serving_now: u64,
    /// See [`PeerServerCounters::reads_cached`].
    #[serde(default)]
    pub reads_cached: u64,
    /// See [`PeerServerCounters::reads_pooled`].
    #[serde(default)]
    pub reads_pooled: u64,
}

impl PeerServerCounters {
    /// Every counter now (each read on its own: a snapshot taken under load may be
    /// off by the requests in flight).
    pub fn snapshot(&self) -> PeerServerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PeerServerStats {
            bytes_served: get(&self.bytes_served),
            requests: get(&self.requests),
            requests_refused: get(&self.requests_refused),
            refused_no_credentials: get(&self.refused_no_credentials),
            refused_bad_credentials: get(&self.refused_bad_credentials),
            refused_account_not_allowed: get(&self.refused_account_not_allowed),
            connections_open: get(&self.connections_open),
            connections_refused_per_source: get(&self.connections_refused_per_source),
            refusal_lines_logged: get(&self.refusal_lines_logged),
            refusals_not_logged: get(&self.refusals_not_logged),
            blocks_changed: get(&self.blocks_changed),
            changed_ranges_refused: get(&self.changed_ranges_refused),
            responses_aborted: get(&self.responses_aborted),
            tls_handshakes_failed: get(&self.tls_handshakes_failed),
            busy_refusals: get(&self.busy_refusals),
            serving_now: get(&self.serving_now),
            reads_cached: get(&self.reads_cached),
            reads_pooled: get(&self.reads_pooled),
        }
    }

    /// Count one refused request under its reason.
    pub(super) fn refused(&self, why: &Refusal) {
        self.requests_refused.fetch_add(1, Ordering::Relaxed);
        let by_reason = match why {
            Refusal::NoCredentials | Refusal::Malformed => &self.refused_no_credentials,
            Refusal::UnknownUser(_) | Refusal::WrongPassword(_) => &self.refused_bad_credentials,
            Refusal::MachineAccountNotAllowed(_)
            | Refusal::NoMachineKey(_)
            | Refusal::NoP2pAccount => &self.refused_account_not_allowed,
        };
        by_reason.fetch_add(1, Ordering::Relaxed);
    }
}
