//! The selection rules, one test per rule and per tie-break, on certificate facts;
//! and the reading of a real openssl-made certificate, thumbprint included.

use std::process::Command;

use super::*;

pub(super) const NOW: i64 = 1_800_000_000;
pub(super) const DAY: i64 = 86_400;

fn id() -> HostIdentity {
    HostIdentity {
        host_name: "dp01".into(),
        fqdn: "dp01.branch.example".into(),
    }
}

/// A certificate valid from yesterday for `days`, for server and client use.
pub(super) fn cert(tp: &str, names: &[&str], days: i64) -> CertInfo {
    CertInfo {
        thumbprint: tp.into(),
        subject: format!("CN={}", names.first().unwrap_or(&"")),
        common_names: names.iter().take(1).map(|s| s.to_string()).collect(),
        dns_names: names.iter().skip(1).map(|s| s.to_string()).collect(),
        issuer: "CN=Branch Issuing CA 1, O=Example".into(),
        not_before: NOW - DAY,
        not_after: NOW + days * DAY,
        server_auth: true,
        client_auth: true,
        self_signed: false,
    }
}

fn choose(certs: &[CertInfo]) -> ServerChoice {
    select_server(certs, &id(), &IssuerFilter::default(), NOW)
}

#[test]
fn each_criterion_rejects_with_its_own_reason() {
    let mut no_usage = cert("A1", &["dp01"], 30);
    no_usage.server_auth = false;
    let other_name = cert("A2", &["dp02", "dp02.branch.example"], 30);
    let mut early = cert("A3", &["dp01"], 30);
    early.not_before = NOW + DAY;
    let mut late = cert("A4", &["dp01"], 30);
    late.not_after = NOW - 1;
    let c = choose(&[no_usage, other_name, early, late]);
    assert_eq!(c.chosen, None);
    assert_eq!(
        c.rejected,
        vec![
            (0, Rejection::NoServerUsage),
            (1, Rejection::NameMismatch),
            (2, Rejection::NotYetValid),
            (3, Rejection::Expired),
        ]
    );
}

#[test]
fn names_match_in_the_subject_or_the_dns_names_without_case() {
    let by_cn = cert("B1", &["DP01"], 30);
    let by_san = cert("B2", &["something else", "dp01.BRANCH.example"], 30);
    assert_eq!(choose(std::slice::from_ref(&by_cn)).chosen, Some(0));
    assert_eq!(choose(std::slice::from_ref(&by_san)).chosen, Some(0));
}

#[test]
fn cert_issuer_takes_a_common_substring_or_a_list_of_names() {
    let mut other = cert("C1", &["dp01"], 30);
    other.issuer = "CN=Other CA, O=Elsewhere".into();
    let ours = cert("C2", &["dp01"], 10);
    let certs = [other, ours];
    let substring = IssuerFilter(vec!["issuing ca".into()]);
    let c = select_server(&certs, &id(), &substring, NOW);
    assert_eq!(c.chosen, Some(1));
    assert_eq!(c.rejected, vec![(0, Rejection::IssuerNotAllowed)]);
    let list = IssuerFilter(vec!["CN=Nobody".into(), " Other CA".into()]);
    assert_eq!(select_server(&certs, &id(), &list, NOW).chosen, Some(0));
    // Not set: any issuer, and then the longer validity wins.
    assert_eq!(choose(&certs).chosen, Some(0));
}

#[test]
fn both_names_beat_the_host_name_which_beats_the_fqdn() {
    let fqdn_only = cert("D1", &["dp01.branch.example"], 900);
    let host_only = cert("D2", &["dp01"], 600);
    let both = cert("D3", &["dp01", "dp01.branch.example"], 30);
    let c = choose(&[fqdn_only.clone(), host_only.clone(), both]);
    assert_eq!(c.chosen, Some(2), "names rank before validity");
    assert_eq!(
        c.rejected,
        vec![
            (0, Rejection::Outranked { by: "D3".into() }),
            (1, Rejection::Outranked { by: "D3".into() }),
        ]
    );
    assert_eq!(choose(&[fqdn_only, host_only]).chosen, Some(1));
}

#[test]
fn among_equal_names_the_longest_validity_wins_then_the_thumbprint() {
    let short = cert("E1", &["dp01"], 30);
    let long = cert("E2", &["dp01"], 365);
    assert_eq!(choose(&[short.clone(), long.clone()]).chosen, Some(1));
    assert_eq!(choose(&[long, short]).chosen, Some(0));
    // A full tie is broken the same way whatever the order of the store.
    let a = cert("F1", &["dp01"], 30);
    let b = cert("F0", &["dp01"], 30);
    assert_eq!(choose(&[a.clone(), b.clone()]).chosen, Some(1));
    assert_eq!(choose(&[b, a]).chosen, Some(0));
}

#[test]
fn a_host_whose_fqdn_is_its_host_name_matches_as_both() {
    let plain = HostIdentity {
        host_name: "dp01".into(),
        fqdn: "dp01".into(),
    };
    let c = select_server(
        &[cert("G1", &["dp01"], 30)],
        &plain,
        &IssuerFilter::default(),
        NOW,
    );
    assert_eq!(c.chosen, Some(0));
}

/// Run openssl in `dir`; panics with its output on failure.
pub(super) fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_openssl_certificate_reads_with_names_usage_dates_and_thumbprint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("ext.cnf"),
        "[req]\ndistinguished_name=dn\n[dn]\n[ext]\nsubjectAltName=DNS:dp01,DNS:dp01.branch.example\n\
         extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-days",
            "30",
            "-subj",
            "/CN=dp01/O=Branch",
            "-config",
            "ext.cnf",
            "-extensions",
            "ext",
        ],
    );
    openssl(
        d,
        &["x509", "-in", "c.pem", "-outform", "DER", "-out", "c.der"],
    );
    let der = std::fs::read(d.join("c.der")).unwrap();
    let info = CertInfo::from_der(&der).unwrap();
    let printed = openssl(
        d,
        &["x509", "-in", "c.pem", "-noout", "-fingerprint", "-sha1"],
    );
    // "SHA1 Fingerprint=AB:CD:…"
    let expected = printed.trim().rsplit('=').next().unwrap().replace(':', "");
    assert_eq!(info.thumbprint, expected);
    assert_eq!(info.common_names, vec!["dp01"]);
    assert_eq!(info.dns_names, vec!["dp01", "dp01.branch.example"]);
    assert!(info.server_auth && !info.client_auth);
    assert!(info.self_signed);
    assert!(info.subject.contains("CN=dp01"), "{}", info.subject);
    assert!(info.not_after - info.not_before >= 29 * DAY);
    assert!(CertInfo::from_der(b"not a certificate").is_err());
}

#[test]
fn times_print_as_utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_800_000_000), "2027-01-15 08:00:00 UTC");
    assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
}
