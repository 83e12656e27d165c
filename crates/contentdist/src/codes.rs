//! The code catalogue: every status and error code the agent reports, in one place.
//!
//! Numbers follow the original product where it has one (0x209A, 0x2EFD, 0x4CF,
//! 0x2F8F, 0xA, 0x205A, 0x205D) and the Windows/WinHTTP error numbers its
//! administrators already know where one fits (0x70 disk full, 0x17 data error,
//! 0x4C7 cancelled, 0x2EE2 timeout). Codes that exist only in contentdist live in
//! the 0xCD00 block, which no Windows facility or product range uses.
//!
//! [`SuccessCodes`] parses the product's `SuccessCodes` setting: a comma-separated
//! list of codes and inclusive ranges (`0x2050-0x2058`). A failed job whose code is
//! in that list is reported as "do not fall back to downloading directly from the
//! origin" (exit status 3 of `contentdist get`).

use std::fmt;
use std::str::FromStr;

/// A status code from the catalogue (or any number a caller hands us).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u32);

impl Code {
    /// The job finished; the content is delivered.
    pub const OK: Code = Code(0);
    /// Windows ERROR_BAD_ENVIRONMENT: the page's other code for an invalid certificate
    /// on the master; here, a peer that has no CA to check a PKI master with.
    pub const BAD_ENVIRONMENT: Code = Code(0xA);
    /// Windows ERROR_CRC: a block kept failing verification.
    pub const DATA_ERROR: Code = Code(0x17);
    /// Windows ERROR_DISK_FULL.
    pub const DISK_FULL: Code = Code(0x70);
    /// Windows ERROR_NETWORK_UNREACHABLE.
    pub const NETWORK_UNREACHABLE: Code = Code(0x4CF);
    /// Windows ERROR_CANCELLED.
    pub const CANCELLED: Code = Code(0x4C7);
    /// Product: invalid special package path (bad content id, version or path).
    pub const INVALID_PACKAGE_PATH: Code = Code(0x205A);
    /// Product: distribution point (origin) path not found.
    pub const ORIGIN_NOT_FOUND: Code = Code(0x205D);
    /// Product: ERROR_CLIENT_CERT_MISSING.
    pub const CLIENT_CERT_MISSING: Code = Code(0x209A);
    /// WinHTTP ERROR_INTERNET_TIMEOUT: the server stopped sending.
    pub const TIMEOUT: Code = Code(0x2EE2);
    /// WinHTTP ERROR_INTERNET_NAME_NOT_RESOLVED.
    pub const NAME_NOT_RESOLVED: Code = Code(0x2EE7);
    /// WinHTTP ERROR_INTERNET_CANNOT_CONNECT.
    pub const CANNOT_CONNECT: Code = Code(0x2EFD);
    /// WinHTTP ERROR_WINHTTP_INVALID_SERVER_RESPONSE: truncated or malformed answer.
    pub const INVALID_SERVER_RESPONSE: Code = Code(0x2F78);
    /// WinHTTP ERROR_WINHTTP_SECURE_FAILURE.
    pub const SECURE_FAILURE: Code = Code(0x2F8F);
    /// contentdist: the manifest does not parse or is inconsistent.
    pub const MANIFEST_INVALID: Code = Code(0xCD01);
    /// contentdist: the manifest is not the content the job asked for.
    pub const MANIFEST_MISMATCH: Code = Code(0xCD02);
    /// contentdist: the origin answered with a server error (5xx) on every retry.
    pub const ORIGIN_SERVER_ERROR: Code = Code(0xCD03);
    /// contentdist: the origin or the master refused the request (401/403 or another 4xx).
    pub const ORIGIN_REFUSED: Code = Code(0xCD04);
    /// contentdist: the settings file is invalid.
    pub const CONFIG_INVALID: Code = Code(0xCD05);
    /// contentdist: the local agent cannot be reached on its control socket.
    pub const AGENT_UNREACHABLE: Code = Code(0xCD06);
    /// contentdist: reading or writing the cache failed (other than disk full).
    pub const CACHE_IO: Code = Code(0xCD07);
    /// contentdist: no origin URL is configured.
    pub const NO_ORIGIN: Code = Code(0xCD08);
    /// contentdist: delivering into the destination directory failed.
    pub const DELIVERY_FAILED: Code = Code(0xCD09);
    /// contentdist: publishing content failed.
    pub const PUBLISH_FAILED: Code = Code(0xCD0A);
    /// contentdist: the peer shares no enabled peer-copy protocol with the master.
    pub const PROTOCOL_MISMATCH: Code = Code(0xCD0B);
    /// contentdist: the control request was invalid (unknown job, bad argument).
    pub const BAD_REQUEST: Code = Code(0xCD0C);
    /// contentdist: an internal error (a bug) stopped the job.
    pub const INTERNAL_ERROR: Code = Code(0xCD0D);
    /// contentdist: the agent's firewall table could not be applied or checked.
    pub const FIREWALL_FAILED: Code = Code(0xCD0E);
    /// contentdist: the agent's own SMB server (smbd) is not installed or does not serve.
    pub const SMB_SERVER_FAILED: Code = Code(0xCD0F);

