//! Peer copy over HTTPS between real agents on 127.0.X.Y: self-signed masters that
//! peers pin, a PKI master checked against an openssl-made CA with curl and
//! `openssl s_client` as second clients, a certificate dropped into `my/` while the
//! agent runs, and peers that refuse a master's certificate and fall back to HTTP.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::pki::{sha1_thumbprint, CertSpec, Pki, PkiOptions};
use support::subnet::{
    agent, content_bytes, curl, install, listener, publish, slow_origin, trust, Subnet, MIB,
};
use support::{assert_trees_equal, wait_until, with_timeout, TestDir};

const MACHINE_KEY: &str = "branch-office-machine-key-for-tests";

#[test]
fn self_signed_masters_serve_over_https_and_peers_pin_what_was_announced() {
    with_timeout(Duration::from_secs(150), || {
        let t = TestDir::new();
        let size = publish(&t, 8 * MIB);
        let nginx = slow_origin(&t, 16 * MIB);
        let settings: Vec<String> = (0..4).map(|i| agent(&t, i, "P2PEnabled = 0x40")).collect();
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        let net = Subnet::start(&t, &nginx.url(), &refs);
        net.submit_all(&t, 0..4);
        net.wait_done(&[0, 1, 2, 3], Duration::from_secs(120));
        let mut masters = 0;
        for i in 0..4 {
            assert_trees_equal(t.join("src"), t.join(format!("dest{i}")));
            let j = net.job(i);
            if j["bytes_from_origin"].as_u64().unwrap() > 0 {
                masters += 1;
            } else {
                assert_eq!(j["bytes_from_peers"].as_u64().unwrap(), size, "{j}");
                let log = net.agents[i].log();
                assert!(
                    log.contains("copying from the master") && log.contains("protocol=HTTPS"),
                    "{log}"
                );
            }
            let s = net.status(i);
            assert_eq!(s["https_certificate"]["state"], "bound", "{s:#}");
            assert_eq!(s["https_certificate"]["kind"], "self-signed", "{s:#}");
            // HTTPS only: no HTTP listener.
            let listeners = s["listeners"].to_string();
            assert!(!listeners.contains("http://"), "{listeners}");
        }
        assert_eq!(masters, 1);
        nginx.wait_access_log(2, Duration::from_secs(5));
        assert!(content_bytes(&nginx) as f64 <= size as f64 * 1.01);
    });
}

/// Agent 0 with `P2PSslSettings` 0x1 and the store prepared by `setup`, serving
/// HTTPS and allowing machine accounts (for curl).
fn pki_master(t: &TestDir, origin: &str, pki: &Pki, setup: impl FnOnce(&Path)) -> Subnet {
    let store = t.join("store0");
    trust(pki, &store);
    setup(&store);
    let extra = format!(
        "P2PEnabled = 0x40\nP2PSslSettings = 0x1\nAuthenticatedUsers = 1\nMachineKey = \"{MACHINE_KEY}\"\nP2PElectionWeight = 99"
    );
    Subnet::start(t, origin, &[&agent(t, 0, &extra)])
}

