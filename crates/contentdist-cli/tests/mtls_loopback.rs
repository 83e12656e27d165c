//! Mutual TLS between real agents on 127.0.X.Y (`P2PSslSettings` 0x2 with HTTPS):
//! a master that refuses every kind of bad client certificate at the handshake
//! (checked with curl as a second client), peers that prove themselves with the
//! certificate their rules chose, a job that waits for a certificate (and holds
//! the others, survives a restart, fails with 0x209A, can be cancelled), preboot
//! agents that fail at once or use their boot-image certificate, and an nginx
//! origin that requires client certificates.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::nginx::{ClientAuth, Nginx, NginxOptions, TlsFiles};
use support::pki::{sha1_thumbprint, CertFiles, CertSpec, Pki, PkiOptions};
use support::subnet::{
    agent, curl, install, listener, publish, slow_origin, store, trust, Subnet, MIB,
};
use support::{assert_trees_equal, wait_until, with_timeout, TestDir};

const MACHINE_KEY: &str = "branch-office-machine-key-for-tests";
/// The product's ERROR_CLIENT_CERT_MISSING.
const CLIENT_CERT_MISSING: u64 = 0x209A;
/// The product's secure-channel failure.
const SECURE_FAILURE: u64 = 0x2F8F;
/// `contentdist get`'s exit status for a code in SuccessCodes.
const EXIT_IN_SUCCESS_CODES: i32 = 3;
/// Peer copy over HTTPS with certificate authentication.
const MTLS: &str = "P2PEnabled = 0x40\nP2PSslSettings = 0x2";

/// A store trusting `pki` with a valid client certificate for agent `i`.
fn enrolled(t: &TestDir, pki: &Pki, i: usize) -> CertFiles {
    let s = store(t, i);
    trust(pki, &s);
    let cert = pki.client_cert(&format!("dp0{i}.branch.example"));
    install(&cert, &s, "client");
    cert
}

