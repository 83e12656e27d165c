//! Machine accounts on the agent's smbd (`AuthenticatedUsers` 1 with a
//! `MachineKey`): peers set for machine accounts (`SpecialNetShare` 0x80) log on to
//! the share as `HOSTNAME$`, as they do over HTTP.
//!
//! Samba checks only accounts registered beforehand, and wants a Unix user behind
//! each one (`getpwnam` at every logon). A master learns a machine's name from the
//! election: every message carries its sender's host name, and a peer's request or
//! claim reaches the master before the peer can know it is master. The subnet
//! driver passes each name heard on ([`crate::subnet::SubnetOptions::heard_hosts`]);
//! the supervisor registers `HOSTNAME$` with the password the master derives from
//! the machine key ([`crate::peer::machine_credentials`], the same as over HTTP).
//!
//! The Unix users come from a passwd file of the agent's own, not from the system:
//! smbd and smbpasswd run with `libnss_wrapper.so` preloaded (Debian's
//! `libnss-wrapper`, the library Samba's own test suite runs smbd with), which
//! answers `getpwnam` from `CacheDir/smb/private/passwd`: `root`, `nobody` (the P2P
//! account's user) and one line per machine, with `nobody`'s user id in the group
//! [`MACHINES_GROUP`], which the share's `valid users` admits. No account
//! is ever added to `/etc/passwd`, and no other process sees these users. Without
//! the library, machine accounts are not offered over SMB (said once, and in
//! `status`); the P2P account still is.
//!
//! The password database starts empty at every start of the agent (an earlier
//! run may have had another machine key); names are registered again as they are
//! heard.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::conf::{ConfOptions, MACHINES_GROUP};
use crate::peer::machine_account_name;

/// Where `libnss_wrapper.so` is looked for: Debian's multiarch directories first.
const NSS_WRAPPER_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
    "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
    "/usr/lib64/libnss_wrapper.so",
    "/usr/lib/libnss_wrapper.so",
];

/// The first `libnss_wrapper.so` installed.
pub fn find_nss_wrapper() -> Option<PathBuf> {
    NSS_WRAPPER_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The agent's passwd file for its smbd.
pub fn passwd_file(c: &ConfOptions) -> PathBuf {
    c.dir.join("private").join("passwd")
}

/// The agent's group file for its smbd.
pub fn group_file(c: &ConfOptions) -> PathBuf {
    c.dir.join("private").join("group")
}

/// Unix ids: `(uid, gid)`.
pub type Ids = (u32, u32);

/// The id of [`MACHINES_GROUP`] in the agent's own group file (only smbd sees it,
/// so it cannot meet a system group; `nogroup`'s neighbour).
pub const MACHINES_GID: u32 = 65533;

/// The passwd file: `root` and `nobody` with their ids on this system, and every
/// machine account with `nobody`'s user id in [`MACHINES_GROUP`] (the share is
/// read as root, `force user`; the group is what `valid users` admits).
pub fn render_passwd<'a>(root: Ids, nobody: Ids, hosts: impl Iterator<Item = &'a str>) -> String {
    let mut text = format!(
        "root:x:{}:{}:root:/root:/usr/sbin/nologin\nnobody:x:{}:{}:nobody:/nonexistent:/usr/sbin/nologin\n",
        root.0, root.1, nobody.0, nobody.1
    );
    for host in hosts {
        text.push_str(&format!(
            "{}:x:{}:{}:contentdist machine account:/nonexistent:/usr/sbin/nologin\n",
            machine_account_name(host),
            nobody.0,
            MACHINES_GID
        ));
    }
    text
}

/// The group file: `root`'s and `nobody`'s primary groups, and
/// [`MACHINES_GROUP`] with every machine account as a member.
pub fn render_group<'a>(root: Ids, nobody: Ids, hosts: impl Iterator<Item = &'a str>) -> String {
    let members: Vec<String> = hosts.map(machine_account_name).collect();
    format!(
        "root:x:{}:\nnogroup:x:{}:\n{MACHINES_GROUP}:x:{MACHINES_GID}:{}\n",
        root.1,
        nobody.1,
        members.join(",")
    )
}

/// The machine accounts one smbd knows, and how to reach its users.
pub(super) struct Machines {
    /// The site's machine key.
    pub(super) key: Vec<u8>,
    /// `libnss_wrapper.so`.
    pub(super) nss_wrapper: PathBuf,
    /// Host names registered, lower case (host names compare without regard to
    /// case).
    pub(super) known: BTreeSet<String>,
    /// Host names whose registration failed, tried again with the next batch.
    pub(super) failed: Vec<String>,
    root: Ids,
    nobody: Ids,
}

impl Machines {
    pub(super) fn new(key: Vec<u8>, nss_wrapper: PathBuf) -> Machines {
        Machines {
            key,
            nss_wrapper,
            known: BTreeSet::new(),
            failed: Vec::new(),
            root: crate::util::user_ids("root").unwrap_or((0, 0)),
            nobody: crate::util::user_ids(super::conf::UNIX_USER).unwrap_or((65534, 65534)),
        }
    }

    /// The environment smbd and smbpasswd run with.
    pub(super) fn env(&self, c: &ConfOptions) -> [(&'static str, PathBuf); 3] {
        [
            ("LD_PRELOAD", self.nss_wrapper.clone()),
            ("NSS_WRAPPER_PASSWD", passwd_file(c)),
            ("NSS_WRAPPER_GROUP", group_file(c)),
        ]
    }

    /// Whether `host` is new (not registered yet, in any case).
    pub(super) fn is_new(&self, host: &str) -> bool {
        !self.known.contains(&host.to_ascii_lowercase())
    }

    /// Write the passwd and group files for the registered hosts and `also`, each
    /// through a temporary file renamed over the old one, so that smbd never reads
    /// half a file.
    pub(super) fn write_files(&self, c: &ConfOptions, also: &[String]) -> std::io::Result<()> {
        let hosts = || self.known.iter().chain(also).map(String::as_str);
        let passwd = render_passwd(self.root, self.nobody, hosts());
        write_atomically(&passwd_file(c), &passwd)?;
        let group = render_group(self.root, self.nobody, hosts());
        write_atomically(&group_file(c), &group)
    }

    /// `HOSTNAME$` and its password.
    pub(super) fn credentials(&self, host: &str) -> (String, String) {
        crate::peer::machine_credentials(&self.key, host)
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passwd_file_has_root_nobody_and_one_line_per_machine_in_the_machines_group() {
        let text = render_passwd((0, 0), (65534, 65534), ["pc7", "Branch-01"].into_iter());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("root:x:0:0:"));
        assert!(lines[1].starts_with("nobody:x:65534:65534:"));
        assert!(lines[2].starts_with("PC7$:x:65534:65533:"));
        assert!(lines[3].starts_with("BRANCH-01$:x:65534:65533:"));
        assert_eq!(
            render_group((0, 0), (65534, 65534), ["pc7", "Branch-01"].into_iter()),
            "root:x:0:\nnogroup:x:65534:\ncontentdist-machines:x:65533:PC7$,BRANCH-01$\n"
        );
    }

    #[test]
    fn host_names_compare_without_regard_to_case() {
        let mut m = Machines::new(b"k".to_vec(), PathBuf::from("/x"));
        assert!(m.is_new("pc7"));
        m.known.insert("pc7".into());
        assert!(!m.is_new("pc7"));
        assert!(!m.is_new("PC7"));
        assert!(m.is_new("pc8"));
        assert_eq!(m.credentials("PC7"), m.credentials("pc7"));
        assert_eq!(m.credentials("pc7").0, "PC7$");
    }
}
