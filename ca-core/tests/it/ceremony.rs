//! The key ceremony on every backend, checked by openssl; and its all-or-nothing rule.

use std::fs;
use std::sync::Arc;
use std::time::SystemTime;

use ca_core::ceremony::{self, CeremonyError, CeremonySpec, Hierarchy};
use ca_core::issuer::{self, IssuerConfig, IssuerId, KeyedCertConfig};
use ca_core::keystore::{KeyInfo, KeyRef, KeySpec, KeyStore, KeyStoreError, Signer, SpkiDer};

use crate::support::{backends, openssl, unique};

fn spec(prefix: &str) -> CeremonySpec {
    CeremonySpec {
        key_label_prefix: format!("{prefix}-"),
        ..CeremonySpec::default()
    }
}

fn write_pems(dir: &std::path::Path, h: &Hierarchy) {
    fs::write(dir.join("root.pem"), h.root.cert.to_pem().unwrap()).unwrap();
    fs::write(
        dir.join("issuing.pem"),
        h.issuing[0].ca.cert.to_pem().unwrap(),
    )
    .unwrap();
    fs::write(
        dir.join("ocsp.pem"),
        h.issuing[0].ocsp.cert.to_pem().unwrap(),
    )
    .unwrap();
    fs::write(
        dir.join("root-ocsp.pem"),
        h.root_ocsp.cert.to_pem().unwrap(),
    )
    .unwrap();
}

#[test]
fn openssl_verifies_the_hierarchy_strictly_on_every_backend() {
    for b in backends() {
        let h = ceremony::run(&spec(&unique("cer")), b.store.as_ref(), SystemTime::now()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_pems(dir.path(), &h);
        let (ok, out) = openssl(
            dir.path(),
            &[
                "verify",
                "-x509_strict",
                "-CAfile",
                "root.pem",
                "issuing.pem",
            ],
        );
        assert!(ok, "{}: {out}", b.name);
        let (ok, out) = openssl(
            dir.path(),
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                "ocsphelper",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "issuing.pem",
                "ocsp.pem",
            ],
        );
        assert!(ok, "{}: {out}", b.name);
        // The root's responder, signed by the root itself.
        let (ok, out) = openssl(
            dir.path(),
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                "ocsphelper",
                "-CAfile",
                "root.pem",
                "root-ocsp.pem",
            ],
        );
        assert!(ok, "{}: {out}", b.name);
    }
}

#[test]
fn certificates_carry_the_extensions_rfc_5280_and_6960_ask_for() {
    let b = crate::support::embedded();
    let h = ceremony::run(&spec("ext"), b.store.as_ref(), SystemTime::now()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pems(dir.path(), &h);
    let text = |f: &str| openssl(dir.path(), &["x509", "-in", f, "-noout", "-text"]).1;

    let root = text("root.pem");
    for want in [
        "CA:TRUE",
        "Certificate Sign, CRL Sign",
        "Subject Key Identifier",
        "ecdsa-with-SHA384",
        "NIST CURVE: P-384",
    ] {
        assert!(root.contains(want), "root lacks {want}:\n{root}");
    }
    assert!(root.contains("Basic Constraints: critical") && root.contains("Key Usage: critical"));

    let issuing = text("issuing.pem");
    for want in [
        "CA:TRUE, pathlen:0",
        "URI:http://127.0.0.1:8080/crl/root.crl",
        "OCSP - URI:http://127.0.0.1:8080/ocsp",
        "CA Issuers - URI:http://127.0.0.1:8080/ca/root.der",
        "Authority Key Identifier",
    ] {
        assert!(
            issuing.contains(want),
            "issuing CA lacks {want}:\n{issuing}"
        );
    }

    let ocsp = text("ocsp.pem");
    for want in [
        "OCSP Signing",
        "OCSP No Check",
        "CA:FALSE",
        "Digital Signature",
    ] {
        assert!(ocsp.contains(want), "responder lacks {want}:\n{ocsp}");
    }
    // 128-bit random serials: 16 or 17 octets.
    let serial = h.root.cert.serial_hex();
    assert!(serial.len() == 32 || serial.len() == 34, "{serial}");
}

#[test]
fn a_taken_label_stops_the_ceremony_before_any_key_is_made() {
    for b in backends() {
        let prefix = unique("taken");
        b.store
            .generate(
                &KeyRef::new(format!("{prefix}-issuing-ca")).unwrap(),
                KeySpec::EcP256,
            )
            .unwrap();
        let before = keys_with_prefix(b.store.as_ref(), &prefix);
        assert_eq!(before.len(), 1);
        let err = ceremony::run(&spec(&prefix), b.store.as_ref(), SystemTime::now()).unwrap_err();
        assert!(
            err.to_string().contains("already exists"),
            "{}: {err}",
            b.name
        );
        assert_eq!(
            keys_with_prefix(b.store.as_ref(), &prefix),
            before,
            "{}: store changed",
            b.name
        );
    }
}

/// The keys of one test (tests share a token and run in parallel).
fn keys_with_prefix(store: &dyn KeyStore, prefix: &str) -> Vec<KeyInfo> {
    let mut keys = store.list().unwrap();
    keys.retain(|k| k.key.label().starts_with(prefix));
    keys
}

/// A key store that fails its Nth key generation, to break a ceremony half-way.
#[derive(Debug)]
struct FailsOnGenerate {
    inner: Arc<dyn KeyStore>,
    fail_at: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl KeyStore for FailsOnGenerate {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn generate(&self, key: &KeyRef, spec: KeySpec) -> Result<SpkiDer, KeyStoreError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n + 1 == self.fail_at {
            return Err(KeyStoreError::Unavailable("injected failure".into()));
        }
        self.inner.generate(key, spec)
    }
    fn signer(&self, key: &KeyRef) -> Result<Arc<dyn Signer>, KeyStoreError> {
        self.inner.signer(key)
    }
    fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        self.inner.list()
    }
    fn destroy(&self, key: &KeyRef) -> Result<(), KeyStoreError> {
        self.inner.destroy(key)
    }
    fn uri(&self, key: &KeyRef) -> String {
        self.inner.uri(key)
    }
}

