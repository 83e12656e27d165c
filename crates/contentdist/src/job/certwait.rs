//! The missing-client-certificate wait (the page's "Missing or invalid client
//! authentication certificate"), for agents that authenticate to masters with a
//! client certificate (`P2PSslSettings` 0x2 with HTTPS):
//!
//! - preboot: a job without a valid certificate fails at once with 0x209A;
//! - otherwise it waits, looking again every `P2PClientCertRetryMins` (10) and as
//!   soon as the agent's store refresh finds one, until `P2PClientCertWaitPeriodMins`
//!   (1440) passed; then it fails with 0x209A. The deadline is wall-clock time and
//!   is kept in the job: a pause, a restart of the agent or a sleep of the machine
//!   do not stop it. A cancel fails the job as any cancel does;
//! - while one job waits, no other job is processed: each job passes the wait's
//!   gate before it starts, and the waiting job holds it;
//! - when a certificate appears, the job goes on to its election (a new one: it
//!   had not joined any) and downloads.

use std::sync::Arc;
use std::time::Duration;

use super::context::JobContext;
use super::gate::OrderedGate;
use super::live::Live;
use super::run::{JobError, JobRun, Outcome};
use super::{JobState, Source};
use crate::certstore::{CertStore, ClientCertState, ClientCerts};

/// What the wait needs, present only when client certificates are required.
pub struct CertWait {
    /// This agent's client certificate.
    pub certs: Arc<ClientCerts>,
    /// The store, read again at each retry (it may not be watched).
    pub store: Arc<CertStore>,
    /// Preboot mode: fail at once.
    pub preboot: bool,
    /// `P2PClientCertWaitPeriodMins`.
    pub period: Duration,
    /// `P2PClientCertRetryMins`.
    pub retry: Duration,
    /// Passed by every job before it starts, in id order, and held by the job
    /// that waits: no other job starts meanwhile.
    pub(super) gate: Arc<OrderedGate>,
}

impl CertWait {
    /// A wait with these settings.
    pub fn new(
        certs: Arc<ClientCerts>,
        store: Arc<CertStore>,
        preboot: bool,
        period: Duration,
        retry: Duration,
    ) -> CertWait {
        CertWait {
            certs,
            store,
            preboot,
            period,
            retry,
            gate: Arc::default(),
        }
    }

    /// Read the store and choose again (blocking: files, perhaps PKCS#12).
    fn look(&self) -> bool {
        self.store.refresh_logged();
        self.certs.refresh(crate::cache::now_unix() as i64);
        self.certs.current().is_some()
    }

    fn reason(&self) -> String {
        match self.certs.state() {
            ClientCertState::Missing { reason } => reason,
            _ => "no client certificate".into(),
        }
    }
}

/// Returns when the job may go on (a certificate is there, or none is required),
/// `Stopped` when its token fired, or the 0x209A failure.
pub(super) async fn ensure_client_cert(
    ctx: &JobContext,
    job: &JobRun,
) -> Result<Outcome, JobError> {
    let Some(wait) = &ctx.cert_wait else {
        return Ok(Outcome::Done);
    };
    let stop = &job.stop;
    let Some(ticket) = &job.cert_ticket else {
        return Err(JobError::Internal {
            step: "client certificate wait",
            detail: "the job was spawned without a place at the gate".into(),
        });
    };
    let _gate = if ticket.is_next() {
        ticket.pass().await
    } else {
        match ticket.waits_for() {
            Some(other) => job.live.report_waiting(other),
            None => job.live.report(JobState::Queued, Source::None),
        }
        // A job that was waiting before (a restart resumed it behind an older job
        // that now holds the gate) still ends at its own deadline.
        let own_deadline = async {
            match job.live.cert_deadline() {
                Some(d) => {
                    let left = d.saturating_sub(crate::cache::now_unix());
                    tokio::time::sleep(Duration::from_secs(left)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            g = ticket.pass() => g,
            _ = own_deadline => return Err(expired(&job.live, wait)),
            _ = stop.cancelled() => return Ok(Outcome::Stopped),
        }
    };
    if looked(ctx, wait).await? {
        job.live.set_cert_deadline(None);
        // Queued until a transfer slot is free (`run` takes one next).
        job.live.report(JobState::Queued, Source::None);
        return Ok(Outcome::Done);
    }
    if wait.preboot {
        return Err(JobError::ClientCertMissing {
            reason: format!("{} (preboot: no wait)", wait.reason()),
        });
    }
    let now = crate::cache::now_unix();
    let deadline = match job.live.cert_deadline() {
        Some(d) => d,
        None => {
            let d = now + wait.period.as_secs();
            job.live.set_cert_deadline(Some(d));
            d
        }
    };
    job.live
        .report(JobState::WaitingForCertificate, Source::None);
    tracing::warn!(job = job.id, code = %crate::codes::Code::CLIENT_CERT_MISSING,
        until = %crate::certstore::utc(deadline as i64),
        retry_mins = wait.retry.as_secs() / 60,
        "no valid client certificate: the job waits for one (no other job runs meanwhile): {}",
        wait.reason());
    let mut available = wait.certs.available();
    loop {
        let now = crate::cache::now_unix();
        if now >= deadline {
            return Err(expired(&job.live, wait));
        }
        // Wall-clock deadline: a sleep of the machine shortens what is left.
        let left = Duration::from_secs(deadline - now);
        tokio::select! {
            _ = stop.cancelled() => return Ok(Outcome::Stopped),
            _ = available.wait_for(|a| *a) => {}
            _ = tokio::time::sleep(wait.retry.min(left)) => {}
        }
        if looked(ctx, wait).await? {
            tracing::info!(
                job = job.id,
                "a client certificate is available: the job goes on"
            );
            job.live.set_cert_deadline(None);
            job.live.report(JobState::Queued, Source::None);
            return Ok(Outcome::Done);
        }
    }
}

fn expired(live: &Live, wait: &CertWait) -> JobError {
    live.set_cert_deadline(None);
    JobError::ClientCertMissing {
        reason: format!(
            "{} (waited P2PClientCertWaitPeriodMins, {} minutes)",
            wait.reason(),
            wait.period.as_secs() / 60
        ),
    }
}

async fn looked(ctx: &JobContext, wait: &Arc<CertWait>) -> Result<bool, JobError> {
    let w = Arc::clone(wait);
    let h = ctx
        .tasks
        .spawn_blocking("client certificate look", move || w.look());
    h.await.map_err(|e| JobError::Internal {
        step: "client certificate look",
        detail: e.to_string(),
    })
}
