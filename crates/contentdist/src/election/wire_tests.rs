//! Wire format: round trips, authentication, and the decoder on hostile input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::wire::{
    decode, encode, is_valid_host_name, is_valid_master_name, Body, HolderNote, MasterAnnounce,
    Message, P2pKey, MAX_HOST_LEN, MAX_MESSAGE_LEN, MAX_NAME_LEN,
};
use super::{AuthMismatch, Rank, SiteKey, Stamp, WireError};
use crate::config::{Protocol, Protocols};
use crate::manifest::ContentKey;

const NODE: u64 = 0x0123_4567_89AB_CDEF;

/// Any stamp: the wire only carries it (the replay guard checks it).
pub(super) const STAMP: Stamp = Stamp {
    time_ms: 1_800_000_000_000,
    counter: 42,
};

/// Authenticate with `key` and [`STAMP`].
pub(super) fn sealed(key: &SiteKey) -> Option<(&SiteKey, Stamp)> {
    Some((key, STAMP))
}

fn rank() -> Rank {
    Rank {
        preboot: false,
        share_permille: 200,
        weight: 61,
        free_bytes: 1 << 40,
        node_id: NODE,
    }
}

fn master() -> MasterAnnounce {
    MasterAnnounce {
        rank: rank(),
        term: 7,
        http_port: 5080,
        https_port: 5443,
        protocols: Protocols::NONE.with(Protocol::Http).with(Protocol::Https),
        p2p_key: P2pKey([0xA5; 32]),
        cert_fingerprint: Some([0x5A; 32]),
        names: vec!["agent7".into(), "agent7.branch.example.com".into()],
    }
}

fn msg(body: Body) -> Message {
    Message {
        node_id: NODE,
        addr: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        key: ContentKey::new("PKG00001", 3).unwrap(),
        body,
        host: None,
    }
}

fn every_kind() -> Vec<Message> {
    let mut no_fp = master();
    no_fp.cert_fingerprint = None;
    no_fp.names.clear();
    let mut v6 = msg(Body::Request);
    v6.addr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 1, 2, 3, 4));
    vec![
        msg(Body::Request),
        v6,
        msg(Body::Candidate { rank: rank() }),
        msg(Body::Master(master())),
        msg(Body::Master(no_fp)),
        msg(Body::Heartbeat {
            rank: Rank {
                preboot: true,
                ..rank()
            },
            term: 9,
        }),
        msg(Body::Done { term: 3 }),
        msg(Body::Resign { term: u64::MAX }),
        msg(Body::Holder(HolderNote {
            share_permille: 1000,
            p2p_key: P2pKey([0xA5; 32]),
        })),
        msg(Body::WhoHolds { above_permille: 0 }),
        msg(Body::WhoHolds {
            above_permille: 1000,
        }),
    ]
}

#[test]
fn every_kind_round_trips_with_and_without_site_key() {
    let key = SiteKey::new(b"site secret");
    for m in every_kind() {
        for k in [None, Some(&key)] {
            let bytes = encode(&m, k.map(|k| (k, STAMP))).unwrap();
            assert!(bytes.len() <= MAX_MESSAGE_LEN, "{} bytes", bytes.len());
            assert_eq!(decode(&bytes, k).unwrap(), m, "key {}", k.is_some());
        }
    }
}

#[test]
fn p2p_key_is_in_clear_without_site_key_and_hidden_with_it() {
    let m = msg(Body::Master(master()));
    let clear = encode(&m, None).unwrap();
    assert!(clear.windows(32).any(|w| w == [0xA5; 32]));
    let key = SiteKey::new(b"site secret");
    let a = encode(&m, sealed(&key)).unwrap();
    let b = encode(&m, sealed(&key)).unwrap();
    assert!(!a.windows(32).any(|w| w == [0xA5; 32]));
    // A fresh nonce per message: the same key never gives the same ciphertext.
    assert_ne!(a, b);
}

