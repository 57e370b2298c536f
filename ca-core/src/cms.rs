//! Detached CMS signatures (RFC 5652 SignedData) over a digest the caller computed, signed
//! through the key store.
//!
//! Invariants:
//! - the artifact itself is never needed: the signature covers the DER of the signed
//!   attributes (contentType id-data, messageDigest, signingTime), whose messageDigest is the
//!   caller's digest;
//! - the digest algorithm is the one the key signs with (SHA-256 for P-256, SHA-384 for
//!   P-384): RFC 5652 5.4 hashes the signed attributes with the SignerInfo's
//!   digestAlgorithm, and a [`Signer`] hashes with its own algorithm, so the two must agree;
//! - every signature leaves [`sign_detached`] verified against the signer certificate's
//!   public key, which must be the signer's key.
//!
//! The structures are defined here with der's derive macros: the `cms` crate releases that
//! build on der 0.8 / x509-cert 0.3 are only release candidates, and the five structures a
//! detached signature needs are small.

use std::fmt;
use std::time::SystemTime;

use const_oid::ObjectIdentifier;
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;

use crate::error::ErrorKind;
use crate::keystore::{self, KeyStoreError, SigAlg, Signer};
use crate::x509::{self, SignedCert, X509Error};

/// id-data (RFC 5652 4).
pub const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// id-signedData (RFC 5652 5.1).
pub const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-contentType (RFC 5652 11.1).
pub const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// id-messageDigest (RFC 5652 11.2).
pub const ID_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// id-signingTime (RFC 5652 11.3).
pub const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");

/// A digest algorithm a code signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlg {
    /// SHA-256 (32 bytes).
    Sha256,
    /// SHA-384 (48 bytes).
    Sha384,
}

impl DigestAlg {
    /// Parses `sha256` or `sha384` (also `sha-256`, `sha-384`, any case).
    ///
    /// Fails with [`CmsError::UnknownDigestAlgorithm`] for anything else.
    pub fn parse(name: &str) -> Result<Self, CmsError> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" | "sha-256" => Ok(DigestAlg::Sha256),
            "sha384" | "sha-384" => Ok(DigestAlg::Sha384),
            _ => Err(CmsError::UnknownDigestAlgorithm(name.to_owned())),
        }
    }

    /// `sha256` or `sha384`.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "sha256",
            DigestAlg::Sha384 => "sha384",
        }
    }

    /// The digest's length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha384 => 48,
        }
    }

    /// The algorithm's OID (RFC 5754 2).
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            DigestAlg::Sha256 => const_oid::db::rfc5912::ID_SHA_256,
            DigestAlg::Sha384 => const_oid::db::rfc5912::ID_SHA_384,
        }
    }

    /// The digest algorithm a key signing with `alg` hashes with.
    pub fn of_signature(alg: SigAlg) -> Self {
        match alg {
            SigAlg::EcdsaP256Sha256 => DigestAlg::Sha256,
            SigAlg::EcdsaP384Sha384 => DigestAlg::Sha384,
        }
    }

    /// Hashes everything `reader` yields (a file of any size, in 64 KiB reads).
    ///
    /// Fails if reading fails.
    pub fn hash_reader(self, mut reader: impl std::io::Read) -> std::io::Result<Digest> {
        use sha2::Digest as _;
        let mut buf = vec![0u8; 64 * 1024];
        let bytes = match self {
            DigestAlg::Sha256 => {
                let mut h = sha2::Sha256::new();
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                h.finalize().to_vec()
            }
            DigestAlg::Sha384 => {
                let mut h = sha2::Sha384::new();
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                h.finalize().to_vec()
            }
        };
        Ok(Digest { alg: self, bytes })
    }

    fn identifier(self) -> AlgorithmIdentifierOwned {
        // RFC 5754 2: the parameters of SHA-2 AlgorithmIdentifiers are absent.
        AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters: None,
        }
    }
}

impl fmt::Display for DigestAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A digest of an artifact, its length checked against its algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    alg: DigestAlg,
    bytes: Vec<u8>,
}

impl Digest {
    /// Wraps digest bytes.
    ///
    /// Fails with [`CmsError::DigestLength`] if they are not `alg`'s length.
    pub fn new(alg: DigestAlg, bytes: Vec<u8>) -> Result<Self, CmsError> {
        if bytes.len() != alg.output_len() {
            return Err(CmsError::DigestLength {
                alg,
                expected: alg.output_len(),
                got: bytes.len(),
            });
        }
        Ok(Digest { alg, bytes })
    }