#[test]
fn a_ceremony_that_fails_half_way_leaves_no_orphan_keys() {
    for b in backends() {
        for fail_at in [2, 3] {
            let prefix = unique("half");
            let store = FailsOnGenerate {
                inner: b.store.clone(),
                fail_at,
                calls: 0.into(),
            };
            let err = ceremony::run(&spec(&prefix), &store, SystemTime::now()).unwrap_err();
            assert!(matches!(err, CeremonyError::KeyStore(_)), "{err}");
            assert_eq!(
                store.calls.into_inner(),
                fail_at,
                "the ceremony got as far as key {fail_at}"
            );
            let orphans = keys_with_prefix(b.store.as_ref(), &prefix);
            assert!(
                orphans.is_empty(),
                "{} fail_at {fail_at}: orphan keys {orphans:?}",
                b.name
            );
        }
    }
}

#[test]
fn an_issuer_whose_key_does_not_match_its_certificate_refuses_to_load() {
    for b in backends() {
        let h = ceremony::run(&spec(&unique("load")), b.store.as_ref(), SystemTime::now()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_pems(dir.path(), &h);
        let cfg = |id: &str, parent: Option<&str>, cert: &str, key: &str| IssuerConfig {
            id: IssuerId::new(id).unwrap(),
            parent: parent.map(|p| IssuerId::new(p).unwrap()),
            ca: KeyedCertConfig {
                certificate: cert.into(),
                key: key.into(),
            },
            ocsp: None,
        };
        let good = [
            cfg("root", None, "root.pem", &h.root.key_uri),
            cfg(
                "issuing-ca",
                Some("root"),
                "issuing.pem",
                &h.issuing[0].ca.key_uri,
            ),
        ];
        assert_eq!(
            issuer::load_all(&good, dir.path(), b.store.as_ref())
                .unwrap()
                .len(),
            2
        );

        // The issuing CA's certificate with the root's key: refused, and every problem listed.
        let bad = [
            cfg("root", None, "root.pem", &h.root.key_uri),
            cfg("issuing-ca", Some("root"), "issuing.pem", &h.root.key_uri),
            cfg("other", Some("nowhere"), "missing.pem", &h.root.key_uri),
        ];
        let problems = issuer::load_all(&bad, dir.path(), b.store.as_ref()).unwrap_err();
        let all = problems.join("\n");
        assert!(
            all.contains("issuing-ca: key") && all.contains("does not match"),
            "{}: {all}",
            b.name
        );
        assert!(all.contains("missing.pem"), "{all}");
    }
}

#[test]
fn an_issuing_ca_can_be_constrained_by_extended_key_usage() {
    let b = crate::support::embedded();
    let text = r#"
        [[issuing]]
        id = "tls-ca"
        subject = "CN=TLS CA"
        extended_key_usage = ["serverAuth", "clientAuth"]
        [[issuing]]
        id = "codesign-ca"
        subject = "CN=Code Signing CA"
        extended_key_usage = ["codeSigning"]
    "#;
    let mut spec = CeremonySpec::from_toml(text).unwrap();
    spec.key_label_prefix = format!("{}-", unique("eku"));
    let h = ceremony::run(&spec, b.store.as_ref(), SystemTime::now()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("root.pem"), h.root.cert.to_pem().unwrap()).unwrap();
    for (i, want) in [
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "Code Signing",
    ]
    .iter()
    .enumerate()
    {
        fs::write(
            dir.path().join("ca.pem"),
            h.issuing[i].ca.cert.to_pem().unwrap(),
        )
        .unwrap();
        let (ok, text) = openssl(dir.path(), &["x509", "-in", "ca.pem", "-noout", "-text"]);
        assert!(ok, "{text}");
        assert!(
            text.contains("X509v3 Extended Key Usage: \n"),
            "not critical:\n{text}"
        );
        assert!(text.contains(want), "lacks {want}:\n{text}");
        let (ok, out) = openssl(
            dir.path(),
            &["verify", "-x509_strict", "-CAfile", "root.pem", "ca.pem"],
        );
        assert!(ok, "{out}");
    }
    let Err(CeremonyError::Invalid(problems)) =
        CeremonySpec::from_toml("[[issuing]]\nextended_key_usage = [\"anyPurpose\"]\n")
    else {
        panic!("an unknown EKU was accepted")
    };
    assert!(
        problems.join(" ").contains("\"anyPurpose\""),
        "{problems:?}"
    );
}
