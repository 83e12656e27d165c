//! The `smb.conf` the agent writes for its own `smbd` (pure: settings in, text out).
//!
//! Everything smbd keeps lives under the agent's SMB directory (`CacheDir/smb/`):
//! its password database, locks, state, cache, pid file and log. Nothing is read from
//! or written to `/etc/samba` or `/var/lib/samba`, so a system smbd (if any) and ours
//! never meet. The one share is the cache's `content/` directory, read-only, with
//! symbolic links refused (`follow symlinks = no`, `wide links = no`) and the
//! entries' `meta.json` and temporary files vetoed: a peer sees manifests, `have.bin`
//! maps and data files, nothing else and nothing outside the cache.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The name of the one share.
pub const SHARE_NAME: &str = "contentdist";

/// The Unix account the P2P account maps to. tdbsam wants every SMB user to be a
/// Unix user; `nobody` exists everywhere and owns nothing. The share is read with
/// the agent's own rights (`force user = root`), never with `nobody`'s: the cache
/// belongs to the agent, and the share is read-only.
pub const UNIX_USER: &str = "nobody";

/// What the configuration says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfOptions {
    /// Where smbd keeps everything of its own (`CacheDir/smb`).
    pub dir: PathBuf,
    /// The directory shared (`CacheDir/content`).
    pub share: PathBuf,
    /// The address to listen on: the peer-copy server's. Unspecified: every address.
    pub listen: IpAddr,
    /// The TCP port (`P2PSmbPort`).
    pub port: u16,
    /// Machine accounts may read the share too (members of [`MACHINES_GROUP`], a
    /// group of the agent's own users: see [`super::machines`]). Set by
    /// [`super::SmbShare::start`] when they can.
    pub machine_accounts: bool,
}

/// The Unix group of the machine accounts, in the agent's own group file.
pub const MACHINES_GROUP: &str = "contentdist-machines";

impl ConfOptions {
    /// The configuration file.
    pub fn conf_file(&self) -> PathBuf {
        self.dir.join("smb.conf")
    }

    /// The user map (SMB name to Unix name).
    pub fn user_map(&self) -> PathBuf {
        self.dir.join("users.map")
    }

