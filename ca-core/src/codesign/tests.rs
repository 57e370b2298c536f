use std::path::Path;
use std::sync::Mutex;

use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};

use super::*;
use crate::ceremony::{self, CeremonySpec};
use crate::cms::DigestAlg;
use crate::issuer::{IssuerId, KeyedCert};
use crate::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use crate::secret::Secret;
use crate::store::CertificateRow;

const DAY: Duration = Duration::from_secs(86_400);

/// An in-memory [`CodesignStore`] holding one certificate.
#[derive(Debug, Default)]
struct FakeStore {
    keys: Mutex<HashMap<KeyRef, CodesignKeyRow>>,
    cert: Mutex<Option<CertificateRow>>,
    signatures: Mutex<Vec<NewSignature>>,
    events: Mutex<Vec<AuditEvent>>,
    fail_record: Mutex<Option<StoreError>>,
    bound: Mutex<Vec<(KeyRef, String)>>,
}

impl CodesignStore for FakeStore {
    fn add_codesign_key(&self, key: &NewCodesignKey, event: &AuditEvent) -> Result<(), StoreError> {
        let row = CodesignKeyRow {
            key: key.key.clone(),
            owner: key.owner.clone(),
            owner_kind: key.owner_kind,
            profile: key.profile.clone(),
            spec: key.spec,
            public_key: key.public_key.clone(),
            request_id: None,
            serial: None,
            retired: None,
            created_at: key.created_at,
        };
        self.keys.lock().unwrap().insert(key.key.clone(), row);
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }

    fn bind_codesign_key(
        &self,
        key: &KeyRef,
        binding: &KeyBinding,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut keys = self.keys.lock().unwrap();
        let row = keys
            .get_mut(key)
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        match binding {
            KeyBinding::Request(id) => row.request_id = Some(*id),
            KeyBinding::Certificate(s) => row.serial = Some(s.clone()),
            KeyBinding::Retired(r) => row.retired = Some(r.clone()),
        }
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }

    fn codesign_key(&self, key: &KeyRef) -> Result<Option<CodesignKeyRow>, StoreError> {
        Ok(self.keys.lock().unwrap().get(key).cloned())
    }

    fn bind_codesign_token(
        &self,
        key: &KeyRef,
        token: &str,
        _by: &str,
        _at: SystemTime,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut bound = self.bound.lock().unwrap();
        if bound.iter().any(|(k, t)| k == key && t == token) {
            return Err(StoreError::Conflict("bound already".into()));
        }
        bound.push((key.clone(), token.to_owned()));
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }

    fn unbind_codesign_token(
        &self,
        key: &KeyRef,
        token: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut bound = self.bound.lock().unwrap();
        let before = bound.len();
        bound.retain(|(k, t)| !(k == key && t == token));
        if bound.len() == before {
            return Err(StoreError::NotFound(format!("binding of {token}")));
        }
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }

    fn codesign_token_bound(
        &self,
        key: &KeyRef,
        caller: &str,
        _now: SystemTime,
    ) -> Result<bool, StoreError> {
        Ok(self
            .bound
            .lock()
            .unwrap()
            .iter()
            .any(|(k, t)| k == key && t == caller))
    }

