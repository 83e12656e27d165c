//! The process's log output: to standard error, at the settings' `LogLevel`
//! unless `RUST_LOG` says otherwise, with a level that a reload can change.
//!
//! A log line that cannot be written (the log's disk is full, a closed pipe) is
//! lost, never fatal: the default reports it with `eprint!`, which panics when
//! stderr itself is what fails, and took the agent down with it.
//!
//! Colour only when standard error is a terminal: the journal and log files get
//! plain text. `json`: one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Changes the level of the log output installed by [`init`].
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it wins over `LogLevel`, also after a reload.
    from_env: bool,
}

/// Install the log output at `default_level` (unless `RUST_LOG` is set).
pub fn init(default_level: &str, format: contentdist::config::LogFormat) -> LogControl {
    let from_env = std::env::var_os(EnvFilter::DEFAULT_ENV).is_some();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    let fmt = match format {
        contentdist::config::LogFormat::Text => fmt.boxed(),
        contentdist::config::LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry().with(filter).with(fmt).init();
    LogControl { handle, from_env }
}

impl LogControl {
    /// Log at `level` from now on; `Err` says why not (`RUST_LOG` overrides it).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        if self.from_env {
            return Err("RUST_LOG is set and overrides LogLevel".into());
        }
        self.handle
            .reload(EnvFilter::new(level))
            .map_err(|e| e.to_string())
    }
}
