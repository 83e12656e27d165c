//! A throwaway PKI made with the `openssl` command in a temporary directory.
//!
//! The project requires certificates made by openssl (not by a Rust crate), so
//! these helpers shell out to it. Every key is generated at run time; nothing is
//! committed. Certificates are signed with `openssl ca`, which (unlike `openssl
//! x509` before 3.4) can set validity dates in the past for expired certificates.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Which kind of key the PKI generates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048 bits, as a Windows enterprise CA usually issues.
    #[default]
    Rsa2048,
    /// ECDSA P-256: much faster to generate.
    EcP256,
}

/// How to create a [`Pki`].
#[derive(Debug, Clone)]
pub struct PkiOptions {
    /// Key kind for the CA and every certificate.
    pub key: KeyKind,
    /// Common name of the CA.
    pub ca_name: String,
}

impl Default for PkiOptions {
    fn default() -> Self {
        PkiOptions {
            key: KeyKind::default(),
            ca_name: "contentdist test CA".into(),
        }
    }
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The name the certificate was made for (its subject CN).
    pub name: String,
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, unencrypted).
    pub key: PathBuf,
    /// The certificate followed by the issuing CA's (the CA's alone if self-signed).
    pub chain: PathBuf,
}

/// What certificate [`Pki::issue`] makes.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Subject CN, also used in file names.
    pub name: String,
    /// subjectAltName entries in openssl syntax: `DNS:host`, `IP:127.0.0.1`.
    pub sans: Vec<String>,
    /// extendedKeyUsage values in openssl syntax: `serverAuth`, `clientAuth`. Empty:
    /// no extendedKeyUsage extension at all.
    pub extended_key_usage: Vec<String>,
    /// Valid this many days from now (ignored when both dates are given).
    pub days: u32,
    /// notBefore as `YYYYMMDDHHMMSSZ` (openssl ca `-startdate`).
    pub not_before: Option<String>,
    /// notAfter as `YYYYMMDDHHMMSSZ` (openssl ca `-enddate`).
    pub not_after: Option<String>,
    /// Sign with its own key instead of the CA's.
    pub self_signed: bool,
}

impl Default for CertSpec {
    fn default() -> Self {
        CertSpec {
            name: "test".into(),
            sans: Vec::new(),
            extended_key_usage: Vec::new(),
            days: 365,
            not_before: None,
            not_after: None,
            self_signed: false,
        }
    }
}

/// How [`Pki::pkcs12_with`] packs a certificate.
#[derive(Debug, Clone, Default)]
pub struct Pkcs12Options {
    /// Export password; empty is allowed.
    pub password: String,
    /// Use the legacy (RC2/3DES, SHA-1 MAC) encryption older Windows exports use.
    pub legacy: bool,
    /// Leave the CA certificate out of the bundle.
    pub without_chain: bool,
}

/// A CA in a temporary directory (deleted when dropped) that issues certificates.
pub struct Pki {
    dir: tempfile::TempDir,
    key: KeyKind,
    counter: AtomicU32,
}

impl Pki {
    /// Creates a CA (basicConstraints CA:TRUE, keyUsage keyCertSign) with RSA keys.
    pub fn create() -> Pki {
        Pki::create_with(PkiOptions::default())
    }

