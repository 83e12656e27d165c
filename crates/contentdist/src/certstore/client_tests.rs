//! The client-certificate rules on certificate facts: each check's own rejection,
//! one test per rule that decides, the tie-break, CertIssuer as a filter, and the
//! `[Platform] thumbprint` exception with the cases that turn it off.

use super::client::subject_is_fqdn;
use super::tests::{cert, DAY, NOW};
use super::*;

fn rules() -> ClientRules {
    ClientRules::default()
}

fn outranked(by: &str, rule: ClientRule) -> ClientRejection {
    ClientRejection::Outranked {
        by: by.into(),
        rule,
    }
}

#[test]
fn each_check_rejects_with_its_own_reason_the_first_failed_one() {
    let mut no_usage = cert("A1", &["pc1.branch.example"], 30);
    no_usage.client_auth = false;
    // Expired as well: usage is checked first.
    no_usage.not_after = NOW - 1;
    let mut self_signed = cert("A2", &["pc1.branch.example"], 30);
    self_signed.self_signed = true;
    self_signed.not_before = NOW + DAY;
    let mut early = cert("A3", &["pc1.branch.example"], 30);
    early.not_before = NOW + 1;
    let mut late = cert("A4", &["pc1.branch.example"], 30);
    late.not_after = NOW;
    let mut foreign = cert("A5", &["pc1.branch.example"], 30);
    foreign.issuer = "CN=Other CA".into();
    let with_issuer = ClientRules {
        issuers: IssuerFilter(vec!["Branch Issuing".into()]),
        ..rules()
    };
    let c = select_client(
        &[no_usage, self_signed, early, late, foreign],
        &with_issuer,
        NOW,
    );
    assert_eq!(c.chosen, None, "no usable certificate: the job gets 0x209A");
    assert_eq!(
        c.rejected,
        vec![
            (0, ClientRejection::NoClientUsage),
            (1, ClientRejection::SelfSigned),
            (2, ClientRejection::NotYetValid),
            (3, ClientRejection::Expired),
            (4, ClientRejection::IssuerNotAllowed),
        ]
    );
    assert!(!c.by_platform_thumbprint);
}

#[test]
fn a_subject_in_cert_subject_beats_an_fqdn_and_a_later_expiry() {
    let fqdn_long = cert("B1", &["pc1.branch.example"], 900);
    let named = cert("B2", &["pc1", "pc1-auth"], 30);
    let by_subject = ClientRules {
        subjects: SubjectFilter(vec!["PC1-AUTH".into()]),
        ..rules()
    };
    let c = select_client(&[fqdn_long.clone(), named.clone()], &by_subject, NOW);
    assert_eq!(c.chosen, Some(1));
    assert_eq!(c.rejected, vec![(0, outranked("B2", ClientRule::Subject))]);
    // Without CertSubject the next rules decide the other way.
    assert_eq!(
        select_client(&[fqdn_long, named], &rules(), NOW).chosen,
        Some(0)
    );
}

#[test]
fn a_subject_given_as_an_fqdn_beats_a_later_expiry() {
    let short_name = cert("C1", &["pc1", "pc1.branch.example"], 900);
    let fqdn = cert("C2", &["pc1.branch.example"], 30);
    let c = select_client(&[short_name, fqdn], &rules(), NOW);
    assert_eq!(c.chosen, Some(1));
    assert_eq!(c.rejected, vec![(0, outranked("C2", ClientRule::Fqdn))]);
}

#[test]
fn among_equals_the_latest_expiry_wins_then_the_smallest_thumbprint() {
    let short = cert("D1", &["pc1.branch.example"], 30);
    let long = cert("D2", &["pc1.branch.example"], 365);
    let c = select_client(&[short.clone(), long.clone()], &rules(), NOW);
    assert_eq!(c.chosen, Some(1));
    assert_eq!(c.rejected, vec![(0, outranked("D2", ClientRule::Expiry))]);
    assert_eq!(select_client(&[long, short], &rules(), NOW).chosen, Some(0));
    // A full tie gives the same certificate whatever the order of the store.
    let a = cert("E1", &["pc1.branch.example"], 30);
    let b = cert("E0", &["pc1.branch.example"], 30);
    let c = select_client(&[a.clone(), b.clone()], &rules(), NOW);
    assert_eq!(c.chosen, Some(1));
    assert_eq!(
        c.rejected,
        vec![(0, outranked("E0", ClientRule::Thumbprint))]
    );
    assert_eq!(select_client(&[b, a], &rules(), NOW).chosen, Some(0));
}

