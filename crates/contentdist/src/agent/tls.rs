//! The agent's certificates: the HTTPS server certificate in force (PKI from the
//! store, or the self-signed one), the store peers check masters against, and the
//! task that keeps both current without a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::certstore::{
    CertStore, ClientCertOptions, ClientCerts, ClientRules, HostIdentity, IssuerFilter,
    ServerCertOptions, ServerCerts, SubjectFilter,
};
use crate::config::Config;
use crate::subnet::SubnetHandle;
use crate::tasks::Tasks;

/// How often the store is read and the certificates in force checked when the
/// store is not watched (`CertStoreRefreshSecs = 0`): expiry still takes effect.
const UNWATCHED_CHECK: Duration = Duration::from_secs(600);

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

/// The client-certificate rules the settings ask for.
pub(super) fn client_rules(config: &Config) -> ClientRules {
    ClientRules {
        issuers: IssuerFilter(config.cert_issuer.clone()),
        subjects: SubjectFilter(config.cert_subject.clone()),
        platform_thumbprint: config.platform_thumbprint.clone(),
    }
}

/// This agent's client certificate manager, with its first choice made.
pub(super) fn client_certs(config: &Config, store: &Arc<CertStore>) -> Arc<ClientCerts> {
    let certs = Arc::new(ClientCerts::new(ClientCertOptions {
        store: Arc::clone(store),
        rules: client_rules(config),
        boot_image: config.boot_image_cert_file.clone(),
        preboot: config.preboot,
    }));
    certs.refresh(crate::cache::now_unix() as i64);
    certs
}

/// The store and this agent's client certificate, made at start for every agent
/// (an HTTPS origin may ask for the certificate even without peer copy).
pub(crate) struct AgentCerts {
    pub(crate) store: Arc<CertStore>,
    pub(crate) client: Arc<ClientCerts>,
}

impl AgentCerts {
    /// Read the store and choose the client certificate.
    pub(crate) fn new(config: &Config) -> AgentCerts {
        let store = Arc::new(CertStore::new(&config.cert_store_dir));
        store.refresh_logged();
        let client = client_certs(config, &store);
        AgentCerts { store, client }
    }
}

/// What the store refresh keeps current.
pub(super) struct Refresh {
    pub(super) store: Arc<CertStore>,
    pub(super) server: Option<Arc<ServerCerts>>,
    pub(super) client: Arc<ClientCerts>,
    /// Told a new self-signed fingerprint.
    pub(super) subnet: Option<SubnetHandle>,
    /// `CertStoreRefreshSecs`; `None`: the store is not watched.
    pub(super) period: Option<Duration>,
}

/// Start the task that reads the store again every `CertStoreRefreshSecs`, swaps
/// the server certificate when the choice changes (store, expiry, renewal), lets
/// the client certificate be chosen again when it expired or left the store, and
/// announces a new self-signed fingerprint to the subnet. Unwatched, it does so
/// every 10 minutes.
pub(super) fn spawn_refresh(tasks: &Tasks, r: Refresh) {
    let t = tasks.clone();
    tasks.spawn("certificate store", move |stop| refresh_loop(t, r, stop));
}

async fn refresh_loop(tasks: Tasks, r: Refresh, stop: CancellationToken) {
    let mut pin = r.server.as_ref().map(|s| s.pin());
    let period = r.period.unwrap_or(UNWATCHED_CHECK);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let (store, server, client) = (
            Arc::clone(&r.store),
            r.server.clone(),
            Arc::clone(&r.client),
        );
        // Reading files and perhaps generating a key: off the runtime.
        let looked = tasks.spawn_blocking("certificate store read", move || {
            store.refresh_logged();
            let now = crate::cache::now_unix() as i64;
            if let Some(s) = server {
                s.refresh(now);
            }
            client.refresh(now);
        });
        if let Err(e) = looked.await {
            tracing::warn!(error = %e, "reading the certificate store failed");
        }
        if let (Some(pin), Some(subnet)) = (pin.as_mut(), &r.subnet) {
            if pin.has_changed().unwrap_or(false) {
                subnet.set_cert_fingerprint(*pin.borrow_and_update());
            }
        }
    }
}
