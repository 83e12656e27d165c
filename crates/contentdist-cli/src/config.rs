//! `contentdist config show`: the effective settings.

use clap::Subcommand;

use crate::exit::Exit;
use crate::settings::SettingsArgs;

/// `contentdist config ...`
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective settings, one key a line, every bit mask decoded.
    /// A bad settings file prints the error (file and key) and exits 1.
    Show,
}

/// Run a `config` command.
pub fn run(command: ConfigCommand, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    match command {
        ConfigCommand::Show => {
            let loaded = settings.load()?;
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