    /// Parses a digest written in hex (either case, surrounding whitespace ignored).
    ///
    /// Fails with [`CmsError::DigestHex`] for text that is not hex, and
    /// [`CmsError::DigestLength`] for hex of the wrong length.
    pub fn from_hex(alg: DigestAlg, text: &str) -> Result<Self, CmsError> {
        let bytes = hex::decode(text.trim()).map_err(|e| CmsError::DigestHex(e.to_string()))?;
        Self::new(alg, bytes)
    }

    /// The algorithm.
    pub fn alg(&self) -> DigestAlg {
        self.alg
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.bytes)
    }
}

/// A DER-encoded CMS ContentInfo holding a detached SignedData.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedCms {
    der: Vec<u8>,
}

impl SignedCms {
    /// The DER bytes (what `openssl cms -inform DER` reads).
    pub fn as_der(&self) -> &[u8] {
        &self.der
    }

    /// The DER bytes, owned.
    pub fn into_der(self) -> Vec<u8> {
        self.der
    }

    /// PEM with the label `CMS` (what `openssl cms -inform PEM` reads), trailing newline.
    ///
    /// Fails only if the DER does not fit PEM's limits, which a signature always does.
    pub fn to_pem(&self) -> Result<String, CmsError> {
        der::pem::encode_string("CMS", der::pem::LineEnding::LF, &self.der)
            .map_err(|e| CmsError::Encoding(e.to_string()))
    }
}

impl fmt::Debug for SignedCms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedCms({} bytes DER)", self.der.len())
    }
}

/// Why a CMS signature could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    /// The digest algorithm is not one Keyhold signs.
    #[error("unknown digest algorithm {0:?} (supported: sha256, sha384)")]
    UnknownDigestAlgorithm(String),
    /// The digest is not hex.
    #[error("the digest is not hex: {0}")]
    DigestHex(String),
    /// The digest has the wrong length for its algorithm.
    #[error("a {alg} digest is {expected} bytes ({} hex digits), got {got} bytes", expected * 2)]
    DigestLength {
        /// The algorithm.
        alg: DigestAlg,
        /// Its length.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// The key signs with another digest algorithm.
    #[error(
        "key signs with {key_alg} ({sig}); send a {key_alg} digest of the artifact, not {given}"
    )]
    DigestAlgorithmMismatch {
        /// The key's digest algorithm.
        key_alg: DigestAlg,
        /// The key's signature algorithm, by name.
        sig: &'static str,
        /// The digest algorithm given.
        given: DigestAlg,
    },
    /// The signer certificate is not the key's.
    #[error(
        "the signer certificate's public key (sha256:{cert}) is not the signing key's (sha256:{key})"
    )]
    KeyMismatch {
        /// Fingerprint of the certificate's key.
        cert: String,
        /// Fingerprint of the signer's key.
        key: String,
    },
    /// DER encoding failed.
    #[error("cms encoding: {0}")]
    Encoding(String),
    /// The key store failed to sign, or the signature did not verify.
    #[error("signing failed: {0}")]
    KeyStore(#[from] KeyStoreError),
}

impl CmsError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CmsError::UnknownDigestAlgorithm(_)
            | CmsError::DigestHex(_)
            | CmsError::DigestLength { .. }
            | CmsError::DigestAlgorithmMismatch { .. } => ErrorKind::Invalid,
            CmsError::KeyMismatch { .. } | CmsError::Encoding(_) => ErrorKind::Internal,
            CmsError::KeyStore(e) => e.kind(),
        }
    }
}

impl From<der::Error> for CmsError {
    fn from(e: der::Error) -> Self {
        CmsError::Encoding(e.to_string())
    }
}

impl From<X509Error> for CmsError {
    fn from(e: X509Error) -> Self {
        match e {
            X509Error::KeyStore(k) => CmsError::KeyStore(k),
            other => CmsError::Encoding(other.to_string()),
        }
    }
}

/// ContentInfo (RFC 5652 3).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct ContentInfo {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: Any,
}

/// SignedData (RFC 5652 5.1), without crls (never present here).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SignedData {
    version: u8,
    digest_algorithms: SetOfVec<AlgorithmIdentifierOwned>,
    encap_content_info: EncapsulatedContentInfo,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    certificates: Option<SetOfVec<Any>>,
    signer_infos: SetOfVec<SignerInfo>,
}

