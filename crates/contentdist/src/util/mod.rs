//! Small pieces shared by modules that would otherwise each keep their own copy: the
//! HTTP/1 server loop, the `Range` header parser, and the token bucket.

pub mod http_server;
mod range;
mod token_bucket;

pub use range::{parse_range, ByteRange};
pub use token_bucket::TokenBucket;
