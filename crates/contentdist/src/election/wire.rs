//! Election messages and their binary format (version 6).
//!
//! The original product's packet format is not public; this one is ours. All
//! integers are big-endian.
//!
//! ```text
//! offset size  field
//! 0      4     magic "CDEL"
//! 4      1     protocol version (6; versions 1 (no stamp), 2 (no master
//!              names), 3 (no sender's host name), 4 (no holder) and 5 (no
//!              holder query) are refused)
//! 5      1     kind: 1 request, 2 candidate, 3 master, 4 heartbeat, 5 done, 6 resign,
//!              7 holder, 8 holder query
//! 6      1     flags: 0x01 = authenticated (site key); other bits must be 0
//! 7      8     sender node id
//! 15     1     address family (4 or 6), then 4 or 16 address bytes
//! ..     1     content id length (1..=64), then the id ([A-Za-z0-9._-], not "." or "..")
//! ..     4     content version
//! ..           body, by kind:
//!                request:   (empty)
//!                candidate: rank
//!                master:    rank, term u64, http port u16, https port u16,
//!                           protocols u8 (0x01 SMB, 0x20 HTTP, 0x40 HTTPS),
//!                           [nonce 16 bytes, authenticated only], p2p key 32 bytes,
//!                           fingerprint flag u8 (0 or 1), [fingerprint 32 bytes],
//!                           names count u8 (0..=4), then per name:
//!                             length u8 (1..=253), the name's ASCII bytes
//!                heartbeat: rank, term u64
//!                done, resign: term u64
//!                holder:    share u16 (<= 1000), [nonce 16 bytes, authenticated
//!                           only], p2p key 32 bytes
//!                holder query: share u16 (<= 1000)
//!              rank = flags u8 (0x01 preboot), share u16 (<= 1000), weight u8 (<= 99),
//!                     free bytes u64; its node id is the sender's
//!              name = a DNS name (see [`is_valid_master_name`]): letters, digits,
//!                     `-` and `.`, not starting or ending with `-` or `.`
//! ..     1     sender's host name length (0..=63; 0: none), then the name: one DNS
//!              label (see [`is_valid_host_name`])
//! ..     16    authenticated only: stamp = sender time u64 (ms since the Unix
//!              epoch), sender counter u64 (see `fresh.rs`)
//! end-16 16    authenticated only: HMAC-SHA256 tag over every byte before it
//! ```
//!
//! Without a site key, messages carry no tag and the master's P2P key travels in
//! clear: anyone on the subnet can read it (the original's default 40-bit RC2 gives
//! no real protection either). With a site key, the P2P key is encrypted (see
//! [`SiteKey`]) and every message is authenticated and stamped: the receiver's
//! [`ReplayGuard`](super::ReplayGuard) drops a message seen before or more than 30 s
//! off its clock. Without a site key nothing stops a replay (or a forgery), so a
//! stamp would mean nothing and none is sent.
//!
//! The master's names (host name, FQDN) let peers check a PKI certificate's name
//! against the master they were told about; the fingerprint pins a self-signed one.
//! Every message also carries its sender's host name: a master's SMB server needs
//! to know a machine account before that machine logs on (see [`crate::smb`]), and
//! a peer's request or claim reaches the master before the peer can copy.
//!
//! A holder message is not part of the election: a FanOut peer copying over SMB
//! says with it that its own share holds some of the content, and with which P2P
//! key its account logs on (encrypted like a master's), so that the other peers
//! copy from it too (see [`crate::subnet`]'s holder ads). Over HTTP the master
//! passes holders on instead; SMB has no such channel. A holder query asks the
//! holders of a content that hold more than a share to say so with a holder
//! message: a peer that starts copying after the others finished (and fell
//! silent) learns of them that way, and keeps them in mind by asking again.
//!
//! Decoding is total: any byte string gives a [`Message`] or a [`WireError`], never
//! a panic (a proptest and a cargo-fuzz target check it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::RngCore;

use super::auth::{SiteKey, NONCE_LEN, TAG_LEN};
use super::error::{AuthMismatch, WireError};
use super::fresh::Stamp;
use super::rank::{Rank, FULL_SHARE, MAX_WEIGHT};
use crate::config::Protocols;
use crate::manifest::ContentKey;

