//! `contentdist lab`: a branch office simulated on loopback (see
//! `contentdist::lab::office`), printed as a table.

use bytesize::ByteSize;
use clap::builder::RangedU64ValueParser;
use clap::Args;
use contentdist::lab::office::{run, LabOptions, LabReport, MAX_AGENTS};

use crate::exit::Exit;
use crate::format;

/// `contentdist lab [--agents N] [--size SIZE] [--wan-rate RATE] [--kill-master-at P%]`
#[derive(Args, Debug)]
pub struct LabArgs {
    /// Number of agents (hosts of the office), 1..=200
    #[arg(long, alias = "peers", default_value_t = 8,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_AGENTS as u64))]
    agents: usize,

    /// Size of the generated content, above 0 and at most 1T: bytes, or with a unit;
    /// K, M, G, T are binary (64M = 64 MiB), as are KiB, MiB...; KB, MB... are decimal
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    size: u64,

    /// WAN link rate to the origin, 8kbit/s to 800Gbit/s: in bits (100Mbit, 100Mbps,
    /// 100Mbit/s, 500kbit, 2Gbit; a bare number or 100M is Mbit/s) or bytes
    /// (12.5MB/s, 10MiB/s)
    #[arg(long, default_value = "100Mbit", value_parser = parse_rate)]
    wan_rate: u64,

    /// Kill the master abruptly once it holds this share (50% or 0.5)
    #[arg(long, value_parser = parse_share)]
    kill_master_at: Option<f64>,

    /// Keep everything in this directory instead of a temporary one
    #[arg(long, value_name = "DIR")]
    work_dir: Option<std::path::PathBuf>,

    /// First run the same office with peer copy off (every agent downloads directly
    /// through the same WAN link), then with it on, and compare
    #[arg(long)]
    baseline: bool,

    /// Print the report as JSON
    #[arg(long)]
    json: bool,

    /// Serve each agent's metrics and status page (on the agent's address, a free
    /// port) and print their URLs
    #[arg(long)]
    metrics: bool,
}

/// The largest content the lab generates: 1T (1 TiB).
const MAX_SIZE: u64 = 1 << 40;

/// The WAN rates the lab simulates, in bytes per second: 8 kbit/s to 800 Gbit/s.
const RATES: std::ops::RangeInclusive<f64> = 1e3..=1e11;

/// A size as bytesize reads it, except that a bare K, M, G or T stays binary as this
/// option always had it (bytesize reads `64M` as 64 MB): `64M` is handed over as `64Mi`.
fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let text = match text.chars().last() {
        Some(c) if "kmgtpeKMGTPE".contains(c) => format!("{text}i"),
        _ => text.to_string(),
    };
    let size: ByteSize = text
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 64M, 1G, 1T, 100MB, 1048576)"))?;
    if size.as_u64() == 0 || size.as_u64() > MAX_SIZE {
        return Err(format!("size '{s}' must be above 0 and at most 1T (1 TiB)"));
    }
    Ok(size.as_u64())
}

/// A link rate in bytes per second. Bits unless the unit says bytes with a capital
/// `B`: `100Mbit`, `100Mbps`, `100Mbit/s`, `100Mb/s`, `500kbit`, `2Gbit`; a bare
/// number or a bare prefix (`100`, `100M`) is Mbit/s, since links are sold in bits.
/// Bytes go through bytesize: `12.5MB/s`, `12.5MBps` (decimal), `10MiB/s` (binary).
fn parse_rate(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("'{s}' is not a rate (examples: 100Mbit, 100Mbps, 100Mbit/s, 100M, 500kbit, 2Gbit, 12.5MB/s)")
    };
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number_text, unit) = text.split_at(split);
    let number: f64 = number_text.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("/s")
        .or_else(|| unit.strip_suffix("ps"))
        .or_else(|| unit.strip_suffix("PS"))
        .unwrap_or(unit);
    let bytes_per_sec = if unit.ends_with('B') {
        let size: ByteSize = format!("{number_text}{unit}").parse().map_err(|_| bad())?;
        size.as_u64() as f64
    } else {
        let prefix = if unit.to_ascii_lowercase().ends_with("bit") {
            &unit[..unit.len() - 3]
        } else {
            unit.strip_suffix('b').unwrap_or(unit)
        };
        let bits = match prefix {
            "" if unit.is_empty() => 1e6,
            "" => 1.0,
            "k" | "K" => 1e3,
            "m" | "M" => 1e6,
            "g" | "G" => 1e9,
            _ => return Err(bad()),
        };
        number * bits / 8.0
    };
    if !RATES.contains(&bytes_per_sec) {
        return Err(format!(
            "rate '{s}' must be between 8kbit/s and 800Gbit/s (1kB/s to 100GB/s)"
        ));
    }
    Ok(bytes_per_sec as u64)
}

fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("'{s}' is not a share (examples: 50%, 0.5)"))?;
    if !(0.0..1.0).contains(&v) || v == 0.0 {
        return Err(format!("share '{s}' must be above 0% and below 100%"));
    }
    Ok(v)
}

