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

use der::asn1::{BitString, GeneralizedTime, OctetString};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{CrlNumber, CrlReason};
use x509_cert::serial_number::SerialNumber;

use super::{Reason, RevocationError};
use crate::issuer::Issuer;
use crate::keystore::{self, SigAlg, Signer};
use crate::store::{RevokedEntry, Serial, Store};
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
/// Fails if an entry or time does not encode, the key store cannot sign, or the signature
/// does not verify with the signer's public key.
pub fn build(
    issuer_cert: &SignedCert,
    signer: &dyn Signer,
    params: &CrlParams,
    entries: &[RevokedEntry],
) -> Result<SignedCrl, X509Error> {
    let next_update = params.this_update + params.validity;
    let algorithm = AlgorithmIdentifierOwned {
        // RFC 5758 3.2: no parameters for ecdsa-with-SHA*.
        oid: signer.algorithm().oid(),
        parameters: None,
    };
    let mut revoked = Vec::with_capacity(entries.len());
    for entry in entries {
        revoked.push(revoked_cert(entry)?);
    }
    let crl_extensions = vec![
        authority_key_id(issuer_cert, signer)?,
        x509::to_ext(false, &CrlNumber::try_from(params.number)?)?,
    ];
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: algorithm.clone(),
        issuer: issuer_cert.cert.tbs_certificate().subject().clone(),
        this_update: x509::x509_time(params.this_update)?,
        next_update: Some(x509::x509_time(next_update)?),
        // RFC 5280 5.1.2.6: absent, not empty, when nothing is revoked.
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(crl_extensions),
    };
    let tbs_der = tbs.to_der()?;
    let signature = signer.sign(&tbs_der)?;
    keystore::verify(
        signer.algorithm(),
        signer.public_key(),
        &tbs_der,
        &signature,
    )?;
    let crl = CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature)?,
    };
    Ok(SignedCrl {
        der: crl.to_der()?,
        number: params.number,
        this_update: params.this_update,
        next_update,
        entries: entries.len(),
    })
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

fn serial_number(serial: &Serial) -> Result<SerialNumber, X509Error> {
    let bytes = hex::decode(serial.as_str())
        .map_err(|e| X509Error::Encoding(format!("serial {serial}: {e}")))?;
    Ok(SerialNumber::new(&bytes)?)
}

