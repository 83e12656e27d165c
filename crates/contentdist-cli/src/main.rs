//! `contentdist`: the command line over the contentdist library. Each command group
//! lives in its own module; this file parses the command line and maps the result
//! to an exit status (see `exit`).

mod agent;
mod cache;
mod certs;
mod config;
mod exit;
mod explain;
mod format;
mod generate;
mod get;
mod jobs;
mod lab;
mod logging;
mod progress;
mod publish;
mod settings;
mod status;
#[cfg(test)]
mod test_support;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// `--version`: the release and the commit it was built from (see build.rs), e.g.
/// `0.1.0 (abc1234 2026-11-30)`.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CONTENTDIST_COMMIT_INFO"),
    ")"
);

/// Bring published content to every host of a site, crossing the WAN once per subnet.
#[derive(Parser, Debug)]
#[command(name = "contentdist", version = VERSION, after_help = exit::EXIT_STATUS_HELP)]
struct Cli {
    #[command(flatten)]
    settings: settings::SettingsArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent in the foreground until SIGINT or SIGTERM
    Agent,
    /// Show the effective settings
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Explain a status code: meaning, likely fix, SuccessCodes membership
    Explain(explain::ExplainArgs),
    /// Publish a directory as content ORIGIN_ROOT/ID/VERSION/ with its manifest
    Publish(publish::PublishArgs),
    /// Ask the local agent for content and wait until it is delivered
    Get(get::GetArgs),
    /// List the agent's jobs, or pause, resume, cancel or watch one
    Jobs(jobs::JobsArgs),
    /// Show the agent's listeners, certificates, counters and elections
    Status(status::StatusArgs),
    /// List or clean the agent's content cache
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// List the certificate store and the certificate chosen for server authentication
    Certs(certs::CertsArgs),
    /// Simulate a branch office on loopback: an origin behind a slow WAN, N agents
    Lab(lab::LabArgs),
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    if generate::wanted(&args) {
        return generate::main(args, Cli::command());
    }
    let cli = Cli::parse_from(args);
    if matches!(cli.command, Command::Agent) {
        // Before any thread exists: threads inherit the capabilities they start with.
        agent::drop_unneeded_capabilities(&cli.settings);
        agent::tune_allocator();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
        .block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let settings = &cli.settings;
    // The agent logs at its configured level once the settings are read.
    if !matches!(cli.command, Command::Agent) {
        logging::init("warn", contentdist::config::LogFormat::Text);
    }
    let (result, control) = match cli.command {
        Command::Agent => (agent::run(settings).await, false),
        Command::Config(command) => (config::run(command, settings), false),
        Command::Explain(args) => (explain::run(args, settings), false),
        Command::Publish(args) => (publish::run(args, settings), false),
        Command::Get(args) => (get::run(args, settings).await, true),
        Command::Jobs(args) => (jobs::run(args, settings).await, true),
        Command::Status(args) => (status::run(args, settings).await, true),
        Command::Cache(command) => (cache::run(command, settings).await, true),
        Command::Certs(args) => (certs::run(args, settings), false),
        Command::Lab(args) => (lab::run_lab(args).await, false),
    };
    result
        .unwrap_or_else(|e| exit::report_error(&e, control))
        .into()
}
