//! The issuance cycle against a fake ledger: the order of reserve, sign and record, and what
//! each failure leaves behind, without a database.

use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::audit::AuditRecord;
use crate::ceremony::{self, CeremonySpec};
use crate::issuer::KeyedCert;
use crate::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use crate::keystore::{KeyRef, KeySpec, KeyStore};
use crate::secret::Secret;
use crate::store::{
    Approval, AuditLog, CaRevocation, CertCounts, CertFilter, CertStatus, CertificateQueries,
    CertificateRow, CrlList, IssuanceLedger, RequestFilter, Revocation, RevocationLedger,
    SerialStatus,
};

const DAY: Duration = Duration::from_secs(86_400);

const PROFILE: &str = r#"
version = 1
issuer = "issuing-ca"
[validity]
max_days = 30
[keys]
allowed = ["p256"]
[names]
max_sans = 0
[subject]
from_csr = ["CN"]
[usage]
key_usage = ["digitalSignature"]
extended_key_usage = ["clientAuth"]
"#;

/// What the issuance cycle writes, in order, and switches to make a write fail.
#[derive(Debug, Default)]
struct FakeLedger {
    log: Mutex<Vec<String>>,
    rows: Mutex<Vec<CertificateRow>>,
    refuse_reserve: Mutex<bool>,
    refuse_complete: Mutex<bool>,
}

impl FakeLedger {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn note(&self, what: &str, event: &AuditEvent) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{what} {}", event.action.as_str()));
    }

    fn status(&self, serial: &Serial) -> Option<CertStatus> {
        let rows = self.rows.lock().unwrap();
        rows.iter().find(|r| &r.serial == serial).map(|r| r.status)
    }
}

fn not_here<T>() -> Result<T, StoreError> {
    Err(StoreError::Database(
        "not part of the issuance ledger".into(),
    ))
}
impl AuditLog for FakeLedger {
    fn audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        for e in events {
            self.note("audit", e);
        }
        Ok(())
    }

    fn audit_entries(&self, _: i64, _: i64) -> Result<Vec<AuditRecord>, StoreError> {
        not_here()
    }

    fn audit_head(&self) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        not_here()
    }

    fn add_checkpoint(
        &self,
        _: &crate::audit::Checkpoint,
        _: &AuditEvent,
    ) -> Result<(), StoreError> {
        not_here()
    }

    fn checkpoints(&self) -> Result<Vec<crate::audit::Checkpoint>, StoreError> {
        not_here()
    }
}

impl IssuanceLedger for FakeLedger {
    fn ensure_issuer(&self, _: &IssuerId, _: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }

    fn reserve(&self, cert: &NewCertificate, event: &AuditEvent) -> Result<(), StoreError> {
        if *self.refuse_reserve.lock().unwrap() {
            return Err(StoreError::Database("disk full".into()));
        }
        self.note("reserve", event);
        self.rows.lock().unwrap().push(CertificateRow {
            serial: cert.serial.clone(),
            issuer: cert.issuer.as_str().to_owned(),
            profile: cert.profile.clone(),
            requester: cert.requester.clone(),
            subject: cert.subject.clone(),
            sans: cert.sans.clone(),
            not_before: cert.not_before,
            not_after: cert.not_after,
            status: CertStatus::Reserved,
            der: None,
            created_at: cert.not_before,
            request_id: cert.request_id,
            failure: None,
        });
        Ok(())
    }

    fn complete(&self, serial: &Serial, der: &[u8], event: &AuditEvent) -> Result<(), StoreError> {
        if *self.refuse_complete.lock().unwrap() {
            return Err(StoreError::Database("connection lost".into()));
        }
        self.note("complete", event);
        let mut rows = self.rows.lock().unwrap();
        let row = rows
            .iter_mut()
            .find(|r| &r.serial == serial && r.status == CertStatus::Reserved)
            .ok_or_else(|| StoreError::Conflict(format!("{serial} is not reserved")))?;
        row.status = CertStatus::Valid;
        row.der = Some(der.to_vec());
        Ok(())
    }

