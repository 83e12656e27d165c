//! Mutual TLS on loopback (`P2PSslSettings` 0x2): a master that requires client
//! certificates issued through its trusted CAs, peers that present theirs, and
//! every kind of certificate the page says must be refused, refused at the
//! handshake with nothing served.

use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};

use super::https::{copy, https_only, tls_client_with, TlsMaster};
use super::*;
use crate::certstore::{CertStore, ClientCertOptions, ClientCerts, ClientRules};
use crate::codes::Code;
use crate::test_util::TestCa;

fn now() -> i64 {
    crate::cache::now_unix() as i64
}

/// A peer store with `ca` trusted and, when given, one client certificate.
fn peer_store(ca: &TestCa, cert: Option<(String, String)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ca.trust(dir.path());
    if let Some((c, k)) = cert {
        std::fs::create_dir_all(dir.path().join("my")).unwrap();
        std::fs::write(dir.path().join("my/client.pem"), format!("{c}{k}")).unwrap();
    }
    dir
}

fn client_certs(store: &std::path::Path) -> Arc<ClientCerts> {
    let s = Arc::new(CertStore::new(store));
    s.refresh();
    let c = Arc::new(ClientCerts::new(ClientCertOptions {
        store: s,
        rules: ClientRules::default(),
        boot_image: None,
        preboot: false,
    }));
    c.refresh(now());
    c
}

/// Presents one certificate whatever the server asks, as a client that ignores
/// the selection rules would: the master alone must refuse what is wrong.
#[derive(Debug)]
struct Always(Option<Arc<rustls::sign::CertifiedKey>>);

impl rustls::client::ResolvesClientCert for Always {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.clone()
    }
    fn has_certs(&self) -> bool {
        self.0.is_some()
    }
}

/// GET `have` from `m` over HTTPS presenting exactly `cert` (or none): the status,
/// or the failure's code and words.
async fn raw_have(
    m: &TlsMaster,
    cert: Option<Arc<rustls::sign::CertifiedKey>>,
) -> Result<u16, (Code, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pin = m.certs.pin().borrow().unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::certstore::MasterVerifier::new(
            crate::certstore::MasterCheck::Pinned(pin),
            provider,
        )))
        .with_client_cert_resolver(Arc::new(Always(cert)));
    let client = crate::transfer::http_client(
        config,
        &crate::transfer::ClientOptions {
            connect_timeout: Duration::from_secs(2),
            read_timeout: Some(Duration::from_secs(5)),
            local_address: None,
        },
    )
    .unwrap();
    let url = reqwest::Url::parse(&format!(
        "https://{}/content/PKG1/3/have",
        m.https.local_addr()
    ))
    .unwrap();
    match client.get(url.clone()).send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => {
            let f = crate::transfer::classify(crate::transfer::Remote::Master, &url, &e);
            Err((f.code, f.to_string()))
        }
    }
}

#[tokio::test]
async fn a_peer_with_a_client_certificate_from_a_trusted_ca_copies_without_any_account() {
    bounded(async {
        let ca = TestCa::new("Branch CA");
        let m = TlsMaster::start_with(false, true, |s| ca.trust(s));
        let target = m.target();
        let store = peer_store(
            &ca,
            Some(ca.leaf_pem(&["pc1.branch.example"], (-1, 30), ClientAuth)),
        );
        let client = tls_client_with(store.path(), false, false, Some(client_certs(store.path())));
        copy(&m, &client, &target, https_only()).await.unwrap();
        let served = m.https.counters().snapshot();
        assert!(
            served.bytes_served >= m.content.manifest.total_size(),
            "{served:?}"
        );
        assert_eq!(served.tls_handshakes_failed, 0);
        // The P2P account does not exist on such a master: over HTTP it is refused.
        let http = Protocols::NONE.with(Protocol::Http);
        let e = copy(&m, &super::client(), &target, http).await.unwrap_err();
        assert_eq!(e.code(), Code::ORIGIN_REFUSED, "{e}");
    })
    .await
}

#[tokio::test]
async fn every_certificate_the_page_excludes_is_refused_at_the_handshake_and_nothing_is_served() {
    bounded(async {
        let ca = TestCa::new("Branch CA");
        let other = TestCa::new("Other CA");
        let m = TlsMaster::start_with(false, true, |s| ca.trust(s));
        let name = ["pc1.branch.example"];
        let good = TestCa::certified(ca.leaf_pem(&name, (-1, 30), ClientAuth));
        assert_eq!(raw_have(&m, Some(good)).await, Ok(200));
        let served = m.https.counters().snapshot().bytes_served;
        let self_signed = {
            let dir = tempfile::tempdir().unwrap();
            let id = crate::certstore::HostIdentity {
                host_name: "pc1".into(),
                fqdn: "pc1.branch.example".into(),
            };
            // The agent's own self-signed kind (server usage), and one made for
            // client usage: both refused as self-signed.
            crate::certstore::self_signed(dir.path(), &id, now())
                .unwrap()
                .key
        };
        let cases = [
            ("none", None, "client certificate"),
            (
                "expired",
                Some(TestCa::certified(ca.leaf_pem(&name, (-60, -1), ClientAuth))),
                "client certificate",
            ),
            (
                "not yet valid",
                Some(TestCa::certified(ca.leaf_pem(&name, (2, 30), ClientAuth))),
                "client certificate",
            ),
            (
                "server usage only",
                Some(TestCa::certified(ca.leaf_pem(&name, (-1, 30), ServerAuth))),
                "not for client authentication",
            ),
            (
                "untrusted issuer",
                Some(TestCa::certified(other.leaf_pem(
                    &name,
                    (-1, 30),
                    ClientAuth,
                ))),
                "not issued by a CA",
            ),
            ("self-signed", Some(self_signed), "client certificate"),
        ];
        for (what, cert, words) in cases {
            let offered = cert.is_some();
            let (code, text) = raw_have(&m, cert).await.expect_err(what);
            let expected = if offered {
                Code::SECURE_FAILURE
            } else {
                Code::CLIENT_CERT_MISSING
            };
            assert_eq!(code, expected, "{what}: {text}");
            assert!(text.contains(words), "{what}: {text}");
        }
        let after = m.https.counters().snapshot();
        assert_eq!(
            after.bytes_served, served,
            "nothing served to a refused peer"
        );
        assert!(after.tls_handshakes_failed >= 6, "{after:?}");
        assert_eq!(after.requests, 1, "no refused peer got as far as a request");
    })
    .await
}

#[tokio::test]
async fn a_peer_without_a_usable_client_certificate_offers_none_and_gets_0x209a() {
    bounded(async {
        let ca = TestCa::new("Branch CA");
        let m = TlsMaster::start_with(false, true, |s| ca.trust(s));
        // Only an expired certificate in its store: the selection offers nothing.
        let store = peer_store(
            &ca,
            Some(ca.leaf_pem(&["pc1.branch.example"], (-60, -1), ClientAuth)),
        );
        let certs = client_certs(store.path());
        assert!(certs.current().is_none());
        let client = tls_client_with(store.path(), false, false, Some(certs));
        let e = copy(&m, &client, &m.target(), https_only())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::CLIENT_CERT_MISSING, "{e}");
        assert_eq!(m.https.counters().snapshot().bytes_served, 0);
    })
    .await
}