    /// smbd's own log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("log").join("smbd.log")
    }

    /// The directories smbd needs, created before it starts.
    pub fn dirs(&self) -> Vec<PathBuf> {
        ["private", "lock", "state", "cache", "pid", "log", "ncalrpc"]
            .iter()
            .map(|d| self.dir.join(d))
            .collect()
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The user map: the P2P account's name, as peers send it, is the Unix `nobody`.
pub fn render_user_map(p2p_user: &str) -> String {
    format!("{UNIX_USER} = {p2p_user}\n")
}

/// The whole `smb.conf`.
pub fn render(o: &ConfOptions) -> String {
    let d = |name: &str| path(&o.dir.join(name));
    // A specific address: listen there only. Unspecified (ListenAddress 0.0.0.0):
    // every address, as the HTTP servers do.
    let bind = if o.listen.is_unspecified() {
        "  bind interfaces only = no\n".to_string()
    } else {
        format!(
            "  interfaces = {}\n  bind interfaces only = yes\n",
            o.listen
        )
    };
    format!(
        "# Written by contentdist at every start of its smbd: edits are lost.
# The agent's own SMB server: nothing here is shared with a system smbd.
[global]
  server role = standalone server
  smb ports = {port}
{bind}  private dir = {private}
  lock directory = {lock}
  state directory = {state}
  cache directory = {cache}
  pid directory = {pid}
  ncalrpc dir = {ncalrpc}
  passdb backend = tdbsam:{private}/passdb.tdb
  username map = {usermap}
  # SMB 3 only, every message signed; encryption offered, not required (blocks are
  # verified by the peer; HTTPS is the confidential path).
  server min protocol = SMB3
  server signing = mandatory
  smb encrypt = if_required
  # Accounts only: no guest, no anonymous access to shares.
  map to guest = never
  restrict anonymous = 2
  guest account = {unix_user}
  # No printers, no NetBIOS, no registry shares, no home directories.
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  disable netbios = yes
  registry shares = no
  usershare max shares = 0
  include system krb5 conf = no
  logging = file
  log file = {log}
  max log size = 1000
  log level = 1
  # Counters only (no timings): the agent reads the bytes served with smbstatus -P.
  smbd profiling level = count
  unix extensions = no
  follow symlinks = no
  wide links = no
  allow insecure wide links = no

[{share_name}]
  comment = contentdist cache (read-only)
  path = {share}
  read only = yes
  guest ok = no
  valid users = {valid_users}
  force user = root
  browseable = yes
  follow symlinks = no
  wide links = no
  hide dot files = yes
  veto files = /meta.json/*.tmp/.*/
  delete veto files = no
",
        port = o.port,
        private = d("private"),
        lock = d("lock"),
        state = d("state"),
        cache = d("cache"),
        pid = d("pid"),
        ncalrpc = d("ncalrpc"),
        usermap = path(&o.user_map()),
        unix_user = UNIX_USER,
        valid_users = if o.machine_accounts {
            format!("{UNIX_USER} +{MACHINES_GROUP}")
        } else {
            UNIX_USER.to_string()
        },
        log = path(&o.log_file()),
        share_name = SHARE_NAME,
        share = path(&o.share),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(listen: &str) -> ConfOptions {
        ConfOptions {
            dir: "/var/cache/contentdist/smb".into(),
            share: "/var/cache/contentdist/content".into(),
            listen: listen.parse().unwrap(),
            machine_accounts: false,
            port: 4450,
        }
    }

    fn value<'a>(conf: &'a str, key: &str) -> Vec<&'a str> {
        conf.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter_map(|rest| rest.trim_start().strip_prefix('='))
            .map(str::trim)
            .collect()
    }

    #[test]
    fn the_config_keeps_everything_under_the_agents_directory() {
        let c = render(&opts("10.1.2.3"));
        for key in [
            "private dir",
            "lock directory",
            "state directory",
            "cache directory",
            "pid directory",
            "ncalrpc dir",
            "log file",
            "username map",
        ] {
            let v = value(&c, key);
            assert_eq!(v.len(), 1, "{key}: {v:?}");
            assert!(
                v[0].starts_with("/var/cache/contentdist/smb/"),
                "{key} = {}",
                v[0]
            );
        }
        assert_eq!(
            value(&c, "passdb backend"),
            ["tdbsam:/var/cache/contentdist/smb/private/passdb.tdb"]
        );
        assert!(!c.contains("/etc/samba"), "{c}");
        assert!(!c.contains("/var/lib/samba"), "{c}");
    }

    #[test]
    fn the_config_listens_where_the_peer_server_listens() {
        let c = render(&opts("10.1.2.3"));
        assert_eq!(value(&c, "smb ports"), ["4450"]);
        assert_eq!(value(&c, "interfaces"), ["10.1.2.3"]);
        assert_eq!(value(&c, "bind interfaces only"), ["yes"]);
        let any = render(&opts("0.0.0.0"));
        assert!(value(&any, "interfaces").is_empty());
        assert_eq!(value(&any, "bind interfaces only"), ["no"]);
    }

    #[test]
    fn the_config_requires_smb3_signing_and_accounts() {
        let c = render(&opts("10.1.2.3"));
        assert_eq!(value(&c, "server min protocol"), ["SMB3"]);
        assert_eq!(value(&c, "server signing"), ["mandatory"]);
        assert_eq!(value(&c, "map to guest"), ["never"]);
        assert_eq!(value(&c, "guest ok"), ["no"]);
        assert_eq!(value(&c, "restrict anonymous"), ["2"]);
        // Encryption must not be required: the smb2 client cannot do it.
        assert_eq!(value(&c, "smb encrypt"), ["if_required"]);
    }

    #[test]
    fn the_share_is_the_content_directory_read_only_without_links() {
        let c = render(&opts("10.1.2.3"));
        let share = c
            .split(&format!("[{SHARE_NAME}]"))
            .nth(1)
            .expect("share section");
        assert_eq!(value(share, "path"), ["/var/cache/contentdist/content"]);
        assert_eq!(value(share, "read only"), ["yes"]);
        assert_eq!(value(share, "follow symlinks"), ["no"]);
        assert_eq!(value(share, "wide links"), ["no"]);
        assert_eq!(value(share, "valid users"), [UNIX_USER]);
        // With machine accounts, their group too.
        let with = render(&ConfOptions {
            machine_accounts: true,
            ..opts("0.0.0.0")
        });
        let share = with.split("[contentdist]").nth(1).unwrap();
        assert_eq!(
            value(share, "valid users"),
            [format!("{UNIX_USER} +{MACHINES_GROUP}").as_str()]
        );
        assert_eq!(value(share, "veto files"), ["/meta.json/*.tmp/.*/"]);
        // One share only.
        assert_eq!(c.matches("\n[").count(), 2, "{c}");
    }

    #[test]
    fn the_user_map_maps_the_p2p_account_to_nobody() {
        assert_eq!(
            render_user_map("contentdist-p2p"),
            "nobody = contentdist-p2p\n"
        );
    }
}