#[test]
fn a_holder_querys_share_is_bounded() {
    let ask = |above_permille| msg(Body::WhoHolds { above_permille });
    let over = WireError::BadField {
        field: "share",
        value: 1001,
    };
    assert_eq!(encode(&ask(1001), None), Err(over.clone()));
    let mut t = encode(&ask(300), None).unwrap();
    // The share follows the id (8) and version (4); set it to 1001 on the wire.
    t[21 + 8 + 4..21 + 8 + 4 + 2].copy_from_slice(&1001u16.to_be_bytes());
    assert_eq!(decode(&t, None), Err(over));
    // Nothing after the share but the host name: cut short in it.
    let clear = encode(&ask(300), None).unwrap();
    assert_eq!(
        decode(&clear[..21 + 8 + 4 + 1], None),
        Err(WireError::TooShort { field: "share" })
    );
}

#[test]
fn a_holders_p2p_key_is_hidden_with_a_site_key_and_its_share_is_bounded() {
    let note = |share| {
        msg(Body::Holder(HolderNote {
            share_permille: share,
            p2p_key: P2pKey([0xA5; 32]),
        }))
    };
    let clear = encode(&note(500), None).unwrap();
    assert!(clear.windows(32).any(|w| w == [0xA5; 32]));
    let key = SiteKey::new(b"site secret");
    let sealed_bytes = encode(&note(500), sealed(&key)).unwrap();
    assert!(!sealed_bytes.windows(32).any(|w| w == [0xA5; 32]));
    assert_eq!(decode(&sealed_bytes, Some(&key)).unwrap(), note(500));
    let over = WireError::BadField {
        field: "share",
        value: 1001,
    };
    assert_eq!(encode(&note(1001), None), Err(over.clone()));
    // The share follows the id (8) and version (4); set it to 1001 on the wire.
    let mut t = clear.clone();
    t[21 + 8 + 4..21 + 8 + 4 + 2].copy_from_slice(&1001u16.to_be_bytes());
    assert_eq!(decode(&t, None), Err(over));
    // Cut short in the key.
    assert_eq!(
        decode(&clear[..clear.len() - 10], None),
        Err(WireError::TooShort { field: "p2p key" })
    );
}

#[test]
fn any_altered_byte_of_an_authenticated_message_is_refused() {
    let key = SiteKey::new(b"site secret");
    for m in every_kind() {
        let bytes = encode(&m, sealed(&key)).unwrap();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            let err = decode(&t, Some(&key)).unwrap_err();
            // After the fixed header (magic, version, kind, flags) only the tag decides.
            if i >= 7 {
                assert_eq!(err, WireError::BadTag, "byte {i}");
            }
        }
        assert_eq!(
            decode(&bytes[..bytes.len() - 1], Some(&key)),
            Err(WireError::BadTag)
        );
    }
}

#[test]
fn wrong_site_key_is_refused() {
    let m = msg(Body::Master(master()));
    let bytes = encode(&m, sealed(&SiteKey::new(b"site A"))).unwrap();
    assert_eq!(
        decode(&bytes, Some(&SiteKey::new(b"site B"))),
        Err(WireError::BadTag)
    );
}

#[test]
fn authentication_must_match_on_both_sides() {
    let key = SiteKey::new(b"site secret");
    let m = msg(Body::Candidate { rank: rank() });
    let tagged = encode(&m, sealed(&key)).unwrap();
    let plain = encode(&m, None).unwrap();
    assert_eq!(
        decode(&tagged, None),
        Err(WireError::Unauthenticated(AuthMismatch::NoSiteKey))
    );
    assert_eq!(
        decode(&plain, Some(&key)),
        Err(WireError::Unauthenticated(AuthMismatch::MissingTag))
    );
    // Setting the flag on a plain message does not make it pass.
    let mut forged = plain.clone();
    forged[6] = 1;
    forged.extend_from_slice(&[0; 16]);
    assert_eq!(decode(&forged, Some(&key)), Err(WireError::BadTag));
}