/// The first four bytes of every election message.
pub const MAGIC: [u8; 4] = *b"CDEL";
/// The protocol version this module speaks.
pub const VERSION: u8 = 6;
/// The longest content id a message may carry.
pub const MAX_ID_LEN: usize = 64;
/// How many names a master announcement may carry (host name, FQDN, a few aliases).
pub const MAX_NAMES: usize = 4;
/// The longest master name: the longest DNS name in its dotted text form.
pub const MAX_NAME_LEN: usize = 253;
/// The longest sender's host name: one DNS label.
pub const MAX_HOST_LEN: usize = 63;
/// The encoded size of the largest message: an authenticated announcement from an
/// IPv6 address, with a 64-character content id, a fingerprint, four names of 253
/// bytes and a host name of 63 (1,320 bytes: one UDP datagram, unfragmented on an
/// Ethernet MTU).
pub const MAX_MESSAGE_LEN: usize = {
    let header = 4 + 1 + 1 + 1 + 8;
    let addr = 1 + 16;
    let content = 1 + MAX_ID_LEN + 4;
    let rank = 1 + 2 + 1 + 8;
    let master = rank + 8 + 2 + 2 + 1 + NONCE_LEN + 32 + 1 + 32;
    let names = 1 + MAX_NAMES * (1 + MAX_NAME_LEN);
    let host = 1 + MAX_HOST_LEN;
    let stamp = 16;
    header + addr + content + master + names + host + stamp + TAG_LEN
};

const FLAG_AUTH: u8 = 0x01;
const RANK_PREBOOT: u8 = 0x01;

/// The key a master shares at its election; peers derive the credentials of its P2P
/// account from it. `Debug` never prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct P2pKey(pub [u8; 32]);

impl std::fmt::Debug for P2pKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P2pKey(..)")
    }
}

/// One election message: who sends it, for which content, and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender's node id (unique on the subnet).
    pub node_id: u64,
    /// The sender's address, where peers reach its peer-copy server.
    pub addr: IpAddr,
    /// The content (id and version) the message is about.
    pub key: ContentKey,
    /// What the message says.
    pub body: Body,
    /// The sender's host name (valid by [`is_valid_host_name`]), if it has one.
    pub host: Option<String>,
}

/// The kind-specific part of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// "I need this content": holders and wanters answer with a candidate, a master
    /// with its announcement. A master also sends it to re-run the election.
    Request,
    /// "This is my claim to be master."
    Candidate {
        /// The sender's rank; `rank.node_id` is the sender's node id.
        rank: Rank,
    },
    /// "I am master": everything a peer needs to copy from the sender.
    Master(MasterAnnounce),
    /// "I am still master" (every heartbeat interval), with the current share.
    Heartbeat {
        /// The master's current rank.
        rank: Rank,
        /// The master's term.
        term: u64,
    },
    /// "I hold all of the content" (the master keeps serving and heartbeating).
    Done {
        /// The master's term.
        term: u64,
    },
    /// "I hold some of this content, in my own SMB share" (FanOut over SMB): not
    /// part of the election; see [`HolderNote`].
    Holder(HolderNote),
    /// "Who holds more than this share of the content?" (FanOut over SMB): holders
    /// with more answer with a [`Body::Holder`] message. Not part of the election.
    WhoHolds {
        /// The asker's own share, in permille (0..=1000).
        above_permille: u16,
    },
    /// "I am no longer master": followers elect again at once.
    Resign {
        /// The term that ends.
        term: u64,
    },
}

/// The body of a master announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterAnnounce {
    /// The master's current rank.
    pub rank: Rank,
    /// The master's term: one more than the highest term the winner had seen.
    pub term: u64,
    /// TCP port of its HTTP peer-copy server (`P2PHttpPort`).
    pub http_port: u16,
    /// TCP port of its HTTPS peer-copy server (`P2PHttpsPort`).
    pub https_port: u16,
    /// The peer-copy protocols it accepts (0x01 SMB, 0x20 HTTP, 0x40 HTTPS).
    pub protocols: Protocols,
    /// The key peers derive the master's P2P-account credentials from.
    pub p2p_key: P2pKey,
    /// SHA-256 of its HTTPS certificate (DER), for peers to pin a self-signed one.
    pub cert_fingerprint: Option<[u8; 32]>,
    /// Its host name and FQDN (at most [`MAX_NAMES`], each valid by
    /// [`is_valid_master_name`]), for peers to check a PKI certificate's name.
    pub names: Vec<String>,
}

