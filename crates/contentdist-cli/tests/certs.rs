//! `contentdist certs` through the real binary, on an openssl-made PKI: the server
//! certificate the page's rules choose, and the rule that rejected every other one.

mod support;

use std::path::Path;
use std::process::Command;

use support::pki::{sha1_thumbprint, CertFiles, CertSpec, Pki};
use support::{contentdist_bin, TestDir};

fn install(files: &CertFiles, my: &Path, name: &str) {
    std::fs::copy(&files.chain, my.join(format!("{name}.pem"))).unwrap();
    std::fs::copy(&files.key, my.join(format!("{name}.key"))).unwrap();
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
    for (files, name) in [
        (&both, "a-both"),
        (&host, "b-host"),
        (&fqdn, "c-fqdn"),
        (&expired, "d-expired"),
        (&client_only, "e-client"),
        (&other_host, "f-other"),
    ] {
        install(files, &my, name);
    }
    std::fs::write(my.join("g-broken.pem"), "not a certificate").unwrap();
    let config = t.write(
        "c.toml",
        format!(
            "CertStoreDir = \"{}\"\nHostName = \"dp01\"\nFqdn = \"dp01.branch.example\"\nP2PSslSettings = 0x1\n",
            t.join("store").display()
        ),
    );
    let out = Command::new(contentdist_bin())
        .args(["certs", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["server_choice"], sha1_thumbprint(&both.cert), "{r:#}");
    let verdict = |file: &str| -> String {
        r["my"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["file"].as_str().unwrap().ends_with(file))
            .map(|c| c["server_authentication"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{file} missing: {r:#}"))
    };
    assert_eq!(verdict("a-both.pem"), "chosen");
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
    let out = Command::new(contentdist_bin())
        .args(["certs", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