#[test]
fn malformed_messages_get_the_error_that_names_the_problem() {
    let good = encode(&msg(Body::Candidate { rank: rank() }), None).unwrap();
    let with = |i: usize, b: u8| {
        let mut t = good.clone();
        t[i] = b;
        decode(&t, None)
    };
    assert_eq!(
        decode(&[], None),
        Err(WireError::TooShort { field: "magic" })
    );
    assert_eq!(with(0, b'X'), Err(WireError::BadMagic));
    // Versions 1 (no stamp), 2 (no master names), 3 (no sender's host name), 4 (no
    // holder), 5 (no holder query) and versions from the future are refused alike.
    assert_eq!(with(4, 1), Err(WireError::UnsupportedVersion(1)));
    assert_eq!(with(4, 2), Err(WireError::UnsupportedVersion(2)));
    assert_eq!(with(4, 3), Err(WireError::UnsupportedVersion(3)));
    assert_eq!(with(4, 4), Err(WireError::UnsupportedVersion(4)));
    assert_eq!(with(4, 5), Err(WireError::UnsupportedVersion(5)));
    assert_eq!(with(4, 7), Err(WireError::UnsupportedVersion(7)));
    assert_eq!(with(5, 0), Err(WireError::UnknownKind(0)));
    assert_eq!(with(5, 9), Err(WireError::UnknownKind(9)));
    assert_eq!(with(6, 0x80), Err(WireError::UnknownFlags(0x80)));
    assert_eq!(with(15, 5), Err(WireError::BadAddressFamily(5)));
    // Address 10.1.2.3 is bytes 16..20; the id length is byte 20, the id starts at 21.
    assert!(matches!(with(20, 0), Err(WireError::BadContentId { .. })));
    assert!(matches!(with(20, 65), Err(WireError::BadContentId { .. })));
    assert!(matches!(
        with(21, b'/'),
        Err(WireError::BadContentId { .. })
    ));
    // Rank after id (8) and version (4): flags, share, weight.
    let r = 21 + 8 + 4;
    assert_eq!(
        with(r, 2).unwrap_err(),
        WireError::BadField {
            field: "rank flags",
            value: 2
        }
    );
    assert_eq!(
        with(r + 1, 0xFF).unwrap_err(),
        WireError::BadField {
            field: "share",
            value: 0xFF00 + 200
        }
    );
    assert_eq!(
        with(r + 3, 100).unwrap_err(),
        WireError::BadField {
            field: "weight",
            value: 100
        }
    );
    let mut long = good.clone();
    long.push(0);
    assert_eq!(decode(&long, None), Err(WireError::TrailingBytes(1)));
    // The last byte is the (empty) host name's length; before it, the free bytes.
    assert_eq!(
        decode(&good[..good.len() - 2], None),
        Err(WireError::TooShort {
            field: "free bytes"
        })
    );
}

#[test]
fn encode_refuses_what_decode_would_refuse() {
    // A message with an id decode refuses cannot be built: the key refuses it first.
    assert!(ContentKey::new("../etc", 3).is_err());
    assert!(ContentKey::new("x".repeat(65), 3).is_err());
    let other = Rank {
        node_id: 1,
        ..rank()
    };
    assert_eq!(
        encode(&msg(Body::Candidate { rank: other }), None),
        Err(WireError::RankNodeMismatch {
            rank: 1,
            sender: NODE
        })
    );
    let share = Rank {
        share_permille: 1001,
        ..rank()
    };
    assert!(encode(&msg(Body::Candidate { rank: share }), None).is_err());
    let weight = Rank {
        weight: 100,
        ..rank()
    };
    assert!(encode(&msg(Body::Candidate { rank: weight }), None).is_err());
}

#[test]
fn errors_map_to_catalogue_codes() {
    use crate::codes::Code;
    assert_eq!(WireError::BadTag.code(), Code::SECURE_FAILURE);
    assert_eq!(
        WireError::Unauthenticated(AuthMismatch::MissingTag).code(),
        Code::SECURE_FAILURE
    );
    assert_eq!(WireError::BadMagic.code(), Code::INVALID_SERVER_RESPONSE);
    assert_eq!(
        WireError::BadContentId { reason: "x" }.code(),
        Code::INVALID_PACKAGE_PATH
    );
    assert_eq!(
        WireError::BadName { reason: "x" }.code(),
        Code::INVALID_SERVER_RESPONSE
    );
}