#[test]
fn a_certificate_dropped_into_my_is_bound_without_a_restart_and_curl_and_openssl_see_it() {
    with_timeout(Duration::from_secs(120), || {
        let t = TestDir::new();
        publish(&t, 2 * MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let pki = Pki::create();
        let expired = pki.issue(&CertSpec {
            name: "dp00".into(),
            sans: vec!["DNS:dp00".into()],
            extended_key_usage: vec!["serverAuth".into()],
            not_before: Some("20200101000000Z".into()),
            not_after: Some("20210101000000Z".into()),
            ..CertSpec::default()
        });
        let net = pki_master(&t, &nginx.url(), &pki, |store| {
            install(&expired, store, "old")
        });
        // No qualifying certificate: HTTPS does not listen, and status says why.
        let s = net.status(0);
        let cert = &s["https_certificate"];
        assert_eq!(cert["state"], "unavailable", "{s:#}");
        assert!(cert["reason"].as_str().unwrap().contains("0x1"), "{s:#}");
        assert!(
            cert["rejected"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("expired"),
            "{s:#}"
        );
        let addr = listener(&s, "https")
            .trim_start_matches("https://")
            .to_string();
        let port = addr.rsplit(':').next().unwrap().to_string();
        let ip = addr.rsplit_once(':').unwrap().0.to_string();
        let ca = pki.ca_cert();
        let ca = ca.to_str().unwrap();
        let resolve = format!("dp00:{port}:{ip}");
        let out = curl(&[
            "--cacert",
            ca,
            "--resolve",
            &resolve,
            &format!("https://dp00:{port}/"),
        ]);
        assert_eq!(out.status.code(), Some(7), "connection refused: {out:?}");
        assert!(net.agents[0]
            .log()
            .contains("HTTPS peer-copy server not listening"));

        // A good one dropped in: bound within seconds, the port listens.
        let good = pki.server_cert("dp00", &["DNS:dp00", "DNS:dp00.branch.example"]);
        install(&good, &t.join("store0"), "new");
        assert!(wait_until(Duration::from_secs(20), || {
            net.status(0)["https_certificate"]["state"] == "bound"
        }));
        let s = net.status(0);
        assert_eq!(
            s["https_certificate"]["thumbprint"],
            sha1_thumbprint(&good.cert),
            "{s:#}"
        );
        assert_eq!(s["https_certificate"]["kind"], "PKI");
        let log = net.agents[0].log();
        assert!(log.contains("HTTPS server certificate bound"), "{log}");

        // The agent holds the content; curl fetches a range over HTTPS with a
        // machine account, trusting only the CA.
        let r = net.agents[0].get("OSD00001", 1, &t.join("dest0"), &[]);
        assert_eq!(r.status, 0, "{r:?}");
        let (user, password) =
            contentdist::peer::machine_credentials(MACHINE_KEY.as_bytes(), "curl-host");
        let url = format!("https://dp00:{port}/content/OSD00001/1/files/os/boot.cfg");
        let cred = format!("{user}:{password}");
        let out = curl(&[
            "--cacert",
            ca,
            "--resolve",
            &resolve,
            "-u",
            &cred,
            "-r",
            "100-199",
            &url,
        ]);
        assert!(out.status.success(), "{out:?}");
        let expected = std::fs::read(t.join("src/os/boot.cfg")).unwrap();
        assert_eq!(out.stdout, &expected[100..200]);
        // Without credentials: refused inside TLS.
        let out = curl(&[
            "--cacert",
            ca,
            "--resolve",
            &resolve,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "{out:?}");
        // Without the CA, curl refuses the certificate (60).
        let out = curl(&["--resolve", &resolve, &url]);
        assert_eq!(out.status.code(), Some(60), "{out:?}");

        // openssl s_client shows the certificate the rules chose, verified for
        // the host name.
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                "-CAfile",
                ca,
                "-verify_hostname",
                "dp00",
                "-verify_return_error",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap();
        let end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
        let presented = t.write("presented.pem", &text[begin..end]);
        assert_eq!(sha1_thumbprint(&presented), sha1_thumbprint(&good.cert));
        assert!(
            text.contains("TLSv1.3") || text.contains("TLSv1.2"),
            "{text}"
        );
        // TLS 1.2 and 1.3 only, AEAD ciphers only: the agent refuses TLS 1.1 and a
        // CBC suite (openssl's own minimums lowered, so that the refusal is the
        // agent's, not openssl's).
        let s_client = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(["s_client", "-connect", &addr])
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), all)
        };
        let (ok, text) = s_client(&["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
        // "SSL alert number": the agent's alert (rustls answers handshake_failure).
        assert!(
            !ok && text.contains("SSL alert number") && text.contains("Cipher is (NONE)"),
            "TLS 1.1: {text}"
        );
        let (ok, text) = s_client(&["-tls1_2", "-cipher", "AES256-SHA256:@SECLEVEL=0"]);
        assert!(
            !ok && text.contains("SSL alert number") && text.contains("Cipher is (NONE)"),
            "CBC: {text}"
        );
        let (ok, text) = s_client(&["-tls1_2"]);
        assert!(ok && text.contains("GCM"), "TLS 1.2 with AEAD: {text}");

        // A file that is no certificate is logged once, with its name and the
        // reason, and changes nothing.
        std::fs::write(t.join("store0/my/junk.pem"), "not a certificate").unwrap();
        let skipped = || {
            net.agents[0]
                .log()
                .lines()
                .filter(|l| l.contains("certificate store: file skipped") && l.contains("junk.pem"))
                .count()
        };
        assert!(wait_until(Duration::from_secs(20), || skipped() == 1));
        // Two more looks at the store (every 5 s): still one line.
        std::thread::sleep(Duration::from_secs(11));
        assert_eq!(skipped(), 1, "{}", net.agents[0].log());
        let s = net.status(0);
        assert_eq!(
            s["https_certificate"]["thumbprint"],
            sha1_thumbprint(&good.cert),
            "{s:#}"
        );
        // The start-up log names every URL listened on.
        let log = net.agents[0].log();
        assert!(
            log.lines()
                .any(|l| l.contains("peer-copy URL")
                    && l.contains(&format!("https://{addr}/content/"))),
            "{log}"
        );
    });
}

#[test]
fn peers_refuse_an_untrusted_master_certificate_and_fall_back_to_http_when_both_allow_it() {
    with_timeout(Duration::from_secs(150), || {
        let t = TestDir::new();
        let size = publish(&t, 2 * MIB);
        let nginx = slow_origin(&t, 64 * MIB);
        let pki = Pki::create();
        let other = Pki::create_with(PkiOptions {
            ca_name: "Another Branch CA".into(),
            ..PkiOptions::default()
        });
        let master_store = t.join("store0");
        trust(&pki, &master_store);
        install(
            &pki.server_cert("dp00", &["DNS:dp00"]),
            &master_store,
            "dp00",
        );
        // The peers trust another CA.
        trust(&other, &t.join("store1"));
        trust(&other, &t.join("store2"));
        let both = "P2PEnabled = 0x60\nP2PSslSettings = 0x1";
        let settings = [
            agent(&t, 0, &format!("{both}\nP2PElectionWeight = 99")),
            agent(&t, 1, both),
            agent(&t, 2, "P2PEnabled = 0x40\nP2PSslSettings = 0x1"),
        ];
        let refs: Vec<&str> = settings.iter().map(String::as_str).collect();
        let net = Subnet::start(&t, &nginx.url(), &refs);
        let r = net.agents[0].get("OSD00001", 1, &t.join("dest0"), &[]);
        assert_eq!(r.status, 0, "{r:?}");
        assert_eq!(net.status(0)["https_certificate"]["kind"], "PKI");

        // HTTPS and HTTP: the certificate is refused (0x2F8F), HTTP is tried next.
        let r = net.agents[1].get("OSD00001", 1, &t.join("dest1"), &[]);
        assert_eq!(r.status, 0, "{r:?}\n{}", net.agents[1].log());
        assert_trees_equal(t.join("src"), t.join("dest1"));
        assert_eq!(net.job(1)["bytes_from_peers"].as_u64().unwrap(), size);
        let log = net.agents[1].log();
        assert!(
            log.contains("peer copy over HTTPS failed; trying HTTP") && log.contains("0x2F8F"),
            "{log}"
        );
        assert!(log.contains("protocol=HTTP"), "{log}");

        // HTTPS only: the job fails with the page's code, and nothing was fetched.
        let r = net.agents[2].get("OSD00001", 1, &t.join("dest2"), &[]);
        assert_ne!(r.status, 0, "{r:?}");
        assert_eq!(r.code(), 0x2F8F, "{r:?}");
        assert_eq!(net.job(2)["bytes_from_peers"], 0);
        let log = net.agents[2].log();
        assert!(
            log.contains("UnknownIssuer") || log.contains("unknown issuer"),
            "{log}"
        );
        // The master saw the refused handshakes.
        let served = &net.status(0)["peer_server"];
        assert!(
            served["tls_handshakes_failed"].as_u64().unwrap() >= 2,
            "{served}"
        );
    });
}
