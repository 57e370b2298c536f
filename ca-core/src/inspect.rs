//! A certificate decoded into readable fields, for `keyhold certs show` and the UI's detail
//! page: what `openssl x509 -text` says, without the hex dumps.

use std::fmt::Write as _;
use std::time::SystemTime;

use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5280, rfc5912};
use der::Decode;
use sha2::Digest;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints,
    ExtendedKeyUsage, KeyUsage, SubjectAltName, SubjectKeyIdentifier,
};

use crate::x509::SignedCert;

/// One certificate's fields as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// Subject, RFC 4514.
    pub subject: String,
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// Serial, colon-separated hex.
    pub serial: String,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// Public key, e.g. `ECDSA P-256` or `RSA 3072 bits`.
    pub key: String,
    /// Signature algorithm, e.g. `ecdsa-with-SHA384`.
    pub signature_algorithm: String,
    /// Subject alternative names, e.g. `DNS:a.internal`.
    pub sans: Vec<String>,
    /// Extensions as (name, critical, value) in certificate order.
    pub extensions: Vec<(String, bool, String)>,
    /// SHA-256 fingerprint, colon-separated hex.
    pub sha256: String,
    /// SHA-1 fingerprint (what older tools show).
    pub sha1: String,
}

/// Decodes `cert`. Fields that do not decode are shown as such, never an error: this is for
/// reading, and it reads what Keyhold itself issued.
pub fn details(cert: &SignedCert) -> Details {
    let tbs = cert.cert.tbs_certificate();
    let spki = tbs.subject_public_key_info();
    let mut sans = Vec::new();
    let mut extensions = Vec::new();
    for ext in tbs.extensions().map(|e| e.as_slice()).unwrap_or_default() {
        let bytes = ext.extn_value.as_bytes();
        let (name, value) = match ext.extn_id {
            rfc5280::ID_CE_BASIC_CONSTRAINTS => (
                "basicConstraints",
                decoded::<BasicConstraints>(bytes, |bc| match (bc.ca, bc.path_len_constraint) {
                    (true, Some(n)) => format!("CA, path length {n}"),
                    (true, None) => "CA".into(),
                    (false, _) => "not a CA".into(),
                }),
            ),
            rfc5280::ID_CE_KEY_USAGE => (
                "keyUsage",
                decoded::<KeyUsage>(bytes, |ku| {
                    ku.0.into_iter()
                        .map(|f| format!("{f:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
            ),
            rfc5280::ID_CE_EXT_KEY_USAGE => (
                "extendedKeyUsage",
                decoded::<ExtendedKeyUsage>(bytes, |eku| {
                    eku.0.iter().map(eku_name).collect::<Vec<_>>().join(", ")
                }),
            ),
            rfc5280::ID_CE_SUBJECT_ALT_NAME => {
                if let Ok(san) = SubjectAltName::from_der(bytes) {
                    sans = san.0.iter().map(general_name).collect();
                }
                ("subjectAltName", sans.join(", "))
            }
            rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER => (
                "subjectKeyIdentifier",
                decoded::<SubjectKeyIdentifier>(bytes, |s| colon_hex(s.0.as_bytes())),
            ),
            rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER => (
                "authorityKeyIdentifier",
                decoded::<AuthorityKeyIdentifier>(bytes, |a| {
                    a.key_identifier
                        .as_ref()
                        .map(|k| colon_hex(k.as_bytes()))
                        .unwrap_or_default()
                }),
            ),
            rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS => (
                "cRLDistributionPoints",
                decoded::<CrlDistributionPoints>(bytes, |dps| {
                    dps.0
                        .iter()
                        .filter_map(|dp| match &dp.distribution_point {
                            Some(DistributionPointName::FullName(names)) => {
                                Some(names.iter().map(general_name).collect::<Vec<_>>())
                            }
                            _ => None,
                        })
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
            ),
            rfc5280::ID_PE_AUTHORITY_INFO_ACCESS => (
                "authorityInfoAccess",
                decoded::<AuthorityInfoAccessSyntax>(bytes, |aia| {
                    aia.0
                        .iter()
                        .map(|ad| {
                            let method = match ad.access_method {
                                rfc5280::ID_AD_OCSP => "OCSP".to_owned(),
                                rfc5280::ID_AD_CA_ISSUERS => "CA issuers".to_owned(),
                                other => other.to_string(),
                            };
                            format!("{method} {}", general_name(&ad.access_location))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
            ),
            rfc5280::ID_CE_NAME_CONSTRAINTS => ("nameConstraints", "present".to_owned()),
            _ => ("", colon_hex(bytes)),
        };
        let name = if name.is_empty() {
            ext.extn_id.to_string()
        } else {
            name.to_owned()
        };
        extensions.push((name, ext.critical, value));
    }
    Details {
        subject: tbs.subject().to_string(),
        issuer: tbs.issuer().to_string(),
        serial: colon_hex(tbs.serial_number().as_bytes()),
        not_before: tbs.validity().not_before.to_system_time(),
        not_after: tbs.validity().not_after.to_system_time(),
        key: key_description(spki),
        signature_algorithm: sig_alg_name(cert.cert.signature_algorithm().oid),
        sans,
        extensions,
        sha256: colon_hex(&sha2::Sha256::digest(&cert.der)),
        sha1: colon_hex(&sha1::Sha1::digest(&cert.der)),
    }
}

/// Hex pairs joined by colons, uppercase.
pub fn colon_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02X}");
    }
    out
}

fn decoded<'a, T: Decode<'a>>(bytes: &'a [u8], show: impl FnOnce(T) -> String) -> String {
    T::from_der(bytes).map_or_else(|e| format!("(does not decode: {e})"), show)
}

fn general_name(name: &GeneralName) -> String {
    match name {
        GeneralName::DnsName(d) => format!("DNS:{}", d.as_str()),
        GeneralName::Rfc822Name(e) => format!("email:{}", e.as_str()),
        GeneralName::UniformResourceIdentifier(u) => format!("URI:{}", u.as_str()),
        GeneralName::IpAddress(ip) => {
            let b = ip.as_bytes();
            match b.len() {
                4 => format!("IP:{}.{}.{}.{}", b[0], b[1], b[2], b[3]),
                16 => {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(b);
                    format!("IP:{}", std::net::Ipv6Addr::from(octets))
                }
                _ => format!("IP:{}", colon_hex(b)),
            }
        }
        GeneralName::DirectoryName(n) => format!("DirName:{n}"),
        other => format!("{other:?}"),
    }
}

fn eku_name(oid: &ObjectIdentifier) -> String {
    match *oid {
        rfc5280::ID_KP_SERVER_AUTH => "serverAuth".into(),
        rfc5280::ID_KP_CLIENT_AUTH => "clientAuth".into(),
        rfc5280::ID_KP_CODE_SIGNING => "codeSigning".into(),
        rfc5280::ID_KP_EMAIL_PROTECTION => "emailProtection".into(),
        rfc5280::ID_KP_TIME_STAMPING => "timeStamping".into(),
        rfc5280::ID_KP_OCSP_SIGNING => "OCSPSigning".into(),
        other => other.to_string(),
    }
}

fn sig_alg_name(oid: ObjectIdentifier) -> String {
    match oid {
        rfc5912::ECDSA_WITH_SHA_256 => "ecdsa-with-SHA256".into(),
        rfc5912::ECDSA_WITH_SHA_384 => "ecdsa-with-SHA384".into(),
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION => "sha256WithRSAEncryption".into(),
        other => other.to_string(),
    }
}

fn key_description(spki: &spki::SubjectPublicKeyInfoOwned) -> String {
    let alg = spki.algorithm.oid;
    if alg == rfc5912::ID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        return match curve {
            Some(rfc5912::SECP_256_R_1) => "ECDSA P-256".into(),
            Some(rfc5912::SECP_384_R_1) => "ECDSA P-384".into(),
            Some(rfc5912::SECP_521_R_1) => "ECDSA P-521".into(),
            Some(other) => format!("EC on curve {other}"),
            None => "EC (curve not named)".into(),
        };
    }
    if alg == rfc5912::RSA_ENCRYPTION {
        // The modulus length, from the RSAPublicKey's first INTEGER.
        let bits = spki
            .subject_public_key
            .as_bytes()
            .and_then(|b| rsa_modulus_bits(b).ok());
        return match bits {
            Some(bits) => format!("RSA {bits} bits"),
            None => "RSA".into(),
        };
    }
    format!("algorithm {alg}")
}

fn rsa_modulus_bits(der: &[u8]) -> der::Result<usize> {
    use der::asn1::UintRef;
    let mut reader = der::SliceReader::new(der)?;
    use der::Reader;
    reader.sequence(|r| {
        let n = UintRef::decode(r)?;
        let _e = UintRef::decode(r)?;
        let bytes = n.as_bytes();
        let lead = bytes.first().map_or(0, |b| 8 - b.leading_zeros() as usize);
        Ok((bytes.len().saturating_sub(1)) * 8 + lead)
    })
}
