//! Settings: `contentdist.toml`, with the original product's value names and defaults.
//!
//! The file is read, type-checked and validated once, in [`Config::load`], into a plain
//! [`Config`] whose fields hold resolved values: relative paths are already joined to
//! the file's directory, bit masks are known to hold only defined bits, lists are split.
//! Nothing later has to re-check or unwrap a setting. The few `Option` fields mean
//! "not configured" (`OriginUrl = ""`, `SiteKey = ""`, ...), which is a setting in
//! its own right.
//!
//! Numbers may be written as TOML integers (`P2PEnabled = 0x61`, `97`) or as strings
//! (`"0x61"`, `"97"`), because administrators copy values from the Windows registry.
//! Keys are case-sensitive, as in the product; an unknown key is an error that names
//! the closest known key, because a misspelt setting silently ignored is worse.

mod error;
mod firewall;
mod flags;
mod host;
mod parse;
mod render;
mod subnet;
mod values;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::codes::{SuccessCodes, DEFAULT_SUCCESS_CODES};

pub use error::ConfigError;
pub use firewall::{FirewallMode, FirewallScope};
pub use flags::{P2PEnabled, Protocol, Protocols, SpecialNetShare, SslSettings};
pub use host::{system_fqdn, system_host_name};
pub use subnet::Subnet;
pub use values::{LogFormat, LogLevel, MachineType, SiteKey};

/// Where the agent and the CLI look for the settings file by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/contentdist/contentdist.toml";

/// The default `DPNotAvailableCodes`.
pub const DEFAULT_DP_NOT_AVAILABLE_CODES: &str = "0x205A,0x205D";

/// Every top-level key, in the order `describe` and `to_toml` print them.
/// `Platform` is a table holding [`PLATFORM_KEYS`].
pub const KEYS: &[&str] = &[
    "P2PEnabled",
    "P2PHttpPort",
    "P2PHttpsPort",
    "P2PSmbPort",
    "P2P_Port",
    "MaxServingConnections",
    "ServePaceFactor",
    "P2PSslSettings",
    "P2PClientCertWaitPeriodMins",
    "P2PClientCertRetryMins",
    "CertIssuer",
    "CertSubject",
    "AuthenticatedUsers",
    "SpecialNetShare",
    "P2PElectionWeight",
    "SuccessCodes",
    "DPNotAvailableCodes",
    "BlockSize",
    "MaxWorkRate",
    "CacheCleanCycleHrs",
    "MaxCacheDays",
    "MaxCacheSizeMB",
    "PercentAvailableDisk",
    "NomadInhibitedSubnets",
    "CacheDir",
    "CertStoreDir",
    "CertStoreRefreshSecs",
    "BootImageCertFile",
    "HostName",
    "Fqdn",
    "ControlSocket",
    "OriginUrl",
    "OriginCaFile",
    "ListenAddress",
    "MetricsAddress",
    "Site",
    "ElectionAddress",
    "ManageFirewall",
    "FirewallScope",
    "FirewallCheckSecs",
    "WanRateKbps",
    "OriginRetries",
    "OriginStallTimeoutSecs",
    "OriginConnectTimeoutSecs",
    "Preboot",
    "MachineType",
    "SiteKey",
    "MachineKey",
    "LogLevel",
    "LogFormat",
    "Platform",
];

/// The keys of the `[Platform]` table.
pub const PLATFORM_KEYS: &[&str] = &["thumbprint"];

