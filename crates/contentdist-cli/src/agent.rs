//! `contentdist agent`: run the agent in the foreground until SIGINT or SIGTERM;
//! SIGHUP reloads the settings. Under systemd (`Type=notify`) it says when it is
//! ready (every listener bound), reloading and stopping, and feeds the watchdog.

use std::time::Duration;

use anyhow::Context;
use contentdist::agent::{Agent, AgentHandle};
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::exit::Exit;
use crate::logging::LogControl;
use crate::settings::SettingsArgs;

/// Load the settings, start the agent, stop it cleanly on SIGINT or SIGTERM.
pub async fn run(settings: &SettingsArgs) -> anyhow::Result<Exit> {
    let loaded = match settings.load() {
        Ok(l) => l,
        Err(e) => {
            // A bad settings file will not get better by restarting: the unit
            // lists this status in RestartPreventExitStatus.
            crate::exit::report_error(&anyhow::Error::new(e), false);
            return Ok(Exit::Config);
        }
    };
    let log = crate::logging::init(
        &loaded.config.log_level.to_string(),
        loaded.config.log_format,
    );
    match &loaded.file {
        Some(file) => info!(file = %file.display(), "settings loaded"),
        None => info!(
            file = %settings.path().display(),
            "no settings file; running with the defaults"
        ),
    }
    // Register the handlers before starting, so a signal during start-up is not lost.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let handle = Agent::start(loaded.config)
        .await
        .context("the agent could not start")?;
    // Every listener is bound now.
    notify(&[NotifyState::Ready]);
    let mut watchdog = watchdog_interval();
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break }
            _ = sighup.recv() => reload(settings, &handle, &log),
            _ = tick(&mut watchdog) => {
                // Fed only while the agent answers: its status takes the job
                // manager's locks, so a stuck agent stops feeding and is restarted.
                if handle.answers_status(Duration::from_secs(5)).await {
                    notify(&[NotifyState::Watchdog]);
                } else {
                    warn!("the agent did not answer within 5 s; not feeding the watchdog");
                }
            }
        }
    }
    notify(&[NotifyState::Stopping]);
    handle.shutdown();
    if let Err(left) = handle.join().await {
        warn!(?left, "stopped without waiting for these");
    }
    info!("agent stopped");
    Ok(Exit::Success)
}

/// Drop the capabilities the unit grants for one feature when that feature is off:
/// `CAP_NET_ADMIN` (the agent's nftables table) unless it manages the firewall,
/// `CAP_SETUID` and `CAP_SETGID` (its smbd switches users) unless it serves SMB.
/// From the effective, permitted and bounding sets, before the runtime's threads
/// exist, so no thread and no child keeps them. Settings that do not load are
/// reported later, by [`run`].
pub fn drop_unneeded_capabilities(settings: &SettingsArgs) {
    use caps::{CapSet, Capability};
    let Ok(loaded) = settings.load() else { return };
    let c = &loaded.config;
    let mut unneeded = Vec::new();
    if !contentdist::firewall::may_manage(c) {
        unneeded.push(Capability::CAP_NET_ADMIN);
    }
    if !c.p2p_enabled.has_smb() || c.preboot {
        unneeded.extend([Capability::CAP_SETUID, Capability::CAP_SETGID]);
    }
    for cap in unneeded {
        if !caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            continue;
        }
        for set in [CapSet::Effective, CapSet::Permitted, CapSet::Bounding] {
            if let Err(e) = caps::drop(None, set, cap) {
                eprintln!("warning: {cap} not dropped from the {set:?} set: {e}");
            }
        }
    }
}

/// SIGHUP: read the settings file again and apply what can change live. A file
/// that does not load changes nothing: the agent keeps its settings.
fn reload(settings: &SettingsArgs, handle: &AgentHandle, log: &LogControl) {
    info!("SIGHUP: reloading the settings");
    notify(&[NotifyState::Reloading]);
    match settings.load() {
        Ok(loaded) => {
            // The level first, so that what the reload logs shows at the new level.
            if loaded.config.log_level != handle.config().log_level {
                let level = loaded.config.log_level.to_string();
                match log.set_level(&level) {
                    Ok(()) => info!(level, "log level changed"),
                    Err(e) => warn!(level, "log level not changed: {e}"),
                }
            }
            handle.reload(&loaded.config);
        }
        Err(e) => {
            warn!("settings not reloaded; the agent keeps running with the ones it has: {e:#}")
        }
    }
    notify(&[NotifyState::Ready]);
}

/// Tell systemd; nothing when not started by it (no `NOTIFY_SOCKET`).
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        warn!(error = %e, "could not notify systemd");
    }
}

/// Half the watchdog period systemd asks for (`WatchdogSec`), if it asks.
fn watchdog_interval() -> Option<tokio::time::Interval> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    info!(period_ms = usec / 1000, "feeding the systemd watchdog");
    Some(tokio::time::interval(Duration::from_micros(usec / 2)))
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The agent's allocation pattern (buffers of 128 KiB to a few MiB, freed as fast
/// as they come: blocks, SMB reads) under glibc's defaults had each such buffer
/// mapped, or the heap trimmed after it and faulted in again: a peer copying over
/// SMB spent a fifth of its time in page faults and zeroing pages, and copied 1 GiB
/// in 2.65-3.16 s; with buffers up to 8 MiB served from the heap and up to 32 MiB
/// of free heap kept, 1.65-2.12 s. The serving master's peak memory with 64 slow
/// clients went from 51.2 to 52.8 MiB (BENCHMARKS.md §12). Process-wide, so the
/// binary sets it, once, before any thread starts.
pub fn tune_allocator() {
    // SAFETY: mallopt only sets glibc's allocator parameters; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}
