//! Code signing end to end, on the embedded token and on SoftHSM2: a key generated in the
//! key store for its owner, its certificate approved by two officers under
//! `policies/code-signing.toml` and recorded in the database, then a detached CMS signature
//! over the SHA-256 of a multi-megabyte file that `openssl cms -verify` accepts, and rejects
//! for a tampered file.
//!
//! SoftHSM2 needs `SOFTHSM2_CONF` (`.ci/test` exports it). Without it, or without openssl,
//! these tests skip the PKCS#11 half with a message, unless `CI` or
//! `KEYHOLD_REQUIRE_ALL_BACKENDS` is set: then they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use ca_core::audit::{Action, AuditEvent};
use ca_core::ceremony::{self, CaMaterial, CeremonySpec};
use ca_core::cms::{Digest, DigestAlg};
use ca_core::codesign::{Codesign, CodesignError, CodesignStore, KeyRequest, SignRequest};
use ca_core::issuance::{Ca, Channel, Outcome};
use ca_core::issuer::{Issuer, IssuerId, KeyedCert};
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, init_token, module_context};
use ca_core::keystore::{KeyRef, KeySpec, KeyStore};
use ca_core::policy::{self, Requester};
use ca_core::revocation::Reason;
use ca_core::secret::Secret;
use ca_core::store::{AuditLog, Revocation, RevocationLedger};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};

const USER_PIN: &str = "1234-codesign";
const SO_PIN: &str = "5678-codesign";

fn required() -> bool {
    ["CI", "KEYHOLD_REQUIRE_ALL_BACKENDS"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

fn module() -> PathBuf {
    std::env::var_os("KEYHOLD_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

fn unique(prefix: &str) -> String {
    let mut random = [0u8; 4];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    format!(
        "{prefix}-{:02x}{:02x}{:02x}{:02x}",
        random[0], random[1], random[2], random[3]
    )
}

/// The SoftHSM2 token of this test process, initialised once; `None` means skip.
fn pkcs11_token() -> Option<&'static str> {
    static TOKEN: OnceLock<String> = OnceLock::new();
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        assert!(
            !required(),
            "SOFTHSM2_CONF is not set but KEYHOLD_REQUIRE_ALL_BACKENDS requires the pkcs#11 backend: run .ci/test"
        );
        eprintln!("\n*** SKIPPING the pkcs#11 half: SOFTHSM2_CONF is not set (run .ci/test) ***\n");
        return None;
    }
    Some(TOKEN.get_or_init(|| {
        let label = unique("kh-codesign");
        init_token(
            &module(),
            &label,
            &Secret::new(SO_PIN.into()),
            &Secret::new(USER_PIN.into()),
        )
        .unwrap();
        label
    }))
}

struct Backend {
    name: &'static str,
    keys: Arc<dyn KeyStore>,
    token: Option<&'static str>,
    _dir: Option<tempfile::TempDir>,
}

fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedKeyStore::create(
        &dir.path().join("token"),
        &Secret::new("codesign passphrase".into()),
        KdfParams::insecure_for_tests(),
    )
    .unwrap();
    let mut all = vec![Backend {
        name: "embedded",
        keys: Arc::new(embedded),
        token: None,
        _dir: Some(dir),
    }];
    if let Some(token) = pkcs11_token() {
        let store = Pkcs11KeyStore::open(
            &Pkcs11Config::new(module(), token.to_owned()),
            &Secret::new(USER_PIN.into()),
        )
        .unwrap();
        all.push(Backend {
            name: "pkcs11",
            keys: Arc::new(store),
            token: Some(token),
            _dir: None,
        });
    }
    all
}

/// A CA (root, issuing CA) in `keys`, the shipped profiles, and a SQLite database.
struct Setup {
    ca: Ca,
    codesign: Codesign,
    db: Arc<db::Db>,
    root_pem: String,
    _dir: tempfile::TempDir,
}

fn setup(keys: &Arc<dyn KeyStore>, now: SystemTime) -> Setup {
    let spec = CeremonySpec {
        key_label_prefix: format!("{}-", unique("cs")),
        ..CeremonySpec::default()
    };
    let h = ceremony::run(&spec, keys.as_ref(), now - Duration::from_secs(3600)).unwrap();
    let keyed = |m: &CaMaterial| KeyedCert {
        cert: m.cert.clone(),
        signer: keys.signer(&m.key).unwrap(),
    };
    let root = IssuerId::new("root").unwrap();
    let mut issuers = vec![Issuer {
        id: root.clone(),
        parent: None,
        ca: keyed(&h.root),
        ocsp: None,
    }];
    for issuing in &h.issuing {
        issuers.push(Issuer {
            id: issuing.id.clone(),
            parent: Some(root.clone()),
            ca: keyed(&issuing.ca),
            ocsp: Some(keyed(&issuing.ocsp)),
        });
    }
    let profiles =
        policy::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        db::Db::open(&format!(
            "sqlite://{}",
            dir.path().join("keyhold.db").display()
        ))
        .unwrap(),
    );
    let ca = Ca::new(
        issuers.clone(),
        profiles.clone(),
        db.clone(),
        "http://127.0.0.1:8080",
    )
    .unwrap();
    let codesign = Codesign::new(keys.clone(), db.clone(), profiles, issuers);
    // Approvals count only from officer accounts that held the role before the request.
    for officer in ["alice", "bob"] {
        ca_core::users::create_with_one_time_password(
            db.as_ref(),
            officer,
            &[ca_core::users::Role::Officer],
            "test",
            "test",
        )
        .unwrap();
    }
    Setup {
        ca,
        codesign,
        db,
        root_pem: h.root.cert.to_pem().unwrap(),
        _dir: dir,
    }
}

