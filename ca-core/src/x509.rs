//! The one place that adapts Keyhold's [`Signer`] to the X.509 library's traits.
//!
//! Invariant: every certificate leaves [`sign_certificate`] with a signature that has been
//! verified against the issuer's public key, so a faulty HSM or a mismatched key can never
//! produce a certificate that relying parties would reject (or worse, accept from the wrong
//! issuer).

use std::time::SystemTime;

use der::asn1::{BitString, Ia5String, OctetString};
use der::{Decode, Encode, Tagged};
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, CrlDistributionPoints,
    SubjectKeyIdentifier, crl::dp::DistributionPoint,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate};

use crate::keystore::{self, KeyStoreError, Signer, SpkiDer};

/// Why building or checking a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    /// A distinguished name string did not parse.
    #[error(
        "invalid distinguished name {name:?}: {reason} (expected RFC 4514 form, e.g. \"CN=Example CA,O=Example\")"
    )]
    InvalidName {
        /// The offending text.
        name: String,
        /// What the parser said.
        reason: String,
    },
    /// A URL is not usable in a certificate (IA5String, http or https).
    #[error("invalid url {0:?}: must be an http:// or https:// URL in ASCII")]
    InvalidUrl(String),
    /// The validity period cannot be encoded or is empty.
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    /// DER encoding or decoding failed.
    #[error("x.509 encoding: {0}")]
    Encoding(String),
    /// The key store failed to sign, or the signature did not verify.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
}

impl From<der::Error> for X509Error {
    fn from(e: der::Error) -> Self {
        X509Error::Encoding(e.to_string())
    }
}

impl From<x509_cert::builder::Error> for X509Error {
    fn from(e: x509_cert::builder::Error) -> Self {
        X509Error::Encoding(e.to_string())
    }
}

/// Parses an RFC 4514 distinguished name.
///
/// Fails with [`X509Error::InvalidName`] naming the text when it is not a DN, or is empty.
pub fn parse_name(text: &str) -> Result<Name, X509Error> {
    let invalid = |reason: String| X509Error::InvalidName {
        name: text.into(),
        reason,
    };
    let name: Name = text
        .parse()
        .map_err(|e: der::Error| invalid(e.to_string()))?;
    if name.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    check_values(&name).map_err(invalid)?;
    Ok(name)
}

/// Checks each attribute of `name` against its string type and RFC 5280's rules: the
/// parser stores values unchecked, and `#hex` values carry arbitrary DER.
fn check_values(name: &Name) -> Result<(), String> {
    for atv in name.iter() {
        let value = atv.value.value();
        if value.is_empty() {
            return Err(format!("attribute {} is empty", atv.oid));
        }
        match atv.value.tag() {
            der::Tag::Utf8String if std::str::from_utf8(value).is_ok() => {}
            der::Tag::PrintableString
                if value
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(b)) => {}
            der::Tag::PrintableString => {
                return Err(format!(
                    "attribute {} must be ASCII letters and digits",
                    atv.oid
                ));
            }
            _ => {
                return Err(format!(
                    "attribute {} must be a plain string, not #hex DER",
                    atv.oid
                ));
            }
        }
        // X.520 / RFC 5280 A.1: countryName is exactly two letters.
        if atv.oid == const_oid::db::rfc4519::C && value.len() != 2 {
            return Err("C must be a two-letter country code".into());
        }
    }
    Ok(())
}

