//! Small pieces shared by modules that would otherwise each keep their own copy: the
//! HTTP/1 server loop, the `Range` header parser, the token bucket, replacing a file
//! that is saved often, and a free UDP port for the election socket of a lab or a
//! test.

mod group;
pub mod http_server;
mod human;
mod range;
mod replace;
mod token_bucket;

pub use group::{group_id, user_ids};
pub use human::human_bytes;
pub use range::{parse_range, ByteRange};
pub use replace::{flags_unsupported, read_saved, renameat2, replace_file, spare_path, sync_dir};
pub use token_bucket::TokenBucket;

/// A UDP port free on this host now, for agents that must all share one election
/// port (the lab, tests): the system picks it, the socket is closed again.
pub fn free_udp_port() -> std::io::Result<u16> {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
}

/// A TCP port free on loopback now (tests: a server that must be given a concrete
/// port, smbd): the system picks it, the socket is closed again.
pub fn free_tcp_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
}
