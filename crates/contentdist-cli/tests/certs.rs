//! `contentdist certs` through the real binary, on an openssl-made PKI: the server
//! and the client certificates the page's rules choose, and the rule that rejected
//! every other one.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::pki::{sha1_thumbprint, CertFiles, CertSpec, KeyKind, Pki, PkiOptions};
use support::{contentdist_bin, with_timeout, TestDir};

fn install(files: &CertFiles, my: &Path, name: &str) {
    std::fs::copy(&files.chain, my.join(format!("{name}.pem"))).unwrap();
    std::fs::copy(&files.key, my.join(format!("{name}.key"))).unwrap();
}

/// `contentdist certs --json` with `config`.
fn certs_json(config: &Path) -> serde_json::Value {
    let out = Command::new(contentdist_bin())
        .args(["certs", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `field` verdict of the certificate read from `file`.
fn verdict(r: &serde_json::Value, file: &str, field: &str) -> String {
    r["my"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"].as_str().unwrap().ends_with(file))
        .map(|c| c[field].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{file} missing: {r:#}"))
}

#[test]
fn certs_names_the_chosen_client_certificate_and_why_each_other_was_not() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        let ec = |ca_name: &str| PkiOptions {
            key: KeyKind::EcP256,
            ca_name: ca_name.into(),
        };
        let pki = Pki::create_with(ec("Branch Issuing CA"));
        let other_ca = Pki::create_with(ec("Other Corp CA"));
        let my = t.subdir("store/my");
        let fqdn = pki.client_cert("pc1.branch.example");
        // Longer-lived, but its subject is no FQDN: rule 3 puts it second.
        let short_name = pki.issue(&CertSpec {
            name: "pc1".into(),
            sans: vec!["DNS:pc1.branch.example".into()],
            extended_key_usage: vec!["clientAuth".into()],
            days: 900,
            ..CertSpec::default()
        });
        // The longest-lived of all: chosen unless CertIssuer names our CA.
        let foreign = other_ca.issue(&CertSpec {
            name: "pc1.branch.example".into(),
            extended_key_usage: vec!["clientAuth".into()],
            days: 1800,
            ..CertSpec::default()
        });
        for (files, name) in [
            (&fqdn, "a-fqdn"),
            (&short_name, "b-short"),
            (&foreign, "c-foreign"),
            (&pki.expired_client_cert("pc1.branch.example"), "d-expired"),
            (&pki.wrong_usage_cert("pc1.branch.example"), "e-server"),
            (&pki.self_signed_client_cert("pc1.branch.example"), "f-self"),
            (
                &pki.not_yet_valid_client_cert("pc1.branch.example"),
                "g-early",
            ),
        ] {
            install(files, &my, name);
        }
        let settings = format!(
            "CertStoreDir = \"{}\"\nHostName = \"dp01\"\nFqdn = \"dp01.branch.example\"\n\
             P2PEnabled = 0x40\nP2PSslSettings = 0x2\n",
            t.join("store").display()
        );
        let any_issuer = t.write("any.toml", &settings);
        let r = certs_json(&any_issuer);
        assert_eq!(r["client_certificate_authentication"], true);
        assert_eq!(r["client_choice"], sha1_thumbprint(&foreign.cert), "{r:#}");
        let client = |r: &serde_json::Value, file: &str| verdict(r, file, "client_authentication");
        assert!(client(&r, "a-fqdn.pem").contains("later expiry (rule 4)"));
        assert!(client(&r, "d-expired.pem").contains("expired"));
        assert!(client(&r, "e-server.pem").contains("not for client authentication"));
        assert!(client(&r, "f-self.pem").contains("self-signed"));
        assert!(client(&r, "g-early.pem").contains("not valid yet"));

        let our_ca = t.write(
            "ours.toml",
            format!("{settings}CertIssuer = \"branch issuing\"\n"),
        );
        let r = certs_json(&our_ca);
        assert_eq!(r["client_choice"], sha1_thumbprint(&fqdn.cert), "{r:#}");
        assert_eq!(client(&r, "a-fqdn.pem"), "chosen");
        assert!(client(&r, "b-short.pem").contains("subject given as an FQDN (rule 3)"));
        assert_eq!(client(&r, "c-foreign.pem"), "issuer not in CertIssuer");
        // The server rules are reported beside, and none of these is a server's.
        assert_eq!(r["server_choice"], serde_json::Value::Null);
        assert!(verdict(&r, "e-server.pem", "server_authentication").contains("neither"));

        // The plain form says the same in words.
        let text = Command::new(contentdist_bin())
            .args(["certs", "--config"])
            .arg(&our_ca)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        let chosen_line = format!("client authentication: {}", sha1_thumbprint(&fqdn.cert));
        assert!(
            text.contains(&chosen_line)
                && text.contains("client authentication: issuer not in CertIssuer"),
            "{text}"
        );
    });
}

#[test]
fn certs_names_the_chosen_server_certificate_and_why_each_other_was_not() {
    let t = TestDir::new();
    let pki = Pki::create();
    let my = t.subdir("store/my");
    let trusted = t.subdir("store/trusted");
    std::fs::copy(pki.ca_cert(), trusted.join("ca.pem")).unwrap();
    let both = pki.server_cert("dp01", &["DNS:dp01", "DNS:dp01.branch.example"]);
    let host = pki.server_cert("dp01", &["DNS:dp01"]);
    let fqdn = pki.server_cert("dp01.branch.example", &["DNS:dp01.branch.example"]);
    let expired = pki.issue(&CertSpec {
        name: "dp01".into(),
        sans: vec!["DNS:dp01".into(), "DNS:dp01.branch.example".into()],
        extended_key_usage: vec!["serverAuth".into()],
        not_before: Some("20200101000000Z".into()),
        not_after: Some("20210101000000Z".into()),
        ..CertSpec::default()
    });
    let client_only = pki.client_cert("dp01");
    let other_host = pki.server_cert("dp02", &["DNS:dp02"]);
    let early = pki.issue(&CertSpec {
        name: "dp01".into(),
        sans: vec!["DNS:dp01".into(), "DNS:dp01.branch.example".into()],
        extended_key_usage: vec!["serverAuth".into()],
        not_before: Some("20990101000000Z".into()),
        not_after: Some("21000101000000Z".into()),
        ..CertSpec::default()
    });
    // Both names, like a-both, from another CA and valid longer: chosen on the
    // tie-break (the longest validity) unless CertIssuer names the test CA.
    let other_ca = Pki::create_with(PkiOptions {
        ca_name: "Other Corp CA".into(),
        ..PkiOptions::default()
    });
    let foreign = other_ca.issue(&CertSpec {
        name: "dp01".into(),
        sans: vec!["DNS:dp01".into(), "DNS:dp01.branch.example".into()],
        extended_key_usage: vec!["serverAuth".into()],
        days: 3000,
        ..CertSpec::default()
    });
    for (files, name) in [
        (&both, "a-both"),
        (&host, "b-host"),
        (&fqdn, "c-fqdn"),
        (&expired, "d-expired"),
        (&client_only, "e-client"),
        (&other_host, "f-other"),
        (&early, "h-early"),
        (&foreign, "i-foreign"),
    ] {
        install(files, &my, name);
    }
    std::fs::write(my.join("g-broken.pem"), "not a certificate").unwrap();
    let settings = format!(
        "CertStoreDir = \"{}\"\nHostName = \"dp01\"\nFqdn = \"dp01.branch.example\"\nP2PSslSettings = 0x1\n",
        t.join("store").display()
    );
    // Any issuer: a-both and i-foreign tie on names; the longer validity wins.
    let any_issuer = t.write("any.toml", &settings);
    let r = certs_json(&any_issuer);
    assert_eq!(r["server_choice"], sha1_thumbprint(&foreign.cert), "{r:#}");
    assert!(verdict(&r, "a-both.pem", "server_authentication")
        .contains("ranks higher (names, then validity)"));
    assert!(verdict(&r, "h-early.pem", "server_authentication").contains("not valid yet"));
    let config = t.write(
        "c.toml",
        format!("{settings}CertIssuer = \"contentdist test\"\n"),
    );
    let r = certs_json(&config);
    assert_eq!(r["server_choice"], sha1_thumbprint(&both.cert), "{r:#}");
    let verdict = |file: &str| verdict(&r, file, "server_authentication");
    assert_eq!(verdict("a-both.pem"), "chosen");
    assert_eq!(verdict("i-foreign.pem"), "issuer not in CertIssuer");
    assert!(verdict("h-early.pem").contains("not valid yet"));
    assert!(verdict("b-host.pem").contains("ranks higher"));
    assert!(verdict("c-fqdn.pem").contains("ranks higher"));
    assert!(verdict("d-expired.pem").contains("expired"));
    assert!(verdict("e-client.pem").contains("server authentication"));
    assert!(verdict("f-other.pem").contains("neither the host name nor the FQDN"));
    assert!(r["skipped"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("g-broken.pem"));
    assert_eq!(r["trusted"].as_array().unwrap().len(), 1);
    // Without the both-names certificate the host name beats the FQDN.
    std::fs::remove_file(my.join("a-both.pem")).unwrap();
    let r = certs_json(&config);
    assert_eq!(r["server_choice"], sha1_thumbprint(&host.cert));
    // The plain form says the same in words.
    let text = Command::new(contentdist_bin())
        .args(["certs", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&sha1_thumbprint(&host.cert)) && text.contains("expired"),
        "{text}"
    );
}