fn person(name: &str, role: &str) -> Requester {
    Requester {
        name: name.into(),
        roles: vec![role.into()],
    }
}

/// Runs `openssl` in `dir`; (success, stdout + stderr).
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (.ci/test installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The private key's CKA_EXTRACTABLE and CKA_SENSITIVE, read from the token. The key
/// store's login session keeps the process logged in, so this session sees private objects.
fn private_key_flags(token: &str, label: &str) -> (bool, bool) {
    let ctx = module_context(&module()).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == token)
        .expect("the test token");
    let session = ctx.open_ro_session(slot).unwrap();
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    let [handle] = handles.as_slice() else {
        panic!("{} private keys labelled {label}", handles.len())
    };
    let (mut extractable, mut sensitive) = (None, None);
    for a in session
        .get_attributes(
            *handle,
            &[AttributeType::Extractable, AttributeType::Sensitive],
        )
        .unwrap()
    {
        match a {
            Attribute::Extractable(v) => extractable = Some(v),
            Attribute::Sensitive(v) => sensitive = Some(v),
            _ => {}
        }
    }
    (extractable.unwrap(), sensitive.unwrap())
}

#[test]
fn a_key_held_for_its_owner_signs_after_two_approvals_and_openssl_verifies_the_signature() {
    for b in backends() {
        let now = SystemTime::now();
        let s = setup(&b.keys, now);
        let carol = person("carol", "requester");

        // The key is generated in the key store; its request waits for two officers.
        let requested = s
            .codesign
            .request_key(
                &s.ca,
                &KeyRequest {
                    owner: &carol,
                    profile: "code-signing",
                    subject: "CN=Carol release signing",
                    spec: KeySpec::EcP256,
                    source: "cli",
                    channel: Channel::Cli,
                },
                now,
            )
            .unwrap();
        let Outcome::Pending {
            request_id,
            approvals: 0,
            approvals_needed: 2,
            ..
        } = requested.outcome
        else {
            panic!("{}: {:?}", b.name, requested.outcome)
        };
        let label = requested.key.label().to_owned();
        let row = s.db.codesign_key(&requested.key).unwrap().unwrap();
        assert_eq!(
            (row.owner.as_str(), row.request_id),
            ("carol", Some(request_id))
        );
        if let Some(token) = b.token {
            assert_eq!(
                private_key_flags(token, &label),
                (false, true),
                "CKA_EXTRACTABLE must be false and CKA_SENSITIVE true"
            );
        }

        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 6 * 1024 * 1024];
        aws_lc_rs::rand::fill(&mut data).unwrap();
        fs::write(dir.path().join("release.tar.gz"), &data).unwrap();
        fs::write(dir.path().join("root.pem"), &s.root_pem).unwrap();
        let digest = DigestAlg::Sha256.hash_reader(&data[..]).unwrap();
        let sign = |caller: &str, digest: &Digest| {
            s.codesign.sign(
                &SignRequest {
                    caller: ca_core::codesign::Principal::user(caller),
                    key: &label,
                    digest,
                    source: "127.0.0.1",
                },
                now + Duration::from_secs(5),
            )
        };

        // Not before the quorum: one approval is not enough, the owner's does not count.
        let err = sign("carol", &digest).unwrap_err();
        assert!(
            matches!(err, CodesignError::Unusable(_)),
            "{}: {err}",
            b.name
        );
        let alice = person("alice", "officer");
        let bob = person("bob", "officer");
        let outcome =
            s.ca.approve(request_id, &alice, "release 1.2", "cli", now)
                .unwrap();
        assert!(
            matches!(outcome, Outcome::Pending { approvals: 1, .. }),
            "{outcome:?}"
        );
        assert!(
            s.ca.approve(request_id, &alice, "again", "cli", now)
                .is_err()
        );
        assert!(matches!(
            sign("carol", &digest).unwrap_err(),
            CodesignError::Unusable(_)
        ));
        let outcome = s.ca.approve(request_id, &bob, "ok", "cli", now).unwrap();
        let Outcome::Issued(issued) = outcome else {
            panic!("{}: {outcome:?}", b.name)
        };

        // Someone else cannot sign with carol's key; nothing is signed or recorded.
        let err = sign("mallory", &digest).unwrap_err();
        assert!(
            matches!(err, CodesignError::Forbidden(_)),
            "{}: {err}",
            b.name
        );
        assert!(
            s.db.codesign_signatures(&requested.key, 10)
                .unwrap()
                .is_empty()
        );

        // Carol can; openssl accepts the signature for the file and refuses a changed file.
        let signature = sign("carol", &digest).unwrap();
        assert_eq!(signature.serial, issued.serial);
        fs::write(dir.path().join("release.p7s"), signature.cms.as_der()).unwrap();
        let verify = |content: &str| {
            openssl(
                dir.path(),
                &[
                    "cms",
                    "-verify",
                    "-binary",
                    "-inform",
                    "DER",
                    "-in",
                    "release.p7s",
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
        let (ok, out) = verify("release.tar.gz");
        assert!(ok, "{}: openssl refused the signature: {out}", b.name);
        data[3 * 1024 * 1024] ^= 0x80;
        fs::write(dir.path().join("tampered.tar.gz"), &data).unwrap();
        let (ok, out) = verify("tampered.tar.gz");
        assert!(!ok, "{}: openssl accepted a tampered file: {out}", b.name);

        // The signature is in the key's history and in the audit log, with its digest.
        let history = s
            .codesign
            .history(ca_core::codesign::Principal::user("carol"), &label, 10)
            .unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].signature.digest, digest.to_hex());
        let (seq, _) = s.db.audit_head().unwrap().unwrap();
        let entries = s.db.audit_entries(1, seq).unwrap();
        let signed = entries
            .iter()
            .find(|e| e.action == "codesign.signed")
            .expect("a codesign.signed entry");
        assert_eq!(signed.actor, "carol");
        assert!(
            signed
                .details
                .contains(&format!("digest={}", digest.to_hex()))
        );
        assert!(signed.object.contains(&label), "{}", signed.object);

        // Once its certificate is revoked, the key signs no more.
        s.db.revoke(
            &Revocation {
                serial: issued.serial.clone(),
                reason: Reason::KeyCompromise,
                invalidity_date: None,
                revoked_at: now,
            },
            &AuditEvent::new(
                Action::CertificateRevoked,
                "alice",
                "cli",
                format!("certificate:{}", issued.serial),
            ),
        )
        .unwrap();
        let err = sign("carol", &digest).unwrap_err();
        assert!(err.to_string().ends_with("is revoked"), "{}: {err}", b.name);
        assert_eq!(
            s.db.codesign_signatures(&requested.key, 10).unwrap().len(),
            1
        );
    }
}

