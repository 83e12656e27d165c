//! The status page (`GET /` on the metrics listener): one agent at a glance for an
//! administrator with a browser, where `/metrics` is for Prometheus.
//!
//! Rendering is a pure function from a plain [`StatusPage`] to HTML, so it is
//! tested without an agent; the agent fills the struct at each request (as it fills
//! a [`super::Sample`] at each scrape). Content ids, versions, failure messages,
//! certificate subjects and listener URLs come from users or from peers: every one
//! of them is HTML-escaped, and the page's only script is fixed text whose hash the
//! Content-Security-Policy names, so an injected `<script>` could not run even if
//! escaping failed. The script re-fetches the page every 2 s and swaps its body in:
//! the server's HTML stays the only renderer (`/status.json` serves the same struct
//! to machines).

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use sha2::Digest as _;

/// What the status page shows: plain data, filled by the agent at each request.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatusPage {
    /// contentdist's version.
    pub version: String,
    /// `Site`.
    pub site: String,
    /// The host name in force (`HostName`, else the system's).
    pub host: String,
    /// The FQDN in force (`Fqdn`, else the resolver's).
    pub fqdn: String,
    /// What the agent listens on, in words (`http://…/content/`, `udp://…`).
    pub listeners: Vec<String>,
    /// When the agent started, Unix seconds.
    pub started_unix: f64,
    /// When this page was made, Unix seconds (uptime is the difference).
    pub now_unix: f64,
    /// Body bytes received from the origin (over the WAN) since the start.
    pub bytes_from_origin: u64,
    /// Body bytes received from peers (over the LAN) since the start.
    pub bytes_from_peers: u64,
    /// Content bytes this agent's peer-copy server sent since the start.
    pub bytes_served: u64,
    /// The elections this agent takes part in.
    pub elections: Vec<PageElection>,
    /// The jobs, newest first.
    pub jobs: Vec<PageJob>,
    /// The HTTPS server certificate and the client certificate.
    pub certificates: Vec<PageCertificate>,
}

/// This agent's part in one content's election.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PageElection {
    /// `ID/VERSION`.
    pub content: String,
    /// `master`, `following`, `electing` or `idle`.
    pub role: String,
    /// The master's address, when there is one.
    pub master: Option<String>,
    /// The master's term, else the highest seen.
    pub term: u64,
    /// This agent's share of the content, in percent.
    pub share_percent: f64,
}

/// One job.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PageJob {
    /// The job's number.
    pub id: u64,
    /// `ID/VERSION`.
    pub content: String,
    /// `queued`, `downloading`, `done`, `failed`, ...
    pub state: String,
    /// Size of the content (0 until the manifest is known).
    pub bytes_total: u64,
    /// Bytes verified in the cache so far.
    pub bytes_verified: u64,
    /// Bytes this job fetched from the origin.
    pub bytes_from_origin: u64,
    /// Bytes this job copied from peers.
    pub bytes_from_peers: u64,
    /// The catalogue code (`0x205D`) when the job failed.
    pub code: Option<String>,
    /// The failure in words.
    pub message: Option<String>,
}

impl PageJob {
    /// Bytes verified against the total, 0 to 100 (0 while the total is unknown).
    pub fn percent(&self) -> f64 {
        percent(self.bytes_verified, self.bytes_total)
    }
}

/// One certificate of the agent, or why it has none.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PageCertificate {
    /// `HTTPS server` or `client`.
    pub usage: String,
    /// `bound`, `chosen`, `missing`, `unavailable`, `unknown` or `off`.
    pub state: String,
    /// `PKI`, `self-signed`, or where a client certificate came from.
    pub kind: Option<String>,
    /// The subject.
    pub subject: Option<String>,
    /// SHA-1, upper-case hex.
    pub thumbprint: Option<String>,
    /// Valid until, UTC, in words.
    pub not_after: Option<String>,
    /// Valid until, Unix seconds.
    pub not_after_unix: Option<i64>,
    /// Why there is none (`missing`, `unavailable`, `off`).
    pub reason: Option<String>,
}

/// Where a request for the page gets its [`StatusPage`].
pub type StatusPageFn = Arc<dyn Fn() -> StatusPage + Send + Sync>;