#[test]
fn cert_subject_matches_parts_of_the_subject_or_a_dns_name_without_case() {
    let mut c = cert("F1", &["pc1", "pc1.Branch.example"], 30);
    c.subject = "CN=pc1, O=Contoso Clients".into();
    let matches = |entries: &[&str]| {
        SubjectFilter(entries.iter().map(|s| s.to_string()).collect()).matches(&c)
    };
    assert!(matches(&["contoso clients"]));
    assert!(matches(&["cn=PC1"]));
    assert!(matches(&["nobody", "BRANCH.EXAMPLE"]));
    assert!(!matches(&["pc2"]));
    // Empty or blank: nothing preferred, so rule 2 never decides.
    assert!(!matches(&[]));
    assert!(!matches(&["", "  "]));
}

#[test]
fn cert_issuer_is_a_filter_by_substring_or_by_a_list_of_names() {
    let mut other = cert("G1", &["pc1.branch.example"], 900);
    other.issuer = "CN=Other CA, O=Elsewhere".into();
    let ours = cert("G2", &["pc1"], 10);
    let certs = [other, ours];
    let with = |names: &[&str]| ClientRules {
        issuers: IssuerFilter(names.iter().map(|s| s.to_string()).collect()),
        ..rules()
    };
    // The other CA's certificate would win on FQDN and expiry; CertIssuer drops it.
    let c = select_client(&certs, &with(&["issuing ca"]), NOW);
    assert_eq!(c.chosen, Some(1));
    assert_eq!(c.rejected, vec![(0, ClientRejection::IssuerNotAllowed)]);
    let c = select_client(&certs, &with(&["CN=Nobody", " Other CA"]), NOW);
    assert_eq!(c.chosen, Some(0));
    assert_eq!(c.rejected, vec![(1, ClientRejection::IssuerNotAllowed)]);
    assert_eq!(select_client(&certs, &with(&["Nobody"]), NOW).chosen, None);
    assert_eq!(select_client(&certs, &rules(), NOW).chosen, Some(0));
}

fn platform(tp: &str) -> ClientRules {
    ClientRules {
        platform_thumbprint: Some(tp.into()),
        ..rules()
    }
}

#[test]
fn the_platform_thumbprint_is_chosen_before_the_rules() {
    let best = cert("AA11", &["pc1.branch.example"], 900);
    let pinned = cert("BB22", &["pc1"], 30);
    let other = cert("CC33", &["pc1.branch.example"], 60);
    // Written as Windows shows it: lower case, spaced; the store has upper-case hex.
    let c = select_client(&[best, pinned, other], &platform("bb 2:2"), NOW);
    assert_eq!(c.chosen, Some(1));
    assert!(c.by_platform_thumbprint);
    assert_eq!(
        c.rejected,
        vec![
            (0, outranked("BB22", ClientRule::PlatformThumbprint)),
            (2, outranked("BB22", ClientRule::PlatformThumbprint)),
        ]
    );
}

#[test]
fn the_platform_thumbprint_is_ignored_when_cert_issuer_or_cert_subject_is_set() {
    let best = cert("AA11", &["pc1.branch.example"], 900);
    let pinned = cert("BB22", &["pc1"], 30);
    let certs = [best, pinned];
    let with_issuer = ClientRules {
        issuers: IssuerFilter(vec!["Branch".into()]),
        ..platform("BB22")
    };
    let with_subject = ClientRules {
        subjects: SubjectFilter(vec!["nobody".into()]),
        ..platform("BB22")
    };
    for r in [with_issuer, with_subject] {
        let c = select_client(&certs, &r, NOW);
        assert_eq!(c.chosen, Some(0), "{r:?}");
        assert!(!c.by_platform_thumbprint);
        assert_eq!(c.rejected, vec![(1, outranked("AA11", ClientRule::Fqdn))]);
    }
}

