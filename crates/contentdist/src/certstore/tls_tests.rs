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

/// Drive a handshake between the two ends in memory; the server's certificate.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Vec<u8> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets().unwrap();
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets().unwrap();
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return client.peer_certificates().unwrap()[0].to_vec();
        }
    }
    panic!("handshake did not finish");
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