    /// The catalogue entry, if this code is one of ours.
    pub fn info(self) -> Option<&'static CodeInfo> {
        CATALOGUE.iter().find(|c| c.code == self)
    }

    /// The catalogue name, or `UNKNOWN` for a number we do not know.
    pub fn name(self) -> &'static str {
        self.info().map_or("UNKNOWN", |i| i.name)
    }
}

impl fmt::Display for Code {
    /// `0x205D`: the form the product's logs and settings use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:X}", self.0)
    }
}

impl FromStr for Code {
    type Err = CodeParseError;
    /// Accepts `0x205D`, `0X205d` or decimal `8285`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_number(s).map(Code)
    }
}

/// One entry of the catalogue.
#[derive(Debug)]
pub struct CodeInfo {
    /// The number.
    pub code: Code,
    /// A stable upper-case name, as in logs.
    pub name: &'static str,
    /// What happened.
    pub meaning: &'static str,
    /// What an administrator can do about it.
    pub fix: &'static str,
}

macro_rules! entry {
    ($code:ident, $meaning:expr, $fix:expr) => {
        CodeInfo {
            code: Code::$code,
            name: stringify!($code),
            meaning: $meaning,
            fix: $fix,
        }
    };
}

/// Every code contentdist reports, in numeric order.
pub static CATALOGUE: &[CodeInfo] = &[
    entry!(OK, "The job finished and the content was delivered.", "Nothing to do."),
    entry!(
        BAD_ENVIRONMENT,
        "Invalid certificate on the master, as this peer sees it: the master presents a PKI certificate (or this peer requires one, P2PSslSettings 0x1) and this peer's store has no CA in trusted/ to check it against. Nothing was sent to the master.",
        "Put the CA certificate that issued the masters' certificates into CertStoreDir/trusted/ (PEM) on the peers (contentdist certs lists what is there), or use self-signed certificates on every agent (P2PSslSettings without 0x1). Then check the master's certificate as for 0x2F8F."
    ),
    entry!(
        DATA_ERROR,
        "A block kept failing verification against the manifest: the source sends bytes the publisher did not publish.",
        "Check the origin's files against the published manifest (re-publish the content if the files were changed after publishing); look for a proxy that rewrites content."
    ),
    entry!(
        DISK_FULL,
        "The disk holding the cache is full. The job stopped; blocks already verified are kept.",
        "Free space on the cache file system or lower MaxCacheSizeMB / PercentAvailableDisk so clean-up makes room, then run the job again: it resumes."
    ),
    entry!(
        CANCELLED,
        "The job was cancelled.",
        "Nothing to do; submit the job again to resume from the blocks already verified."
    ),
    entry!(
        NETWORK_UNREACHABLE,
        "The network location is unreachable (no route to the host).",
        "Check routing and that the master's HTTP/HTTPS server is enabled on the same port (P2PEnabled, P2PHttpPort, P2PHttpsPort must match on every agent)."
    ),
    entry!(
        INVALID_PACKAGE_PATH,
        "Invalid content path: the content id, version or a path in it is not acceptable.",
        "Content ids use letters, digits, '.', '_' and '-'; versions are whole numbers; paths stay inside the content."
    ),
    entry!(
        ORIGIN_NOT_FOUND,
        "The origin (distribution point) does not have this content or version (HTTP 404).",
        "Check OriginUrl and that the content was published there with `contentdist publish` under this id and version."
    ),
    entry!(
        CLIENT_CERT_MISSING,
        "No valid client-authentication certificate (P2PSslSettings 0x2): none in the store, or each one expired, not yet valid, not for client authentication, self-signed or not from CertIssuer; or an HTTPS origin asked for a client certificate and the agent had none. In preboot the job fails at once; otherwise it failed after waiting P2PClientCertWaitPeriodMins.",
        "Enrol a PKI client-authentication certificate into CertStoreDir/my/ (self-signed ones are refused; contentdist certs says why each certificate is not usable), or set BootImageCertFile in preboot; check CertIssuer/CertSubject. A waiting job (contentdist jobs, or certificate_waits in contentdist status, with its deadline) goes on as soon as one is there (store refresh, or every P2PClientCertRetryMins)."
    ),
    entry!(
        TIMEOUT,
        "The server stopped sending data and the request timed out, on every retry.",
        "Check the origin or master is healthy and the link is not saturated; the job resumes from verified blocks when run again."
    ),
    entry!(
        NAME_NOT_RESOLVED,
        "The server's host name could not be resolved.",
        "Check the host name in OriginUrl and the resolver configuration."
    ),
    entry!(
        CANNOT_CONNECT,
        "Cannot connect: the server refused the connection (not listening, wrong port, or HTTP/HTTPS peer copy not enabled on the master; an HTTPS master with P2PSslSettings 0x1 and no qualifying PKI certificate does not listen on its HTTPS port).",
        "Check the server is running; for peer copy, P2PEnabled and the ports must be the same on the master and the peers, and on the master contentdist status lists the URLs listened on and https_certificate says why HTTPS is not (contentdist certs gives the rule each certificate failed)."
    ),
    entry!(
        INVALID_SERVER_RESPONSE,
        "The server's answer was malformed or cut short (truncated body, wrong range), on every retry.",
        "Check the origin serves the published files unchanged and supports HTTP Range requests."
    ),
    entry!(
        SECURE_FAILURE,
        "Secure channel failure (invalid certificate on the master or origin): its certificate was rejected (untrusted issuer, expired or not yet valid, not for server authentication, not naming the master's host name or FQDN, or a self-signed master presenting another certificate than it announced) or the TLS handshake failed.",
        "On the master: contentdist status (https_certificate: the certificate bound, its expiry and subject) and contentdist certs (why each certificate was or was not chosen); from the peer: openssl s_client -connect MASTER:5443 -CAfile CA.pem -verify_hostname NAME shows what it presents. The subject must hold the master's host name or FQDN (or set P2PEnabled 0x08 on the peers to reach masters by address), its issuer must be in the peers' trusted/ (origin: OriginCaFile), and it must be valid now."
    ),
    entry!(
        MANIFEST_INVALID,
        "The content manifest does not parse, or it contradicts itself (sizes, block counts, unsafe paths, or a content hash that does not match its own text).",
        "Re-publish the content with `contentdist publish`; check nothing rewrites manifest.json on the origin."
    ),
    entry!(
        MANIFEST_MISMATCH,
        "The manifest is not the content the job asked for (other id, version, or content hash).",
        "Check the job's --hash value against `manifest.json` on the origin; the content may have been re-published."
    ),
    entry!(
        ORIGIN_SERVER_ERROR,
        "The origin answered with a server error (HTTP 5xx) on every retry.",
        "Look at the origin web server's error log."
    ),
    entry!(
        ORIGIN_REFUSED,
        "The origin, or the master during peer copy, refused the request (HTTP 401, 403 or another client error).",
        "For the origin: check its access rules for this agent. For a master: its log names the reason (credentials, AuthenticatedUsers)."
    ),
    entry!(
        CONFIG_INVALID,
        "The settings file is invalid: unknown key, wrong type or impossible value.",
        "Fix the key the message names; `contentdist config show --config FILE` prints the effective settings."
    ),
    entry!(
        AGENT_UNREACHABLE,
        "The local agent cannot be reached on its control socket.",
        "Start the agent (`systemctl start contentdist` or `contentdist agent`) and check ControlSocket in both configurations."
    ),
    entry!(
        CACHE_IO,
        "Reading or writing the cache failed (permissions or I/O error other than a full disk).",
        "Check CacheDir exists, is writable by the agent and the file system is healthy; the log names the file."
    ),
    entry!(
        NO_ORIGIN,
        "No origin URL is configured, so the content cannot be downloaded.",
        "Set OriginUrl in contentdist.toml and restart the agent."
    ),
    entry!(
        DELIVERY_FAILED,
        "The content was verified in the cache but could not be delivered into the destination directory.",
        "Check the destination is writable and that no directory stands where a file of the content goes."
    ),
    entry!(
        PUBLISH_FAILED,
        "Publishing the content failed.",
        "The message names the file or step; check the source tree is readable and the output directory writable."
    ),
    entry!(
        PROTOCOL_MISMATCH,
        "The peer shares no enabled peer-copy protocol with the master.",
        "Set the same P2PEnabled protocol bits (0x20 HTTP, 0x40 HTTPS, 0x01 SMB) on every agent of the subnet."
    ),
    entry!(
        BAD_REQUEST,
        "The control request was invalid: unknown job, or a bad argument.",
        "The message names the problem; `contentdist jobs` lists the jobs."
    ),
    entry!(
        INTERNAL_ERROR,
        "An internal error (a bug in contentdist) stopped the job: one of its steps panicked. Blocks already verified are kept.",
        "Run the job again: it resumes from the verified blocks. Report the agent's log lines around the job's failure to the developers."
    ),
    entry!(
        FIREWALL_FAILED,
        "The agent could not apply or check its firewall table (inet contentdist): nft could not run, refused the batch, or timed out. The agent goes on; peers may not reach its ports.",
        "contentdist status (firewall.error) has nft's message. Check nft works (`nft list ruleset` as root) and the kernel has nf_tables; or set ManageFirewall = false and open the ports firewall.ports lists yourself."
    ),
    entry!(
        SMB_SERVER_FAILED,
        "The agent's own SMB server (smbd, P2PEnabled 0x01) is not installed, could not start, or died; or it cannot take machine accounts (libnss-wrapper missing, a registration failed). The agent goes on with its other peer-copy protocols (and the P2P account) and starts smbd again after a back-off.",
        "Install Debian's samba package (and libnss-wrapper for machine accounts). contentdist status (smb.error, smb.machine_accounts.error) and CacheDir/smb/log/smbd.out and smbd.log say why smbd stopped; a port in use: choose another P2PSmbPort on every agent."
    ),
];

