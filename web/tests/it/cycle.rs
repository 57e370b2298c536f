//! The issuance cycle through ca-core and the db crate, with a real key store and a real
//! database (SQLite, and PostgreSQL when `KEYHOLD_TEST_DATABASE_URL` is set, which `.ci/test`
//! does), and CSRs made by openssl.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ca_core::audit;
use ca_core::ceremony::{self, CeremonySpec, Hierarchy};
use ca_core::issuance::{Ca, Channel, IssueError, Outcome, Submission};
use ca_core::issuer::{Issuer, IssuerId, KeyedCert};
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::{KeyStore, KeyStoreError, SigAlg, Signer, SpkiDer};
use ca_core::policy::{self, Requester};
use ca_core::secret::Secret;
use ca_core::store::{CertFilter, CertStatus, NewCertificate, Serial, Store};
use ca_core::x509::{self, CertTemplate, SignedCert};

use crate::dbs::{self as support, Database};

struct Fixture {
    _dir: tempfile::TempDir,
    keys: Arc<dyn KeyStore>,
    hierarchy: Hierarchy,
    db: Database,
}

fn fixture(db: Database) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys: Arc<dyn KeyStore> = Arc::new(
        EmbeddedKeyStore::create(
            &dir.path().join("token"),
            &Secret::new("issuance test passphrase".into()),
            KdfParams::insecure_for_tests(),
        )
        .unwrap(),
    );
    let hierarchy =
        ceremony::run(&CeremonySpec::default(), keys.as_ref(), SystemTime::now()).unwrap();
    Fixture {
        _dir: dir,
        keys,
        hierarchy,
        db,
    }
}

impl Fixture {
    fn issuers(&self) -> Vec<Issuer> {
        let h = &self.hierarchy;
        let keyed = |m: &ceremony::CaMaterial| KeyedCert {
            cert: m.cert.clone(),
            signer: self.keys.signer(&m.key).unwrap(),
        };
        let mut issuers = vec![Issuer {
            id: IssuerId::new("root").unwrap(),
            parent: None,
            ca: keyed(&h.root),
            ocsp: None,
        }];
        for i in &h.issuing {
            issuers.push(Issuer {
                id: i.id.clone(),
                parent: Some(IssuerId::new("root").unwrap()),
                ca: keyed(&i.ca),
                ocsp: Some(keyed(&i.ocsp)),
            });
        }
        issuers
    }

    fn ca_with(&self, issuers: Vec<Issuer>) -> Ca {
        let profiles =
            policy::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")).unwrap();
        Ca::new(issuers, profiles, self.db.store.clone(), "http://pki.test").unwrap()
    }

    fn ca(&self) -> Ca {
        self.ca_with(self.issuers())
    }
}

fn requester() -> Requester {
    Requester {
        name: "svc-deployer".into(),
        roles: vec!["requester".into()],
    }
}

fn csr(cn: &str, sans: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.path().join("k.pem"))
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-addext")
        .arg(format!("subjectAltName={sans}"))
        .output()
        .expect("openssl must be installed (.ci/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn submit(ca: &Ca, csr: &[u8]) -> Result<Outcome, IssueError> {
    ca.submit(
        &Submission {
            profile: "tls-server",
            csr,
            requester: &requester(),
            source: "test",
            channel: Channel::Api,
        },
        SystemTime::now(),
    )
}

fn issued(outcome: Outcome) -> ca_core::issuance::Issued {
    match outcome {
        Outcome::Issued(i) => *i,
        other => panic!("expected a certificate, got {other:?}"),
    }
}

fn audit_ok(store: &dyn Store) -> Vec<audit::AuditRecord> {
    let head = store.audit_head().unwrap().map_or(0, |(s, _)| s);
    let entries = store.audit_entries(1, head).unwrap();
    let dummy = SpkiDer::from_der_unchecked(Vec::new());
    let report = audit::verify(&entries, &[], SigAlg::EcdsaP256Sha256, &dummy);
    assert!(report.ok(), "{:?}", report.first_problem);
    entries
}

