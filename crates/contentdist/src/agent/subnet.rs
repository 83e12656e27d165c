//! The agent on its subnet: the peer-copy servers (HTTP, HTTPS), the election
//! driver and the peer-copy client, started when peer copy is enabled and the subnet not inhibited.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::tls::{self, AgentCerts};
use super::AgentError;
use crate::cache::{clean, Cache};
use crate::certstore::{PeerCertVerifier, ServerCerts};
use crate::config::{Config, Protocol, Protocols};
use crate::election::{LocalInfo, P2pKey, SiteKey, Timing};
use crate::job::PeerSetup;
use crate::peer::pace::ServePacer;
use crate::peer::swarm::{HeardHolders, SelfAd};
use crate::peer::{
    server_tls_config, HttpsOptions, PeerAuth, PeerClient, PeerClientOptions, PeerServer,
    PeerServerLimits, PeerService, PeerTlsOptions, ServiceOptions,
};
use crate::subnet::{RolePolicy, SubnetOptions};
use crate::tasks::Tasks;

/// What [`start_subnet`] started.
#[derive(Default)]
pub(super) struct SubnetParts {
    pub(super) peers: Option<PeerSetup>,
    /// The HTTP and HTTPS peer-copy servers (sharing one service), as enabled.
    pub(super) servers: Vec<PeerServer>,
    /// The HTTPS server certificate manager, when HTTPS serves.
    pub(super) server_certs: Option<Arc<ServerCerts>>,
    pub(super) listeners: Vec<String>,
    /// The agent's own smbd (P2PEnabled 0x01, not preboot).
    pub(super) smb: Option<crate::smb::SmbShare>,
    /// The P2P account peers use with this agent, when it serves with one.
    pub(super) p2p_account: Option<crate::control::P2pAccount>,
}

