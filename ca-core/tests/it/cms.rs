//! Detached CMS signatures on every key store backend, checked by `openssl cms -verify`.

use std::fs;
use std::time::{Duration, SystemTime};

use ca_core::ceremony::{self, CeremonySpec, Hierarchy};
use ca_core::cms::{self, CmsError, Digest, DigestAlg};
use ca_core::keystore::{KeyRef, KeySpec, KeyStore};
use ca_core::x509::{self, CertTemplate, SignedCert};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};

use crate::support::{backends, openssl, unique};

/// A code-signing leaf for a new key `label` of type `spec`, signed by the ceremony's
/// issuing CA, as the code-signing profile shapes it.
fn code_signing_leaf(
    store: &dyn KeyStore,
    h: &Hierarchy,
    label: &str,
    spec: KeySpec,
) -> SignedCert {
    let key = KeyRef::new(label).unwrap();
    let public_key = store.generate(&key, spec).unwrap();
    let issuing = &h.issuing[0].ca;
    let issuer_signer = store.signer(&issuing.key).unwrap();
    let now = SystemTime::now();
    let template = CertTemplate {
        serial: x509::random_serial().unwrap(),
        issuer: issuing.cert.cert.tbs_certificate().subject().clone(),
        subject: x509::parse_name("CN=Release signing,O=Keyhold").unwrap(),
        not_before: now - Duration::from_secs(60),
        not_after: now + Duration::from_secs(86_400 * 365),
        public_key: public_key.clone(),
        extensions: vec![
            x509::to_ext(
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            )
            .unwrap(),
            x509::to_ext(true, &KeyUsage(KeyUsages::DigitalSignature.into())).unwrap(),
            x509::to_ext(
                false,
                &ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_CODE_SIGNING]),
            )
            .unwrap(),
            x509::ski_extension(&public_key).unwrap(),
            x509::aki_extension(issuer_signer.public_key()).unwrap(),
        ],
    };
    x509::sign_certificate(template, issuer_signer.as_ref()).unwrap()
}

/// A 5 MiB file of pseudo-random bytes.
fn artifact(dir: &std::path::Path) -> Vec<u8> {
    let mut data = vec![0u8; 5 * 1024 * 1024];
    aws_lc_rs::rand::fill(&mut data).unwrap();
    fs::write(dir.join("artifact.bin"), &data).unwrap();
    data
}

#[test]
fn openssl_cms_accepts_the_signature_and_rejects_a_tampered_file_on_every_backend() {
    for b in backends() {
        let prefix = unique("cms");
        let spec = CeremonySpec {
            key_label_prefix: format!("{prefix}-"),
            ..CeremonySpec::default()
        };
        let h = ceremony::run(&spec, b.store.as_ref(), SystemTime::now()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("root.pem"), h.root.cert.to_pem().unwrap()).unwrap();
        let mut data = artifact(dir.path());

        for (spec, alg) in [
            (KeySpec::EcP256, DigestAlg::Sha256),
            (KeySpec::EcP384, DigestAlg::Sha384),
        ] {
            let label = format!("{prefix}-signer-{spec}");
            let leaf = code_signing_leaf(b.store.as_ref(), &h, &label, spec);
            let signer = b.store.signer(&KeyRef::new(&label).unwrap()).unwrap();
            let digest = alg.hash_reader(&data[..]).unwrap();
            let signed = cms::sign_detached(
                &digest,
                &leaf,
                std::slice::from_ref(&h.issuing[0].ca.cert),
                signer.as_ref(),
                SystemTime::now(),
            )
            .unwrap();
            fs::write(dir.path().join("sig.der"), signed.as_der()).unwrap();
            fs::write(dir.path().join("sig.pem"), signed.to_pem().unwrap()).unwrap();

            let info = cms::inspect(signed.as_der()).unwrap();
            assert_eq!(info.message_digest, digest.as_bytes());
            assert_eq!(info.certificates, 2);
            assert_eq!(info.digest_alg, alg.oid());

            let verify = |form: &str, file: &str, content: &str| {
                openssl(
                    dir.path(),
                    &[
                        "cms",
                        "-verify",
                        "-binary",
                        "-inform",
                        form,
                        "-in",
                        file,
                        "-content",
                        content,
                        "-CAfile",
                        "root.pem",
                        "-purpose",
                        "any",
                        "-out",
                        "/dev/null",
                    ],
                )
            };
            let (ok, out) = verify("DER", "sig.der", "artifact.bin");
            assert!(
                ok,
                "{} {spec}: openssl refused the signature: {out}",
                b.name
            );
            assert!(out.contains("Verification successful"), "{out}");
            let (ok, out) = verify("PEM", "sig.pem", "artifact.bin");
            assert!(ok, "{} {spec} PEM: {out}", b.name);

            // One flipped bit in the middle of the file.
            let mid = data.len() / 2;
            data[mid] ^= 1;
            fs::write(dir.path().join("tampered.bin"), &data).unwrap();
            data[mid] ^= 1;
            let (ok, out) = verify("DER", "sig.der", "tampered.bin");
            assert!(
                !ok,
                "{} {spec}: openssl accepted a tampered file: {out}",
                b.name
            );
            assert!(out.contains("Verification failure"), "{out}");

            // The signed attributes as openssl prints them.
            let (ok, text) = openssl(
                dir.path(),
                &[
                    "cms", "-cmsout", "-print", "-inform", "DER", "-in", "sig.der",
                ],
            );
            assert!(ok, "{text}");
            for want in [
                "contentType",
                "messageDigest",
                "signingTime",
                "d.issuerAndSerialNumber",
            ] {
                assert!(text.contains(want), "{} lacks {want}:\n{text}", b.name);
            }
            let sig_alg = match spec {
                KeySpec::EcP256 => "ecdsa-with-SHA256",
                KeySpec::EcP384 => "ecdsa-with-SHA384",
            };
            assert!(text.contains(sig_alg), "{text}");
        }
    }
}

#[test]
fn refuses_a_digest_of_the_wrong_algorithm_or_a_certificate_for_another_key() {
    let b = crate::support::embedded();
    let prefix = unique("cmsbad");
    let spec = CeremonySpec {
        key_label_prefix: format!("{prefix}-"),
        ..CeremonySpec::default()
    };
    let h = ceremony::run(&spec, b.store.as_ref(), SystemTime::now()).unwrap();
    let leaf = code_signing_leaf(b.store.as_ref(), &h, "leaf", KeySpec::EcP256);
    let signer = b.store.signer(&KeyRef::new("leaf").unwrap()).unwrap();

    let sha384 = Digest::new(DigestAlg::Sha384, vec![1; 48]).unwrap();
    let err =
        cms::sign_detached(&sha384, &leaf, &[], signer.as_ref(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(err, CmsError::DigestAlgorithmMismatch { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "key signs with sha256 (ecdsa-with-SHA256 on P-256); send a sha256 digest of the artifact, not sha384"
    );

    let sha256 = Digest::new(DigestAlg::Sha256, vec![1; 32]).unwrap();
    let other = b.store.signer(&h.audit_key).unwrap();
    let err =
        cms::sign_detached(&sha256, &leaf, &[], other.as_ref(), SystemTime::now()).unwrap_err();
    assert!(matches!(err, CmsError::KeyMismatch { .. }), "{err}");
}