    /// Creates a CA as `options` say.
    pub fn create_with(options: PkiOptions) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("contentdist-pki")
            .tempdir()
            .expect("create the PKI directory");
        let pki = Pki {
            dir,
            key: options.key,
            counter: AtomicU32::new(0),
        };
        let d = pki.dir.path();
        std::fs::create_dir_all(d.join("newcerts")).expect("create newcerts");
        std::fs::write(d.join("index.txt"), b"").expect("create index.txt");
        std::fs::write(d.join("serial"), b"1000\n").expect("create serial");
        std::fs::write(d.join("ca.cnf"), ca_config(d)).expect("write ca.cnf");
        pki.genkey(&d.join("ca.key"));
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-config",
                "ca.cnf",
                "-extensions",
                "ca_ext",
                "-key",
                "ca.key",
                "-subj",
                &subject(&options.ca_name),
                "-days",
                "3650",
                "-sha256",
                "-out",
                "ca.pem",
            ],
        );
        pki
    }

    /// The CA certificate (PEM).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA private key (PEM).
    pub fn ca_key(&self) -> PathBuf {
        self.dir.path().join("ca.key")
    }

    /// The PKI's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate (extendedKeyUsage serverAuth) for `sans` such as
    /// `"IP:127.0.0.1"`, `"DNS:localhost"`.
    pub fn server_cert(&self, name: &str, sans: &[&str]) -> CertFiles {
        self.issue(&CertSpec {
            name: name.into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            extended_key_usage: vec!["serverAuth".into()],
            ..CertSpec::default()
        })
    }

    /// A client certificate (extendedKeyUsage clientAuth, SAN `DNS:name`).
    pub fn client_cert(&self, name: &str) -> CertFiles {
        self.issue(&CertSpec {
            name: name.into(),
            sans: vec![format!("DNS:{name}")],
            extended_key_usage: vec!["clientAuth".into()],
            ..CertSpec::default()
        })
    }

    /// A client certificate whose validity ended in 2021 (valid 2020-01-01 to 2021-01-01).
    pub fn expired_client_cert(&self, name: &str) -> CertFiles {
        self.issue(&CertSpec {
            name: name.into(),
            sans: vec![format!("DNS:{name}")],
            extended_key_usage: vec!["clientAuth".into()],
            not_before: Some("20200101000000Z".into()),
            not_after: Some("20210101000000Z".into()),
            ..CertSpec::default()
        })
    }

    /// A client certificate whose validity starts in 2099.
    pub fn not_yet_valid_client_cert(&self, name: &str) -> CertFiles {
        self.issue(&CertSpec {
            name: name.into(),
            sans: vec![format!("DNS:{name}")],
            extended_key_usage: vec!["clientAuth".into()],
            not_before: Some("20990101000000Z".into()),
            not_after: Some("21000101000000Z".into()),
            ..CertSpec::default()
        })
    }

    /// A CA-signed certificate for serverAuth only, to be offered as a client
    /// certificate (wrong usage).
    pub fn wrong_usage_cert(&self, name: &str) -> CertFiles {
        self.issue(&CertSpec {
            name: name.into(),
            sans: vec![format!("DNS:{name}")],
            extended_key_usage: vec!["serverAuth".into()],
            ..CertSpec::default()
        })
    }

    /// A self-signed certificate with extendedKeyUsage clientAuth (not from this CA).
    pub fn self_signed_client_cert(&self, name: &str) -> CertFiles {
        self.issue(&CertSpec {
            name: name.into(),
            sans: vec![format!("DNS:{name}")],
            extended_key_usage: vec!["clientAuth".into()],
            self_signed: true,
            ..CertSpec::default()
        })
    }

    /// Makes a certificate as `spec` says. Panics (with openssl's output) on failure.
    pub fn issue(&self, spec: &CertSpec) -> CertFiles {
        let d = self.dir.path();
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let base = format!("{}-{n}", file_stem(&spec.name));
        let ext_file = format!("{base}.ext.cnf");
        std::fs::write(d.join(&ext_file), cert_config(spec, self.key))
            .expect("write the certificate config");
        let key = d.join(format!("{base}.key"));
        let cert = d.join(format!("{base}.pem"));
        self.genkey(&key);
        let subject = subject(&spec.name);
        let (key_s, cert_s) = (path_str(&key), path_str(&cert));
        if spec.self_signed {
            let mut args = vec![
                "req",
                "-x509",
                "-new",
                "-config",
                &ext_file,
                "-extensions",
                "ext",
                "-key",
                key_s,
                "-subj",
                &subject,
                "-sha256",
                "-out",
                cert_s,
            ];
            let days = spec.days.to_string();
            args.extend(["-days", &days]);
            openssl(d, &args);
        } else {
            let csr = format!("{base}.csr");
            openssl(
                d,
                &[
                    "req", "-new", "-config", &ext_file, "-key", key_s, "-subj", &subject, "-out",
                    &csr,
                ],
            );
            let days = spec.days.to_string();
            let mut args = vec![
                "ca",
                "-batch",
                "-notext",
                "-config",
                "ca.cnf",
                "-extfile",
                &ext_file,
                "-extensions",
                "ext",
                "-in",
                &csr,
                "-out",
                cert_s,
            ];
            match (&spec.not_before, &spec.not_after) {
                (Some(start), Some(end)) => args.extend(["-startdate", start, "-enddate", end]),
                (Some(start), None) => args.extend(["-startdate", start, "-days", &days]),
                (None, Some(end)) => args.extend(["-enddate", end]),
                (None, None) => args.extend(["-days", &days]),
            }
            openssl(d, &args);
        }
        let chain = d.join(format!("{base}.chain.pem"));
        let mut chain_pem = std::fs::read(&cert).expect("read the new certificate");
        if !spec.self_signed {
            chain_pem.extend(std::fs::read(self.ca_cert()).expect("read the CA certificate"));
        }
        std::fs::write(&chain, chain_pem).expect("write the chain file");
        CertFiles {
            name: spec.name.clone(),
            cert,
            key,
            chain,
        }
    }

    /// Packs `files` (key, certificate and the CA) into a PKCS#12 file protected by
    /// `password` (OpenSSL 3 defaults: AES-256, PBKDF2).
    pub fn pkcs12(&self, files: &CertFiles, password: &str) -> PathBuf {
        self.pkcs12_with(
            files,
            &Pkcs12Options {
                password: password.into(),
                ..Pkcs12Options::default()
            },
        )
    }

    /// Packs `files` into a PKCS#12 file as `options` say.
    pub fn pkcs12_with(&self, files: &CertFiles, options: &Pkcs12Options) -> PathBuf {
        let d = self.dir.path();
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let out = d.join(format!("{}-{n}.p12", file_stem(&files.name)));
        let pass = format!("pass:{}", options.password);
        let ca = path_str_owned(&self.ca_cert());
        let mut args = vec![
            "pkcs12",
            "-export",
            "-inkey",
            path_str(&files.key),
            "-in",
            path_str(&files.cert),
            "-name",
            &files.name,
            "-passout",
            &pass,
            "-out",
            path_str(&out),
        ];
        if !options.without_chain {
            args.extend(["-certfile", &ca]);
        }
        if options.legacy {
            args.push("-legacy");
        }
        openssl(d, &args);
        out
    }

    /// Runs `openssl verify -CAfile ca.pem [-purpose P] cert`; Err holds openssl's
    /// output (e.g. "certificate has expired"). `purpose`: `sslclient`, `sslserver`.
    pub fn verify(&self, cert: &Path, purpose: Option<&str>) -> Result<(), String> {
        let mut cmd = Command::new("openssl");
        cmd.arg("verify").arg("-CAfile").arg(self.ca_cert());
        if let Some(purpose) = purpose {
            cmd.args(["-purpose", purpose]);
        }
        let out = cmd
            .arg(cert)
            .output()
            .map_err(|e| format!("run openssl: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(text)
        }
    }

    fn genkey(&self, out: &Path) {
        let algorithm: &[&str] = match self.key {
            KeyKind::Rsa2048 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            KeyKind::EcP256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        };
        let mut args = vec!["genpkey"];
        args.extend_from_slice(algorithm);
        args.extend(["-out", path_str(out)]);
        openssl(self.dir.path(), &args);
    }
}

