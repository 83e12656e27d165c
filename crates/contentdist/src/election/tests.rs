//! Election scenarios on a simulated clock and subnet (see `sim.rs`).

use std::time::Duration;

use super::sim::{key, ms, node_id, spec, Net, Spec};
use super::{Action, Body, ElectionState, Elections, Event, Instant, LocalInfo, Message, Timing};

fn is_become(a: &Action) -> bool {
    matches!(a, Action::BecomeMaster { .. })
}
fn is_stop(a: &Action) -> bool {
    matches!(a, Action::StopMaster { .. })
}
fn is_follow(a: &Action) -> bool {
    matches!(a, Action::FollowMaster { .. })
}
fn is_lost(a: &Action) -> bool {
    matches!(a, Action::MasterLost { .. })
}
fn sends(a: &Action, f: impl Fn(&Body) -> bool) -> bool {
    matches!(a, Action::Broadcast(m) if f(&m.body))
}

#[test]
fn single_agent_becomes_master_after_the_window() {
    let mut net = Net::new(&[spec(50)], 1);
    net.want(0, 0);
    net.run_until(ms(499));
    assert_eq!(net.state(0), Some(ElectionState::Electing));
    net.run_until(ms(510));
    assert_eq!(net.masters(), vec![0]);
    let s = net.status(0).unwrap();
    assert_eq!((s.term, s.master_node), (1, Some(node_id(0))));
    assert_eq!(net.count(0, is_become), 1);
    net.run_until(ms(5_600));
    // Heartbeats every second after becoming master at 0.5 s: 1.5, 2.5, ..., 5.5.
    assert_eq!(
        net.count(0, |a| sends(a, |b| matches!(b, Body::Heartbeat { .. }))),
        5
    );
    assert_eq!(net.masters(), vec![0]);
}

#[test]
fn eight_agents_at_once_elect_one_master_and_all_follow_it() {
    let weights = [50, 61, 40, 30, 61, 50, 45, 10];
    let specs: Vec<Spec> = weights.iter().map(|&w| spec(w)).collect();
    let mut net = Net::new(&specs, 2);
    net.delay_ms = (0, 5);
    for i in 0..8 {
        net.want(i, 0);
    }
    net.run_until(ms(1_000));
    // Weight 61 twice: node 4 has the higher node id.
    assert_eq!(net.masters(), vec![4]);
    assert!(net.all_follow(4));
    for i in 0..8 {
        assert_eq!(net.count(i, is_become), usize::from(i == 4), "node {i}");
        assert_eq!(net.count(i, is_follow), usize::from(i != 4), "node {i}");
    }
    net.run_until(ms(10_000));
    assert_eq!(net.masters(), vec![4]);
    assert!(net.all_follow(4));
}

#[test]
fn late_joiner_follows_the_master_without_a_new_election() {
    let mut net = Net::new(&[spec(30), spec(99)], 3);
    net.want(0, 0);
    net.run_until(ms(2_000));
    assert_eq!(net.masters(), vec![0]);
    // A better-ranked newcomer (more weight, more content) still follows: A answers
    // "20% complete" and wins.
    net.want(1, 500);
    net.run_until(ms(2_000) + ms(50));
    assert_eq!(net.state(1), Some(ElectionState::Following));
    assert!(net.all_follow(0));
    net.run_until(ms(30_000));
    assert_eq!(net.masters(), vec![0]);
    assert_eq!(net.status(0).unwrap().term, 1);
    assert_eq!(net.count(0, is_stop) + net.count(1, is_become), 0);
}

#[test]
fn highest_share_wins_over_higher_weight() {
    let mut net = Net::new(&[spec(99), spec(20), spec(61)], 4);
    net.want(0, 0);
    net.want(1, 300);
    net.want(2, 299);
    net.run_until(ms(1_000));
    assert_eq!(net.masters(), vec![1]);
    assert!(net.all_follow(1));
}

