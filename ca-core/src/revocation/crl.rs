//! Certificate revocation lists (RFC 5280 section 5): full v2 CRLs, signed through the key
//! store.
//!
//! Invariant: a CRL leaves [`generate`] only after its signature has been verified against
//! the issuer's key and [`self_check`] has found every unexpired revoked certificate of the
//! database in it exactly once, with its reason and dates, and nothing else. (Boulder once
//! shipped CRLs missing most revoked certificates through a misconfiguration; this check
//! catches that.)

use std::time::{Duration, SystemTime};

use der::asn1::BitString;
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::CrlNumber;

use super::encoding::{encode_time, header, tlv};
use super::{Reason, RevocationError};
use crate::issuer::Issuer;
use crate::keystore::{self, Signer};
use crate::store::{CrlEntry, CrlList, Store};
use crate::x509::{self, SignedCert, X509Error};

mod check;

use self::check::ParsedCrl;
pub use self::check::self_check;

/// How long a CRL is valid by default (thisUpdate to nextUpdate).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(7 * 86_400);

/// id-ce-invalidityDate (RFC 5280 5.3.2).
const ID_CE_INVALIDITY_DATE: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("2.5.29.24");

/// A signed CRL.
#[derive(Debug, Clone)]
pub struct SignedCrl {
    /// DER, as served at `/crl/{issuer}.crl` (`application/pkix-crl`).
    pub der: Vec<u8>,
    /// Its CRL number.
    pub number: u64,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate.
    pub next_update: SystemTime,
    /// How many certificates it lists.
    pub entries: usize,
}

impl SignedCrl {
    /// PEM (`X509 CRL`) with a trailing newline.
    ///
    /// Fails only if the DER does not fit PEM's limits.
    pub fn to_pem(&self) -> Result<String, X509Error> {
        der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &self.der)
            .map_err(|e| X509Error::Encoding(e.to_string()))
    }
}

/// What a CRL says besides its entries.
#[derive(Debug, Clone, Copy)]
pub struct CrlParams {
    /// Its CRL number (from [`crate::store::RevocationLedger::next_crl_number`]).
    pub number: u64,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate - thisUpdate.
    pub validity: Duration,
}

/// Builds and signs a v2 CRL for the issuer whose certificate is `issuer_cert`, listing
/// `entries` in the order given.
///
/// The entries are written straight to DER, one after another, into the one buffer that
/// becomes the CRL, rather than through x509-cert's structures: a million-entry CRL then
/// costs about 50 octets per entry and no allocation per entry.
///
/// Fails if an entry or time does not encode, the key store cannot sign, or the signature
/// does not verify with the signer's public key.
pub fn build(
    issuer_cert: &SignedCert,
    signer: &dyn Signer,
    params: &CrlParams,
    entries: &[CrlEntry],
) -> Result<SignedCrl, X509Error> {
    let crl = sign_unverified(issuer_cert, signer, params, entries)?;
    let parsed = ParsedCrl::parse(&crl.der)?;
    keystore::verify(
        signer.algorithm(),
        signer.public_key(),
        parsed.tbs,
        &parsed.signature,
    )?;
    Ok(crl)
}

