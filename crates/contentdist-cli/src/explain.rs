//! `contentdist explain CODE`: what a code means, how to fix it, and whether a caller
//! falls back to a direct download when a job fails with it.

use clap::Args;
use contentdist::codes::{Code, CodeInfo, SuccessCodes, CATALOGUE};

use crate::exit::Exit;
use crate::format;
use crate::settings::SettingsArgs;

/// `contentdist explain [CODE | --all]`
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The code, hexadecimal (0x205D) or decimal (8285)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    code: Option<Code>,

    /// List the whole catalogue
    #[arg(long)]
    all: bool,

    /// Print as JSON: {"code", "decimal", "name", "meaning", "fix", "in_success_codes"},
    /// an array of them with --all
    #[arg(long)]
    json: bool,
}

/// Explain one code or list them all.
pub fn run(args: ExplainArgs, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    let success_codes = success_codes(settings);
    if args.all {
        if args.json {
            let all: Vec<_> = CATALOGUE
                .iter()
                .map(|info| info_json(info, &success_codes))
                .collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        } else {
            print!("{}", catalogue(&success_codes));
        }
        return Ok(Exit::Success);
    }
    let code = args.code.expect("clap requires CODE without --all");
    match explain(code, &success_codes) {
        Some(_) if args.json => {
            let info = code.info().expect("explained codes are in the catalogue");
            let value = info_json(info, &success_codes);
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(Exit::Success)
        }
        Some(text) => {
            print!("{text}");
            Ok(Exit::Success)
        }
        None => {
            eprintln!(
                "{code} ({}) is not a contentdist code; `contentdist explain --all` lists them",
                code.0
            );
            if success_codes.contains(code) {
                eprintln!("It is in SuccessCodes: a job failing with it does not fall back to a direct download.");
            }
            Ok(Exit::Failed)
        }
    }
}

/// The configured SuccessCodes; the defaults when there is no settings file or it
/// cannot be read, since explaining a code must work on a broken host too.
fn success_codes(settings: &SettingsArgs) -> SuccessCodes {
    match settings.load() {
        Ok(loaded) => loaded.config.success_codes,
        Err(e) => {
            eprintln!("note: {e}; showing the default SuccessCodes");
            SuccessCodes::default()
        }
    }
}

/// The explanation of a catalogue code, `None` for a number the catalogue lacks.
fn explain(code: Code, success_codes: &SuccessCodes) -> Option<String> {
    let info = code.info()?;
    let fallback = if success_codes.contains(code) {
        "yes: a job failing with it does NOT fall back to a direct download (exit 3)"
    } else {
        "no: a job failing with it may fall back to a direct download (exit 1)"
    };
    Some(format!(
        "{code} {name} (decimal {decimal})\nmeaning: {meaning}\nfix: {fix}\nin SuccessCodes: {fallback}\n",
        name = info.name,
        decimal = code.0,
        meaning = info.meaning,
        fix = info.fix,
    ))
}

/// A catalogue entry as JSON; `code` as the catalogue writes it (`0x205D`).
fn info_json(info: &CodeInfo, success_codes: &SuccessCodes) -> serde_json::Value {
    serde_json::json!({
        "code": info.code.to_string(),
        "decimal": info.code.0,
        "name": info.name,
        "meaning": info.meaning,
        "fix": info.fix,
        "in_success_codes": success_codes.contains(info.code),
    })
}

/// The whole catalogue as a table.
fn catalogue(success_codes: &SuccessCodes) -> String {
    let rows: Vec<Vec<String>> = CATALOGUE
        .iter()
        .map(|info| {
            vec![
                info.code.to_string(),
                info.code.0.to_string(),
                info.name.to_string(),
                if success_codes.contains(info.code) {
                    "yes"
                } else {
                    "-"
                }
                .to_string(),
                info.meaning.to_string(),
            ]
        })
        .collect();
    format::table(&["CODE", "DECIMAL", "NAME", "SUCCESS", "MEANING"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_a_catalogue_code_with_its_fix_and_success_codes_membership() {
        let text = explain(Code::ORIGIN_NOT_FOUND, &SuccessCodes::default()).unwrap();
        assert!(
            text.starts_with("0x205D ORIGIN_NOT_FOUND (decimal 8285)\n"),
            "{text}"
        );
        assert!(text.contains(Code::ORIGIN_NOT_FOUND.info().unwrap().fix));
        assert!(text.contains("in SuccessCodes: yes"), "{text}");

        let text = explain(Code::CANNOT_CONNECT, &SuccessCodes::default()).unwrap();
        assert!(text.contains("in SuccessCodes: no"), "{text}");
        let only_cannot_connect: SuccessCodes = "0x2EFD".parse().unwrap();
        let text = explain(Code::CANNOT_CONNECT, &only_cannot_connect).unwrap();
        assert!(text.contains("in SuccessCodes: yes"), "{text}");
    }

    #[test]
    fn json_entry_has_the_code_its_words_and_success_codes_membership() {
        let info = Code::ORIGIN_NOT_FOUND.info().unwrap();
        let j = info_json(info, &SuccessCodes::default());
        assert_eq!(j["code"], "0x205D");
        assert_eq!(j["decimal"], 8285);
        assert_eq!(j["name"], "ORIGIN_NOT_FOUND");
        assert_eq!(j["fix"], info.fix);
        assert_eq!(j["in_success_codes"], true);
        let j = info_json(
            Code::CANNOT_CONNECT.info().unwrap(),
            &SuccessCodes::default(),
        );
        assert_eq!(j["in_success_codes"], false);
    }

    #[test]
    fn unknown_code_has_no_explanation() {
        assert_eq!(explain(Code(0x1234), &SuccessCodes::default()), None);
    }

    #[test]
    fn catalogue_lists_every_code_once() {
        let text = catalogue(&SuccessCodes::default());
        assert_eq!(text.lines().count(), CATALOGUE.len() + 1);
        assert!(
            text.lines().nth(1).unwrap().starts_with("0x0 "),
            "OK comes first"
        );
        assert!(text.contains("0x205D"));
        assert!(text.contains("ORIGIN_NOT_FOUND"));
    }
}
