//! Loading, validating and printing `contentdist.toml`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::codes::Code;

const FILE: &str = "/etc/contentdist/contentdist.toml";

fn load(text: &str) -> Config {
    Config::from_toml_str(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(text: &str) -> ConfigError {
    match Config::from_toml_str(text, Path::new(FILE)) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

/// The message, checked to start with the file and the key.
fn message_for(key: &str, text: &str) -> String {
    let e = err(text);
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{FILE}: {key}")),
        "message does not name file and key {key}: {msg}"
    );
    assert_eq!(e.code(), Code::CONFIG_INVALID);
    msg
}

#[test]
fn defaults_are_the_products() {
    let c = Config::default();
    assert_eq!(c.p2p_enabled, P2PEnabled(0x9));
    assert_eq!(
        (c.p2p_http_port, c.p2p_https_port, c.p2p_port),
        (5080, 5443, 1779)
    );
    assert_eq!(c.p2p_ssl_settings, SslSettings(0));
    assert_eq!(c.p2p_client_cert_wait_period_mins, 1440);
    assert!(c.cert_issuer.is_empty() && c.cert_subject.is_empty());
    assert_eq!(c.authenticated_users, 1);
    assert_eq!(c.special_net_share, SpecialNetShare(0x2070));
    assert_eq!(c.p2p_election_weight, None);
    assert_eq!(c.election_weight(), 50);
    assert_eq!(c.success_codes, crate::codes::SuccessCodes::default());
    assert!(c.dp_not_available_codes.contains(Code(0x205A)));
    assert!(c.dp_not_available_codes.contains(Code(0x205D)));
    assert!(!c.dp_not_available_codes.contains(Code(0x205B)));
    assert_eq!((c.block_size, c.max_work_rate), (131072, 80));
    assert_eq!(
        (
            c.cache_clean_cycle_hrs,
            c.max_cache_days,
            c.max_cache_size_mb
        ),
        (0, 0, 0)
    );
    assert_eq!(c.percent_available_disk, 0);
    assert!(c.nomad_inhibited_subnets.is_empty());
    assert_eq!(c.platform_thumbprint, None);
    assert_eq!(c.cache_dir, PathBuf::from("/var/cache/contentdist"));
    assert_eq!(c.cert_store_dir, PathBuf::from("/etc/contentdist/certs"));
    assert_eq!(
        c.control_socket,
        PathBuf::from("/run/contentdist/control.sock")
    );
    assert_eq!(
        (c.origin_url.clone(), c.origin_ca_file.clone()),
        (None, None)
    );
    assert_eq!(c.listen_address, "0.0.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(
        c.election_address,
        "255.255.255.255".parse::<IpAddr>().unwrap()
    );
    assert_eq!(c.wan_rate_kbps, 0);
    assert_eq!(c.origin_rate_limit_bytes_per_sec(), None);
    assert_eq!(c.origin_retries, 5);
    assert_eq!(c.origin_stall_timeout().as_secs(), 30);
    assert_eq!(c.origin_connect_timeout().as_secs(), 10);
    assert!(!c.preboot);
    assert_eq!(c.machine_type, MachineType::Default);
    assert!(c.site_key.is_none());
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.peer_protocols().to_string(), "SMB");
}

#[test]
fn empty_file_gives_the_defaults() {
    assert_eq!(load(""), Config::default());
    assert_eq!(load("# only a comment\n"), Config::default());
}

#[test]
fn example_file_sets_every_key_to_its_default_but_a_working_p2p_enabled() {
    let text = include_str!("../../../../contentdist.example.toml");
    // The product's default is 0x9 (SMB alone); the example enables HTTPS and
    // HTTP too, tried before SMB.
    let expect = Config {
        p2p_enabled: P2PEnabled(0x69),
        ..Config::default()
    };
    assert_eq!(Config::default().p2p_enabled, P2PEnabled(0x9));
    assert_eq!(load(text), expect);
    for key in KEYS {
        let written = match *key {
            "Platform" => "\n[Platform]\n".to_string(),
            "P2PElectionWeight" => "# P2PElectionWeight = 50".to_string(),
            _ => format!("\n{key} = "),
        };
        assert!(text.contains(&written), "example lacks {key}");
    }
    assert!(text.contains("\nthumbprint = \"\""));
}

#[test]
fn numbers_accept_toml_hex_registry_strings_and_decimal() {
    for text in [
        "P2PEnabled = 0x61",
        "P2PEnabled = 97",
        "P2PEnabled = \"0x61\"",
        "P2PEnabled = \"0X61\"",
        "P2PEnabled = \" 97 \"",
        "P2PEnabled = 0o141",
        "P2PEnabled = 0b1100001",
    ] {
        assert_eq!(load(text).p2p_enabled, P2PEnabled(0x61), "{text}");
    }
    assert_eq!(load("BlockSize = 262_144").block_size, 262_144);
    assert_eq!(
        load("MaxCacheSizeMB = \"0x10000\"").max_cache_size_mb,
        65536
    );
}

#[test]
fn bad_numbers_say_what_was_written() {
    let msg = message_for("MaxCacheDays", "MaxCacheDays = -1");
    assert!(msg.ends_with("-1 is negative"), "{msg}");
    let msg = message_for("MaxCacheDays", "MaxCacheDays = \"seven\"");
    assert!(msg.contains("'seven' is not a number"), "{msg}");
    let msg = message_for("MaxCacheDays", "MaxCacheDays = \"0xZZ\"");
    assert!(msg.contains("not a number"), "{msg}");
    let msg = message_for("MaxCacheDays", "MaxCacheDays = 4294967296");
    assert!(msg.contains("out of range 0..=4294967295"), "{msg}");
    let msg = message_for(
        "MaxCacheSizeMB",
        "MaxCacheSizeMB = \"99999999999999999999\"",
    );
    assert!(msg.contains("too large"), "{msg}");
    let msg = message_for("MaxCacheDays", "MaxCacheDays = 1.5");
    assert!(
        msg.contains("expected an integer") && msg.ends_with("found float"),
        "{msg}"
    );
}

#[test]
fn p2p_enabled_unknown_bits_are_refused_with_the_legend() {
    assert_eq!(
        message_for("P2PEnabled", "P2PEnabled = 0x71"),
        format!(
            "{FILE}: P2PEnabled: unknown bits 0x10 (known: 0x01 SMB, 0x02 UDP server, \
             0x04 UDP client, 0x08 net literal names, 0x20 HTTP, 0x40 HTTPS)"
        )
    );
    assert_eq!(load("P2PEnabled = 0x6F").p2p_enabled.0, 0x6F);
}

#[test]
fn ports_allow_zero_and_refuse_more_than_16_bits() {
    let c = load("P2PHttpPort = 0\nP2PHttpsPort = 0\nP2P_Port = 0");
    assert_eq!((c.p2p_http_port, c.p2p_https_port, c.p2p_port), (0, 0, 0));
    for key in ["P2PHttpPort", "P2PHttpsPort", "P2P_Port"] {
        let msg = message_for(key, &format!("{key} = 65536"));
        assert!(msg.contains("65536 is out of range 0..=65535"), "{msg}");
    }
    assert_eq!(load("P2P_Port = 65535").p2p_port, 65535);
}

#[test]
fn http_and_https_on_one_port_is_a_conflict_only_when_both_are_on() {
    let msg = message_for(
        "P2PHttpsPort and P2PHttpPort",
        "P2PEnabled = 0x60\nP2PHttpPort = 8000\nP2PHttpsPort = 8000",
    );
    assert!(msg.contains("port 8000"), "{msg}");
    load("P2PEnabled = 0x20\nP2PHttpPort = 8000\nP2PHttpsPort = 8000");
    load("P2PEnabled = 0x60\nP2PHttpPort = 0\nP2PHttpsPort = 0");
}

#[test]
fn ssl_settings_bits_and_client_auth_needs_https() {
    let msg = message_for("P2PSslSettings", "P2PSslSettings = 4");
    assert!(msg.contains("unknown bits 0x4"), "{msg}");
    let msg = message_for("P2PSslSettings and P2PEnabled", "P2PSslSettings = 2");
    assert!(
        msg.contains("needs HTTPS (0x40)") && msg.contains("0x9"),
        "{msg}"
    );
    let c = load("P2PEnabled = 0x40\nP2PSslSettings = 3");
    assert!(c.p2p_ssl_settings.client_cert_auth() && c.p2p_ssl_settings.pki_server_cert());
    // A PKI server certificate without HTTPS is harmless: it is simply unused.
    load("P2PSslSettings = 1");
}

#[test]
fn cert_issuer_and_subject_are_split_trimmed_and_emptied() {
    let c = load("CertIssuer = \" Contoso CA , ,Fabrikam Issuing CA,\"\nCertSubject = \"host1\"");
    assert_eq!(c.cert_issuer, vec!["Contoso CA", "Fabrikam Issuing CA"]);
    assert_eq!(c.cert_subject, vec!["host1"]);
    let c = load("CertIssuer = [\"CN=Issuing CA, O=Example\", \" \"]");
    assert_eq!(c.cert_issuer, vec!["CN=Issuing CA, O=Example"]);
    let msg = message_for("CertIssuer", "CertIssuer = 5");
    assert!(msg.contains("expected a comma-separated string or an array of strings"));
    message_for("CertSubject", "CertSubject = [1]");
}

#[test]
fn authenticated_users_zero_is_two_over_http() {
    assert_eq!(
        load("AuthenticatedUsers = 0").effective_authenticated_users(),
        2
    );
    assert_eq!(load("AuthenticatedUsers = 0").authenticated_users, 0);
    assert_eq!(
        load("AuthenticatedUsers = 1").effective_authenticated_users(),
        1
    );
    assert_eq!(
        load("AuthenticatedUsers = 2").effective_authenticated_users(),
        2
    );
    let msg = message_for("AuthenticatedUsers", "AuthenticatedUsers = 3");
    assert!(msg.contains("out of range 0..=2"), "{msg}");
}

#[test]
fn election_weight_comes_from_override_machine_type_or_preboot() {
    assert_eq!(load("MachineType = \"server\"").election_weight(), 61);
    assert_eq!(load("MachineType = \"wireless\"").election_weight(), 30);
    assert_eq!(load("MachineType = \"Laptop\"").election_weight(), 40);
    assert_eq!(load("P2PElectionWeight = 0").election_weight(), 0);
    let c = load("P2PElectionWeight = 99\nMachineType = \"laptop\"");
    assert_eq!((c.p2p_election_weight, c.election_weight()), (Some(99), 99));
    assert_eq!(
        load("P2PElectionWeight = 99\nPreboot = true").election_weight(),
        10
    );
    assert_eq!(load("Preboot = true").election_weight(), 10);
    let msg = message_for("P2PElectionWeight", "P2PElectionWeight = 100");
    assert!(msg.contains("out of range 0..=99"), "{msg}");
    let msg = message_for("MachineType", "MachineType = \"desktop\"");
    assert!(msg.contains("'desktop' is not a machine type"), "{msg}");
}

#[test]
fn code_lists_parse_and_bad_ones_name_the_key() {
    let c = load("SuccessCodes = \"0x1, 0x10-0x20\"\nDPNotAvailableCodes = 0x205D");
    assert!(c.success_codes.contains(Code(0x15)) && !c.success_codes.contains(Code(0x21)));
    assert!(c.dp_not_available_codes.contains(Code(0x205D)));
    assert!(!c.dp_not_available_codes.contains(Code(0x205A)));
    let msg = message_for("SuccessCodes", "SuccessCodes = \"0x1,oops\"");
    assert!(msg.contains("'oops'"), "{msg}");
    let msg = message_for("DPNotAvailableCodes", "DPNotAvailableCodes = \"0x20-0x10\"");
    assert!(msg.contains("backwards"), "{msg}");
    message_for("SuccessCodes", "SuccessCodes = true");
}

#[test]
fn block_size_must_be_a_multiple_of_4096_within_range() {
    assert_eq!(load("BlockSize = 4096").block_size, 4096);
    assert_eq!(load("BlockSize = 4194304").block_size, 4_194_304);
    let msg = message_for("BlockSize", "BlockSize = 6000");
    assert!(msg.contains("6000 is not a multiple of 4096"), "{msg}");
    assert!(message_for("BlockSize", "BlockSize = 0").contains("out of range 4096..=4194304"));
    message_for("BlockSize", "BlockSize = 4198400");
}

#[test]
fn percentages_and_origin_limits_are_range_checked() {
    for (key, bad) in [
        ("MaxWorkRate", 0),
        ("MaxWorkRate", 101),
        ("PercentAvailableDisk", 100),
        ("OriginRetries", 101),
        ("OriginStallTimeoutSecs", 0),
        ("OriginStallTimeoutSecs", 3601),
        ("OriginConnectTimeoutSecs", 0),
    ] {
        message_for(key, &format!("{key} = {bad}"));
    }
    let c = load("MaxWorkRate = 100\nPercentAvailableDisk = 99\nOriginRetries = 0\nOriginStallTimeoutSecs = 1");
    assert_eq!((c.max_work_rate, c.percent_available_disk), (100, 99));
    assert_eq!((c.origin_retries, c.origin_stall_timeout_secs), (0, 1));
}

#[test]
fn origin_rate_is_max_work_rate_percent_of_the_wan() {
    // 100 Mbit/s at 80% = 80 Mbit/s = 10 MB/s.
    let c = load("WanRateKbps = 100000");
    assert_eq!(c.origin_rate_limit_bytes_per_sec(), Some(10_000_000));
    // 1 kbit/s at 1% = 10 bit/s: rounded down to whole bytes, never to 0.
    let c = load("WanRateKbps = 1\nMaxWorkRate = 1");
    assert_eq!(c.origin_rate_limit_bytes_per_sec(), Some(1));
    let c = load("WanRateKbps = 9223372036854775807\nMaxWorkRate = 100");
    assert!(c.origin_rate_limit_bytes_per_sec().unwrap() > 1 << 60);
}

#[test]
fn inhibited_subnets_parse_and_match() {
    let c = load("NomadInhibitedSubnets = \"10.1.2.0/24, fd00:1::/64,\"");
    assert_eq!(c.nomad_inhibited_subnets.len(), 2);
    assert!(c.is_inhibited("10.1.2.9".parse().unwrap()));
    assert!(c.is_inhibited("fd00:1::7".parse().unwrap()));
    assert!(!c.is_inhibited("10.1.3.9".parse().unwrap()));
    let msg = message_for(
        "NomadInhibitedSubnets",
        "NomadInhibitedSubnets = \"10.0.0.0/8,10.1.2.0/33\"",
    );
    assert!(msg.contains("'10.1.2.0/33'"), "{msg}");
}

#[test]
fn platform_thumbprint_is_normalised_to_upper_hex() {
    let written = "[Platform]\nthumbprint = \"\u{200e}a9 4a:8f 7b 2c 0d 1e 3f 4a 5b 6c 7d 8e 9f a0 b1 c2 d3 e4 f5\"";
    assert_eq!(
        load(written).platform_thumbprint.as_deref(),
        Some("A94A8F7B2C0D1E3F4A5B6C7D8E9FA0B1C2D3E4F5")
    );
    assert_eq!(
        load("[Platform]\nthumbprint = \"\"").platform_thumbprint,
        None
    );
    let msg = message_for("Platform.thumbprint", "[Platform]\nthumbprint = \"abc\"");
    assert!(msg.contains("40 hex digits"), "{msg}");
    message_for(
        "Platform.thumbprint",
        &format!("[Platform]\nthumbprint = \"{}\"", "g".repeat(40)),
    );
    let msg = message_for("Platform", "Platform = \"x\"");
    assert!(msg.contains("expected a table"), "{msg}");
}

#[test]
fn unknown_keys_are_errors_with_a_suggestion_when_close() {
    let e = err("P2PEnabld = 0x61");
    assert_eq!(
        e.to_string(),
        format!("{FILE}: unknown key 'P2PEnabld'; did you mean 'P2PEnabled'?")
    );
    assert_eq!(e.key(), Some("P2PEnabld"));
    assert_eq!(
        err("p2phttpport = 1").to_string(),
        format!("{FILE}: unknown key 'p2phttpport'; did you mean 'P2PHttpPort'?")
    );
    assert_eq!(
        err("Colour = \"blue\"").to_string(),
        format!("{FILE}: unknown key 'Colour'")
    );
    assert_eq!(
        err("[Platform]\nthumbprnt = \"\"").to_string(),
        format!("{FILE}: unknown key 'Platform.thumbprnt'; did you mean 'Platform.thumbprint'?")
    );
    assert_eq!(
        err("[Extra]\na = 1").to_string(),
        format!("{FILE}: unknown key 'Extra'")
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    assert_eq!(
        message_for("P2PEnabled", "P2PEnabled = true"),
        format!("{FILE}: P2PEnabled: expected an integer (97, 0x61 or \"0x61\"), found boolean")
    );
    assert!(message_for("Preboot", "Preboot = \"yes\"")
        .ends_with("expected a boolean (true or false), found string"));
    assert!(message_for("CacheDir", "CacheDir = 5").ends_with("expected a string, found integer"));
    assert!(message_for("LogLevel", "LogLevel = [\"info\"]").ends_with("found array"));
}

#[test]
fn syntax_errors_give_line_and_column() {
    let e = err("P2PEnabled = 0x61\nP2PHttpPort = = 5080\n");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{FILE}: line 2, column ")),
        "{msg}"
    );
    assert!(msg.contains("TOML syntax error"), "{msg}");
    assert!(matches!(e, ConfigError::Syntax { line: 2, .. }));
    let msg = err("P2PEnabled = 1\nP2PEnabled = 2").to_string();
    assert!(
        msg.starts_with(&format!("{FILE}: line 2, column 1")),
        "{msg}"
    );
}

#[test]
fn the_first_mistake_in_the_file_is_reported() {
    let e = err("Zzz = 1\nBlockSize = 1\nAaa = 1");
    assert_eq!(e.key(), Some("Zzz"));
    let e = err("BlockSize = 1\nAaa = 1");
    assert_eq!(e.key(), Some("BlockSize"));
}

#[test]
fn relative_paths_are_resolved_against_the_files_directory() {
    let text = "CacheDir = \"cache\"\nCertStoreDir = \"../certs\"\nControlSocket = \"/run/x.sock\"\nOriginCaFile = \"ca.pem\"";
    let c = Config::from_toml_str(text, Path::new("/srv/lab/agent1/contentdist.toml")).unwrap();
    assert_eq!(c.cache_dir, PathBuf::from("/srv/lab/agent1/cache"));
    assert_eq!(c.cert_store_dir, PathBuf::from("/srv/lab/agent1/../certs"));
    assert_eq!(c.control_socket, PathBuf::from("/run/x.sock"));
    assert_eq!(
        c.origin_ca_file,
        Some(PathBuf::from("/srv/lab/agent1/ca.pem"))
    );
    assert_eq!(load("OriginCaFile = \"\"").origin_ca_file, None);
    assert!(message_for("CacheDir", "CacheDir = \"\"").ends_with("the path is empty"));
}

#[test]
fn load_reads_the_file_and_names_it_when_missing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("contentdist.toml");
    std::fs::write(&path, "P2PEnabled = \"0x61\"\nCacheDir = \"cache\"\n")?;
    let c = Config::load(&path)?;
    assert_eq!(c.p2p_enabled.0, 0x61);
    assert_eq!(c.cache_dir, dir.path().join("cache"));

    let missing = dir.path().join("absent.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read", missing.display())));
    assert_eq!(e.code(), Code::CONFIG_INVALID);
    Ok(())
}