/// A code or SuccessCodes text that is not a number or a range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeParseError {
    /// The text is not a decimal or 0x-hex 32-bit number.
    #[error("'{0}' is not a code (expected a number such as 0x209A or 8346)")]
    NotANumber(String),
    /// A range whose start is above its end.
    #[error("range '{0}' runs backwards")]
    BackwardsRange(String),
}

fn parse_number(s: &str) -> Result<u32, CodeParseError> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => t.parse::<u32>(),
    };
    parsed.map_err(|_| CodeParseError::NotANumber(t.to_string()))
}

/// The `SuccessCodes` setting: codes and inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuccessCodes {
    ranges: Vec<(u32, u32)>,
}

/// The product's default `SuccessCodes` value.
pub const DEFAULT_SUCCESS_CODES: &str =
    "0x206b,0x2077,0x103,0xffffffff,0x1,0x70,0x2050-0x2058,0x205a-0x205e,0x2060-0x2069,0x209A";

impl SuccessCodes {
    /// True when a job failing with `code` must not fall back to a direct download.
    pub fn contains(&self, code: Code) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| lo <= code.0 && code.0 <= hi)
    }
}

impl Default for SuccessCodes {
    fn default() -> Self {
        DEFAULT_SUCCESS_CODES
            .parse()
            .expect("the default SuccessCodes parse")
    }
}