#[test]
fn a_refused_request_retires_and_destroys_its_key() {
    let b = backends().remove(0);
    let now = SystemTime::now();
    let s = setup(&b.keys, now);
    let carol = person("carol", "requester");
    // code-signing takes CN and OU from the request, never L.
    let requested = s
        .codesign
        .request_key(
            &s.ca,
            &KeyRequest {
                owner: &carol,
                profile: "code-signing",
                subject: "CN=Carol,L=Nowhere",
                spec: KeySpec::EcP384,
                source: "cli",
                channel: Channel::Cli,
            },
            now,
        )
        .unwrap();
    assert!(
        matches!(requested.outcome, Outcome::Rejected(_)),
        "{:?}",
        requested.outcome
    );
    let row = s.db.codesign_key(&requested.key).unwrap().unwrap();
    assert!(row.retired.unwrap().contains("refused"));
    assert!(
        b.keys
            .signer(&KeyRef::new(requested.key.label()).unwrap())
            .is_err()
    );

    let err = s
        .codesign
        .request_key(
            &s.ca,
            &KeyRequest {
                owner: &carol,
                profile: "tls-server",
                subject: "CN=web.internal",
                spec: KeySpec::EcP256,
                source: "cli",
                channel: Channel::Cli,
            },
            now,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("does not issue code-signing"),
        "{err}"
    );
}
