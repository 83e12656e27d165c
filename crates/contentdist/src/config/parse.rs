//! Reading `contentdist.toml`: walks the parsed document key by key (in file order, so
//! the first mistake in the file is the one reported), converts and checks each value.
//!
//! The document is walked by hand rather than through `#[derive(Deserialize)]` so that
//! every message can name the file and the key, accept registry-style numbers
//! (`"0x61"`), and suggest the key an unknown one was probably meant to be.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{closest, line_column};
use super::{
    Config, ConfigError, LogFormat, LogLevel, MachineType, P2PEnabled, SiteKey, SpecialNetShare,
    SslSettings, Subnet, KEYS, PLATFORM_KEYS,
};
use crate::codes::SuccessCodes;

const INTEGER: &str = "an integer (97, 0x61 or \"0x61\")";
const STRING: &str = "a string";
const LIST: &str = "a comma-separated string or an array of strings";
const BOOLEAN: &str = "a boolean (true or false)";
const TABLE: &str = "a table ([Platform])";
const FIREWALL_MODE: &str = "\"auto\", true or false";
const CODES: &str = "a string of codes and ranges such as \"0x205A,0x2050-0x2058\"";

/// Parses and validates `text`, read from `source`.
pub(super) fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
    let root = DeTable::parse(text).map_err(|e| {
        let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
        ConfigError::Syntax {
            file: source.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let reader = Reader {
        file: source,
        base: source.parent().unwrap_or(Path::new("")),
    };
    let mut config = Config::default();
    for (key, value) in in_file_order(root.get_ref()) {
        reader.apply(&mut config, key, value)?;
    }
    reader.check_together(&config)?;
    Ok(config)
}

/// The table's entries sorted by where they appear in the file.
fn in_file_order<'t, 'i>(table: &'t DeTable<'i>) -> Vec<(&'t str, &'t DeValue<'i>)> {
    let mut entries: Vec<(&Spanned<_>, &Spanned<DeValue<'i>>)> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
        .into_iter()
        .map(|(k, v)| (k.get_ref().as_ref(), v.get_ref()))
        .collect()
}

/// Converts values, knowing which file they come from.
struct Reader<'a> {
    file: &'a Path,
    /// The file's directory: the base of relative paths.
    base: &'a Path,
}

impl Reader<'_> {
    fn apply(&self, c: &mut Config, key: &str, v: &DeValue<'_>) -> Result<(), ConfigError> {
        match key {
            "P2PEnabled" => {
                let p = P2PEnabled(self.u32(key, v)?);
                if p.unknown_bits() != 0 {
                    return Err(
                        self.invalid(key, unknown_bits(p.unknown_bits(), &P2PEnabled::legend()))
                    );
                }
                c.p2p_enabled = p;
            }
            "P2PHttpPort" => c.p2p_http_port = self.port(key, v)?,
            "P2PHttpsPort" => c.p2p_https_port = self.port(key, v)?,
            "P2PSmbPort" => {
                c.p2p_smb_port = self.ranged(
                    key,
                    v,
                    1,
                    65535,
                    "TCP port; 0 is not allowed (peers must know it)",
                )? as u16
            }
            "ServePaceFactor" => {
                c.serve_pace_factor =
                    self.ranged(key, v, 0, 1000, "times the origin's rate; 0 = not paced")? as u32
            }
            "MaxServingConnections" => {
                c.max_serving_connections =
                    self.ranged(key, v, 0, 4096, "connections; 0 = no limit")? as u32
            }
            "P2P_Port" => c.p2p_port = self.port(key, v)?,
            "P2PSslSettings" => {
                let s = SslSettings(self.u32(key, v)?);
                if s.unknown_bits() != 0 {
                    return Err(
                        self.invalid(key, unknown_bits(s.unknown_bits(), &SslSettings::legend()))
                    );
                }
                c.p2p_ssl_settings = s;
            }
            "P2PClientCertWaitPeriodMins" => {
                c.p2p_client_cert_wait_period_mins = self.u32(key, v)?
            }
            "P2PClientCertRetryMins" => {
                c.p2p_client_cert_retry_mins = self.ranged(
                    key,
                    v,
                    1,
                    1440,
                    "minutes between looks for a client certificate",
                )? as u32
            }
            "CertIssuer" => c.cert_issuer = self.list(key, v)?,
            "CertSubject" => c.cert_subject = self.list(key, v)?,
            "AuthenticatedUsers" => {
                c.authenticated_users = self.ranged(
                    key,
                    v,
                    0,
                    2,
                    "0 everyone, 1 authenticated users, 2 P2P account only",
                )? as u32
            }
            "SpecialNetShare" => c.special_net_share = SpecialNetShare(self.u32(key, v)?),
            "P2PElectionWeight" => {
                let w = self.ranged(
                    key,
                    v,
                    0,
                    99,
                    "0 = never master; server 61, default 50, laptop 40, wireless 30",
                )?;
                c.p2p_election_weight = Some(w as u8);
            }
            "SuccessCodes" => c.success_codes = self.codes(key, v)?,
            "DPNotAvailableCodes" => c.dp_not_available_codes = self.codes(key, v)?,
            "BlockSize" => {
                let n = self.ranged(key, v, 4096, 4_194_304, "bytes, a multiple of 4096")?;
                if n % 4096 != 0 {
                    return Err(self.invalid(key, format!("{n} is not a multiple of 4096")));
                }
                c.block_size = n as u32;
            }
            "MaxWorkRate" => {
                c.max_work_rate = self.ranged(key, v, 1, 100, "percent of WanRateKbps")? as u32
            }
            "CacheCleanCycleHrs" => c.cache_clean_cycle_hrs = self.u32(key, v)?,
            "MaxCacheDays" => c.max_cache_days = self.u32(key, v)?,
            "MaxCacheSizeMB" => c.max_cache_size_mb = self.number(key, v)?,
            "PercentAvailableDisk" => {
                c.percent_available_disk = self.ranged(
                    key,
                    v,
                    0,
                    99,
                    "0 = off, else the percent of the cache file system kept free",
                )? as u32
            }
            "NomadInhibitedSubnets" => {
                c.nomad_inhibited_subnets = self
                    .list(key, v)?
                    .iter()
                    .map(|s| s.parse::<Subnet>().map_err(|m| self.invalid(key, m)))
                    .collect::<Result<_, _>>()?
            }
            "CacheDir" => c.cache_dir = self.path(key, v)?,
            "CertStoreDir" => c.cert_store_dir = self.path(key, v)?,
            "CertStoreRefreshSecs" => {
                c.cert_store_refresh_secs =
                    self.ranged(key, v, 0, 86_400, "seconds; 0 = the store is not watched")? as u32
            }
            "BootImageCertFile" => {
                let text = self.string(key, v)?.trim();
                c.boot_image_cert_file = (!text.is_empty()).then(|| self.base.join(text));
            }
            "HostName" | "Fqdn" => {
                let text = self.string(key, v)?.trim();
                let name = if text.is_empty() {
                    None
                } else {
                    super::host::check_dns_name(text).map_err(|m| self.invalid(key, m))?;
                    Some(text.to_string())
                };
                if key == "HostName" {
                    c.host_name = name;
                } else {
                    c.fqdn = name;
                }
            }
            "ControlSocket" => c.control_socket = self.path(key, v)?,
            "OriginUrl" => c.origin_url = self.origin_url(key, v)?,
            "OriginCaFile" => {
                let text = self.string(key, v)?.trim();
                c.origin_ca_file = (!text.is_empty()).then(|| self.base.join(text));
            }
            "ListenAddress" => c.listen_address = self.ip(key, v)?,
            "MetricsAddress" => {
                let text = self.string(key, v)?.trim();
                c.metrics_address = if text.is_empty() {
                    None
                } else {
                    Some(text.parse().map_err(|_| {
                        self.invalid(
                            key,
                            format!("{text:?} is not an address and port such as \"127.0.0.1:9779\" (empty = no metrics listener)"),
                        )
                    })?)
                };
            }
            "Site" => c.site = self.string(key, v)?.trim().to_string(),
            "ElectionAddress" => {
                let ip = self.ip(key, v)?;
                if ip.is_unspecified() {
                    let why = format!("{ip} cannot be a destination; use the subnet's broadcast address (255.255.255.255 by default)");
                    return Err(self.invalid(key, why));
                }
                c.election_address = ip;
            }
            "ManageFirewall" => {
                c.manage_firewall = match v {
                    DeValue::Boolean(true) => super::FirewallMode::On,
                    DeValue::Boolean(false) => super::FirewallMode::Off,
                    DeValue::String(s) => s.parse().map_err(|m| self.invalid(key, m))?,
                    other => return Err(self.wrong_type(key, FIREWALL_MODE, other)),
                }
            }
            "FirewallScope" => {
                c.firewall_scope = self
                    .string(key, v)?
                    .parse()
                    .map_err(|m| self.invalid(key, m))?
            }
            "FirewallCheckSecs" => {
                c.firewall_check_secs = self.ranged(
                    key,
                    v,
                    0,
                    86_400,
                    "seconds between checks of the firewall table; 0 = at start only",
                )? as u32
            }
            "WanRateKbps" => c.wan_rate_kbps = self.number(key, v)?,
            "OriginRetries" => {
                c.origin_retries =
                    self.ranged(key, v, 0, 100, "retries after the first attempt")? as u32
            }
            "OriginStallTimeoutSecs" => {
                c.origin_stall_timeout_secs = self.ranged(key, v, 1, 3600, "seconds")? as u32
            }
            "OriginConnectTimeoutSecs" => {
                c.origin_connect_timeout_secs = self.ranged(key, v, 1, 3600, "seconds")? as u32
            }
            "Preboot" => c.preboot = self.boolean(key, v)?,
            "MachineType" => {
                c.machine_type = self
                    .string(key, v)?
                    .parse::<MachineType>()
                    .map_err(|m| self.invalid(key, m))?
            }
            "SiteKey" => {
                let text = self.string(key, v)?;
                c.site_key = match text {
                    "" => None,
                    _ => Some(SiteKey::new(text).map_err(|m| self.invalid(key, m))?),
                };
            }
            "MachineKey" => {
                let text = self.string(key, v)?;
                c.machine_key = match text {
                    "" => None,
                    _ => Some(SiteKey::new(text).map_err(|m| self.invalid(key, m))?),
                };
            }
            "LogLevel" => {
                c.log_level = self
                    .string(key, v)?
                    .parse::<LogLevel>()
                    .map_err(|m| self.invalid(key, m))?
            }
            "LogFormat" => {
                c.log_format = self
                    .string(key, v)?
                    .parse::<LogFormat>()
                    .map_err(|m| self.invalid(key, m))?
            }
            "Platform" => self.platform(c, v)?,
            _ => return Err(self.unknown(key.to_string(), closest(key, KEYS).map(str::to_string))),
        }
        Ok(())
    }

    fn platform(&self, c: &mut Config, v: &DeValue<'_>) -> Result<(), ConfigError> {
        let DeValue::Table(table) = v else {
            return Err(self.wrong_type("Platform", TABLE, v));
        };
        for (key, value) in in_file_order(table) {
            match key {
                "thumbprint" => {
                    c.platform_thumbprint = self.thumbprint("Platform.thumbprint", value)?
                }
                _ => {
                    let suggestion = closest(key, PLATFORM_KEYS).map(|k| format!("Platform.{k}"));
                    return Err(self.unknown(format!("Platform.{key}"), suggestion));
                }
            }
        }
        Ok(())
    }

    /// Checks between keys, once every key is read.
    fn check_together(&self, c: &Config) -> Result<(), ConfigError> {
        if c.p2p_ssl_settings.client_cert_auth() && !c.p2p_enabled.has_https() {
            return Err(ConfigError::Conflict {
                file: self.file.to_path_buf(),
                key: "P2PSslSettings".into(),
                other: "P2PEnabled".into(),
                message: format!(
                    "0x2 (certificate client authentication) needs HTTPS (0x40) in P2PEnabled, which is 0x{:X} ({})",
                    c.p2p_enabled.0,
                    c.p2p_enabled.describe()
                ),
            });
        }
        if c.special_net_share.machine_account() && c.machine_key.is_none() {
            return Err(ConfigError::Conflict {
                file: self.file.to_path_buf(),
                key: "SpecialNetShare".into(),
                other: "MachineKey".into(),
                message: "0x80 (authenticate with the machine account) needs the site's MachineKey"
                    .into(),
            });
        }
        let both = c.p2p_enabled.has_http() && c.p2p_enabled.has_https();
        if both && c.p2p_http_port != 0 && c.p2p_http_port == c.p2p_https_port {
            return Err(ConfigError::Conflict {
                file: self.file.to_path_buf(),
                key: "P2PHttpsPort".into(),
                other: "P2PHttpPort".into(),
                message: format!(
                    "HTTP and HTTPS are both enabled on port {}; they need different ports",
                    c.p2p_http_port
                ),
            });
        }
        Ok(())
    }

    // ---- errors ----

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &DeValue<'_>) -> ConfigError {
        ConfigError::WrongType {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            expected,
            found: found.type_str(),
        }
    }

    fn unknown(&self, key: String, suggestion: Option<String>) -> ConfigError {
        ConfigError::UnknownKey {
            file: self.file.to_path_buf(),
            key,
            suggestion,
        }
    }

    // ---- value conversions ----

    /// A non-negative integer: a TOML integer in any radix, or a string holding
    /// `0x`-hex or decimal digits (as copied from the registry).
    fn number(&self, key: &str, v: &DeValue<'_>) -> Result<u64, ConfigError> {
        let (digits, radix) = match v {
            DeValue::Integer(i) => (i.as_str().to_string(), i.radix()),
            DeValue::String(s) => {
                let t = s.trim();
                match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => (hex.to_string(), 16),
                    None => (t.to_string(), 10),
                }
            }
            other => return Err(self.wrong_type(key, INTEGER, other)),
        };
        if digits.starts_with('-') {
            return Err(self.invalid(key, format!("{} is negative", written(v))));
        }
        let all_digits = !digits.is_empty() && digits.chars().all(|ch| ch.is_digit(radix));
        match u64::from_str_radix(&digits, radix) {
            Ok(n) => Ok(n),
            Err(_) if all_digits => Err(self.invalid(key, format!("{} is too large", written(v)))),
            Err(_) => Err(self.invalid(
                key,
                format!(
                    "{} is not a number (write 97, 0x61 or \"0x61\")",
                    written(v)
                ),
            )),
        }
    }

    /// A number in `min..=max`; `hint` says what the number means.
    fn ranged(
        &self,
        key: &str,
        v: &DeValue<'_>,
        min: u64,
        max: u64,
        hint: &str,
    ) -> Result<u64, ConfigError> {
        let n = self.number(key, v)?;
        if !(min..=max).contains(&n) {
            return Err(self.invalid(key, format!("{n} is out of range {min}..={max} ({hint})")));
        }
        Ok(n)
    }

    fn u32(&self, key: &str, v: &DeValue<'_>) -> Result<u32, ConfigError> {
        Ok(self.ranged(key, v, 0, u32::MAX.into(), "a 32-bit value")? as u32)
    }

    fn port(&self, key: &str, v: &DeValue<'_>) -> Result<u16, ConfigError> {
        Ok(self.ranged(key, v, 0, 65535, "a port; 0 = any free port")? as u16)
    }

    fn string<'v>(&self, key: &str, v: &'v DeValue<'_>) -> Result<&'v str, ConfigError> {
        match v {
            DeValue::String(s) => Ok(s.as_ref()),
            other => Err(self.wrong_type(key, STRING, other)),
        }
    }

    fn boolean(&self, key: &str, v: &DeValue<'_>) -> Result<bool, ConfigError> {
        match v {
            DeValue::Boolean(b) => Ok(*b),
            other => Err(self.wrong_type(key, BOOLEAN, other)),
        }
    }

    /// The product's comma-separated list (items trimmed, empty items dropped), or a
    /// TOML array of strings, whose items may then hold commas (issuer names often do).
    fn list(&self, key: &str, v: &DeValue<'_>) -> Result<Vec<String>, ConfigError> {
        let items: Vec<String> = match v {
            DeValue::String(s) => s.split(',').map(str::to_string).collect(),
            DeValue::Array(array) => array
                .iter()
                .map(|item| match item.get_ref() {
                    DeValue::String(s) => Ok(s.to_string()),
                    other => Err(self.wrong_type(key, LIST, other)),
                })
                .collect::<Result<_, _>>()?,
            other => return Err(self.wrong_type(key, LIST, other)),
        };
        Ok(items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }

    fn codes(&self, key: &str, v: &DeValue<'_>) -> Result<SuccessCodes, ConfigError> {
        let text = match v {
            DeValue::String(s) => s.to_string(),
            // A single code written as a TOML number.
            DeValue::Integer(_) => self.number(key, v)?.to_string(),
            other => return Err(self.wrong_type(key, CODES, other)),
        };
        text.parse().map_err(|e| self.invalid(key, format!("{e}")))
    }

    /// A non-empty path, resolved against the settings file's directory.
    fn path(&self, key: &str, v: &DeValue<'_>) -> Result<PathBuf, ConfigError> {
        let text = self.string(key, v)?.trim();
        if text.is_empty() {
            return Err(self.invalid(key, "the path is empty"));
        }
        Ok(self.base.join(text))
    }

    fn ip(&self, key: &str, v: &DeValue<'_>) -> Result<IpAddr, ConfigError> {
        let text = self.string(key, v)?.trim();
        text.parse()
            .map_err(|_| self.invalid(key, format!("'{text}' is not an IPv4 or IPv6 address")))
    }

    /// `http://` or `https://` with a host, no query or fragment (paths are appended
    /// to it); stored with a lower-case scheme and without trailing slashes.
    fn origin_url(&self, key: &str, v: &DeValue<'_>) -> Result<Option<String>, ConfigError> {
        let text = self.string(key, v)?.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let bad = |why: &str| self.invalid(key, format!("'{text}' {why}"));
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("is not a URL (expected http://HOST/... or https://HOST/...)"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("must start with http:// or https://"));
        }
        if rest.contains(['?', '#']) {
            return Err(bad(
                "must not have a query or fragment: content paths are appended to it",
            ));
        }
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(bad("has no host"));
        }
        let url = format!("{scheme}://{}", rest.trim_end_matches('/'));
        let uri: http::Uri = url
            .parse()
            .map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("has no host"));
        }
        Ok(Some(url))
    }

    /// Empty, or a SHA-1 thumbprint: 40 hex digits. Spaces, colons and the invisible
    /// marks Windows' certificate dialog puts in copied text are dropped; stored upper-case.
    fn thumbprint(&self, key: &str, v: &DeValue<'_>) -> Result<Option<String>, ConfigError> {
        let text = self.string(key, v)?;
        let hex: String = text
            .chars()
            .filter(|ch| !matches!(ch, ' ' | '\t' | ':' | '\u{200e}' | '\u{200f}' | '\u{feff}'))
            .collect();
        if hex.is_empty() {
            return Ok(None);
        }
        if hex.len() != 40 || !hex.chars().all(|ch| ch.is_ascii_hexdigit()) {
            let why = format!("'{text}' is not a SHA-1 thumbprint (40 hex digits)");
            return Err(self.invalid(key, why));
        }
        Ok(Some(hex.to_ascii_uppercase()))
    }
}

/// The value as the administrator wrote it, for messages.
fn written(v: &DeValue<'_>) -> String {
    match v {
        DeValue::Integer(i) if i.radix() == 16 => format!("0x{}", i.as_str()),
        DeValue::Integer(i) if i.radix() == 8 => format!("0o{}", i.as_str()),
        DeValue::Integer(i) if i.radix() == 2 => format!("0b{}", i.as_str()),
        DeValue::Integer(i) => i.as_str().to_string(),
        DeValue::String(s) => format!("'{}'", s.trim()),
        other => other.type_str().to_string(),
    }
}

fn unknown_bits(bits: u32, legend: &str) -> String {
    format!("unknown bits 0x{bits:X} (known: {legend})")
}