/// A distinguished name from `(type, value)` attributes (`CN`, `O`, `C`... or a dotted OID),
/// one attribute per RDN, in the order given (DER order: the most general first). Values are
/// taken as they are, never re-parsed from text, so no character in them can move an
/// attribute boundary. The string type follows RFC 5280 A.1 (countryName and serialNumber
/// PrintableString, emailAddress and domainComponent IA5String, the rest UTF8String).
///
/// Fails with [`X509Error::InvalidName`] for an unknown attribute type, an empty value, or a
/// value its string type cannot hold.
pub fn name_from_attributes(attrs: &[(String, String)]) -> Result<Name, X509Error> {
    use const_oid::db::{DB, rfc4519};
    use der::asn1::{Any, SetOfVec};
    use x509_cert::attr::AttributeTypeAndValue;
    let text = || {
        attrs
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let invalid = |reason: String| X509Error::InvalidName {
        name: text(),
        reason,
    };
    let mut rdns = Vec::with_capacity(attrs.len());
    for (key, value) in attrs {
        let oid = match DB.by_name(key) {
            Some(oid) => *oid,
            None => const_oid::ObjectIdentifier::new(key)
                .map_err(|_| invalid(format!("unknown attribute type {key:?}")))?,
        };
        let tag = match oid {
            rfc4519::C | rfc4519::SERIAL_NUMBER => der::Tag::PrintableString,
            rfc4519::DOMAIN_COMPONENT | const_oid::db::rfc2985::PKCS_9_AT_EMAIL_ADDRESS => {
                der::Tag::Ia5String
            }
            _ => der::Tag::Utf8String,
        };
        if tag == der::Tag::Ia5String && !value.is_ascii() {
            return Err(invalid(format!("attribute {key} must be ASCII")));
        }
        let atv = AttributeTypeAndValue {
            oid,
            value: Any::new(tag, value.as_bytes()).map_err(|e| invalid(e.to_string()))?,
        };
        rdns.push(SetOfVec::try_from(vec![atv]).map_err(|e| invalid(e.to_string()))?);
    }
    let der = rdns.to_der().map_err(|e| invalid(e.to_string()))?;
    let name = Name::from_der(&der).map_err(|e| invalid(e.to_string()))?;
    check_values(&name).map_err(invalid)?;
    Ok(name)
}

/// A random positive serial number with 128 bits from the OS CSPRNG (RFC 5280 4.1.2.2:
/// positive, at most 20 octets; CA/B Forum BR 7.1: at least 64 bits of entropy).
///
/// Fails only if the system random generator fails.
pub fn random_serial() -> Result<SerialNumber, X509Error> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    let rng = aws_lc_rs::rand::SystemRandom::new();
    // A zero first octet would make the serial shorter (DER drops it); drawing again keeps
    // every serial 16 or 17 octets long, as 1 in 256 would otherwise not be, at a cost of
    // under 0.006 bits of entropy.
    while bytes[0] == 0 {
        rng.fill(&mut bytes)
            .map_err(|_| KeyStoreError::Unavailable("the system random generator failed".into()))?;
    }
    Ok(SerialNumber::new(&bytes)?)
}

/// The subject key identifier for a public key: the leftmost 160 bits of the SHA-256 of the
/// subjectPublicKey BIT STRING's value (RFC 7093 section 2, method 1).
///
/// Fails if `spki` does not parse.
pub fn key_identifier(spki: &SpkiDer) -> Result<Vec<u8>, X509Error> {
    let digest = sha2::Sha256::digest(spki.subject_public_key()?);
    Ok(digest[..20].to_vec())
}

/// Converts a point in time to an X.509 `Time` (UTCTime before 2050, GeneralizedTime after,
/// as RFC 5280 4.1.2.5 requires), dropping sub-second precision.
///
/// Fails for times before 1970 or past 9999.
pub fn x509_time(t: SystemTime) -> Result<Time, X509Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| X509Error::InvalidValidity("time before 1970".into()))?
        .as_secs();
    let whole = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    Time::try_from(whole).map_err(|e| X509Error::InvalidValidity(e.to_string()))
}

/// The SubjectKeyIdentifier extension for `spki`.
pub fn ski_extension(spki: &SpkiDer) -> Result<Extension, X509Error> {
    let ski = SubjectKeyIdentifier(OctetString::new(key_identifier(spki)?)?);
    Ok(to_ext(false, &ski)?)
}

/// The AuthorityKeyIdentifier extension naming the issuer's key (keyIdentifier only, as
/// RFC 5280 4.2.1.1 recommends).
pub fn aki_extension(issuer_key: &SpkiDer) -> Result<Extension, X509Error> {
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(key_identifier(issuer_key)?)?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    Ok(to_ext(false, &aki)?)
}

/// A CRL distribution points extension with one full-name HTTP URI.
pub fn crl_dp_extension(url: &str) -> Result<Extension, X509Error> {
    let dp = CrlDistributionPoints(vec![DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![uri_name(url)?])),
        reasons: None,
        crl_issuer: None,
    }]);
    Ok(to_ext(false, &dp)?)
}

/// An authority information access extension with OCSP and caIssuers URIs (RFC 5280 4.2.2.1).
pub fn aia_extension(ocsp_url: &str, ca_issuers_url: &str) -> Result<Extension, X509Error> {
    use const_oid::db::rfc5280::{ID_AD_CA_ISSUERS, ID_AD_OCSP};
    let aia = AuthorityInfoAccessSyntax(vec![
        AccessDescription {
            access_method: ID_AD_OCSP,
            access_location: uri_name(ocsp_url)?,
        },
        AccessDescription {
            access_method: ID_AD_CA_ISSUERS,
            access_location: uri_name(ca_issuers_url)?,
        },
    ]);
    Ok(to_ext(false, &aia)?)
}

/// Encodes any extension value with the criticality given.
pub fn to_ext<T: const_oid::AssociatedOid + Encode>(
    critical: bool,
    value: &T,
) -> der::Result<Extension> {
    (critical, value).to_extension(&Name::default(), &[])
}

