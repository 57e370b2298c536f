//! Certificate revocation lists (RFC 5280 section 5): full v2 CRLs, signed through the key
//! store.
//!
//! Invariant: a CRL leaves [`generate`] only after its signature has been verified against
//! the issuer's key and [`self_check`] has found every unexpired revoked certificate of the
//! database in it exactly once, with its reason and dates, and nothing else. (Boulder once
//! shipped CRLs missing most revoked certificates through a misconfiguration; this check
//! catches that.)

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use der::asn1::{BitString, GeneralizedTime};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::crl::RevokedCert;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{CrlNumber, CrlReason};

use super::{Reason, RevocationError};
use crate::issuer::Issuer;
use crate::keystore::{self, SigAlg, Signer};
use crate::store::{CrlEntry, CrlList, Serial, Store};
use crate::x509::{self, SignedCert, X509Error};

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
    /// Its CRL number (from [`Store::next_crl_number`]).
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

/// A DER tag and definite length.
fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = header(tag, content.len());
    out.extend_from_slice(content);
    out
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

/// Writes `t` (to the second) as a DER Time into `buf`: UTCTime before 2050 and
/// GeneralizedTime from then on (RFC 5280 4.1.2.5), or always GeneralizedTime when
/// `generalized` (RFC 5280 5.3.2, invalidityDate). Returns the bytes written.
fn encode_time(buf: &mut [u8; 17], t: SystemTime, generalized: bool) -> Result<&[u8], X509Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| X509Error::InvalidValidity("time before 1970".into()))?
        .as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (all non-negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    if year > 9999 {
        return Err(X509Error::InvalidValidity("time after 9999".into()));
    }
    let utc = !generalized && year < 2050;
    let mut digits = [0u8; 15];
    let mut at = 0;
    let mut put = |value: u64, width: usize| {
        for i in (0..width).rev() {
            digits[at + i] = b'0' + (value / 10u64.pow((width - 1 - i) as u32) % 10) as u8;
        }
        at += width;
    };
    if utc {
        put(year % 100, 2);
    } else {
        put(year, 4);
    }
    put(month, 2);
    put(day, 2);
    put(rem / 3600, 2);
    put(rem / 60 % 60, 2);
    put(rem % 60, 2);
    let len = if utc { 12 } else { 14 };
    buf[0] = if utc { 0x17 } else { 0x18 };
    buf[1] = (len + 1) as u8;
    buf[2..2 + len].copy_from_slice(&digits[..len]);
    buf[2 + len] = b'Z';
    Ok(&buf[..3 + len])
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

/// A GeneralizedTime to the second (RFC 5280 4.1.2.5.2: no fractional seconds).
pub(crate) fn generalized_time(t: SystemTime) -> Result<GeneralizedTime, X509Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| X509Error::InvalidValidity("time before 1970".into()))?
        .as_secs();
    GeneralizedTime::from_system_time(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .map_err(|e| X509Error::InvalidValidity(e.to_string()))
}

