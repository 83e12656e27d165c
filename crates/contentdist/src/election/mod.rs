//! Master election: which agent of a subnet downloads a content from the origin.
//!
//! This module is sans I/O: [`Elections`] is a pure state machine (events in,
//! actions out, time passed in as a [`tokio::time::Instant`]) and [`wire`] turns
//! its messages into datagrams and back. A thin driver owns the UDP socket:
//!
//! ```text
//! loop {
//!     select! {
//!         datagram = socket.recvmsg() => receive(datagram),
//!         job event (want, progress, complete, forget), certificate renewed (cert changed)
//!             => event,
//!         _ = sleep_until(elections.next_deadline()) => Event::Tick,
//!     }
//!     // Every datagram already queued before any timer fires (`Received` fires none).
//!     while let Ok(datagram) = socket.try_recvmsg() { receive(datagram) }
//!     run(elections.handle(Instant::now(), event or Event::Tick));
//! }
//! receive(datagram): match decode_stamped(&datagram, site_key) {
//!     Ok((msg, stamp)) if replay_guard accepts stamp (site key only) =>
//!         run(elections.handle(Instant::now(), Event::Received { msg })),
//!     _ => count and log (rate-limited), drop the datagram,
//! }
//! run(actions): Broadcast(m) -> socket.send_to(encode(&m, site_key + stamper.next())?, broadcast address);
//!               BecomeMaster / FollowMaster / MasterLost / StopMaster -> tell the job.
//! ```
//!
//! How an election runs (the product's "life of an election"):
//!
//! - An agent that wants X broadcasts `Request` and its `Candidate` (never with
//!   weight 0). Agents that hold or want X and know no live master answer with
//!   their `Candidate` and join; a master answers with its `Master` announcement,
//!   which a newcomer follows at once, even if the master is half-way ("A answers
//!   20% complete and wins").
//! - After `election_window` every agent in the election picks the best eligible
//!   [`Rank`] it heard, itself included. The winner broadcasts `Master` (term = the
//!   highest term seen + 1) and a `Heartbeat` every `heartbeat_interval`, carrying
//!   its current share; the others follow it when its announcement arrives.
//! - Followers that hear nothing for `master_timeout` report `MasterLost` and elect
//!   again: the best remaining candidate wins, and a half-done peer resumes, since
//!   its share counts.
//! - The master re-runs the election every `reelect_interval` and yields
//!   (`StopMaster` + `Resign`) to a strictly better candidate. Of two masters of one
//!   content (partition healed, simultaneous windows) the lower-ranked one yields
//!   when it hears the other.
//! - A master that completes broadcasts `Done` and keeps serving and heartbeating
//!   until the driver sends `Forget` (content evicted, or no peer copied for a
//!   while: the peer-copy server knows; `Forget` then `Complete` makes the agent a
//!   plain holder again).
//! - A master's announcement carries its certificate fingerprint and its names
//!   (host name, FQDN). When the certificate is renewed (`CertChanged`), the master
//!   announces again at once and its followers get `FollowMaster` with the new
//!   fingerprint.
//! - A preboot or weight-0 agent never becomes master. With no eligible master it
//!   stays `Electing` and asks again every `request_retry`; the driver may then
//!   fall back to the origin as the settings allow.
//!
//! Messages from this agent's own node id are ignored. With a site key, messages
//! are authenticated, stamped against replay (see [`ReplayGuard`]) and the P2P key
//! is encrypted (see [`SiteKey`]). Answers to requests are rate-limited per content
//! (a burst of 3, then one per `election_window / 4`), so a flood of requests,
//! forged or replayed, costs the subnet a bounded number of broadcasts.

mod auth;
mod earlier;
mod error;
mod fresh;
mod machine;
mod rank;
mod slot;
mod types;
pub mod wire;

#[cfg(test)]
mod claim_tests;
#[cfg(test)]
mod flood_tests;
#[cfg(test)]
mod head_start_tests;
#[cfg(test)]
mod lag_tests;
#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod stamp_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_tests;

pub use auth::SiteKey;
pub use error::{AuthMismatch, Stale, WireError};
pub use fresh::{
    unix_ms, ReplayGuard, Stamp, Stamper, MAX_CLOCK_SKEW, MAX_SENDERS, REORDER_WINDOW,
};
pub use machine::Elections;
pub use rank::{Rank, FULL_SHARE, MAX_WEIGHT};
pub use types::{Action, ElectionState, ElectionStatus, Event, LocalInfo, MasterInfo, Timing};
pub use wire::{
    decode, decode_stamped, encode, is_valid_host_name, is_valid_master_name, Body, HolderNote,
    MasterAnnounce, Message, P2pKey,
};

/// The clock the state machine runs on: the driver passes `Instant::now()` (tokio's,
/// so a paused test clock works); simulations pass any base plus offsets.
pub use tokio::time::Instant;
