//! The agent's [`StatusPage`] for the status page of its metrics listener: its
//! status, its jobs and its certificates as plain data.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use crate::certstore::{ClientCertState, ServerCertState};
use crate::job::{JobInfo, JobState};
use crate::metrics::page::{PageCertificate, PageElection, PageJob};
use crate::metrics::{StatusPage, StatusPageFn};

use super::AgentView;

/// The host's names, looked up once (the FQDN may ask the resolver).
type Names = OnceLock<(String, String)>;

impl AgentView {
    /// The status page's data now.
    fn status_page(&self, names: &Names) -> StatusPage {
        let (host, fqdn) = names.get_or_init(|| {
            (
                self.config().host_name_in_force(),
                self.config().fqdn_in_force(),
            )
        });
        let status = self.status();
        let served = self.peer_counters.as_deref().map_or(0, |s| {
            s.content_served_http.load(Ordering::Relaxed)
                + s.content_served_https.load(Ordering::Relaxed)
        }) + self.smb.as_ref().map_or(0, |s| s.status().bytes_served);
        let mut certificates = Vec::new();
        certificates.push(match status.https_certificate {
            None => PageCertificate {
                usage: "HTTPS server".into(),
                state: "off".into(),
                reason: Some("this agent does not serve HTTPS (P2PEnabled, preboot)".into()),
                ..PageCertificate::default()
            },
            Some(s) => server_certificate(s),
        });
        if let Some(c) = status.client_certificate {
            certificates.push(client_certificate(c));
        }
        StatusPage {
            version: status.version,
            site: self.config().site.clone(),
            host: host.clone(),
            fqdn: fqdn.clone(),
            listeners: status.listeners,
            started_unix: self.started_unix,
            now_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            bytes_from_origin: status.bytes_from_origin,
            bytes_from_peers: status.bytes_from_peers,
            bytes_served: served,
            elections: status
                .elections
                .iter()
                .map(|e| PageElection {
                    content: e.content.clone(),
                    role: word(&e.state),
                    master: e.master.clone(),
                    term: e.term,
                    share_percent: e.share_percent,
                })
                .collect(),
            // Newest first.
            jobs: self.jobs.list().iter().rev().map(page_job).collect(),
            certificates,
        }
    }
}

/// An enum as the control socket spells it (`downloading`, `master`).
fn word<T: serde::Serialize + std::fmt::Debug>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{v:?}").to_lowercase())
}

fn page_job(j: &JobInfo) -> PageJob {
    let failed = j.state == JobState::Failed;
    PageJob {
        id: j.id,
        content: format!("{}/{}", j.request.content_id, j.request.version),
        state: word(&j.state),
        bytes_total: j.bytes_total,
        bytes_verified: j.bytes_verified,
        bytes_from_origin: j.bytes_from_origin,
        bytes_from_peers: j.bytes_from_peers,
        code: (failed || j.code != 0).then(|| j.code().to_string()),
        message: j.message.clone(),
    }
}

fn server_certificate(s: ServerCertState) -> PageCertificate {
    let usage = "HTTPS server".to_string();
    match s {
        ServerCertState::Unknown => PageCertificate {
            usage,
            state: "unknown".into(),
            reason: Some("not looked at yet".into()),
            ..PageCertificate::default()
        },
        ServerCertState::Bound(b) => PageCertificate {
            usage,
            state: "bound".into(),
            kind: Some(b.kind),
            subject: Some(b.subject),
            thumbprint: Some(b.thumbprint),
            not_after: Some(b.not_after),
            not_after_unix: Some(b.not_after_unix),
            reason: None,
        },
        ServerCertState::Unavailable { reason, rejected } => {
            let mut why = reason;
            for r in rejected {
                why.push_str(&format!("; {} ({}): {}", r.subject, r.thumbprint, r.reason));
            }
            PageCertificate {
                usage,
                state: "unavailable".into(),
                reason: Some(why),
                ..PageCertificate::default()
            }
        }
    }
}

fn client_certificate(c: ClientCertState) -> PageCertificate {
    let usage = "client".to_string();
    match c {
        ClientCertState::Unknown => PageCertificate {
            usage,
            state: "unknown".into(),
            reason: Some("not looked at yet".into()),
            ..PageCertificate::default()
        },
        ClientCertState::Chosen(l) => PageCertificate {
            usage,
            state: "chosen".into(),
            kind: Some(l.source),
            subject: Some(l.subject),
            thumbprint: Some(l.thumbprint),
            not_after: Some(l.not_after),
            not_after_unix: Some(l.not_after_unix),
            reason: None,
        },
        ClientCertState::Missing { reason } => PageCertificate {
            usage,
            state: "missing".into(),
            reason: Some(reason),
            ..PageCertificate::default()
        },
    }
}

/// What the metrics listener calls for each request of the status page. Weak: the
/// listener must not keep the agent's view (and its jobs) alive.
pub(super) fn status_page_fn(view: &Arc<AgentView>) -> StatusPageFn {
    let v = Arc::downgrade(view);
    let names = Names::new();
    Arc::new(move || {
        v.upgrade()
            .map(|v| v.status_page(&names))
            .unwrap_or_default()
    })
}
