//! The status page as a browser shows it: two real agents copy content on a
//! loopback subnet, then headless Chromium (Debian's `chromium`, which .ci/run
//! installs) loads each agent's page: the DOM it builds names the job, its state
//! and bytes, and the election; the page's script ran under its
//! Content-Security-Policy (it refreshed the page); a site name holding `<script>`
//! is text, not an element; and a screenshot is a PNG.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::subnet::{agent, publish, slow_origin, Subnet, MIB};
use support::{with_timeout, TestDir};

/// How long one Chromium run may take before `timeout` stops it.
const CHROMIUM_LIMIT: &str = "60";

/// Headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=FILE`),
/// its profile in `profile`, stopped after [`CHROMIUM_LIMIT`] seconds (then
/// killed 5 s later).
fn chromium(profile: &Path, url: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "5", CHROMIUM_LIMIT, "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run timeout(1)")
}

/// The DOM Chromium built from `url` after 5 s of (virtual) time: long enough for
/// the page's script to refresh it twice.
fn dom(t: &TestDir, name: &str, url: &str) -> String {
    let out = chromium(
        &t.subdir(format!("chromium-{name}")),
        url,
        &["--virtual-time-budget=5000", "--dump-dom"],
    );
    assert!(
        out.status.success(),
        "chromium --dump-dom {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn chromium_shows_the_job_the_election_and_the_bytes_of_each_agent() {
    let version = Command::new("chromium").arg("--version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "chromium is needed (Debian package `chromium`; .ci/run installs it)"
    );
    with_timeout(Duration::from_secs(240), || {
        let t = TestDir::new();
        let size = publish(&t, 4 * MIB);
        let nginx = slow_origin(&t, 32 * MIB);
        let settings = [
            agent(
                &t,
                0,
                "P2PEnabled = 0x28\nSite = \"branch <script>alert(1)</script>\"",
            ),
            agent(&t, 1, "P2PEnabled = 0x28\nSite = \"branch 1\""),
        ];
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        let net = Subnet::start(&t, &nginx.url(), &refs);
        net.submit_all(&t, 0..2);
        net.wait_done(&[0, 1], Duration::from_secs(120));
        let master = net.master().expect("a master");
        let pages: Vec<String> = (0..2)
            .map(|i| {
                let url = net.status(i)["metrics"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(url.ends_with("/metrics"), "agent {i}: {url:?}");
                url.trim_end_matches("metrics").to_string()
            })
            .collect();

        for (i, url) in pages.iter().enumerate() {
            let dom = dom(&t, &i.to_string(), url);
            let job = net.job(i);
            let from = if i == master {
                "from_origin"
            } else {
                "from_peers"
            };
            // The job: content, state, full bar, and its bytes (exact on hover).
            for text in [
                "<td>OSD00001/1</td><td class=\"state-done\">done</td>".to_string(),
                "style=\"width:100.0%\"".to_string(),
                format!("title=\"{size} bytes\""),
            ] {
                assert!(dom.contains(&text), "agent {i}: {text} in:\n{dom}");
            }
            assert_eq!(job[format!("bytes_{from}")], size, "agent {i}: {job}");
            // The script ran (the policy let it) and swapped in fresh bodies.
            assert!(dom.contains("data-refreshes=\""), "agent {i}: {dom}");
            assert!(dom.contains("id=\"jobs\""), "agent {i}: {dom}");
        }
        let master_dom = dom(&t, "master", &pages[master]);
        assert!(
            master_dom.contains("<td>OSD00001/1</td><td class=\"role-master\">master</td>"),
            "{master_dom}"
        );
        // A site name holding markup is text: the only script is the page's own.
        let first = dom(&t, "escape", &pages[0]);
        assert!(
            first.contains("branch &lt;script&gt;alert(1)&lt;/script&gt;"),
            "{first}"
        );
        assert_eq!(first.matches("<script").count(), 1, "{first}");

        // A screenshot: a PNG, not empty.
        let png = t.join("status.png");
        let out = chromium(
            &t.subdir("chromium-shot"),
            &pages[master],
            &[&format!("--screenshot={}", png.display())],
        );
        assert!(
            out.status.success(),
            "chromium --screenshot: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&png).expect("the screenshot file");
        assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    });
}