impl FromStr for SuccessCodes {
    type Err = CodeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut ranges = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (parse_number(a)?, parse_number(b)?),
                None => {
                    let n = parse_number(item)?;
                    (n, n)
                }
            };
            if lo > hi {
                return Err(CodeParseError::BackwardsRange(item.to_string()));
            }
            ranges.push((lo, hi));
        }
        Ok(SuccessCodes { ranges })
    }
}

impl fmt::Display for SuccessCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    format!("0x{lo:X}")
                } else {
                    format!("0x{lo:X}-0x{hi:X}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_success_codes_cover_the_products_list() {
        let sc = SuccessCodes::default();
        for c in [0x206b, 0x2077, 0x103, 0xffffffff, 0x1, 0x70, 0x209A] {
            assert!(sc.contains(Code(c)), "{c:#x}");
        }
        assert!(sc.contains(Code(0x2050)) && sc.contains(Code(0x2058)));
        assert!(sc.contains(Code(0x205D)));
        assert!(!sc.contains(Code(0x205F)));
        assert!(!sc.contains(Code(0x2059)));
        assert!(!sc.contains(Code::CANNOT_CONNECT));
        assert!(!sc.contains(Code::OK));
    }

    #[test]
    fn success_codes_reject_garbage_and_backwards_ranges() {
        assert_eq!(
            "0x10,zz".parse::<SuccessCodes>(),
            Err(CodeParseError::NotANumber("zz".into()))
        );
        assert_eq!(
            "0x20-0x10".parse::<SuccessCodes>(),
            Err(CodeParseError::BackwardsRange("0x20-0x10".into()))
        );
        assert_eq!(
            "0x1, 5-7".parse::<SuccessCodes>().unwrap().to_string(),
            "0x1,0x5-0x7"
        );
    }

    #[test]
    fn catalogue_is_sorted_unique_and_complete() {
        for w in CATALOGUE.windows(2) {
            assert!(w[0].code < w[1].code, "{} before {}", w[0].name, w[1].name);
        }
        for c in [0x209A, 0x2EFD, 0x4CF, 0x2F8F, 0xA, 0x205A, 0x205D] {
            assert!(Code(c).info().is_some(), "{c:#x} missing");
        }
        assert_eq!("0x205d".parse::<Code>().unwrap(), Code::ORIGIN_NOT_FOUND);
        assert_eq!("8285".parse::<Code>().unwrap(), Code::ORIGIN_NOT_FOUND);
        assert_eq!(Code::ORIGIN_NOT_FOUND.to_string(), "0x205D");
    }

    #[test]
    fn the_readme_documents_every_code() {
        let readme = include_str!("../../../README.md");
        for c in CATALOGUE {
            let row = format!("| {} ({}) | {} |", c.code, c.code.0, c.name);
            assert!(
                readme.contains(&row),
                "README.md lacks the row for {}",
                c.name
            );
        }
    }
}