fn counter(net: &Subnet, i: usize, name: &str) -> u64 {
    let s = net.status(i);
    s["peer_server"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no peer_server.{name}: {s:#}"))
}

/// The job `id` of agent `i`.
fn job(net: &Subnet, i: usize, id: u64) -> serde_json::Value {
    net.agents[i]
        .jobs()
        .into_iter()
        .find(|j| j["id"] == id)
        .unwrap_or_default()
}

/// `contentdist get OSD00001 --no-wait` into `dest` on agent `i`; the job's id.
fn submit(net: &Subnet, i: usize, dest: &Path) -> u64 {
    let d = dest.display().to_string();
    let out = net.agents[i].cli(&[
        "get",
        "OSD00001",
        "--version",
        "1",
        "--no-wait",
        "--json",
        "--dest",
        &d,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no job id: {out:?}"))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The last `n` lines of an agent's log, without the control requests the tests
/// make all the time.
fn excerpt(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("control request method="))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Record a problem and show it at once (a later assertion may end the test
/// before the problems are reported together).
fn note(problems: &mut Vec<String>, problem: String) {
    eprintln!("PROBLEM: {problem}");
    problems.push(problem);
}

/// A CA the branch does not trust.
fn another_ca() -> Pki {
    Pki::create_with(PkiOptions {
        ca_name: "Another Branch CA".into(),
        ..PkiOptions::default()
    })
}

/// The lines of `log` that contain `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn a_master_refuses_every_unfit_client_certificate_at_the_handshake_and_serves_a_fit_one() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        publish(&t, 2 * MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let pki = Pki::create();
        let stranger_ca = another_ca();
        // The master needs a client certificate of its own for its own job, and
        // serves HTTP too (machine accounts; the P2P account does not exist).
        enrolled(&t, &pki, 0);
        let extra = format!(
            "P2PEnabled = 0x60\nP2PSslSettings = 0x2\nAuthenticatedUsers = 1\nMachineKey = \"{MACHINE_KEY}\"\nP2PElectionWeight = 99"
        );
        let net = Subnet::start(&t, &nginx.url(), &[&agent(&t, 0, &extra)]);
        let r = net.agents[0].get("OSD00001", 1, &t.join("dest0"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", net.agents[0].log());
        let s = net.status(0);
        assert_eq!(s["https_certificate"]["kind"], "self-signed", "{s:#}");
        let base = listener(&s, "https");
        let url = format!("{base}/content/OSD00001/1/files/os/boot.cfg");
        let expected = std::fs::read(t.join("src/os/boot.cfg")).unwrap();

        // A certificate from the trusted CA: a range, without any credentials.
        let good = pki.client_cert("curl-host.branch.example");
        let with_cert = |c: &CertFiles, extra: &[&str]| {
            let mut args = vec![
                "-k",
                "--cert",
                c.cert.to_str().unwrap(),
                "--key",
                c.key.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            args.push(&url);
            curl(&args)
        };
        let out = with_cert(&good, &["-r", "100-199"]);
        assert!(out.status.success(), "{out:?}\n{}", net.agents[0].log());
        assert_eq!(out.stdout, &expected[100..200]);
        assert!(wait_until(Duration::from_secs(5), || counter(
            &net,
            0,
            "bytes_served"
        ) >= 100));

        // Refused at the handshake, each for its reason. The case without a
        // certificate goes first: the connection-level line is logged once a
        // minute per source, and it is the only line that case gets.
        let p2p = contentdist::peer::p2p_credentials(&[7; 32]);
        let p2p = format!("{}:{}", p2p.0, p2p.1);
        let expired = pki.expired_client_cert("expired.branch.example");
        let not_yet = pki.not_yet_valid_client_cert("future.branch.example");
        let server_only = pki.wrong_usage_cert("server-only.branch.example");
        let untrusted = stranger_ca.client_cert("stranger.branch.example");
        let self_signed = pki.self_signed_client_cert("self.branch.example");
        type Case<'a> = (&'a str, Option<&'a CertFiles>, &'a str);
        let cases: [Case; 7] = [
            ("no certificate", None, ""),
            ("P2P account, no certificate", None, ""),
            ("expired", Some(&expired), "expired"),
            ("not valid yet", Some(&not_yet), "not valid yet"),
            (
                "server authentication only",
                Some(&server_only),
                "not for client authentication",
            ),
            ("untrusted CA", Some(&untrusted), "not issued by a CA"),
            ("self-signed", Some(&self_signed), "self-signed"),
        ];
        for (what, cert, reason) in cases {
            let served = counter(&net, 0, "bytes_served");
            let failed = counter(&net, 0, "tls_handshakes_failed");
            let out = match (what, cert) {
                ("P2P account, no certificate", _) => curl(&["-k", "-u", &p2p, &url]),
                (_, Some(c)) => with_cert(c, &[]),
                (_, None) => curl(&["-k", &url]),
            };
            assert!(!out.status.success(), "{what}: curl succeeded: {out:?}");
            assert!(out.stdout.is_empty(), "{what}: a body came: {out:?}");
            assert!(
                wait_until(Duration::from_secs(5), || counter(
                    &net,
                    0,
                    "tls_handshakes_failed"
                ) > failed),
                "{what}: tls_handshakes_failed stayed at {failed}: {:#}\ncurl: {out:?}",
                net.status(0)
            );
            assert_eq!(counter(&net, 0, "bytes_served"), served, "{what}");
            if let Some(c) = cert {
                let thumbprint = sha1_thumbprint(&c.cert);
                let log = net.agents[0].log();
                let lines = lines_with(&log, &thumbprint);
                assert!(
                    lines.iter().any(|l| l
                        .contains("peer's client certificate refused at the TLS handshake")
                        && l.contains(reason)
                        && l.contains(&c.name)),
                    "{what}: no refusal line naming {thumbprint}, {} and {reason:?}:\n{}",
                    c.name,
                    lines_with(&log, "refused").join("\n")
                );
            }
        }
        let log = net.agents[0].log();
        assert!(
            log.contains("HTTPS peer-copy connection refused: the TLS handshake failed"),
            "{log}"
        );

        // The HTTP listener: the P2P account does not exist (403); a machine
        // account still works.
        let http_url = format!(
            "{}/content/OSD00001/1/files/os/boot.cfg",
            listener(&net.status(0), "http")
        );
        let refused_before = counter(&net, 0, "requests_refused");
        let out = curl(&[
            "-u",
            &p2p,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &http_url,
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "{out:?}");
        assert!(counter(&net, 0, "requests_refused") > refused_before);
        let (user, password) =
            contentdist::peer::machine_credentials(MACHINE_KEY.as_bytes(), "curl-host");
        let cred = format!("{user}:{password}");
        let out = curl(&["-u", &cred, "-r", "0-99", &http_url]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, &expected[..100]);
        // And the fit certificate still reads after all those refusals.
        let out = with_cert(&good, &["-r", "2000-2999"]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, &expected[2000..3000]);
    });
}

#[test]
fn peers_prove_themselves_with_their_client_certificates_and_one_waits_until_it_has_one() {
    with_timeout(Duration::from_secs(150), || {
        let t = TestDir::new();
        let size = publish(&t, 4 * MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let pki = Pki::create();
        let mut certs: Vec<CertFiles> = (0..3).map(|i| enrolled(&t, &pki, i)).collect();
        // Agent 3 holds only an expired certificate.
        trust(&pki, &store(&t, 3));
        install(
            &pki.expired_client_cert("dp03.branch.example"),
            &store(&t, 3),
            "old",
        );
        let settings = [
            agent(&t, 0, &format!("{MTLS}\nP2PElectionWeight = 99")),
            agent(&t, 1, MTLS),
            agent(&t, 2, MTLS),
            agent(&t, 3, MTLS),
        ];
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        let net = Subnet::start(&t, &nginx.url(), &refs);
        let r = net.agents[0].get("OSD00001", 1, &t.join("dest0"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", net.agents[0].log());

        // Agent 3's job waits, with a deadline a day away (the default 1440 min).
        let waiting = submit(&net, 3, &t.join("dest3"));
        assert!(
            wait_until(Duration::from_secs(15), || job(&net, 3, waiting)["state"]
                == "waiting_for_certificate"),
            "{:#}\n{}",
            job(&net, 3, waiting),
            net.agents[3].log()
        );
        let j = job(&net, 3, waiting);
        let until = j["cert_wait_until_unix"].as_u64().expect("a deadline");
        let left = until.saturating_sub(now_unix());
        assert!((1430 * 60..=1440 * 60).contains(&left), "{j:#}");
        assert_eq!(j["bytes_from_peers"], 0, "{j:#}");
        let s = net.status(3);
        assert_eq!(s["client_certificate"]["state"], "missing", "{s:#}");
        assert!(
            s["client_certificate"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("expired"),
            "{s:#}"
        );

        // Agents 1 and 2 copy from the master meanwhile, over HTTPS.
        net.submit_all(&t, 1..3);
        net.wait_done(&[1, 2], Duration::from_secs(60));
        for (i, cert) in certs.iter().enumerate().skip(1) {
            assert_trees_equal(t.join("src"), t.join(format!("dest{i}")));
            let j = net.job(i);
            assert_eq!(j["bytes_from_peers"].as_u64().unwrap(), size, "{j:#}");
            assert_eq!(j["bytes_from_origin"], 0, "{j:#}");
            let log = net.agents[i].log();
            assert!(log.contains("protocol=HTTPS"), "{log}");
            let s = net.status(i);
            assert_eq!(s["client_certificate"]["state"], "chosen", "{s:#}");
            assert_eq!(
                s["client_certificate"]["thumbprint"],
                sha1_thumbprint(&cert.cert),
                "{s:#}"
            );
            let out = net.agents[i].cli(&["certs", "--json"]);
            let report: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("certs --json: {e}: {out:?}"));
            assert_eq!(
                report["client_choice"],
                sha1_thumbprint(&cert.cert),
                "{report:#}"
            );
        }
        // The master and, with FanOut (on by default), the peers served them
        // with no P2P account: certificates only, between peers too.
        let served: u64 = (0..3)
            .map(|i| {
                net.status(i)["peer_server"]["bytes_served"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        assert!(served >= 2 * size, "served {served} for 2 copies of {size}");

        // A valid certificate dropped into agent 3's store: within the store
        // refresh (5 s), long before the 10-minute retry, the job goes on.
        let fresh = pki.client_cert("dp03.branch.example");
        install(&fresh, &store(&t, 3), "new");
        certs.push(fresh);
        let dropped = Instant::now();
        assert!(
            wait_until(Duration::from_secs(30), || {
                let j = job(&net, 3, waiting);
                assert_ne!(j["state"], "failed", "{j:#}\n{}", net.agents[3].log());
                j["state"] == "done"
            }),
            "not done 30 s after a certificate came: {:#}\n{}",
            job(&net, 3, waiting),
            net.agents[3].log()
        );
        let j = job(&net, 3, waiting);
        assert_eq!(j["bytes_from_peers"].as_u64().unwrap(), size, "{j:#}");
        assert!(j.get("cert_wait_until_unix").is_none(), "{j:#}");
        assert_trees_equal(t.join("src"), t.join("dest3"));
        let s = net.status(3);
        assert_eq!(
            s["client_certificate"]["thumbprint"],
            sha1_thumbprint(&certs[3].cert),
            "{s:#}"
        );
        eprintln!(
            "agent 3 done {:?} after its certificate came",
            dropped.elapsed()
        );
    });
}

#[test]
fn a_peer_refused_at_the_handshake_names_the_certificate_it_offered_and_gets_nothing() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        publish(&t, 2 * MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let pki = Pki::create();
        let stranger_ca = another_ca();
        enrolled(&t, &pki, 0);
        // Agent 1 trusts the branch CA but holds a client certificate of another
        // one: usable by its own rules, refused by the master's.
        trust(&pki, &store(&t, 1));
        let stranger = stranger_ca.client_cert("dp01.branch.example");
        install(&stranger, &store(&t, 1), "client");
        let settings = [
            agent(&t, 0, &format!("{MTLS}\nP2PElectionWeight = 99")),
            agent(&t, 1, MTLS),
        ];
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        let net = Subnet::start(&t, &nginx.url(), &refs);
        let r = net.agents[0].get("OSD00001", 1, &t.join("dest0"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", net.agents[0].log());
        let served = counter(&net, 0, "bytes_served");

        let thumbprint = sha1_thumbprint(&stranger.cert);
        let id = submit(&net, 1, &t.join("dest1"));
        let refused = |l: &&str| {
            l.contains("peer copy over HTTPS failed")
                && l.contains(&format!("client_certificate={thumbprint}"))
                && l.contains("code=0x2F8F")
        };
        assert!(
            wait_until(Duration::from_secs(30), || net.agents[1]
                .log()
                .lines()
                .any(|l| refused(&l))),
            "no line naming the offered certificate {thumbprint} with 0x2F8F:\n{}\njob: {:#}",
            excerpt(&net.agents[1].log(), 40),
            job(&net, 1, id)
        );
        let log = net.agents[0].log();
        assert!(
            lines_with(&log, &thumbprint)
                .iter()
                .any(|l| l.contains("peer's client certificate refused at the TLS handshake")),
            "the master names no refused {thumbprint}:\n{}",
            lines_with(&log, "refused").join("\n")
        );
        assert_eq!(counter(&net, 0, "bytes_served"), served);
        assert_eq!(job(&net, 1, id)["bytes_from_peers"], 0);
    });
}

#[test]
fn preboot_agents_fail_at_once_without_a_certificate_and_copy_with_the_boot_image_one() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        let size = publish(&t, 2 * MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let pki = Pki::create();
        enrolled(&t, &pki, 0);
        // Agent 1: preboot, an empty store. Agent 2: preboot, the boot image's
        // PKCS#12 certificate (password beside it) and an empty store.
        trust(&pki, &store(&t, 1));
        trust(&pki, &store(&t, 2));
        let boot = pki.client_cert("minint-boot.branch.example");
        let p12 = t.join("bootimage/client.p12");
        std::fs::create_dir_all(p12.parent().unwrap()).unwrap();
        std::fs::copy(pki.pkcs12(&boot, "winpe-secret"), &p12).unwrap();
        std::fs::write(p12.with_extension("pass"), "winpe-secret\n").unwrap();
        let settings = [
            agent(&t, 0, &format!("{MTLS}\nP2PElectionWeight = 99")),
            agent(&t, 1, &format!("{MTLS}\nPreboot = true")),
            agent(
                &t,
                2,
                &format!(
                    "{MTLS}\nPreboot = true\nBootImageCertFile = \"{}\"",
                    p12.display()
                ),
            ),
        ];
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        let net = Subnet::start(&t, &nginx.url(), &refs);
        let r = net.agents[0].get("OSD00001", 1, &t.join("dest0"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", net.agents[0].log());

        let started = Instant::now();
        let r = net.agents[1].get("OSD00001", 1, &t.join("dest1"), &[]);
        let took = started.elapsed();
        assert_eq!(
            r.status,
            EXIT_IN_SUCCESS_CODES,
            "{r:?}\n{}",
            net.agents[1].log()
        );
        assert_eq!(r.code(), CLIENT_CERT_MISSING, "{r:?}");
        assert_eq!(r.state(), "failed", "{r:?}");
        assert_eq!(r.json["code_in_success_codes"], true, "{r:?}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert_eq!(r.json["bytes_from_peers"], 0, "{r:?}");
        assert_eq!(r.json["bytes_from_origin"], 0, "{r:?}");

        let r = net.agents[2].get("OSD00001", 1, &t.join("dest2"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", net.agents[2].log());
        assert_eq!(r.json["bytes_from_peers"].as_u64().unwrap(), size, "{r:?}");
        assert_trees_equal(t.join("src"), t.join("dest2"));
        assert!(net.agents[2].log().contains("protocol=HTTPS"));
        let s = net.status(2);
        let c = &s["client_certificate"];
        assert_eq!(c["state"], "chosen", "{s:#}");
        assert_eq!(c["source"], "boot image", "{s:#}");
        assert_eq!(c["thumbprint"], sha1_thumbprint(&boot.cert), "{s:#}");
    });
}

#[test]
fn a_job_without_a_certificate_holds_the_others_keeps_its_deadline_across_a_restart_and_fails_with_0x209a(
) {
    with_timeout(Duration::from_secs(170), || {
        let t = TestDir::new();
        publish(&t, MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let pki = Pki::create();
        trust(&pki, &store(&t, 0));
        let extra = format!("{MTLS}\nP2PClientCertWaitPeriodMins = 1");
        let mut net = Subnet::start(&t, &nginx.url(), &[&agent(&t, 0, &extra)]);

        let first = submit(&net, 0, &t.join("first"));
        let started = Instant::now();
        assert!(
            wait_until(Duration::from_secs(15), || job(&net, 0, first)["state"]
                == "waiting_for_certificate"),
            "{:#}\n{}",
            job(&net, 0, first),
            net.agents[0].log()
        );
        let j = job(&net, 0, first);
        let until = j["cert_wait_until_unix"].as_u64().expect("a deadline");
        assert!(
            (50..=61).contains(&until.saturating_sub(now_unix())),
            "{j:#}"
        );
        assert!(net.agents[0]
            .log()
            .contains("no valid client certificate: the job waits for one"));
        // `status` says so too, with the deadline.
        assert_eq!(
            net.status(0)["certificate_waits"],
            serde_json::json!([{
                "job": first,
                "content": "OSD00001/1",
                "state": "waiting_for_certificate",
                "until": contentdist::certstore::utc(until as i64),
                "until_unix": until,
            }])
        );

        // A second job is held behind the waiting one.
        let second = submit(&net, 0, &t.join("second"));
        assert!(
            wait_until(Duration::from_secs(10), || {
                let j = job(&net, 0, second);
                j["state"] == "queued" && j["waiting_for"] == first
            }),
            "{:#}",
            job(&net, 0, second)
        );

        // A restart keeps the deadline, and the order. What fails from here on is
        // recorded and the test goes on, so that one run shows the rest of the
        // wait too; it fails at the end.
        let mut problems = Vec::new();
        net.agents[0].restart();
        let restarted = Instant::now();
        if !wait_until(Duration::from_secs(15), || {
            job(&net, 0, first)["state"] == "waiting_for_certificate"
        }) {
            note(&mut problems, format!(
                "after the restart, job {first} is not waiting for a certificate: {:#}\njob {second}: {:#}\n{}",
                job(&net, 0, first),
                job(&net, 0, second),
                excerpt(&net.agents[0].log(), 30)
            ));
        }
        let j = job(&net, 0, first);
        if j["cert_wait_until_unix"] != until {
            note(
                &mut problems,
                format!("the restart changed job {first}'s deadline from {until}: {j:#}"),
            );
        }
        if !wait_until(Duration::from_secs(10), || {
            let j = job(&net, 0, second);
            j["state"] == "queued" && j["waiting_for"] == first
        }) {
            note(&mut problems, format!(
                "after the restart, job {second} is not shown queued behind job {first} ({:?} after the restart): {:#}\n{}",
                restarted.elapsed(),
                job(&net, 0, second),
                excerpt(&net.agents[0].log(), 30)
            ));
        }

        // A caller attached to the waiting job learns 0x209A, in SuccessCodes.
        let attached = {
            let config = net.agents[0].config().to_path_buf();
            let dest = t.join("first");
            std::thread::spawn(move || {
                Command::new(support::contentdist_bin())
                    .args(["get", "OSD00001", "--version", "1", "--json", "--dest"])
                    .arg(dest)
                    .arg("--config")
                    .arg(config)
                    .output()
                    .unwrap()
            })
        };
        assert!(
            wait_until(Duration::from_secs(100), || job(&net, 0, first)["state"]
                == "failed"),
            "{:#}\n{}",
            job(&net, 0, first),
            net.agents[0].log()
        );
        let waited = started.elapsed();
        assert!(
            (Duration::from_secs(50)..=Duration::from_secs(120)).contains(&waited),
            "failed after {waited:?}"
        );
        let j = job(&net, 0, first);
        assert_eq!(j["code"], CLIENT_CERT_MISSING, "{j:#}");
        assert_eq!(j["code_in_success_codes"], true, "{j:#}");
        assert!(
            j["message"]
                .as_str()
                .unwrap_or_default()
                .contains("P2PClientCertWaitPeriodMins"),
            "{j:#}"
        );
        assert!(now_unix() >= until, "failed before its deadline: {j:#}");
        let out = attached.join().unwrap();
        assert_eq!(out.status.code(), Some(EXIT_IN_SUCCESS_CODES), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(v["code"], CLIENT_CERT_MISSING, "{out:?}");

        // The second job now waits in its turn, with its own deadline; a cancel
        // ends it as cancelled.
        assert!(
            wait_until(Duration::from_secs(15), || job(&net, 0, second)["state"]
                == "waiting_for_certificate"),
            "{:#}\n{}",
            job(&net, 0, second),
            excerpt(&net.agents[0].log(), 40)
        );
        let j = job(&net, 0, second);
        let left = j["cert_wait_until_unix"]
            .as_u64()
            .expect("a deadline")
            .saturating_sub(now_unix());
        assert!((50..=61).contains(&left), "{j:#}");
        // The failed job left `status`'s list; the waiting one is in it.
        let waits = net.status(0)["certificate_waits"].clone();
        assert_eq!(waits.as_array().map(Vec::len), Some(1), "{waits:#}");
        assert_eq!(waits[0]["job"], second, "{waits:#}");
        let id = second.to_string();
        let out = net.agents[0].cli(&["jobs", "cancel", &id]);
        assert!(out.status.success(), "{out:?}");
        assert!(
            wait_until(Duration::from_secs(10), || job(&net, 0, second)["state"]
                == "cancelled"),
            "{:#}",
            job(&net, 0, second)
        );
        let j = job(&net, 0, second);
        assert_eq!(j["bytes_from_origin"], 0, "{j:#}");
        let waits = net.status(0)["certificate_waits"].clone();
        if waits != serde_json::json!([]) {
            note(
                &mut problems,
                format!("`status` still lists a certificate wait after the cancel: {waits:#}"),
            );
        }
        if j.get("cert_wait_until_unix").is_some() {
            note(
                &mut problems,
                format!("the cancelled job still shows a certificate-wait deadline: {j:#}"),
            );
        }
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    });
}

#[test]
fn an_origin_that_requires_client_certificates_serves_the_agent_that_has_one() {
    with_timeout(Duration::from_secs(90), || {
        let t = TestDir::new();
        publish(&t, 2 * MIB);
        let pki = Pki::create();
        let server = pki.server_cert("origin", &["IP:127.0.0.1"]);
        let nginx = Nginx::start(NginxOptions {
            root: t.join("origin"),
            tls: Some(TlsFiles {
                cert: server.chain.clone(),
                key: server.key.clone(),
            }),
            client_auth: Some(ClientAuth {
                ca_cert: pki.ca_cert(),
                required: true,
            }),
            ..Default::default()
        })
        .expect("start nginx with client certificates required");
        let client = pki.client_cert("dp00.branch.example");
        install(&client, &store(&t, 0), "client");
        std::fs::create_dir_all(store(&t, 1).join("my")).unwrap();
        // Agent 2's certificate comes from a CA the origin does not trust.
        let other = Pki::create_with(PkiOptions {
            ca_name: "Another CA".into(),
            ..PkiOptions::default()
        });
        install(
            &other.client_cert("dp02.branch.example"),
            &store(&t, 2),
            "client",
        );
        // Agent 3 holds both kinds: the other CA's, valid longer (chosen by the
        // rules alone), and one of the origin's CA that CertSubject names: the page's
        // "CertSubject picks a different one" for the site systems.
        let longer = other.issue(&CertSpec {
            name: "dp03.branch.example".into(),
            extended_key_usage: vec!["clientAuth".into()],
            days: 3000,
            ..CertSpec::default()
        });
        let sites = pki.issue(&CertSpec {
            name: "dp03-sites.branch.example".into(),
            extended_key_usage: vec!["clientAuth".into()],
            days: 100,
            ..CertSpec::default()
        });
        install(&longer, &store(&t, 3), "longer");
        install(&sites, &store(&t, 3), "sites");
        let ca = pki.ca_cert();
        let extra = format!("P2PEnabled = 0\nOriginCaFile = \"{}\"", ca.display());
        let settings = [
            agent(&t, 0, &extra),
            agent(&t, 1, &extra),
            agent(&t, 2, &extra),
            agent(&t, 3, &format!("{extra}\nCertSubject = \"dp03-sites\"")),
        ];
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        let net = Subnet::start(&t, &nginx.url(), &refs);

        let r = net.agents[0].get("OSD00001", 1, &t.join("dest0"), &[]);
        assert_eq!(
            r.status,
            0,
            "{r:?}\n{}\nnginx: {}",
            net.agents[0].log(),
            nginx.error_log()
        );
        assert_trees_equal(t.join("src"), t.join("dest0"));
        assert!(r.origin_bytes() > 0, "{r:?}");
        let s = net.status(0);
        assert_eq!(s["client_certificate"]["state"], "chosen", "{s:#}");
        assert!(nginx.access_log().iter().all(|e| e.status < 300));

        // Without a client certificate: refused, and the code and the message say
        // it is the client certificate.
        let r = net.agents[1].get("OSD00001", 1, &t.join("dest1"), &[]);
        assert_ne!(r.status, 0, "{r:?}");
        let message = r.json["message"].as_str().unwrap_or_default().to_string();
        eprintln!(
            "no client certificate: code {:#X}, message {message:?}",
            r.code()
        );
        // The agent presented none: 0x209A, in SuccessCodes (exit 3: no fallback).
        assert_eq!(
            r.code(),
            CLIENT_CERT_MISSING,
            "{r:?}\nnginx access log: {:?}\nnginx error log: {}",
            nginx.access_log().last(),
            nginx.error_log()
        );
        assert_eq!(r.status, EXIT_IN_SUCCESS_CODES, "{r:?}");
        // A certificate the origin refuses: 0x2F8F, naming it as the client's.
        let r = net.agents[2].get("OSD00001", 1, &t.join("dest2"), &[]);
        assert_eq!(r.code(), SECURE_FAILURE, "{r:?}");
        let said = r.json["message"].as_str().unwrap_or_default();
        assert!(
            said.contains("refused this agent's client certificate"),
            "{r:?}"
        );
        assert!(message.contains("client certificate"), "{r:?}");
        assert_eq!(r.json["bytes_from_origin"], 0, "{r:?}");

        // CertSubject steers agent 3 to the certificate the origin trusts.
        let r = net.agents[3].get("OSD00001", 1, &t.join("dest3"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", net.agents[3].log());
        assert_trees_equal(t.join("src"), t.join("dest3"));
        let s = net.status(3);
        assert_eq!(
            s["client_certificate"]["thumbprint"],
            sha1_thumbprint(&sites.cert),
            "{s:#}"
        );
    });
}
