//! Encodings between what a PKCS#11 token speaks for EC keys and what X.509 needs:
//! curve OIDs in CKA_EC_PARAMS, points in CKA_EC_POINT, raw ECDSA signatures.
//!
//! Invariant: pure functions, no PKCS#11 calls; every input from the token is checked
//! against the key's curve before it is used.

use const_oid::ObjectIdentifier;
use der::asn1::{BitString, OctetString, UintRef};
use der::{Decode, Encode, Sequence};
use sha2::{Digest, Sha256, Sha384};
use spki::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::keystore::{KeySpec, KeyStoreError, SpkiDer};

/// id-ecPublicKey (RFC 5480 2.1.1).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / P-256 (RFC 5480 2.1.1.1).
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1 / P-384 (RFC 5480 2.1.1.1).
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// The named-curve OID of a key type.
fn curve_oid(spec: KeySpec) -> ObjectIdentifier {
    match spec {
        KeySpec::EcP256 => SECP256R1,
        KeySpec::EcP384 => SECP384R1,
    }
}

/// The size in bytes of a field element (and of r and s) on the key's curve.
pub(super) fn field_len(spec: KeySpec) -> usize {
    match spec {
        KeySpec::EcP256 => 32,
        KeySpec::EcP384 => 48,
    }
}

/// CKA_EC_PARAMS for a key type: the DER namedCurve OID (PKCS#11 v2.40 curr. mech. 2.3.3,
/// X9.62 Parameters choice namedCurve).
///
/// Fails only if DER encoding fails, which cannot happen for these constants.
pub(super) fn ec_params(spec: KeySpec) -> Result<Vec<u8>, KeyStoreError> {
    curve_oid(spec)
        .to_der()
        .map_err(|e| KeyStoreError::Pkcs11(format!("cannot encode the curve oid: {e}")))
}

/// The key type named by a CKA_EC_PARAMS value.
///
/// Fails with [`KeyStoreError::Unsupported`] for curves other than P-256 and P-384, and for
/// explicit (non-named) curve parameters.
pub(super) fn spec_from_ec_params(params: &[u8]) -> Result<KeySpec, KeyStoreError> {
    let oid = ObjectIdentifier::from_der(params).map_err(|_| {
        KeyStoreError::Unsupported(
            "ec key without a named curve in CKA_EC_PARAMS (only p256 and p384 are supported)"
                .into(),
        )
    })?;
    match oid {
        SECP256R1 => Ok(KeySpec::EcP256),
        SECP384R1 => Ok(KeySpec::EcP384),
        other => Err(KeyStoreError::Unsupported(format!(
            "ec curve {other} (supported: p256, p384)"
        ))),
    }
}

/// The uncompressed point (`04 || X || Y`) from a CKA_EC_POINT value.
///
/// PKCS#11 v2.40 curr. mech. 2.3.3: CKA_EC_POINT is the DER encoding of an OCTET STRING
/// holding the X9.62 point; some older modules return the bare point, which is accepted too.
/// Fails with [`KeyStoreError::Corrupt`] if the value is neither, or is not an uncompressed
/// point of the right size.
pub(super) fn point_from_ec_point(value: &[u8], spec: KeySpec) -> Result<Vec<u8>, KeyStoreError> {
    let expected = 1 + 2 * field_len(spec);
    let point = if value.len() == expected && value.first() == Some(&0x04) {
        value.to_vec()
    } else {
        OctetString::from_der(value)
            .map_err(|e| {
                KeyStoreError::Corrupt(format!("CKA_EC_POINT is not a DER OCTET STRING: {e}"))
            })?
            .into_bytes()
            .into_vec()
    };
    if point.len() != expected || point.first() != Some(&0x04) {
        return Err(KeyStoreError::Corrupt(format!(
            "CKA_EC_POINT is not an uncompressed {spec} point ({} bytes, expected {expected})",
            point.len()
        )));
    }
    Ok(point)
}

/// The SubjectPublicKeyInfo for an EC public key: id-ecPublicKey with the namedCurve
/// parameter and the uncompressed point as the BIT STRING (RFC 5480 2).
///
/// Fails only if DER encoding fails.
pub(super) fn spki(spec: KeySpec, point: &[u8]) -> Result<SpkiDer, KeyStoreError> {
    let encode_failed = |e: der::Error| KeyStoreError::Pkcs11(format!("cannot encode spki: {e}"));
    let info = SubjectPublicKeyInfo::<ObjectIdentifier, BitString> {
        algorithm: AlgorithmIdentifier {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(curve_oid(spec)),
        },
        subject_public_key: BitString::from_bytes(point).map_err(encode_failed)?,
    };
    Ok(SpkiDer::from_der_unchecked(
        info.to_der().map_err(encode_failed)?,
    ))
}