#[test]
fn a_certificate_is_recorded_and_audited_before_it_is_returned() {
    for db in support::databases() {
        let f = fixture(db);
        let ca = f.ca();
        let csr = csr("web.internal", "DNS:web.internal");
        let i = issued(submit(&ca, &csr).unwrap());
        let issuing = &ca.issuers()[1];
        x509::verify_signed_by(&i.cert, issuing.ca.signer.public_key()).unwrap();
        assert_eq!(i.chain.len(), 1);

        let row = f.db.store.certificate(&i.serial).unwrap().unwrap();
        assert_eq!(row.status, CertStatus::Valid, "{}", f.db.name);
        assert_eq!(row.der.as_deref(), Some(i.cert.der.as_slice()));
        assert_eq!(row.profile, "tls-server");
        assert_eq!(row.requester, "svc-deployer");
        assert!(row.sans.contains("DNS:web.internal"));

        let entries = audit_ok(f.db.store.as_ref());
        let object = format!("certificate:{}", i.serial);
        let actions: Vec<&str> = entries
            .iter()
            .filter(|e| e.object == object)
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(
            actions,
            ["issuance.started", "certificate.issued"],
            "{}",
            f.db.name
        );
    }
}

#[test]
fn concurrent_issuance_keeps_serials_unique_and_the_chain_intact() {
    for db in support::databases() {
        let f = fixture(db);
        let ca = Arc::new(f.ca());
        let csr = Arc::new(csr("api.internal", "DNS:api.internal"));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let ca = ca.clone();
                let csr = csr.clone();
                std::thread::spawn(move || {
                    (0..5)
                        .map(|_| issued(submit(&ca, &csr).unwrap()).serial)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut serials: Vec<Serial> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), 80, "{}", f.db.name);
        let rows =
            f.db.store
                .certificates(&CertFilter {
                    status: Some(CertStatus::Valid),
                    limit: 1000,
                    ..CertFilter::default()
                })
                .unwrap();
        assert_eq!(rows.len(), 80, "{}", f.db.name);
        audit_ok(f.db.store.as_ref());
    }
}

/// A key store that has lost its key: the public half is known, signing fails.
#[derive(Debug)]
struct BrokenSigner(SpkiDer);

impl Signer for BrokenSigner {
    fn algorithm(&self) -> SigAlg {
        SigAlg::EcdsaP384Sha384
    }
    fn public_key(&self) -> &SpkiDer {
        &self.0
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        Err(KeyStoreError::Unavailable("the HSM went away".into()))
    }
}

#[test]
fn a_signing_failure_burns_the_serial_and_is_audited() {
    for db in support::databases() {
        let f = fixture(db);
        let mut issuers = f.issuers();
        let real = issuers[1].ca.signer.public_key().clone();
        issuers[1].ca.signer = Arc::new(BrokenSigner(real));
        let ca = f.ca_with(issuers);
        let err = submit(&ca, &csr("web.internal", "DNS:web.internal")).unwrap_err();
        assert!(err.to_string().contains("the HSM went away"), "{err}");
        let failed =
            f.db.store
                .certificates(&CertFilter {
                    status: Some(CertStatus::Failed),
                    limit: 10,
                    ..CertFilter::default()
                })
                .unwrap();
        assert_eq!(failed.len(), 1, "{}", f.db.name);
        assert!(failed[0].der.is_none());
        assert!(
            failed[0]
                .failure
                .as_deref()
                .unwrap()
                .contains("the HSM went away")
        );
        let entries = audit_ok(f.db.store.as_ref());
        assert_eq!(entries.last().unwrap().action, "issuance.failed");
    }
}

#[test]
fn reservations_left_by_a_dead_process_are_closed_but_fresh_ones_are_not() {
    for db in support::databases() {
        let f = fixture(db);
        let ca = f.ca();
        let now = SystemTime::now();
        let serial = Serial::parse("7f00000000000000000000000000abcd").unwrap();
        let reservation = NewCertificate {
            serial: serial.clone(),
            issuer: IssuerId::new("issuing-ca").unwrap(),
            profile: "tls-server".into(),
            requester: "svc".into(),
            subject: "CN=x.internal".into(),
            sans: "DNS:x.internal".into(),
            not_before: now,
            not_after: now + Duration::from_secs(86_400),
            request_id: None,
        };
        let event = audit::AuditEvent::new(
            audit::Action::IssuanceStarted,
            "svc",
            "test",
            format!("certificate:{serial}"),
        );
        f.db.store.reserve(&reservation, &event).unwrap();
        // Another process may still be signing a fresh reservation.
        assert_eq!(ca.recover(now).unwrap(), 0);
        assert_eq!(
            ca.recover(now + Duration::from_secs(600)).unwrap(),
            1,
            "{}",
            f.db.name
        );
        let row = f.db.store.certificate(&serial).unwrap().unwrap();
        assert_eq!(row.status, CertStatus::Failed);
        assert_eq!(ca.recover(now + Duration::from_secs(600)).unwrap(), 0);
        // The serial is burnt: reserving it again is a conflict.
        assert!(f.db.store.reserve(&reservation, &event).is_err());
        assert_eq!(
            audit_ok(f.db.store.as_ref()).last().unwrap().action,
            "issuance.abandoned"
        );
    }
}

