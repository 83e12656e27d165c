//! The certificate store (`CertStoreDir`) and the product's certificate rules.
//!
//! This is the first part of peer copy over HTTPS: reading a certificate into the
//! facts the rules look at ([`CertInfo`]: names, usages, dates, issuer, thumbprint)
//! and choosing the server-authentication certificate by the product page's
//! criteria and precedence ([`select_server`]), saying for every other certificate
//! the rule that rejected it; and the client-authentication certificate a peer
//! presents to masters ([`select_client`]). The HTTPS listener (`peer::https`)
//! presents what [`ServerCerts`] chose; peers check masters with
//! [`MasterVerifier`].
//!
//! - `cert`: [`CertInfo::from_der`], [`thumbprint`].
//! - `load`: [`load`] reads `my/` (PEM, PKCS#12) and `trusted/`; [`CertStore`] reads
//!   it again when its files change.
//! - `report`: [`report`], what `contentdist certs` shows.
//! - `selfsigned`: [`self_signed`], the agent's own certificate without 0x1, kept
//!   and renewed; [`fingerprint`], what peers pin.
//! - `resolver`: [`ServerCertResolver`], the certificate in force, swappable.
//! - `server`: [`ServerCerts`], which keeps the resolver's certificate up to date
//!   (store changes, expiry, renewal) and says what is bound or why nothing is.
//! - `verify`: [`MasterVerifier`], how a peer checks a master's certificate (PKI
//!   chain and name, or the announced pin of a self-signed one).
//! - `peerauth`: [`PeerCertVerifier`], how a master checks its peers' client
//!   certificates (`P2PSslSettings` 0x2).
//! - `select`: [`HostIdentity`], [`IssuerFilter`], [`select_server`], [`Rejection`].
//! - `client`: [`select_client`] by the page's client rules and the `[Platform]`
//!   exception; [`client_usable`], the check a cached choice is kept by.
//! - `clientcerts`: [`ClientCerts`], the chosen client certificate, cached until it
//!   expires or leaves the store, with the boot-image certificate as fallback.

mod cert;
mod client;
mod clientcerts;
mod load;
mod peerauth;
mod report;
mod resolver;
mod select;
mod selfsigned;
mod server;
mod verify;

pub use cert::{thumbprint, CertError, CertInfo};
pub use client::{
    client_usable, select_client, ClientChoice, ClientRejection, ClientRule, ClientRules,
    SubjectFilter,
};
pub use clientcerts::{ClientCertLine, ClientCertOptions, ClientCertState, ClientCerts};
pub use load::{load, load_owned, CertStore, OwnedCert, StoreContents, StoreProblem, TrustedCert};
pub use peerauth::PeerCertVerifier;
pub use report::{report, utc, CertsReport, MyCertLine, ProblemLine, TrustedLine};
pub use resolver::ServerCertResolver;
pub use select::{select_server, HostIdentity, IssuerFilter, NameMatch, Rejection, ServerChoice};
pub use selfsigned::{fingerprint, self_signed, SelfSignedError, SELF_SIGNED_ORG};
pub use server::{BoundCert, RejectedCert, ServerCertOptions, ServerCertState, ServerCerts};
pub use verify::{MasterCheck, MasterVerifier};

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod clientcerts_tests;
#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
