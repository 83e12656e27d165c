//! The agent's self-signed certificate (kept, renewed) and the swappable resolver,
//! through real rustls handshakes in memory.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::*;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

fn id(host: &str) -> HostIdentity {
    HostIdentity {
        host_name: host.into(),
        fqdn: format!("{host}.branch.example"),
    }
}

#[test]
fn the_self_signed_certificate_is_kept_and_renewed_near_its_end_or_for_new_names() {
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed(dir.path(), &id("dp01"), NOW).unwrap();
    assert!(first.info.self_signed && first.info.server_auth);
    assert!(first.info.names("dp01") && first.info.names("dp01.branch.example"));
    assert!(first.info.issuer.contains(SELF_SIGNED_ORG));
    let mode = std::fs::metadata(dir.path().join("self-signed.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Kept across restarts.
    let again = self_signed(dir.path(), &id("dp01"), NOW + 100 * DAY).unwrap();
    assert_eq!(again.info.thumbprint, first.info.thumbprint);
    // Renewed within 30 days of its end.
    let late = first.info.not_after - 10 * DAY;
    let renewed = self_signed(dir.path(), &id("dp01"), late).unwrap();
    assert_ne!(renewed.info.thumbprint, first.info.thumbprint);
    assert!(renewed.info.not_after > first.info.not_after);
    // Made anew when the host is renamed.
    let renamed = self_signed(dir.path(), &id("dp02"), late).unwrap();
    assert!(renamed.info.names("dp02"));
    assert_ne!(renamed.info.thumbprint, renewed.info.thumbprint);
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

/// Drive a handshake between the two ends in memory; the first error either end
/// reports, in words.
fn drive(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), String> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut &buf[..]).unwrap();
        server.process_new_packets().map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut &buf[..]).unwrap();
        client.process_new_packets().map_err(|e| e.to_string())?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err("handshake did not finish".into())
}

/// A handshake that must succeed; the server's certificate.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Vec<u8> {
    drive(client, server).unwrap();
    client.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn a_swapped_certificate_is_presented_from_the_next_handshake_on() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = self_signed(a_dir.path(), &id("dp01"), crate::cache::now_unix() as i64).unwrap();
    let b = self_signed(b_dir.path(), &id("dp01"), crate::cache::now_unix() as i64).unwrap();
    let resolver = Arc::new(ServerCertResolver::default());
    resolver.set(Some(Arc::clone(&a.key)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = Arc::new(
        ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone()),
    );
    let mut roots = RootCertStore::empty();
    for c in [&a, &b] {
        roots.add(c.key.cert[0].clone()).unwrap();
    }
    let mut client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every connection a full handshake: a resumed session carries no certificate.
    client_config.resumption = rustls::client::Resumption::disabled();
    let client_config = Arc::new(client_config);
    let connect = || {
        let name = ServerName::try_from("dp01").unwrap();
        let mut client = ClientConnection::new(Arc::clone(&client_config), name).unwrap();
        let mut server = ServerConnection::new(Arc::clone(&server_config)).unwrap();
        handshake(&mut client, &mut server)
    };
    let presented = connect();
    assert_eq!(thumbprint(&presented), a.info.thumbprint);
    assert_eq!(fingerprint(&presented), fingerprint(a.key.cert[0].as_ref()));
    resolver.set(Some(Arc::clone(&b.key)));
    assert_eq!(thumbprint(&connect()), b.info.thumbprint);
}

use crate::test_util::TestCa;

/// Connect a client checking with `check` to a server presenting `key`.
fn try_connect(key: Arc<rustls::sign::CertifiedKey>, check: MasterCheck) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = Arc::new(ServerCertResolver::default());
    resolver.set(Some(key));
    let server_config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    let client_config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MasterVerifier::new(check, provider)))
        .with_no_client_auth();
    // Peers reach masters by address: the name in the handshake is the IP.
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
    drive(&mut client, &mut server)
}

fn pki(ca: &TestCa, names: &[&str], ignore_name: bool) -> MasterCheck {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    MasterCheck::Pki {
        roots: Arc::new(roots),
        names: names.iter().map(|s| s.to_string()).collect(),
        ignore_name,
    }
}

