//! Certificate signing requests (RFC 2986): parsed, their self-signature verified, and
//! reduced to the facts a profile is evaluated on.
//!
//! Invariant: [`parse`] returns facts only for a CSR whose signature verifies under its own
//! public key with the hash its signature algorithm names (a P-384 key signed with SHA-256
//! is common: `openssl req` does it by default). Nothing is copied from the CSR's extension
//! request except the subject alternative names, which the policy then judges.

use std::net::IpAddr;

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912;
use der::asn1::UintRef;
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::request::{CertReq, ExtensionReq};

use crate::keystore::SpkiDer;
use crate::policy::{KeyKind, RequestFacts, San, SubjectKey};

/// The largest CSR accepted, PEM or DER.
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// Why a CSR was refused. Messages say what is wrong with the input.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Over [`MAX_CSR_BYTES`].
    #[error("csr is {0} bytes; the limit is {MAX_CSR_BYTES}")]
    TooLarge(usize),
    /// Not a well-formed CSR.
    #[error("malformed csr: {0}")]
    Malformed(String),
    /// The self-signature does not verify.
    #[error("the csr's signature does not verify with its own public key")]
    BadSignature,
    /// A key or algorithm Keyhold does not accept.
    #[error("unsupported csr: {0}")]
    Unsupported(String),
}

/// A verified CSR.
#[derive(Debug, Clone)]
pub struct ParsedCsr {
    /// What the policy judges.
    pub facts: RequestFacts,
    /// The subject public key, as it will go into the certificate.
    pub public_key: SpkiDer,
}

/// Parses a PEM or DER CSR, verifies its signature and extracts its facts. `ca_keys` are
/// the CA's own public keys, which are never certified for a subscriber.
///
/// Fails with a [`CsrError`] saying what is wrong; never panics, whatever the input.
pub fn parse(input: &[u8], ca_keys: &[SpkiDer]) -> Result<ParsedCsr, CsrError> {
    if input.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge(input.len()));
    }
    let der = if input.starts_with(b"-----BEGIN")
        || input.trim_ascii_start().starts_with(b"-----BEGIN")
    {
        let (label, der) = der::pem::decode_vec(input.trim_ascii())
            .map_err(|e| CsrError::Malformed(format!("bad PEM: {e}")))?;
        if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
            return Err(CsrError::Malformed(format!(
                "PEM block is {label:?}, not CERTIFICATE REQUEST"
            )));
        }
        der
    } else {
        input.to_vec()
    };
    let csr = CertReq::from_der(&der).map_err(|e| CsrError::Malformed(e.to_string()))?;

    // 1. The key, and the verification algorithm its type and the CSR's hash name.
    let spki = &csr.info.public_key;
    let spki_der = spki
        .to_der()
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| CsrError::Malformed("public key bit string has unused bits".into()))?;
    let key = subject_key(
        spki.algorithm.oid,
        spki.algorithm.parameters.as_ref(),
        point,
    )?;
    let alg = verification_algorithm(&key, csr.algorithm.oid)?;

    // 2. The self-signature (RFC 2986 4.2: over the DER of certificationRequestInfo).
    let tbs = csr
        .info
        .to_der()
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    let signature = csr
        .signature
        .as_bytes()
        .ok_or_else(|| CsrError::Malformed("signature bit string has unused bits".into()))?;
    UnparsedPublicKey::new(alg, point)
        .verify(&tbs, signature)
        .map_err(|_| CsrError::BadSignature)?;

    // 3. Subject attributes and requested SANs.
    let mut subject = Vec::new();
    for atv in csr.info.subject.iter() {
        let value = directory_string(atv.value.tag(), atv.value.value()).ok_or_else(|| {
            CsrError::Malformed(format!("subject attribute {} is not a string", atv.oid))
        })?;
        subject.push((short_name(atv.oid), value));
    }
    let mut sans = Vec::new();
    for attr in csr
        .info
        .attributes
        .iter()
        .filter(|a| a.oid == const_oid::db::rfc5912::ID_EXTENSION_REQ)
    {
        for value in attr.values.iter() {
            let req: ExtensionReq = value
                .decode_as()
                .map_err(|e| CsrError::Malformed(format!("extension request: {e}")))?;
            for ext in req
                .0
                .iter()
                .filter(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
            {
                let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| CsrError::Malformed(format!("subject alternative name: {e}")))?;
                for name in san.0 {
                    sans.push(general_name(name)?);
                }
            }
        }
    }

    let public_key = SpkiDer::from_der_unchecked(spki_der);
    Ok(ParsedCsr {
        facts: RequestFacts {
            subject,
            sans,
            key,
            key_is_a_ca_key: ca_keys.contains(&public_key),
            validity_days: None,
        },
        public_key,
    })
}

