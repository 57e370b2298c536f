//! Why an issuance failed, and the stages it is timed by.

use crate::csr::CsrError;
use crate::error::ErrorKind;
use crate::issuer::IssuerId;
use crate::store::StoreError;
use crate::x509::X509Error;

/// The stages of [`Ca::submit`](super::Ca::submit), in order, for measuring where its time goes
/// ([`Ca::submit_timed`](super::Ca::submit_timed)). Build ends twice: the certificate is built before the reservation
/// and encoded again around its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Finding the profile, parsing the CSR and checking its self-signature.
    CsrCheck,
    /// The profile's decision and the issuers' name constraints.
    Policy,
    /// The serial, the template, its lint; the TBS encoding and the signed certificate's.
    Build,
    /// Reserving the serial with its audit entry.
    Reservation,
    /// The key store's signature.
    Sign,
    /// The check of that signature against the issuer's key.
    SelfCheck,
    /// Recording the certificate with its audit entry, durably.
    Record,
}

/// Why issuance failed (as opposed to a policy refusal, which is an [`Outcome`](super::Outcome)).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// No profile has that name.
    #[error("unknown profile {name:?} (known: {known})")]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The profiles there are.
        known: String,
    },
    /// The CSR is malformed, too large or its signature does not verify.
    #[error("certificate request: {0}")]
    Csr(CsrError),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The database refused or failed; nothing was signed, or what was signed was discarded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key store failed to sign, or the certificate could not be built.
    #[error("signing failed: {0}")]
    Signing(X509Error),
    /// The built certificate broke a rule it must keep; it was not signed.
    #[error("the certificate failed its checks before signing: {}", .0.join("; "))]
    Lint(Vec<String>),
    /// The configuration names an issuer that is not loaded.
    #[error("profile {profile} names issuer {issuer}, which is not configured")]
    NoIssuer {
        /// The profile.
        profile: String,
        /// Its issuer.
        issuer: IssuerId,
    },
}

// Not `#[from]`: that would also make the inner error the source, and `{:#}` would print
// its message twice.
impl From<CsrError> for IssueError {
    fn from(e: CsrError) -> Self {
        IssueError::Csr(e)
    }
}

impl From<X509Error> for IssueError {
    fn from(e: X509Error) -> Self {
        IssueError::Signing(e)
    }
}

impl From<der::Error> for IssueError {
    fn from(e: der::Error) -> Self {
        IssueError::Signing(e.into())
    }
}

impl IssueError {
    /// The broad kind, for exit codes and HTTP statuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IssueError::UnknownProfile { .. } => ErrorKind::NotFound,
            IssueError::Csr(_) => ErrorKind::Invalid,
            IssueError::Forbidden(_) => ErrorKind::Rejected,
            IssueError::Store(e) => e.kind(),
            IssueError::Signing(_) => ErrorKind::Unavailable,
            IssueError::Lint(_) | IssueError::NoIssuer { .. } => ErrorKind::Internal,
        }
    }
}
