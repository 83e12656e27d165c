//! The head start (`slot/head_start.rs`) on the simulated subnet: the best candidate
//! so far starts downloading once the election is quiet, and a head start never
//! outlives a better claim it cannot outrank.

use std::time::Duration;

use super::sim::{key, ms, node_id, spec, Net, Spec};
use super::{Action, ElectionState, Event, Timing};

fn is_head_start(a: &Action) -> bool {
    matches!(a, Action::HeadStart { .. })
}
fn is_ended(a: &Action) -> bool {
    matches!(a, Action::HeadStartEnded { .. })
}

/// When node `i` first logged an action matching `f`.
fn first(net: &Net, i: usize, f: impl Fn(&Action) -> bool) -> Option<Duration> {
    net.nodes[i].log.iter().find(|(_, a)| f(a)).map(|(t, _)| *t)
}

/// The role-changing actions node `i` logged, in order (broadcasts left out).
fn roles(net: &Net, i: usize) -> Vec<&'static str> {
    net.nodes[i]
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Broadcast(_) => None,
            Action::BecomeMaster { .. } => Some("become"),
            Action::FollowMaster { .. } => Some("follow"),
            Action::MasterLost { .. } => Some("lost"),
            Action::StopMaster { .. } => Some("stop"),
            Action::HeadStart { .. } => Some("head start"),
            Action::HeadStartEnded { .. } => Some("ended"),
        })
        .collect()
}

fn progress(net: &mut Net, i: usize, share: u16) {
    net.event(
        i,
        Event::Progress {
            key: key(),
            share_permille: share,
        },
    );
}

#[test]
fn an_agent_alone_starts_its_download_after_the_quiet_time_and_keeps_it_as_master() {
    let mut net = Net::new(&[spec(50)], 1);
    net.want(0, 0);
    net.run_until(ms(49));
    assert_eq!(net.count(0, is_head_start), 0);
    net.run_until(ms(60));
    assert_eq!(first(&net, 0, is_head_start), Some(ms(50)));
    assert_eq!(net.state(0), Some(ElectionState::Electing));
    net.run_until(ms(600));
    assert_eq!(net.masters(), vec![0]);
    assert_eq!(roles(&net, 0), ["head start", "become"]);
}

#[test]
fn of_sixteen_agents_asking_at_once_only_the_winner_starts_early() {
    for seed in 0..20 {
        let weights = [
            50, 61, 40, 30, 61, 50, 45, 50, 50, 40, 30, 61, 50, 50, 45, 10,
        ];
        let specs: Vec<Spec> = weights.iter().map(|&w| spec(w)).collect();
        let mut net = Net::new(&specs, seed);
        net.delay_ms = (0, 5);
        for i in 0..specs.len() {
            net.want(i, 0);
        }
        net.run_until(ms(2_000));
        let masters = net.masters();
        assert_eq!(masters.len(), 1, "seed {seed}");
        let m = masters[0];
        // The best: weight 61, then the highest node id among those.
        assert_eq!(m, 11, "seed {seed}");
        assert_eq!(roles(&net, m), ["head start", "become"], "seed {seed}");
        // Quiet since the last claim (at most 5 ms late), well before the window's end.
        let t = first(&net, m, is_head_start).unwrap();
        assert!(t >= ms(50) && t <= ms(60), "seed {seed}: {t:?}");
        for i in (0..specs.len()).filter(|&i| i != m) {
            assert_eq!(roles(&net, i), ["follow"], "seed {seed} node {i}");
        }
        assert!(net.all_follow(m));
    }
}

#[test]
fn claims_still_arriving_hold_the_head_start_back() {
    let mut net = Net::new(&[spec(61), spec(50), spec(50), spec(50), spec(50)], 3);
    net.delay_ms = (0, 0);
    // Node 0 ranks best; the others join one every 30 ms, each claim restarting
    // the quiet time.
    net.want(0, 0);
    for i in 1..5 {
        net.run_until(ms(30 * i as u64));
        net.want(i, 0);
    }
    net.run_until(ms(2_000));
    assert_eq!(first(&net, 0, is_head_start), Some(ms(170)));
    assert_eq!(net.masters(), vec![0]);
    assert_eq!(roles(&net, 0), ["head start", "become"]);
}

#[test]
fn a_late_claim_with_a_better_weight_does_not_end_a_head_start() {
    let mut net = Net::new(&[spec(50), spec(61)], 4);
    net.want(0, 0);
    net.run_until(ms(100));
    assert_eq!(net.count(0, is_head_start), 1);
    // A server asks 100 ms later. Node 0 has verified nothing yet, but a download
    // under way counts as a permille: it answers with that, both pick it, and
    // nothing it fetched is fetched again.
    net.want(1, 0);
    net.run_until(ms(1_000));
    assert_eq!(net.masters(), vec![0]);
    assert_eq!(roles(&net, 0), ["head start", "become"]);
    assert_eq!(roles(&net, 1), ["follow"]);
}