/// EncapsulatedContentInfo (RFC 5652 5.2); eContent absent for a detached signature.
#[derive(Clone, Debug, Eq, PartialEq, Sequence, der::ValueOrd)]
struct EncapsulatedContentInfo {
    e_content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    e_content: Option<OctetString>,
}

/// IssuerAndSerialNumber (RFC 5652 10.2.4).
#[derive(Clone, Debug, Eq, PartialEq, Sequence, der::ValueOrd)]
struct IssuerAndSerialNumber {
    issuer: Name,
    serial_number: SerialNumber,
}

/// SignerInfo (RFC 5652 5.3), with issuerAndSerialNumber as its sid (hence version 1).
#[derive(Clone, Debug, Eq, PartialEq, Sequence, der::ValueOrd)]
struct SignerInfo {
    version: u8,
    sid: IssuerAndSerialNumber,
    digest_algorithm: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    signed_attrs: SetOfVec<Attribute>,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: OctetString,
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, CmsError> {
    let mut values = SetOfVec::new();
    values.insert(value)?;
    Ok(Attribute { oid, values })
}

fn sig_name(alg: SigAlg) -> &'static str {
    match alg {
        SigAlg::EcdsaP256Sha256 => "ecdsa-with-SHA256 on P-256",
        SigAlg::EcdsaP384Sha384 => "ecdsa-with-SHA384 on P-384",
    }
}

/// Checks that `digest` uses the digest algorithm a key signing with `alg` hashes with
/// (SHA-256 for P-256, SHA-384 for P-384).
///
/// Fails with [`CmsError::DigestAlgorithmMismatch`] otherwise.
pub fn check_digest_algorithm(alg: SigAlg, digest: &Digest) -> Result<(), CmsError> {
    let key_alg = DigestAlg::of_signature(alg);
    if digest.alg() == key_alg {
        Ok(())
    } else {
        Err(CmsError::DigestAlgorithmMismatch {
            key_alg,
            sig: sig_name(alg),
            given: digest.alg(),
        })
    }
}

/// Signs `digest` as a detached CMS SignedData at `signing_time`.
///
/// `signer_cert` is the certificate of `signer`'s key; `chain` is the CA certificates to
/// include after it (the issuing CA, optionally the root). The steps:
/// 1. check that the digest algorithm is the key's and the certificate's key is the signer's;
/// 2. build the signed attributes (contentType id-data, messageDigest, signingTime), a DER
///    SET OF, which sorts them;
/// 3. have the key store sign the attributes' DER (as a SET, RFC 5652 5.4) and verify the
///    signature against the certificate's key;
/// 4. assemble SignerInfo, SignedData and ContentInfo.
///
/// Fails with [`CmsError::DigestAlgorithmMismatch`], [`CmsError::KeyMismatch`], or
/// [`CmsError::KeyStore`] when the key store cannot sign or the signature does not verify.
pub fn sign_detached(
    digest: &Digest,
    signer_cert: &SignedCert,
    chain: &[SignedCert],
    signer: &dyn Signer,
    signing_time: SystemTime,
) -> Result<SignedCms, CmsError> {
    // 1. The algorithms and the key.
    let sig_alg = signer.algorithm();
    check_digest_algorithm(sig_alg, digest)?;
    let key_alg = digest.alg();
    let cert_key = signer_cert.public_key()?;
    if &cert_key != signer.public_key() {
        return Err(CmsError::KeyMismatch {
            cert: cert_key.fingerprint(),
            key: signer.public_key().fingerprint(),
        });
    }

    // 2. The signed attributes.
    let mut signed_attrs = SetOfVec::new();
    signed_attrs.insert(attribute(ID_CONTENT_TYPE, Any::encode_from(&ID_DATA)?)?)?;
    signed_attrs.insert(attribute(
        ID_MESSAGE_DIGEST,
        Any::encode_from(&OctetString::new(digest.as_bytes())?)?,
    )?)?;
    // RFC 5652 11.3: UTCTime from 1950 to 2049, GeneralizedTime otherwise, as in X.509.
    signed_attrs.insert(attribute(
        ID_SIGNING_TIME,
        Any::encode_from(&x509::x509_time(signing_time)?)?,
    )?)?;

    // 3. Sign the attributes' DER with the SET OF tag, not the [0] IMPLICIT one.
    let to_sign = signed_attrs.to_der()?;
    let signature = signer.sign(&to_sign)?;
    keystore::verify(sig_alg, &cert_key, &to_sign, &signature)?;

    // 4. Assemble.
    let tbs = signer_cert.cert.tbs_certificate();
    let signer_info = SignerInfo {
        version: 1,
        sid: IssuerAndSerialNumber {
            issuer: tbs.issuer().clone(),
            serial_number: tbs.serial_number().clone(),
        },
        digest_algorithm: key_alg.identifier(),
        signed_attrs,
        // RFC 5758 3.2: ecdsa-with-SHA* AlgorithmIdentifiers carry no parameters.
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: sig_alg.oid(),
            parameters: None,
        },
        signature: OctetString::new(signature)?,
    };
    let mut certificates = SetOfVec::new();
    for cert in std::iter::once(signer_cert).chain(chain) {
        let any = Any::from_der(&cert.der)?;
        if !certificates.as_slice().contains(&any) {
            certificates.insert(any)?;
        }
    }
    let mut digest_algorithms = SetOfVec::new();
    digest_algorithms.insert(key_alg.identifier())?;
    let mut signer_infos = SetOfVec::new();
    signer_infos.insert(signer_info)?;
    let signed_data = SignedData {
        // RFC 5652 5.1: version 1 with only X.509 certificates, id-data and version 1
        // SignerInfos.
        version: 1,
        digest_algorithms,
        encap_content_info: EncapsulatedContentInfo {
            e_content_type: ID_DATA,
            e_content: None,
        },
        certificates: Some(certificates),
        signer_infos,
    };
    let content_info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data)?,
    };
    Ok(SignedCms {
        der: content_info.to_der()?,
    })
}

