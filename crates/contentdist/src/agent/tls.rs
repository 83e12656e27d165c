//! The agent's certificates: the HTTPS server certificate in force (PKI from the
//! store, or the self-signed one), the store peers check masters against, and the
//! task that keeps both current without a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::certstore::{CertStore, HostIdentity, IssuerFilter, ServerCertOptions, ServerCerts};
use crate::config::Config;
use crate::subnet::SubnetHandle;
use crate::tasks::Tasks;

/// How often the store is looked at again: a certificate dropped into `my/` or a
/// CA into `trusted/` takes effect within this, as does the expiry of the one in
/// force.
pub(super) const CERT_REFRESH: Duration = Duration::from_secs(5);

/// The names this agent is known by, as certificates are matched against them.
pub(super) fn host_identity(config: &Config) -> HostIdentity {
    HostIdentity {
        host_name: config.host_name_in_force(),
        fqdn: config.fqdn_in_force(),
    }
}

/// The names a master announces: its host name and FQDN (one when they are equal).
pub(super) fn announced_names(id: &HostIdentity) -> Vec<String> {
    let mut names = vec![id.host_name.clone()];
    if !id.fqdn.eq_ignore_ascii_case(&id.host_name) {
        names.push(id.fqdn.clone());
    }
    names
}

/// The server certificate manager `config` asks for, with its first choice made.
pub(super) fn server_certs(config: &Config, store: &Arc<CertStore>) -> Arc<ServerCerts> {
    let certs = Arc::new(ServerCerts::new(ServerCertOptions {
        store: Arc::clone(store),
        pki: config.p2p_ssl_settings.pki_server_cert(),
        identity: host_identity(config),
        issuers: IssuerFilter(config.cert_issuer.clone()),
        self_signed_dir: config.cache_dir.join("tls"),
    }));
    certs.refresh(crate::cache::now_unix() as i64);
    certs
}

/// Start the task that reads the store again every [`CERT_REFRESH`], swaps the
/// server certificate when the choice changes (store, expiry, renewal), and
/// announces a new self-signed fingerprint to the subnet.
pub(super) fn spawn_refresh(
    tasks: &Tasks,
    store: Arc<CertStore>,
    server: Option<Arc<ServerCerts>>,
    subnet: SubnetHandle,
) {
    let t = tasks.clone();
    tasks.spawn("certificate store", move |stop| {
        refresh_loop(t, store, server, subnet, stop)
    });
}

async fn refresh_loop(
    tasks: Tasks,
    store: Arc<CertStore>,
    server: Option<Arc<ServerCerts>>,
    subnet: SubnetHandle,
    stop: CancellationToken,
) {
    let mut pin = server.as_ref().map(|s| s.pin());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CERT_REFRESH) => {}
        }
        let (store, server) = (Arc::clone(&store), server.clone());
        // Reading files and perhaps generating a key: off the runtime.
        let looked = tasks.spawn_blocking("certificate store read", move || match server {
            Some(s) => {
                s.refresh(crate::cache::now_unix() as i64);
            }
            None => {
                store.refresh_logged();
            }
        });
        if let Err(e) = looked.await {
            tracing::warn!(error = %e, "reading the certificate store failed");
        }
        if let Some(pin) = pin.as_mut() {
            if pin.has_changed().unwrap_or(false) {
                subnet.set_cert_fingerprint(*pin.borrow_and_update());
            }
        }
    }
}