    fn codesign_bindings(&self, key: &KeyRef) -> Result<Vec<String>, StoreError> {
        Ok(self
            .bound
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, t)| t.clone())
            .collect())
    }

    fn codesign_certificate(&self, key: &KeyRef) -> Result<Option<CertificateRow>, StoreError> {
        let bound = self
            .keys
            .lock()
            .unwrap()
            .get(key)
            .and_then(|k| k.serial.clone());
        Ok(self
            .cert
            .lock()
            .unwrap()
            .clone()
            .filter(|c| Some(&c.serial) == bound.as_ref()))
    }

    fn codesign_signature_count(&self, key: &KeyRef, since: SystemTime) -> Result<u64, StoreError> {
        Ok(self
            .signatures
            .lock()
            .unwrap()
            .iter()
            .filter(|s| &s.key == key && s.at >= since)
            .count() as u64)
    }

    fn record_codesign_signature(
        &self,
        signature: &NewSignature,
        windows: &[SigningWindow],
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        if let Some(e) = self.fail_record.lock().unwrap().take() {
            return Err(e);
        }
        for w in windows {
            if self.codesign_signature_count(&signature.key, w.since)? >= w.max {
                return Err(StoreError::Conflict(limit_reached(&signature.key, w)));
            }
        }
        self.signatures.lock().unwrap().push(signature.clone());
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }

    fn codesign_signatures(
        &self,
        key: &KeyRef,
        limit: u32,
    ) -> Result<Vec<SignatureRow>, StoreError> {
        let all = self.signatures.lock().unwrap();
        Ok(all
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, s)| &s.key == key)
            .take(limit as usize)
            .map(|(i, s)| SignatureRow {
                id: i as i64 + 1,
                signature: s.clone(),
            })
            .collect())
    }
}

struct Fixture {
    codesign: Codesign,
    store: Arc<FakeStore>,
    key: KeyRef,
    now: SystemTime,
    _dir: tempfile::TempDir,
}

const PROFILE: &str = r#"
version = 1
issuer = "issuing-ca"
[validity]
max_days = 365
[keys]
allowed = ["p256", "p384"]
[names]
max_sans = 0
[subject]
from_csr = ["CN"]
[usage]
key_usage = ["digitalSignature"]
extended_key_usage = ["codeSigning"]
[approval]
approvals = 2
[codesign]
max_signatures_per_minute = 3
max_signatures_per_day = 5
"#;

/// An embedded key store with a CA, a P-256 key owned by carol, and a code-signing
/// certificate for it valid from `now` for a year.
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
    let profile = Profile::parse("code-signing", Path::new("code-signing.toml"), PROFILE).unwrap();

    let key = KeyRef::new("cs-carol").unwrap();
    let public_key = keys.generate(&key, KeySpec::EcP256).unwrap();
    let issuing = &issuers[1].ca;
    let template = x509::CertTemplate {
        serial: x509::random_serial().unwrap(),
        issuer: issuing.cert.cert.tbs_certificate().subject().clone(),
        subject: x509::parse_name("CN=carol release signing").unwrap(),
        not_before: now,
        not_after: now + 365 * DAY,
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
        ],
    };
    let cert = x509::sign_certificate(template, issuing.signer.as_ref()).unwrap();
    let serial = Serial::from_bytes(cert.cert.tbs_certificate().serial_number().as_bytes());

    let store = Arc::new(FakeStore::default());
    store.keys.lock().unwrap().insert(
        key.clone(),
        CodesignKeyRow {
            key: key.clone(),
            owner: "carol".into(),
            owner_kind: OwnerKind::User,
            profile: "code-signing".into(),
            spec: KeySpec::EcP256,
            public_key,
            request_id: Some(1),
            serial: Some(serial.clone()),
            retired: None,
            created_at: now,
        },
    );
    *store.cert.lock().unwrap() = Some(CertificateRow {
        serial,
        issuer: "issuing-ca".into(),
        profile: "code-signing".into(),
        requester: "carol".into(),
        subject: "CN=carol release signing".into(),
        sans: String::new(),
        not_before: now,
        not_after: now + 365 * DAY,
        status: CertStatus::Valid,
        der: Some(cert.der.clone()),
        created_at: now,
        request_id: Some(1),
        failure: None,
    });
    let codesign = Codesign::new(keys, store.clone(), vec![profile], issuers);
    Fixture {
        codesign,
        store,
        key,
        now,
        _dir: dir,
    }
}

fn digest() -> Digest {
    DigestAlg::Sha256
        .hash_reader(&b"release-1.2.tar.gz"[..])
        .unwrap()
}

