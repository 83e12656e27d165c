//! `contentdist status`: the agent's status (listeners, certificates, counters,
//! elections) in readable form.

use clap::Args;
use serde_json::Value;

use crate::exit::Exit;
use crate::settings::SettingsArgs;

/// `contentdist status [--json] [--p2p-account]`
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print the status as JSON
    #[arg(long)]
    json: bool,
    /// Print only the P2P account peers use with this agent, with its password
    /// (root only; a new password at every start of the agent), for checking it by
    /// hand: `curl -u USER:PASSWORD`, `smbclient -U USER%PASSWORD`
    #[arg(long)]
    p2p_account: bool,
}

/// Ask the agent for its status and print it.
pub async fn run(args: StatusArgs, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    if args.p2p_account {
        let account = settings.client()?.p2p_account().await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&account)?);
        } else {
            println!("user: {}\npassword: {}", account.user, account.password);
        }
        return Ok(Exit::Success);
    }
    let status = serde_json::to_value(settings.client()?.status().await?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        let mut out = String::new();
        render(&status, 0, &mut out);
        print!("{out}");
    }
    Ok(Exit::Success)
}

/// Indented `key: value` lines (keys sorted, as serde_json keeps them); lists of plain values on one line, lists of objects
/// as `-` items. Any JSON renders, so a field added to the status shows without a change here.
fn render(value: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                // Commands to copy and paste (firewall.blocked_by): one per line.
                if let (true, Some(lines)) = (key == "commands", value.as_array()) {
                    out.push_str(&format!("{pad}{key}:\n"));
                    for line in lines {
                        out.push_str(&format!("{pad}  {}\n", inline(line)));
                    }
                    continue;
                }
                if is_scalar_or_flat(value) {
                    out.push_str(&format!("{pad}{key}: {}\n", inline(value)));
                } else {
                    out.push_str(&format!("{pad}{key}:\n"));
                    render(value, indent + 1, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_scalar_or_flat(item) {
                    out.push_str(&format!("{pad}- {}\n", inline(item)));
                } else {
                    out.push_str(&format!("{pad}-\n"));
                    render(item, indent + 1, out);
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", inline(scalar))),
    }
}

/// True for values printed on the key's line: scalars, empty containers, and lists
/// of scalars.
fn is_scalar_or_flat(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.iter().all(|i| !i.is_object() && !i.is_array()),
        _ => true,
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        Value::Array(items) if items.is_empty() => "(none)".to_string(),
        Value::Array(items) => items.iter().map(inline).collect::<Vec<_>>().join(", "),
        Value::Object(_) => "(none)".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_renders_as_indented_key_value_lines() {
        let status = json!({
            "node": "host-a",
            "listeners": ["http://0.0.0.0:5080", "https://0.0.0.0:5443"],
            "certificates": [{"subject": "CN=host-a", "expires": null}],
            "counters": {"bytes_from_origin": 10, "jobs": {}},
            "elections": [],
        });
        let mut out = String::new();
        render(&status, 0, &mut out);
        assert_eq!(
            out,
            "certificates:\n\
             \x20 -\n\
             \x20   expires: -\n\
             \x20   subject: CN=host-a\n\
             counters:\n\
             \x20 bytes_from_origin: 10\n\
             \x20 jobs: (none)\n\
             elections: (none)\n\
             listeners: http://0.0.0.0:5080, https://0.0.0.0:5443\n\
             node: host-a\n"
        );
    }

    #[test]
    fn commands_to_open_ports_are_printed_one_per_line() {
        let status = json!({"firewall": {"blocked_by": [{
            "chain": "inet filter input",
            "commands": ["nft add rule inet filter input tcp dport 5080 accept",
                         "nft add rule inet filter input udp dport 1779 accept"],
            "ports": ["5080/tcp", "1779/udp"],
        }]}});
        let mut out = String::new();
        render(&status, 0, &mut out);
        assert_eq!(
            out,
            "firewall:\n\
             \x20 blocked_by:\n\
             \x20   -\n\
             \x20     chain: inet filter input\n\
             \x20     commands:\n\
             \x20       nft add rule inet filter input tcp dport 5080 accept\n\
             \x20       nft add rule inet filter input udp dport 1779 accept\n\
             \x20     ports: 5080/tcp, 1779/udp\n"
        );
    }
}