/// The error for more than four names.
const TOO_MANY: WireError = WireError::BadName {
    reason: "more than 4 names",
};
/// The error for a name that is empty or longer than 253 bytes.
const BAD_LEN: WireError = WireError::BadName {
    reason: "its length is not 1-253",
};
/// The error for a name with a character outside the rule, or a bad first or last one.
const BAD_CHARS: WireError = WireError::BadName {
    reason: "not [A-Za-z0-9.-], or starts or ends with - or .",
};

#[test]
fn the_largest_message_round_trips_in_max_message_len() {
    let mut a = master();
    a.names = (b'a'..=b'd')
        .map(|c| char::from(c).to_string().repeat(MAX_NAME_LEN))
        .collect();
    let m = Message {
        addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 1, 2, 3, 4)),
        key: ContentKey::new("x".repeat(64), u32::MAX).unwrap(),
        host: Some("h".repeat(MAX_HOST_LEN)),
        ..msg(Body::Master(a))
    };
    let key = SiteKey::new(b"site secret");
    let bytes = encode(&m, sealed(&key)).unwrap();
    assert_eq!(bytes.len(), MAX_MESSAGE_LEN);
    assert_eq!(decode(&bytes, Some(&key)).unwrap(), m);
}

#[test]
fn master_names_follow_the_dns_rule() {
    for good in [
        "a",
        "agent7",
        "agent7.branch.example.com",
        "10-0-0-7",
        "Host-A.Example.COM",
        &"x".repeat(MAX_NAME_LEN),
    ] {
        assert!(is_valid_master_name(good), "{good}");
    }
    for bad in [
        "",
        &"x".repeat(MAX_NAME_LEN + 1),
        "under_score",
        "space here",
        "agent7.example.com.",
        ".agent7",
        "-agent7",
        "agent7-",
        "h\u{f4}te",
        "agent7\0",
    ] {
        assert!(!is_valid_master_name(bad), "{bad:?}");
    }
}

#[test]
fn encode_refuses_bad_master_names() {
    let with_names = |names: &[&str]| {
        let mut a = master();
        a.names = names.iter().map(|n| n.to_string()).collect();
        encode(&msg(Body::Master(a)), None)
    };
    assert!(with_names(&["a", "b", "c", "d"]).is_ok());
    assert_eq!(with_names(&["a", "b", "c", "d", "e"]), Err(TOO_MANY));
    assert_eq!(with_names(&[""]), Err(BAD_LEN));
    assert_eq!(with_names(&["ok", &"x".repeat(254)]), Err(BAD_LEN));
    for bad in ["under_score", "agent7.", "-agent7", "h\u{f4}te", "a/b"] {
        assert_eq!(with_names(&[bad]), Err(BAD_CHARS), "{bad:?}");
    }
}