#[test]
fn preboot_is_never_master_even_alone_with_the_best_share() {
    let preboot = Spec {
        weight: 10,
        preboot: true,
        ..Spec::default()
    };
    let mut net = Net::new(&[preboot, spec(50)], 5);
    net.want(0, 900);
    net.run_until(ms(25_000));
    assert_eq!(net.state(0), Some(ElectionState::Electing));
    assert_eq!(net.count(0, is_become), 0);
    // It asks again every request_retry (10 s): at 0, 10.5 and 21 s.
    assert_eq!(net.count(0, |a| sends(a, |b| *b == Body::Request)), 3);
    // An eligible agent appears: it wins although its share is 0.
    net.want(1, 0);
    net.run_until(ms(26_000));
    assert_eq!(net.masters(), vec![1]);
    assert!(net.all_follow(1));
}

#[test]
fn weight_zero_never_answers_and_is_never_master() {
    let mut net = Net::new(&[spec(0), spec(50), spec(0)], 6);
    // Node 0 holds the whole content, node 2 wants it: neither may claim it.
    net.event(0, Event::Complete { key: key() });
    net.want(2, 0);
    net.run_until(ms(15_000));
    assert_eq!(net.state(2), Some(ElectionState::Electing));
    assert!(net.masters().is_empty());
    net.want(1, 0);
    net.run_until(ms(16_000));
    assert_eq!(net.masters(), vec![1]);
    for i in [0, 2] {
        assert_eq!(
            net.count(i, |a| sends(a, |b| matches!(b, Body::Candidate { .. }))),
            0
        );
        assert_eq!(net.count(i, is_become), 0);
    }
    assert_eq!(net.state(2), Some(ElectionState::Following));
}

#[test]
fn killed_master_is_replaced_by_the_best_remaining_candidate() {
    let mut net = Net::new(&[spec(50), spec(61), spec(30), spec(61), spec(40)], 7);
    net.delay_ms = (0, 10);
    net.want(0, 0);
    net.run_until(ms(1_000));
    for i in 1..5 {
        net.want(i, 0);
    }
    net.run_until(ms(2_000));
    assert_eq!(net.masters(), vec![0]);
    // Copying went on: a half-done peer with a low weight now leads.
    let shares = [0, 100, 500, 100, 300];
    for (i, &share) in shares.iter().enumerate().skip(1) {
        net.event(
            i,
            Event::Progress {
                key: key(),
                share_permille: share,
            },
        );
    }
    net.run_until(ms(10_000));
    let kill = net.elapsed();
    net.nodes[0].alive = false;
    let t = Timing::default();
    net.run_until(kill + t.master_timeout + t.election_window + ms(100));
    assert_eq!(net.masters(), vec![2]);
    assert!(net.all_follow(2));
    for i in [1, 3, 4] {
        assert_eq!(net.count(i, is_lost), 1, "node {i}");
        assert_eq!(net.count(i, is_become), 0, "node {i}");
    }
    assert_eq!(net.status(2).unwrap().term, 2);
}

#[test]
fn healed_partition_keeps_the_better_master_only() {
    let specs = [spec(50), spec(40), spec(30), spec(61), spec(20), spec(10)];
    let mut net = Net::new(&specs, 8);
    for (i, n) in net.nodes.iter_mut().enumerate() {
        n.group = u32::from(i >= 3);
    }
    for i in 0..6 {
        net.want(i, 0);
    }
    net.run_until(ms(3_000));
    assert_eq!(net.masters(), vec![0, 3]);
    for n in &mut net.nodes {
        n.group = 0;
    }
    net.run_until(ms(6_000));
    assert_eq!(net.masters(), vec![3]);
    assert!(net.all_follow(3));
    assert_eq!(net.count(0, is_stop), 1);
    assert!(net.status(3).unwrap().term >= 1);
}