/// The body of a holder message: a peer copying a content (FanOut) that serves it
/// from its own SMB share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderNote {
    /// How much of the content it holds verified, in permille (0..=1000).
    pub share_permille: u16,
    /// The key its own P2P account's password derives from (encrypted with a site
    /// key, like a master's).
    pub p2p_key: P2pKey,
}

/// Whether `name` may be announced as a master's name: 1 to 253 bytes of ASCII
/// letters, digits, `-` and `.`, not starting or ending with `-` or `.` (so an FQDN
/// goes without its trailing dot). Labels are not checked one by one: the rule only
/// keeps the datagram's text safe to log and compare, the certificate check decides.
pub fn is_valid_master_name(name: &str) -> bool {
    check_name(name.as_bytes()).is_ok()
}

const TOO_MANY_NAMES: WireError = WireError::BadName {
    reason: "more than 4 names",
};
const BAD_NAME_LEN: WireError = WireError::BadName {
    reason: "its length is not 1-253",
};
const BAD_NAME_CHARS: WireError = WireError::BadName {
    reason: "not [A-Za-z0-9.-], or starts or ends with - or .",
};
const BAD_HOST: WireError = WireError::BadName {
    reason: "the sender's host name is not one DNS label of 1-63 [A-Za-z0-9-]",
};

/// Whether `host` may be sent as a sender's host name: one DNS label, 1 to 63 ASCII
/// letters, digits and `-`, not starting or ending with `-`. (It becomes an SMB
/// account name on masters: nothing else may reach it.)
pub fn is_valid_host_name(host: &str) -> bool {
    host.len() <= MAX_HOST_LEN && !host.contains('.') && check_name(host.as_bytes()).is_ok()
}

fn check_name(name: &[u8]) -> Result<(), WireError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(BAD_NAME_LEN);
    }
    let edge = |c: &u8| *c == b'-' || *c == b'.';
    let allowed = |c: &u8| c.is_ascii_alphanumeric() || edge(c);
    if !name.iter().all(allowed) || name.first().is_some_and(edge) || name.last().is_some_and(edge)
    {
        return Err(BAD_NAME_CHARS);
    }
    Ok(())
}

/// Whether `id` is a content id a message may carry: 1 to 64 characters of
/// `[A-Za-z0-9._-]`, and not `.` or `..` (the manifest's rule: one source of truth).
pub fn is_valid_content_id(id: &str) -> bool {
    crate::manifest::validate_content_id(id).is_ok()
}

fn kind_of(body: &Body) -> u8 {
    match body {
        Body::Request => 1,
        Body::Candidate { .. } => 2,
        Body::Master(_) => 3,
        Body::Heartbeat { .. } => 4,
        Body::Done { .. } => 5,
        Body::Resign { .. } => 6,
        Body::Holder(_) => 7,
        Body::WhoHolds { .. } => 8,
    }
}

