//! Machine accounts on the agent's smbd, against `smbclient`: root only, and only
//! where samba, smbclient and libnss-wrapper are installed (`.ci/run` installs
//! them).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::tests::{can_run, free_port, share_options, smbclient, tree, wait_state};
use super::*;
use crate::tasks::Tasks;

const PASSWORD: &str = "0123456789abcdef0123456789abcdef";
const MACHINE_KEY: &[u8] = b"the site's machine key, 16+ characters";

fn machine_user(host: &str, key: &[u8]) -> String {
    let (user, password) = crate::peer::machine_credentials(key, host);
    format!("{user}%{password}")
}

/// The machine accounts once `n` are registered.
async fn registered(share: &SmbShare, n: u32) -> MachineAccountsStatus {
    let s = wait_state(share, |s| {
        s.machine_accounts
            .as_ref()
            .is_some_and(|m| m.registered == n)
    })
    .await;
    s.machine_accounts.expect("machine accounts on")
}

#[tokio::test]
async fn hosts_heard_get_machine_accounts_that_log_on_and_no_one_else_does() {
    if !can_run() {
        return;
    }
    if machines::find_nss_wrapper().is_none() {
        println!("skipped: needs libnss-wrapper");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let port = free_port();
    let tasks = Tasks::new(CancellationToken::new());
    let opts = SmbShareOptions {
        machine_key: Some(MACHINE_KEY.to_vec()),
        ..share_options(dir.path(), port, PASSWORD)
    };
    let share = SmbShare::start(opts, &tasks);
    let hosts = share.heard_hosts().expect("machine accounts on");
    // Heard before smbd runs, and again (in another case) while it runs.
    hosts.send("branch-pc7".into()).unwrap();
    wait_state(&share, |s| s.state == SmbState::Running).await;
    hosts.send("Branch-PC8".into()).unwrap();
    hosts.send("BRANCH-PC7".into()).unwrap();
    assert_eq!(registered(&share, 2).await.error, None);

    // Each heard host logs on with its own credential, in any case of its name.
    for host in ["branch-pc7", "BRANCH-PC8"] {
        let (ok, out) = smbclient(
            port,
            &["-U", &machine_user(host, MACHINE_KEY)],
            "ls PKG/1/*",
        )
        .await;
        assert!(ok && out.contains("manifest.json"), "{host}: {out}");
    }
    // A host not heard, another host's password, another key's: refused.
    let refused = [
        machine_user("branch-pc9", MACHINE_KEY),
        format!(
            "BRANCH-PC7$%{}",
            crate::peer::machine_credentials(MACHINE_KEY, "branch-pc8").1
        ),
        machine_user("branch-pc7", b"another site's machine key......"),
    ];
    for user in &refused {
        let (ok, out) = smbclient(port, &["-U", user], "ls").await;
        assert!(!ok && out.contains("LOGON_FAILURE"), "{user}: {out}");
    }
    // The P2P account still logs on.
    let p2p = format!("{}%{PASSWORD}", crate::peer::P2P_USER);
    let (ok, out) = smbclient(port, &["-U", &p2p], "ls PKG/1/*").await;
    assert!(ok, "{out}");
    // The users are the agent's own, not the system's.
    let conf_dir = share.status().config.parent().unwrap().to_path_buf();
    let passwd = std::fs::read_to_string(conf_dir.join("private/passwd")).unwrap();
    assert!(
        passwd.contains("BRANCH-PC7$:") && passwd.contains("BRANCH-PC8$:"),
        "{passwd}"
    );
    assert_eq!(crate::util::user_ids("BRANCH-PC7$"), None);

    // smbd killed: started again, and the accounts still log on.
    let pid = share.status().pid.unwrap();
    // SAFETY: kill has no memory preconditions; pid is our smbd.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_state(&share, |s| {
        s.state == SmbState::Running && s.pid != Some(pid)
    })
    .await;
    let (ok, out) = smbclient(
        port,
        &["-U", &machine_user("branch-pc8", MACHINE_KEY)],
        "ls",
    )
    .await;
    assert!(ok, "{out}");
    tasks.shutdown();
    tasks.join(Duration::from_secs(15)).await.unwrap();
}

#[tokio::test]
async fn without_a_machine_key_no_host_names_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::new(CancellationToken::new());
    let share = SmbShare::start(share_options(dir.path(), free_port(), PASSWORD), &tasks);
    assert!(share.heard_hosts().is_none());
    assert_eq!(share.status().machine_accounts, None);
    tasks.shutdown();
    tasks.join(Duration::from_secs(15)).await.unwrap();
}

#[tokio::test]
async fn a_registration_that_failed_is_tried_again_with_the_next_host_heard() {
    if !can_run() || machines::find_nss_wrapper().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let port = free_port();
    // smbpasswd refuses FLAKY$ once, as a full disk or a killed process would.
    let marker = dir.path().join("refused-once");
    let wrapper = dir.path().join("smbpasswd");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in *FLAKY*) [ -e {m} ] || {{ touch {m}; echo refused >&2; exit 1; }};; esac\nexec /usr/bin/smbpasswd \"$@\"\n",
            m = marker.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tasks = Tasks::new(CancellationToken::new());
    let opts = SmbShareOptions {
        machine_key: Some(MACHINE_KEY.to_vec()),
        smbpasswd: Some(wrapper),
        ..share_options(dir.path(), port, PASSWORD)
    };
    let share = SmbShare::start(opts, &tasks);
    let hosts = share.heard_hosts().unwrap();
    wait_state(&share, |s| s.state == SmbState::Running).await;
    hosts.send("flaky".into()).unwrap();
    let s = wait_state(&share, |s| {
        s.machine_accounts
            .as_ref()
            .is_some_and(|m| m.error.is_some())
    })
    .await;
    let m = s.machine_accounts.unwrap();
    assert_eq!(m.registered, 0);
    assert!(m.error.unwrap().contains("FLAKY$"));
    // The next host heard brings the failed one with it.
    hosts.send("steady".into()).unwrap();
    assert_eq!(registered(&share, 2).await.error, None);
    let (ok, out) = smbclient(port, &["-U", &machine_user("flaky", MACHINE_KEY)], "ls").await;
    assert!(ok, "{out}");
    tasks.shutdown();
    tasks.join(Duration::from_secs(15)).await.unwrap();
}
