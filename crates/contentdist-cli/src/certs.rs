//! `contentdist certs`: the certificate store as the agent reads it, and which
//! certificates the server- and client-authentication rules choose (and why not
//! the others).

use clap::Args;

use crate::exit::Exit;
use crate::settings::SettingsArgs;

/// `contentdist certs [--json]`
#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// Read the store named by the settings and print the report.
pub fn run(args: CertsArgs, settings: &SettingsArgs) -> anyhow::Result<Exit> {
    let config = settings.load()?.config;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let r = contentdist::certstore::report(&config, now);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(Exit::Success);
    }
    println!("store: {}", r.store.display());
    println!("names: host {}, FQDN {}", r.host_name, r.fqdn);
    if !r.cert_issuer.is_empty() {
        println!("CertIssuer: {}", r.cert_issuer.join(", "));
    }
    if !r.cert_subject.is_empty() {
        println!("CertSubject: {}", r.cert_subject.join(", "));
    }
    if let Some(t) = &r.platform_thumbprint {
        let applies = if r.cert_issuer.is_empty() && r.cert_subject.is_empty() {
            "chosen as client certificate when usable"
        } else {
            "ignored: CertIssuer or CertSubject is set"
        };
        println!("[Platform] thumbprint: {t} ({applies})");
    }
    let mode = if r.pki_server_certificate {
        "P2PSslSettings 0x1: the server certificate comes from my/"
    } else {
        "P2PSslSettings without 0x1: the agent uses a self-signed server certificate; my/ is shown as the rules would choose"
    };
    println!("{mode}");
    let client_mode = if r.client_certificate_authentication {
        "P2PSslSettings 0x2: peers present a client certificate from my/ to masters"
    } else {
        "P2PSslSettings without 0x2: peers present no client certificate; my/ is shown as the rules would choose"
    };
    println!("{client_mode}");
    println!(
        "server authentication: {}",
        r.server_choice
            .as_deref()
            .unwrap_or("no certificate qualifies")
    );
    let no_client = if r.client_certificate_authentication {
        "no certificate is usable: download jobs fail with 0x209A (ERROR_CLIENT_CERT_MISSING)"
    } else {
        "no certificate is usable"
    };
    println!(
        "client authentication: {}",
        r.client_choice.as_deref().unwrap_or(no_client)
    );
    println!("\nmy/ ({}):", r.my.len());
    for c in &r.my {
        println!("  {}  {}", c.thumbprint, c.file.display());
        println!(
            "    subject {}; issuer {}{}",
            c.subject,
            c.issuer,
            if c.self_signed { " (self-signed)" } else { "" }
        );
        println!(
            "    valid {} to {}; usage:{}{}",
            c.not_before,
            c.not_after,
            if c.server_auth { " server" } else { "" },
            if c.client_auth { " client" } else { "" }
        );
        println!("    server authentication: {}", c.server_authentication);
        println!("    client authentication: {}", c.client_authentication);
    }
    println!("\ntrusted/ ({}):", r.trusted.len());
    for t in &r.trusted {
        println!(
            "  {}  {}  until {}  {}",
            t.thumbprint,
            t.subject,
            t.not_after,
            t.file.display()
        );
    }
    if !r.skipped.is_empty() {
        println!("\nskipped ({}):", r.skipped.len());
        for p in &r.skipped {
            println!("  {}: {}", p.file.display(), p.reason);
        }
    }
    Ok(Exit::Success)
}