#[test]
fn decode_refuses_bad_master_names() {
    let mut a = master();
    a.names.clear();
    let good = encode(&msg(Body::Master(a)), None).unwrap();
    // Without a site key the names end the body; their count is the byte before
    // the (empty) host name's length, the last byte.
    assert_eq!(good[good.len() - 2..], [0, 0]);
    let with_names = |raw: &[u8]| {
        let mut t = good[..good.len() - 2].to_vec();
        t.extend_from_slice(raw);
        t.push(0);
        decode(&t, None)
    };
    let Body::Master(a) = with_names(b"\x02\x05agent\x0ba.b-c.d-e.f").unwrap().body else {
        panic!("not an announcement");
    };
    assert_eq!(a.names, ["agent", "a.b-c.d-e.f"]);
    assert_eq!(with_names(b"\x05\x01a\x01b\x01c\x01d\x01e"), Err(TOO_MANY));
    assert_eq!(with_names(&[0xFF]), Err(TOO_MANY));
    assert_eq!(with_names(b"\x01\x00"), Err(BAD_LEN));
    let mut long = vec![1, 254];
    long.extend_from_slice(&[b'x'; 254]);
    assert_eq!(with_names(&long), Err(BAD_LEN));
    assert_eq!(with_names(b"\x01\x03a_b"), Err(BAD_CHARS));
    assert_eq!(with_names(b"\x01\x06agent."), Err(BAD_CHARS));
    assert_eq!(with_names(b"\x01\x02\xC3\xB4"), Err(BAD_CHARS));
    assert_eq!(
        with_names(b"\x01\x05ab"),
        Err(WireError::TooShort { field: "name" })
    );
    // Cut short: the datagram ends inside the names.
    let cut = |raw: &[u8]| {
        let mut t = good[..good.len() - 2].to_vec();
        t.extend_from_slice(raw);
        decode(&t, None)
    };
    assert_eq!(
        cut(b"\x02\x01a"),
        Err(WireError::TooShort {
            field: "name length"
        })
    );
    assert_eq!(
        cut(b""),
        Err(WireError::TooShort {
            field: "names count"
        })
    );
    assert_eq!(
        with_names(b"\x01\x01a\x00"),
        Err(WireError::TrailingBytes(1))
    );
}

#[test]
fn protocol_bits_outside_smb_http_https_are_refused() {
    let mut a = master();
    a.protocols = Protocols::ALL;
    let good = encode(&msg(Body::Master(a)), None).unwrap();
    // Master body: rank (12), term (8), ports (4), then the protocols byte.
    let at = 21 + 8 + 4 + 12 + 8 + 4;
    assert_eq!(good[at], 0x61);
    let mut bad = good.clone();
    bad[at] = 0x69;
    assert_eq!(
        decode(&bad, None),
        Err(WireError::BadField {
            field: "protocols",
            value: 0x69
        })
    );
}

fn arb_rank(node_id: u64) -> impl Strategy<Value = Rank> {
    (any::<bool>(), 0..=1000u16, 0..=99u8, any::<u64>()).prop_map(
        move |(preboot, share, weight, free)| Rank {
            preboot,
            share_permille: share,
            weight,
            free_bytes: free,
            node_id,
        },
    )
}

/// Up to four names valid by the DNS rule, from one character to the longest.
fn arb_names() -> impl Strategy<Value = Vec<String>> {
    let name = prop_oneof![
        "[A-Za-z0-9]",
        "[A-Za-z0-9][A-Za-z0-9.-]{0,30}[A-Za-z0-9]",
        "[A-Za-z0-9][A-Za-z0-9.-]{200,251}[A-Za-z0-9]",
    ];
    proptest::collection::vec(name, 0..=4)
}

fn arb_body(node_id: u64) -> impl Strategy<Value = Body> {
    let announce = (
        arb_rank(node_id),
        any::<u64>(),
        any::<u16>(),
        any::<u16>(),
        0..8u8,
        any::<[u8; 32]>(),
        any::<Option<[u8; 32]>>(),
        arb_names(),
    )
        .prop_map(|(rank, term, http, https, p, key, fp, names)| {
            let bits = [0, 0x01, 0x20, 0x40, 0x21, 0x41, 0x60, 0x61][p as usize];
            let protocols = Protocols::from_bits(bits);
            Body::Master(MasterAnnounce {
                rank,
                term,
                http_port: http,
                https_port: https,
                protocols,
                p2p_key: P2pKey(key),
                cert_fingerprint: fp,
                names,
            })
        });
    prop_oneof![
        Just(Body::Request),
        arb_rank(node_id).prop_map(|rank| Body::Candidate { rank }),
        announce,
        (arb_rank(node_id), any::<u64>()).prop_map(|(rank, term)| Body::Heartbeat { rank, term }),
        any::<u64>().prop_map(|term| Body::Done { term }),
        any::<u64>().prop_map(|term| Body::Resign { term }),
        (0..=1000u16, any::<[u8; 32]>()).prop_map(|(share, key)| Body::Holder(HolderNote {
            share_permille: share,
            p2p_key: P2pKey(key),
        })),
        (0..=1000u16).prop_map(|above_permille| Body::WhoHolds { above_permille }),
    ]
}