/// The effective settings. Field docs give the key name; see `contentdist.example.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `P2PEnabled`: peer-copy protocols and options (default 0x9).
    pub p2p_enabled: P2PEnabled,
    /// `P2PHttpPort`: TCP port of the HTTP peer-copy server (5080; 0 = any free port).
    pub p2p_http_port: u16,
    /// `P2PHttpsPort`: TCP port of the HTTPS peer-copy server (5443; 0 = any free port).
    pub p2p_https_port: u16,
    /// `P2PSmbPort`: TCP port of the agent's own SMB server (445). Not announced:
    /// like the product's share, every agent of a subnet must use the same port.
    /// No 0: peers could not find a port chosen at random.
    pub p2p_smb_port: u16,
    /// `P2P_Port`: UDP port of elections (1779; 0 = any free port).
    pub p2p_port: u16,
    /// `MaxServingConnections`: peers' connections this agent sends content on at
    /// once (8; 0 = no limit). Ours: the product's limit is its share's 6.
    pub max_serving_connections: u32,
    /// `ServePaceFactor`: while this agent downloads from the origin, it serves
    /// peers at most this many times the origin's rate (8; 0 = never paced).
    pub serve_pace_factor: u32,
    /// `P2PSslSettings`: server certificate source and client authentication (0).
    pub p2p_ssl_settings: SslSettings,
    /// `P2PClientCertWaitPeriodMins`: how long a job waits for a client certificate (1440).
    pub p2p_client_cert_wait_period_mins: u32,
    /// `P2PClientCertRetryMins`: how often a waiting job looks for a client
    /// certificate again (10, as the product; tests shorten it).
    pub p2p_client_cert_retry_mins: u32,
    /// `CertIssuer`: issuer substrings preferred in certificate selection (empty).
    pub cert_issuer: Vec<String>,
    /// `CertSubject`: subject substrings preferred in certificate selection (empty).
    pub cert_subject: Vec<String>,
    /// `AuthenticatedUsers`: 0, 1 (default) or 2, as written; see
    /// [`Config::effective_authenticated_users`].
    pub authenticated_users: u32,
    /// `SpecialNetShare`: machine account, FanOut, IP versions (0x2070).
    pub special_net_share: SpecialNetShare,
    /// `P2PElectionWeight`: 0..=99 when set; see [`Config::election_weight`].
    pub p2p_election_weight: Option<u8>,
    /// `SuccessCodes`: failures on which the caller must not download directly.
    pub success_codes: SuccessCodes,
    /// `DPNotAvailableCodes`: codes on which the next origin is tried (0x205A,0x205D).
    pub dp_not_available_codes: SuccessCodes,
    /// `BlockSize`: bytes per block, 4096..=4194304, a multiple of 4096 (131072).
    pub block_size: u32,
    /// `MaxWorkRate`: percent of `WanRateKbps` the master may use, 1..=100 (80).
    pub max_work_rate: u32,
    /// `CacheCleanCycleHrs`: hours between cache clean-ups (0 = off).
    pub cache_clean_cycle_hrs: u32,
    /// `MaxCacheDays`: evict content unused for this many days (0 = off).
    pub max_cache_days: u32,
    /// `MaxCacheSizeMB`: cache size limit in MiB (0 = off).
    pub max_cache_size_mb: u64,
    /// `PercentAvailableDisk`: keep this percent of the cache file system free (0 = off).
    pub percent_available_disk: u32,
    /// `NomadInhibitedSubnets`: subnets where no election is held (empty).
    pub nomad_inhibited_subnets: Vec<Subnet>,
    /// `[Platform] thumbprint`: pinned client certificate, SHA-1 in upper-case hex.
    pub platform_thumbprint: Option<String>,
    /// `CacheDir`: the content cache (/var/cache/contentdist).
    pub cache_dir: PathBuf,
    /// `CertStoreDir`: the certificate store (/etc/contentdist/certs).
    pub cert_store_dir: PathBuf,
    /// `CertStoreRefreshSecs`: how often the agent reads the store again (5; 0 = not
    /// watched: read at start and at each client-certificate retry only).
    pub cert_store_refresh_secs: u32,
    /// `BootImageCertFile`: the boot image's client certificate (PEM with its key,
    /// or PKCS#12 with the password in `NAME.pass`); `None` = none.
    pub boot_image_cert_file: Option<PathBuf>,
    /// `ControlSocket`: the control socket (/run/contentdist/control.sock).
    pub control_socket: PathBuf,
    /// `OriginUrl`: the origin's base URL, without trailing slash; `None` = not configured.
    pub origin_url: Option<String>,
    /// `OriginCaFile`: PEM CA bundle for an HTTPS origin; `None` = system roots.
    pub origin_ca_file: Option<PathBuf>,
    /// `ListenAddress`: address of the peer-copy listeners (0.0.0.0).
    pub listen_address: IpAddr,
    /// `MetricsAddress`: where `GET /metrics` is answered (127.0.0.1:9779);
    /// `None` (an empty string) = no metrics listener.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// `Site`: free text naming the agent's site, a label of the metrics'
    /// `contentdist_agent_info` ("").
    pub site: String,
    /// `ElectionAddress`: where election broadcasts go (255.255.255.255).
    pub election_address: IpAddr,
    /// `ManageFirewall`: keep the nftables table `inet contentdist` open for the
    /// agent's ports (`"auto"`: when root with `nft` installed and not on loopback).
    pub manage_firewall: FirewallMode,
    /// `FirewallScope`: accept from the agent's subnet(s) (the default) or from any source.
    pub firewall_scope: FirewallScope,
    /// `FirewallCheckSecs`: how often the table is checked and restored (60; 0 =
    /// applied at start only).
    pub firewall_check_secs: u32,
    /// `WanRateKbps`: WAN bandwidth in kbit/s (0 = not throttled).
    pub wan_rate_kbps: u64,
    /// `OriginRetries`: attempts per origin request beyond the first, 0..=100 (5).
    pub origin_retries: u32,
    /// `OriginStallTimeoutSecs`: abort a request that receives no byte this long, 1..=3600 (30).
    pub origin_stall_timeout_secs: u32,
    /// `OriginConnectTimeoutSecs`: origin connect timeout, 1..=3600 (10).
    pub origin_connect_timeout_secs: u32,
    /// `Preboot`: download only, never master, election weight 10 (false).
    pub preboot: bool,
    /// `MachineType`: gives the election weight when `P2PElectionWeight` is not set.
    pub machine_type: MachineType,
    /// `SiteKey`: secret authenticating election messages; `None` = not set.
    pub site_key: Option<SiteKey>,
    /// `MachineKey`: the site's machine-account secret (the analogue of a domain:
    /// every machine holding it can prove it is one of the site's); `None` = not set.
    pub machine_key: Option<SiteKey>,
    /// `LogLevel`: the most detailed level logged (info).
    pub log_level: LogLevel,
    /// `LogFormat`: `text` (the default) or `json`, one object per line.
    pub log_format: LogFormat,
    /// `HostName`: the short host name certificates are matched against; `None` =
    /// the system's ([`Config::host_name_in_force`]).
    pub host_name: Option<String>,
    /// `Fqdn`: the fully qualified name certificates are matched against; `None` =
    /// the resolver's ([`Config::fqdn_in_force`]).
    pub fqdn: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            p2p_enabled: P2PEnabled::DEFAULT,
            p2p_http_port: 5080,
            p2p_https_port: 5443,
            p2p_smb_port: 445,
            p2p_port: 1779,
            max_serving_connections: 8,
            serve_pace_factor: 8,
            p2p_ssl_settings: SslSettings(0),
            p2p_client_cert_wait_period_mins: 1440,
            p2p_client_cert_retry_mins: 10,
            cert_issuer: Vec::new(),
            cert_subject: Vec::new(),
            authenticated_users: 1,
            special_net_share: SpecialNetShare::DEFAULT,
            p2p_election_weight: None,
            success_codes: DEFAULT_SUCCESS_CODES
                .parse()
                .expect("the default SuccessCodes parse"),
            dp_not_available_codes: DEFAULT_DP_NOT_AVAILABLE_CODES
                .parse()
                .expect("the default DPNotAvailableCodes parse"),
            block_size: 131_072,
            max_work_rate: 80,
            cache_clean_cycle_hrs: 0,
            max_cache_days: 0,
            max_cache_size_mb: 0,
            percent_available_disk: 0,
            nomad_inhibited_subnets: Vec::new(),
            platform_thumbprint: None,
            cache_dir: PathBuf::from("/var/cache/contentdist"),
            cert_store_dir: PathBuf::from("/etc/contentdist/certs"),
            cert_store_refresh_secs: 5,
            boot_image_cert_file: None,
            control_socket: PathBuf::from("/run/contentdist/control.sock"),
            origin_url: None,
            origin_ca_file: None,
            listen_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            metrics_address: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9779))),
            site: String::new(),
            election_address: IpAddr::V4(Ipv4Addr::BROADCAST),
            manage_firewall: FirewallMode::Auto,
            firewall_scope: FirewallScope::Subnet,
            firewall_check_secs: 60,
            wan_rate_kbps: 0,
            origin_retries: 5,
            origin_stall_timeout_secs: 30,
            origin_connect_timeout_secs: 10,
            preboot: false,
            machine_type: MachineType::Default,
            site_key: None,
            machine_key: None,
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            host_name: None,
            fqdn: None,
        }
    }
}