/// What [`inspect`] reads back from a detached SignedData made by [`sign_detached`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCmsInfo {
    /// The digest algorithm.
    pub digest_alg: ObjectIdentifier,
    /// The messageDigest attribute.
    pub message_digest: Vec<u8>,
    /// The signer's serial number (content bytes).
    pub serial: Vec<u8>,
    /// How many certificates are included.
    pub certificates: usize,
}

/// Reads back the essentials of a SignedData, for tests and `keyhold codesign` output.
///
/// Fails with [`CmsError::Encoding`] if `der` is not a SignedData with one SignerInfo and a
/// messageDigest attribute.
pub fn inspect(der: &[u8]) -> Result<SignedCmsInfo, CmsError> {
    let ci = ContentInfo::from_der(der)?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(CmsError::Encoding(format!(
            "content type {} is not signedData",
            ci.content_type
        )));
    }
    let sd: SignedData = ci.content.decode_as()?;
    let si = match sd.signer_infos.as_slice() {
        [one] => one,
        other => {
            return Err(CmsError::Encoding(format!(
                "{} signer infos, expected one",
                other.len()
            )));
        }
    };
    let message_digest = si
        .signed_attrs
        .iter()
        .find(|a| a.oid == ID_MESSAGE_DIGEST)
        .and_then(|a| a.values.get(0))
        .ok_or_else(|| CmsError::Encoding("no messageDigest attribute".into()))?
        .decode_as::<OctetString>()?
        .as_bytes()
        .to_vec();
    Ok(SignedCmsInfo {
        digest_alg: si.digest_algorithm.oid,
        message_digest,
        serial: si.sid.serial_number.as_bytes().to_vec(),
        certificates: sd.certificates.map_or(0, |c| c.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_lengths_are_checked_against_the_algorithm() {
        assert!(Digest::from_hex(DigestAlg::Sha256, &"ab".repeat(32)).is_ok());
        assert!(Digest::from_hex(DigestAlg::Sha384, &"AB".repeat(48)).is_ok());
        let err = Digest::from_hex(DigestAlg::Sha256, &"ab".repeat(48)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a sha256 digest is 32 bytes (64 hex digits), got 48 bytes"
        );
        assert!(matches!(
            Digest::from_hex(DigestAlg::Sha384, "zz"),
            Err(CmsError::DigestHex(_))
        ));
        assert!(matches!(
            DigestAlg::parse("md5"),
            Err(CmsError::UnknownDigestAlgorithm(_))
        ));
        assert_eq!(DigestAlg::parse("SHA-384").unwrap(), DigestAlg::Sha384);
    }

    #[test]
    fn hashing_a_reader_matches_sha2() {
        use sha2::Digest as _;
        let data = vec![7u8; 200_000];
        let d = DigestAlg::Sha384.hash_reader(&data[..]).unwrap();
        assert_eq!(d.as_bytes(), sha2::Sha384::digest(&data).as_slice());
    }
}