#[test]
fn master_yields_at_reelection_only_to_a_strictly_better_candidate() {
    let timing = Timing {
        reelect_interval: Duration::from_secs(10),
        ..Timing::default()
    };
    let mut net = Net::with_timing(&[spec(50), spec(40), spec(61)], 9, timing);
    net.want(0, 100);
    net.run_until(ms(1_000));
    net.want(1, 0);
    net.want(2, 0);
    net.run_until(ms(2_000));
    assert_eq!(net.masters(), vec![0]);
    // First re-election at 10.5 s: nobody is better, nothing changes.
    net.run_until(ms(12_000));
    assert_eq!(net.masters(), vec![0]);
    assert_eq!(net.count(0, is_stop), 0);
    assert_eq!(net.status(0).unwrap().term, 1);
    // Node 1 got more of the content (from a FanOut peer, say).
    net.event(
        1,
        Event::Progress {
            key: key(),
            share_permille: 400,
        },
    );
    // Second re-election at 21 s; node 1 wins the election that follows.
    net.run_until(ms(21_400));
    assert_eq!(net.masters(), vec![0]);
    net.run_until(ms(22_600));
    assert_eq!(net.masters(), vec![1]);
    assert!(net.all_follow(1));
    assert_eq!(net.count(0, is_stop), 1);
    assert_eq!(net.status(1).unwrap().term, 2);
}

#[test]
fn completed_master_sends_done_and_keeps_serving() {
    let mut net = Net::new(&[spec(50), spec(40)], 10);
    net.want(0, 0);
    net.run_until(ms(1_000));
    net.want(1, 0);
    net.run_until(ms(2_000));
    net.event(0, Event::Complete { key: key() });
    net.run_until(ms(20_000));
    assert_eq!(net.masters(), vec![0]);
    assert!(net.all_follow(0));
    assert_eq!(
        net.count(0, |a| sends(a, |b| matches!(b, Body::Done { .. }))),
        1
    );
    assert_eq!(net.count(1, is_lost), 0);
    let share = net.nodes[1].log.iter().rev().find_map(|(_, a)| match a {
        Action::FollowMaster { master, .. } => Some(master.share_permille),
        _ => None,
    });
    assert_eq!(
        share,
        Some(0),
        "FollowMaster is not repeated for share changes"
    );
    // A follower that completes no longer follows; it holds the content.
    net.event(1, Event::Complete { key: key() });
    assert_eq!(net.state(1), Some(ElectionState::Idle));
}

#[test]
fn master_that_forgets_resigns_and_followers_elect_at_once() {
    let mut net = Net::new(&[spec(61), spec(40), spec(50)], 11);
    for i in 0..3 {
        net.want(i, 0);
    }
    net.run_until(ms(2_000));
    assert_eq!(net.masters(), vec![0]);
    net.event(0, Event::Forget { key: key() });
    assert!(net.status(0).is_none());
    assert_eq!(net.count(0, is_stop), 1);
    // Well before master_timeout: the resignation starts the election.
    net.run_until(ms(2_000 + 600));
    assert_eq!(net.masters(), vec![2]);
    let s1 = net.status(1).unwrap();
    assert_eq!(
        (s1.state, s1.master_node),
        (ElectionState::Following, Some(node_id(2)))
    );
    assert_eq!(net.count(1, is_lost), 1);
}

#[test]
fn elections_work_with_a_site_key() {
    let mut net = Net::new(&[spec(50), spec(61), spec(40)], 12);
    net.site_key = Some(super::SiteKey::new(b"site secret"));
    for i in 0..3 {
        net.want(i, 0);
    }
    net.run_until(ms(2_000));
    assert_eq!(net.masters(), vec![1]);
    assert!(net.all_follow(1));
    assert_eq!(net.stale, 0, "every stamp is fresh");
    // The follower got the master's P2P key through the encrypted announcement.
    let key = net.nodes[0].log.iter().find_map(|(_, a)| match a {
        Action::FollowMaster { master, .. } => Some(master.p2p_key),
        _ => None,
    });
    assert_eq!(key, Some(net.nodes[1].el.local().p2p_key));
}