fn sign_as(f: &Fixture, caller: &str, at: SystemTime) -> Result<Signature, CodesignError> {
    f.codesign.sign(
        &SignRequest {
            caller: Principal::user(caller),
            key: f.key.label(),
            digest: &digest(),
            source: "127.0.0.1",
        },
        at,
    )
}

fn nothing_recorded(f: &Fixture) {
    assert!(f.store.signatures.lock().unwrap().is_empty());
    assert!(f.store.events.lock().unwrap().is_empty());
}

#[test]
fn signs_for_the_owner_and_audits_digest_key_caller_and_time() {
    let f = fixture();
    let at = f.now + Duration::from_secs(5);
    let sig = sign_as(&f, "carol", at).unwrap();
    let info = cms::inspect(sig.cms.as_der()).unwrap();
    assert_eq!(info.message_digest, digest().as_bytes());
    assert_eq!(info.certificates, 2, "signer and issuing CA, not the root");

    let events = f.store.events.lock().unwrap();
    let [event] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(event.action.as_str(), "codesign.signed");
    assert_eq!(event.actor, "carol");
    assert_eq!(event.object, "key:embedded:cs-carol");
    let detail = |k: &str| {
        event
            .details
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(detail("digest"), digest().to_hex());
    assert_eq!(detail("digest_algorithm"), "sha256");
    assert_eq!(detail("certificate"), sig.serial.as_str());
    assert_eq!(detail("signing_time"), "2027-01-15T08:00:05Z");

    let history = f
        .codesign
        .history(Principal::user("carol"), "cs-carol", 10)
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].signature.at, at);
    assert!(matches!(
        f.codesign
            .history(Principal::user("mallory"), "cs-carol", 10),
        Err(CodesignError::Forbidden(_))
    ));
}

#[test]
fn a_token_named_like_the_owner_is_not_the_owner() {
    let f = fixture();
    let sign = |caller| {
        f.codesign.sign(
            &SignRequest {
                caller,
                key: f.key.label(),
                digest: &digest(),
                source: "127.0.0.1",
            },
            f.now,
        )
    };
    let err = sign(Principal::token("carol")).unwrap_err();
    assert!(matches!(err, CodesignError::Forbidden(_)), "{err}");
    assert!(
        err.to_string().starts_with("API token carol may not sign"),
        "{err}"
    );
    // Nor can anyone but the owner bind a token to the key: not an administrator, not a
    // token named like the owner.
    for actor in [Principal::user("root"), Principal::token("carol")] {
        let err = f
            .codesign
            .bind_token("cs-carol", "ci", actor, "test", f.now)
            .unwrap_err();
        assert!(matches!(err, CodesignError::Forbidden(_)), "{err}");
    }
    f.codesign
        .bind_token("cs-carol", "ci", Principal::user("carol"), "test", f.now)
        .unwrap();
    assert!(sign(Principal::user("carol")).is_ok());
}

