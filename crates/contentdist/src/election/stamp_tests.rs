//! The stamp of authenticated messages (since wire version 2), what agents of
//! earlier versions get, and replays on the simulated subnet.

use std::net::{IpAddr, Ipv4Addr};

use super::sim::{key, Net, Spec, WALL_T0_MS};
use super::wire::{decode, decode_stamped, encode, Body, Message, VERSION};
use super::wire_tests::{sealed, STAMP};
use super::{Action, ReplayGuard, SiteKey, Stale, Stamp, WireError};

fn request(node_id: u64) -> Message {
    Message {
        node_id,
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
        key: key(),
        body: Body::Request,
        host: None,
    }
}

#[test]
fn the_stamp_travels_inside_the_tag_and_only_with_a_site_key() {
    let k = SiteKey::new(b"site secret");
    let m = request(9);
    let plain = encode(&m, None).unwrap();
    let tagged = encode(&m, sealed(&k)).unwrap();
    assert_eq!(decode_stamped(&plain, None).unwrap(), (m.clone(), None));
    assert_eq!(decode_stamped(&tagged, Some(&k)).unwrap(), (m, Some(STAMP)));
    // Tag (16) and stamp (16) are all an authenticated message adds.
    assert_eq!(tagged.len(), plain.len() + 32);
    // A replayer cannot refresh the stamp: it is covered by the tag.
    let mut moved = tagged.clone();
    let at = moved.len() - 17;
    moved[at] ^= 1;
    assert_eq!(decode(&moved, Some(&k)), Err(WireError::BadTag));
}

#[test]
fn messages_of_versions_1_and_2_are_refused_by_name() {
    // Version 1 had no stamp, version 2 no master names.
    let k = SiteKey::new(b"site secret");
    for (auth, v) in [None, sealed(&k)]
        .into_iter()
        .flat_map(|a| [(a, 1), (a, 2)])
    {
        let mut old = encode(&request(9), auth).unwrap();
        old[4] = v;
        let err = decode(&old, auth.map(|(k, _)| k)).unwrap_err();
        assert_eq!(err, WireError::UnsupportedVersion(v));
        assert!(
            err.to_string().contains(&format!("speaks {VERSION}")),
            "{err}"
        );
    }
}

#[test]
fn an_authenticated_message_too_short_for_its_stamp_is_refused() {
    // A valid tag over a header that ends before the stamp: crafted by a key holder.
    let k = SiteKey::new(b"site secret");
    let full = encode(&request(9), sealed(&k)).unwrap();
    let header = &full[..20];
    let mut short = header.to_vec();
    short.extend_from_slice(&k.tag(header));
    assert_eq!(
        decode(&short, Some(&k)),
        Err(WireError::TooShort { field: "stamp" })
    );
}

#[test]
fn a_replayed_request_is_dropped_and_counted_after_the_first() {
    let mut net = Net::new(&[Spec::default(), Spec::default()], 31);
    net.site_key = Some(SiteKey::new(b"site secret"));
    net.want(0, 0);
    net.run_until(std::time::Duration::from_millis(1_000));
    assert_eq!(net.masters(), vec![0]);
    // Node 1's request, captured once and replayed 2,000 times to the master.
    let captured = net.encode_from(1, &request(super::sim::node_id(1)));
    let before = net.count(
        0,
        |a| matches!(a, Action::Broadcast(m) if matches!(m.body, Body::Master(_))),
    );
    let accepted = (0..2_000).filter(|_| net.deliver(0, &captured)).count();
    let after = net.count(
        0,
        |a| matches!(a, Action::Broadcast(m) if matches!(m.body, Body::Master(_))),
    );
    assert_eq!(accepted, 1);
    assert_eq!(net.stale, 1_999);
    assert_eq!(after - before, 1, "one announcement for one request");
}

#[test]
fn a_captured_message_is_refused_everywhere_once_out_of_time() {
    let k = SiteKey::new(b"site secret");
    let old = Stamp {
        time_ms: WALL_T0_MS,
        counter: 1,
    };
    let bytes = encode(&request(9), Some((&k, old))).unwrap();
    let (_, stamp) = decode_stamped(&bytes, Some(&k)).unwrap();
    // A guard that never saw it (another agent, or one restarted) refuses it by time.
    let mut fresh_guard = ReplayGuard::default();
    assert!(matches!(
        fresh_guard.check(9, stamp.unwrap(), WALL_T0_MS + 31_000),
        Err(Stale::OutOfWindow { .. })
    ));
    assert!(fresh_guard.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None, ..Default::default() })]

    /// What the fuzz target checks, on well-formed input: the stamp round-trips.
    #[test]
    fn any_stamp_round_trips_with_its_message(
        m in super::wire_tests::arb_message(),
        time_ms in proptest::prelude::any::<u64>(),
        counter in proptest::prelude::any::<u64>(),
    ) {
        let k = SiteKey::new(b"site secret");
        let stamp = Stamp { time_ms, counter };
        let bytes = encode(&m, Some((&k, stamp))).unwrap();
        proptest::prop_assert_eq!(decode_stamped(&bytes, Some(&k)).unwrap(), (m, Some(stamp)));
    }
}
