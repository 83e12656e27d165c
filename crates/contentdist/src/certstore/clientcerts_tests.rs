//! The client certificate's cache (the page's "Caching of certificates") and the
//! boot-image certificate, with certificates made by a test CA.

use std::path::Path;
use std::sync::Arc;

use rcgen::ExtendedKeyUsagePurpose::ClientAuth;

use super::*;
use crate::test_util::TestCa;

const DAY: i64 = 86_400;

fn now() -> i64 {
    crate::cache::now_unix() as i64
}

/// A client certificate for `name` valid `days` around now, in `store/my/FILE`.
fn put(ca: &TestCa, store: &Path, file: &str, name: &str, days: (i64, i64)) -> String {
    let (cert, key) = ca.leaf_pem(&[name], days, ClientAuth);
    std::fs::create_dir_all(store.join("my")).unwrap();
    std::fs::write(store.join("my").join(file), format!("{cert}{key}")).unwrap();
    CertInfo::from_der(
        rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes())
            .map(|d: rustls::pki_types::CertificateDer<'static>| d)
            .unwrap()
            .as_ref(),
    )
    .unwrap()
    .thumbprint
}

fn certs(store: &Path, boot: Option<&Path>, preboot: bool) -> (Arc<CertStore>, ClientCerts) {
    let s = Arc::new(CertStore::new(store));
    let c = ClientCerts::new(ClientCertOptions {
        store: Arc::clone(&s),
        rules: ClientRules::default(),
        boot_image: boot.map(Path::to_path_buf),
        preboot,
    });
    (s, c)
}

fn chosen(c: &ClientCerts) -> Option<(String, String)> {
    match c.state() {
        ClientCertState::Chosen(l) => Some((l.thumbprint, l.source)),
        _ => None,
    }
}

#[test]
fn the_chosen_certificate_is_kept_until_it_expires_or_leaves_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Branch CA");
    let first = put(&ca, dir.path(), "a.pem", "pc1.branch.example", (-1, 30));
    let (store, c) = certs(dir.path(), None, false);
    store.refresh();
    assert!(c.refresh(now()));
    assert_eq!(chosen(&c), Some((first.clone(), "store".into())));
    assert!(c.current().is_some());
    assert!(*c.available().borrow());

    // A certificate that would rank higher (later expiry) arrives: the cached one
    // is kept, as the page says.
    let later = put(&ca, dir.path(), "b.pem", "pc1.branch.example", (-1, 300));
    store.refresh();
    assert!(!c.refresh(now()));
    assert_eq!(chosen(&c).unwrap().0, first);

    // The cached one expires: chosen again, the other one.
    assert!(c.refresh(now() + 60 * DAY));
    assert_eq!(chosen(&c).unwrap().0, later);

    // The chosen one leaves the store: chosen again, and none is left that is
    // usable after the first one's end.
    std::fs::remove_file(dir.path().join("my/b.pem")).unwrap();
    store.refresh();
    assert!(c.refresh(now() + 60 * DAY));
    match c.state() {
        ClientCertState::Missing { reason } => assert!(reason.contains("expired"), "{reason}"),
        s => panic!("{s:?}"),
    }
    assert!(c.current().is_none());
    assert!(!*c.available().borrow());
}

#[test]
fn an_empty_store_says_so_and_the_boot_image_is_the_fallback_or_first_in_preboot() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Branch CA");
    let (store, c) = certs(dir.path(), None, false);
    store.refresh();
    c.refresh(now());
    match c.state() {
        ClientCertState::Missing { reason } => {
            assert!(reason.contains("holds no certificate"), "{reason}")
        }
        s => panic!("{s:?}"),
    }

    // The boot image's certificate, as PEM with its key.
    let boot_dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf_pem(&["minint-1.branch.example"], (-1, 30), ClientAuth);
    let boot = boot_dir.path().join("boot.pem");
    std::fs::write(&boot, format!("{cert}{key}")).unwrap();

    // Full OS: the store wins, the boot image when the store has none.
    let (store, full) = certs(dir.path(), Some(&boot), false);
    store.refresh();
    full.refresh(now());
    assert_eq!(chosen(&full).unwrap().1, "boot image");
    let mine = put(&ca, dir.path(), "a.pem", "pc1.branch.example", (-1, 30));
    let (s2, fresh) = certs(dir.path(), Some(&boot), false);
    s2.refresh();
    fresh.refresh(now());
    assert_eq!(chosen(&fresh), Some((mine, "store".into())));

    // Preboot: the boot image first, even with one in the store.
    let (s3, pre) = certs(dir.path(), Some(&boot), true);
    s3.refresh();
    pre.refresh(now());
    assert_eq!(chosen(&pre).unwrap().1, "boot image");

    // A boot image that is not usable (server usage only) is refused with its reason.
    let (cert, key) = ca.leaf_pem(
        &["minint-2"],
        (-1, 30),
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    std::fs::write(&boot, format!("{cert}{key}")).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let (_, bad) = certs(empty.path(), Some(&boot), true);
    bad.refresh(now());
    match bad.state() {
        ClientCertState::Missing { reason } => {
            assert!(
                reason.contains("boot image") && reason.contains("client"),
                "{reason}"
            )
        }
        s => panic!("{s:?}"),
    }
}
