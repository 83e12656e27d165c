//! Where the settings and the agent's control socket are, for every command.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use contentdist::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use contentdist::control::ControlClient;

/// The global options naming the settings file and the control socket.
#[derive(Args, Debug)]
pub struct SettingsArgs {
    /// Settings file [default: /etc/contentdist/contentdist.toml]
    #[arg(long, global = true, value_name = "FILE", env = "CONTENTDIST_CONFIG")]
    config: Option<PathBuf>,

    /// The agent's control socket, instead of the settings' ControlSocket
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
}

/// Settings and where they came from.
pub struct Loaded {
    /// The effective settings.
    pub config: Config,
    /// The file read, or `None` when the default file is absent and defaults apply.
    pub file: Option<PathBuf>,
}

impl SettingsArgs {
    /// The settings file named, or the default one.
    pub fn path(&self) -> &Path {
        self.config
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_CONFIG_PATH))
    }

    /// Load the settings. A file named with `--config` (or `CONTENTDIST_CONFIG`) must
    /// exist; when none is named and the default file is absent, the defaults apply,
    /// so a host runs without any settings file. `--socket` overrides `ControlSocket`.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let path = self.path();
        let mut loaded = if self.config.is_none() && !path.exists() {
            Loaded {
                config: Config::default(),
                file: None,
            }
        } else {
            Loaded {
                config: Config::load(path)?,
                file: Some(path.to_path_buf()),
            }
        };
        if let Some(socket) = &self.socket {
            loaded.config.control_socket = socket.clone();
        }
        Ok(loaded)
    }

    /// A client of the agent's control socket: `--socket`, else the settings'.
    /// With `--socket` the settings file is not read at all.
    pub fn client(&self) -> anyhow::Result<ControlClient> {
        let socket = match &self.socket {
            Some(socket) => socket.clone(),
            None => {
                self.load()
                    .context("cannot find the agent's control socket")?
                    .config
                    .control_socket
            }
        };
        Ok(ControlClient::new(socket))
    }
}
