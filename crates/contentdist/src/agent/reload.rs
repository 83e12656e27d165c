//! Reloading the settings while the agent runs (SIGHUP, `systemctl reload`):
//! what can change live does; what cannot is reported as needing a restart, and
//! the agent keeps running with the old value.

use std::sync::Arc;

use serde::Serialize;

use super::{clean_policy, AgentHandle};
use crate::certstore::IssuerFilter;
use crate::config::Config;

/// The settings a reload applies while the agent runs. Everything else (ports,
/// addresses, protocols, the cache directory, keys...) is bound into listeners,
/// sockets and tasks at start: it needs a restart.
pub const LIVE_SETTINGS: &[&str] = &[
    "LogLevel",
    "WanRateKbps",
    "MaxWorkRate",
    "MaxCacheDays",
    "MaxCacheSizeMB",
    "PercentAvailableDisk",
    "CertIssuer",
    "CertSubject",
    "Platform",
];

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Settings that changed and are in force now. (`LogLevel` is applied by
    /// whoever owns the process's log output: the binary.)
    pub applied: Vec<String>,
    /// Settings that changed but need a restart; the agent keeps the old values.
    pub needs_restart: Vec<String>,
}

/// The settings whose values differ between `old` and `new`, by key name.
pub fn changed_settings(old: &Config, new: &Config) -> Vec<String> {
    let table = |c: &Config| -> toml::Table {
        // Every key is written out (see `Config::to_toml`), so reading it back
        // compares values as the file means them.
        toml::from_str(&c.to_toml()).expect("to_toml writes valid TOML")
    };
    let (a, b) = (table(old), table(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

impl AgentHandle {
    /// Apply `new` settings: the live ones (see [`LIVE_SETTINGS`]) take effect now
    /// (the throttle for downloads in progress, the clean-up limits, certificate
    /// selection, chosen again at once); the others are listed as needing a
    /// restart and keep their old values. `status` and the metrics show the values
    /// in force.
    pub fn reload(&self, new: &Config) -> ReloadReport {
        let old = self.view.config();
        let mut report = ReloadReport::default();
        let mut next = (*old).clone();
        for key in changed_settings(&old, new) {
            if !LIVE_SETTINGS.contains(&key.as_str()) {
                tracing::warn!(setting = %key, "setting changed: needs a restart; the agent keeps running with the old value");
                report.needs_restart.push(key);
                continue;
            }
            match key.as_str() {
                "LogLevel" => next.log_level = new.log_level,
                "WanRateKbps" => next.wan_rate_kbps = new.wan_rate_kbps,
                "MaxWorkRate" => next.max_work_rate = new.max_work_rate,
                "MaxCacheDays" => next.max_cache_days = new.max_cache_days,
                "MaxCacheSizeMB" => next.max_cache_size_mb = new.max_cache_size_mb,
                "PercentAvailableDisk" => next.percent_available_disk = new.percent_available_disk,
                "CertIssuer" => next.cert_issuer = new.cert_issuer.clone(),
                "CertSubject" => next.cert_subject = new.cert_subject.clone(),
                "Platform" => next.platform_thumbprint = new.platform_thumbprint.clone(),
                _ => unreachable!("every live setting is applied above"),
            }
            report.applied.push(key);
        }
        let jobs = &self.view.jobs;
        jobs.set_rate_limit(next.origin_rate_limit_bytes_per_sec());
        jobs.set_clean_policy(clean_policy(&next));
        let now = crate::cache::now_unix() as i64;
        self.view
            .client_certs
            .set_rules(super::tls::client_rules(&next));
        self.view.client_certs.refresh(now);
        if let Some(s) = &self.view.server_certs {
            s.set_issuers(IssuerFilter(next.cert_issuer.clone()));
            s.refresh(now);
        }
        self.view.set_config(Arc::new(next));
        tracing::info!(
            applied = ?report.applied,
            needs_restart = ?report.needs_restart,
            "settings reloaded"
        );
        report
    }
}