    fn fail(&self, serial: &Serial, reason: &str, event: &AuditEvent) -> Result<(), StoreError> {
        self.note("fail", event);
        let mut rows = self.rows.lock().unwrap();
        let row = rows
            .iter_mut()
            .find(|r| &r.serial == serial && r.status == CertStatus::Reserved)
            .ok_or_else(|| StoreError::Conflict(format!("{serial} is not reserved")))?;
        row.status = CertStatus::Failed;
        row.failure = Some(reason.to_owned());
        Ok(())
    }

    fn reserved(&self) -> Result<Vec<CertificateRow>, StoreError> {
        let rows = self.rows.lock().unwrap();
        Ok(rows
            .iter()
            .filter(|r| r.status == CertStatus::Reserved)
            .cloned()
            .collect())
    }

    fn create_request(&self, _: &NewRequest, event: &AuditEvent) -> Result<i64, StoreError> {
        self.note("create_request", event);
        Ok(1)
    }

    fn approve(
        &self,
        _: i64,
        _: &Approval,
        _: SystemTime,
        _: &AuditEvent,
    ) -> Result<RequestRow, StoreError> {
        not_here()
    }

    fn account(&self, name: &str) -> Result<Option<crate::users::User>, StoreError> {
        // Every name is an officer since the epoch: these tests are about issuance, not
        // about who counts (crate::approval's tests are).
        Ok(Some(crate::users::User {
            name: name.into(),
            roles: vec![crate::users::Role::Officer],
            disabled: false,
            must_change_password: false,
            failed_logins: 0,
            locked_until: None,
            created_at: SystemTime::UNIX_EPOCH,
            created_by: "test".into(),
            officer_since: Some(SystemTime::UNIX_EPOCH),
            credentials_reset_at: None,
        }))
    }

    fn reject(&self, _: i64, _: &str, _: &str, _: &AuditEvent) -> Result<(), StoreError> {
        not_here()
    }

    fn fail_request(&self, _: i64, _: &str, _: &AuditEvent) -> Result<(), StoreError> {
        not_here()
    }
}

impl CertificateQueries for FakeLedger {
    fn certificate(&self, _: &Serial) -> Result<Option<CertificateRow>, StoreError> {
        not_here()
    }

    fn certificates(&self, _: &CertFilter) -> Result<Vec<CertificateRow>, StoreError> {
        not_here()
    }

    fn counts(&self, _: Option<&str>, _: SystemTime) -> Result<CertCounts, StoreError> {
        not_here()
    }

    fn issued_per_day(
        &self,
        _: SystemTime,
        _: Option<&str>,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        not_here()
    }

    fn request(&self, _: i64) -> Result<Option<RequestRow>, StoreError> {
        not_here()
    }

    fn requests(&self, _: &RequestFilter) -> Result<Vec<RequestRow>, StoreError> {
        not_here()
    }
}

impl RevocationLedger for FakeLedger {
    fn revoke(&self, _: &Revocation, _: &AuditEvent) -> Result<(), StoreError> {
        not_here()
    }

    fn crl_entries(&self, _: &IssuerId, _: SystemTime) -> Result<CrlList, StoreError> {
        not_here()
    }

    fn revoke_ca(&self, _: &CaRevocation, _: &AuditEvent) -> Result<(), StoreError> {
        not_here()
    }

    fn ca_revocations(&self) -> Result<Vec<CaRevocation>, StoreError> {
        not_here()
    }

    fn revoked_since(&self, _: SystemTime) -> Result<Vec<(IssuerId, Serial)>, StoreError> {
        not_here()
    }

    fn revocation_status(
        &self,
        _: &IssuerId,
        _: &Serial,
    ) -> Result<Option<SerialStatus>, StoreError> {
        not_here()
    }

