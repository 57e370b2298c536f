//! What a counted answer's body must be, and what `codesign` signs the digests of.

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `der` starts as an OCSPResponse whose responseStatus is successful (0)
/// (RFC 6960 4.2.1: SEQUENCE { ENUMERATED responseStatus, ... }).
pub(crate) fn ocsp_successful(der: &[u8]) -> bool {
    let header = match der.get(1) {
        Some(&n) if n < 0x80 => 2,
        Some(&n) => 2 + usize::from(n & 0x7f),
        None => return false,
    };
    der.first() == Some(&0x30) && der.get(header..header + 3) == Some(&[0x0a, 0x01, 0x00][..])
}

/// Whether `der` starts as a CMS ContentInfo of type signedData (RFC 5652 3: SEQUENCE {
/// OBJECT IDENTIFIER 1.2.840.113549.1.7.2, [0] ... }).
pub(crate) fn cms_signed_data(der: &[u8]) -> bool {
    const SIGNED_DATA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
    ];
    let header = match der.get(1) {
        Some(&n) if n < 0x80 => 2,
        Some(&n) => 2 + usize::from(n & 0x7f),
        None => return false,
    };
    der.first() == Some(&0x30) && der.get(header..header + SIGNED_DATA.len()) == Some(SIGNED_DATA)
}

/// The artifacts `codesign` signs the digests of: small, distinct, and written out with
/// `--save` so that `openssl cms -verify -content` can check a signature against one.
pub(crate) const ARTIFACTS: usize = 64;

pub(crate) fn artifact(i: usize) -> Vec<u8> {
    format!("keyhold code-signing benchmark artifact {i}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cms_signed_data_is_told_from_other_content_types() {
        let oid = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
        ];
        let short = [&[0x30, 0x0b][..], &oid].concat();
        let long = [&[0x30, 0x82, 0x03, 0x00][..], &oid].concat();
        assert!(cms_signed_data(&short));
        assert!(cms_signed_data(&long));
        // id-data (1.2.840.113549.1.7.1), a JSON error, nothing.
        let mut data = short.clone();
        data[12] = 0x01;
        assert!(!cms_signed_data(&data));
        assert!(!cms_signed_data(b"{\"error\":\"x\"}"));
        assert!(!cms_signed_data(&[]));
    }

    #[test]
    fn ocsp_status_is_read_after_short_and_long_lengths() {
        assert!(ocsp_successful(&[0x30, 0x03, 0x0a, 0x01, 0x00]));
        assert!(ocsp_successful(&[0x30, 0x82, 0x01, 0x00, 0x0a, 0x01, 0x00]));
        // malformedRequest (1), and what is not an OCSPResponse at all.
        assert!(!ocsp_successful(&[0x30, 0x03, 0x0a, 0x01, 0x01]));
        assert!(!ocsp_successful(b"HTTP"));
        assert!(!ocsp_successful(&[]));
    }
}