pub(super) fn arb_message() -> impl Strategy<Value = Message> {
    (
        any::<u64>(),
        any::<IpAddr>(),
        "[A-Za-z0-9._-]{1,64}".prop_filter("not . or ..", |s| s != "." && s != ".."),
        any::<u32>(),
    )
        .prop_flat_map(|(node_id, addr, id, version)| {
            let host = proptest::option::of("[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?");
            (arb_body(node_id), host).prop_map(move |(body, host)| Message {
                node_id,
                addr,
                key: ContentKey::new(id.clone(), version).unwrap(),
                body,
                host,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decode_of_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..MAX_MESSAGE_LEN + 64)) {
        let key = SiteKey::new(b"k");
        let _ = decode(&bytes, None);
        let _ = decode(&bytes, Some(&key));
    }

    #[test]
    fn decode_of_a_damaged_message_never_panics(
        m in arb_message(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        // Random bytes rarely get past the magic: damage real messages instead.
        let mut bytes = encode(&m, None).unwrap();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let cut = cut.index(bytes.len() + 1);
        let _ = decode(&bytes[..cut], None);
        // What still decodes has exactly one encoding: the bytes it came from.
        if let Ok(m) = decode(&bytes, None) {
            prop_assert_eq!(encode(&m, None).unwrap(), bytes);
        }
    }

    #[test]
    fn decode_inverts_encode(m in arb_message()) {
        let key = SiteKey::new(b"site secret");
        prop_assert_eq!(decode(&encode(&m, None).unwrap(), None).unwrap(), m.clone());
        prop_assert_eq!(decode(&encode(&m, sealed(&key)).unwrap(), Some(&key)).unwrap(), m);
    }
}

/// The error for a sender's host name that is not one DNS label.
const BAD_HOST: WireError = WireError::BadName {
    reason: "the sender's host name is not one DNS label of 1-63 [A-Za-z0-9-]",
};

#[test]
fn every_kind_carries_the_senders_host_name_and_a_bad_one_is_refused_both_ways() {
    for body in [
        Body::Request,
        Body::Candidate { rank: rank() },
        Body::Master(master()),
        Body::Done { term: 3 },
    ] {
        let m = Message {
            host: Some("Branch-PC-07".into()),
            ..msg(body)
        };
        let bytes = encode(&m, None).unwrap();
        assert_eq!(decode(&bytes, None).unwrap(), m);
        // The name is the last field: its length byte, then its bytes.
        assert_eq!(&bytes[bytes.len() - 13..], b"\x0cBranch-PC-07");
    }
    for bad in [
        "",
        "pc.example.com",
        "-pc",
        "pc-",
        "pc_7",
        "p c",
        &"h".repeat(64),
    ] {
        let m = Message {
            host: Some(bad.into()),
            ..msg(Body::Request)
        };
        assert_eq!(encode(&m, None), Err(BAD_HOST), "{bad:?}");
        assert!(!is_valid_host_name(bad), "{bad:?}");
    }
    // Decoding refuses what encoding would: a dot, a length over 63, a cut name.
    let good = encode(
        &Message {
            host: Some("pc7".into()),
            ..msg(Body::Request)
        },
        None,
    )
    .unwrap();
    let mut dotted = good.clone();
    let n = dotted.len();
    dotted[n - 2] = b'.';
    assert_eq!(decode(&dotted, None), Err(BAD_HOST));
    let mut long = good[..n - 4].to_vec();
    long.push(64);
    long.extend_from_slice(&[b'h'; 64]);
    assert_eq!(decode(&long, None), Err(BAD_HOST));
    assert_eq!(
        decode(&good[..n - 1], None),
        Err(WireError::TooShort { field: "host name" })
    );
    // No host name: one zero byte.
    let none = encode(&msg(Body::Request), None).unwrap();
    assert_eq!(none.last(), Some(&0));
}
