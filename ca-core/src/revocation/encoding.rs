//! The one hand-written DER writer of CRLs and OCSP responses: tags, definite lengths and
//! times, written straight into buffers.
//!
//! Invariant: everything written here is DER (definite, minimal lengths; times to the second
//! with `Z`), which the CRL self-check and the tests hold against x509-cert's own decoder.

use std::time::{Duration, SystemTime};

use der::asn1::GeneralizedTime;

use crate::x509::X509Error;

/// A DER tag and definite length.
pub(crate) fn header(tag: u8, len: usize) -> Vec<u8> {
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

/// One TLV: `tag`, the definite length of `content`, then `content`.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = header(tag, content.len());
    out.extend_from_slice(content);
    out
}

/// Writes `t` (to the second) as a DER Time into `buf`: UTCTime before 2050 and
/// GeneralizedTime from then on (RFC 5280 4.1.2.5), or always GeneralizedTime when
/// `generalized` (RFC 5280 5.3.2, invalidityDate). Returns the bytes written.
pub(crate) fn encode_time(
    buf: &mut [u8; 17],
    t: SystemTime,
    generalized: bool,
) -> Result<&[u8], X509Error> {
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

/// A GeneralizedTime to the second (RFC 5280 4.1.2.5.2: no fractional seconds).
pub(crate) fn generalized_time(t: SystemTime) -> Result<GeneralizedTime, X509Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| X509Error::InvalidValidity("time before 1970".into()))?
        .as_secs();
    GeneralizedTime::from_system_time(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .map_err(|e| X509Error::InvalidValidity(e.to_string()))
}

/// `t` truncated to the whole second (DER times here carry no fractions).
pub(crate) fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}
