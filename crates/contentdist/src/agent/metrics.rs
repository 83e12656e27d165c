//! The agent's [`Sample`] for its metrics, and its metrics listener.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::certstore::{ClientCertState, ServerCertState};
use crate::config::{Config, Protocol};
use crate::election::ElectionState;
use crate::metrics::{Metrics, MetricsServer, Sample};
use crate::tasks::Tasks;

use super::AgentView;

impl AgentView {
    /// The counters now, for a scrape.
    pub(super) fn metrics_sample(&self) -> Sample {
        let c = &self.config();
        let jobs = &self.jobs;
        let counters = jobs.counters();
        let peer = self.peer_client.as_ref().map(|p| p.counters());
        let served = self.peer_counters.as_deref();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let mut by_role = [
            ("master", 0u64),
            ("follower", 0),
            ("electing", 0),
            ("idle", 0),
        ];
        for e in self.subnet.as_ref().map(|s| s.status()).unwrap_or_default() {
            let i = match e.state {
                ElectionState::Master => 0,
                ElectionState::Following => 1,
                ElectionState::Electing => 2,
                ElectionState::Idle => 3,
            };
            by_role[i].1 += 1;
        }
        let cache = jobs.cache().list();
        let now = crate::cache::now_unix() as f64;
        let mut expiry = Vec::new();
        if let Some(ServerCertState::Bound(b)) = self.server_certs.as_ref().map(|s| s.state()) {
            expiry.push(("server", b.not_after_unix as f64 - now));
        }
        if let ClientCertState::Chosen(l) = self.client_certs.state() {
            expiry.push(("client", l.not_after_unix as f64 - now));
        }
        Sample {
            site: c.site.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            start_time_unix: self.started_unix,
            origin_bytes: load(&counters.from_origin),
            origin_protocol: origin_protocol(c),
            peer_bytes_http: peer.map_or(0, |p| load(p.content.of(Protocol::Http))),
            peer_bytes_https: peer.map_or(0, |p| load(p.content.of(Protocol::Https))),
            peer_bytes_smb: peer.map_or(0, |p| load(p.content.of(Protocol::Smb))),
            served_bytes_http: served.map_or(0, |s| load(&s.content_served_http)),
            served_bytes_https: served.map_or(0, |s| load(&s.content_served_https)),
            served_bytes_smb: self.smb.as_ref().map_or(0, |s| s.status().bytes_served),
            blocks_rejected_origin: load(&counters.origin_blocks_rejected),
            blocks_rejected_peer: peer.map_or(0, |p| load(&p.blocks_rejected)),
            jobs_by_state: jobs.count_by_state(),
            job_ends: jobs.ends(),
            elections_by_role: by_role.to_vec(),
            masterships: self.subnet.as_ref().map_or(0, |s| s.masterships_count()),
            elections_lost: self.subnet.as_ref().map_or(0, |s| s.elections_lost()),
            master_changes: self.subnet.as_ref().map_or(0, |s| s.master_changes()),
            head_starts: self.subnet.as_ref().map_or((0, 0), |s| {
                let h = s.head_starts();
                (h.kept, h.ended)
            }),
            datagrams_dropped: match &self.subnet {
                Some(s) => vec![
                    ("refused", s.dropped()),
                    ("replayed", s.replayed()),
                    ("overflowed", s.overflowed()),
                ],
                None => Vec::new(),
            },
            refusals: match served {
                Some(s) => vec![
                    ("no_credentials", load(&s.refused_no_credentials)),
                    ("bad_credentials", load(&s.refused_bad_credentials)),
                    ("account_not_allowed", load(&s.refused_account_not_allowed)),
                    ("certificate", load(&s.tls_handshakes_failed)),
                    (
                        "too_many_connections",
                        load(&s.connections_refused_per_source),
                    ),
                    ("busy", load(&s.busy_refusals)),
                    ("not_verified", load(&s.changed_ranges_refused)),
                ],
                None => Vec::new(),
            },
            serving_now: served.map_or(0, |s| load(&s.serving_now)),
            wan_throttle_bytes_per_second: c.origin_rate_limit_bytes_per_sec().unwrap_or(0),
            wan_throttled_seconds: jobs.wan_held_back().as_secs_f64(),
            cache_bytes_verified: cache.iter().map(|e| e.bytes_verified).sum(),
            cache_bytes_free: crate::cache::clean::disk_space(jobs.cache().root())
                .map_or(0, |(f, _)| f),
            cache_entries: cache.len() as u64,
            cert_expiry_seconds: expiry,
        }
    }
}

/// `http` or `https`, as the origin URL says.
fn origin_protocol(c: &Config) -> &'static str {
    match c.origin_url.as_deref() {
        Some(u) if u.starts_with("https:") => "https",
        _ => "http",
    }
}

/// Start the metrics listener when `MetricsAddress` is set. A listener that cannot
/// start (its port taken) is logged and reported; the agent goes on without it:
/// content matters more than its counters.
pub(super) async fn start_metrics(
    config: &Config,
    view: &Arc<AgentView>,
    tasks: &Tasks,
) -> Result<Option<MetricsServer>, String> {
    let Some(addr) = config.metrics_address else {
        return Ok(None);
    };
    let v = Arc::downgrade(view);
    // Weak: the listener must not keep the agent's view (and its jobs) alive.
    let metrics = Metrics::new(Arc::new(move || {
        v.upgrade().map(|v| v.metrics_sample()).unwrap_or_default()
    }))
    .with_status_page(super::page::status_page_fn(view));
    match MetricsServer::start(addr, metrics, tasks.token().child_token()).await {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            tracing::warn!(error = %e, "metrics listener not started; the agent goes on without it (set MetricsAddress to a free address, or \"\" for none)");
            Err(e.to_string())
        }
    }
}
