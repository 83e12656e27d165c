//! Peer copy over HTTPS on loopback: a master serving HTTP and HTTPS from one
//! service, with a self-signed or a PKI certificate; peers that pin, check the
//! chain and name, refuse, and fall back to HTTP.

use super::*;
use crate::certstore::{CertStore, HostIdentity, IssuerFilter, ServerCertOptions, ServerCerts};
use crate::codes::Code;
use crate::test_util::TestCa;

/// A master serving one content over HTTP and HTTPS, with its certificate store.
pub(super) struct TlsMaster {
    /// Holds the cache directory.
    _node: Node,
    pub store: tempfile::TempDir,
    pub certs: Arc<ServerCerts>,
    pub http: PeerServer,
    pub https: PeerServer,
    token: CancellationToken,
    pub content: Content,
}

impl Drop for TlsMaster {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn identity() -> HostIdentity {
    HostIdentity {
        host_name: "dp01".into(),
        fqdn: "dp01.branch.example".into(),
    }
}

fn now() -> i64 {
    crate::cache::now_unix() as i64
}

impl TlsMaster {
    /// `pki`: P2PSslSettings 0x1; `setup` fills the store before the first choice.
    pub fn start(pki: bool, setup: impl FnOnce(&std::path::Path)) -> TlsMaster {
        TlsMaster::start_with(pki, false, setup)
    }

    /// [`TlsMaster::start`]; `mutual`: P2PSslSettings 0x2, client certificates
    /// required and checked against the store's trusted/, and no P2P account.
    pub fn start_with(pki: bool, mutual: bool, setup: impl FnOnce(&std::path::Path)) -> TlsMaster {
        let node = Node::new();
        let store = tempfile::tempdir().unwrap();
        setup(store.path());
        let store_handle = Arc::new(CertStore::new(store.path()));
        store_handle.refresh();
        let certs = Arc::new(ServerCerts::new(ServerCertOptions {
            store: Arc::clone(&store_handle),
            pki,
            identity: identity(),
            issuers: IssuerFilter::default(),
            self_signed_dir: store.path().join("self"),
        }));
        certs.refresh(now());
        let token = CancellationToken::new();
        let mut auth = key_auth();
        if mutual {
            auth.p2p_key = None;
        }
        let service = PeerService::new(node.cache.clone(), Arc::new(auth), token.clone());
        let clients =
            mutual.then(|| Arc::new(crate::certstore::PeerCertVerifier::new(store_handle)) as _);
        let http = PeerServer::start_http("127.0.0.1:0".parse().unwrap(), service.clone()).unwrap();
        let https = PeerServer::start_https(
            HttpsOptions {
                listen: "127.0.0.1:0".parse().unwrap(),
                tls: server_tls_config(certs.resolver(), clients).unwrap(),
                usable: certs.usable(),
                client_certificates: mutual,
            },
            service,
        )
        .unwrap();
        let content = Content::standard();
        content.fill(&node.entry(&content), 0..content.manifest.block_count());
        TlsMaster {
            _node: node,
            store,
            certs,
            http,
            https,
            token,
            content,
        }
    }

