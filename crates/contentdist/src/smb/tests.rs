//! The agent's smbd against Samba's own client (`smbclient`): root only, and only
//! where samba and smbclient are installed (`.ci/run` installs them).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::tasks::Tasks;

const PASSWORD: &str = "0123456789abcdef0123456789abcdef";

pub(super) fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["/usr/sbin/smbd", "/usr/bin/smbclient", "/usr/bin/smbpasswd"]
        .iter()
        .all(|p| Path::new(p).exists());
    if !(root && tools) {
        println!("skipped: needs root, smbd, smbpasswd and smbclient");
    }
    root && tools
}

pub(super) fn free_port() -> u16 {
    crate::util::free_tcp_port().unwrap()
}

/// A cache-like tree: `content/PKG/1/{manifest.json,have.bin,meta.json,data/…}`,
/// a file outside `content/`, and a symbolic link to it inside.
pub(super) fn tree(root: &Path) -> Vec<u8> {
    let entry = root.join("content/PKG/1");
    std::fs::create_dir_all(entry.join("data/sub")).unwrap();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(entry.join("data/sub/file.bin"), &bytes).unwrap();
    std::fs::write(entry.join("manifest.json"), b"{}").unwrap();
    std::fs::write(entry.join("have.bin"), [0xffu8]).unwrap();
    std::fs::write(entry.join("meta.json"), b"{\"priority\":5}").unwrap();
    std::fs::write(root.join("outside.txt"), b"secret outside the share").unwrap();
    std::os::unix::fs::symlink(root.join("outside.txt"), entry.join("data/link.txt")).unwrap();
    bytes
}

/// A share of `root/content` on 127.0.0.1:`port` for the P2P account's `password`
/// (also the peer-side SMB tests' master).
pub(crate) fn share_options(root: &Path, port: u16, password: &str) -> SmbShareOptions {
    SmbShareOptions {
        conf: ConfOptions {
            dir: root.join("smb"),
            share: root.join("content"),
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            machine_accounts: false,
        },
        p2p_password: password.into(),
        smbd: None,
        smbpasswd: None,
        machine_key: None,
    }
}

pub(super) async fn wait_state(share: &SmbShare, want: impl Fn(&SmbStatus) -> bool) -> SmbStatus {
    let mut w = share.watch();
    // 60 s: smbd counts a connection's bytes once its process ends, which a loaded
    // machine (the whole test suite at once) can delay.
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let s = w.borrow_and_update().clone();
            if want(&s) {
                return s;
            }
            w.changed().await.expect("status sender alive");
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("state not reached: {:?}", share.status()))
}

/// `smbclient //127.0.0.1/contentdist -p PORT` with `auth` (`-U user%pw` or `-N`)
/// running `commands`; (success, output).
pub(super) async fn smbclient(port: u16, auth: &[&str], commands: &str) -> (bool, String) {
    let out = tokio::process::Command::new("smbclient")
        .arg(format!("//127.0.0.1/{SHARE_NAME}"))
        .args(["-p", &port.to_string(), "-m", "SMB3"])
        .args(auth)
        .args(["-c", commands])
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn p2p_user() -> String {
    format!("{}%{PASSWORD}", crate::peer::P2P_USER)
}

#[tokio::test]
async fn smbclient_reads_the_share_with_the_p2p_account_and_nothing_else() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bytes = tree(dir.path());
    let port = free_port();
    let tasks = Tasks::new(CancellationToken::new());
    let share = SmbShare::start(share_options(dir.path(), port, PASSWORD), &tasks);
    let s = wait_state(&share, |s| s.state == SmbState::Running).await;
    assert_eq!(s.url, format!("smb://127.0.0.1:{port}/contentdist"));
    assert_eq!(s.signing, "mandatory");
    let user = p2p_user();

    // Listing and a byte-identical read with the P2P account.
    let got = dir.path().join("got.bin");
    let (ok, out) = smbclient(
        port,
        &["-U", &user],
        &format!("ls PKG/1/*; get PKG/1/data/sub/file.bin {}", got.display()),
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("manifest.json") && out.contains("have.bin"),
        "{out}"
    );
    assert!(!out.contains("meta.json"), "meta.json is vetoed: {out}");
    assert_eq!(std::fs::read(&got).unwrap(), bytes);

    // A wrong password, and a guest, are refused.
    let (ok, out) = smbclient(
        port,
        &["-U", &format!("{}%wrong", crate::peer::P2P_USER)],
        "ls",
    )
    .await;
    assert!(!ok && out.contains("LOGON_FAILURE"), "{out}");
    let (ok, out) = smbclient(port, &["-N"], "ls").await;
    assert!(!ok && out.contains("ACCESS_DENIED"), "{out}");
    let (ok, out) = smbclient(port, &["-U", "guest%"], "ls").await;
    assert!(!ok, "{out}");

    // Nothing outside content/: not by `..`, not by an absolute path, not by a link,
    // and nothing can be written.
    let leak = dir.path().join("leak.txt");
    for path in [
        "../outside.txt",
        "PKG/../../outside.txt",
        "/outside.txt",
        "PKG/1/data/link.txt",
        "PKG/1/meta.json",
    ] {
        let (_, out) = smbclient(
            port,
            &["-U", &user],
            &format!("get {path} {}", leak.display()),
        )
        .await;
        assert!(!leak.exists(), "{path} escaped: {out}");
        assert!(out.contains("NT_STATUS_"), "{path}: {out}");
    }
    let (_, out) = smbclient(
        port,
        &["-U", &user],
        &format!("put {} PKG/new.txt", got.display()),
    )
    .await;
    assert!(
        out.contains("NT_STATUS_ACCESS_DENIED") || out.contains("NT_STATUS_MEDIA_WRITE_PROTECTED"),
        "{out}"
    );
    assert!(!dir.path().join("content/PKG/new.txt").exists());

    // A new password (a new key) replaces the old one.
    share.set_p2p_password("fedcba9876543210fedcba9876543210".into());
    let new_user = format!("{}%fedcba9876543210fedcba9876543210", crate::peer::P2P_USER);
    let mut refused_old = false;
    for _ in 0..100 {
        let (ok_new, _) = smbclient(port, &["-U", &new_user], "ls").await;
        let (ok_old, _) = smbclient(port, &["-U", &user], "ls").await;
        if ok_new && !ok_old {
            refused_old = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused_old, "the new password did not replace the old one");

    tasks.shutdown();
    tasks.join(Duration::from_secs(15)).await.unwrap();
    assert_eq!(share.status().state, SmbState::Stopped);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "smbd still listens"
    );
}