/// [`build`] without checking the signature: for [`generate`], whose [`self_check`] checks it
/// (each check hashes the whole CRL again).
fn sign_unverified(
    issuer_cert: &SignedCert,
    signer: &dyn Signer,
    params: &CrlParams,
    entries: &[CrlEntry],
) -> Result<SignedCrl, X509Error> {
    let next_update = params.this_update + params.validity;
    let algorithm = AlgorithmIdentifierOwned {
        // RFC 5758 3.2: no parameters for ecdsa-with-SHA*.
        oid: signer.algorithm().oid(),
        parameters: None,
    }
    .to_der()?;
    let mut extensions = Vec::new();
    extensions.extend(authority_key_id(issuer_cert, signer)?.to_der()?);
    extensions.extend(x509::to_ext(false, &CrlNumber::try_from(params.number)?)?.to_der()?);
    let extensions = tlv(0xa0, &tlv(0x30, &extensions));

    // TBSCertList (RFC 5280 5.1): version v2, signature, issuer, thisUpdate, nextUpdate,
    // revokedCertificates (absent, not empty, when nothing is revoked: 5.1.2.6),
    // [0] EXPLICIT crlExtensions.
    let version = [0x02, 0x01, 0x01];
    let issuer = issuer_cert.cert.tbs_certificate().subject().to_der()?;
    let this_update = x509::x509_time(params.this_update)?.to_der()?;
    let next = x509::x509_time(next_update)?.to_der()?;
    let mut revoked_len = 0usize;
    for entry in entries {
        revoked_len += entry_len(entry)?;
    }
    let revoked_header = if entries.is_empty() {
        Vec::new()
    } else {
        header(0x30, revoked_len)
    };
    let fixed: [&[u8]; 6] = [
        &version,
        &algorithm,
        &issuer,
        &this_update,
        &next,
        &revoked_header,
    ];
    let tbs_content = fixed.iter().map(|p| p.len()).sum::<usize>() + revoked_len + extensions.len();
    let tbs_header = header(0x30, tbs_content);

    // One buffer: room for the outer header (at most 9 octets), the TBS, then the algorithm
    // and the signature (an ECDSA signature is under 160 octets).
    const GAP: usize = 9;
    let mut out = Vec::with_capacity(GAP + tbs_header.len() + tbs_content + algorithm.len() + 160);
    out.resize(GAP, 0);
    out.extend_from_slice(&tbs_header);
    for part in fixed {
        out.extend_from_slice(part);
    }
    let before = out.len();
    for entry in entries {
        write_entry(&mut out, entry)?;
    }
    if out.len() - before != revoked_len {
        return Err(X509Error::Encoding(
            "the CRL entries' length was miscounted".into(),
        ));
    }
    out.extend_from_slice(&extensions);
    let signature = signer.sign(&out[GAP..])?;
    let bits = BitString::from_bytes(&signature)?.to_der()?;
    let outer = header(0x30, out.len() - GAP + algorithm.len() + bits.len());
    out.extend_from_slice(&algorithm);
    out.extend_from_slice(&bits);
    let start = GAP - outer.len();
    out[start..GAP].copy_from_slice(&outer);
    out.drain(..start);
    Ok(SignedCrl {
        der: out,
        number: params.number,
        this_update: params.this_update,
        next_update,
        entries: entries.len(),
    })
}

/// extnID 2.5.29.21, extnValue OCTET STRING { ENUMERATED code }.
const REASON_EXT_LEN: usize = 12;
/// extnID 2.5.29.24, extnValue OCTET STRING { GeneralizedTime (17 octets with its header) }.
const INVALIDITY_EXT_LEN: usize = 26;

/// The parts of one entry: the INTEGER content of its serial (with DER's leading zero when
/// the top bit is set), in a stack buffer, and the length of its extensions' content.
fn entry_parts(entry: &CrlEntry) -> Result<([u8; 21], usize, Option<u8>, usize), X509Error> {
    let octets = entry.serial_octets();
    if octets.is_empty() || octets.len() > 20 {
        return Err(X509Error::Encoding(format!(
            "serial {} is not 1 to 20 octets",
            entry.serial()
        )));
    }
    let mut serial = [0u8; 21];
    let pad = usize::from(octets[0] & 0x80 != 0); // DER: a leading zero keeps it positive.
    serial[pad..pad + octets.len()].copy_from_slice(octets);
    // RFC 5280 5.3.1: omit the reason code rather than write unspecified.
    let reason = (entry.reason != Reason::Unspecified).then(|| entry.reason.code());
    let ext_len = reason.map_or(0, |_| REASON_EXT_LEN)
        + entry.invalidity_date.map_or(0, |_| INVALIDITY_EXT_LEN);
    Ok((serial, pad + octets.len(), reason, ext_len))
}