#[test]
fn a_pki_master_is_checked_for_chain_dates_usage_and_name_unless_names_are_literal() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let ca = TestCa::new("Branch CA");
    let other = TestCa::new("Untrusted CA");
    let good = ca.leaf(&["dp01", "dp01.branch.example"], (-1, 30), ServerAuth);
    assert_eq!(
        try_connect(good.clone(), pki(&ca, &["dp01"], false)),
        Ok(())
    );
    assert_eq!(
        try_connect(good.clone(), pki(&ca, &["dp01.branch.example"], false)),
        Ok(())
    );
    let err = try_connect(good.clone(), pki(&ca, &["dp02"], false)).unwrap_err();
    assert!(
        err.contains("not valid for") || err.contains("Name"),
        "{err}"
    );
    // Net literal names: the name is ignored...
    assert_eq!(try_connect(good, pki(&ca, &["dp02"], true)), Ok(()));
    // ...but not the chain, the dates or the usage.
    let untrusted = other.leaf(&["dp01"], (-1, 30), ServerAuth);
    assert!(try_connect(untrusted, pki(&ca, &["dp01"], true)).is_err());
    let expired = ca.leaf(&["dp01"], (-60, -30), ServerAuth);
    let err = try_connect(expired, pki(&ca, &["dp01"], true)).unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
    let early = ca.leaf(&["dp01"], (10, 30), ServerAuth);
    assert!(try_connect(early, pki(&ca, &["dp01"], true)).is_err());
    let client_only = ca.leaf(&["dp01"], (-1, 30), ClientAuth);
    assert!(try_connect(client_only, pki(&ca, &["dp01"], true)).is_err());
    // Named by its subject only (no DNS names): the master may choose it (the
    // page's "Subject/DNS"), so its peers accept it by that name.
    let cn_only = TestCa::certified(ca.leaf_pem_with(&["dp01"], &[], (-1, 30), ServerAuth));
    assert_eq!(
        try_connect(cn_only.clone(), pki(&ca, &["DP01"], false)),
        Ok(())
    );
    assert!(try_connect(cn_only, pki(&ca, &["dp02"], false)).is_err());
}

#[test]
fn a_self_signed_master_must_present_the_certificate_it_announced() {
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let now = crate::cache::now_unix() as i64;
    let mine = self_signed(dir.path(), &id("dp01"), now).unwrap();
    let other = self_signed(other_dir.path(), &id("dp01"), now).unwrap();
    let pin = fingerprint(mine.key.cert[0].as_ref());
    assert_eq!(
        try_connect(Arc::clone(&mine.key), MasterCheck::Pinned(pin)),
        Ok(())
    );
    let err = try_connect(Arc::clone(&other.key), MasterCheck::Pinned(pin)).unwrap_err();
    assert!(err.contains("another self-signed certificate"), "{err}");
}

/// The page: a certificate that expires is no longer used. The store refresh
/// chooses again at every look (not only when files change), so the next
/// certificate is presented from the first look after the expiry, and none when
/// none is left.
#[test]
fn an_expiring_pki_certificate_is_replaced_from_the_first_look_after_its_end() {
    let ca = TestCa::new("Branch CA");
    let store = tempfile::tempdir().unwrap();
    // Both names and 10 days left: chosen first. Host name only, 40 days: next.
    ca.install(
        store.path(),
        "a-both.pem",
        &["dp01", "dp01.branch.example"],
        (-1, 10),
    );
    ca.install(store.path(), "b-host.pem", &["dp01"], (-1, 40));
    let handle = Arc::new(CertStore::new(store.path()));
    handle.refresh();
    let certs = ServerCerts::new(ServerCertOptions {
        store: handle,
        pki: true,
        identity: id("dp01"),
        issuers: IssuerFilter::default(),
        self_signed_dir: store.path().join("self"),
    });
    let now = crate::cache::now_unix() as i64;
    let bound = |certs: &ServerCerts| match certs.state() {
        ServerCertState::Bound(b) => (b.file, b.thumbprint),
        other => panic!("nothing bound: {other:?}"),
    };
    let presented = |certs: &ServerCerts| {
        let key = certs.resolver().current().expect("a certificate presented");
        thumbprint(key.cert[0].as_ref())
    };
    assert!(certs.refresh(now));
    let (file, first) = bound(&certs);
    assert!(file.ends_with("a-both.pem"), "{file:?}");
    assert_eq!(presented(&certs), first);
    assert!(!certs.refresh(now + 9 * DAY), "nothing changed yet");
    assert!(certs.refresh(now + 11 * DAY));
    let (file, second) = bound(&certs);
    assert!(file.ends_with("b-host.pem"), "{file:?}");
    assert_eq!(presented(&certs), second);
    assert!(certs.refresh(now + 41 * DAY));
    match certs.state() {
        ServerCertState::Unavailable { rejected, .. } => {
            assert_eq!(rejected.len(), 2, "{rejected:?}");
            assert!(
                rejected.iter().all(|r| r.reason.contains("expired")),
                "{rejected:?}"
            );
        }
        other => panic!("still bound: {other:?}"),
    }
    assert!(certs.resolver().current().is_none());
    assert!(!*certs.usable().borrow());
}
