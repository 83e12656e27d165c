//! `contentdist config show`: the effective settings, as a settings file or as JSON.

use clap::Subcommand;

use crate::exit::Exit;
use crate::settings::SettingsArgs;

/// `contentdist config ...`
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective settings, one key a line, every bit mask decoded.
    /// The output is a valid settings file: settings not set, and secrets, are
    /// comments. A bad settings file prints the error (file and key) and exits 1.
    Show {
        /// Print the settings as JSON: {"file", "settings": {KEY: {"value", "meaning"}}}
        #[arg(long)]
        json: bool,
    },
}

/// Run a `config` command.
pub fn run(command: ConfigCommand, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    match command {
        ConfigCommand::Show { json } => {
            let loaded = settings.load()?;
            if json {
                let value = serde_json::json!({
                    "file": loaded.file,
                    "settings": loaded.config.describe_json(),
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(Exit::Success);
            }
            match &loaded.file {
                Some(file) => println!("# {}", file.display()),
                None => println!(
                    "# {} does not exist: these are the defaults",
                    settings.path().display()
                ),
            }
            print!("{}", loaded.config.describe());
            Ok(Exit::Success)
        }
    }
}
