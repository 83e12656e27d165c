//! Randomized elections on the simulated subnet: random agents, start times,
//! delays and drops; the outcome must always settle on one master.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::sim::{key, ms, node_id, Net, Spec};
use super::{Action, ElectionState, Event, SiteKey};

/// How hostile the simulated subnet is.
struct Chaos {
    /// Each run draws its drop probability from 0..=max_drop.
    max_drop: f64,
    /// Each delivery is delayed by 0..=max_delay_ms.
    max_delay_ms: u64,
    /// Agents start at random times in 0..=start_spread_ms.
    start_spread_ms: u64,
    /// Stop dropping messages at 25 s and check at 40 s (else check at 20 s and
    /// 25 s with drops going on).
    heal: bool,
}

/// One randomized election: 2–16 agents with random ranks (some preboot, some
/// weight 0, some holding the content already). After settling there is at most
/// one master, exactly one if any agent may be master, and every agent that wants
/// the content follows it.
fn random_election(seed: u64, chaos: &Chaos) {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rng.random_range(2..=16);
    let specs: Vec<Spec> = (0..n)
        .map(|_| {
            let preboot = rng.random_bool(0.1);
            Spec {
                preboot,
                weight: match rng.random_range(0..10) {
                    0 => 0,
                    _ if preboot => 10,
                    _ => rng.random_range(1..=99),
                },
                free_bytes: rng.random_range(0..4) << 30,
            }
        })
        .collect();
    let mut net = Net::new(&specs, seed);
    net.delay_ms = (0, chaos.max_delay_ms);
    net.drop = rng.random_range(0.0..=chaos.max_drop);
    if seed.is_multiple_of(4) {
        net.site_key = Some(SiteKey::new(b"random site"));
    }
    let mut starts: Vec<(u64, usize, Option<u16>)> = (0..n)
        .map(|i| {
            // One in eight holds the content already; the others want it.
            let share = (!rng.random_bool(0.125)).then(|| rng.random_range(0..=1000));
            (rng.random_range(0..=chaos.start_spread_ms), i, share)
        })
        .collect();
    starts.sort();
    for &(at, i, share) in &starts {
        net.run_until(ms(at));
        match share {
            Some(share) => net.want(i, share),
            None => net.event(i, Event::Complete { key: key() }),
        }
    }
    let wanters: Vec<usize> = starts
        .iter()
        .filter(|s| s.2.is_some())
        .map(|s| s.1)
        .collect();
    let eligible = specs.iter().any(|s| !s.preboot && s.weight > 0);
    let ctx = format!(
        "seed {seed}: n {n}, drop {:.3}, specs {specs:?}, starts {starts:?}",
        net.drop
    );
    // Long enough for a preboot-only start to retry (10 s) and for drops to heal.
    let checks = if chaos.heal {
        net.run_until(ms(25_000));
        net.drop = 0.0;
        vec![ms(40_000)]
    } else {
        vec![ms(20_000), ms(25_000)]
    };
    for check in checks {
        net.run_until(check);
        // Delays reorder messages; the replay guard must still take every one.
        assert_eq!(net.stale, 0, "genuine messages refused as stale; {ctx}");
        let masters = net.masters();
        assert!(
            masters.len() <= 1,
            "two masters {masters:?} at {check:?}; {ctx}"
        );
        if wanters.is_empty() {
            continue;
        }
        if !eligible {
            assert!(masters.is_empty(), "{ctx}");
            for &i in &wanters {
                assert_eq!(net.state(i), Some(ElectionState::Electing), "{ctx}");
            }
            continue;
        }
        let Some(&m) = masters.first() else {
            panic!("no master at {check:?}; {ctx}");
        };
        for &i in wanters.iter().filter(|&&i| i != m) {
            let s = net.status(i).unwrap();
            assert_eq!(
                (s.state, s.master_node),
                (ElectionState::Following, Some(node_id(m))),
                "node {i} at {check:?}; {ctx}"
            );
        }
    }
    for i in 0..n {
        check_head_starts(&net, i, &ctx);
    }
}

/// Every head start of node `i` ends in exactly one way (`BecomeMaster` or
/// `HeadStartEnded`) before it follows anyone or starts again, and one still
/// running belongs to an election still running (STATE.md, invariants 12 and 13).
fn check_head_starts(net: &Net, i: usize, ctx: &str) {
    let mut running = false;
    for (at, a) in &net.nodes[i].log {
        match a {
            Action::HeadStart { .. } => {
                assert!(!running, "node {i}: head start twice at {at:?}; {ctx}");
                running = true;
            }
            Action::HeadStartEnded { .. } => {
                assert!(
                    running,
                    "node {i}: ended what never started at {at:?}; {ctx}"
                );
                running = false;
            }
            Action::BecomeMaster { .. } => running = false,
            Action::FollowMaster { .. } => {
                assert!(
                    !running,
                    "node {i}: follows with a head start at {at:?}; {ctx}"
                );
            }
            _ => {}
        }
    }
    if running {
        assert_eq!(
            net.state(i),
            Some(ElectionState::Electing),
            "node {i}; {ctx}"
        );
    }
}

const LAN: Chaos = Chaos {
    max_drop: 0.05,
    max_delay_ms: 50,
    start_spread_ms: 3_000,
    heal: false,
};

#[test]
fn randomized_elections_settle_on_one_master_followed_by_all_0_to_49() {
    for seed in 0..50 {
        random_election(seed, &LAN);
    }
}

#[test]
fn randomized_elections_settle_on_one_master_followed_by_all_50_to_99() {
    for seed in 50..100 {
        random_election(seed, &LAN);
    }
}

#[test]
fn elections_recover_from_a_very_lossy_network_once_it_heals() {
    // Up to 40% drops and 300 ms delays give transient double masters and lost
    // masters; none may last once the network behaves.
    let storm = Chaos {
        max_drop: 0.4,
        max_delay_ms: 300,
        start_spread_ms: 1_000,
        heal: true,
    };
    for seed in 1000..1030 {
        random_election(seed, &storm);
    }
}
