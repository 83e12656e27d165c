//! Peer copy over SMB, the master's side: the agent's own `smbd`, sharing the
//! cache read-only (`P2PEnabled` 0x01, the product's default).
//!
//! The product shares its cache with Windows' file server; on Linux that is Samba.
//! The agent runs and owns one `smbd` with a configuration it writes under
//! `CacheDir/smb/` ([`conf`]): its own port (`P2PSmbPort`), its own password
//! database, lock, state, cache and pid directories, listening only where the
//! peer-copy server listens. It never reads or touches `/etc/samba/smb.conf` or a
//! system smbd, and a system smbd never sees ours.
//!
//! # What the share exposes
//!
//! `\\MASTER\contentdist` is the cache's `content/` directory: for every content
//! `ID/VERSION/manifest.json`, `ID/VERSION/have.bin` (one bit per verified block,
//! least significant bit first, only ever set after the block is durable) and
//! `ID/VERSION/data/<path>`. Read-only; `meta.json` and temporary files are vetoed;
//! symbolic links are not followed, so nothing outside the cache can be reached.
//! Unlike the HTTP server, smbd does not hash a block again before sending it: the
//! peer verifies every block anyway.
//!
//! # Who may read it
//!
//! The P2P account ([`crate::peer::P2P_USER`]) with the password derived from the
//! key this agent announces, set with `smbpasswd -c CONF -a -s` before every start of
//! smbd and whenever [`SmbShare::set_p2p_password`] changes it. tdbsam wants a Unix
//! user behind every account: the P2P account maps to `nobody` (`username map`),
//! and the share is read with the agent's rights. SMB 3.0 at least, signing
//! mandatory, no guest, no anonymous share access. With `AuthenticatedUsers` 1 and a
//! `MachineKey`, machine accounts too: registered as their names are heard in the
//! election ([`machines`]).
//!
//! # Life cycle
//!
//! [`SmbShare::start`] starts the named task `smb server`: it writes the
//! configuration, sets the password, starts smbd in its own process group and
//! waits until it accepts connections; when smbd dies it is started again after a
//! back-off (1 s, doubling to 30 s, back to 1 s after a minute of running); when the
//! agent stops, smbd's process group gets SIGTERM, then SIGKILL after 5 s. No smbd
//! installed: said once in the log and in `status`, and the agent goes on with its
//! other protocols.

pub mod conf;
pub mod machines;
mod supervise;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::codes::Code;
use crate::tasks::Tasks;

pub use conf::{ConfOptions, SHARE_NAME};
pub use supervise::stop_stale;

