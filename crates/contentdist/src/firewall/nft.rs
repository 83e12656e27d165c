//! Running `nft`: behind the [`Nft`] trait, so tests can run it inside a network
//! namespace ([`NftCommand::in_netns`]) or not at all (a fake that records batches).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::FirewallError;

/// How long one `nft` run may take: it answers in milliseconds; one that hangs
/// must not hold the check task (and the agent's shutdown) for ever.
const NFT_TIMEOUT: Duration = Duration::from_secs(15);

/// A way to run `nft`.
pub trait Nft: Send + Sync + fmt::Debug {
    /// Runs `nft ARGS` with `input` on its standard input; its standard output.
    /// `step` names what the run is for, in errors.
    fn run(
        &self,
        step: &'static str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, FirewallError>;

    /// Why nft cannot be used here (not root, not installed), or `None`.
    fn unavailable(&self) -> Option<String>;
}

/// `nft` run as a child process, directly or through a prefix command.
#[derive(Debug, Clone)]
pub struct NftCommand {
    program: PathBuf,
    prefix: Vec<String>,
    nft: Option<PathBuf>,
}

impl NftCommand {
    /// The system's `nft`, found on `PATH` or in `/usr/sbin` and `/sbin` (where
    /// Debian puts it, outside an unprivileged user's `PATH`).
    pub fn system() -> NftCommand {
        let nft = find_nft();
        NftCommand {
            program: nft.clone().unwrap_or_else(|| PathBuf::from("nft")),
            prefix: Vec::new(),
            nft,
        }
    }

    /// `ip netns exec NS nft`: the system's `nft` inside network namespace `ns`.
    pub fn in_netns(ns: &str) -> NftCommand {
        let nft = find_nft();
        let mut prefix = vec!["netns".to_string(), "exec".into(), ns.into()];
        prefix.push(
            nft.as_deref()
                .unwrap_or(Path::new("nft"))
                .display()
                .to_string(),
        );
        NftCommand {
            program: PathBuf::from("ip"),
            prefix,
            nft,
        }
    }
}

impl Nft for NftCommand {
    fn run(
        &self,
        step: &'static str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, FirewallError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("nft {}", args.join(" "));
        let mut child = cmd.spawn().map_err(|source| FirewallError::Spawn {
            step,
            program: self.program.display().to_string(),
            source,
        })?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            // A batch is a few kilobytes: it fits the pipe, nft reads it all.
            let _ = stdin.write_all(text.as_bytes());
        }
        // Wait on another thread, so a hung nft can be killed at the deadline.
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(NFT_TIMEOUT) {
            Ok(out) => out.map_err(|source| FirewallError::Spawn {
                step,
                program: self.program.display().to_string(),
                source,
            })?,
            Err(_) => {
                // SAFETY: kill(2) of our own child, not yet reaped (the waiting
                // thread reaps it once it is dead).
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
                return Err(FirewallError::Timeout {
                    step,
                    command: shown,
                    secs: NFT_TIMEOUT.as_secs(),
                });
            }
        };
        if !out.status.success() {
            return Err(FirewallError::Refused {
                step,
                command: shown,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn unavailable(&self) -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("the agent does not run as root".into());
        }
        if self.nft.is_none() {
            return Some("nft is not installed (Debian/Ubuntu package nftables)".into());
        }
        None
    }
}

/// `nft` on `PATH`, else in the system binary directories.
fn find_nft() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