/// Encode `msg`; with a site key, encrypt the P2P key and append the stamp (one
/// per message, from the sender's [`Stamper`](super::Stamper)) and the tag.
///
/// Fails only on a message that [`decode`] would reject: a share above 1000, a weight
/// above 99, a rank whose node id is not the sender's, more than [`MAX_NAMES`] master
/// names or one not valid by [`is_valid_master_name`]. (An invalid content id would
/// be one too, but a [`ContentKey`] cannot hold one.)
pub fn encode(msg: &Message, auth: Option<(&SiteKey, Stamp)>) -> Result<Vec<u8>, WireError> {
    let key = auth.map(|(k, _)| k);
    // The content id needs no check here: a `ContentKey` only ever holds a valid one.
    let mut out = Vec::with_capacity(MAX_MESSAGE_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind_of(&msg.body));
    out.push(if key.is_some() { FLAG_AUTH } else { 0 });
    out.extend_from_slice(&msg.node_id.to_be_bytes());
    match msg.addr {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    let id = msg.key.id();
    out.push(id.len() as u8);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&msg.key.version().to_be_bytes());
    match &msg.body {
        Body::Request => {}
        Body::Candidate { rank } => put_rank(&mut out, rank, msg.node_id)?,
        Body::Master(m) => {
            put_rank(&mut out, &m.rank, msg.node_id)?;
            out.extend_from_slice(&m.term.to_be_bytes());
            out.extend_from_slice(&m.http_port.to_be_bytes());
            out.extend_from_slice(&m.https_port.to_be_bytes());
            // Protocols keeps only the three protocol bits, so they fit one byte.
            out.push(m.protocols.bits() as u8);
            put_p2p_key(&mut out, &m.p2p_key, key);
            match &m.cert_fingerprint {
                None => out.push(0),
                Some(fp) => {
                    out.push(1);
                    out.extend_from_slice(fp);
                }
            }
            put_names(&mut out, &m.names)?;
        }
        Body::Heartbeat { rank, term } => {
            put_rank(&mut out, rank, msg.node_id)?;
            out.extend_from_slice(&term.to_be_bytes());
        }
        Body::Done { term } | Body::Resign { term } => out.extend_from_slice(&term.to_be_bytes()),
        Body::Holder(h) => {
            put_share(&mut out, h.share_permille)?;
            put_p2p_key(&mut out, &h.p2p_key, key);
        }
        Body::WhoHolds { above_permille } => put_share(&mut out, *above_permille)?,
    }
    match &msg.host {
        None => out.push(0),
        Some(h) if is_valid_host_name(h) => {
            out.push(h.len() as u8);
            out.extend_from_slice(h.as_bytes());
        }
        Some(_) => return Err(BAD_HOST),
    }
    if let Some((k, stamp)) = auth {
        out.extend_from_slice(&stamp.time_ms.to_be_bytes());
        out.extend_from_slice(&stamp.counter.to_be_bytes());
        let tag = k.tag(&out);
        out.extend_from_slice(&tag);
    }
    Ok(out)
}

/// The P2P key: in clear without a site key; with one, a fresh nonce and the key
/// encrypted with it.
fn put_p2p_key(out: &mut Vec<u8>, p2p_key: &P2pKey, key: Option<&SiteKey>) {
    let mut p2p = p2p_key.0;
    if let Some(k) = key {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        xor(&mut p2p, &k.keystream(&nonce));
        out.extend_from_slice(&nonce);
    }
    out.extend_from_slice(&p2p);
}

/// A share in permille (a holder's, or a holder query's), at most [`FULL_SHARE`].
fn put_share(out: &mut Vec<u8>, share: u16) -> Result<(), WireError> {
    out.extend_from_slice(&valid_share(share)?.to_be_bytes());
    Ok(())
}

/// `share` when it is at most [`FULL_SHARE`] (encoding and decoding alike).
fn valid_share(share: u16) -> Result<u16, WireError> {
    if share > FULL_SHARE {
        return Err(WireError::BadField {
            field: "share",
            value: share.into(),
        });
    }
    Ok(share)
}

fn put_rank(out: &mut Vec<u8>, rank: &Rank, sender: u64) -> Result<(), WireError> {
    if rank.node_id != sender {
        return Err(WireError::RankNodeMismatch {
            rank: rank.node_id,
            sender,
        });
    }
    valid_share(rank.share_permille)?;
    if rank.weight > MAX_WEIGHT {
        return Err(WireError::BadField {
            field: "weight",
            value: rank.weight.into(),
        });
    }
    out.push(if rank.preboot { RANK_PREBOOT } else { 0 });
    out.extend_from_slice(&rank.share_permille.to_be_bytes());
    out.push(rank.weight);
    out.extend_from_slice(&rank.free_bytes.to_be_bytes());
    Ok(())
}

