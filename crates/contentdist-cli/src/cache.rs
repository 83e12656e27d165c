//! `contentdist cache list|clean`: the agent's content cache.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use contentdist::cache::{CacheEntryInfo, CleanReport};

use crate::exit::Exit;
use crate::format;
use crate::settings::SettingsArgs;

/// `contentdist cache ...`
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List the content versions in the cache
    List {
        /// Print the entries as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run the cache clean-up now (MaxCacheDays, MaxCacheSizeMB, PercentAvailableDisk)
    Clean {
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
}

/// Run a `cache` command against the agent.
pub async fn run(command: CacheCommand, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    let client = settings.client()?;
    match command {
        CacheCommand::List { json } => {
            let entries = client.cache_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("the cache is empty");
            } else {
                print!("{}", table(&entries, unix_now()));
            }
        }
        CacheCommand::Clean { json } => {
            let report = client.cache_clean().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", clean_text(&report));
            }
        }
    }
    Ok(Exit::Success)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn table(entries: &[CacheEntryInfo], now_unix: u64) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.content_id.clone(),
                e.version.to_string(),
                format::bytes(e.bytes_total),
                if e.complete {
                    "complete".to_string()
                } else {
                    format::percent(e.bytes_verified, e.bytes_total)
                },
                e.priority.to_string(),
                format::age(e.last_used_unix, now_unix),
                if e.in_use { "yes" } else { "-" }.to_string(),
            ]
        })
        .collect();
    format::table(
        &[
            "CONTENT",
            "VERSION",
            "SIZE",
            "VERIFIED",
            "PRIORITY",
            "LAST USED",
            "IN USE",
        ],
        &rows,
    )
}

fn clean_text(report: &CleanReport) -> String {
    let mut text = String::new();
    for removed in &report.removed {
        text.push_str(&format!("removed {removed}\n"));
    }
    text.push_str(&format!(
        "{} removed, {} freed\n",
        format::count(report.removed.len(), "entry", "entries"),
        format::bytes(report.bytes_freed)
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_table_shows_completeness_priority_and_age() {
        let entry = |id: &str, verified, complete| CacheEntryInfo {
            content_id: id.into(),
            version: 2,
            bytes_total: 2048,
            bytes_verified: verified,
            complete,
            priority: 7,
            last_used_unix: 1000,
            in_use: !complete,
        };
        let text = table(
            &[entry("A", 2048, true), entry("B", 512, false)],
            1000 + 7200,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "CONTENT  VERSION  SIZE     VERIFIED  PRIORITY  LAST USED  IN USE",
                "A        2        2.0 KiB  complete  7         2 h ago    -",
                "B        2        2.0 KiB  25%       7         2 h ago    yes",
            ]
        );
    }

    #[test]
    fn clean_report_lists_removals_and_total() {
        let report = CleanReport {
            removed: vec!["PKG/1 (older than MaxCacheDays)".into()],
            bytes_freed: 3 * 1024 * 1024,
        };
        assert_eq!(
            clean_text(&report),
            "removed PKG/1 (older than MaxCacheDays)\n1 entry removed, 3.0 MiB freed\n"
        );
    }
}