#[test]
fn own_messages_and_unknown_content_are_ignored() {
    let t0 = Instant::now();
    let local = LocalInfo {
        node_id: 7,
        ..LocalInfo::default()
    };
    let mut el = Elections::new(local.clone(), Timing::default());
    let req = |node_id| Event::Received {
        msg: Message {
            node_id,
            addr: local.addr,
            key: key(),
            body: Body::Request,
            host: None,
        },
    };
    // Unknown content: no answer.
    assert!(el.handle(t0, req(8)).is_empty());
    el.handle(
        t0,
        Event::Want {
            key: key(),
            share_permille: 0,
        },
    );
    assert!(el.handle(t0, req(7)).is_empty());
    // The same request from another node gets our candidate.
    assert_eq!(el.handle(t0, req(8)).len(), 1);
    // The first timer: the head start's quiet time, inside the window.
    assert_eq!(
        el.next_deadline(),
        Timing::default().head_start_quiet.map(|q| t0 + q)
    );
}

#[test]
fn invalid_content_ids_start_no_election() {
    // No event can carry an invalid id: the key refuses it when it is made, so the
    // machine never sees one (it used to check each `Want` and `Complete` itself).
    let el = Elections::new(LocalInfo::default(), Timing::default());
    assert!(crate::manifest::ContentKey::new("../x", 1).is_err());
    assert!(el.status().is_empty());
}

#[test]
fn a_live_master_heard_only_by_heartbeat_is_asked_not_replaced() {
    // The master's answer to our request was lost; its heartbeat reaches us.
    let t0 = Instant::now();
    let mut el = Elections::new(
        LocalInfo {
            node_id: 1,
            weight: 99,
            ..LocalInfo::default()
        },
        Timing::default(),
    );
    el.handle(
        t0,
        Event::Want {
            key: key(),
            share_permille: 900,
        },
    );
    let master_rank = super::Rank {
        preboot: false,
        share_permille: 100,
        weight: 20,
        free_bytes: 0,
        node_id: 2,
    };
    let from_master = |body| Event::Received {
        msg: Message {
            node_id: 2,
            addr: LocalInfo::default().addr,
            key: key(),
            body,
            host: None,
        },
    };
    let hb = from_master(Body::Heartbeat {
        rank: master_rank,
        term: 4,
    });
    el.handle(t0 + ms(300), hb);
    // The window ends: we rank higher, but a master lives, so we ask it again and
    // wait for its announcement.
    let after = el.handle(t0 + ms(500), Event::Tick);
    assert!(!after.iter().any(is_become), "{after:?}");
    assert!(
        after.iter().any(|a| sends(a, |b| *b == Body::Request)),
        "{after:?}"
    );
    assert_eq!(el.status()[0].state, ElectionState::Electing);
    let announce = super::MasterAnnounce {
        rank: master_rank,
        term: 4,
        http_port: 5080,
        https_port: 5443,
        protocols: crate::config::Protocols::ALL,
        p2p_key: super::P2pKey([9; 32]),
        cert_fingerprint: None,
        names: Vec::new(),
    };
    let follow = el.handle(t0 + ms(800), from_master(Body::Master(announce)));
    assert!(follow.iter().any(is_follow), "{follow:?}");
    assert_eq!(el.status()[0].master_node, Some(2));
    assert_eq!(el.status()[0].term, 4);
}

#[test]
fn zero_timers_do_not_spin() {
    let zero = Timing {
        election_window: Duration::ZERO,
        heartbeat_interval: Duration::ZERO,
        master_timeout: Duration::ZERO,
        reelect_interval: Duration::ZERO,
        request_retry: Duration::ZERO,
        head_start_quiet: Some(Duration::ZERO),
    };
    let mut net = Net::with_timing(&[spec(50), spec(40)], 13, zero);
    net.want(0, 0);
    net.want(1, 0);
    net.run_until(ms(200));
    assert!(net.masters().len() <= 1);
}