/// How many octets [`write_entry`] writes for `entry`.
fn entry_len(entry: &CrlEntry) -> Result<usize, X509Error> {
    let (_, serial_len, _, ext_len) = entry_parts(entry)?;
    let mut date = [0u8; 17];
    let date_len = encode_time(&mut date, entry.revoked_at, false)?.len();
    let content = 2 + serial_len + date_len + if ext_len > 0 { 2 + ext_len } else { 0 };
    Ok(2 + content)
}

/// Appends one revokedCertificates entry: SEQUENCE { userCertificate, revocationDate,
/// crlEntryExtensions OPTIONAL }, written without intermediate allocations (this loop is the
/// cost of a large CRL). A unit test checks the bytes against x509-cert's own encoding.
fn write_entry(out: &mut Vec<u8>, entry: &CrlEntry) -> Result<(), X509Error> {
    // userCertificate: a positive INTEGER, at most 20 octets (RFC 5280 4.1.2.2).
    let (serial, serial_len, reason, ext_len) = entry_parts(entry)?;
    let serial = &serial[..serial_len];
    let mut date = [0u8; 17];
    let date = encode_time(&mut date, entry.revoked_at, false)?;
    let mut invalidity = [0u8; 17];
    let invalidity = entry
        .invalidity_date
        .map(|t| encode_time(&mut invalidity, t, true))
        .transpose()?;
    let content = 2 + serial.len() + date.len() + if ext_len > 0 { 2 + ext_len } else { 0 };
    // At most 2 + 21 + 17 + 2 + 38 octets: always a one-octet length.
    out.push(0x30);
    out.push(content as u8);
    out.push(0x02);
    out.push(serial.len() as u8);
    out.extend_from_slice(serial);
    out.extend_from_slice(date);
    if ext_len > 0 {
        out.push(0x30);
        out.push(ext_len as u8);
        if let Some(code) = reason {
            out.extend_from_slice(&[
                0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, code,
            ]);
        }
        if let Some(time) = invalidity {
            out.extend_from_slice(&[0x30, 0x18, 0x06, 0x03, 0x55, 0x1d, 0x18, 0x04, 0x11]);
            out.extend_from_slice(time);
        }
    }
    Ok(())
}

/// The AKI: the issuer certificate's SKI when it has one (so the two always match), else
/// the RFC 7093 identifier of the signing key.
fn authority_key_id(issuer_cert: &SignedCert, signer: &dyn Signer) -> Result<Extension, X509Error> {
    use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
    let ski = issuer_cert
        .cert
        .tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER);
    match ski {
        Some(ext) => {
            let ski = SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes())?;
            let aki = AuthorityKeyIdentifier {
                key_identifier: Some(ski.0),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            };
            Ok(x509::to_ext(false, &aki)?)
        }
        None => x509::aki_extension(signer.public_key()),
    }
}

/// Makes `issuer`'s next full CRL at `now`: allocates its CRL number and, in the same
/// snapshot (so a higher number never lists less), reads every unexpired revoked certificate (for a root, also every revoked CA certificate it signed) from
/// `store` with their separate count, sorts them by serial, signs through the key store, and
/// runs [`self_check`] against the list and count it read.
///
/// Fails if the store or key store fails, or the self-check finds a difference (the CRL is
/// then not returned, so it cannot be published).
pub fn generate(
    store: &dyn Store,
    issuer: &Issuer,
    now: SystemTime,
    validity: Duration,
) -> Result<SignedCrl, RevocationError> {
    let (
        number,
        CrlList {
            mut entries,
            counted,
        },
    ) = store.numbered_crl_entries(&issuer.id, now)?;
    // Usually sorted already (the database reads in serial order): then this is one pass.
    entries.sort_unstable_by(|a, b| a.serial_octets().cmp(b.serial_octets()));
    let crl = sign_unverified(
        &issuer.ca.cert,
        issuer.ca.signer.as_ref(),
        &CrlParams {
            number,
            this_update: now,
            validity,
        },
        &entries,
    )?;
    self_check(&crl.der, &issuer.ca.cert, &entries, counted)?;
    Ok(crl)
}

#[cfg(test)]
pub(crate) mod tests;
