//! Printing the effective settings: `describe` for people (masks in words, secrets
//! hidden) and `to_toml` for a file that loads back to the same `Config`.
//!
//! `describe` is a settings file too: a setting that is not set (the host name from
//! the system, no origin) or whose value is hidden (a secret) is written as a comment,
//! so the text loads back to the same settings, secrets apart.

use std::path::Path;

use super::{Config, KEYS};

/// Where the `# meaning` column starts, when the `Key = value` part is short enough.
const COMMENT_COLUMN: usize = 44;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Describe,
    Toml,
}

pub(super) fn describe(c: &Config) -> String {
    render(c, Mode::Describe)
}

pub(super) fn to_toml(c: &Config) -> String {
    let mut out = String::from(
        "# contentdist settings: effective values, every key written out.\n\
         # Keys and meanings: see contentdist.example.toml.\n\n",
    );
    out.push_str(&render(c, Mode::Toml));
    out
}

pub(super) fn describe_json(c: &Config) -> serde_json::Value {
    let mut settings = serde_json::Map::new();
    for key in KEYS {
        let (value, note) = entry(c, key, Mode::Describe);
        let hidden = hidden(c, key);
        let value = if hidden || unset(c, key) {
            serde_json::Value::Null
        } else {
            toml_to_json(&value)
        };
        let mut item = serde_json::Map::new();
        item.insert("value".into(), value);
        if hidden {
            item.insert("hidden".into(), true.into());
        }
        item.insert("meaning".into(), note.into());
        settings.insert(describe_name(key).into(), item.into());
    }
    settings.into()
}

/// A value as `render` writes it, as JSON (`0x61` is 97, a string stays a string).
fn toml_to_json(value: &str) -> serde_json::Value {
    let table: toml::Table = toml::from_str(&format!("v = {value}"))
        .unwrap_or_else(|e| panic!("rendered settings value {value} is not TOML: {e}"));
    serde_json::to_value(&table["v"]).expect("a TOML value converts to JSON")
}

/// The key as `describe` names it: `Platform.thumbprint` for the `[Platform]` table.
fn describe_name(key: &str) -> &str {
    if key == "Platform" {
        "Platform.thumbprint"
    } else {
        key
    }
}

/// A setting the file did not set and whose absence is not a value of its own (the
/// system's host name, the machine type's weight, no origin). `MetricsAddress` is
/// not among them: unset means the default address, and `""` means none.
fn unset(c: &Config, key: &str) -> bool {
    match key {
        "P2PElectionWeight" => c.p2p_election_weight.is_none(),
        "BootImageCertFile" => c.boot_image_cert_file.is_none(),
        "HostName" => c.host_name.is_none(),
        "Fqdn" => c.fqdn.is_none(),
        "OriginUrl" => c.origin_url.is_none(),
        "OriginCaFile" => c.origin_ca_file.is_none(),
        "SiteKey" => c.site_key.is_none(),
        "MachineKey" => c.machine_key.is_none(),
        "Platform" => c.platform_thumbprint.is_none(),
        _ => false,
    }
}

/// A secret that is set: `describe` does not print it.
fn hidden(c: &Config, key: &str) -> bool {
    match key {
        "SiteKey" => c.site_key.is_some(),
        "MachineKey" => c.machine_key.is_some(),
        _ => false,
    }
}

fn render(c: &Config, mode: Mode) -> String {
    let mut out = String::new();
    for key in KEYS {
        let (value, note) = entry(c, key, mode);
        let line = match (key, mode) {
            (&"Platform", Mode::Toml) => format!("\n[Platform]\nthumbprint = {value}"),
            // TOML has no null: an unset weight is written as a comment.
            (&"P2PElectionWeight", Mode::Toml) if c.p2p_election_weight.is_none() => {
                format!("# P2PElectionWeight = {value}")
            }
            (_, Mode::Describe) if unset(c, key) || hidden(c, key) => {
                format!("# {} = {value}", describe_name(key))
            }
            (_, Mode::Describe) => format!("{} = {value}", describe_name(key)),
            _ => format!("{key} = {value}"),
        };
        let last = line.lines().last().unwrap_or_default().chars().count();
        let pad = COMMENT_COLUMN.saturating_sub(last).max(2);
        out.push_str(&format!("{line}{}# {note}\n", " ".repeat(pad)));
    }
    out
}