    fn ca_revocation(&self, _: &IssuerId, _: &Serial) -> Result<Option<CaRevocation>, StoreError> {
        not_here()
    }

    fn next_crl_number(&self, _: &IssuerId, _: SystemTime) -> Result<u64, StoreError> {
        not_here()
    }

    fn numbered_crl_entries(
        &self,
        _: &IssuerId,
        _: SystemTime,
    ) -> Result<(u64, CrlList), StoreError> {
        not_here()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    ca: Ca,
    ledger: Arc<FakeLedger>,
    csr: Vec<u8>,
    issuing_key: SpkiDer,
    now: SystemTime,
}

/// A root and an issuing CA in a throwaway embedded token, the profile above, and a CSR
/// for CN=alice signed by a fresh P-256 key.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys: Arc<dyn KeyStore> = Arc::new(
        EmbeddedKeyStore::create(
            &dir.path().join("token"),
            &Secret::new("unit test passphrase".into()),
            KdfParams::insecure_for_tests(),
        )
        .unwrap(),
    );
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let h = ceremony::run(&CeremonySpec::default(), keys.as_ref(), now - DAY).unwrap();
    let keyed = |m: &ceremony::CaMaterial| KeyedCert {
        cert: m.cert.clone(),
        signer: keys.signer(&m.key).unwrap(),
    };
    let root_id = IssuerId::new("root").unwrap();
    let issuers = vec![
        Issuer {
            id: root_id.clone(),
            parent: None,
            ca: keyed(&h.root),
            ocsp: None,
        },
        Issuer {
            id: h.issuing[0].id.clone(),
            parent: Some(root_id),
            ca: keyed(&h.issuing[0].ca),
            ocsp: None,
        },
    ];
    let issuing_key = issuers[1].ca.signer.public_key().clone();
    let profile = Profile::parse("client", Path::new("client.toml"), PROFILE).unwrap();
    let ledger = Arc::new(FakeLedger::default());
    let ca = Ca::new(issuers, vec![profile], ledger.clone(), "https://ca.test").unwrap();
    let subject_key = KeyRef::new("alice").unwrap();
    keys.generate(&subject_key, KeySpec::EcP256).unwrap();
    let csr = crate::codesign::build_csr(
        x509::parse_name("CN=alice").unwrap(),
        keys.signer(&subject_key).unwrap().as_ref(),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        ca,
        ledger,
        csr,
        issuing_key,
        now,
    }
}

fn submit(f: &Fixture, profile: &str) -> Result<Outcome, IssueError> {
    let requester = Requester {
        name: "alice".into(),
        roles: vec!["requester".into()],
    };
    f.ca.submit(
        &Submission {
            profile,
            csr: &f.csr,
            requester: &requester,
            channel: Channel::Api,
            source: "test",
        },
        f.now,
    )
}

#[test]
fn the_cycle_reserves_with_its_audit_entry_then_signs_then_records() {
    let f = fixture();
    let Outcome::Issued(issued) = submit(&f, "client").unwrap() else {
        panic!("not issued")
    };
    assert_eq!(
        f.ledger.log(),
        ["reserve issuance.started", "complete certificate.issued"]
    );
    assert_eq!(f.ledger.status(&issued.serial), Some(CertStatus::Valid));
    x509::verify_signed_by(&issued.cert, &f.issuing_key).unwrap();
    assert_eq!(issued.chain.len(), 1, "the issuing CA, not the root");
}

#[test]
fn a_failed_reservation_signs_nothing() {
    let f = fixture();
    *f.ledger.refuse_reserve.lock().unwrap() = true;
    let err = submit(&f, "client").unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(f.ledger.log().is_empty());
    assert!(f.ledger.rows.lock().unwrap().is_empty());
}

