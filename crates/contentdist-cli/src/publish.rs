//! `contentdist publish`: write a directory tree and its manifest into an origin root.

use std::path::PathBuf;

use clap::Args;
use contentdist::publish::{publish, PublishOptions, PublishReport};
use serde_json::json;

use crate::exit::Exit;
use crate::format;
use crate::settings::SettingsArgs;

/// `contentdist publish DIR --id ID --version N --out ORIGIN_ROOT`
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The directory tree to publish
    dir: PathBuf,

    /// Content id (letters, digits, '.', '_', '-'), e.g. PKG00001
    #[arg(long = "id", value_name = "ID")]
    content_id: String,

    /// Content version, a whole number
    #[arg(long, value_name = "N")]
    version: u32,

    /// The origin's document root; the content goes to ORIGIN_ROOT/ID/N/
    #[arg(long = "out", value_name = "ORIGIN_ROOT")]
    out_root: PathBuf,

    /// Block size in bytes: the unit of verification and transfer [default: the
    /// settings' BlockSize, 131072]
    #[arg(long, value_name = "N")]
    block_size: Option<u32>,

    /// Replace an existing ORIGIN_ROOT/ID/N/
    #[arg(long)]
    force: bool,

    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// Publish and print the report.
pub fn run(args: PublishArgs, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    let mut options = PublishOptions {
        source_dir: args.dir,
        content_id: args.content_id,
        version: args.version,
        out_root: args.out_root,
        force: args.force,
        ..PublishOptions::default()
    };
    // The settings' BlockSize applies unless the command names one (no settings file
    // at the default place means the defaults).
    options.block_size = match args.block_size {
        Some(block_size) => block_size,
        None => settings.load()?.config.block_size,
    };
    let report = publish(&options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
    } else {
        print!("{}", report_text(&options, &report));
    }
    Ok(Exit::Success)
}

fn report_json(report: &PublishReport) -> serde_json::Value {
    json!({
        "dir": report.dir,
        "files": report.files,
        "bytes": report.bytes,
        "blocks": report.blocks,
        "content_hash": report.content_hash,
        "elapsed_ms": report.elapsed.as_millis() as u64,
    })
}

fn report_text(options: &PublishOptions, report: &PublishReport) -> String {
    format!(
        "published {id} version {version} into {dir}\n  {files}, {bytes} in {blocks}, {elapsed}\n  content hash {hash}\n  get it with: contentdist get {id} --version {version} --hash {hash}\n",
        id = options.content_id,
        version = options.version,
        dir = report.dir.display(),
        files = format::count(report.files, "file", "files"),
        bytes = format::bytes(report.bytes),
        blocks = format::count(report.blocks, "block", "blocks"),
        elapsed = format::duration_ms(report.elapsed.as_millis() as u64),
        hash = report.content_hash,
    )
}
