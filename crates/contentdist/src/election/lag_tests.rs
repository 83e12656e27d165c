//! Agents on a loaded host: the driver reads its socket late, so datagrams wait in
//! the queue while timers come due. In the lab, 128 agents on 2 cores elected
//! second masters this way: an agent decided at the end of its window before
//! reading the master's announcement (or better claims) already queued, and
//! followers declared a master lost whose heartbeats waited in their queue.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::sim::{key, ms, node_id, Net, Spec};
use super::{
    Action, Body, ElectionState, Elections, Event, Instant, LocalInfo, Message, Rank, Timing,
};

fn became_master(a: &Action) -> bool {
    matches!(a, Action::BecomeMaster { .. })
}

fn lost_master(a: &Action) -> bool {
    matches!(a, Action::MasterLost { .. })
}

#[test]
fn a_newcomer_that_reads_its_queue_late_follows_the_master_waiting_in_it() {
    let mut net = Net::new(&[Spec::default(); 2], 1);
    net.want(0, 300);
    net.run_until(ms(2_000));
    assert_eq!(net.masters(), vec![0]);
    // Node 1 asks at 2.0 s; the master's answer is queued at once, but node 1
    // runs only at 2.7 s, after its window ended (2.5 s).
    net.set_lag(1, ms(700), ms(700));
    net.want(1, 0);
    net.run_until(ms(6_000));
    assert_eq!(net.count(1, became_master), 0, "{:?}", net.nodes[1].log);
    assert_eq!(net.masters(), vec![0]);
    assert!(net.all_follow(0));
}

#[test]
fn a_follower_stalled_past_the_master_timeout_keeps_the_master_heard_in_its_queue() {
    let mut net = Net::new(&[Spec::default(); 2], 2);
    net.want(0, 300);
    net.run_until(ms(1_000));
    net.want(1, 0);
    net.run_until(ms(3_000));
    assert!(net.all_follow(0));
    // Node 1 stalls for 4 s (more than the 3.5 s master timeout) while the
    // master's heartbeats pile up in its queue, then runs every 4 s.
    net.set_lag(1, ms(4_000), ms(4_000));
    net.run_until(ms(20_000));
    assert_eq!(net.count(1, lost_master), 0, "{:?}", net.nodes[1].log);
    assert_eq!(net.count(1, became_master), 0);
    assert!(net.all_follow(0));
}

/// 128 agents with equal ranks but their node ids (the lab: nothing verified
/// yet, one disk), starting within 3 s, each running only every 100 ms to
/// `max_lag_ms`.
fn loaded_office(seed: u64, max_lag_ms: u64) {
    let n = 128;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = Net::new(&vec![Spec::default(); n], seed);
    net.delay_ms = (0, 5);
    for i in 0..n {
        let lag = rng.random_range(100..=max_lag_ms);
        let first = rng.random_range(0..=lag);
        net.set_lag(i, ms(lag), ms(first));
    }
    let mut starts: Vec<(u64, usize)> = (0..n).map(|i| (rng.random_range(0..=3_000), i)).collect();
    starts.sort();
    for &(at, i) in &starts {
        net.run_until(ms(at));
        net.want(i, 0);
    }
    net.run_until(ms(15_000));
    let elected: Vec<usize> = (0..n)
        .filter(|&i| net.count(i, became_master) > 0)
        .collect();
    let masterships: usize = (0..n).map(|i| net.count(i, became_master)).sum();
    assert_eq!(
        masterships,
        1,
        "seed {seed}: masterships by {:?}",
        elected.iter().map(|&i| node_id(i)).collect::<Vec<_>>()
    );
    let m = elected[0];
    assert_eq!(net.state(m), Some(ElectionState::Master));
    assert!(net.all_follow(m), "seed {seed}");
    let lost: usize = (0..n).map(|i| net.count(i, lost_master)).sum();
    assert_eq!(lost, 0, "seed {seed}");
}

#[test]
fn a_loaded_office_of_128_agents_elects_one_master_once() {
    for seed in 0..8 {
        loaded_office(seed, 1500);
    }
}

#[test]
fn a_badly_loaded_office_of_128_agents_elects_one_master_once() {
    // Up to 3 s between runs: an election decided well after its window ended.
    for seed in 100..108 {
        loaded_office(seed, 3000);
    }
}

#[test]
fn a_window_decided_late_still_counts_the_claims_heard_early_in_it() {
    let local = LocalInfo {
        node_id: 1,
        ..LocalInfo::default()
    };
    let mut el = Elections::new(local, Timing::default());
    let t0 = Instant::now();
    el.handle(
        t0,
        Event::Want {
            key: key(),
            share_permille: 0,
        },
    );
    // A better claim answers our request at once...
    let better = Rank {
        preboot: false,
        share_permille: 500,
        weight: 50,
        free_bytes: 0,
        node_id: 2,
    };
    let claim = Message {
        node_id: 2,
        addr: "127.0.0.2".parse().unwrap(),
        key: key(),
        body: Body::Candidate { rank: better },
        host: None,
    };
    el.handle(t0 + ms(10), Event::Received { msg: claim });
    // ...and the window (500 ms) is decided only 1.6 s later: more than two
    // windows after the claim.
    let actions = el.handle(t0 + ms(1_600), Event::Tick);
    assert!(!actions.iter().any(became_master), "{actions:?}");
    assert_eq!(el.status()[0].state, ElectionState::Electing);
}