/// Why the SMB server is not serving.
#[derive(Debug, thiserror::Error)]
pub enum SmbError {
    /// smbd or smbpasswd is not installed.
    #[error("{0} is not installed: install Debian's samba package (apt-get install samba), or leave SMB (0x01) out of P2PEnabled; peers copy over the other protocols meanwhile")]
    NotInstalled(&'static str),
    /// A directory or file of smbd's could not be written.
    #[error("{}: {source}", path.display())]
    Setup {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// smbpasswd refused to set the P2P account's password.
    #[error("smbpasswd could not set the P2P account's password: {0}")]
    Password(String),
    /// `libnss_wrapper.so` is not installed: machine accounts cannot have the Unix
    /// users smbd wants behind them (see [`machines`]).
    #[error("libnss_wrapper.so is not installed: install Debian's libnss-wrapper package (apt-get install libnss-wrapper) for machine accounts over SMB; peers set for machine accounts (SpecialNetShare 0x80) are refused over SMB meanwhile, the P2P account is not")]
    NoNssWrapper,
    /// A machine account could not be registered.
    #[error("machine account {account}: {detail}")]
    Machine {
        /// `HOSTNAME$`.
        account: String,
        /// What failed.
        detail: String,
    },
    /// smbd could not be started.
    #[error("cannot run smbd: {0}")]
    Spawn(std::io::Error),
    /// smbd ended by itself.
    #[error("smbd exited ({status}): {detail}")]
    Exited {
        /// Its exit status.
        status: String,
        /// The end of its output.
        detail: String,
    },
    /// smbd ran but did not accept connections in time.
    #[error("smbd did not accept connections on {addr} within {secs} s")]
    NotListening {
        /// Where it should listen.
        addr: SocketAddr,
        /// How long we waited.
        secs: u64,
    },
}

impl SmbError {
    /// The catalogue code: every failure of the SMB server is `SMB_SERVER_FAILED`.
    pub fn code(&self) -> Code {
        Code::SMB_SERVER_FAILED
    }
}

/// What the SMB server is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmbState {
    /// Being started (configuration, password, waiting for it to listen).
    Starting,
    /// Accepting connections.
    Running,
    /// It died or failed to start; it is started again after a back-off.
    Restarting,
    /// smbd (or smbpasswd) is not installed: no SMB serving.
    NotInstalled,
    /// Stopped with the agent.
    Stopped,
}

/// The SMB server in `contentdist status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmbStatus {
    /// What it is doing.
    pub state: SmbState,
    /// Where peers reach it: `smb://ADDRESS:PORT/contentdist`.
    pub url: String,
    /// Always `mandatory` (SMB 3.0 at least).
    pub signing: String,
    /// smbd's process id while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How many times smbd was started again after it died or failed.
    pub restarts: u32,
    /// Data bytes smbd sent to peers in answers to READs, over every run of it
    /// (from its profiling counters, read with `smbstatus -P` every
    /// [`SERVED_POLL`] and when it ends); 0 without `smbstatus`.
    #[serde(default)]
    pub bytes_served: u64,
    /// The last failure, with its code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its configuration file (under `CacheDir/smb/`).
    pub config: PathBuf,
    /// Machine accounts (`AuthenticatedUsers` 1 with a `MachineKey`); absent when
    /// they are not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_accounts: Option<MachineAccountsStatus>,
}

/// Machine accounts on the SMB server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineAccountsStatus {
    /// How many `HOSTNAME$` accounts are registered (one per host heard).
    pub registered: u32,
    /// Why they cannot log on over SMB (libnss-wrapper missing, a failed
    /// registration), with its code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How to run the SMB server.
#[derive(Clone, Debug)]
pub struct SmbShareOptions {
    /// The configuration's settings (directories, address, port).
    pub conf: ConfOptions,
    /// The P2P account's password (from the announced key).
    pub p2p_password: String,
    /// The smbd binary; `None`: `/usr/sbin/smbd`, else the first on `PATH`.
    pub smbd: Option<PathBuf>,
    /// The smbpasswd binary; `None`: `/usr/bin/smbpasswd`, else the first on `PATH`.
    pub smbpasswd: Option<PathBuf>,
    /// The site's machine key when machine accounts are accepted
    /// (`AuthenticatedUsers` 1); `None`: the P2P account only.
    pub machine_key: Option<Vec<u8>>,
}

/// How often the bytes smbd served are read while it runs.
pub const SERVED_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// The running SMB server (or the record that it cannot run).
#[derive(Clone, Debug)]
pub struct SmbShare {
    status: watch::Receiver<SmbStatus>,
    password: Arc<watch::Sender<String>>,
    hosts: Option<mpsc::UnboundedSender<String>>,
}

/// The first of `candidates` that exists, else `name` on `PATH`.
fn find_binary(explicit: &Option<PathBuf>, candidates: &[&str], name: &str) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.clone());
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(name))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .find(|p| p.is_file())
}

/// `smb://ADDRESS:PORT/contentdist`.
pub fn share_url(addr: IpAddr, port: u16) -> String {
    format!("smb://{}/{SHARE_NAME}", SocketAddr::new(addr, port))
}

