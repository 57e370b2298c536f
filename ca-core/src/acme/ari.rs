//! Renewal information (RFC 9773): the certificate identifier clients put in
//! `renewal-info/{id}` and in `replaces`, and the window a server suggests.
//!
//! Invariant: an identifier is `base64url(AKI keyIdentifier) "." base64url(serial)`, where the
//! serial is the content octets of the DER INTEGER (RFC 9773 4.1), so it names one
//! certificate of one issuer key however the client formatted it.

use std::time::{Duration, SystemTime};

use der::{Decode, asn1::ObjectIdentifier};
use x509_cert::Certificate;
use x509_cert::ext::pkix::AuthorityKeyIdentifier;

use super::{AcmeProblem, b64url, b64url_decode};

/// `id-ce-authorityKeyIdentifier` (RFC 5280 4.2.1.1).
const AKI_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");

/// A certificate named the RFC 9773 way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertId {
    /// The issuer key identifier from the certificate's authorityKeyIdentifier.
    pub key_identifier: Vec<u8>,
    /// The serial number's DER INTEGER content octets (with a leading zero when the high
    /// bit is set).
    pub serial: Vec<u8>,
}

impl CertId {
    /// Reads an identifier from a URL path segment or a `replaces` value. Fails with
    /// `malformed` unless it is two non-empty base64url parts joined by one dot.
    pub fn parse(text: &str) -> Result<Self, AcmeProblem> {
        let (aki, serial) = text.split_once('.').ok_or_else(|| {
            AcmeProblem::malformed("renewal identifier is not keyIdentifier.serial")
        })?;
        let key_identifier = b64url_decode(aki, "renewal identifier keyIdentifier")?;
        let serial = b64url_decode(serial, "renewal identifier serial")?;
        if key_identifier.is_empty() || serial.is_empty() {
            return Err(AcmeProblem::malformed(
                "renewal identifier has an empty part",
            ));
        }
        Ok(Self {
            key_identifier,
            serial,
        })
    }

    /// The identifier of a DER certificate. Fails with `malformed` when it does not decode
    /// or has no authorityKeyIdentifier with a keyIdentifier (RFC 9773 4.1 needs one).
    pub fn of_certificate(der: &[u8]) -> Result<Self, AcmeProblem> {
        let cert = Certificate::from_der(der)
            .map_err(|_| AcmeProblem::malformed("certificate does not decode"))?;
        let tbs = cert.tbs_certificate();
        let aki = tbs
            .extensions()
            .into_iter()
            .flat_map(|exts| exts.iter())
            .find(|e| e.extn_id == AKI_OID)
            .and_then(|e| AuthorityKeyIdentifier::from_der(e.extn_value.as_bytes()).ok())
            .and_then(|a| a.key_identifier)
            .ok_or_else(|| {
                AcmeProblem::malformed("certificate has no authorityKeyIdentifier keyIdentifier")
            })?;
        Ok(Self {
            key_identifier: aki.as_bytes().to_vec(),
            serial: tbs.serial_number().as_bytes().to_vec(),
        })
    }

    /// The text form, `base64url(keyIdentifier).base64url(serial)`.
    pub fn to_text(&self) -> String {
        format!("{}.{}", b64url(&self.key_identifier), b64url(&self.serial))
    }
}

/// What is known about a certificate when its renewal window is asked for.
#[derive(Debug, Clone, Copy)]
pub struct RenewalFacts {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Revoked, or its profile now issues from another CA (a rotation): renew now.
    pub renew_now: bool,
}

/// A suggested renewal window (RFC 9773 4.2): renew at a random time in `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalWindow {
    /// Earliest suggested renewal time.
    pub start: SystemTime,
    /// Latest suggested renewal time.
    pub end: SystemTime,
}

/// The window Keyhold suggests: the middle third of the last third of validity, so renewals
/// of certificates issued together spread out; wholly in the past (an hour, ending a minute
/// ago) when the certificate is revoked or its issuer rotated, which tells RFC 9773 clients
/// to renew at once (as Boulder's `TestARIRevoked` expects).
pub fn suggested_window(facts: RenewalFacts, now: SystemTime) -> RenewalWindow {
    if facts.renew_now {
        let end = now.checked_sub(Duration::from_secs(60)).unwrap_or(now);
        let start = end.checked_sub(Duration::from_secs(3600)).unwrap_or(end);
        return RenewalWindow { start, end };
    }
    let lifetime = facts
        .not_after
        .duration_since(facts.not_before)
        .unwrap_or_default();
    let ninth = lifetime / 9;
    RenewalWindow {
        start: facts.not_before + ninth * 7,
        end: facts.not_before + ninth * 8,
    }
}
