//! Revocation: recording that a certificate must no longer be trusted, and publishing it as
//! CRLs ([`crl`]) and OCSP responses ([`ocsp`]).
//!
//! Invariant: a revocation is recorded together with its audit entry (one transaction, see
//! [`RevocationLedger::revoke`](crate::store::RevocationLedger::revoke)) before any CRL or
//! OCSP response can say so, and a reason the CA/Browser
//! Forum forbids (`certificateHold`) is never recorded.

pub mod crl;
mod encoding;
pub mod ocsp;
pub mod publish;

use std::fmt;
use std::time::SystemTime;

use crate::audit::{Action, AuditEvent};
use crate::error::ErrorKind;
use crate::store::{CaRevocation, Revocation, Serial, Store, StoreError};

/// Why a certificate was revoked: RFC 5280 5.3.1 CRLReason, with its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// unspecified (0): on a CRL the reason code extension is then omitted (RFC 5280 5.3.1).
    Unspecified,
    /// keyCompromise (1).
    KeyCompromise,
    /// cACompromise (2).
    CaCompromise,
    /// affiliationChanged (3).
    AffiliationChanged,
    /// superseded (4).
    Superseded,
    /// cessationOfOperation (5).
    CessationOfOperation,
    /// certificateHold (6): refused by [`check_reason`] (the CA/Browser Forum forbids it).
    CertificateHold,
    /// privilegeWithdrawn (9).
    PrivilegeWithdrawn,
    /// aACompromise (10): for attribute certificates, which Keyhold does not issue.
    AaCompromise,
}

const ALL: [Reason; 9] = [
    Reason::Unspecified,
    Reason::KeyCompromise,
    Reason::CaCompromise,
    Reason::AffiliationChanged,
    Reason::Superseded,
    Reason::CessationOfOperation,
    Reason::CertificateHold,
    Reason::PrivilegeWithdrawn,
    Reason::AaCompromise,
];

impl Reason {
    /// The RFC 5280 CRLReason code (stored in the database, written in CRLs and OCSP).
    pub fn code(self) -> u8 {
        match self {
            Reason::Unspecified => 0,
            Reason::KeyCompromise => 1,
            Reason::CaCompromise => 2,
            Reason::AffiliationChanged => 3,
            Reason::Superseded => 4,
            Reason::CessationOfOperation => 5,
            Reason::CertificateHold => 6,
            Reason::PrivilegeWithdrawn => 9,
            Reason::AaCompromise => 10,
        }
    }

    /// The reason with this code; `None` for 7 (unused), 8 (removeFromCRL, delta CRLs only)
    /// and anything else.
    pub fn from_code(code: u8) -> Option<Self> {
        ALL.into_iter().find(|r| r.code() == code)
    }

    /// The RFC 5280 name, e.g. `keyCompromise`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "keyCompromise",
            Reason::CaCompromise => "cACompromise",
            Reason::AffiliationChanged => "affiliationChanged",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessationOfOperation",
            Reason::CertificateHold => "certificateHold",
            Reason::PrivilegeWithdrawn => "privilegeWithdrawn",
            Reason::AaCompromise => "aACompromise",
        }
    }

    /// Parses an RFC 5280 name in any case (`keyCompromise`, `keycompromise`), with or
    /// without dashes or underscores (`key-compromise`).
    ///
    /// Fails with [`RevocationError::UnknownReason`] listing the accepted names.
    pub fn parse(text: &str) -> Result<Self, RevocationError> {
        let wanted: String = text
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        ALL.into_iter()
            .find(|r| r.as_str().to_ascii_lowercase() == wanted)
            .ok_or_else(|| RevocationError::UnknownReason(text.to_owned()))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reasons a certificate may be revoked with, as listed in error messages.
pub const ACCEPTED_REASONS: &str = "unspecified, keyCompromise, cACompromise, affiliationChanged, \
     superseded, cessationOfOperation, privilegeWithdrawn";

/// Why revoking, or publishing revocations, failed.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// Not an RFC 5280 reason name.
    #[error("unknown revocation reason {0:?} (accepted: {ACCEPTED_REASONS})")]
    UnknownReason(String),
    /// A reason Keyhold does not record.
    #[error("{0}")]
    ReasonRefused(String),
    /// The invalidity date is in the future.
    #[error(
        "the invalidity date {0} is in the future: it is when the key was known or suspected to be compromised"
    )]
    InvalidityInFuture(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A CRL or response could not be built or signed.
    #[error(transparent)]
    X509(#[from] crate::x509::X509Error),
    /// The revoker may not revoke this certificate, or not for this reason.
    #[error("{0}")]
    NotAllowed(String),
    /// A CRL does not say what the database says.
    #[error("the CRL of {issuer} does not match the database:\n  - {}", .problems.join("\n  - "))]
    CrlMismatch {
        /// The issuer.
        issuer: String,
        /// Every difference found.
        problems: Vec<String>,
    },
}

impl RevocationError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RevocationError::UnknownReason(_)
            | RevocationError::ReasonRefused(_)
            | RevocationError::InvalidityInFuture(_) => ErrorKind::Invalid,
            RevocationError::NotAllowed(_) => ErrorKind::Rejected,
            RevocationError::Store(e) => e.kind(),
            RevocationError::X509(crate::x509::X509Error::KeyStore(e)) => e.kind(),
            RevocationError::X509(_) | RevocationError::CrlMismatch { .. } => ErrorKind::Internal,
        }
    }
}

