//! Delegated OCSP responders (RFC 6960 4.2.2.2): their certificates, issued by the CA they
//! answer for, at the ceremony, on renewal, and for an issuer that has none yet.

use std::time::SystemTime;

use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};

use super::{CaMaterial, CeremonyError, DAY, ID_PKIX_OCSP_NOCHECK};
use crate::issuer::IssuerId;
use crate::keystore::{KeyRef, KeyStore, SpkiDer};
use crate::x509::{self, CertTemplate, SignedCert, X509Error};

/// Gives an existing issuer that has none a delegated OCSP responder: generates the key
/// `{issuer key label}-ocsp` in `store` (the issuer's key type) and issues its certificate,
/// valid for `validity_days`. This is how a data directory made before the root had a
/// responder gets one (`keyhold ocsp renew --issuer root`).
///
/// Fails without changing the store if the label is taken or the issuer's key label
/// cannot be read; fails and destroys the new key if its certificate cannot be issued.
pub fn add_ocsp_responder(
    store: &dyn KeyStore,
    issuer: &crate::issuer::Issuer,
    issuer_key: &KeyRef,
    validity_days: u32,
    now: SystemTime,
) -> Result<CaMaterial, CeremonyError> {
    if !(1..=366).contains(&validity_days) {
        return Err(CeremonyError::Invalid(vec![
            "the responder's validity must be between 1 and 366 days".into(),
        ]));
    }
    let key = KeyRef::new(format!("{}-ocsp", issuer_key.label()))?;
    if store.list()?.iter().any(|k| k.key == key) {
        return Err(CeremonyError::Invalid(vec![format!(
            "key label {:?} already exists in the key store (destroy it, or configure it by hand)",
            key.label()
        )]));
    }
    let spki = store.generate(&key, issuer.ca.signer.algorithm().key_spec())?;
    let cert = issue_ocsp_responder(
        &OcspResponderRequest {
            issuer_name: issuer.ca.cert.cert.tbs_certificate().subject(),
            issuer_not_after: issuer.ca.cert.not_after(),
            issuer_id: &issuer.id,
            public_key: &spki,
            validity_days,
        },
        issuer.ca.signer.as_ref(),
        now,
    );
    match cert {
        Ok(cert) => Ok(CaMaterial {
            key_uri: store.uri(&key),
            key,
            cert,
        }),
        Err(e) => match store.destroy(&key) {
            Ok(()) => Err(e.into()),
            Err(_) => Err(CeremonyError::RollbackFailed {
                cause: Box::new(e.into()),
                left: vec![store.uri(&key)],
            }),
        },
    }
}

/// What an OCSP responder certificate needs to know about its issuer.
#[derive(Debug)]
pub struct OcspResponderRequest<'a> {
    /// The issuing CA's subject.
    pub issuer_name: &'a x509_cert::name::Name,
    /// The issuing CA's notAfter; the responder's never exceeds it.
    pub issuer_not_after: SystemTime,
    /// The issuing CA's id, for the responder's subject.
    pub issuer_id: &'a IssuerId,
    /// The responder's public key.
    pub public_key: &'a SpkiDer,
    /// How long the certificate lasts.
    pub validity_days: u32,
}

/// Issues (or renews) a delegated OCSP responder certificate, signed by the issuing CA.
///
/// Fails if the certificate cannot be built or the CA's key cannot sign.
pub fn issue_ocsp_responder(
    req: &OcspResponderRequest<'_>,
    ca_signer: &dyn crate::keystore::Signer,
    now: SystemTime,
) -> Result<SignedCert, X509Error> {
    use const_oid::db::rfc5280::ID_KP_OCSP_SIGNING;
    let subject = x509::parse_name(&format!("CN=OCSP Responder {},O=Keyhold", req.issuer_id))?;
    let nocheck = x509_cert::ext::Extension {
        extn_id: ID_PKIX_OCSP_NOCHECK,
        critical: false,
        extn_value: der::asn1::OctetString::new(der::Encode::to_der(&der::asn1::Null)?)?,
    };
    x509::sign_certificate(
        CertTemplate {
            serial: x509::random_serial()?,
            issuer: req.issuer_name.clone(),
            subject,
            not_before: now,
            not_after: req.issuer_not_after.min(now + DAY * req.validity_days),
            public_key: req.public_key.clone(),
            extensions: vec![
                x509::to_ext(
                    true,
                    &BasicConstraints {
                        ca: false,
                        path_len_constraint: None,
                    },
                )?,
                x509::to_ext(true, &KeyUsage(KeyUsages::DigitalSignature.into()))?,
                x509::to_ext(false, &ExtendedKeyUsage(vec![ID_KP_OCSP_SIGNING]))?,
                nocheck,
                x509::ski_extension(req.public_key)?,
                x509::aki_extension(ca_signer.public_key())?,
            ],
        },
        ca_signer,
    )
}