#[test]
fn a_failed_recording_burns_the_serial_and_returns_no_certificate() {
    let f = fixture();
    *f.ledger.refuse_complete.lock().unwrap() = true;
    let err = submit(&f, "client").unwrap_err();
    assert!(err.to_string().contains("connection lost"), "{err}");
    assert_eq!(
        f.ledger.log(),
        ["reserve issuance.started", "fail issuance.failed"]
    );
    let rows = f.ledger.rows.lock().unwrap();
    assert_eq!(rows[0].status, CertStatus::Failed);
    assert!(rows[0].der.is_none());
}

#[test]
fn a_refusal_is_audited_and_reserves_nothing() {
    let f = fixture();
    let requester = Requester {
        name: "mallory".into(),
        roles: vec!["auditor".into()],
    };
    let out =
        f.ca.submit(
            &Submission {
                profile: "client",
                csr: &f.csr,
                requester: &requester,
                channel: Channel::Api,
                source: "test",
            },
            f.now,
        )
        .unwrap();
    assert!(matches!(out, Outcome::Rejected(_)), "{out:?}");
    assert_eq!(f.ledger.log(), ["audit request.refused"]);
    assert!(f.ledger.rows.lock().unwrap().is_empty());
}

#[test]
fn recovery_closes_only_reservations_older_than_the_signing_margin() {
    let f = fixture();
    *f.ledger.refuse_complete.lock().unwrap() = true;
    // Two reservations left behind, as by a process that died while signing: one now, one
    // long ago.
    for created_at in [f.now, f.now - ABANDONED_AFTER - Duration::from_secs(1)] {
        let serial = Serial::from_bytes(x509::random_serial().unwrap().as_bytes());
        f.ledger.rows.lock().unwrap().push(CertificateRow {
            serial,
            issuer: "issuing-ca".into(),
            profile: "client".into(),
            requester: "alice".into(),
            subject: "CN=alice".into(),
            sans: String::new(),
            not_before: created_at,
            not_after: created_at + DAY,
            status: CertStatus::Reserved,
            der: None,
            created_at,
            request_id: None,
            failure: None,
        });
    }
    assert_eq!(f.ca.recover(f.now).unwrap(), 1);
    assert_eq!(f.ledger.log(), ["fail issuance.abandoned"]);
    assert_eq!(f.ledger.reserved().unwrap().len(), 1);
}

#[test]
fn an_unknown_profile_is_refused_before_anything_is_written() {
    let f = fixture();
    let err = submit(&f, "nope").unwrap_err();
    assert!(matches!(err, IssueError::UnknownProfile { .. }), "{err}");
    assert!(f.ledger.log().is_empty());
}

/// A key whose store says it is down (every HSM member out).
#[derive(Debug)]
struct DownSigner(Arc<dyn crate::keystore::Signer>);

impl crate::keystore::Signer for DownSigner {
    fn algorithm(&self) -> crate::keystore::SigAlg {
        self.0.algorithm()
    }

    fn public_key(&self) -> &SpkiDer {
        self.0.public_key()
    }

    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, crate::keystore::KeyStoreError> {
        panic!("a key store known to be down was asked to sign")
    }

    fn ready(&self) -> Result<(), crate::keystore::KeyStoreError> {
        Err(crate::keystore::KeyStoreError::Unavailable(
            "no hsm member of token \"ca\" is in service".into(),
        ))
    }
}

#[test]
fn a_key_store_known_down_is_refused_before_anything_is_written() {
    let f = fixture();
    let mut issuers = f.ca.issuers().to_vec();
    issuers[1].ca.signer = Arc::new(DownSigner(issuers[1].ca.signer.clone()));
    let ca = Ca::new(
        issuers,
        f.ca.profiles().to_vec(),
        f.ledger.clone(),
        "https://ca.test",
    )
    .unwrap();
    let f = Fixture { ca, ..f };
    let err = submit(&f, "client").unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("no hsm member"), "{err}");
    assert!(f.ledger.log().is_empty(), "{:?}", f.ledger.log());
    assert!(f.ledger.rows.lock().unwrap().is_empty());
}
