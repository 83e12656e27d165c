//! The agent on its subnet: the peer-copy server, the election driver and the
//! peer-copy client, started when peer copy is enabled and the subnet not inhibited.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::AgentError;
use crate::cache::{clean, Cache};
use crate::config::Config;
use crate::election::{LocalInfo, P2pKey, SiteKey, Timing};
use crate::job::PeerSetup;
use crate::peer::{PeerAuth, PeerClient, PeerClientOptions, PeerServer, PeerServerOptions};
use crate::subnet::{RolePolicy, SubnetOptions};
use crate::tasks::Tasks;

/// What [`start_subnet`] started.
#[derive(Default)]
pub(super) struct SubnetParts {
    pub(super) peers: Option<PeerSetup>,
    pub(super) peer_server: Option<PeerServer>,
    pub(super) listeners: Vec<String>,
}

/// Start the peer-copy server (unless preboot) and the election driver, when peer
/// copy is enabled and the subnet is not inhibited. Returns the job side's setup and
/// the listener descriptions.
pub(super) fn start_subnet(
    config: &Config,
    cache: &Arc<Cache>,
    tasks: &Tasks,
) -> Result<SubnetParts, AgentError> {
    let protocols = config.peer_protocols();
    if protocols.is_empty() {
        tracing::info!(
            "peer copy disabled (P2PEnabled has no protocol): every job downloads from the origin"
        );
        return Ok(SubnetParts::default());
    }
    let addr = advertised_address(config);
    if config.is_inhibited(addr) {
        tracing::info!(%addr, "subnet listed in NomadInhibitedSubnets: no election, every job downloads from the origin");
        return Ok(SubnetParts::default());
    }
    let p2p_key: [u8; 32] = rand::random();
    let mut listeners = Vec::new();
    let mut http_port = config.p2p_http_port;
    let mut peer_server = None;
    if config.p2p_enabled.has_http() && !config.preboot {
        let server = PeerServer::start(PeerServerOptions {
            listen: SocketAddr::new(config.listen_address, config.p2p_http_port),
            cache: Arc::clone(cache),
            auth: Arc::new(PeerAuth {
                p2p_key,
                authenticated_users: config.effective_authenticated_users(),
                machine_key: config.machine_key.as_ref().map(|k| k.as_bytes().to_vec()),
            }),
            shutdown: tasks.token().child_token(),
        })
        .map_err(AgentError::Peer)?;
        http_port = server.local_addr().port();
        let url = format!("http://{}/content/", server.local_addr());
        tracing::info!(%url, "peer-copy server listening (HTTP)");
        listeners.push(url);
        peer_server = Some(server);
    }
    let free = clean::disk_space(cache.root()).map(|(f, _)| f).unwrap_or(0);
    let subnet = crate::subnet::start(SubnetOptions {
        local: LocalInfo {
            node_id: rand::random(),
            addr,
            weight: config.election_weight(),
            preboot: config.preboot,
            http_port,
            https_port: config.p2p_https_port,
            protocols,
            p2p_key: P2pKey(p2p_key),
            cert_fingerprint: None,
            names: Vec::new(),
            free_bytes: free,
        },
        timing: Timing::default(),
        port: config.p2p_port,
        broadcast: config.election_address,
        site_key: config.site_key.as_ref().map(|k| SiteKey::new(k.as_bytes())),
        policy: RolePolicy {
            can_be_master: !config.preboot && config.election_weight() > 0,
            ..RolePolicy::default()
        },
        cache_dir: Some(cache.root().to_path_buf()),
        tasks: tasks.clone(),
    })
    .map_err(AgentError::Subnet)?;
    listeners.push(format!(
        "udp://{} (elections, broadcast to {})",
        subnet.local_addr(),
        config.election_address
    ));
    // Content already complete in the cache: answer elections for it.
    for key in cache.keys() {
        if let Ok(Some(e)) = cache.get(&key) {
            if e.is_complete() {
                subnet.complete(&key);
            }
        }
    }
    // SpecialNetShare 0x80: prove to masters that this is one of the site's
    // machines, instead of using their P2P account (the settings ensure a key).
    let credentials = match (
        &config.machine_key,
        config.special_net_share.machine_account(),
    ) {
        (Some(key), true) => Some(crate::peer::machine_credentials(
            key.as_bytes(),
            &hostname(),
        )),
        _ => None,
    };
    let client = PeerClient::new(PeerClientOptions {
        credentials,
        local_address: (!config.listen_address.is_unspecified()).then_some(config.listen_address),
        ..PeerClientOptions::default()
    })
    .map_err(AgentError::Peer)?;
    Ok(SubnetParts {
        peers: Some(PeerSetup {
            subnet,
            client: Arc::new(client),
            protocols,
        }),
        peer_server,
        listeners,
    })
}

/// This host's name (the machine account is `NAME$`).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The address peers reach this agent at: `ListenAddress` when it names one, else
/// the address this host uses towards `ElectionAddress`.
pub fn advertised_address(config: &Config) -> IpAddr {
    if !config.listen_address.is_unspecified() {
        return config.listen_address;
    }
    let probe =
        std::net::UdpSocket::bind(SocketAddr::new(config.listen_address, 0)).and_then(|s| {
            s.set_broadcast(true)?;
            s.connect(SocketAddr::new(config.election_address, 9))?;
            s.local_addr()
        });
    match probe {
        Ok(a) if !a.ip().is_unspecified() => a.ip(),
        _ => config.listen_address,
    }
}