#[test]
fn refuses_a_caller_who_is_not_the_owner() {
    let f = fixture();
    let err = sign_as(&f, "mallory", f.now).unwrap_err();
    assert!(matches!(err, CodesignError::Forbidden(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "mallory may not sign with key cs-carol: only its owner, and API tokens its owner bound \
         to it, may"
    );
    assert_eq!(err.kind(), ErrorKind::Rejected);
    nothing_recorded(&f);
}

#[test]
fn refuses_an_unknown_or_malformed_key() {
    let f = fixture();
    for label in ["cs-nobody", "../etc/passwd"] {
        let err = f
            .codesign
            .sign(
                &SignRequest {
                    caller: Principal::user("carol"),
                    key: label,
                    digest: &digest(),
                    source: "cli",
                },
                f.now,
            )
            .unwrap_err();
        assert!(matches!(err, CodesignError::NotFound(_)), "{err}");
    }
    nothing_recorded(&f);
}

#[test]
fn refuses_a_retired_key() {
    let f = fixture();
    f.store
        .keys
        .lock()
        .unwrap()
        .get_mut(&f.key)
        .unwrap()
        .retired = Some("the request was refused".into());
    let err = sign_as(&f, "carol", f.now).unwrap_err();
    assert!(matches!(err, CodesignError::Unusable(_)), "{err}");
    nothing_recorded(&f);
}

#[test]
fn refuses_a_key_whose_certificate_is_not_issued_yet() {
    let f = fixture();
    f.store.keys.lock().unwrap().get_mut(&f.key).unwrap().serial = None;
    let err = sign_as(&f, "carol", f.now).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key cs-carol has no certificate yet: request 1 has not been issued"
    );
    nothing_recorded(&f);
}

#[test]
fn refuses_a_revoked_certificate() {
    let f = fixture();
    f.store.cert.lock().unwrap().as_mut().unwrap().status = CertStatus::Revoked;
    let err = sign_as(&f, "carol", f.now).unwrap_err();
    assert!(
        err.to_string().ends_with("of key cs-carol is revoked"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    nothing_recorded(&f);
}

#[test]
fn refuses_an_expired_or_not_yet_valid_certificate() {
    let f = fixture();
    let err = sign_as(&f, "carol", f.now + 366 * DAY).unwrap_err();
    assert!(
        err.to_string().contains("expired at 2028-01-15T08:00:00Z"),
        "{err}"
    );
    let err = sign_as(&f, "carol", f.now - Duration::from_secs(1)).unwrap_err();
    assert!(err.to_string().contains("is not valid before"), "{err}");
    nothing_recorded(&f);
}

#[test]
fn refuses_past_the_rate_limit_and_the_daily_quota() {
    let f = fixture();
    for i in 0..3 {
        sign_as(&f, "carol", f.now + Duration::from_secs(i)).unwrap();
    }
    let err = sign_as(&f, "carol", f.now + Duration::from_secs(30)).unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(
        err.to_string(),
        "key cs-carol has reached its limit of 3 signatures per minute (profile [codesign]); try again later"
    );
    // A minute later the rate allows two more, then the daily quota of 5 is reached.
    for i in 0..2 {
        sign_as(&f, "carol", f.now + Duration::from_secs(70 + i)).unwrap();
    }
    let err = sign_as(&f, "carol", f.now + Duration::from_secs(200)).unwrap_err();
    assert!(err.to_string().contains("a daily quota of 5"), "{err}");
    // The next day it signs again.
    sign_as(&f, "carol", f.now + DAY + Duration::from_secs(10)).unwrap();
    assert_eq!(f.store.signatures.lock().unwrap().len(), 6);
}

#[test]
fn refuses_a_digest_of_the_wrong_algorithm() {
    let f = fixture();
    let sha384 = Digest::new(DigestAlg::Sha384, vec![0; 48]).unwrap();
    let err = f
        .codesign
        .sign(
            &SignRequest {
                caller: Principal::user("carol"),
                key: "cs-carol",
                digest: &sha384,
                source: "cli",
            },
            f.now,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            CodesignError::Cms(CmsError::DigestAlgorithmMismatch { .. })
        ),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Invalid);
    nothing_recorded(&f);
}

#[test]
fn a_signature_that_cannot_be_recorded_is_not_returned() {
    let f = fixture();
    *f.store.fail_record.lock().unwrap() = Some(StoreError::Database("disk full".into()));
    let err = sign_as(&f, "carol", f.now).unwrap_err();
    assert!(matches!(err, CodesignError::Store(_)), "{err}");
    // A full window found only inside the recording transaction (a concurrent signer
    // took the last slot) is a rate limit too.
    *f.store.fail_record.lock().unwrap() = Some(StoreError::Conflict(
        "key cs-carol has reached its limit".into(),
    ));
    assert!(sign_as(&f, "carol", f.now).unwrap_err().is_rate_limited());
    nothing_recorded(&f);
}
