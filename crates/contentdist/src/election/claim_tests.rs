//! An agent's rank changes while its election runs (the driver measures the free
//! cache space again, a share grows): the others judge it by the claim it sent, so
//! it must judge itself by that claim too. In the lab (4 agents, one disk) an agent
//! whose free space was measured again just after its claim went out decided with
//! the lower figure and waited for the runner-up, while everyone else waited for
//! it: nobody was master until the waits timed out, 4.5 s instead of 0.5 s.

use super::sim::{key, ms, node_id, Net, Spec};
use super::{Action, Body, ElectionState, Elections, Event, Instant, LocalInfo, Message, Rank};

fn became_master(a: &Action) -> bool {
    matches!(a, Action::BecomeMaster { .. })
}

#[test]
fn an_agent_whose_free_space_shrinks_after_its_claim_still_wins_with_that_claim() {
    // One disk: every claim says the same free space, so the highest node id wins.
    let mut net = Net::new(&[Spec::default(); 4], 7);
    for i in 0..4 {
        net.want(i, 0);
    }
    // Every request is answered: the claims the others count are in.
    net.run_until(ms(10));
    // Then the best agent measures its free space again: the others' manifests
    // took a few blocks. It claims nothing more in this election.
    let shrunk = Spec::default().free_bytes - 3 * 4096;
    net.nodes[3].el.set_free_bytes(shrunk);
    // One window and a little: the election is over.
    net.run_until(ms(600));
    assert_eq!(net.masters(), vec![3], "{:?}", net.nodes[3].log);
    assert!(net.all_follow(3));
    net.run_until(ms(10_000));
    let masterships: usize = (0..4).map(|i| net.count(i, became_master)).sum();
    assert_eq!(masterships, 1);
}

#[test]
fn the_window_is_decided_with_the_rank_claimed_not_the_rank_now() {
    let local = LocalInfo {
        node_id: 1,
        free_bytes: 1_000_000,
        ..LocalInfo::default()
    };
    let mut el = Elections::new(local, Default::default());
    let t0 = Instant::now();
    el.handle(
        t0,
        Event::Want {
            key: key(),
            share_permille: 0,
        },
    );
    // A rival claims less than we claimed, so it waits for us...
    let rival = Rank {
        preboot: false,
        share_permille: 0,
        weight: 50,
        free_bytes: 999_000,
        node_id: node_id(5),
    };
    let claim = Message {
        node_id: rival.node_id,
        addr: "127.0.0.6".parse().unwrap(),
        key: key(),
        body: Body::Candidate { rank: rival },
        host: None,
    };
    el.handle(t0 + ms(5), Event::Received { msg: claim });
    // ...but our free space, measured again, is now below its claim.
    el.set_free_bytes(998_000);
    let actions = el.handle(t0 + ms(500), Event::Tick);
    assert!(actions.iter().any(became_master), "{actions:?}");
    assert_eq!(el.status()[0].state, ElectionState::Master);
}
