//! ACME (RFC 8555) protocol rules, pure and synchronous: what a request must look like and
//! what a server must answer, with no HTTP, storage or clock of its own.
//!
//! Invariant: every refusal is an [`AcmeProblem`] whose type is the RFC 8555 section 6.7
//! error that applies, so the HTTP layer renders it and decides nothing.
//!
//! - [`jwk`]: account keys as JWKs, RFC 7638 thumbprints, key authorizations.
//! - [`jws`]: flattened JWS requests (RFC 8555 6.2): algorithms, `kid` xor `jwk`, `url`.
//! - [`eab`]: external account binding (RFC 8555 7.3.4).
//! - [`ari`]: renewal information certificate identifiers (RFC 9773 4.1).
//! - [`identifier`]: order identifiers (dns, ip) and the challenges each may use.
//! - [`keychange`]: account key rollover (RFC 8555 7.3.5).
//! - [`nonce`]: anti-replay nonces minted statelessly, redeemed once through the database.
//! - [`order`]: the order, authorization and challenge state machine (RFC 8555 7.1.6).
//! - [`revoke_authz`]: revocation by an account holding authorizations for every name.
//! - [`upkeep`]: taking over a stopped node's validations; deleting what expired long ago.
//! - [`store`]: the storage port; [`service`] and [`issue`]: the service that decides, and
//!   issues through the API's cycle; [`secret`]: the key nonces and EAB keys derive from.

pub mod ari;
pub mod eab;
pub mod eab_keys;
pub mod identifier;
pub mod issue;
pub mod jwk;
pub mod jws;
pub mod keychange;
pub mod nonce;
pub mod order;
pub mod revoke_authz;
pub mod secret;
pub mod service;
pub mod store;
pub mod upkeep;

use crate::error::ErrorKind;

/// The URN prefix of every ACME error type (RFC 8555 6.7).
pub const ERROR_NS: &str = "urn:ietf:params:acme:error:";

/// An RFC 8555 error: its type and a detail for the client. The detail names what is wrong
/// and never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct AcmeProblem {
    /// Which RFC 8555 error this is.
    pub kind: ProblemKind,
    /// What was wrong, for the client.
    pub detail: String,
}

/// The RFC 8555 section 6.7 error types Keyhold answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The request message was malformed.
    Malformed,
    /// The JWS was signed with an algorithm the server does not support.
    BadSignatureAlgorithm,
    /// The client sent an unacceptable anti-replay nonce.
    BadNonce,
    /// The client lacks sufficient authorization.
    Unauthorized,
    /// The JWS was signed by a public key the server does not support.
    BadPublicKey,
    /// The request names an account that does not exist.
    AccountDoesNotExist,
    /// The server requires external account binding.
    ExternalAccountRequired,
    /// The CSR is unacceptable.
    BadCsr,
    /// The server will not issue for the identifier.
    RejectedIdentifier,
    /// The identifier is of a type the server does not support.
    UnsupportedIdentifier,
    /// The order is not ready to be finalized.
    OrderNotReady,
    /// The certificate is already revoked.
    AlreadyRevoked,
    /// The revocation reason is not allowed.
    BadRevocationReason,
    /// The request exceeds a rate limit.
    RateLimited,
    /// The named profile is not offered (draft-ietf-acme-profiles).
    InvalidProfile,
    /// The server failed internally.
    ServerInternal,
}

impl ProblemKind {
    /// The type's last URN segment, as RFC 8555 spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadSignatureAlgorithm => "badSignatureAlgorithm",
            Self::BadNonce => "badNonce",
            Self::Unauthorized => "unauthorized",
            Self::BadPublicKey => "badPublicKey",
            Self::AccountDoesNotExist => "accountDoesNotExist",
            Self::ExternalAccountRequired => "externalAccountRequired",
            Self::BadCsr => "badCSR",
            Self::RejectedIdentifier => "rejectedIdentifier",
            Self::UnsupportedIdentifier => "unsupportedIdentifier",
            Self::OrderNotReady => "orderNotReady",
            Self::AlreadyRevoked => "alreadyRevoked",
            Self::BadRevocationReason => "badRevocationReason",
            Self::RateLimited => "rateLimited",
            Self::InvalidProfile => "invalidProfile",
            Self::ServerInternal => "serverInternal",
        }
    }

    /// What failed, for the layers that map kinds rather than ACME types.
    pub fn error_kind(self) -> ErrorKind {
        match self {
            Self::Unauthorized | Self::ExternalAccountRequired => ErrorKind::Invalid,
            Self::AccountDoesNotExist => ErrorKind::NotFound,
            Self::RejectedIdentifier | Self::InvalidProfile | Self::RateLimited => {
                ErrorKind::Rejected
            }
            Self::OrderNotReady | Self::AlreadyRevoked => ErrorKind::Conflict,
            Self::ServerInternal => ErrorKind::Internal,
            _ => ErrorKind::Invalid,
        }
    }
}

impl AcmeProblem {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The full type URN, e.g. `urn:ietf:params:acme:error:badNonce`.
    pub fn type_urn(&self) -> String {
        format!("{ERROR_NS}{}", self.kind.name())
    }

    /// A `malformed` problem.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Malformed, detail)
    }
}

/// Base64url without padding (RFC 7515 2), the only encoding JWS allows.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    use base64ct::{Base64UrlUnpadded, Encoding};
    Base64UrlUnpadded::encode_string(bytes)
}

/// Decodes base64url without padding; `what` names the field in the problem detail.
pub fn b64url_decode(text: &str, what: &str) -> Result<Vec<u8>, AcmeProblem> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    Base64UrlUnpadded::decode_vec(text)
        .map_err(|_| AcmeProblem::malformed(format!("{what} is not base64url without padding")))
}

#[cfg(test)]
#[path = "acme/state_tests.rs"]
mod state_tests;
#[cfg(test)]
#[path = "acme/tests.rs"]
mod tests;