fn uri_name(url: &str) -> Result<GeneralName, X509Error> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.is_ascii()
        && !url.contains(|c: char| c.is_ascii_whitespace() || c.is_ascii_control());
    if !ok {
        return Err(X509Error::InvalidUrl(url.into()));
    }
    let ia5 = Ia5String::new(url).map_err(|_| X509Error::InvalidUrl(url.into()))?;
    Ok(GeneralName::UniformResourceIdentifier(ia5))
}

/// Everything a certificate says, except its signature.
#[derive(Debug, Clone)]
pub struct CertTemplate {
    /// The serial number (use [`random_serial`]).
    pub serial: SerialNumber,
    /// Issuer name: the subject of the issuer's certificate (or `subject` for a root).
    pub issuer: Name,
    /// Subject name.
    pub subject: Name,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity (inclusive, RFC 5280 4.1.2.5).
    pub not_after: SystemTime,
    /// The subject's public key.
    pub public_key: SpkiDer,
    /// The extensions, in order.
    pub extensions: Vec<Extension>,
}

/// A certificate and its DER.
#[derive(Debug, Clone)]
pub struct SignedCert {
    /// The parsed certificate.
    pub cert: Certificate,
    /// Its DER encoding.
    pub der: Vec<u8>,
}

impl SignedCert {
    /// Parses DER.
    ///
    /// Fails with [`X509Error::Encoding`] if it is not a certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, X509Error> {
        let cert = Certificate::from_der(der)?;
        Ok(SignedCert {
            cert,
            der: der.to_vec(),
        })
    }

    /// Parses one PEM `CERTIFICATE` block.
    ///
    /// Fails with [`X509Error::Encoding`] if it is not one.
    pub fn from_pem(pem: &[u8]) -> Result<Self, X509Error> {
        use der::DecodePem;
        let cert = Certificate::from_pem(pem)?;
        let der = cert.to_der()?;
        Ok(SignedCert { cert, der })
    }

    /// PEM text with a trailing newline.
    ///
    /// Fails only if the DER does not fit PEM's length limits, which a certificate always does.
    pub fn to_pem(&self) -> Result<String, X509Error> {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &self.der)
            .map_err(|e| X509Error::Encoding(e.to_string()))
    }

    /// SHA-256 of the DER, as uppercase hex pairs joined by colons (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub fn fingerprint_sha256(&self) -> String {
        let digest = sha2::Sha256::digest(&self.der);
        digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The subject public key, re-encoded as DER.
    pub fn public_key(&self) -> Result<SpkiDer, X509Error> {
        let der = self
            .cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()?;
        Ok(SpkiDer::from_der_unchecked(der))
    }

    /// The subject, in RFC 4514 form.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate().subject().to_string()
    }

    /// notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.cert
            .tbs_certificate()
            .validity()
            .not_after
            .to_system_time()
    }

    /// The serial as lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex::encode(self.cert.tbs_certificate().serial_number().as_bytes())
    }
}

/// Builds the TBS certificate for `template`, signs it with `signer` and checks the
/// signature against the signer's public key before returning.
///
/// Fails if the template does not encode, the key store cannot sign, or the signature does
/// not verify.
pub fn sign_certificate(
    template: CertTemplate,
    signer: &dyn Signer,
) -> Result<SignedCert, X509Error> {
    sign_certificate_timed(template, signer, &mut |_| {})
}

/// The steps of [`sign_certificate`], for measuring where its time goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignStep {
    /// Encoding the TBS certificate, or the signed certificate around its signature.
    Build,
    /// The key store's signature.
    Sign,
    /// The check of that signature against the issuer's public key.
    SelfCheck,
}

/// [`sign_certificate`], calling `step` as each step ends (a step may end more than once:
/// the certificate is built before and after it is signed).
///
/// Fails like [`sign_certificate`].
pub fn sign_certificate_timed(
    template: CertTemplate,
    signer: &dyn Signer,
    step: &mut dyn FnMut(SignStep),
) -> Result<SignedCert, X509Error> {
    if template.not_after <= template.not_before {
        return Err(X509Error::InvalidValidity(
            "notAfter is not after notBefore".into(),
        ));
    }
    let validity = Validity::new(
        x509_time(template.not_before)?,
        x509_time(template.not_after)?,
    );
    let spki = SubjectPublicKeyInfoOwned::from_der(template.public_key.as_bytes())?;
    let profile = FixedProfile {
        issuer: template.issuer,
        subject: template.subject,
        extensions: template.extensions,
    };
    let mut builder = CertificateBuilder::new(profile, template.serial, validity, spki)?;
    let adapter = SignerAdapter(signer);
    let tbs = builder.finalize(&adapter)?;
    step(SignStep::Build);
    let signature = signer.sign(&tbs)?;
    step(SignStep::Sign);
    keystore::verify(signer.algorithm(), signer.public_key(), &tbs, &signature)?;
    step(SignStep::SelfCheck);
    let cert = builder.assemble(BitString::from_bytes(&signature)?, &adapter)?;
    let der = cert.to_der()?;
    step(SignStep::Build);
    Ok(SignedCert { cert, der })
}