/// The value of `key` as TOML text, and what it means.
fn entry(c: &Config, key: &str, mode: Mode) -> (String, String) {
    let (value, note): (String, String) = match key {
        "P2PEnabled" => (hex(c.p2p_enabled.0), c.p2p_enabled.describe()),
        "P2PHttpPort" => (
            c.p2p_http_port.to_string(),
            port_note("HTTP", 0x20, c.p2p_http_port, c.p2p_enabled.has_http()),
        ),
        "P2PHttpsPort" => (
            c.p2p_https_port.to_string(),
            port_note("HTTPS", 0x40, c.p2p_https_port, c.p2p_enabled.has_https()),
        ),
        "P2PSmbPort" => (
            c.p2p_smb_port.to_string(),
            port_note("SMB", 0x01, c.p2p_smb_port, c.p2p_enabled.has_smb()),
        ),
        "ServePaceFactor" => (
            c.serve_pace_factor.to_string(),
            if c.serve_pace_factor == 0 {
                "serving is never paced".into()
            } else {
                "while downloading from the origin, serve peers at most this many times its rate (at least 4 MiB/s)".into()
            },
        ),
        "MaxServingConnections" => (
            c.max_serving_connections.to_string(),
            if c.max_serving_connections == 0 {
                "peers' transfers served at once: no limit".into()
            } else {
                "peers' transfers served at once; the next peer is told busy and asks another holder".into()
            },
        ),
        "P2P_Port" => (
            c.p2p_port.to_string(),
            format!("UDP port of elections{}", any_port(c.p2p_port)),
        ),
        "P2PSslSettings" => (hex(c.p2p_ssl_settings.0), c.p2p_ssl_settings.describe()),
        "P2PClientCertWaitPeriodMins" => (
            c.p2p_client_cert_wait_period_mins.to_string(),
            format!(
                "minutes a job waits for a valid client certificate (looking again every {} minutes)",
                c.p2p_client_cert_retry_mins
            ),
        ),
        "P2PClientCertRetryMins" => (
            c.p2p_client_cert_retry_mins.to_string(),
            "minutes between looks for a client certificate while a job waits".into(),
        ),
        "CertIssuer" => (
            list(&c.cert_issuer),
            selection_note("issuer", &c.cert_issuer),
        ),
        "CertSubject" => (
            list(&c.cert_subject),
            selection_note("subject", &c.cert_subject),
        ),
        "AuthenticatedUsers" => (
            c.authenticated_users.to_string(),
            authenticated_users_note(c.authenticated_users),
        ),
        "SpecialNetShare" => (hex(c.special_net_share.0), c.special_net_share.describe()),
        "P2PElectionWeight" => match c.p2p_election_weight {
            Some(w) => (w.to_string(), weight_note(c, "P2PElectionWeight")),
            // Written commented out: the weight in force, from MachineType.
            None => (
                c.machine_type.weight().to_string(),
                weight_note(c, "MachineType"),
            ),
        },
        "SuccessCodes" => (
            quote(&c.success_codes.to_string()),
            "failure codes on which the caller must not download directly from the origin".into(),
        ),
        "DPNotAvailableCodes" => (
            quote(&c.dp_not_available_codes.to_string()),
            "codes on which the next origin is tried".into(),
        ),
        "BlockSize" => (
            c.block_size.to_string(),
            format!("bytes per block ({} KiB)", c.block_size / 1024),
        ),
        "MaxWorkRate" => (
            c.max_work_rate.to_string(),
            "percent of WanRateKbps the master may use for origin downloads".into(),
        ),
        "CacheCleanCycleHrs" => (
            c.cache_clean_cycle_hrs.to_string(),
            off_or(
                c.cache_clean_cycle_hrs.into(),
                "no periodic cache clean-up",
                "hours between cache clean-ups",
            ),
        ),
        "MaxCacheDays" => (
            c.max_cache_days.to_string(),
            off_or(
                c.max_cache_days.into(),
                "no age limit",
                "evict content unused for this many days",
            ),
        ),
        "MaxCacheSizeMB" => (
            c.max_cache_size_mb.to_string(),
            off_or(
                c.max_cache_size_mb,
                "no cache size limit",
                "cache size limit, MiB",
            ),
        ),
        "PercentAvailableDisk" => (
            c.percent_available_disk.to_string(),
            off_or(
                c.percent_available_disk.into(),
                "no free-space target",
                "percent of the cache file system kept free",
            ),
        ),
        "NomadInhibitedSubnets" => {
            let subnets: Vec<String> = c
                .nomad_inhibited_subnets
                .iter()
                .map(ToString::to_string)
                .collect();
            let note = if subnets.is_empty() {
                "none: elections on every subnet"
            } else {
                "no election here: every host downloads for itself"
            };
            (quote(&subnets.join(",")), note.into())
        }
        "CacheDir" => (path(&c.cache_dir), "content cache".into()),
        "CertStoreDir" => (
            path(&c.cert_store_dir),
            "certificate store: my/ (own certificates and keys), trusted/ (CAs)".into(),
        ),
        "CertStoreRefreshSecs" => (
            c.cert_store_refresh_secs.to_string(),
            if c.cert_store_refresh_secs == 0 {
                "the store is read at start and at each client-certificate retry only".into()
            } else {
                "seconds between looks at the certificate store".into()
            },
        ),
        "BootImageCertFile" => match &c.boot_image_cert_file {
            Some(file) => (
                path(file),
                "the boot image's client certificate (preboot first; else when the store has none)"
                    .into(),
            ),
            None => (quote(""), "no boot-image client certificate".into()),
        },
        "HostName" => match &c.host_name {
            Some(n) => (
                quote(n),
                "host name certificates are matched against".into(),
            ),
            None => (
                quote(""),
                format!("from the system: {}", c.host_name_in_force()),
            ),
        },
        "Fqdn" => match &c.fqdn {
            Some(n) => (quote(n), "FQDN certificates are matched against".into()),
            None => (
                quote(""),
                format!("from the resolver: {}", c.fqdn_in_force()),
            ),
        },
        "ControlSocket" => (
            path(&c.control_socket),
            "control socket of the local agent".into(),
        ),
        "OriginUrl" => match &c.origin_url {
            Some(url) => (quote(url), "origin (distribution point) base URL".into()),
            None => (quote(""), "no origin configured".into()),
        },
        "OriginCaFile" => match &c.origin_ca_file {
            Some(file) => (path(file), "CA bundle trusted for an HTTPS origin".into()),
            None => (quote(""), "system roots trusted for an HTTPS origin".into()),
        },
        "MetricsAddress" => match c.metrics_address {
            Some(a) => (
                quote(&a.to_string()),
                "Prometheus metrics at http://ADDRESS/metrics".into(),
            ),
            None => (quote(""), "no metrics listener".into()),
        },
        "Site" => (
            quote(&c.site),
            "site name, a label of contentdist_agent_info".into(),
        ),
        "ListenAddress" => (
            quote(&c.listen_address.to_string()),
            "address of the peer-copy listeners".into(),
        ),
        "ElectionAddress" => (
            quote(&c.election_address.to_string()),
            "destination of election broadcasts".into(),
        ),
        "ManageFirewall" => (
            c.manage_firewall.as_toml().into(),
            match c.manage_firewall {
                crate::config::FirewallMode::Auto => "nftables table inet contentdist for the agent's ports when root with nft installed (not on loopback)",
                crate::config::FirewallMode::On => "nftables table inet contentdist for the agent's ports",
                crate::config::FirewallMode::Off => "the firewall is not touched",
            }
            .into(),
        ),
        "FirewallScope" => (
            quote(c.firewall_scope.as_str()),
            match c.firewall_scope {
                crate::config::FirewallScope::Subnet => "the firewall table accepts the agent's subnet(s) only",
                crate::config::FirewallScope::Any => "the firewall table accepts any source",
            }
            .into(),
        ),
        "FirewallCheckSecs" => (
            c.firewall_check_secs.to_string(),
            off_or(
                c.firewall_check_secs.into(),
                "the firewall table is applied at start only",
                "seconds between checks (and repairs) of the firewall table",
            ),
        ),
        "WanRateKbps" => (
            c.wan_rate_kbps.to_string(),
            match c.origin_rate_limit_bytes_per_sec() {
                Some(rate) => format!(
                    "WAN kbit/s; origin downloads limited to {rate} bytes/s (MaxWorkRate {}%)",
                    c.max_work_rate
                ),
                None => "WAN not throttled".into(),
            },
        ),
        "OriginRetries" => (
            c.origin_retries.to_string(),
            "retries per origin request after the first attempt".into(),
        ),
        "OriginStallTimeoutSecs" => (
            c.origin_stall_timeout_secs.to_string(),
            "seconds without a byte before a request is retried".into(),
        ),
        "OriginConnectTimeoutSecs" => (
            c.origin_connect_timeout_secs.to_string(),
            "seconds to connect to the origin".into(),
        ),
        "Preboot" => (
            c.preboot.to_string(),
            if c.preboot {
                "preboot: download only, never master (weight 10)"
            } else {
                "full agent"
            }
            .into(),
        ),
        "MachineType" => (
            quote(c.machine_type.as_str()),
            format!(
                "election weight {} when P2PElectionWeight is not set",
                c.machine_type.weight()
            ),
        ),
        "SiteKey" => match (&c.site_key, mode) {
            (None, _) => (
                quote(""),
                "not set: election messages are not authenticated".into(),
            ),
            (Some(k), Mode::Toml) => (
                quote(k.as_str()),
                "election messages are authenticated".into(),
            ),
            (Some(k), Mode::Describe) => (
                format!("(hidden, {} characters)", k.as_str().chars().count()),
                "election messages are authenticated".into(),
            ),
        },
        "MachineKey" => match (&c.machine_key, mode) {
            (None, _) => (quote(""), "not set: no machine accounts".into()),
            (Some(k), Mode::Toml) => (quote(k.as_str()), "machine accounts can be checked".into()),
            (Some(k), Mode::Describe) => (
                format!("(hidden, {} characters)", k.as_str().chars().count()),
                "machine accounts can be checked".into(),
            ),
        },
        "LogLevel" => (
            quote(c.log_level.as_str()),
            "most detailed level logged".into(),
        ),
        "LogFormat" => (
            quote(c.log_format.as_str()),
            match c.log_format {
                crate::config::LogFormat::Text => "one line of text per event".into(),
                crate::config::LogFormat::Json => "one JSON object per line".into(),
            },
        ),
        "Platform" => match &c.platform_thumbprint {
            Some(t) => (quote(t), "pinned client certificate (SHA-1)".into()),
            None => (quote(""), "no pinned client certificate".into()),
        },
        _ => unreachable!("every key of KEYS is rendered: {key}"),
    };
    (value, note)
}

