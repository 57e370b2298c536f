//! The CRL self-check: a CRL is decoded again (with x509-cert's decoder, not the writer that
//! made it) and compared with the database before anyone may publish it.

use std::collections::HashMap;
use std::time::SystemTime;

use der::asn1::{BitString, GeneralizedTime};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::crl::RevokedCert;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::CrlReason;

use super::ID_CE_INVALIDITY_DATE;
use crate::keystore::{self, SigAlg};
use crate::revocation::{Reason, RevocationError};
use crate::store::{CrlEntry, Serial};
use crate::x509::{SignedCert, X509Error};

/// Compares a CRL with what the database says the issuer has revoked: the CRL must parse
/// (with x509-cert's decoder, not the encoder that wrote it), be signed by `issuer_cert`'s
/// key, name it as issuer, and list every entry of `expected` exactly once with the same
/// revocation date, reason and invalidity date, and nothing else; and `expected` must hold
/// `counted` distinct serials (the database's separate count of what the CRL must list).
///
/// `expected` must be sorted by serial octets (as [`generate`](super::generate) sorts it): the entries are
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
pub(super) struct ParsedCrl<'a> {
    pub(super) tbs: &'a [u8],
    inner_algorithm: AlgorithmIdentifierOwned,
    algorithm: AlgorithmIdentifierOwned,
    pub(super) signature: Vec<u8>,
    issuer: x509_cert::name::Name,
    revoked: &'a [u8],
}

impl<'a> ParsedCrl<'a> {
    pub(super) fn parse(der: &'a [u8]) -> Result<Self, der::Error> {
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

    pub(super) fn verify(&self, issuer_cert: &SignedCert) -> Result<(), X509Error> {
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
