//! Reading `CertStoreDir`: `my/` holds this host's certificates with their private
//! keys, `trusted/` the CA certificates peers and masters are checked against.
//!
//! In `my/`: PEM (`NAME.pem`/`.crt`/`.cer` holding the certificate, its chain, and
//! the key, or the key in `NAME.key` beside it) and PKCS#12 (`NAME.p12`/`.pfx`, the
//! password in `NAME.pass`, or none). In `trusted/`: PEM certificates, any number a
//! file. A file that cannot be read or parsed is reported with its name and the
//! reason and skipped: it never stops the agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::CertInfo;

/// One of this host's certificates, with its private key, ready for TLS.
#[derive(Clone, Debug)]
pub struct OwnedCert {
    /// The leaf's facts.
    pub info: CertInfo,
    /// Chain (leaf first) and signing key, as rustls uses them.
    pub key: Arc<CertifiedKey>,
    /// The file it came from.
    pub file: PathBuf,
}

/// A CA certificate from `trusted/`.
#[derive(Clone, Debug)]
pub struct TrustedCert {
    /// Its facts.
    pub info: CertInfo,
    /// The certificate.
    pub der: CertificateDer<'static>,
    /// The file it came from.
    pub file: PathBuf,
}

/// A file of the store that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreProblem {
    /// The file.
    pub file: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// What the store holds at one moment.
#[derive(Clone, Debug, Default)]
pub struct StoreContents {
    /// `my/`, in file-name order.
    pub mine: Vec<OwnedCert>,
    /// `trusted/`, in file-name order.
    pub trusted: Vec<TrustedCert>,
    /// Files skipped.
    pub problems: Vec<StoreProblem>,
}

/// Files that only accompany another (`NAME.key`, `NAME.pass`).
fn is_companion(path: &Path) -> bool {
    matches!(ext(path).as_str(), "key" | "pass")
}

fn ext(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// The regular files of `dir`, sorted; a missing directory is empty.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// Read the store under `dir`.
pub fn load(dir: &Path) -> StoreContents {
    let mut s = StoreContents::default();
    for file in files(&dir.join("my")) {
        if is_companion(&file) {
            continue;
        }
        match load_owned(&file) {
            Ok(c) => s.mine.push(c),
            Err(reason) => s.problems.push(StoreProblem { file, reason }),
        }
    }
    for file in files(&dir.join("trusted")) {
        match load_trusted(&file) {
            Ok(mut certs) => s.trusted.append(&mut certs),
            Err(reason) => s.problems.push(StoreProblem { file, reason }),
        }
    }
    s
}

/// One certificate with its private key from `file` (as in `my/`: PEM with the key
/// inside or in `NAME.key`, or PKCS#12 with the password in `NAME.pass`).
pub fn load_owned(file: &Path) -> Result<OwnedCert, String> {
    let (chain, key) = match ext(file).as_str() {
        "p12" | "pfx" => read_pkcs12(file)?,
        "pem" | "crt" | "cer" => read_pem_pair(file)?,
        other => {
            return Err(format!(
                "unknown kind of file '.{other}' (expected .pem, .crt, .cer, .p12 or .pfx)"
            ))
        }
    };
    let info = CertInfo::from_der(&chain[0]).map_err(|e| e.to_string())?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        format!("the private key does not fit the certificate or is not supported: {e}")
    })?;
    Ok(OwnedCert {
        info,
        key: Arc::new(key),
        file: file.to_path_buf(),
    })
}

fn read_pem_pair(
    file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = pem_certificates(file)?;
    let beside = file.with_extension("key");
    let key = PrivateKeyDer::from_pem_file(file).or_else(|_| {
        PrivateKeyDer::from_pem_file(&beside).map_err(|e| {
            format!(
                "no private key: none in the file, and {}: {e}",
                beside.display()
            )
        })
    })?;
    Ok((chain, key))
}

fn read_pkcs12(
    file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let data = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
    let pass_file = file.with_extension("pass");
    let password = match std::fs::read_to_string(&pass_file) {
        Ok(p) => p.trim_end_matches(['\r', '\n']).to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", pass_file.display())),
    };
    let store =
        p12_keystore::KeyStore::from_pkcs12(&data, &password, Default::default()).map_err(|e| {
            format!(
                "not a PKCS#12 file this password opens ({}): {e}",
                pass_file.display()
            )
        })?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or("no private key with a certificate in the PKCS#12 file")?;
    let certs: Vec<CertificateDer<'static>> = chain
        .certs()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    if certs.is_empty() {
        return Err("no certificate for the private key in the PKCS#12 file".into());
    }
    let key = PrivateKeyDer::try_from(chain.key().as_der().to_vec())
        .map_err(|e| format!("the private key is not PKCS#8: {e}"))?;
    Ok((certs, key))
}

/// Every certificate of a PEM file, in order; at least one.
fn pem_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("cannot read: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

fn load_trusted(file: &Path) -> Result<Vec<TrustedCert>, String> {
    let ders = pem_certificates(file)?;
    ders.into_iter()
        .map(|der| {
            let info = CertInfo::from_der(&der).map_err(|e| e.to_string())?;
            Ok(TrustedCert {
                info,
                der,
                file: file.to_path_buf(),
            })
        })
        .collect()
}

/// Names, sizes and times of every file: when it changes, the store is read again.
type Signature = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;

fn signature(dir: &Path) -> Signature {
    ["my", "trusted"]
        .iter()
        .flat_map(|sub| files(&dir.join(sub)))
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?;
            Some((p, (m.len(), m.modified().ok())))
        })
        .collect()
}

/// The store under one directory, read again whenever its files change.
#[derive(Debug)]
pub struct CertStore {
    dir: PathBuf,
    state: Mutex<(Option<Signature>, Arc<StoreContents>)>,
}

impl CertStore {
    /// The store under `dir` (read at the first [`CertStore::refresh`]).
    pub fn new(dir: &Path) -> CertStore {
        CertStore {
            dir: dir.to_path_buf(),
            state: Mutex::new((None, Arc::new(StoreContents::default()))),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the store held at the last refresh.
    pub fn contents(&self) -> Arc<StoreContents> {
        Arc::clone(&self.state.lock().expect("store lock").1)
    }

    /// Read the store again if a file was added, removed or changed. Returns the
    /// new contents when it did; its problems are new to the caller (log them: a
    /// bad file is reported once per change, not at every look).
    pub fn refresh(&self) -> Option<Arc<StoreContents>> {
        let sig = signature(&self.dir);
        let mut state = self.state.lock().expect("store lock");
        if state.0.as_ref() == Some(&sig) {
            return None;
        }
        let contents = Arc::new(load(&self.dir));
        *state = (Some(sig), Arc::clone(&contents));
        Some(contents)
    }

    /// [`CertStore::refresh`], logging each file skipped (once per change of the
    /// store, not at every look).
    pub fn refresh_logged(&self) -> Option<Arc<StoreContents>> {
        let contents = self.refresh()?;
        for p in &contents.problems {
            tracing::warn!(file = %p.file.display(), reason = %p.reason,
                "certificate store: file skipped");
        }
        Some(contents)
    }
}