/// Run the lab and print its report.
pub async fn run_lab(args: LabArgs) -> anyhow::Result<Exit> {
    let opts = LabOptions {
        agents: args.agents,
        size: args.size,
        wan_rate: args.wan_rate,
        kill_master_at: args.kill_master_at,
        work_dir: args.work_dir,
        metrics: args.metrics,
        ..LabOptions::default()
    };
    let json = args.json;
    let say = |line: &str| {
        if !json {
            eprintln!("{line}");
        }
    };
    let baseline = if args.baseline {
        let direct = LabOptions {
            peer_copy: false,
            kill_master_at: None,
            ..opts.clone()
        };
        let b = run(direct, say).await?;
        if !json {
            print!("baseline, peer copy off:\n{}\n", render(&b));
        }
        Some(b)
    } else {
        None
    };
    let report = run(opts, say).await?;
    if json {
        let v = serde_json::json!({ "lab": report, "baseline": baseline });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if baseline.is_some() {
            println!("peer copy on:");
        }
        print!("{}", render(&report));
        if let Some(b) = &baseline {
            println!(
                "\nagainst the baseline in this run: time {:.1} s vs {:.1} s ({:.2}x faster), WAN {} vs {} ({:.2}x less)",
                report.seconds,
                b.seconds,
                b.seconds / report.seconds,
                format::bytes(report.wan_bytes),
                format::bytes(b.wan_bytes),
                b.wan_bytes as f64 / report.wan_bytes as f64
            );
        }
    }
    let good = |r: &LabReport| {
        r.agents
            .iter()
            .all(|a| a.identical || a.role.contains("killed"))
    };
    let all_good = good(&report) && baseline.as_ref().is_none_or(good);
    Ok(if all_good {
        Exit::Success
    } else {
        Exit::Failed
    })
}

fn render(r: &LabReport) -> String {
    let rows: Vec<Vec<String>> = r
        .agents
        .iter()
        .map(|a| {
            vec![
                a.addr.to_string(),
                a.role.clone(),
                a.state.clone(),
                format::bytes(a.from_origin),
                format::bytes(a.from_peers),
                format!("{:.1} s", a.seconds),
                match (a.identical, a.role.contains("killed")) {
                    (_, true) => "-".into(),
                    (true, false) => "yes".into(),
                    (false, false) => "NO".into(),
                },
            ]
        })
        .collect();
    let mut out = format::table(
        &[
            "AGENT",
            "ROLE",
            "STATE",
            "FROM ORIGIN",
            "FROM PEERS",
            "TIME",
            "IDENTICAL",
        ],
        &rows,
    );
    out.push_str(&format!(
        "\ncontent {}; WAN carried {} (every agent downloading directly: {})\n\
         WAN saving: {:.1}%   time: {:.1} s (every agent directly at {:.0} Mbit/s: {:.1} s)\n",
        format::bytes(r.content_bytes),
        format::bytes(r.wan_bytes),
        format::bytes(r.direct_wan_bytes),
        r.wan_saving_percent,
        r.seconds,
        r.wan_rate as f64 * 8.0 / 1e6,
        r.direct_seconds,
    ));
    let who: Vec<String> = r
        .masters
        .iter()
        .map(|(a, n)| match n {
            1 => a.to_string(),
            n => format!("{a} ({n} times)"),
        })
        .collect();
    out.push_str(&format!(
        "masters elected: {} ({}); most at once: {}\n",
        r.masters_elected,
        if who.is_empty() {
            "none".to_string()
        } else {
            who.join(", ")
        },
        r.most_masters_at_once
    ));
    out.push_str(&format!(
        "head starts: {} (ended without a mastership: {})\n",
        r.head_starts, r.head_starts_ended
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_an_administrator_writes_them() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("64 M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("-1").unwrap_err().contains("not a size"));
    }

    #[test]
    fn the_size_limit_in_the_message_is_the_one_checked() {
        // "at most 1T": 1T itself is accepted, anything above or 0 is refused.
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("1024G").unwrap(), 1 << 40);
        for bad in ["1025G", "1.01T", "0", "0M"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("at most 1T"), "{bad}: {e}");
        }
    }

    #[test]
    fn rates_parse_in_bits_and_bytes() {
        const MBIT: u64 = 125_000;
        for (text, bytes) in [
            ("100Mbit", 100 * MBIT),
            ("100Mbps", 100 * MBIT),
            ("100Mbit/s", 100 * MBIT),
            ("100Mb/s", 100 * MBIT),
            ("100mbit", 100 * MBIT),
            ("100 Mbit/s", 100 * MBIT),
            ("100M", 100 * MBIT),
            ("100", 100 * MBIT),
            ("20", 20 * MBIT),
            ("500kbit", 62_500),
            ("500Kbps", 62_500),
            ("2Gbit/s", 250_000_000),
            ("2Gbps", 250_000_000),
            ("8000bit", 1000),
            ("12.5MB/s", 100 * MBIT),
            ("12.5MBps", 100 * MBIT),
            ("10MiB/s", 10 << 20),
            ("1000B/s", 1000),
        ] {
            assert_eq!(parse_rate(text), Ok(bytes), "{text}");
        }
        for bad in ["fast", "100Xbit", "Mbit", "100Tbit", "12.5XB/s"] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains("is not a rate"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_rate_limits_in_the_message_are_the_ones_checked() {
        // "between 8kbit/s and 800Gbit/s (1kB/s to 100GB/s)": the ends are accepted.
        for ok in ["8kbit/s", "800Gbit/s", "1kB/s", "100GB/s"] {
            assert!(parse_rate(ok).is_ok(), "{ok}");
        }
        for bad in ["7kbit", "801Gbit", "999B/s", "101GB/s", "0"] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains("between 8kbit/s and 800Gbit/s"), "{bad}: {e}");
        }
    }

    #[test]
    fn shares_parse_as_percent_or_fraction() {
        assert_eq!(parse_share("50%").unwrap(), 0.5);
        assert_eq!(parse_share("0.25").unwrap(), 0.25);
        assert!(parse_share("100%").is_err());
        assert!(parse_share("0").is_err());
    }
}