/// Start the peer-copy server (unless preboot) and the election driver, when peer
/// copy is enabled and the subnet is not inhibited. Returns the job side's setup and
/// the listener descriptions.
pub(super) fn start_subnet(
    config: &Config,
    cache: &Arc<Cache>,
    tasks: &Tasks,
    certs: &AgentCerts,
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
    let https = config.p2p_enabled.has_https();
    // Certificate authentication (0x2, over HTTPS): peers prove themselves with
    // client certificates, and no P2P account exists (the page: it is not created),
    // so no key is announced either.
    let by_certificate = https && config.p2p_ssl_settings.client_cert_auth();
    let p2p_key: Option<[u8; 32]> = (!by_certificate).then(rand::random);
    let mut listeners = Vec::new();
    let mut servers = Vec::new();
    let mut http_port = config.p2p_http_port;
    let mut https_port = config.p2p_https_port;
    let serves = !config.preboot && (config.p2p_enabled.has_http() || https);
    let mut server_certs = None;
    let mut pacer = None;
    // What this agent's servers speak (FanOut describes it to masters).
    let mut served = Protocols::NONE;
    if serves {
        // One service for both ports: one set of counters and one per-source cap.
        pacer = (config.serve_pace_factor > 0)
            .then(|| Arc::new(ServePacer::new(config.serve_pace_factor)));
        let service = PeerService::with_options(ServiceOptions {
            cache: Arc::clone(cache),
            auth: Arc::new(PeerAuth {
                p2p_key,
                authenticated_users: config.effective_authenticated_users(),
                machine_key: config.machine_key.as_ref().map(|k| k.as_bytes().to_vec()),
            }),
            shutdown: tasks.token().child_token(),
            limits: PeerServerLimits {
                max_serving: config.max_serving_connections as usize,
                ..PeerServerLimits::default()
            },
            pacer: pacer.clone(),
        });
        if config.p2p_enabled.has_http() {
            let listen = SocketAddr::new(config.listen_address, config.p2p_http_port);
            let server =
                PeerServer::start_http(listen, service.clone()).map_err(AgentError::Peer)?;
            http_port = server.local_addr().port();
            listeners.push(format!("http://{}/content/", server.local_addr()));
            servers.push(server);
            served = served.with(Protocol::Http);
        }
        if https {
            let server_cert = tls::server_certs(config, &certs.store);
            let clients = by_certificate
                .then(|| Arc::new(PeerCertVerifier::new(Arc::clone(&certs.store))) as _);
            let listen = SocketAddr::new(config.listen_address, config.p2p_https_port);
            let server = PeerServer::start_https(
                HttpsOptions {
                    listen,
                    tls: server_tls_config(server_cert.resolver(), clients)
                        .map_err(AgentError::Peer)?,
                    usable: server_cert.usable(),
                    client_certificates: by_certificate,
                },
                service,
            )
            .map_err(AgentError::Peer)?;
            https_port = server.local_addr().port();
            listeners.push(format!("https://{}/content/", server.local_addr()));
            servers.push(server);
            server_certs = Some(server_cert);
            served = served.with(Protocol::Https);
        }
        for url in &listeners {
            tracing::info!(%url, "peer-copy URL");
        }
    }
    let smb = start_smb(config, cache, tasks, p2p_key.as_ref());
    if let Some(share) = &smb {
        listeners.push(format!("{} (SMB 3, signing mandatory)", share.status().url));
    }
    let p2p_account = p2p_key.filter(|_| serves || smb.is_some()).map(|key| {
        let (user, password) = crate::peer::p2p_credentials(&key);
        crate::control::P2pAccount { user, password }
    });
    let identity = tls::host_identity(config);
    // FanOut over SMB: holders speak for themselves on the election socket (an SMB
    // master hears nothing of its peers); heard by every agent copying over SMB,
    // said by those that serve their own share.
    let fan_out = config.special_net_share.fan_out();
    let heard_holders = (fan_out && config.p2p_enabled.has_smb()).then(|| HeardHolders {
        registry: Arc::default(),
        me: addr,
    });
    let free = clean::disk_space(cache.root()).map(|(f, _)| f).unwrap_or(0);
    let subnet = crate::subnet::start(SubnetOptions {
        local: LocalInfo {
            node_id: rand::random(),
            addr,
            weight: config.election_weight(),
            preboot: config.preboot,
            http_port,
            https_port,
            protocols,
            p2p_key: P2pKey(p2p_key.unwrap_or([0; 32])),
            cert_fingerprint: server_certs.as_ref().and_then(|c| *c.pin().borrow()),
            names: tls::announced_names(&identity),
            host: Some(identity.host_name.clone()),
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
        heard_hosts: smb.as_ref().and_then(|s| s.heard_hosts()),
        heard_holders: heard_holders.clone(),
        advertise_holding: smb.as_ref().filter(|_| fan_out).map(|share| {
            let status = share.watch();
            Box::new(move || status.borrow().state == crate::smb::SmbState::Running)
                as crate::subnet::ServesNow
        }),
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
            &identity.host_name,
        )),
        _ => None,
    };
    let client = PeerClient::new(PeerClientOptions {
        tls: https.then(|| PeerTlsOptions {
            store: Arc::clone(&certs.store),
            require_pki: config.p2p_ssl_settings.pki_server_cert(),
            literal_names: config.p2p_enabled.net_literal_names(),
            client_cert: by_certificate.then(|| Arc::clone(&certs.client)),
        }),
        credentials,
        // FanOut (SpecialNetShare 0x40, on by default): describe this agent to
        // masters (what it serves; a preboot agent serves nothing) and copy from
        // the other holders they name.
        fan_out: fan_out.then(|| SelfAd {
            http_port: if served.contains(Protocol::Http) {
                http_port
            } else {
                0
            },
            https_port: if served.contains(Protocol::Https) {
                https_port
            } else {
                0
            },
            protocols: served,
            p2p_key,
            names: tls::announced_names(&identity),
            pin: server_certs.as_ref().map(|c| c.pin()),
        }),
        local_address: (!config.listen_address.is_unspecified()).then_some(config.listen_address),
        smb_port: config.p2p_smb_port,
        heard_holders,
        ..PeerClientOptions::default()
    })
    .map_err(AgentError::Peer)?;
    Ok(SubnetParts {
        peers: Some(PeerSetup {
            subnet,
            client: Arc::new(client),
            protocols,
            pacer,
        }),
        servers,
        server_certs,
        listeners,
        smb,
        p2p_account,
    })
}

/// Start the agent's own smbd when SMB (0x01) is enabled and this agent serves:
/// the share of `CacheDir/content`, for the P2P account of `p2p_key`.
fn start_smb(
    config: &Config,
    cache: &Cache,
    tasks: &Tasks,
    p2p_key: Option<&[u8; 32]>,
) -> Option<crate::smb::SmbShare> {
    if !config.p2p_enabled.has_smb() || config.preboot {
        return None;
    }
    let Some(key) = p2p_key else {
        // Certificate authentication (P2PSslSettings 0x2) creates no P2P account,
        // and SMB has no other account to offer.
        tracing::warn!("SMB (P2PEnabled 0x01) does not serve: with certificate authentication (P2PSslSettings 0x2) there is no P2P account for peers to log on with");
        return None;
    };
    let (_, password) = crate::peer::p2p_credentials(key);
    Some(crate::smb::SmbShare::start(
        crate::smb::SmbShareOptions {
            conf: crate::smb::ConfOptions {
                dir: cache.root().join("smb"),
                share: cache.root().join("content"),
                listen: config.listen_address,
                port: config.p2p_smb_port,
                machine_accounts: false,
            },
            p2p_password: password,
            smbd: None,
            smbpasswd: None,
            // AuthenticatedUsers 1, as over HTTP: machine accounts too.
            machine_key: config
                .machine_key
                .as_ref()
                .filter(|_| config.effective_authenticated_users() == 1)
                .map(|k| k.as_bytes().to_vec()),
        },
        tasks,
    ))
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