/// The `FollowMaster` actions node `i` logged, in order.
fn followed(net: &Net, i: usize) -> Vec<super::MasterInfo> {
    net.nodes[i]
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::FollowMaster { master, .. } => Some(master.clone()),
            _ => None,
        })
        .collect()
}

fn announcements(net: &Net, i: usize) -> usize {
    net.count(i, |a| sends(a, |b| matches!(b, Body::Master(_))))
}

#[test]
fn a_renewed_certificate_is_announced_at_once_and_followers_pin_it() {
    let mut net = Net::new(&[spec(61), spec(40)], 14);
    let names = vec![
        "agent1".to_string(),
        "agent1.branch.example.com".to_string(),
    ];
    net.nodes[0].el = Elections::new(
        LocalInfo {
            cert_fingerprint: Some([1; 32]),
            names: names.clone(),
            ..net.nodes[0].el.local().clone()
        },
        Timing::default(),
    );
    net.want(0, 0);
    net.want(1, 0);
    net.run_until(ms(2_000));
    assert_eq!(net.masters(), vec![0]);
    let first = followed(&net, 1);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].cert_fingerprint, Some([1; 32]));
    assert_eq!(
        first[0].names, names,
        "the follower knows the master's names"
    );

    // Renewed twice at one instant, right after an announcement: no rate limit
    // holds either back.
    let before = announcements(&net, 0);
    for fp in [[2; 32], [3; 32]] {
        net.event(
            0,
            Event::CertChanged {
                fingerprint: Some(fp),
            },
        );
    }
    assert_eq!(announcements(&net, 0), before + 2);
    assert_eq!(net.nodes[0].el.local().cert_fingerprint, Some([3; 32]));
    net.run_until(ms(2_010));
    let pinned: Vec<_> = followed(&net, 1)
        .iter()
        .map(|m| m.cert_fingerprint)
        .collect();
    assert_eq!(pinned, [Some([1; 32]), Some([2; 32]), Some([3; 32])]);
    assert_eq!(followed(&net, 1).last().unwrap().names, names);

    // The same fingerprint again: nothing to tell.
    net.event(
        0,
        Event::CertChanged {
            fingerprint: Some([3; 32]),
        },
    );
    assert_eq!(announcements(&net, 0), before + 2);
    // Heartbeats carry no fingerprint: followers keep the last one pinned.
    net.run_until(ms(10_000));
    assert_eq!(followed(&net, 1).len(), 3);
    assert!(net.all_follow(0));
}

#[test]
fn a_certificate_change_off_mastership_is_only_remembered() {
    let t0 = Instant::now();
    let mut el = Elections::new(
        LocalInfo {
            node_id: 1,
            ..LocalInfo::default()
        },
        Timing::default(),
    );
    el.handle(
        t0,
        Event::Want {
            key: key(),
            share_permille: 0,
        },
    );
    let out = el.handle(
        t0 + ms(10),
        Event::CertChanged {
            fingerprint: Some([4; 32]),
        },
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(el.local().cert_fingerprint, Some([4; 32]));
    // Once master, it announces the fingerprint it was told last.
    let won = el.handle(t0 + ms(600), Event::Tick);
    let announced = won.iter().find_map(|a| match a {
        Action::Broadcast(Message {
            body: Body::Master(m),
            host: None,
            ..
        }) => Some(m.cert_fingerprint),
        _ => None,
    });
    assert_eq!(announced, Some(Some([4; 32])));
}

#[test]
fn names_the_wire_refuses_are_dropped_at_start() {
    let el = Elections::new(
        LocalInfo {
            names: [
                "host_1",
                "host1",
                "",
                "host1.example.com.",
                "a",
                "b",
                "c",
                "d",
            ]
            .map(String::from)
            .to_vec(),
            ..LocalInfo::default()
        },
        Timing::default(),
    );
    assert_eq!(el.local().names, ["host1", "a", "b", "c"]);
}