impl SmbShare {
    /// Start the task `smb server` on `tasks`. No smbd installed: logged once (with
    /// [`SmbError::NotInstalled`]'s words and code), and the returned share says
    /// `not_installed` for good.
    pub fn start(mut opts: SmbShareOptions, tasks: &Tasks) -> SmbShare {
        let status = SmbStatus {
            state: SmbState::Starting,
            url: share_url(opts.conf.listen, opts.conf.port),
            signing: "mandatory".into(),
            pid: None,
            restarts: 0,
            bytes_served: 0,
            error: None,
            config: opts.conf.conf_file(),
            machine_accounts: None,
        };
        let smbd = find_binary(&opts.smbd, &["/usr/sbin/smbd"], "smbd");
        let smbpasswd = find_binary(&opts.smbpasswd, &["/usr/bin/smbpasswd"], "smbpasswd");
        let (password_tx, password_rx) = watch::channel(opts.p2p_password.clone());
        let (smbd, smbpasswd) = match (smbd, smbpasswd) {
            (Some(a), Some(b)) => (a, b),
            (a, _) => {
                let e = SmbError::NotInstalled(if a.is_none() { "smbd" } else { "smbpasswd" });
                tracing::warn!(code = %e.code(), "SMB peer copy (P2PEnabled 0x01) cannot serve: {e}");
                let status = SmbStatus {
                    state: SmbState::NotInstalled,
                    error: Some(format!("{} {e}", e.code())),
                    ..status
                };
                return SmbShare {
                    status: watch::channel(status).1,
                    password: Arc::new(password_tx),
                    hosts: None,
                };
            }
        };
        let (machines, status) = match opts.machine_key {
            None => (None, status),
            Some(key) => match machines::find_nss_wrapper() {
                Some(lib) => {
                    opts.conf.machine_accounts = true;
                    let status = SmbStatus {
                        machine_accounts: Some(MachineAccountsStatus::default()),
                        ..status
                    };
                    (Some(machines::Machines::new(key, lib)), status)
                }
                None => {
                    let e = SmbError::NoNssWrapper;
                    tracing::warn!(code = %e.code(), "SMB: {e}");
                    let m = MachineAccountsStatus {
                        registered: 0,
                        error: Some(format!("{} {e}", e.code())),
                    };
                    let status = SmbStatus {
                        machine_accounts: Some(m),
                        ..status
                    };
                    (None, status)
                }
            },
        };
        let (hosts_tx, hosts_rx) = mpsc::unbounded_channel();
        let hosts = machines.is_some().then_some(hosts_tx);
        let (status_tx, status_rx) = watch::channel(status);
        // Optional: without it the share serves, uncounted.
        let smbstatus = find_binary(&None, &["/usr/bin/smbstatus"], "smbstatus");
        let run = supervise::Supervisor {
            conf: opts.conf,
            smbd,
            smbpasswd,
            smbstatus,
            served_before: 0,
            status: status_tx,
            password: password_rx,
            machines,
            hosts: hosts_rx,
        };
        tasks.spawn("smb server", move |stop| run.run(stop));
        SmbShare {
            status: status_rx,
            password: Arc::new(password_tx),
            hosts,
        }
    }

    /// The server's status now.
    pub fn status(&self) -> SmbStatus {
        self.status.borrow().clone()
    }

    /// Follow the status as it changes (tests wait on it).
    pub fn watch(&self) -> watch::Receiver<SmbStatus> {
        self.status.clone()
    }

    /// Set a new P2P password (the announced key changed): written to smbd's
    /// password database at once, and at every start of smbd.
    pub fn set_p2p_password(&self, password: String) {
        self.password.send_replace(password);
    }

    /// Where to send the host names heard in elections, for their machine accounts
    /// (give it to [`crate::subnet::SubnetOptions::heard_hosts`]); `None` when
    /// this server accepts no machine accounts.
    pub fn heard_hosts(&self) -> Option<mpsc::UnboundedSender<String>> {
        self.hosts.clone()
    }
}

#[cfg(test)]
mod machine_tests;
#[cfg(test)]
pub(crate) mod tests;