/// Checks that `cert` was signed by the key `issuer_key`.
///
/// Fails with [`KeyStoreError::Corrupt`] (wrapped) if it was not, or if the algorithm is not
/// one Keyhold uses.
pub fn verify_signed_by(cert: &SignedCert, issuer_key: &SpkiDer) -> Result<(), X509Error> {
    let alg_oid = cert.cert.signature_algorithm().oid;
    let alg = [
        keystore::SigAlg::EcdsaP256Sha256,
        keystore::SigAlg::EcdsaP384Sha384,
    ]
    .into_iter()
    .find(|a| a.oid() == alg_oid)
    .ok_or_else(|| X509Error::Encoding(format!("unsupported signature algorithm {alg_oid}")))?;
    let tbs: &TbsCertificate = cert.cert.tbs_certificate();
    let signature = cert
        .cert
        .signature()
        .as_bytes()
        .ok_or_else(|| X509Error::Encoding("signature has unused bits".into()))?;
    keystore::verify(alg, issuer_key, &tbs.to_der()?, signature)?;
    Ok(())
}

/// A builder profile that uses exactly the names and extensions it is given: Keyhold decides
/// every extension itself rather than inheriting a library's defaults.
struct FixedProfile {
    issuer: Name,
    subject: Name,
    extensions: Vec<Extension>,
}

impl BuilderProfile for FixedProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.extensions.clone())
    }
}

/// Presents a [`Signer`] to the builder: its public key and its AlgorithmIdentifier.
struct SignerAdapter<'a>(&'a dyn Signer);

#[derive(Clone)]
struct AdapterPublicKey(SpkiDer);

impl spki::EncodePublicKey for AdapterPublicKey {
    fn to_public_key_der(&self) -> spki::Result<spki::Document> {
        Ok(spki::Document::try_from(self.0.as_bytes())?)
    }
}

impl signature::Keypair for SignerAdapter<'_> {
    type VerifyingKey = AdapterPublicKey;

    fn verifying_key(&self) -> AdapterPublicKey {
        AdapterPublicKey(self.0.public_key().clone())
    }
}

impl spki::DynSignatureAlgorithmIdentifier for SignerAdapter<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        // RFC 5758 3.2: ecdsa-with-SHA* AlgorithmIdentifiers carry no parameters.
        Ok(AlgorithmIdentifierOwned {
            oid: self.0.algorithm().oid(),
            parameters: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_attributes_keep_every_character_of_a_value() {
        for value in [
            r"a\,b",
            "a,b",
            "a+b=c",
            r"\",
            " lead and trail ",
            "\"quoted\"",
        ] {
            let name = name_from_attributes(&[
                ("O".into(), "Keyhold".into()),
                ("CN".into(), value.into()),
            ])
            .unwrap();
            let rdns: Vec<_> = name.iter().collect();
            assert_eq!(rdns.len(), 2, "{value:?}");
            assert_eq!(rdns[1].value.value(), value.as_bytes(), "{value:?}");
        }
        assert!(name_from_attributes(&[("CN".into(), String::new())]).is_err());
        assert!(name_from_attributes(&[("C".into(), "DEU".into())]).is_err());
        assert!(name_from_attributes(&[("bogus".into(), "x".into())]).is_err());
    }

    #[test]
    fn random_serials_are_positive_at_most_17_octets_and_differ() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
        for s in [a, b] {
            let der = s.to_der().unwrap();
            // tag, length, then a non-negative INTEGER body.
            assert!((1..=17).contains(&der[1]), "{der:02x?}");
            assert_eq!(der[2] & 0x80, 0);
        }
    }

    #[test]
    fn rejects_bad_names_and_urls() {
        assert!(matches!(parse_name(""), Err(X509Error::InvalidName { .. })));
        assert!(matches!(
            parse_name("no equals sign"),
            Err(X509Error::InvalidName { .. })
        ));
        assert!(parse_name("CN=Example CA,O=Example").is_ok());
        for bad in ["CN=R,C=Ü", "CN=R,C=USA", "CN=Y,O=", "CN=#0403414243"] {
            assert!(
                matches!(parse_name(bad), Err(X509Error::InvalidName { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            crl_dp_extension("ftp://x"),
            Err(X509Error::InvalidUrl(_))
        ));
        assert!(matches!(
            crl_dp_extension("http://ex ample"),
            Err(X509Error::InvalidUrl(_))
        ));
        assert!(crl_dp_extension("http://127.0.0.1:8080/crl/root.crl").is_ok());
    }
}