fn hex(n: u32) -> String {
    format!("0x{n:X}")
}

/// A TOML basic string, escaped.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// The product's comma-separated form, unless an item holds a comma: then an array,
/// so the value loads back unchanged.
fn list(items: &[String]) -> String {
    if items.iter().any(|i| i.contains(',')) {
        let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
        format!("[{}]", quoted.join(", "))
    } else {
        quote(&items.join(", "))
    }
}

fn any_port(port: u16) -> &'static str {
    if port == 0 {
        " (0: any free port)"
    } else {
        ""
    }
}

fn port_note(protocol: &str, bit: u32, port: u16, enabled: bool) -> String {
    let mut note = format!(
        "TCP port of the {protocol} peer-copy server{}",
        any_port(port)
    );
    if !enabled {
        note.push_str(&format!(
            "; unused: {protocol} (0x{bit:X}) is off in P2PEnabled"
        ));
    }
    note
}

fn selection_note(what: &str, items: &[String]) -> String {
    if items.is_empty() {
        format!("any {what} (certificate selection)")
    } else {
        format!("{what}s preferred in certificate selection (case-insensitive substrings)")
    }
}

fn authenticated_users_note(value: u32) -> String {
    match value {
        0 => "everyone + P2P account; over HTTP/S treated as 2 (P2P account only)",
        1 => "authenticated users (machine credentials) + P2P account",
        _ => "P2P account only",
    }
    .into()
}