/// The digest CKM_ECDSA signs: SHA-256 for P-256, SHA-384 for P-384 (RFC 5758 3.2).
pub(super) fn digest(spec: KeySpec, message: &[u8]) -> Vec<u8> {
    match spec {
        KeySpec::EcP256 => Sha256::digest(message).to_vec(),
        KeySpec::EcP384 => Sha384::digest(message).to_vec(),
    }
}

/// Ecdsa-Sig-Value (RFC 5480 2.2 / RFC 3279 2.2.3): `SEQUENCE { r INTEGER, s INTEGER }`.
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// Converts the raw `r || s` that CKM_ECDSA returns into the DER Ecdsa-Sig-Value X.509
/// carries. PKCS#11 v2.40 curr. mech. 2.3.1: r and s are big-endian octet strings of equal
/// length, at most the curve order's length each. `UintRef` drops leading zero bytes and
/// adds one where the high bit is set, so both integers encode as minimal positive INTEGERs.
///
/// Fails with [`KeyStoreError::Corrupt`] if the length is odd or more than twice the curve's
/// size, or if r or s is zero (no valid signature has either).
pub(super) fn raw_signature_to_der(raw: &[u8], spec: KeySpec) -> Result<Vec<u8>, KeyStoreError> {
    let max = 2 * field_len(spec);
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > max {
        return Err(KeyStoreError::Corrupt(format!(
            "the token returned a {}-byte ecdsa signature; a {spec} signature is an even \
             number of bytes, at most {max}",
            raw.len()
        )));
    }
    let n = raw.len() / 2;
    let (r, s) = raw.split_at(n);
    if r.iter().all(|&b| b == 0) || s.iter().all(|&b| b == 0) {
        return Err(KeyStoreError::Corrupt(
            "the token returned an ecdsa signature with r or s zero".into(),
        ));
    }
    let encode_failed =
        |e: der::Error| KeyStoreError::Corrupt(format!("cannot encode ecdsa signature: {e}"));
    EcdsaSigValue {
        r: UintRef::new(r).map_err(encode_failed)?,
        s: UintRef::new(s).map_err(encode_failed)?,
    }
    .to_der()
    .map_err(encode_failed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn ec_params_round_trip_and_have_the_standard_bytes() {
        let p256 = ec_params(KeySpec::EcP256).unwrap();
        assert_eq!(hex::encode(&p256), "06082a8648ce3d030107");
        let p384 = ec_params(KeySpec::EcP384).unwrap();
        assert_eq!(hex::encode(&p384), "06052b81040022");
        assert_eq!(spec_from_ec_params(&p256).unwrap(), KeySpec::EcP256);
        assert_eq!(spec_from_ec_params(&p384).unwrap(), KeySpec::EcP384);
    }

    #[test]
    fn rejects_other_curves_and_explicit_parameters() {
        // secp521r1
        let p521 = ObjectIdentifier::new_unwrap("1.3.132.0.35")
            .to_der()
            .unwrap();
        let err = spec_from_ec_params(&p521).unwrap_err();
        assert!(err.to_string().contains("1.3.132.0.35"), "{err}");
        // a SEQUENCE (explicit ECParameters) is not a named curve
        assert!(spec_from_ec_params(&[0x30, 0x00]).is_err());
    }

    #[test]
    fn unwraps_the_octet_string_around_the_point() {
        let mut point = vec![0x04];
        point.extend([0x41; 64]);
        let wrapped = OctetString::new(point.clone()).unwrap().to_der().unwrap();
        assert_eq!(&wrapped[..2], &[0x04, 0x41]);
        assert_eq!(
            point_from_ec_point(&wrapped, KeySpec::EcP256).unwrap(),
            point
        );
        // a bare point is accepted too
        assert_eq!(point_from_ec_point(&point, KeySpec::EcP256).unwrap(), point);
        // but not on the wrong curve, nor compressed
        assert!(point_from_ec_point(&wrapped, KeySpec::EcP384).is_err());
        let mut compressed = vec![0x02];
        compressed.extend([0x11; 32]);
        let wrapped = OctetString::new(compressed).unwrap().to_der().unwrap();
        assert!(point_from_ec_point(&wrapped, KeySpec::EcP256).is_err());
    }

    #[test]
    fn builds_an_spki_the_standard_way() {
        let mut point = vec![0x04];
        point.extend([0x01; 96]);
        let spki = spki(KeySpec::EcP384, &point).unwrap();
        let parsed = spki::SubjectPublicKeyInfoRef::from_der(spki.as_bytes()).unwrap();
        assert_eq!(parsed.algorithm.oid, ID_EC_PUBLIC_KEY);
        let params = parsed.algorithm.parameters.unwrap();
        assert_eq!(params.decode_as::<ObjectIdentifier>().unwrap(), SECP384R1);
        assert_eq!(spki.subject_public_key().unwrap(), point);
    }

    #[test]
    fn converts_raw_signatures_with_plain_integers() {
        let mut raw = vec![0x11; 32];
        raw.extend([0x22; 32]);
        let der = raw_signature_to_der(&raw, KeySpec::EcP256).unwrap();
        let mut expected = vec![0x30, 68, 0x02, 32];
        expected.extend([0x11; 32]);
        expected.extend([0x02, 32]);
        expected.extend([0x22; 32]);
        assert_eq!(der, expected);
    }

    #[test]
    fn adds_a_zero_byte_when_the_high_bit_is_set() {
        let mut raw = vec![0x80; 48];
        raw.extend([0xff; 48]);
        let der = raw_signature_to_der(&raw, KeySpec::EcP384).unwrap();
        // 2 * (2 + 49) = 102 bytes of content, still a short-form length
        assert_eq!(&der[..2], &[0x30, 102]);
        assert_eq!(&der[2..5], &[0x02, 49, 0x00]);
        assert_eq!(der[5], 0x80);
        assert_eq!(&der[53..56], &[0x02, 49, 0x00]);
        assert_eq!(der[56], 0xff);
        assert_eq!(der.len(), 104);
    }

    #[test]
    fn strips_leading_zero_bytes() {
        let mut raw = vec![0x00, 0x00, 0x7f];
        raw.extend([0x01; 29]);
        // s starts with a zero byte and then the high bit: one zero stays
        raw.extend([0x00, 0x90]);
        raw.extend([0x02; 30]);
        let der = raw_signature_to_der(&raw, KeySpec::EcP256).unwrap();
        assert_eq!(&der[2..5], &[0x02, 30, 0x7f]);
        let s = &der[2 + 2 + 30..];
        assert_eq!(&s[..4], &[0x02, 32, 0x00, 0x90]);
        assert_eq!(der.len(), 2 + 32 + 34);
        // and the result parses as two positive integers equal to r and s
        let parsed = EcdsaSigValue::from_der(&der).unwrap();
        assert_eq!(parsed.r.as_bytes(), &raw[2..32]);
        assert_eq!(parsed.s.as_bytes(), &raw[33..64]);
    }

    #[test]
    fn accepts_shorter_halves_of_equal_length() {
        // PKCS#11 v2.40 curr. mech. 2.3.1 allows r and s shorter than the order's length.
        let der = raw_signature_to_der(&[0x05; 62], KeySpec::EcP256).unwrap();
        assert_eq!(&der[..4], &[0x30, 66, 0x02, 31]);
    }

    #[test]
    fn refuses_wrong_lengths_and_zero_values() {
        assert!(raw_signature_to_der(&[0x01; 98], KeySpec::EcP384).is_err());
        assert!(raw_signature_to_der(&[0x01; 66], KeySpec::EcP256).is_err());
        assert!(raw_signature_to_der(&[0x01; 63], KeySpec::EcP256).is_err());
        assert!(raw_signature_to_der(&[], KeySpec::EcP256).is_err());
        let mut raw = vec![0x00; 32];
        raw.extend([0x01; 32]);
        assert!(raw_signature_to_der(&raw, KeySpec::EcP256).is_err());
    }

    #[test]
    fn hashes_with_the_curves_digest() {
        assert_eq!(digest(KeySpec::EcP256, b"abc").len(), 32);
        assert_eq!(digest(KeySpec::EcP384, b"abc").len(), 48);
    }
}
