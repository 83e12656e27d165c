//! `contentdist agent`: run the agent in the foreground until SIGINT or SIGTERM.

use anyhow::Context;
use contentdist::agent::Agent;
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

use crate::exit::Exit;
use crate::settings::SettingsArgs;

/// Load the settings, start the agent, stop it cleanly on SIGINT or SIGTERM.
pub async fn run(settings: &SettingsArgs) -> anyhow::Result<Exit> {
    let loaded = settings.load()?;
    crate::init_logging(
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
    let handle = Agent::start(loaded.config)
        .await
        .context("the agent could not start")?;
    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM: shutting down"),
        _ = sigint.recv() => info!("SIGINT: shutting down"),
    }
    handle.shutdown();
    if let Err(left) = handle.join().await {
        tracing::warn!(?left, "stopped without waiting for these");
    }
    info!("agent stopped");
    Ok(Exit::Success)
}