#[test]
fn origin_url_is_http_or_https_with_a_host_and_no_trailing_slash() {
    let c = load("OriginUrl = \"https://origin.example:8443/content//\"");
    assert_eq!(
        c.origin_url.as_deref(),
        Some("https://origin.example:8443/content")
    );
    let c = load("OriginUrl = \"HTTP://10.0.0.5\"");
    assert_eq!(c.origin_url.as_deref(), Some("http://10.0.0.5"));
    assert_eq!(load("OriginUrl = \" \"").origin_url, None);
    for (bad, why) in [
        ("ftp://origin/", "must start with http:// or https://"),
        ("origin.example/content", "is not a URL"),
        ("https:///content", "no host"),
        ("https://origin/content?x=1", "query or fragment"),
        ("http://ori gin/", "not a valid URL"),
    ] {
        let msg = message_for("OriginUrl", &format!("OriginUrl = \"{bad}\""));
        assert!(msg.contains(why), "{bad}: {msg}");
    }
}

#[test]
fn addresses_parse_and_election_needs_a_destination() {
    let c = load("ListenAddress = \"::\"\nElectionAddress = \"127.255.255.255\"");
    assert_eq!(c.listen_address, "::".parse::<IpAddr>().unwrap());
    assert_eq!(
        c.election_address,
        "127.255.255.255".parse::<IpAddr>().unwrap()
    );
    let msg = message_for("ListenAddress", "ListenAddress = \"10.0.0\"");
    assert!(
        msg.contains("'10.0.0' is not an IPv4 or IPv6 address"),
        "{msg}"
    );
    message_for("ElectionAddress", "ElectionAddress = \"0.0.0.0\"");
}