/// The page's only script: every 2 s, fetch the page again and swap the new body
/// in (the server's HTML is the only renderer), counting the swaps in the `html`
/// element's `data-refreshes` (a browser test reads it); when the agent does not
/// answer, show a notice and keep the last numbers.
const SCRIPT: &str = "var n=0;setInterval(function(){fetch(location.pathname,{cache:\"no-store\"})\
.then(function(r){if(!r.ok)throw r.status;return r.text()})\
.then(function(t){document.body.replaceWith(new DOMParser().parseFromString(t,\"text/html\").body);\
document.documentElement.setAttribute(\"data-refreshes\",++n)})\
.catch(function(){var s=document.getElementById(\"stale\");if(s)s.hidden=false})},2000);";

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em 2em;color:#1d2433;background:#f6f7f9}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
.sub{color:#5b6475;margin:0 0 1em}\
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002}\
th,td{padding:.3em .7em;text-align:left;border-bottom:1px solid #e3e6ea;vertical-align:top}\
th{background:#eef0f3;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.kv th{background:none;font-weight:normal;color:#5b6475}\
.bar{display:inline-block;width:12em;height:.9em;background:#e3e6ea;border-radius:3px;overflow:hidden;vertical-align:middle}\
.bar span{display:block;float:left;height:100%}\
.fill{background:#3b82f6}.origin{background:#f59e0b}.peers{background:#10b981}\
.state-done{color:#047857}.state-failed{color:#b91c1c;font-weight:600}.state-cancelled{color:#6b7280}\
.role-master{color:#1d4ed8;font-weight:600}\
.err td{color:#b91c1c;border-bottom:1px solid #e3e6ea}\
.none,.why td{color:#6b7280}\
.key span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em;border-radius:2px}\
#stale{background:#fef3c7;padding:.4em .8em;border:1px solid #f59e0b}";

/// The `Content-Security-Policy` the page is served with: no script but the
/// page's own (by its hash), nothing loaded from anywhere, fetches to this
/// listener only.
pub fn content_security_policy() -> String {
    let hash = sha2::Sha256::digest(SCRIPT.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(hash);
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// `text` with the five characters HTML gives a meaning escaped: safe in element
/// content and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

use crate::util::human_bytes as bytes;

/// A byte count as a table cell: the unit for the eye, the exact count on hover.
fn bytes_cell(n: u64) -> String {
    format!("<td class=\"num\" title=\"{n} bytes\">{}</td>", bytes(n))
}

/// `part` of `whole` in percent, 0 to 100 (0 when `whole` is 0).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 100.0 / whole as f64).clamp(0.0, 100.0)
    }
}

/// A duration in words: `45 s`, `12 min 05 s`, `3 h 07 min`, `2 d 04 h`.
fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {:02} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A horizontal bar filled to `percent` (a number we format: nothing of the
/// user's goes into the style).
fn bar(percent: f64) -> String {
    format!(
        "<span class=\"bar\"><span class=\"fill\" style=\"width:{:.1}%\"></span></span>",
        percent.clamp(0.0, 100.0)
    )
}

/// `value` escaped, or a grey dash.
fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => escape(v),
        _ => "<span class=\"none\">-</span>".to_string(),
    }
}

/// The page's HTML.
pub fn render_page(p: &StatusPage) -> String {
    let mut h = String::with_capacity(8192);
    let title = format!("contentdist {} on {}", p.site, p.host);
    // `write!` to a String cannot fail.
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style>\
         <noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\
         <script>{SCRIPT}</script></head>\n<body>",
        escape(&title)
    );
    let _ = write!(
        h,
        "<p id=\"stale\" hidden>The agent does not answer: these are the last numbers it gave.</p>\
         <h1>contentdist agent <span class=\"host\">{}</span></h1>\
         <p class=\"sub\">refreshed every 2 s; <a href=\"/metrics\">/metrics</a> \
         <a href=\"/status.json\">/status.json</a></p>",
        escape(&p.host),
    );
    agent_section(&mut h, p);
    transfer_section(&mut h, p);
    elections_section(&mut h, p);
    jobs_section(&mut h, p);
    certificates_section(&mut h, p);
    h.push_str("\n</body></html>\n");
    h
}

fn agent_section(h: &mut String, p: &StatusPage) {
    let listeners = if p.listeners.is_empty() {
        or_dash(None)
    } else {
        p.listeners
            .iter()
            .map(|l| escape(l))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    // The FQDN only where it says more than the host name.
    let host = if p.fqdn.is_empty() || p.fqdn == p.host {
        escape(&p.host)
    } else {
        format!("{} ({})", escape(&p.host), escape(&p.fqdn))
    };
    let _ = write!(
        h,
        "<h2>Agent</h2><table class=\"kv\" id=\"agent\">\
         <tr><th>version</th><td>{}</td></tr>\
         <tr><th>site</th><td>{}</td></tr>\
         <tr><th>host</th><td>{}</td></tr>\
         <tr><th>listeners</th><td>{listeners}</td></tr>\
         <tr><th>uptime</th><td>{}</td></tr></table>",
        escape(&p.version),
        or_dash(Some(&p.site)),
        host,
        duration(p.now_unix - p.started_unix),
    );
}

fn transfer_section(h: &mut String, p: &StatusPage) {
    let received = p.bytes_from_origin.saturating_add(p.bytes_from_peers);
    let origin = percent(p.bytes_from_origin, received);
    let peers = if received == 0 { 0.0 } else { 100.0 - origin };
    let _ = write!(
        h,
        "<h2>Bytes received: WAN (origin) against peers</h2><table class=\"kv\" id=\"bytes\">\
         <tr><th>from the origin (WAN)</th>{}<td>{origin:.1}%</td></tr>\
         <tr><th>from peers (LAN)</th>{}<td>{peers:.1}%</td></tr>\
         <tr><th>served to peers</th>{}<td></td></tr>\
         <tr><th></th><td colspan=\"2\"><span class=\"bar\" style=\"width:24em\">\
         <span class=\"origin\" style=\"width:{origin:.1}%\"></span>\
         <span class=\"peers\" style=\"width:{peers:.1}%\"></span></span>\
         <span class=\"key\"><span class=\"origin\"></span>origin<span class=\"peers\"></span>peers</span>\
         </td></tr></table>",
        bytes_cell(p.bytes_from_origin),
        bytes_cell(p.bytes_from_peers),
        bytes_cell(p.bytes_served),
    );
}

fn elections_section(h: &mut String, p: &StatusPage) {
    h.push_str("<h2>Elections</h2>");
    if p.elections.is_empty() {
        h.push_str(
            "<p class=\"none\" id=\"elections\">No election (none running, or peer copy off).</p>",
        );
        return;
    }
    h.push_str(
        "<table id=\"elections\"><tr><th>content</th><th>role</th><th>master</th>\
         <th>term</th><th>share</th></tr>",
    );
    for e in &p.elections {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"role-{}\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td>{} {:.1}%</td></tr>",
            escape(&e.content),
            escape(&e.role),
            escape(&e.role),
            or_dash(e.master.as_deref()),
            e.term,
            bar(e.share_percent),
            e.share_percent.clamp(0.0, 100.0)
        );
    }
    h.push_str("</table>");
}

fn jobs_section(h: &mut String, p: &StatusPage) {
    h.push_str("<h2>Jobs</h2>");
    if p.jobs.is_empty() {
        h.push_str("<p class=\"none\" id=\"jobs\">No job.</p>");
        return;
    }
    h.push_str(
        "<table id=\"jobs\"><tr><th>id</th><th>content</th><th>state</th><th>progress</th>\
         <th>verified</th><th>total</th><th>from origin</th><th>from peers</th></tr>",
    );
    for j in &p.jobs {
        let _ = write!(
            h,
            "<tr id=\"job-{}\"><td class=\"num\">{}</td><td>{}</td><td class=\"state-{}\">{}</td>\
             <td>{} {:.0}%</td>{}{}{}{}</tr>",
            j.id,
            j.id,
            escape(&j.content),
            escape(&j.state),
            escape(&j.state),
            bar(j.percent()),
            // Floor, so 100% shows only when everything is there.
            j.percent().floor(),
            bytes_cell(j.bytes_verified),
            bytes_cell(j.bytes_total),
            bytes_cell(j.bytes_from_origin),
            bytes_cell(j.bytes_from_peers),
        );
        if j.code.is_some() || j.message.is_some() {
            let _ = write!(
                h,
                "<tr class=\"err\"><td></td><td colspan=\"7\">{} {}</td></tr>",
                or_dash(j.code.as_deref()),
                or_dash(j.message.as_deref())
            );
        }
    }
    h.push_str("</table>");
}

fn certificates_section(h: &mut String, p: &StatusPage) {
    h.push_str("<h2>Certificates</h2>");
    if p.certificates.is_empty() {
        h.push_str("<p class=\"none\" id=\"certificates\">None.</p>");
        return;
    }
    h.push_str(
        "<table id=\"certificates\"><tr><th>use</th><th>state</th><th>kind</th><th>subject</th>\
         <th>thumbprint</th><th>expires</th></tr>",
    );
    for c in &p.certificates {
        let expires = match (c.not_after.as_deref(), c.not_after_unix) {
            (Some(at), Some(unix)) => {
                let days = (unix as f64 - p.now_unix) / 86_400.0;
                let left = if days < 0.0 {
                    "expired".to_string()
                } else {
                    format!("in {days:.0} days")
                };
                format!("{} ({left})", escape(at))
            }
            (at, _) => or_dash(at),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{expires}</td></tr>",
            escape(&c.usage),
            escape(&c.state),
            or_dash(c.kind.as_deref()),
            or_dash(c.subject.as_deref()),
            or_dash(c.thumbprint.as_deref()),
        );
        if let Some(reason) = &c.reason {
            let _ = write!(
                h,
                "<tr class=\"why\"><td></td><td colspan=\"5\">{}</td></tr>",
                escape(reason)
            );
        }
    }
    h.push_str("</table>");
}

/// The page's data as JSON (`/status.json`).
pub fn render_json(p: &StatusPage) -> String {
    serde_json::to_string_pretty(p).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> StatusPage {
        StatusPage {
            version: "0.1.0".into(),
            site: "Branch 12".into(),
            host: "dp01".into(),
            fqdn: "dp01.branch.example".into(),
            listeners: vec![
                "http://10.1.2.3:1080/content/".into(),
                "udp://10.1.2.3:1779".into(),
            ],
            started_unix: 1_796_000_000.0,
            now_unix: 1_796_000_000.0 + 3.0 * 3600.0 + 7.0 * 60.0,
            bytes_from_origin: 1 << 20,
            bytes_from_peers: 3 << 20,
            bytes_served: 5 << 20,
            elections: vec![PageElection {
                content: "PKG00001/3".into(),
                role: "master".into(),
                master: Some("10.1.2.3:1080".into()),
                term: 4,
                share_percent: 62.5,
            }],
            jobs: vec![
                PageJob {
                    id: 2,
                    content: "PKG00001/3".into(),
                    state: "downloading".into(),
                    bytes_total: 4 << 20,
                    bytes_verified: 1 << 20,
                    bytes_from_origin: 1 << 20,
                    bytes_from_peers: 0,
                    ..PageJob::default()
                },
                PageJob {
                    id: 1,
                    content: "PKG00009/1".into(),
                    state: "failed".into(),
                    code: Some("0x205D".into()),
                    message: Some("not found at the origin".into()),
                    ..PageJob::default()
                },
            ],
            certificates: vec![
                PageCertificate {
                    usage: "HTTPS server".into(),
                    state: "bound".into(),
                    kind: Some("self-signed".into()),
                    subject: Some("CN=dp01".into()),
                    thumbprint: Some("AB12CD".into()),
                    not_after: Some("2027-12-01 00:00:00 UTC".into()),
                    not_after_unix: Some(1_796_000_000 + 30 * 86_400),
                    reason: None,
                },
                PageCertificate {
                    usage: "client".into(),
                    state: "missing".into(),
                    reason: Some("no certificate in my/ allows Client Authentication".into()),
                    ..PageCertificate::default()
                },
            ],
        }
    }

    /// The text of the element with `id` up to its end tag (`</table>`, `</p>`).
    fn section<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id} in {html}"));
        let rest = &html[start..];
        let end = rest.find("</table>").or_else(|| rest.find("</p>")).unwrap();
        &rest[..end]
    }

    #[test]
    fn the_page_shows_the_agent_its_elections_jobs_bytes_and_certificates() {
        let html = render_page(&page());
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        let agent = section(&html, "agent");
        for text in [
            "0.1.0",
            "Branch 12",
            "dp01 (dp01.branch.example)",
            "http://10.1.2.3:1080/content/<br>udp://10.1.2.3:1779",
            "3 h 07 min",
        ] {
            assert!(agent.contains(text), "{text} in {agent}");
        }
        let elections = section(&html, "elections");
        for text in [
            "PKG00001/3",
            "class=\"role-master\">master",
            "10.1.2.3:1080",
            ">4<",
            "width:62.5%",
            "62.5%",
        ] {
            assert!(elections.contains(text), "{text} in {elections}");
        }
        let jobs = section(&html, "jobs");
        for text in [
            "<tr id=\"job-2\">",
            "PKG00001/3",
            "downloading",
            "width:25.0%",
            " 25%",
            "title=\"1048576 bytes\">1.0 MiB",
            "title=\"4194304 bytes\">4.0 MiB",
            "class=\"state-failed\">failed",
            "0x205D not found at the origin",
        ] {
            assert!(jobs.contains(text), "{text} in {jobs}");
        }
        // Newest first, as given.
        assert!(jobs.find("job-2").unwrap() < jobs.find("job-1").unwrap());
        let bytes = section(&html, "bytes");
        for text in [
            "title=\"1048576 bytes\">1.0 MiB</td><td>25.0%",
            "title=\"3145728 bytes\">3.0 MiB</td><td>75.0%",
            "title=\"5242880 bytes\">5.0 MiB",
            "class=\"origin\" style=\"width:25.0%\"",
            "class=\"peers\" style=\"width:75.0%\"",
        ] {
            assert!(bytes.contains(text), "{text} in {bytes}");
        }
        let certs = section(&html, "certificates");
        for text in [
            "HTTPS server",
            "bound",
            "self-signed",
            "CN=dp01",
            "<code>AB12CD</code>",
            "2027-12-01 00:00:00 UTC (in 30 days)",
            "missing",
            "no certificate in my/ allows Client Authentication",
        ] {
            assert!(certs.contains(text), "{text} in {certs}");
        }
    }

    #[test]
    fn what_users_and_peers_wrote_is_escaped() {
        let evil = "<script>alert(\"x\")</script>&'";
        let mut p = page();
        p.site = evil.into();
        p.listeners = vec![evil.into()];
        p.elections[0].content = evil.into();
        p.elections[0].master = Some(evil.into());
        p.jobs[0].content = evil.into();
        p.jobs[1].message = Some(evil.into());
        p.jobs[1].state = evil.into();
        p.certificates[0].subject = Some(evil.into());
        p.certificates[1].reason = Some(evil.into());
        let html = render_page(&p);
        let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;";
        // Every place holds the escaped text (the title too, where the site is).
        assert!(html.matches(escaped).count() >= 10, "{html}");
        // The only script element is the page's own, in the head.
        assert_eq!(html.matches("<script>").count(), 1, "{html}");
        assert_eq!(html.matches("</script>").count(), 1, "{html}");
        assert!(html.find("<script>").unwrap() < html.find("</head>").unwrap());
        assert!(!html.contains("alert(\"x\")"), "{html}");
        // In a class attribute too: no quote gets out.
        assert!(html.contains("class=\"state-&lt;script&gt;"), "{html}");
    }

    #[test]
    fn empty_sections_say_so_and_nothing_divides_by_zero() {
        let p = StatusPage {
            version: "0.1.0".into(),
            host: "dp01".into(),
            jobs: vec![PageJob {
                id: 1,
                content: "PKG00001/3".into(),
                state: "queued".into(),
                ..PageJob::default()
            }],
            ..StatusPage::default()
        };
        let html = render_page(&p);
        assert!(html.contains("No election"), "{html}");
        assert!(html.contains("id=\"certificates\">None."), "{html}");
        assert!(section(&html, "jobs").contains("width:0.0%"), "{html}");
        assert!(!html.contains("NaN"), "{html}");
        let bytes = section(&html, "bytes");
        assert!(bytes.contains("0 B</td><td>0.0%"), "{bytes}");
    }

    #[test]
    fn the_policy_allows_exactly_the_page_script() {
        let csp = content_security_policy();
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(SCRIPT.as_bytes()));
        assert!(
            csp.contains(&format!("script-src 'sha256-{hash}'")),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        // The script in the page is byte for byte the hashed text.
        assert!(render_page(&page()).contains(&format!("<script>{SCRIPT}</script>")));
    }

    #[test]
    fn the_json_has_the_same_data() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&page())).unwrap();
        assert_eq!(v["site"], "Branch 12");
        assert_eq!(v["jobs"][0]["content"], "PKG00001/3");
        assert_eq!(v["jobs"][0]["bytes_verified"], 1 << 20);
        assert_eq!(v["jobs"][1]["code"], "0x205D");
        assert_eq!(v["elections"][0]["role"], "master");
        assert_eq!(v["certificates"][1]["state"], "missing");
        assert_eq!(v["bytes_from_peers"], 3 << 20);
    }

    #[test]
    fn durations_and_sizes_read_as_words() {
        assert_eq!(duration(45.2), "45 s");
        assert_eq!(duration(725.0), "12 min 05 s");
        assert_eq!(duration(2.0 * 86_400.0 + 4.0 * 3600.0), "2 d 04 h");
        assert_eq!(duration(-3.0), "0 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1 << 30), "1.0 GiB");
    }
}