#[test]
fn an_unusable_or_absent_platform_certificate_leaves_the_rules_to_choose() {
    let best = cert("AA11", &["pc1.branch.example"], 900);
    let mut expired = cert("BB22", &["pc1"], 30);
    expired.not_after = NOW - DAY;
    let mut self_signed = cert("BB22", &["pc1"], 30);
    self_signed.self_signed = true;
    for (pinned, why) in [
        (expired, ClientRejection::Expired),
        (self_signed, ClientRejection::SelfSigned),
    ] {
        let c = select_client(&[best.clone(), pinned], &platform("BB22"), NOW);
        assert_eq!(c.chosen, Some(0));
        assert!(!c.by_platform_thumbprint);
        assert_eq!(c.rejected, vec![(1, why)]);
    }
    let c = select_client(std::slice::from_ref(&best), &platform("FF99"), NOW);
    assert_eq!((c.chosen, c.by_platform_thumbprint), (Some(0), false));
}

#[test]
fn an_fqdn_subject_has_a_dot_between_labels_and_is_not_an_ip_address() {
    let is_fqdn = |cn: &str| subject_is_fqdn(&cert("H1", &[cn], 30));
    assert!(is_fqdn("pc1.branch.example"));
    assert!(is_fqdn("pc1.branch.example."));
    assert!(!is_fqdn("pc1"));
    assert!(!is_fqdn("10.1.2.3"));
    assert!(!is_fqdn("::ffff:10.1.2.3"));
    assert!(!is_fqdn(".example"));
    assert!(!is_fqdn("Contoso Ltd. Clients"));
    // A DNS name in the subject alternative name is not the subject.
    assert!(!subject_is_fqdn(&cert(
        "H2",
        &["pc1", "pc1.branch.example"],
        30
    )));
    // By the rules: an IP address loses to an FQDN whatever its expiry.
    let ip = cert("H3", &["10.1.2.3"], 900);
    let fqdn = cert("H4", &["pc1.branch.example"], 30);
    let c = select_client(&[ip, fqdn], &rules(), NOW);
    assert_eq!(c.rejected, vec![(0, outranked("H4", ClientRule::Fqdn))]);
}

#[test]
fn client_usable_agrees_with_selection() {
    let mut certs = vec![
        cert("J1", &["pc1.branch.example"], 30),
        cert("J2", &["pc1"], 60),
        cert("J3", &["pc1.branch.example"], 90),
    ];
    let mut c = cert("J4", &["pc1"], 30);
    c.client_auth = false;
    certs.push(c);
    let mut c = cert("J5", &["pc1"], 30);
    c.self_signed = true;
    certs.push(c);
    let mut c = cert("J6", &["pc1"], 30);
    c.not_after = NOW - 1;
    certs.push(c);
    let mut c = cert("J7", &["pc1"], 30);
    c.issuer = "CN=Other CA".into();
    certs.push(c);
    let r = ClientRules {
        issuers: IssuerFilter(vec!["Branch".into()]),
        ..rules()
    };
    let choice = select_client(&certs, &r, NOW);
    assert_eq!(choice.chosen, Some(2));
    for (i, c) in certs.iter().enumerate() {
        let verdict = choice
            .rejected
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, w)| w);
        match (client_usable(c, &r, NOW), verdict) {
            (Ok(()), None) => assert_eq!(choice.chosen, Some(i)),
            (Ok(()), Some(ClientRejection::Outranked { .. })) => {}
            (Err(e), Some(w)) => assert_eq!(&e, w, "{}", c.thumbprint),
            (usable, verdict) => panic!("{}: {usable:?} but {verdict:?}", c.thumbprint),
        }
    }
}

#[test]
fn rejections_read_as_sentences() {
    assert_eq!(
        outranked("D2", ClientRule::Expiry).to_string(),
        "usable, but D2 ranks higher: later expiry (rule 4)"
    );
    assert_eq!(
        ClientRejection::IssuerNotAllowed.to_string(),
        "issuer not in CertIssuer"
    );
    assert!(ClientRejection::SelfSigned
        .to_string()
        .contains("PKI-issued"));
}