#[test]
fn site_key_needs_16_characters_and_is_hidden_in_describe() {
    let msg = message_for("SiteKey", "SiteKey = \"short\"");
    assert!(msg.contains("at least 16 characters"), "{msg}");
    let c = load("SiteKey = \"a very secret site key\"");
    assert_eq!(
        c.site_key.as_ref().map(SiteKey::as_str),
        Some("a very secret site key")
    );
    let shown = c.describe();
    assert!(!shown.contains("a very secret"), "{shown}");
    assert!(
        shown.contains("SiteKey = (hidden, 22 characters)"),
        "{shown}"
    );
    assert!(!format!("{c:?}").contains("a very secret"));
    assert!(c.to_toml().contains("SiteKey = \"a very secret site key\""));
}

#[test]
fn log_level_is_one_of_five() {
    assert_eq!(load("LogLevel = \"debug\"").log_level, LogLevel::Debug);
    let msg = message_for("LogLevel", "LogLevel = \"loud\"");
    assert!(msg.contains("error, warn, info, debug, trace"), "{msg}");
}

#[test]
fn machine_account_needs_the_machine_key() {
    let err =
        Config::from_toml_str("SpecialNetShare = 0x20F0\n", Path::new("/etc/x.toml")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("SpecialNetShare") && text.contains("MachineKey"),
        "{text}"
    );
    let c = load("SpecialNetShare = 0x20F0\nMachineKey = \"site machine secret 42\"");
    assert!(c.special_net_share.machine_account());
    assert_eq!(
        c.machine_key.as_ref().map(SiteKey::as_str),
        Some("site machine secret 42")
    );
    assert!(c
        .describe()
        .contains("MachineKey = (hidden, 22 characters)"));
}

#[test]
fn host_name_and_fqdn_override_the_system_and_are_checked() {
    let c = load("HostName = \"dp01\"\nFqdn = \"dp01.branch.example\"");
    assert_eq!(c.host_name_in_force(), "dp01");
    assert_eq!(c.fqdn_in_force(), "dp01.branch.example");
    let shown = c.describe();
    assert!(shown.contains("HostName = \"dp01\""), "{shown}");
    // Unset: what the system says is shown, so the administrator sees what is in force.
    let d = Config::default();
    assert_eq!(d.host_name_in_force(), super::system_host_name());
    assert!(d
        .describe()
        .contains(&format!("from the system: {}", super::system_host_name())));
    for bad in ["dp 01", "-dp01", "dp01..example", "dp_01"] {
        let e = Config::from_toml_str(&format!("HostName = \"{bad}\""), Path::new("x.toml"))
            .unwrap_err();
        assert!(
            e.to_string().contains("HostName") && e.to_string().contains(bad),
            "{e}"
        );
    }
}