fn put_names(out: &mut Vec<u8>, names: &[String]) -> Result<(), WireError> {
    if names.len() > MAX_NAMES {
        return Err(TOO_MANY_NAMES);
    }
    out.push(names.len() as u8);
    for name in names {
        check_name(name.as_bytes())?;
        // At most 253 bytes (checked above): the length fits one byte.
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
    Ok(())
}

fn xor(data: &mut [u8; 32], stream: &[u8; 32]) {
    for (d, s) in data.iter_mut().zip(stream) {
        *d ^= s;
    }
}

/// Decode one datagram. With a site key, only messages with a valid tag are
/// accepted; without one, only messages without a tag (see [`WireError::Unauthenticated`]).
/// The stamp is not checked: see [`decode_stamped`].
pub fn decode(bytes: &[u8], key: Option<&SiteKey>) -> Result<Message, WireError> {
    decode_stamped(bytes, key).map(|(msg, _)| msg)
}

/// [`decode`], also returning the stamp of an authenticated message (`Some` exactly
/// when a site key is given), for the receiver's
/// [`ReplayGuard`](super::ReplayGuard) to check.
pub fn decode_stamped(
    bytes: &[u8],
    key: Option<&SiteKey>,
) -> Result<(Message, Option<Stamp>), WireError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(4, "magic")? != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let kind = r.u8("kind")?;
    if !(1..=8).contains(&kind) {
        return Err(WireError::UnknownKind(kind));
    }
    let flags = r.u8("flags")?;
    if flags & !FLAG_AUTH != 0 {
        return Err(WireError::UnknownFlags(flags));
    }
    let authenticated = flags & FLAG_AUTH != 0;
    // Check the tag before reading anything else, so a forged message is never parsed.
    let key = match (authenticated, key) {
        (true, None) => return Err(WireError::Unauthenticated(AuthMismatch::NoSiteKey)),
        (false, Some(_)) => return Err(WireError::Unauthenticated(AuthMismatch::MissingTag)),
        (false, None) => None,
        (true, Some(k)) => {
            let Some(end) = bytes.len().checked_sub(TAG_LEN).filter(|&e| e >= r.pos) else {
                return Err(WireError::TooShort { field: "tag" });
            };
            if !k.verify(&bytes[..end], &bytes[end..]) {
                return Err(WireError::BadTag);
            }
            r.buf = &bytes[..end];
            Some(k)
        }
    };
    // The stamp ends the tagged part: read it from the back, then parse the rest.
    let stamp = match key {
        None => None,
        Some(_) => {
            let Some(start) = r.buf.len().checked_sub(16).filter(|&s| s >= r.pos) else {
                return Err(WireError::TooShort { field: "stamp" });
            };
            let mut s = Reader {
                buf: r.buf,
                pos: start,
            };
            let stamp = Stamp {
                time_ms: s.u64("stamp time")?,
                counter: s.u64("stamp counter")?,
            };
            r.buf = &r.buf[..start];
            Some(stamp)
        }
    };
    let node_id = r.u64("node id")?;
    let addr = match r.u8("address family")? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("address")?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("address")?)),
        f => return Err(WireError::BadAddressFamily(f)),
    };
    let id_len = r.u8("content id length")? as usize;
    if id_len == 0 || id_len > MAX_ID_LEN {
        return Err(WireError::BadContentId {
            reason: "its length is not 1-64",
        });
    }
    let id_bytes = r.take(id_len, "content id")?;
    let id = std::str::from_utf8(id_bytes)
        .ok()
        .filter(|s| is_valid_content_id(s))
        .ok_or(WireError::BadContentId {
            reason: "not 1-64 characters of [A-Za-z0-9._-]",
        })?
        .to_owned();
    let version = r.u32("content version")?;
    let body = match kind {
        1 => Body::Request,
        2 => Body::Candidate {
            rank: r.rank(node_id)?,
        },
        3 => {
            let rank = r.rank(node_id)?;
            let term = r.u64("term")?;
            let http_port = r.u16("http port")?;
            let https_port = r.u16("https port")?;
            let bits = r.u8("protocols")?;
            let protocols = Protocols::from_bits(bits.into());
            if protocols.bits() != u32::from(bits) {
                return Err(WireError::BadField {
                    field: "protocols",
                    value: bits.into(),
                });
            }
            let p2p_key = r.p2p_key(key)?;
            let cert_fingerprint = match r.u8("fingerprint flag")? {
                0 => None,
                1 => Some(r.array::<32>("fingerprint")?),
                v => {
                    return Err(WireError::BadField {
                        field: "fingerprint flag",
                        value: v.into(),
                    })
                }
            };
            let names = r.names()?;
            Body::Master(MasterAnnounce {
                rank,
                term,
                http_port,
                https_port,
                protocols,
                p2p_key,
                cert_fingerprint,
                names,
            })
        }
        4 => Body::Heartbeat {
            rank: r.rank(node_id)?,
            term: r.u64("term")?,
        },
        5 => Body::Done {
            term: r.u64("term")?,
        },
        7 => Body::Holder(HolderNote {
            share_permille: r.share()?,
            p2p_key: r.p2p_key(key)?,
        }),
        8 => Body::WhoHolds {
            above_permille: r.share()?,
        },
        _ => Body::Resign {
            term: r.u64("term")?,
        },
    };
    let host = match usize::from(r.u8("host name length")?) {
        0 => None,
        n if n > MAX_HOST_LEN => return Err(BAD_HOST),
        n => {
            let bytes = r.take(n, "host name")?;
            let host = std::str::from_utf8(bytes)
                .ok()
                .filter(|h| is_valid_host_name(h))
                .ok_or(BAD_HOST)?;
            Some(host.to_owned())
        }
    };
    let rest = r.buf.len() - r.pos;
    if rest != 0 {
        return Err(WireError::TrailingBytes(rest));
    }
    let msg = Message {
        node_id,
        addr,
        // Checked above, before the version was read: this cannot fail.
        key: ContentKey::new(id, version).map_err(|_| WireError::BadContentId {
            reason: "not 1-64 characters of [A-Za-z0-9._-]",
        })?,
        body,
        host,
    };
    Ok((msg, stamp))
}

