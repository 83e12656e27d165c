//! The host's names, which certificates are matched against: the system's, unless
//! the settings `HostName` and `Fqdn` say otherwise (tests, hosts whose resolver
//! does not know their full name).

use std::ffi::{CStr, CString};

use super::Config;

/// This host's short name, as the kernel knows it.
pub fn system_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The fully qualified name of `host`, as the resolver gives it (`getaddrinfo`
/// with `AI_CANONNAME`, what `hostname -f` does); `host` itself when the resolver
/// knows no better.
pub fn system_fqdn(host: &str) -> String {
    let Ok(name) = CString::new(host) else {
        return host.to_string();
    };
    // SAFETY: the hints struct is zeroed then filled; getaddrinfo writes `res`,
    // which is read only when it returned 0 and freed once.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_family = libc::AF_UNSPEC;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(name.as_ptr(), std::ptr::null(), &hints, &mut res) != 0 {
            return host.to_string();
        }
        let canon = if !res.is_null() && !(*res).ai_canonname.is_null() {
            CStr::from_ptr((*res).ai_canonname)
                .to_string_lossy()
                .into_owned()
        } else {
            host.to_string()
        };
        libc::freeaddrinfo(res);
        canon
    }
}

/// A host or domain name: labels of letters, digits and hyphens, dots between.
pub(super) fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("'{name}' is not a host name (1 to 253 characters)"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(format!(
                "'{name}' is not a host name (labels of letters, digits and '-', separated by dots)"
            ));
        }
    }
    Ok(())
}

impl Config {
    /// The host name in force: `HostName`, else the system's.
    pub fn host_name_in_force(&self) -> String {
        self.host_name.clone().unwrap_or_else(system_host_name)
    }

    /// The FQDN in force: `Fqdn`, else the resolver's name for the host name in force.
    pub fn fqdn_in_force(&self) -> String {
        self.fqdn
            .clone()
            .unwrap_or_else(|| system_fqdn(&self.host_name_in_force()))
    }
}