/// The largest settings file read; a real one is a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

fn read_settings_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_err = |source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    };
    // O_NONBLOCK: opening a FIFO without a writer must not hang; it is refused below.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let meta = f.metadata().map_err(read_err)?;
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    };
    if let Some(kind) = kind {
        return Err(ConfigError::NotAFile {
            file: path.to_path_buf(),
            kind,
        });
    }
    let too_large = |size| ConfigError::TooLarge {
        file: path.to_path_buf(),
        size,
        limit: MAX_CONFIG_BYTES,
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_large(meta.len()));
    }
    // The file may grow while it is read: never read past the limit.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        ))
    })
}

impl Config {
    /// Reads and validates the settings file at `path`; relative paths in it are
    /// resolved against the file's directory.
    /// Anything but a regular file of at most [`MAX_CONFIG_BYTES`] is refused
    /// (0xCD05): `/dev/zero` would fill memory and a FIFO would block for ever.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_settings_file(path)?;
        Config::from_toml_str(&text, path)
    }

    /// Validates settings given as TOML text. `source` is the file name used in error
    /// messages, and its directory is the base of relative paths.
    pub fn from_toml_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
        parse::parse(text, source)
    }

    /// One line per key, `Key = value   # meaning`, every bit mask decoded in words,
    /// for `contentdist config show`. It is a valid settings file that loads back to
    /// the same settings: a setting not set is a comment (`# OriginUrl = ""`), and so
    /// is a secret, which is not shown (`# SiteKey = (hidden, 22 characters)`).
    pub fn describe(&self) -> String {
        render::describe(self)
    }

    /// [`describe`](Self::describe) as JSON, for `contentdist config show --json`: an
    /// object with one member per key (`Platform.thumbprint` for `[Platform]`), each
    /// `{"value": ..., "meaning": "..."}`; `value` is null for a setting not set and
    /// for a secret, which also has `"hidden": true`. Masks are numbers (0x61 is 97).
    pub fn describe_json(&self) -> serde_json::Value {
        render::describe_json(self)
    }

    /// The effective settings as a settings file that loads back to an equal `Config`.
    /// It holds the site key: write it only where the original file could be read.
    pub fn to_toml(&self) -> String {
        render::to_toml(self)
    }

    /// The effective election weight: 10 in preboot; else `P2PElectionWeight` when set;
    /// else the machine type's weight (server 61, default 50, laptop 40, wireless 30).
    /// 0 means: never master, never answer elections.
    pub fn election_weight(&self) -> u8 {
        if self.preboot {
            return 10;
        }
        self.p2p_election_weight
            .unwrap_or_else(|| self.machine_type.weight())
    }

    /// The peer-copy protocols enabled in `P2PEnabled`, in preference order
    /// (HTTPS, HTTP, SMB).
    pub fn peer_protocols(&self) -> Protocols {
        self.p2p_enabled.protocols()
    }

    /// `AuthenticatedUsers` as peer copy over HTTP/S applies it: 0 is treated as 2
    /// (P2P account only), as in the original product.
    pub fn effective_authenticated_users(&self) -> u32 {
        if self.authenticated_users == 0 {
            2
        } else {
            self.authenticated_users
        }
    }

    /// The rate origin downloads may use, in bytes per second: `MaxWorkRate` percent
    /// of `WanRateKbps` (kbit = 1000 bits), at least 1; `None` when not throttled.
    pub fn origin_rate_limit_bytes_per_sec(&self) -> Option<u64> {
        if self.wan_rate_kbps == 0 {
            return None;
        }
        let bits = u128::from(self.wan_rate_kbps) * 1000 * u128::from(self.max_work_rate) / 100;
        Some(u64::try_from(bits / 8).unwrap_or(u64::MAX).max(1))
    }

    /// `OriginStallTimeoutSecs` as a duration.
    pub fn origin_stall_timeout(&self) -> Duration {
        Duration::from_secs(self.origin_stall_timeout_secs.into())
    }

    /// `OriginConnectTimeoutSecs` as a duration.
    pub fn origin_connect_timeout(&self) -> Duration {
        Duration::from_secs(self.origin_connect_timeout_secs.into())
    }

    /// `P2PClientCertWaitPeriodMins` as a duration.
    pub fn client_cert_wait_period(&self) -> Duration {
        Duration::from_secs(u64::from(self.p2p_client_cert_wait_period_mins) * 60)
    }

    /// `P2PClientCertRetryMins` as a duration.
    pub fn client_cert_retry(&self) -> Duration {
        Duration::from_secs(u64::from(self.p2p_client_cert_retry_mins) * 60)
    }

    /// `CertStoreRefreshSecs` as a duration; `None` when the store is not watched.
    pub fn cert_store_refresh(&self) -> Option<Duration> {
        (self.cert_store_refresh_secs > 0)
            .then(|| Duration::from_secs(self.cert_store_refresh_secs.into()))
    }

    /// `FirewallCheckSecs` as a duration; `None` when the table is applied at start only.
    pub fn firewall_check(&self) -> Option<Duration> {
        (self.firewall_check_secs > 0).then(|| Duration::from_secs(self.firewall_check_secs.into()))
    }

    /// `CacheCleanCycleHrs` as a duration; `None` when clean-up is off.
    pub fn cache_clean_cycle(&self) -> Option<Duration> {
        (self.cache_clean_cycle_hrs > 0)
            .then(|| Duration::from_secs(u64::from(self.cache_clean_cycle_hrs) * 3600))
    }

    /// `MaxCacheSizeMB` in bytes (MiB); `None` when there is no size limit.
    pub fn max_cache_size_bytes(&self) -> Option<u64> {
        (self.max_cache_size_mb > 0).then(|| self.max_cache_size_mb.saturating_mul(1 << 20))
    }

    /// True when `ip` is in one of the `NomadInhibitedSubnets`: no election is held
    /// there and every host downloads for itself.
    pub fn is_inhibited(&self, ip: IpAddr) -> bool {
        self.nomad_inhibited_subnets.iter().any(|s| s.contains(ip))
    }
}