    /// As its announcement describes it.
    pub fn target(&self) -> MasterTarget {
        MasterTarget {
            addr: self.http.local_addr().ip(),
            http_port: self.http.local_addr().port(),
            https_port: self.https.local_addr().port(),
            protocols: Protocols::NONE.with(Protocol::Http).with(Protocol::Https),
            p2p_key: KEY,
            cert_fingerprint: *self.certs.pin().borrow(),
            names: vec!["dp01".into(), "dp01.branch.example".into()],
        }
    }
}

/// A peer checking masters with `store` (its trusted/).
pub(super) fn tls_client(
    store: &std::path::Path,
    require_pki: bool,
    literal_names: bool,
) -> PeerClient {
    tls_client_with(store, require_pki, literal_names, None)
}

/// [`tls_client`] presenting `client_cert` (P2PSslSettings 0x2).
pub(super) fn tls_client_with(
    store: &std::path::Path,
    require_pki: bool,
    literal_names: bool,
    client_cert: Option<Arc<crate::certstore::ClientCerts>>,
) -> PeerClient {
    let store = Arc::new(CertStore::new(store));
    store.refresh();
    PeerClient::new(PeerClientOptions {
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(2),
        long_poll: Duration::from_secs(2),
        tls: Some(PeerTlsOptions {
            store,
            require_pki,
            literal_names,
            client_cert,
        }),
        ..Default::default()
    })
    .unwrap()
}

pub(super) fn https_only() -> Protocols {
    Protocols::NONE.with(Protocol::Https)
}

fn both() -> Protocols {
    Protocols::NONE.with(Protocol::Https).with(Protocol::Http)
}

/// Copy the master's content with `client`, allowing `local`.
pub(super) async fn copy(
    m: &TlsMaster,
    client: &PeerClient,
    target: &MasterTarget,
    local: Protocols,
) -> Result<(), PeerError> {
    let peer = Node::new();
    let entry = peer.entry(&m.content);
    client
        .copy(
            &entry,
            target,
            local,
            &PeerBytes::default(),
            &CancellationToken::new(),
        )
        .await?;
    assert!(entry.is_complete());
    Ok(())
}

#[tokio::test]
async fn a_self_signed_master_is_pinned_and_one_presenting_another_certificate_is_refused() {
    bounded(async {
        let m = TlsMaster::start(false, |_| {});
        let target = m.target();
        assert!(
            target.cert_fingerprint.is_some(),
            "a self-signed master announces its pin"
        );
        let nothing_trusted = tempfile::tempdir().unwrap();
        let client = tls_client(nothing_trusted.path(), false, false);
        copy(&m, &client, &target, https_only()).await.unwrap();
        let served = m.https.counters().snapshot();
        assert!(
            served.bytes_served >= m.content.manifest.total_size(),
            "{served:?}"
        );

        // The master's certificate is not the one announced (it was swapped after
        // the announcement, or another host answers at that address).
        let mut stale = target.clone();
        stale.cert_fingerprint = Some([7; 32]);
        let e = copy(&m, &client, &stale, https_only()).await.unwrap_err();
        assert_eq!(e.code(), Code::SECURE_FAILURE, "{e}");
        assert!(
            e.to_string().contains("another self-signed certificate"),
            "{e}"
        );
        // With HTTP allowed on both sides, the peer goes on over HTTP.
        copy(&m, &client, &stale, both()).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn a_pki_master_is_checked_for_its_issuer_and_name_unless_names_are_literal() {
    bounded(async {
        let ca = TestCa::new("Branch CA");
        let m = TlsMaster::start(true, |s| {
            ca.install(s, "dp01.pem", &["dp01", "dp01.branch.example"], (-1, 90))
        });
        let target = m.target();
        assert_eq!(
            target.cert_fingerprint, None,
            "a PKI master announces no pin"
        );
        let trusting = tempfile::tempdir().unwrap();
        ca.trust(trusting.path());
        copy(
            &m,
            &tls_client(trusting.path(), true, false),
            &target,
            https_only(),
        )
        .await
        .unwrap();
        // Without 0x1, a master that announced no pin is checked the same way.
        copy(
            &m,
            &tls_client(trusting.path(), false, false),
            &target,
            https_only(),
        )
        .await
        .unwrap();

        // Announced under another name: refused, unless masters are reached by
        // address (net literal names).
        let mut renamed = target.clone();
        renamed.names = vec!["dp02".into()];
        let e = copy(
            &m,
            &tls_client(trusting.path(), true, false),
            &renamed,
            https_only(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::SECURE_FAILURE, "{e}");
        copy(
            &m,
            &tls_client(trusting.path(), true, true),
            &renamed,
            https_only(),
        )
        .await
        .unwrap();

        // A peer trusting another CA refuses it even with literal names.
        let other = tempfile::tempdir().unwrap();
        TestCa::new("Other CA").trust(other.path());
        let e = copy(
            &m,
            &tls_client(other.path(), true, true),
            &target,
            https_only(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::SECURE_FAILURE, "{e}");
        // A peer trusting nothing cannot check it: 0xA, before connecting.
        let empty = tempfile::tempdir().unwrap();
        let e = copy(
            &m,
            &tls_client(empty.path(), true, false),
            &target,
            https_only(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::BAD_ENVIRONMENT, "{e}");
        assert!(e.to_string().contains("trusted"), "{e}");
        // A self-signed master is refused by a peer that requires PKI.
        let s = TlsMaster::start(false, |_| {});
        let e = copy(
            &s,
            &tls_client(trusting.path(), true, true),
            &s.target(),
            https_only(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::SECURE_FAILURE, "{e}");
    })
    .await
}

#[tokio::test]
async fn without_a_qualifying_pki_certificate_https_does_not_listen_until_one_is_added() {
    bounded(async {
        let ca = TestCa::new("Branch CA");
        // Only an expired certificate.
        let m = TlsMaster::start(true, |s| ca.install(s, "old.pem", &["dp01"], (-90, -1)));
        match m.certs.state() {
            crate::certstore::ServerCertState::Unavailable { reason, rejected } => {
                assert!(reason.contains("0x1"), "{reason}");
                assert_eq!(rejected.len(), 1);
                assert!(rejected[0].reason.contains("expired"), "{rejected:?}");
            }
            s => panic!("{s:?}"),
        }
        let trusting = tempfile::tempdir().unwrap();
        ca.trust(trusting.path());
        let client = tls_client(trusting.path(), true, false);
        let e = copy(&m, &client, &m.target(), https_only()).await.unwrap_err();
        assert_eq!(e.code(), Code::CANNOT_CONNECT, "{e}");
        // HTTP goes on.
        copy(&m, &client, &m.target(), both()).await.unwrap();

        // A good certificate dropped into my/: taken at the next look, and the port
        // listens.
        ca.install(m.store.path(), "new.pem", &["dp01.branch.example"], (-1, 90));
        m.certs.store().refresh();
        assert!(m.certs.refresh(now()));
        let mut usable = m.certs.usable();
        usable.wait_for(|u| *u).await.unwrap();
        let target = m.target();
        let mut last = None;
        for _ in 0..50 {
            match copy(&m, &client, &target, https_only()).await {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(last.is_none(), "{last:?}");
        let bound = m.certs.state();
        assert!(matches!(&bound, crate::certstore::ServerCertState::Bound(b) if b.kind == "PKI" && b.file.ends_with("new.pem")), "{bound:?}");
    })
    .await
}

#[tokio::test]
async fn the_https_port_speaks_only_tls_1_2_and_1_3() {
    bounded(async {
        let m = TlsMaster::start(false, |_| {});
        let addr = m.https.local_addr();
        // Plain HTTP to the HTTPS port is not served, and is counted.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /content/PKG1/3/have HTTP/1.1\r\nHost: peer\r\nAuthorization: {}\r\n\r\n",
            p2p_auth()
        );
        plain.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer).await;
        // At most a TLS alert record (content type 21), never an HTTP answer.
        assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
        until(|| m.https.counters().snapshot().tls_handshakes_failed >= 1).await;
        // rustls speaks nothing older than 1.2: a client offering only 1.2 works.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pin = m.certs.pin().borrow().unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::certstore::MasterVerifier::new(
                crate::certstore::MasterCheck::Pinned(pin),
                provider,
            )))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let tls = connector.connect(name, tcp).await.unwrap();
        let (_, conn) = tls.get_ref();
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        let suite = conn.negotiated_cipher_suite().unwrap();
        let name = format!("{:?}", suite.suite());
        assert!(
            name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
            "{name}"
        );
    })
    .await
}