/// Checks that `reason` may be recorded.
///
/// Fails with [`RevocationError::ReasonRefused`] for certificateHold (CA/B Forum BR 7.2.2
/// forbids it, and no profile can allow it yet) and aACompromise (attribute certificates only).
pub fn check_reason(reason: Reason) -> Result<(), RevocationError> {
    match reason {
        Reason::CertificateHold => Err(RevocationError::ReasonRefused(
            "certificateHold is refused: the CA/Browser Forum Baseline Requirements forbid it, \
             and no Keyhold profile can allow it"
                .into(),
        )),
        Reason::AaCompromise => Err(RevocationError::ReasonRefused(
            "aACompromise applies only to attribute certificates, which Keyhold does not issue"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// Who asks to revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoker<'a> {
    /// An officer: any certificate, any accepted reason.
    Officer,
    /// A requester (an API token): only certificates issued to this name, and never for
    /// cACompromise.
    Requester(&'a str),
}

/// A request to revoke, from the CLI or the API.
#[derive(Debug, Clone)]
pub struct RevokeRequest<'a> {
    /// The certificate.
    pub serial: &'a Serial,
    /// Why.
    pub reason: Reason,
    /// Since when the key is suspect.
    pub invalidity_date: Option<SystemTime>,
    /// Who revokes, for the audit log.
    pub actor: &'a str,
    /// In which role.
    pub revoker: Revoker<'a>,
    /// From where (`cli`, an IP address).
    pub source: &'a str,
}

/// Revokes a certificate at `now`: checks the reason and the invalidity date, then records
/// the revocation and its audit entry in one transaction.
///
/// Fails with [`RevocationError::ReasonRefused`], [`RevocationError::InvalidityInFuture`],
/// [`RevocationError::NotAllowed`] (a requester asking for cACompromise), or the store's
/// `NotFound` (unknown serial, or for a requester a certificate issued to someone else) or
/// `Conflict` (already revoked, never issued).
pub fn revoke(
    store: &dyn Store,
    request: &RevokeRequest<'_>,
    now: SystemTime,
) -> Result<Revocation, RevocationError> {
    check_reason(request.reason)?;
    if let Revoker::Requester(name) = request.revoker {
        if request.reason == Reason::CaCompromise {
            return Err(RevocationError::NotAllowed(
                "only an officer can revoke for cACompromise".into(),
            ));
        }
        // The same answer for someone else's certificate as for none: no probing.
        let owned = store
            .certificate(request.serial)?
            .is_some_and(|row| row.requester == name);
        if !owned {
            return Err(StoreError::NotFound(format!("certificate {}", request.serial)).into());
        }
    }
    if let Some(date) = request.invalidity_date
        && date > now
    {
        return Err(RevocationError::InvalidityInFuture(rfc3339(date)));
    }
    let revocation = Revocation {
        serial: request.serial.clone(),
        reason: request.reason,
        invalidity_date: request.invalidity_date,
        revoked_at: now,
    };
    let mut event = AuditEvent::new(
        Action::CertificateRevoked,
        request.actor,
        request.source,
        format!("certificate:{}", request.serial),
    )
    .with("reason", request.reason.as_str());
    if let Some(date) = request.invalidity_date {
        event = event.with("invalidity_date", rfc3339(date));
    }
    store.revoke(&revocation, &event)?;
    Ok(revocation)
}

/// The reasons for which a CA certificate can be revoked (RFC 5280 5.3.1).
pub const CA_REASONS: [Reason; 5] = [
    Reason::CaCompromise,
    Reason::KeyCompromise,
    Reason::Superseded,
    Reason::CessationOfOperation,
    Reason::AffiliationChanged,
];

/// A configured CA, as [`revoke_ca`] needs it (no key store involved).
#[derive(Debug, Clone, Copy)]
pub struct ConfiguredCa<'a> {
    /// Its id.
    pub id: &'a crate::issuer::IssuerId,
    /// The CA that signed its certificate; none for a root.
    pub parent: Option<&'a crate::issuer::IssuerId>,
    /// Its certificate.
    pub cert: &'a crate::x509::SignedCert,
}

/// Revokes the certificate of the issuing CA `ca` (an officer's act): recorded with its audit
/// entry, so the CRL of the CA that signed it lists its serial with `reason` from then on.
/// `issuers` is every configured issuer (to find `ca`'s parent); `actor` is who revokes.
///
/// Fails with [`RevocationError::NotAllowed`] for a root (no CA above it publishes a CRL
/// for it) or a CA whose parent is not configured, [`RevocationError::ReasonRefused`] for a
/// reason outside [`CA_REASONS`], and the store's `Conflict` if it is already revoked.
pub fn revoke_ca(
    store: &dyn Store,
    issuers: &[ConfiguredCa<'_>],
    ca: &crate::issuer::IssuerId,
    reason: Reason,
    actor: &str,
    source: &str,
    now: SystemTime,
) -> Result<CaRevocation, RevocationError> {
    if !CA_REASONS.contains(&reason) {
        return Err(RevocationError::ReasonRefused(format!(
            "a CA certificate is revoked for cACompromise, keyCompromise, superseded, \
             cessationOfOperation or affiliationChanged, not {reason}"
        )));
    }
    let found = issuers
        .iter()
        .find(|c| c.id == ca)
        .ok_or_else(|| StoreError::NotFound(format!("issuer {ca}")))?;
    let cert = found.cert;
    let parent = found.parent.cloned().ok_or_else(|| {
        RevocationError::NotAllowed(format!(
            "{ca} is a root: no CA above it publishes a CRL, so it cannot be revoked here \
             (remove it from relying parties' trust stores instead)"
        ))
    })?;
    if !issuers.iter().any(|c| c.id == &parent) {
        return Err(RevocationError::NotAllowed(format!(
            "{ca}'s parent {parent} is not configured, so no CRL here could list it"
        )));
    }
    let serial = Serial::parse(&cert.serial_hex()).map_err(RevocationError::NotAllowed)?;
    let revocation = CaRevocation {
        ca: ca.clone(),
        parent: parent.clone(),
        serial: serial.clone(),
        not_after: cert.not_after(),
        reason,
        revoked_at: now,
        revoked_by: actor.to_owned(),
    };
    let event = AuditEvent::new(Action::CaRevoked, actor, source, format!("issuer:{ca}"))
        .with("serial", serial.as_str())
        .with("parent", parent.as_str())
        .with("reason", reason.as_str());
    store.revoke_ca(&revocation, &event)?;
    Ok(revocation)
}

/// RFC 3339 UTC to the second, for messages and audit details.
pub fn rfc3339(t: SystemTime) -> String {
    match crate::x509::x509_time(t) {
        Ok(time) => time.to_date_time().to_string(),
        Err(_) => "(out of range)".into(),
    }
}

/// Parses an RFC 3339 UTC time such as `2026-11-20T10:00:00Z`.
///
/// Fails with a message naming the expected form.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let dt: der::DateTime = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a UTC time like 2026-11-20T10:00:00Z"))?;
    Ok(dt.to_system_time())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_rfc_name_in_any_case_and_round_trip_their_codes() {
        assert_eq!(
            Reason::parse("keyCompromise").unwrap(),
            Reason::KeyCompromise
        );
        assert_eq!(Reason::parse("CACOMPROMISE").unwrap(), Reason::CaCompromise);
        assert_eq!(
            Reason::parse("cessation-of-operation").unwrap(),
            Reason::CessationOfOperation
        );
        assert!(matches!(
            Reason::parse("stolen"),
            Err(RevocationError::UnknownReason(_))
        ));
        for r in ALL {
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
        assert_eq!(Reason::from_code(7), None);
        assert_eq!(Reason::from_code(8), None);
    }

    #[test]
    fn certificate_hold_is_refused() {
        let err = check_reason(Reason::CertificateHold).unwrap_err();
        assert!(err.to_string().contains("certificateHold"), "{err}");
        assert!(check_reason(Reason::KeyCompromise).is_ok());
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        assert_eq!(rfc3339(t), "2026-11-20T10:00:00Z");
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
