//! Hostile traffic on the simulated subnet: a flood of forged requests must not turn
//! an agent into an amplifier, and a peer that asks during the flood still follows
//! the master promptly.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::sim::{key, ms, node_id, Net, Spec};
use super::{Action, Body, ElectionState, Event, Message};

fn is_announce(a: &Action) -> bool {
    matches!(a, Action::Broadcast(m) if matches!(m.body, Body::Master(_)))
}

fn is_candidate(a: &Action) -> bool {
    matches!(a, Action::Broadcast(m) if matches!(m.body, Body::Candidate { .. }))
}

/// A request for the test content from a node id nobody has.
fn forged_request(i: u64) -> Event {
    Event::Received {
        msg: Message {
            node_id: 0xF00D_0000 + i,
            addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66)),
            key: key(),
            body: Body::Request,
            host: None,
        },
    }
}

/// Hand `count` forged requests to node `to`, one every `every`, starting now.
fn flood(net: &mut Net, to: usize, count: u64, every: Duration) {
    let start = net.elapsed();
    for i in 0..count {
        net.run_until(start + every * i as u32);
        net.event(to, forged_request(i));
    }
}

/// Actions of node `i` matching `f` logged at or after `since`.
fn count_since(net: &Net, i: usize, since: Duration, f: impl Fn(&Action) -> bool) -> usize {
    net.nodes[i]
        .log
        .iter()
        .filter(|(t, a)| *t >= since && f(a))
        .count()
}

#[test]
fn a_master_flooded_with_requests_announces_at_a_bounded_rate() {
    let mut net = Net::new(&[Spec::default()], 21);
    net.want(0, 0);
    net.run_until(ms(1_000));
    assert_eq!(net.masters(), vec![0]);
    let start = net.elapsed();
    // 2,000 forged requests in 10 s (one every 5 ms), as in the hostile test.
    flood(&mut net, 0, 2_000, ms(5));
    net.run_until(start + ms(10_000));
    let announced = count_since(&net, 0, start, is_announce);
    eprintln!("announcements under a flood of 2,000 requests in 10 s: {announced}");
    // Three at once, then one per election_window / 4 (125 ms): 3 + 80.
    assert!(announced <= 83, "{announced} announcements");
    assert!(announced >= 40, "the master stopped answering: {announced}");
    assert_eq!(net.masters(), vec![0]);
}

#[test]
fn an_agent_that_cannot_be_master_answers_a_flood_with_bounded_candidates() {
    // A preboot holder never becomes master, so every request finds it answering
    // with its claim: without a limit each forged request costs one broadcast.
    let preboot = Spec {
        weight: 10,
        preboot: true,
        ..Spec::default()
    };
    let mut net = Net::new(&[preboot], 22);
    net.event(0, Event::Complete { key: key() });
    flood(&mut net, 0, 2_000, ms(5));
    net.run_until(ms(10_000));
    let claims = count_since(&net, 0, Duration::ZERO, is_candidate);
    eprintln!("candidates under a flood of 2,000 requests in 10 s: {claims}");
    assert!(claims <= 83, "{claims} candidates");
    assert!(claims >= 40, "the agent stopped answering: {claims}");
}

#[test]
fn a_peer_that_asks_during_a_flood_follows_the_master_within_its_window() {
    let mut net = Net::new(&[Spec::default(), Spec::default()], 23);
    net.delay_ms = (0, 5);
    net.want(0, 0);
    net.run_until(ms(1_000));
    assert_eq!(net.masters(), vec![0]);
    let start = net.elapsed();
    // The flood is running (the bucket is empty) when the newcomer asks.
    flood(&mut net, 0, 100, ms(2));
    let asked = net.elapsed();
    net.want(1, 0);
    for i in 100..300 {
        net.run_until(asked + ms(2) * (i - 100) as u32);
        net.event(0, forged_request(i));
    }
    let followed = net.nodes[1]
        .log
        .iter()
        .find(|(_, a)| matches!(a, Action::FollowMaster { .. }))
        .map(|(t, _)| *t)
        .expect("the newcomer follows");
    // Answers come at least every election_window / 4 (125 ms) plus the delay:
    // well before the newcomer's own window (500 ms) would end.
    assert!(
        followed - asked <= ms(135),
        "followed after {:?}",
        followed - asked
    );
    assert_eq!(net.state(1), Some(ElectionState::Following));
    assert_eq!(net.status(1).unwrap().master_node, Some(node_id(0)));
    assert!(net.elapsed() > start);
}

#[test]
fn traffic_for_contents_without_an_election_here_is_remembered_in_a_bounded_table() {
    let mut net = Net::new(&[Spec::default()], 21);
    let node = &mut net.nodes[0].el;
    let t0 = net.now;
    for i in 0..10_000u32 {
        let key = crate::manifest::ContentKey::new(format!("FLOOD{i:03}"), 1).unwrap();
        let msg = Message {
            node_id: 0xF00D,
            addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66)),
            key,
            body: Body::Request,
            host: None,
        };
        node.handle(t0, Event::Received { msg });
    }
    assert_eq!(node.earlier_len(), 4096);
    // Full of live entries, the table was looked through once, not once per new
    // content: a flood costs each message a lookup.
    assert_eq!(node.earlier_scans(), 1);
    // Once they are older than the master timeout, new contents take their place.
    let later = t0 + Duration::from_secs(4);
    let msg = Message {
        node_id: 0xF00D,
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66)),
        key: key(),
        body: Body::Request,
        host: None,
    };
    node.handle(later, Event::Received { msg });
    assert_eq!(node.earlier_len(), 1);
    assert_eq!(node.earlier_scans(), 2);
}