fn weight_note(c: &Config, from: &str) -> String {
    let weight = c.election_weight();
    if c.preboot {
        return "effective weight 10 (Preboot)".into();
    }
    let source = if from == "MachineType" {
        format!(
            "not set: effective weight {weight} from MachineType {}",
            c.machine_type
        )
    } else {
        format!("election weight {weight}")
    };
    if weight == 0 {
        format!("{source}: never master, never answers elections")
    } else {
        source
    }
}

fn off_or(value: u64, off: &str, on: &str) -> String {
    if value == 0 {
        format!("off: {off}")
    } else {
        on.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::*;

    fn load(text: &str) -> Config {
        Config::from_toml_str(text, Path::new("/etc/contentdist/contentdist.toml"))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn describe_has_one_line_per_key_with_masks_in_words() {
        let c = load("P2PEnabled = 0x61\nP2PSslSettings = 1\nWanRateKbps = 1000");
        let shown = c.describe();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), KEYS.len(), "{shown}");
        for (line, key) in lines.iter().zip(KEYS) {
            let key = if *key == "Platform" {
                "Platform.thumbprint"
            } else {
                key
            };
            // Settings not set (here the weight, the names, the origin) are comments.
            let line = line.strip_prefix("# ").unwrap_or(line);
            assert!(line.starts_with(&format!("{key} = ")), "{line}");
            assert!(line.contains("  # "), "{line}");
        }
        let p2p = lines[0];
        assert!(
            p2p.starts_with("P2PEnabled = 0x61 ") && p2p.ends_with("# HTTPS + HTTP + SMB"),
            "{p2p}"
        );
        assert!(shown.contains("# PKI server certificate; peers authenticate with the P2P account"));
        assert!(
            shown.contains("SpecialNetShare = 0x2070")
                && shown.contains("# FanOut + other bits 0x2030")
        );
        assert!(shown.contains("\n# P2PElectionWeight = 50 "), "{shown}");
        assert!(
            shown.contains("effective weight 50 from MachineType default"),
            "{shown}"
        );
        assert!(shown.contains("limited to 100000 bytes/s"), "{shown}");
        let default = Config::default().describe();
        assert!(
            default.contains("P2PHttpPort = 5080")
                && default.contains("unused: HTTP (0x20) is off")
        );
    }

    #[test]
    fn describe_is_a_settings_file_that_loads_back_to_the_same_settings() {
        let text = "P2PEnabled = 0x61\nOriginUrl = \"http://origin.example/c\"\n\
                    NomadInhibitedSubnets = \"10.1.2.0/24\"\nMetricsAddress = \"\"\n\
                    HostName = \"dp01\"\n[Platform]\nthumbprint = \"a94a8f7b2c0d1e3f4a5b6c7d8e9fa0b1c2d3e4f5\"";
        for c in [Config::default(), load(text)] {
            let shown = c.describe();
            toml::from_str::<toml::Table>(&shown).unwrap_or_else(|e| panic!("{e}\n{shown}"));
            assert_eq!(load(&shown), c, "{shown}");
        }
        // Not set: commented out, so the system's names, the machine type's weight and
        // "no origin" stay in force when the text is loaded.
        let shown = Config::default().describe();
        for key in [
            "HostName",
            "Fqdn",
            "OriginUrl",
            "P2PElectionWeight",
            "SiteKey",
        ] {
            assert!(shown.contains(&format!("\n# {key} = ")), "{key}: {shown}");
        }
        assert!(shown.contains("\n# Platform.thumbprint = \"\""), "{shown}");
        assert!(!shown.contains("(not set)"), "{shown}");
    }

    #[test]
    fn describe_hides_secrets_in_comments_and_still_loads() {
        let c = load("SiteKey = \"a very secret site key\"\nSpecialNetShare = 0x20F0\nMachineKey = \"site machine secret 42\"");
        let shown = c.describe();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.contains("\n# SiteKey = (hidden, 22 characters)"),
            "{shown}"
        );
        // Loads, without the secrets (which a machine account then needs back).
        let back = Config::from_toml_str(
            &shown.replace("SpecialNetShare = 0x20F0", "SpecialNetShare = 0x2070"),
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(back.site_key, None);
        assert_eq!(back.machine_key, None);
    }

    #[test]
    fn describe_json_has_each_key_with_value_and_meaning() {
        let c =
            load("P2PEnabled = 0x61\nSiteKey = \"a very secret site key\"\nCertIssuer = \"A, B\"");
        let j = c.describe_json();
        assert_eq!(j.as_object().unwrap().len(), KEYS.len());
        assert_eq!(j["P2PEnabled"]["value"], 0x61);
        assert_eq!(j["P2PEnabled"]["meaning"], "HTTPS + HTTP + SMB");
        assert_eq!(j["P2PHttpPort"]["value"], 5080);
        assert_eq!(j["Preboot"]["value"], false);
        assert_eq!(j["CertIssuer"]["value"], "A, B");
        assert_eq!(j["OriginUrl"]["value"], serde_json::Value::Null);
        assert_eq!(j["P2PElectionWeight"]["value"], serde_json::Value::Null);
        assert_eq!(j["SiteKey"]["value"], serde_json::Value::Null);
        assert_eq!(j["SiteKey"]["hidden"], true);
        assert_eq!(j["Platform.thumbprint"]["value"], serde_json::Value::Null);
        assert!(!j.to_string().contains("secret"));
    }

    #[test]
    fn to_toml_round_trips_the_defaults() {
        let c = Config::default();
        assert_eq!(load(&c.to_toml()), c);
    }

    #[test]
    fn to_toml_round_trips_every_key_changed() {
        let text = r#"
            P2PEnabled = 0x6F
            P2PHttpPort = 8080
            P2PHttpsPort = 0
            P2PSmbPort = 4450
            P2P_Port = 11779
            MaxServingConnections = 3
            ServePaceFactor = 0
            P2PSslSettings = 3
            P2PClientCertWaitPeriodMins = 0
            P2PClientCertRetryMins = 1
            CertIssuer = ["CN=Issuing CA, O=Example", "Contoso \"Root\""]
            CertSubject = "host1, host2"
            AuthenticatedUsers = 0
            SpecialNetShare = 0xC6
            P2PElectionWeight = 0
            SuccessCodes = "0x1,0x10-0x20"
            DPNotAvailableCodes = "0x205D"
            BlockSize = 4194304
            MaxWorkRate = 100
            CacheCleanCycleHrs = 24
            MaxCacheDays = 30
            MaxCacheSizeMB = 1048576
            PercentAvailableDisk = 10
            NomadInhibitedSubnets = "10.1.2.0/24,fd00::/8"
            CacheDir = "/srv/cache"
            CertStoreDir = "/srv/certs"
            CertStoreRefreshSecs = 0
            BootImageCertFile = "/srv/boot.p12"
            HostName = "dp01"
            Fqdn = "dp01.branch.example"
            ControlSocket = "/tmp/x.sock"
            OriginUrl = "https://origin.example/content"
            OriginCaFile = "/srv/ca.pem"
            ListenAddress = "127.0.0.2"
            MetricsAddress = "127.0.0.1:0"
            Site = "Branch 12"
            ElectionAddress = "127.255.255.255"
            ManageFirewall = false
            FirewallScope = "any"
            FirewallCheckSecs = 5
            WanRateKbps = 2000
            OriginRetries = 100
            OriginStallTimeoutSecs = 3600
            OriginConnectTimeoutSecs = 1
            Preboot = true
            MachineType = "wireless"
            SiteKey = "0123456789abcdef\\x"
            MachineKey = "machine secret of the site"
            LogLevel = "trace"
            LogFormat = "json"
            [Platform]
            thumbprint = "a94a8f7b2c0d1e3f4a5b6c7d8e9fa0b1c2d3e4f5"
        "#;
        let c = load(text);
        // Every key differs from its default, so the round trip covers every key.
        let ours = c.describe();
        let defaults = Config::default().describe();
        for (a, b) in ours.lines().zip(defaults.lines()) {
            assert_ne!(a, b, "unchanged key in the test");
        }
        let written = c.to_toml();
        assert_eq!(load(&written), c, "{written}");
        assert_eq!(
            c.cert_issuer,
            vec!["CN=Issuing CA, O=Example", "Contoso \"Root\""]
        );
    }
}