#[test]
fn the_issuers_name_constraints_narrow_every_profile() {
    use der::asn1::Ia5String;
    use x509_cert::ext::pkix::constraints::name::{GeneralSubtree, NameConstraints};
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

    let f = fixture(support::sqlite());
    let mut issuers = f.issuers();
    let root_signer = issuers[0].ca.signer.clone();
    let issuing = &issuers[1];
    let key = issuing.ca.signer.public_key().clone();
    let constrained = x509::sign_certificate(
        CertTemplate {
            serial: x509::random_serial().unwrap(),
            issuer: issuers[0].ca.cert.cert.tbs_certificate().subject().clone(),
            subject: issuing.ca.cert.cert.tbs_certificate().subject().clone(),
            not_before: SystemTime::now() - Duration::from_secs(60),
            not_after: SystemTime::now() + Duration::from_secs(86_400 * 365),
            public_key: key.clone(),
            extensions: vec![
                x509::to_ext(
                    true,
                    &BasicConstraints {
                        ca: true,
                        path_len_constraint: Some(0),
                    },
                )
                .unwrap(),
                x509::to_ext(true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)).unwrap(),
                x509::ski_extension(&key).unwrap(),
                x509::aki_extension(root_signer.public_key()).unwrap(),
                x509::to_ext(
                    true,
                    &NameConstraints {
                        permitted_subtrees: Some(vec![GeneralSubtree {
                            base: GeneralName::DnsName(Ia5String::new("svc.internal").unwrap()),
                            minimum: 0,
                            maximum: None,
                        }]),
                        excluded_subtrees: Some(vec![GeneralSubtree {
                            base: GeneralName::DnsName(
                                Ia5String::new("secret.svc.internal").unwrap(),
                            ),
                            minimum: 0,
                            maximum: None,
                        }]),
                    },
                )
                .unwrap(),
            ],
        },
        root_signer.as_ref(),
    )
    .unwrap();
    issuers[1].ca.cert = SignedCert::from_der(&constrained.der).unwrap();
    let ca = f.ca_with(issuers);

    // Allowed by tls-server (.internal), outside the issuer's constraints.
    match submit(&ca, &csr("web.internal", "DNS:web.internal")).unwrap() {
        Outcome::Rejected(why) => assert!(
            why.iter()
                .any(|w| w.contains("outside the name constraints of issuer issuing-ca")),
            "{why:?}"
        ),
        other => panic!("{other:?}"),
    }
    match submit(
        &ca,
        &csr("a.secret.svc.internal", "DNS:a.secret.svc.internal"),
    )
    .unwrap()
    {
        Outcome::Rejected(why) => assert!(why.iter().any(|w| w.contains("excluded")), "{why:?}"),
        other => panic!("{other:?}"),
    }
    issued(submit(&ca, &csr("db.svc.internal", "DNS:db.svc.internal")).unwrap());

    // The server's own HTTPS certificate skips the profile's allowed names, never the
    // issuer's constraints: `localhost` is refused (and the refusal audited), a name inside
    // them is issued, recorded and audited as the server's.
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    use ca_core::policy::San;
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let spki = SpkiDer::from_der_unchecked(key.public_key().as_der().unwrap().as_ref().to_vec());
    let day = Duration::from_secs(86_400);
    let own = |names: &[San]| {
        ca.issue_own_server_cert(
            "tls-server",
            &spki,
            names,
            30 * day,
            "startup",
            SystemTime::now(),
        )
    };
    match own(&[San::Dns("localhost".into())]) {
        Err(IssueError::Forbidden(why)) => {
            assert!(why.contains("outside the name constraints"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    let log = audit_ok(f.db.store.as_ref());
    let refused = log.last().unwrap();
    assert_eq!(
        (refused.action.as_str(), refused.actor.as_str()),
        ("request.refused", "keyhold-server")
    );
    let cert = own(&[
        San::Dns("ca.svc.internal".into()),
        San::Ip("127.0.0.1".parse().unwrap()),
    ])
    .unwrap();
    let row = f.db.store.certificate(&cert.serial).unwrap().unwrap();
    assert_eq!(row.requester, "keyhold-server");
    assert_eq!(row.status, CertStatus::Valid);
    let log = audit_ok(f.db.store.as_ref());
    let issued_event = log.last().unwrap();
    assert_eq!(
        (issued_event.action.as_str(), issued_event.actor.as_str()),
        ("certificate.issued", "keyhold-server")
    );
}