/// The SHA-1 thumbprint of a PEM certificate as Windows shows it: 40 upper-case
/// hex digits without separators.
pub fn sha1_thumbprint(cert: &Path) -> String {
    let out = openssl(
        Path::new("/"),
        &[
            "x509",
            "-in",
            path_str(cert),
            "-noout",
            "-fingerprint",
            "-sha1",
        ],
    );
    let (_, hex) = out
        .trim()
        .split_once('=')
        .expect("openssl fingerprint output has '='");
    hex.replace(':', "").to_uppercase()
}

/// The version line of the installed openssl, e.g. `OpenSSL 3.0.19 27 Jan 2026 ...`.
pub fn openssl_version() -> String {
    openssl(Path::new("/"), &["version"]).trim().to_string()
}

/// Runs openssl in `dir`; returns stdout; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run openssl (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "openssl {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn path_str_owned(p: &Path) -> String {
    path_str(p).to_string()
}

/// `/CN=name` with the characters `-subj` treats specially escaped.
fn subject(name: &str) -> String {
    let mut s = String::from("/CN=");
    for c in name.chars() {
        if matches!(c, '/' | '+' | '=' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn ca_config(dir: &Path) -> String {
    format!(
        "[req]\n\
         distinguished_name = dn\n\
         [dn]\n\
         [ca_ext]\n\
         basicConstraints = critical, CA:TRUE\n\
         keyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [ca]\n\
         default_ca = test_ca\n\
         [test_ca]\n\
         dir = {}\n\
         database = $dir/index.txt\n\
         new_certs_dir = $dir/newcerts\n\
         serial = $dir/serial\n\
         certificate = $dir/ca.pem\n\
         private_key = $dir/ca.key\n\
         default_md = sha256\n\
         policy = policy_any\n\
         unique_subject = no\n\
         copy_extensions = none\n\
         email_in_dn = no\n\
         [policy_any]\n\
         commonName = supplied\n",
        dir.display()
    )
}

/// A config usable both as `openssl req -config` and `openssl ca -extfile`.
fn cert_config(spec: &CertSpec, key: KeyKind) -> String {
    let mut c = String::from("[req]\ndistinguished_name = dn\n[dn]\n[ext]\n");
    c.push_str("basicConstraints = critical, CA:FALSE\n");
    let usage = match key {
        KeyKind::Rsa2048 => "digitalSignature, keyEncipherment",
        KeyKind::EcP256 => "digitalSignature",
    };
    let _ = writeln!(c, "keyUsage = critical, {usage}");
    c.push_str("subjectKeyIdentifier = hash\n");
    if !spec.self_signed {
        c.push_str("authorityKeyIdentifier = keyid, issuer\n");
    }
    if !spec.extended_key_usage.is_empty() {
        let _ = writeln!(
            c,
            "extendedKeyUsage = {}",
            spec.extended_key_usage.join(", ")
        );
    }
    if !spec.sans.is_empty() {
        let _ = writeln!(c, "subjectAltName = {}", spec.sans.join(", "));
    }
    c
}