#[test]
fn a_late_claim_holding_more_ends_a_head_start() {
    let mut net = Net::new(&[spec(50), spec(40)], 5);
    net.want(0, 0);
    net.run_until(ms(100));
    progress(&mut net, 0, 3);
    // An agent that holds 20 permille already (an earlier, interrupted download)
    // asks 100 ms later: it ranks first, node 0 stops and follows it.
    net.want(1, 20);
    net.run_until(ms(1_000));
    assert_eq!(net.masters(), vec![1]);
    assert_eq!(roles(&net, 0), ["head start", "ended", "follow"]);
    assert_eq!(roles(&net, 1), ["head start", "become"]);
    assert!(net.all_follow(1));
}

#[test]
fn a_head_start_with_a_share_outranks_a_latecomer_with_less() {
    let mut net = Net::new(&[spec(50), spec(61)], 5);
    net.want(0, 0);
    net.run_until(ms(100));
    // 50 ms of download: 30 permille verified.
    progress(&mut net, 0, 30);
    net.want(1, 20);
    net.run_until(ms(1_000));
    assert_eq!(net.masters(), vec![0]);
    assert_eq!(roles(&net, 0), ["head start", "become"]);
    assert_eq!(roles(&net, 1), ["follow"]);
    assert_eq!(net.count(0, is_ended), 0);
}

#[test]
fn a_live_master_ends_a_head_start_and_is_followed() {
    let mut net = Net::new(&[spec(50), spec(40)], 6);
    // Node 1 hears nothing of node 0 (a partition that heals later): not its
    // election, not its answer to node 1's request. It starts early alone, then
    // hears the master's heartbeat at 1.5 s, before its window ends at 1.6 s.
    net.nodes[1].group = 1;
    net.want(0, 0);
    net.run_until(ms(1_000));
    assert_eq!(net.masters(), vec![0]);
    net.run_until(ms(1_100));
    net.want(1, 0);
    net.run_until(ms(1_200));
    assert_eq!(net.count(1, is_head_start), 1);
    net.nodes[1].group = 0;
    net.run_until(ms(3_000));
    assert_eq!(net.masters(), vec![0]);
    assert!(net.all_follow(0));
    assert_eq!(roles(&net, 1), ["head start", "ended", "follow"]);
}

#[test]
fn a_job_that_leaves_during_its_head_start_ends_it() {
    let mut net = Net::new(&[spec(50)], 7);
    net.want(0, 0);
    net.run_until(ms(100));
    net.event(0, Event::Forget { key: key() });
    assert_eq!(roles(&net, 0), ["head start", "ended"]);
    net.run_until(ms(1_000));
    assert!(net.masters().is_empty());
}

#[test]
fn without_head_starts_the_winner_starts_at_the_window_end() {
    let timing = Timing {
        head_start_quiet: None,
        ..Timing::default()
    };
    let mut net = Net::with_timing(&[spec(50), spec(61)], 8, timing);
    net.want(0, 0);
    net.want(1, 0);
    net.run_until(ms(2_000));
    assert_eq!(net.masters(), vec![1]);
    assert_eq!(roles(&net, 1), ["become"]);
    assert_eq!(roles(&net, 0), ["follow"]);
    assert_eq!(
        first(&net, 1, |a| matches!(a, Action::BecomeMaster { .. })),
        Some(ms(500))
    );
    assert_eq!(node_id(1), net.status(0).unwrap().master_node.unwrap());
}

#[test]
fn newcomers_arriving_faster_than_the_master_may_answer_do_not_start() {
    // A master, then a newcomer every 40 ms: more requests than the answer limit
    // lets the master answer at once (3, then one per 125 ms).
    let specs: Vec<Spec> = (0..12).map(|_| spec(50)).collect();
    let mut net = Net::new(&specs, 9);
    net.want(0, 0);
    net.run_until(ms(1_000));
    assert_eq!(net.masters(), vec![0]);
    for i in 1..12 {
        net.run_until(ms(1_000 + 40 * i as u64));
        net.want(i, 0);
    }
    net.run_until(ms(4_000));
    assert_eq!(net.masters(), vec![0]);
    assert!(net.all_follow(0));
    for i in 1..12 {
        assert_eq!(
            net.count(i, is_head_start),
            0,
            "node {i}: {:?}",
            roles(&net, i)
        );
    }
}

#[test]
fn a_latecomer_to_a_busy_election_waits_for_answers_the_limit_holds_back() {
    // Four agents ask at once (each answers the other three: the burst is spent);
    // node 0 ranks best of them and starts at 50 ms. A server asks at 60 ms: every
    // answer to it is held back until 125 ms.
    let mut net = Net::new(&[spec(50), spec(40), spec(40), spec(40), spec(61)], 10);
    net.delay_ms = (0, 0);
    for i in 0..4 {
        net.want(i, 0);
    }
    net.run_until(ms(60));
    assert_eq!(net.count(0, is_head_start), 1);
    net.want(4, 0);
    net.run_until(ms(2_000));
    assert_eq!(net.masters(), vec![0]);
    assert_eq!(roles(&net, 0), ["head start", "become"]);
    assert_eq!(net.count(4, is_head_start), 0, "{:?}", roles(&net, 4));
}