fn revoked_cert(entry: &RevokedEntry) -> Result<RevokedCert, X509Error> {
    let mut extensions = Vec::new();
    // RFC 5280 5.3.1: omit the reason code rather than write unspecified.
    if entry.reason != Reason::Unspecified {
        extensions.push(x509::to_ext(false, &crl_reason(entry.reason))?);
    }
    if let Some(date) = entry.invalidity_date {
        extensions.push(Extension {
            extn_id: ID_CE_INVALIDITY_DATE,
            critical: false,
            extn_value: OctetString::new(generalized_time(date)?.to_der()?)?,
        });
    }
    Ok(RevokedCert {
        serial_number: serial_number(&entry.serial)?,
        revocation_date: x509::x509_time(entry.revoked_at)?,
        crl_entry_extensions: (!extensions.is_empty()).then_some(extensions),
    })
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

/// Compares a CRL with what the database says the issuer has revoked: the CRL must be signed
/// by `issuer_cert`'s key and name it as issuer, and list every entry of `expected` exactly
/// once with the same revocation date, reason and invalidity date, and nothing else.
///
/// Fails with [`RevocationError::CrlMismatch`] listing every difference.
pub fn self_check(
    crl_der: &[u8],
    issuer_cert: &SignedCert,
    expected: &[RevokedEntry],
) -> Result<(), RevocationError> {
    let issuer_id = issuer_cert.subject();
    let mismatch = |problems: Vec<String>| RevocationError::CrlMismatch {
        issuer: issuer_id.clone(),
        problems,
    };
    let crl = CertificateList::<x509_cert::certificate::Rfc5280>::from_der(crl_der)
        .map_err(|e| mismatch(vec![format!("it does not parse: {e}")]))?;
    let mut problems = Vec::new();
    if let Err(e) = verify_crl_signature(&crl, issuer_cert) {
        problems.push(format!("its signature: {e}"));
    }
    if &crl.tbs_cert_list.issuer != issuer_cert.cert.tbs_certificate().subject() {
        problems.push("its issuer is not the issuer certificate's subject".into());
    }
    let mut listed: HashMap<String, (usize, &RevokedCert)> = HashMap::new();
    for entry in crl.tbs_cert_list.revoked_certificates.iter().flatten() {
        let serial = Serial::from_bytes(entry.serial_number.as_bytes());
        listed
            .entry(serial.as_str().to_owned())
            .or_insert((0, entry))
            .0 += 1;
    }
    for want in expected {
        match listed.remove(want.serial.as_str()) {
            None => problems.push(format!("revoked certificate {} is missing", want.serial)),
            Some((count, got)) => {
                if count > 1 {
                    problems.push(format!(
                        "certificate {} is listed {count} times",
                        want.serial
                    ));
                }
                match revoked_cert(want) {
                    Ok(expected_entry) if &expected_entry != got => problems.push(format!(
                        "certificate {}: its date, reason or invalidity date differs",
                        want.serial
                    )),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("certificate {}: {e}", want.serial)),
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
    if problems.is_empty() {
        Ok(())
    } else {
        Err(mismatch(problems))
    }
}

fn verify_crl_signature(crl: &CertificateList, issuer_cert: &SignedCert) -> Result<(), X509Error> {
    let oid = crl.signature_algorithm.oid;
    let alg = [SigAlg::EcdsaP256Sha256, SigAlg::EcdsaP384Sha384]
        .into_iter()
        .find(|a| a.oid() == oid)
        .ok_or_else(|| X509Error::Encoding(format!("unsupported signature algorithm {oid}")))?;
    let signature = crl
        .signature
        .as_bytes()
        .ok_or_else(|| X509Error::Encoding("signature has unused bits".into()))?;
    keystore::verify(
        alg,
        &issuer_cert.public_key()?,
        &crl.tbs_cert_list.to_der()?,
        signature,
    )?;
    Ok(())
}

/// Makes `issuer`'s next full CRL at `now`: allocates its CRL number, reads every unexpired
/// revoked certificate from `store`, signs through the key store, and runs [`self_check`]
/// against the list it read.
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
    let entries = store.revoked_unexpired(&issuer.id, now)?;
    let crl = build(
        &issuer.ca.cert,
        issuer.ca.signer.as_ref(),
        &CrlParams {
            number,
            this_update: now,
            validity,
        },
        &entries,
    )?;
    self_check(&crl.der, &issuer.ca.cert, &entries)?;
    Ok(crl)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::keystore::embedded::{EmbeddedKeyStore, KdfParams};
    use crate::keystore::{KeyRef, KeySpec, KeyStore};
    use crate::secret::Secret;
    use crate::x509::CertTemplate;
    use std::sync::Arc;
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

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

    fn entry(serial: &str, reason: Reason, invalidity: bool) -> RevokedEntry {
        RevokedEntry {
            serial: Serial::parse(serial).unwrap(),
            revoked_at: t0() + Duration::from_secs(3600),
            reason,
            invalidity_date: invalidity.then(|| t0() + Duration::from_secs(60)),
            not_after: t0() + Duration::from_secs(90 * 86_400),
        }
    }

    #[test]
    fn a_crl_lists_every_entry_with_reason_and_invalidity_date_and_passes_its_self_check() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, signer, _store) = test_ca(dir.path(), "CRL Test CA");
        let entries = vec![
            entry("01", Reason::KeyCompromise, true),
            entry("ff00", Reason::Unspecified, false),
            entry("7f", Reason::Superseded, false),
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
        self_check(&crl.der, &cert, &entries).unwrap();
        let parsed =
            CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&crl.der).unwrap();
        let tbs = &parsed.tbs_cert_list;
        assert_eq!(tbs.version, x509_cert::Version::V2);
        let listed = tbs.revoked_certificates.as_ref().unwrap();
        assert_eq!(listed.len(), 3);
        // Unspecified: no reason code extension at all.
        assert!(listed[1].crl_entry_extensions.is_none());
        assert_eq!(listed[0].crl_entry_extensions.as_ref().unwrap().len(), 2);
        assert_eq!(crl.next_update, crl.this_update + DEFAULT_VALIDITY);
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
        let err = self_check(&crl.der, &cert, &expected)
            .unwrap_err()
            .to_string();
        for needle in [
            "certificate 01 is listed 2 times",
            "revoked certificate 02 is missing",
            "certificate 03 is listed but not revoked",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
        // A CRL signed by another CA's key fails the signature check.
        let other = tempfile::tempdir().unwrap();
        let (other_cert, _, _) = test_ca(other.path(), "Other CA");
        let err = self_check(&crl.der, &other_cert, &listed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("signature"), "{err}");
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
        self_check(&crl.der, &cert, &[]).unwrap();
    }
}
