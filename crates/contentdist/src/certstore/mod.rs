//! The certificate store (`CertStoreDir`) and the product's certificate rules.
//!
//! This is the first part of peer copy over HTTPS: reading a certificate into the
//! facts the rules look at ([`CertInfo`]: names, usages, dates, issuer, thumbprint)
//! and choosing the server-authentication certificate by the product page's
//! criteria and precedence ([`select_server`]), saying for every other certificate
//! the rule that rejected it. Loading `my/` and `trusted/`, the HTTPS listener and
//! the peers' checks build on it (not yet implemented: see the README's status).
//!
//! - `cert`: [`CertInfo::from_der`], [`thumbprint`].
//! - `select`: [`HostIdentity`], [`IssuerFilter`], [`select_server`], [`Rejection`].

mod cert;
mod select;

pub use cert::{thumbprint, CertError, CertInfo};
pub use select::{select_server, HostIdentity, IssuerFilter, NameMatch, Rejection, ServerChoice};

#[cfg(test)]
mod tests;
