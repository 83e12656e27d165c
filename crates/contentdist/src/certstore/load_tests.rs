//! Reading the store: every accepted file form, every skipped file with its reason,
//! and a certificate dropped in while running.

use std::path::Path;

use super::tests::openssl;
use super::*;

/// A self-signed certificate for `cn` as `name.crt` + `name.key` in `dir`.
fn make(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "30",
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
}

#[test]
fn every_form_of_my_certificates_loads_and_bad_files_are_skipped_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let my = tmp.path().join("store/my");
    let trusted = tmp.path().join("store/trusted");
    for d in [&work, &my, &trusted] {
        std::fs::create_dir_all(d).unwrap();
    }
    // NAME.crt + NAME.key.
    make(&my, "pair", "pair.example");
    // One PEM file holding certificate and key.
    make(&work, "one", "one.example");
    let mut both = std::fs::read(work.join("one.crt")).unwrap();
    both.extend(std::fs::read(work.join("one.key")).unwrap());
    std::fs::write(my.join("one.pem"), both).unwrap();
    // PKCS#12 with a password file, and one without a password.
    make(&work, "p12", "p12.example");
    openssl(
        &work,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "p12.key",
            "-in",
            "p12.crt",
            "-out",
            "../store/my/p12.p12",
            "-passout",
            "pass:s3cret",
        ],
    );
    std::fs::write(my.join("p12.pass"), "s3cret\n").unwrap();
    make(&work, "open", "open.example");
    openssl(
        &work,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "open.key",
            "-in",
            "open.crt",
            "-out",
            "../store/my/open.pfx",
            "-passout",
            "pass:",
        ],
    );
    // Bad ones: no key, a key of another certificate, garbage, a wrong password.
    std::fs::copy(work.join("one.crt"), my.join("nokey.crt")).unwrap();
    std::fs::copy(work.join("one.crt"), my.join("mismatch.crt")).unwrap();
    std::fs::copy(work.join("p12.key"), my.join("mismatch.key")).unwrap();
    std::fs::write(
        my.join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::copy(my.join("p12.p12"), my.join("locked.p12")).unwrap();
    std::fs::write(my.join("locked.pass"), "wrong").unwrap();
    std::fs::write(my.join("notes.txt"), "hello").unwrap();
    // Trusted: two CA certificates in one file.
    let mut cas = std::fs::read(work.join("p12.crt")).unwrap();
    cas.extend(std::fs::read(work.join("open.crt")).unwrap());
    std::fs::write(trusted.join("cas.pem"), cas).unwrap();

    let s = load(&tmp.path().join("store"));
    let loaded: Vec<String> = s
        .mine
        .iter()
        .map(|c| c.info.common_names.join(","))
        .collect();
    assert_eq!(
        loaded,
        ["one.example", "open.example", "p12.example", "pair.example"]
    );
    let skipped: Vec<(String, &str)> = s
        .problems
        .iter()
        .map(|p| {
            let name = p.file.file_name().unwrap().to_string_lossy().into_owned();
            (name, p.reason.as_str())
        })
        .collect();
    let reason = |f: &str| {
        skipped
            .iter()
            .find(|(n, _)| n == f)
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| panic!("{f} not reported: {skipped:?}"))
    };
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    assert!(reason("nokey.crt").contains("no private key"));
    assert!(reason("mismatch.crt").contains("does not fit"));
    assert!(reason("junk.pem").contains("PEM") || reason("junk.pem").contains("certificate"));
    assert!(reason("locked.p12").contains("password"));
    assert!(reason("notes.txt").contains("unknown kind of file"));
    assert_eq!(s.trusted.len(), 2);
    assert!(s.trusted.iter().all(|t| t.file.ends_with("cas.pem")));
}

#[test]
fn a_certificate_dropped_into_my_is_seen_at_the_next_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let my = tmp.path().join("my");
    std::fs::create_dir_all(&my).unwrap();
    let store = CertStore::new(tmp.path());
    let first = store.refresh().expect("the first refresh reads the store");
    assert!(first.mine.is_empty());
    assert!(store.refresh().is_none(), "nothing changed");
    make(&my, "new", "new.example");
    let again = store.refresh().expect("a new file is noticed");
    assert_eq!(again.mine.len(), 1);
    assert_eq!(store.contents().mine[0].info.common_names, ["new.example"]);
    std::fs::remove_file(my.join("new.crt")).unwrap();
    assert!(store.refresh().expect("a removal too").mine.is_empty());
}