fn subject_key(
    alg: ObjectIdentifier,
    params: Option<&der::Any>,
    point: &[u8],
) -> Result<SubjectKey, CsrError> {
    if alg == rfc5912::ID_EC_PUBLIC_KEY {
        let curve = params
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or_else(|| CsrError::Unsupported("EC key without a named curve".into()))?;
        return match curve {
            rfc5912::SECP_256_R_1 => Ok(SubjectKey::Ec(KeyKind::P256)),
            rfc5912::SECP_384_R_1 => Ok(SubjectKey::Ec(KeyKind::P384)),
            other => Err(CsrError::Unsupported(format!(
                "EC curve {other} (P-256 and P-384 are accepted)"
            ))),
        };
    }
    if alg == rfc5912::RSA_ENCRYPTION {
        #[derive(der::Sequence)]
        struct RsaPublicKey<'a> {
            modulus: UintRef<'a>,
            public_exponent: UintRef<'a>,
        }
        let key = RsaPublicKey::from_der(point)
            .map_err(|e| CsrError::Malformed(format!("RSA public key: {e}")))?;
        let m = key.modulus.as_bytes();
        let bits = m
            .first()
            .map_or(0, |b| (m.len() as u32) * 8 - b.leading_zeros());
        let e = key.public_exponent.as_bytes();
        let exponent = if e.len() > 8 {
            u64::MAX
        } else {
            e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        };
        if bits < 2048 {
            // aws-lc-rs cannot even verify below 2048 bits; say why instead of "bad signature".
            return Err(CsrError::Unsupported(format!(
                "RSA key of {bits} bits (the minimum is 2048)"
            )));
        }
        return Ok(SubjectKey::Rsa { bits, exponent });
    }
    Err(CsrError::Unsupported(format!(
        "public key algorithm {alg} (EC P-256/P-384 and RSA are accepted)"
    )))
}

fn verification_algorithm(
    key: &SubjectKey,
    sig_alg: ObjectIdentifier,
) -> Result<&'static dyn VerificationAlgorithm, CsrError> {
    let alg: &'static dyn VerificationAlgorithm = match (key, sig_alg) {
        (SubjectKey::Ec(KeyKind::P256), rfc5912::ECDSA_WITH_SHA_256) => {
            &sig::ECDSA_P256_SHA256_ASN1
        }
        (SubjectKey::Ec(KeyKind::P256), rfc5912::ECDSA_WITH_SHA_384) => {
            &sig::ECDSA_P256_SHA384_ASN1
        }
        (SubjectKey::Ec(KeyKind::P384), rfc5912::ECDSA_WITH_SHA_256) => {
            &sig::ECDSA_P384_SHA256_ASN1
        }
        (SubjectKey::Ec(KeyKind::P384), rfc5912::ECDSA_WITH_SHA_384) => {
            &sig::ECDSA_P384_SHA384_ASN1
        }
        (SubjectKey::Rsa { .. }, rfc5912::SHA_256_WITH_RSA_ENCRYPTION) => {
            &sig::RSA_PKCS1_2048_8192_SHA256
        }
        (SubjectKey::Rsa { .. }, rfc5912::SHA_384_WITH_RSA_ENCRYPTION) => {
            &sig::RSA_PKCS1_2048_8192_SHA384
        }
        (SubjectKey::Rsa { .. }, rfc5912::SHA_512_WITH_RSA_ENCRYPTION) => {
            &sig::RSA_PKCS1_2048_8192_SHA512
        }
        (_, other) => {
            return Err(CsrError::Unsupported(format!(
                "signature algorithm {other} for this key type"
            )));
        }
    };
    Ok(alg)
}

/// The string value of a DirectoryString-like attribute (UTF8String, PrintableString,
/// IA5String, TeletexString holding UTF-8).
fn directory_string(tag: Tag, value: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            String::from_utf8(value.to_vec()).ok()
        }
        _ => None,
    }
}

fn short_name(oid: ObjectIdentifier) -> String {
    use const_oid::db::rfc4519;
    let name = match oid {
        rfc4519::CN => "CN",
        rfc4519::O => "O",
        rfc4519::OU => "OU",
        rfc4519::C => "C",
        rfc4519::ST => "ST",
        rfc4519::L => "L",
        rfc4519::SERIAL_NUMBER => "serialNumber",
        const_oid::db::rfc2985::PKCS_9_AT_EMAIL_ADDRESS => "emailAddress",
        other => return other.to_string(),
    };
    name.into()
}

fn general_name(name: GeneralName) -> Result<San, CsrError> {
    Ok(match name {
        GeneralName::DnsName(s) => San::Dns(s.to_string()),
        GeneralName::Rfc822Name(s) => San::Email(s.to_string()),
        GeneralName::UniformResourceIdentifier(s) => San::Uri(s.to_string()),
        GeneralName::IpAddress(octets) => {
            let b = octets.as_bytes();
            let ip = if let Ok(v4) = <[u8; 4]>::try_from(b) {
                IpAddr::from(v4)
            } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
                IpAddr::from(v6)
            } else {
                return Err(CsrError::Malformed(format!(
                    "ip address SAN of {} octets",
                    b.len()
                )));
            };
            San::Ip(ip)
        }
        other => {
            return Err(CsrError::Unsupported(format!(
                "subject alternative name of type {:?} (DNS, IP, email and URI are accepted)",
                other.tag()
            )));
        }
    })
}