/// A cursor over a datagram whose reads fail instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(WireError::TooShort { field })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A share in permille, at most [`FULL_SHARE`].
    fn share(&mut self) -> Result<u16, WireError> {
        valid_share(self.u16("share")?)
    }

    /// A P2P key, preceded by its nonce and decrypted with `key` when there is one.
    fn p2p_key(&mut self, key: Option<&SiteKey>) -> Result<P2pKey, WireError> {
        let nonce = match key {
            Some(_) => Some(self.array::<NONCE_LEN>("nonce")?),
            None => None,
        };
        let mut p2p = self.array::<32>("p2p key")?;
        if let (Some(k), Some(nonce)) = (key, nonce) {
            xor(&mut p2p, &k.keystream(&nonce));
        }
        Ok(P2pKey(p2p))
    }

    fn names(&mut self) -> Result<Vec<String>, WireError> {
        let count = usize::from(self.u8("names count")?);
        if count > MAX_NAMES {
            return Err(TOO_MANY_NAMES);
        }
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(self.u8("name length")?);
            // Refused by its length before the datagram's end is checked, so that the
            // error names the problem.
            if len == 0 || len > MAX_NAME_LEN {
                return Err(BAD_NAME_LEN);
            }
            let bytes = self.take(len, "name")?;
            check_name(bytes)?;
            // Only ASCII passes `check_name`: this cannot fail.
            let name = std::str::from_utf8(bytes).map_err(|_| BAD_NAME_CHARS)?;
            names.push(name.to_owned());
        }
        Ok(names)
    }

    fn rank(&mut self, node_id: u64) -> Result<Rank, WireError> {
        let flags = self.u8("rank flags")?;
        if flags & !RANK_PREBOOT != 0 {
            return Err(WireError::BadField {
                field: "rank flags",
                value: flags.into(),
            });
        }
        let share = self.share()?;
        let weight = self.u8("weight")?;
        if weight > MAX_WEIGHT {
            return Err(WireError::BadField {
                field: "weight",
                value: weight.into(),
            });
        }
        Ok(Rank {
            preboot: flags & RANK_PREBOOT != 0,
            share_permille: share,
            weight,
            free_bytes: self.u64("free bytes")?,
            node_id,
        })
    }
}