/// Compares a CRL with what the database says the issuer has revoked: the CRL must parse
/// (with x509-cert's decoder, not the encoder that wrote it), be signed by `issuer_cert`'s
/// key, name it as issuer, and list every entry of `expected` exactly once with the same
/// revocation date, reason and invalidity date, and nothing else; and `expected` must hold
/// `counted` distinct serials (the database's separate count of what the CRL must list).
///
/// `expected` must be sorted by serial octets (as [`generate`] sorts it): the entries are
/// then decoded one at a time and compared in order, and strictly increasing serials prove
/// each is listed once. Only when that fails is the whole list indexed, to name every
/// difference.
///
/// Fails with [`RevocationError::CrlMismatch`] listing every difference found.
pub fn self_check(
    crl_der: &[u8],
    issuer_cert: &SignedCert,
    expected: &[CrlEntry],
    counted: u64,
) -> Result<(), RevocationError> {
    let mismatch = |problems: Vec<String>| RevocationError::CrlMismatch {
        issuer: issuer_cert.subject(),
        problems,
    };
    let parsed =
        ParsedCrl::parse(crl_der).map_err(|e| mismatch(vec![format!("it does not parse: {e}")]))?;
    let mut problems = Vec::new();
    if let Err(e) = parsed.verify(issuer_cert) {
        problems.push(format!("its signature: {e}"));
    }
    if &parsed.issuer != issuer_cert.cert.tbs_certificate().subject() {
        problems.push("its issuer is not the issuer certificate's subject".into());
    }
    if expected.len() as u64 != counted {
        problems.push(format!(
            "the database counts {counted} unexpired revoked certificate(s) but its list holds {}",
            expected.len()
        ));
    }
    // The fast path walks the entries' DER in place (no allocation per entry: at 1,000,000
    // entries, decoding each into x509-cert types took 1.2 s); any doubt falls to the slow
    // path below, which decodes with x509-cert and names every difference.
    let mut rest = parsed.revoked;
    let mut previous: Option<&[u8]> = None;
    let in_order = expected.iter().all(|want| {
        let increasing = previous.is_none_or(|p| p < want.serial_octets());
        previous = Some(want.serial_octets());
        match raw::entry(rest) {
            Some((got, after)) => {
                rest = after;
                increasing && got.matches(want)
            }
            None => false,
        }
    }) && rest.is_empty();
    if !in_order {
        problems.extend(differences(&parsed, expected));
        if problems.is_empty() {
            problems.push("its entries are not in serial order".into());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(mismatch(problems))
    }
}

/// Every difference between the CRL's entries and `expected`, in any order (the slow path).
fn differences(parsed: &ParsedCrl<'_>, expected: &[CrlEntry]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut listed: HashMap<String, (usize, RevokedCert)> = HashMap::new();
    match parsed.entries() {
        Err(e) => return vec![format!("its entries do not parse: {e}")],
        Ok(entries) => {
            for entry in entries {
                match entry {
                    Ok(entry) => {
                        let serial = Serial::from_bytes(entry.serial_number.as_bytes());
                        listed
                            .entry(serial.as_str().to_owned())
                            .or_insert((0, entry))
                            .0 += 1;
                    }
                    Err(e) => {
                        problems.push(format!("an entry does not parse: {e}"));
                        break;
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for want in expected {
        let serial = want.serial();
        if !seen.insert(serial.clone()) {
            problems.push(format!(
                "certificate {serial} is revoked more than once in the database's list"
            ));
            continue;
        }
        match listed.remove(serial.as_str()) {
            None => problems.push(format!("revoked certificate {serial} is missing")),
            Some((count, got)) => {
                if count > 1 {
                    problems.push(format!("certificate {serial} is listed {count} times"));
                }
                if !same_entry(want, &got) {
                    problems.push(format!(
                        "certificate {serial}: its date, reason or invalidity date differs"
                    ));
                }
            }
        }
    }
    let mut extra: Vec<String> = listed.into_keys().collect();
    extra.sort();
    for serial in extra {
        problems.push(format!(
            "certificate {serial} is listed but not revoked (or expired) in the database"
        ));
    }
    problems
}

/// Whether a decoded CRL entry says what the database row says.
fn same_entry(want: &CrlEntry, got: &RevokedCert) -> bool {
    let whole = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let mut reason = Reason::Unspecified;
    let mut invalidity = None;
    for ext in got.crl_entry_extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == const_oid::db::rfc5280::ID_CE_CRL_REASONS {
            match CrlReason::from_der(value) {
                // RFC 5280 5.3.1: unspecified is written by omission, never as a code.
                Ok(r) if r != CrlReason::Unspecified => match Reason::from_code(r as u8) {
                    Some(r) => reason = r,
                    None => return false,
                },
                _ => return false,
            }
        } else if ext.extn_id == ID_CE_INVALIDITY_DATE {
            match GeneralizedTime::from_der(value) {
                Ok(t) => invalidity = Some(whole(t.to_system_time())),
                Err(_) => return false,
            }
        } else {
            return false;
        }
    }
    let serial = got.serial_number.as_bytes();
    // The INTEGER's content, without DER's leading zero octet for a set top bit.
    let serial = match serial {
        [0, rest @ ..] if !rest.is_empty() => rest,
        s => s,
    };
    serial == want.serial_octets()
        && whole(got.revocation_date.to_system_time()) == whole(want.revoked_at)
        && reason == want.reason
        && invalidity == want.invalidity_date.map(whole)
}

/// A CRL decoded down to its entries, which stay undecoded until iterated.
struct ParsedCrl<'a> {
    tbs: &'a [u8],
    inner_algorithm: AlgorithmIdentifierOwned,
    algorithm: AlgorithmIdentifierOwned,
    signature: Vec<u8>,
    issuer: x509_cert::name::Name,
    revoked: &'a [u8],
}

impl<'a> ParsedCrl<'a> {
    fn parse(der: &'a [u8]) -> Result<Self, der::Error> {
        use der::asn1::AnyRef;
        use der::{Reader, SliceReader, Tag, Tagged};
        let outer = AnyRef::from_der(der)?;
        outer.tag().assert_eq(Tag::Sequence)?;
        let mut r = SliceReader::new(outer.value())?;
        let tbs_any = AnyRef::decode(&mut r)?;
        tbs_any.tag().assert_eq(Tag::Sequence)?;
        let tbs_len = usize::try_from(tbs_any.encoded_len()?)?;
        let tbs = outer.value().get(..tbs_len).ok_or_else(|| {
            der::Error::from(der::ErrorKind::Incomplete {
                expected_len: tbs_any.encoded_len().unwrap_or_default(),
                actual_len: der::Length::ZERO,
            })
        })?;
        let algorithm = AlgorithmIdentifierOwned::decode(&mut r)?;
        let signature = BitString::decode(&mut r)?;
        r.finish()?;
        let signature = signature
            .as_bytes()
            .ok_or_else(|| {
                der::Error::from(der::ErrorKind::Value {
                    tag: Tag::BitString,
                })
            })?
            .to_vec();

        let mut t = SliceReader::new(tbs_any.value())?;
        let version = u8::decode(&mut t)?;
        if version != 1 {
            return Err(der::ErrorKind::Value { tag: Tag::Integer }.into());
        }
        let inner_algorithm = AlgorithmIdentifierOwned::decode(&mut t)?;
        let issuer = x509_cert::name::Name::decode(&mut t)?;
        let _this_update = x509_cert::time::Time::decode(&mut t)?;
        let _next_update = x509_cert::time::Time::decode(&mut t)?;
        let mut revoked: &[u8] = &[];
        if !t.is_finished() && Tag::peek(&t)? == Tag::Sequence {
            revoked = AnyRef::decode(&mut t)?.value();
        }
        let _extensions: der::asn1::ContextSpecific<Vec<Extension>> =
            der::asn1::ContextSpecific::decode(&mut t)?;
        t.finish()?;
        Ok(ParsedCrl {
            tbs,
            inner_algorithm,
            algorithm,
            signature,
            issuer,
            revoked,
        })
    }

    fn verify(&self, issuer_cert: &SignedCert) -> Result<(), X509Error> {
        let oid = self.algorithm.oid;
        if self.inner_algorithm != self.algorithm {
            return Err(X509Error::Encoding(
                "the inner and outer signature algorithms differ".into(),
            ));
        }
        let alg = [SigAlg::EcdsaP256Sha256, SigAlg::EcdsaP384Sha384]
            .into_iter()
            .find(|a| a.oid() == oid)
            .ok_or_else(|| X509Error::Encoding(format!("unsupported signature algorithm {oid}")))?;
        keystore::verify(alg, &issuer_cert.public_key()?, self.tbs, &self.signature)?;
        Ok(())
    }

    /// The entries, decoded one at a time.
    fn entries(
        &self,
    ) -> Result<impl Iterator<Item = Result<RevokedCert, der::Error>> + '_, der::Error> {
        use der::Reader;
        let mut r = der::SliceReader::new(self.revoked)?;
        Ok(std::iter::from_fn(move || {
            if r.is_finished() {
                None
            } else {
                Some(RevokedCert::decode(&mut r))
            }
        }))
    }
}

/// Makes `issuer`'s next full CRL at `now`: allocates its CRL number, reads every unexpired
/// revoked certificate (for a root, also every revoked CA certificate it signed) from
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
    let number = store.next_crl_number(&issuer.id)?;
    let CrlList {
        mut entries,
        counted,
    } = store.crl_entries(&issuer.id, now)?;
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

/// A CRL entry read straight from its DER, for the self-check's fast path: strict enough
/// that anything it accepts decodes to the same values with x509-cert (the slow path and
/// the tests hold it to that).
mod raw {
    use std::time::SystemTime;

    use super::Reason;
    use crate::store::CrlEntry;

    /// One TLV with a one-octet tag and a definite, minimally encoded length: (tag,
    /// content, what follows).
    pub(super) fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, der) = der.split_first()?;
        let (&first, der) = der.split_first()?;
        let (len, der) = if first < 0x80 {
            (usize::from(first), der)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || der.len() < n || der[0] == 0 {
                return None;
            }
            let len = der[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return None; // not minimal
            }
            (len, &der[n..])
        };
        (der.len() >= len).then(|| (tag, &der[..len], &der[len..]))
    }

    /// Seconds since the Unix epoch of a UTCTime (`YYMMDDHHMMSSZ`, RFC 5280's years
    /// 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), from 1970 on.
    pub(super) fn time(tag: u8, text: &[u8]) -> Option<u64> {
        let digits = |s: &[u8]| -> Option<u64> {
            s.iter().try_fold(0u64, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
            })
        };
        let (year, rest) = match (tag, text.len()) {
            (0x17, 13) => {
                let yy = digits(&text[..2])?;
                (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
            }
            (0x18, 15) => (digits(&text[..4])?, &text[4..]),
            _ => return None,
        };
        if rest[10] != b'Z' {
            return None;
        }
        let (month, day) = (digits(&rest[0..2])?, digits(&rest[2..4])?);
        let (hour, minute, second) = (
            digits(&rest[4..6])?,
            digits(&rest[6..8])?,
            digits(&rest[8..10])?,
        );
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
            return None;
        }
        if second > 59 || year < 1970 {
            return None;
        }
        // Days from the civil date (Howard Hinnant's algorithm).
        let (y, m) = if month <= 2 {
            (year - 1, month + 9)
        } else {
            (year, month - 3)
        };
        let era = y / 400;
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = (era * 146_097 + doe).checked_sub(719_468)?;
        Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
    }

    /// What one entry says.
    pub(super) struct Entry<'a> {
        serial: &'a [u8],
        revoked_at: u64,
        reason: Reason,
        invalidity: Option<u64>,
    }

    impl Entry<'_> {
        /// Whether it says what `want` says (times to the second, as encoded).
        pub(super) fn matches(&self, want: &CrlEntry) -> bool {
            let whole = |t: SystemTime| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            };
            self.serial == want.serial_octets()
                && self.revoked_at == whole(want.revoked_at)
                && self.reason == want.reason
                && self.invalidity == want.invalidity_date.map(whole)
        }
    }

    /// The first entry of `der` and what follows it; `None` if it is not one this CA
    /// writes (the slow path then says what is wrong).
    pub(super) fn entry(der: &[u8]) -> Option<(Entry<'_>, &[u8])> {
        let (tag, body, after) = tlv(der)?;
        if tag != 0x30 {
            return None;
        }
        let (tag, serial, body) = tlv(body)?;
        if tag != 0x02 {
            return None;
        }
        // A positive INTEGER: its content without DER's leading zero for a set top bit.
        let serial = match serial {
            [0, rest @ ..] if rest.first().is_some_and(|b| b & 0x80 != 0) => rest,
            [] | [0, ..] | [0x80..=0xff, ..] => return None,
            s => s,
        };
        let (tag, at, body) = tlv(body)?;
        let revoked_at = time(tag, at)?;
        let mut reason = Reason::Unspecified;
        let mut invalidity = None;
        if !body.is_empty() {
            let (tag, mut exts, rest) = tlv(body)?;
            if tag != 0x30 || !rest.is_empty() || exts.is_empty() {
                return None;
            }
            while !exts.is_empty() {
                let (tag, ext, next) = tlv(exts)?;
                exts = next;
                if tag != 0x30 {
                    return None;
                }
                let (tag, oid, ext) = tlv(ext)?;
                if tag != 0x06 {
                    return None;
                }
                // No critical flag: this CA never marks these critical.
                let (tag, value, rest) = tlv(ext)?;
                if tag != 0x04 || !rest.is_empty() {
                    return None;
                }
                match oid {
                    // id-ce-cRLReasons: ENUMERATED, never unspecified (written by omission).
                    [0x55, 0x1d, 0x15] if reason == Reason::Unspecified => match tlv(value)? {
                        (0x0a, [code], []) if *code != 0 => reason = Reason::from_code(*code)?,
                        _ => return None,
                    },
                    // id-ce-invalidityDate: GeneralizedTime.
                    [0x55, 0x1d, 0x18] if invalidity.is_none() => match tlv(value)? {
                        (0x18, t, []) => invalidity = Some(time(0x18, t)?),
                        _ => return None,
                    },
                    _ => return None,
                }
            }
        }
        Some((
            Entry {
                serial,
                revoked_at,
                reason,
                invalidity,
            },
            after,
        ))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn times_are_read_as_x509_cert_reads_them() {
            assert_eq!(time(0x17, b"700101000000Z"), Some(0));
            assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
            assert_eq!(time(0x18, b"20261123120000Z"), Some(1_795_435_200));
            assert_eq!(time(0x18, b"20240229000000Z"), Some(1_709_164_800));
            assert_eq!(time(0x17, b"7001010000Z"), None);
            assert_eq!(time(0x18, b"20261323120000Z"), None);
            assert_eq!(time(0x18, b"2026112312000+Z"), None);
        }

        #[test]
        fn lengths_must_be_definite_and_minimal() {
            assert_eq!(tlv(&[0x02, 0x01, 0x05]), Some((0x02, &[5u8][..], &[][..])));
            assert!(tlv(&[0x02, 0x81, 0x01, 0x05]).is_none(), "long form for 1");
            assert!(tlv(&[0x30, 0x80]).is_none(), "indefinite");
            assert!(tlv(&[0x02, 0x02, 0x05]).is_none(), "short");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keystore::embedded::{EmbeddedKeyStore, KdfParams};
    use crate::keystore::{KeyRef, KeySpec, KeyStore};
    use crate::secret::Secret;
    use crate::x509::CertTemplate;
    use std::sync::Arc;
    use x509_cert::crl::CertificateList;
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

    /// x509-cert's own encoding of an entry, to check `write_entry` against.
    fn serial_number(
        entry: &CrlEntry,
    ) -> Result<x509_cert::serial_number::SerialNumber, X509Error> {
        Ok(x509_cert::serial_number::SerialNumber::new(
            entry.serial_octets(),
        )?)
    }

    fn revoked_cert(entry: &CrlEntry) -> Result<RevokedCert, X509Error> {
        let mut extensions = Vec::new();
        // RFC 5280 5.3.1: omit the reason code rather than write unspecified.
        if entry.reason != Reason::Unspecified {
            extensions.push(x509::to_ext(false, &crl_reason(entry.reason))?);
        }
        if let Some(date) = entry.invalidity_date {
            extensions.push(Extension {
                extn_id: ID_CE_INVALIDITY_DATE,
                critical: false,
                extn_value: der::asn1::OctetString::new(generalized_time(date)?.to_der()?)?,
            });
        }
        Ok(RevokedCert {
            serial_number: serial_number(entry)?,
            revocation_date: x509::x509_time(entry.revoked_at)?,
            crl_entry_extensions: (!extensions.is_empty()).then_some(extensions),
        })
    }

    fn crl_reason(reason: Reason) -> CrlReason {
        match reason {
            Reason::Unspecified => CrlReason::Unspecified,
            Reason::KeyCompromise => CrlReason::KeyCompromise,
            Reason::CaCompromise => CrlReason::CaCompromise,
            Reason::AffiliationChanged => CrlReason::AffiliationChanged,
            Reason::Superseded => CrlReason::Superseded,
            Reason::CessationOfOperation => CrlReason::CessationOfOperation,
            Reason::CertificateHold => CrlReason::CertificateHold,
            Reason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
            Reason::AaCompromise => CrlReason::AaCompromise,
        }
    }

    pub(crate) fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600) // 2026-01-01
    }

    /// A self-signed CA in a throwaway embedded token.
    pub(crate) fn test_ca(
        dir: &std::path::Path,
        cn: &str,
    ) -> (SignedCert, Arc<dyn Signer>, Arc<dyn KeyStore>) {
        let store: Arc<dyn KeyStore> = Arc::new(
            EmbeddedKeyStore::create(
                dir,
                &Secret::new("test passphrase".into()),
                KdfParams::insecure_for_tests(),
            )
            .unwrap(),
        );
        let key = KeyRef::new("ca").unwrap();
        let spki = store.generate(&key, KeySpec::EcP384).unwrap();
        let signer = store.signer(&key).unwrap();
        let name = x509::parse_name(&format!("CN={cn},O=Keyhold")).unwrap();
        let cert = x509::sign_certificate(
            CertTemplate {
                serial: x509::random_serial().unwrap(),
                issuer: name.clone(),
                subject: name,
                not_before: t0(),
                not_after: t0() + Duration::from_secs(3650 * 86_400),
                public_key: spki.clone(),
                extensions: vec![
                    x509::to_ext(
                        true,
                        &BasicConstraints {
                            ca: true,
                            path_len_constraint: None,
                        },
                    )
                    .unwrap(),
                    x509::to_ext(true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))
                        .unwrap(),
                    x509::ski_extension(&spki).unwrap(),
                ],
            },
            signer.as_ref(),
        )
        .unwrap();
        (cert, signer, store)
    }

    fn entry(serial: &str, reason: Reason, invalidity: bool) -> CrlEntry {
        CrlEntry::from_hex(
            serial.as_bytes(),
            reason,
            t0() + Duration::from_secs(3600),
            invalidity.then(|| t0() + Duration::from_secs(60)),
        )
        .unwrap()
    }

    #[test]
    fn a_crl_lists_every_entry_with_reason_and_invalidity_date_and_passes_its_self_check() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, signer, _store) = test_ca(dir.path(), "CRL Test CA");
        let entries = vec![
            entry("01", Reason::KeyCompromise, true),
            entry("7f", Reason::Superseded, false),
            entry("ff00", Reason::Unspecified, false),
        ];
        let crl = build(
            &cert,
            signer.as_ref(),
            &CrlParams {
                number: 42,
                this_update: t0() + Duration::from_secs(7200),
                validity: DEFAULT_VALIDITY,
            },
            &entries,
        )
        .unwrap();
        self_check(&crl.der, &cert, &entries, 3).unwrap();
        let parsed =
            CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&crl.der).unwrap();
        let tbs = &parsed.tbs_cert_list;
        assert_eq!(tbs.version, x509_cert::Version::V2);
        let listed = tbs.revoked_certificates.as_ref().unwrap();
        assert_eq!(listed.len(), 3);
        // The hand-written entries are what x509-cert's own structures encode to.
        for (got, want) in listed.iter().zip(&entries) {
            assert_eq!(got, &revoked_cert(want).unwrap());
        }
        // Unspecified: no reason code extension at all.
        assert!(listed[2].crl_entry_extensions.is_none());
        assert_eq!(listed[0].crl_entry_extensions.as_ref().unwrap().len(), 2);
        assert_eq!(crl.next_update, crl.this_update + DEFAULT_VALIDITY);
    }

    #[test]
    fn hand_written_entries_match_x509_cert_for_odd_serials_and_dates() {
        let times = [
            0,
            951_782_400,   // 2000-02-29
            2_524_607_999, // 2049-12-31T23:59:59Z: last UTCTime
            2_524_608_000, // 2050-01-01: GeneralizedTime from here
            4_107_542_400, // 2100-03-01
            1_767_225_600 + 86_399,
        ];
        // (x509-cert refuses to encode a 20-octet serial with its top bit set, which needs 21.)
        let serials = [
            "01",
            "7f",
            "80",
            "ff",
            "0100",
            &"7f".repeat(20),
            &"ff".repeat(19),
        ];
        for (i, secs) in times.into_iter().enumerate() {
            for serial in serials {
                let t =
                    SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(700);
                let entry = CrlEntry::from_hex(
                    serial.as_bytes(),
                    Reason::from_code([0, 1, 2, 3, 4, 5, 9][i % 7]).unwrap(),
                    t,
                    (i % 2 == 0).then_some(t),
                )
                .unwrap();
                let mut written = Vec::new();
                write_entry(&mut written, &entry).unwrap();
                let expected = revoked_cert(&entry).unwrap().to_der().unwrap();
                assert_eq!(written, expected, "serial {serial} at {secs}");
            }
        }
    }

    #[test]
    fn the_self_check_names_missing_duplicate_and_extra_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, signer, _store) = test_ca(dir.path(), "CRL Check CA");
        let params = CrlParams {
            number: 1,
            this_update: t0() + Duration::from_secs(7200),
            validity: DEFAULT_VALIDITY,
        };
        let listed = vec![
            entry("01", Reason::KeyCompromise, false),
            entry("01", Reason::KeyCompromise, false),
            entry("03", Reason::Superseded, false),
        ];
        let crl = build(&cert, signer.as_ref(), &params, &listed).unwrap();
        let expected = vec![
            entry("01", Reason::KeyCompromise, false),
            entry("02", Reason::Superseded, false),
        ];
        let err = self_check(&crl.der, &cert, &expected, 2)
            .unwrap_err()
            .to_string();
        for needle in [
            "certificate 01 is listed 2 times",
            "revoked certificate 02 is missing",
            "certificate 03 is listed but not revoked",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
        // A list shorter than the database's own count (rows the read missed) is refused,
        // even when the CRL says exactly what the list says.
        let crl = build(&cert, signer.as_ref(), &params, &expected).unwrap();
        let err = self_check(&crl.der, &cert, &expected, 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "the database counts 3 unexpired revoked certificate(s) but its list holds 2"
            ),
            "{err}"
        );
        self_check(&crl.der, &cert, &expected, 2).unwrap();
        // A CRL signed by another CA's key fails the signature check.
        let other = tempfile::tempdir().unwrap();
        let (other_cert, _, _) = test_ca(other.path(), "Other CA");
        let err = self_check(&crl.der, &other_cert, &listed, 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("signature"), "{err}");
    }

    #[test]
    fn entries_read_serials_in_any_spelling_as_one_number() {
        let a = entry("00ff01", Reason::KeyCompromise, false);
        let b = entry("ff01", Reason::KeyCompromise, false);
        assert_eq!(a, b);
        assert_eq!(a.serial_octets(), [0xff, 0x01]);
        assert_eq!(a.serial().as_str(), "ff01");
        assert_eq!(
            entry("0000", Reason::Unspecified, false).serial_octets(),
            [0]
        );
        for bad in ["", "0", "zz", &"01".repeat(21)] {
            assert!(
                CrlEntry::from_hex(bad.as_bytes(), Reason::Unspecified, t0(), None).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_empty_crl_omits_the_revoked_list() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, signer, _store) = test_ca(dir.path(), "Empty CRL CA");
        let crl = build(
            &cert,
            signer.as_ref(),
            &CrlParams {
                number: 1,
                this_update: t0(),
                validity: DEFAULT_VALIDITY,
            },
            &[],
        )
        .unwrap();
        let parsed =
            CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&crl.der).unwrap();
        assert!(parsed.tbs_cert_list.revoked_certificates.is_none());
        self_check(&crl.der, &cert, &[], 0).unwrap();
    }

    /// Build-and-sign time for a large CRL: `KEYHOLD_CRL_ENTRIES=1000000 cargo test -p
    /// ca-core --release --lib -- --ignored --nocapture crl_scale`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn crl_scale() {
        let n: u64 = std::env::var("KEYHOLD_CRL_ENTRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let dir = tempfile::tempdir().unwrap();
        let (cert, signer, _store) = test_ca(dir.path(), "Scale CA");
        let entries: Vec<CrlEntry> = (0..n)
            .map(|i| {
                let serial = format!("{:032x}", u128::from(i) | (1 << 126));
                let reason = if i % 3 == 0 {
                    Reason::Unspecified
                } else {
                    Reason::KeyCompromise
                };
                CrlEntry::from_hex(serial.as_bytes(), reason, t0(), None).unwrap()
            })
            .collect();
        let start = std::time::Instant::now();
        let crl = build(
            &cert,
            signer.as_ref(),
            &CrlParams {
                number: 1,
                this_update: t0(),
                validity: DEFAULT_VALIDITY,
            },
            &entries,
        )
        .unwrap();
        let built = start.elapsed();
        self_check(&crl.der, &cert, &entries, n).unwrap();
        eprintln!(
            "{n} entries: {} octets, built and signed in {built:?}, checked in {:?}",
            crl.der.len(),
            start.elapsed() - built
        );
    }
}