#[tokio::test]
async fn a_killed_smbd_is_started_again() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let len = tree(dir.path()).len() as u64;
    let port = free_port();
    let tasks = Tasks::new(CancellationToken::new());
    let share = SmbShare::start(share_options(dir.path(), port, PASSWORD), &tasks);
    let first = wait_state(&share, |s| s.state == SmbState::Running).await;
    let pid = first.pid.expect("a running smbd has a pid");
    let got = dir.path().join("got.bin");
    let get = format!("get PKG/1/data/sub/file.bin {}", got.display());
    let (ok, out) = smbclient(port, &["-U", &p2p_user()], &get).await;
    assert!(ok, "{out}");
    // SAFETY: kill has no memory effects; the pid is our own child's.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let again = wait_state(&share, |s| {
        s.state == SmbState::Running && s.pid != Some(pid)
    })
    .await;
    assert_eq!(again.restarts, 1);
    assert!(
        again.error.as_deref().unwrap_or("").starts_with("0xCD0F"),
        "{again:?}"
    );
    // What the killed smbd served may or may not be counted: its counters are
    // read when it is found dead, and a connection process's counters reach them
    // only through the parent that was killed (it failed under load this way).
    assert!(again.bytes_served <= len + 8192, "{again:?}");
    let (ok, out) = smbclient(port, &["-U", &p2p_user()], &get).await;
    assert!(ok, "{out}");
    // The second run's bytes are added to what the first run's were counted at,
    // once smbd's counters hold them: the connection's process adds them to the
    // total as it ends, some time after smbclient returned (read every 5 s).
    let counted = wait_state(&share, |s| s.bytes_served >= again.bytes_served + len).await;
    tasks.shutdown();
    tasks.join(Duration::from_secs(15)).await.unwrap();
    let end = share.status();
    assert!(
        (counted.bytes_served..2 * len + 8192).contains(&end.bytes_served),
        "{end:?}"
    );
}

#[test]
fn the_bytes_served_are_the_data_of_smb2_reads_in_smbstatus_profile() {
    let out = "smb_count:                       12
syscall_pread_bytes:                  478150656
syscall_asys_pread_bytes:               3000000
smb2_read_count:                              2
smb2_read_inbytes:                          226
smb2_read_outbytes:                     3000160
";
    assert_eq!(supervise::parse_read_bytes(out), Some(3_000_000));
    assert_eq!(
        supervise::parse_read_bytes("Profiling support unavailable"),
        None
    );
}

#[tokio::test]
async fn an_smbd_left_by_a_killed_agent_is_stopped_before_ours_starts() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let port = free_port();
    let opts = share_options(dir.path(), port, PASSWORD);
    // A first run writes the configuration, then stops.
    let tasks = Tasks::new(CancellationToken::new());
    let share = SmbShare::start(opts.clone(), &tasks);
    wait_state(&share, |s| s.state == SmbState::Running).await;
    tasks.shutdown();
    tasks.join(Duration::from_secs(15)).await.unwrap();
    // What a killed agent leaves: smbd with that configuration, in its own group.
    let conf = opts.conf.conf_file();
    let mut orphan = tokio::process::Command::new("/usr/sbin/smbd")
        .args(["--foreground", "--no-process-group", "-s"])
        .arg(&conf)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let listening = async {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), listening)
        .await
        .expect("the orphan smbd listens");
    // The next run stops it and serves with its own.
    let tasks = Tasks::new(CancellationToken::new());
    let share = SmbShare::start(opts, &tasks);
    let s = wait_state(&share, |s| s.state == SmbState::Running).await;
    let status = tokio::time::timeout(Duration::from_secs(5), orphan.wait())
        .await
        .expect("the orphan was stopped")
        .unwrap();
    assert!(!status.success());
    assert_ne!(s.pid, orphan.id());
    assert_eq!(s.restarts, 0, "{s:?}");
    let (ok, out) = smbclient(port, &["-U", &p2p_user()], "ls PKG/1/*").await;
    assert!(ok, "{out}");
    tasks.shutdown();
    tasks.join(Duration::from_secs(15)).await.unwrap();
    // Nothing but ours was stopped: a configuration nobody runs finds nothing.
    assert!(supervise::stop_stale(&dir.path().join("no-such.conf")).is_empty());
}

#[tokio::test]
async fn without_smbd_the_share_says_not_installed_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::new(CancellationToken::new());
    let share = SmbShare::start(
        SmbShareOptions {
            smbd: Some(dir.path().join("no-smbd")),
            ..share_options(dir.path(), 4450, PASSWORD)
        },
        &tasks,
    );
    let s = share.status();
    assert_eq!(s.state, SmbState::NotInstalled);
    assert!(s.error.unwrap().contains("samba package"));
    assert!(tasks.live().is_empty());
}
