//! `contentdist lab`: a branch office simulated on loopback (see
//! `contentdist::lab::office`), printed as a table.

use clap::Args;
use contentdist::lab::office::{run, LabOptions, LabReport};

use crate::exit::Exit;
use crate::format;

/// `contentdist lab [--agents N] [--size SIZE] [--wan-rate RATE] [--kill-master-at P%]`
#[derive(Args, Debug)]
pub struct LabArgs {
    /// Number of agents (hosts of the office), 1..=200
    #[arg(long, alias = "peers", default_value_t = 8)]
    agents: usize,

    /// Size of the generated content: bytes, or with K/M/G (binary: 64M = 64 MiB)
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    size: u64,

    /// WAN link rate to the origin: Mbit/s, or with a unit (100Mbit, 2Gbit, 500kbit)
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

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 64M, 1G, 1048576)"))?;
    if n <= 0.0 || n * mult as f64 > (1u64 << 40) as f64 {
        return Err(format!("size '{s}' must be above 0 and at most 1T"));
    }
    Ok((n * mult as f64) as u64)
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("/s").trim_end_matches("ps");
    let (num, bits) = if let Some(n) = t.strip_suffix("gbit") {
        (n, 1e9)
    } else if let Some(n) = t.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix("kbit") {
        (n, 1e3)
    } else {
        (t, 1e6)
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a rate (examples: 100Mbit, 2Gbit, 500kbit, 20)"))?;
    let bytes = n * bits / 8.0;
    if !(1000.0..=1e11).contains(&bytes) {
        return Err(format!("rate '{s}' must be between 8kbit and 800Gbit"));
    }
    Ok(bytes as u64)
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rates_and_shares_parse_like_an_administrator_writes_them() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert_eq!(parse_rate("100Mbit").unwrap(), 12_500_000);
        assert_eq!(parse_rate("20").unwrap(), 2_500_000);
        assert_eq!(parse_rate("2Gbit/s").unwrap(), 250_000_000);
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_share("50%").unwrap(), 0.5);
        assert_eq!(parse_share("0.25").unwrap(), 0.25);
        assert!(parse_share("100%").is_err());
        assert!(parse_share("0").is_err());
    }
}
