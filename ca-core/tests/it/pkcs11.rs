//! The PKCS#11 key store against a real SoftHSM2 token.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once per process, so the test script exports it (pointing
//! at a throwaway token directory). Without it these tests skip, unless `CI` or
//! `KEYHOLD_REQUIRE_ALL_BACKENDS` is set: then they fail. One token is initialised per test
//! process; each test uses its own key labels, so tests run in parallel. Tests that change
//! the process's login state (logging out, logging in as the security officer, finalizing
//! the module) get a token of their own, since PKCS#11 login state is per application and
//! token.
//!
//! Self-contained: needs nothing from a shared `support` module.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ca_core::keystore::pkcs11::{
    self, ObjectType, Pkcs11Config, Pkcs11KeyStore, Pkcs11Uri, init_token, module_context,
};
use ca_core::keystore::{KeyRef, KeySpec, KeyStore, KeyStoreError, SigAlg, Signer, verify};
use ca_core::secret::Secret;
use cryptoki::context::Pkcs11;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const USER_PIN: &str = "4321-user";
const SO_PIN: &str = "8765-officer";

/// The module under test: `KEYHOLD_PKCS11_MODULE` or SoftHSM2's Debian path.
fn module() -> PathBuf {
    std::env::var_os("KEYHOLD_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODULE))
}

/// A token initialised by these tests.
struct TestToken {
    label: String,
}

/// Whether SoftHSM2 is configured for this process; fails the test if it must be.
fn softhsm_configured() -> bool {
    if std::env::var_os("SOFTHSM2_CONF").is_some() {
        return true;
    }
    let required = ["CI", "KEYHOLD_REQUIRE_ALL_BACKENDS"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    assert!(
        !required,
        "SOFTHSM2_CONF is not set, but CI or KEYHOLD_REQUIRE_ALL_BACKENDS requires the pkcs#11 \
         tests: export SOFTHSM2_CONF pointing at a softhsm2.conf with a throwaway tokendir"
    );
    eprintln!("skipping: SOFTHSM2_CONF not set");
    false
}

/// Initialises a new token with a label unique to this process and `purpose` (< 32 bytes).
fn new_token(purpose: &str) -> TestToken {
    let mut random = [0u8; 4];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    let label = format!(
        "kh-{purpose}-{}-{}",
        std::process::id(),
        hex::encode(random)
    );
    init_token(
        &module(),
        &label,
        &Secret::new(SO_PIN.into()),
        &Secret::new(USER_PIN.into()),
    )
    .unwrap_or_else(|e| panic!("init_token {label}: {e}"));
    TestToken { label }
}

/// The token most tests share, initialised once per process; `None` means skip.
fn shared_token() -> Option<&'static TestToken> {
    static TOKEN: OnceLock<TestToken> = OnceLock::new();
    softhsm_configured().then(|| TOKEN.get_or_init(|| new_token("test")))
}

/// A token of the test's own; `None` means skip.
fn own_token(purpose: &str) -> Option<TestToken> {
    softhsm_configured().then(|| new_token(purpose))
}

fn open(token: &TestToken) -> Pkcs11KeyStore {
    let config = Pkcs11Config::new(module(), token.label.clone());
    Pkcs11KeyStore::open(&config, &Secret::new(USER_PIN.into()))
        .unwrap_or_else(|e| panic!("open {}: {e}", token.label))
}

fn key(label: &str) -> KeyRef {
    KeyRef::new(label).unwrap()
}

fn context() -> Pkcs11 {
    module_context(&module()).unwrap()
}

fn slot_of(ctx: &Pkcs11, token: &TestToken) -> Slot {
    ctx.get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|slot| ctx.get_token_info(*slot).unwrap().label() == token.label)
        .expect("token slot")
}

fn objects_labelled(session: &Session, class: ObjectClass, label: &str) -> usize {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap()
        .len()
}

/// Verifies with aws-lc-rs directly and, when the binary exists, with `openssl dgst`.
fn verify_independently(signer: &dyn Signer, message: &[u8], signature: &[u8]) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
    let (algorithm, digest) = match signer.algorithm() {
        SigAlg::EcdsaP256Sha256 => (&ECDSA_P256_SHA256_ASN1, "-sha256"),
        SigAlg::EcdsaP384Sha384 => (&ECDSA_P384_SHA384_ASN1, "-sha384"),
    };
    let point = signer.public_key().subject_public_key().unwrap();
    UnparsedPublicKey::new(algorithm, &point)
        .verify(message, signature)
        .expect("aws-lc-rs verifies the signature");

    let Ok(dir) = tempfile::tempdir() else { return };
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let public = write("public.der", signer.public_key().as_bytes());
    let sig = write("sig.der", signature);
    let msg = write("msg.bin", message);
    let Ok(output) = std::process::Command::new("openssl")
        .arg("dgst")
        .arg(digest)
        .args(["-keyform", "DER", "-verify"])
        .arg(&public)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg)
        .output()
    else {
        eprintln!("openssl not found: verified with aws-lc-rs only");
        return;
    };
    assert!(
        output.status.success(),
        "openssl dgst -verify: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn generated_private_key_is_sensitive_and_never_extractable() {
    let Some(token) = shared_token() else { return };
    let store = open(token);
    store.generate(&key("attrs"), KeySpec::EcP384).unwrap();

    // The store's login session keeps the process logged in, so this session sees private
    // objects.
    let ctx = context();
    let session = ctx.open_ro_session(slot_of(&ctx, token)).unwrap();
    let private = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"attrs".to_vec()),
        ])
        .unwrap();
    assert_eq!(private.len(), 1);
    let attributes = session
        .get_attributes(
            private[0],
            &[
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Sign,
                AttributeType::Extractable,
                AttributeType::Decrypt,
                AttributeType::Derive,
                AttributeType::Unwrap,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
                AttributeType::Id,
                AttributeType::Value,
            ],
        )
        .unwrap();
    let mut private_id = None;
    let mut seen = 0;
    for attribute in &attributes {
        match attribute {
            Attribute::Token(v)
            | Attribute::Private(v)
            | Attribute::Sensitive(v)
            | Attribute::Sign(v)
            | Attribute::NeverExtractable(v)
            | Attribute::AlwaysSensitive(v) => {
                assert!(*v, "{attribute:?} must be true");
                seen += 1;
            }
            Attribute::Extractable(v)
            | Attribute::Decrypt(v)
            | Attribute::Derive(v)
            | Attribute::Unwrap(v) => {
                assert!(!*v, "{attribute:?} must be false");
                seen += 1;
            }
            Attribute::Id(id) => private_id = Some(id.clone()),
            Attribute::Value(_) => panic!("the token returned the private key's CKA_VALUE"),
            other => panic!("unexpected attribute {other:?}"),
        }
    }
    assert_eq!(
        seen, 10,
        "every flag attribute was returned: {attributes:?}"
    );
    let private_id = private_id.expect("CKA_ID");
    assert!(!private_id.is_empty());

    let public = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(b"attrs".to_vec()),
        ])
        .unwrap();
    assert_eq!(public.len(), 1);
    for attribute in session
        .get_attributes(
            public[0],
            &[
                AttributeType::Token,
                AttributeType::Verify,
                AttributeType::Encrypt,
                AttributeType::Wrap,
                AttributeType::Derive,
                AttributeType::Id,
            ],
        )
        .unwrap()
    {
        match attribute {
            Attribute::Token(v) | Attribute::Verify(v) => assert!(v),
            Attribute::Encrypt(v) | Attribute::Wrap(v) | Attribute::Derive(v) => assert!(!v),
            Attribute::Id(id) => assert_eq!(id, private_id, "both halves share CKA_ID"),
            other => panic!("unexpected attribute {other:?}"),
        }
    }
}

#[test]
fn p256_and_p384_signatures_verify_with_two_implementations() {
    let Some(token) = shared_token() else { return };
    let store = open(token);
    for (label, spec, alg) in [
        ("sig-p256", KeySpec::EcP256, SigAlg::EcdsaP256Sha256),
        ("sig-p384", KeySpec::EcP384, SigAlg::EcdsaP384Sha384),
    ] {
        let spki = store.generate(&key(label), spec).unwrap();
        let signer = store.signer(&key(label)).unwrap();
        assert_eq!(signer.algorithm(), alg);
        assert_eq!(signer.public_key(), &spki);
        for message in [&b""[..], b"tbs certificate bytes", &[0xa5; 5000]] {
            let signature = signer.sign(message).unwrap();
            assert_eq!(signature[0], 0x30, "a DER Ecdsa-Sig-Value");
            verify(alg, &spki, message, &signature).unwrap();
            verify_independently(signer.as_ref(), message, &signature);
        }
        let signature = signer.sign(b"one message").unwrap();
        assert!(verify(alg, &spki, b"another message", &signature).is_err());
    }
}

#[test]
fn list_shows_keys_sorted_with_uri_spec_and_public_key() {
    let Some(token) = shared_token() else { return };
    let store = open(token);
    let b = store.generate(&key("list-b"), KeySpec::EcP384).unwrap();
    let a = store.generate(&key("list-a"), KeySpec::EcP256).unwrap();
    let listed = store.list().unwrap();
    assert!(
        listed.windows(2).all(|w| w[0].key < w[1].key),
        "sorted by label"
    );
    let find = |label: &str| listed.iter().find(|k| k.key.label() == label).unwrap();
    assert_eq!(find("list-a").spec, KeySpec::EcP256);
    assert_eq!(find("list-a").public_key, a);
    assert_eq!(find("list-b").spec, KeySpec::EcP384);
    assert_eq!(find("list-b").public_key, b);
    let uri = &find("list-a").uri;
    assert_eq!(
        uri,
        &format!("pkcs11:token={};object=list-a;type=private", token.label)
    );
    assert_eq!(uri, &store.uri(&key("list-a")));
    let parsed = Pkcs11Uri::parse(uri).unwrap();
    assert_eq!(parsed.token.as_deref(), Some(token.label.as_str()));
    assert_eq!(parsed.object.as_deref(), Some("list-a"));
    assert_eq!(parsed.object_type, Some(ObjectType::Private));
    assert_eq!(store.backend(), "pkcs11");
}

#[test]
fn existing_label_is_refused_and_nothing_is_created() {
    let Some(token) = shared_token() else { return };
    let store = open(token);
    let first = store.generate(&key("taken"), KeySpec::EcP256).unwrap();
    let err = store.generate(&key("taken"), KeySpec::EcP384).unwrap_err();
    assert!(
        matches!(err, KeyStoreError::LabelExists(ref l) if l == "taken"),
        "{err}"
    );

    let ctx = context();
    let session = ctx.open_ro_session(slot_of(&ctx, token)).unwrap();
    assert_eq!(
        objects_labelled(&session, ObjectClass::PRIVATE_KEY, "taken"),
        1
    );
    assert_eq!(
        objects_labelled(&session, ObjectClass::PUBLIC_KEY, "taken"),
        1
    );
    assert_eq!(store.signer(&key("taken")).unwrap().public_key(), &first);
}

#[test]
fn destroyed_key_is_gone_and_unknown_keys_are_not_found() {
    let Some(token) = shared_token() else { return };
    let store = open(token);
    store.generate(&key("doomed"), KeySpec::EcP256).unwrap();
    store
        .signer(&key("doomed"))
        .unwrap()
        .sign(b"last words")
        .unwrap();
    store.destroy(&key("doomed")).unwrap();

    assert!(
        !store
            .list()
            .unwrap()
            .iter()
            .any(|k| k.key.label() == "doomed")
    );
    let err = store.signer(&key("doomed")).unwrap_err();
    assert!(matches!(err, KeyStoreError::NotFound(_)), "{err}");
    let err = store.destroy(&key("doomed")).unwrap_err();
    assert!(matches!(err, KeyStoreError::NotFound(_)), "{err}");
    let err = store.destroy(&key("never-existed")).unwrap_err();
    assert!(matches!(err, KeyStoreError::NotFound(_)), "{err}");

    let ctx = context();
    let session = ctx.open_ro_session(slot_of(&ctx, token)).unwrap();
    assert_eq!(
        objects_labelled(&session, ObjectClass::PRIVATE_KEY, "doomed"),
        0
    );
    assert_eq!(
        objects_labelled(&session, ObjectClass::PUBLIC_KEY, "doomed"),
        0
    );
}

#[test]
fn a_destroyed_key_can_be_generated_again() {
    let Some(token) = shared_token() else { return };
    let store = open(token);
    let old = store.generate(&key("reborn"), KeySpec::EcP256).unwrap();
    let old_signer = store.signer(&key("reborn")).unwrap();
    store.destroy(&key("reborn")).unwrap();
    let new = store.generate(&key("reborn"), KeySpec::EcP256).unwrap();
    assert_ne!(old, new);
    let signer = store.signer(&key("reborn")).unwrap();
    let signature = signer.sign(b"m").unwrap();
    verify(SigAlg::EcdsaP256Sha256, &new, b"m", &signature).unwrap();
    // A signer for the destroyed key must not sign with the new one.
    let err = old_signer.sign(b"m").unwrap_err();
    assert!(matches!(err, KeyStoreError::NotFound(_)), "{err}");
}

#[test]
fn signs_from_four_threads_at_once() {
    let Some(token) = shared_token() else { return };
    let mut config = Pkcs11Config::new(module(), token.label.clone());
    config.sessions = 2; // fewer idle sessions than threads: the pool opens more
    let store = Pkcs11KeyStore::open(&config, &Secret::new(USER_PIN.into())).unwrap();
    store.generate(&key("threads"), KeySpec::EcP384).unwrap();
    let signer: Arc<dyn Signer> = store.signer(&key("threads")).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let signer = Arc::clone(&signer);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let message = format!("thread {t} message {i}");
                    let signature = signer.sign(message.as_bytes()).unwrap();
                    verify(
                        signer.algorithm(),
                        signer.public_key(),
                        message.as_bytes(),
                        &signature,
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("signing thread");
    }
}

#[test]
fn a_second_store_on_the_same_token_can_come_and_go() {
    let Some(token) = shared_token() else { return };
    let first = open(token);
    first.generate(&key("two-stores"), KeySpec::EcP256).unwrap();
    let signer = first.signer(&key("two-stores")).unwrap();
    {
        let second = open(token);
        second
            .signer(&key("two-stores"))
            .unwrap()
            .sign(b"x")
            .unwrap();
    }
    // Dropping the second store closed its sessions, not the first store's login.
    signer.sign(b"still logged in").unwrap();
}

#[test]
fn wrong_pin_is_refused_without_echoing_it() {
    let Some(token) = shared_token() else { return };
    // Another store in this process may be logged in already: the PIN must still be checked.
    let _logged_in = open(token);
    let wrong = "not-the-pin-31337";
    let config = Pkcs11Config::new(module(), token.label.clone());
    let err = Pkcs11KeyStore::open(&config, &Secret::new(wrong.into())).unwrap_err();
    assert!(matches!(err, KeyStoreError::WrongSecret(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "the pkcs#11 user pin was refused by token {:?}",
            token.label
        )
    );
    for text in [err.to_string(), format!("{err:?}"), format!("{config:?}")] {
        assert!(!text.contains(wrong) && !text.contains(USER_PIN), "{text}");
    }
}

#[test]
fn wrong_pin_is_refused_when_nobody_is_logged_in() {
    let Some(token) = own_token("pin") else {
        return;
    };
    let config = Pkcs11Config::new(module(), token.label.clone());
    let err = Pkcs11KeyStore::open(&config, &Secret::new("0000-wrong".into())).unwrap_err();
    assert!(matches!(err, KeyStoreError::WrongSecret(_)), "{err}");
    assert!(!format!("{err} {err:?}").contains("0000-wrong"));
    // and the right PIN still works afterwards
    open(&token);
}

#[test]
fn unknown_token_label_is_unavailable() {
    if !softhsm_configured() {
        return;
    }
    let config = Pkcs11Config::new(module(), "kh-no-such-token".into());
    let err = Pkcs11KeyStore::open(&config, &Secret::new(USER_PIN.into())).unwrap_err();
    assert!(matches!(err, KeyStoreError::Unavailable(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("\"kh-no-such-token\"") && text.contains("init-token"),
        "{text}"
    );
}

#[test]
fn missing_module_is_unavailable() {
    let config = Pkcs11Config::new("/nonexistent/pkcs11/module.so".into(), "t".into());
    let err = Pkcs11KeyStore::open(&config, &Secret::new(USER_PIN.into())).unwrap_err();
    assert!(matches!(err, KeyStoreError::Unavailable(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "pkcs#11 module /nonexistent/pkcs11/module.so not found: check keystore.module in keyhold.toml"
    );
}

#[test]
fn files_that_are_not_pkcs11_modules_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("not-a-module.so");
    std::fs::write(&text_file, "this is not a shared library\n").unwrap();
    let mut candidates = vec![text_file];
    let libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
    if libc.exists() {
        candidates.push(libc.to_path_buf());
    }
    for path in candidates {
        let config = Pkcs11Config::new(path.clone(), "t".into());
        let err = Pkcs11KeyStore::open(&config, &Secret::new(USER_PIN.into())).unwrap_err();
        assert!(matches!(err, KeyStoreError::Unavailable(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("is not a PKCS#11 module") && text.contains(&*path.to_string_lossy()),
            "{text}"
        );
    }
}

#[test]
fn init_token_refuses_a_label_in_use() {
    let Some(token) = shared_token() else { return };
    let err = init_token(
        &module(),
        &token.label,
        &Secret::new(SO_PIN.into()),
        &Secret::new(USER_PIN.into()),
    )
    .unwrap_err();
    assert!(matches!(err, KeyStoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    // the existing token is untouched
    open(token).list().unwrap();
}

#[test]
fn signs_again_after_the_login_is_lost() {
    let Some(token) = own_token("relog") else {
        return;
    };
    let store = open(&token);
    let spki = store.generate(&key("survivor"), KeySpec::EcP384).unwrap();
    let signer = store.signer(&key("survivor")).unwrap();
    signer.sign(b"before").unwrap();

    // Log the whole application out behind the store's back (PKCS#11 v2.40 5.6: C_Logout
    // ends the login of every session). cryptoki 0.12 has no C_CloseAllSessions.
    let ctx = context();
    let session = ctx.open_ro_session(slot_of(&ctx, &token)).unwrap();
    session.logout().unwrap();
    drop(session);

    let signature = signer.sign(b"after").unwrap();
    verify(SigAlg::EcdsaP384Sha384, &spki, b"after", &signature).unwrap();
    // the store's other operations recovered too
    assert_eq!(store.list().unwrap().len(), 1);
}

/// Name of [`finalize_child`] as the test harness knows it (the crate name stripped).
fn finalize_child_name() -> String {
    let path = module_path!();
    let within = path.split_once("::").map_or("", |(_, rest)| rest);
    if within.is_empty() {
        "finalize_child".into()
    } else {
        format!("{within}::finalize_child")
    }
}

const CHILD_ENV: &str = "KEYHOLD_PKCS11_FINALIZE_CHILD";

#[test]
fn signs_again_after_the_module_is_finalized() {
    if !softhsm_configured() {
        return;
    }
    // C_Finalize ends every session in the process, so it runs in a child process of its own.
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            &finalize_child_name(),
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run in a child process by signs_again_after_the_module_is_finalized"]
fn finalize_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let Some(token) = own_token("fin") else {
        return;
    };
    let store = open(&token);
    let spki = store.generate(&key("phoenix"), KeySpec::EcP256).unwrap();
    let signer = store.signer(&key("phoenix")).unwrap();
    signer.sign(b"before").unwrap();

    context().finalize().unwrap();

    let signature = signer.sign(b"after").unwrap();
    verify(SigAlg::EcdsaP256Sha256, &spki, b"after", &signature).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    // a store opened afterwards works too
    open(&token)
        .signer(&key("phoenix"))
        .unwrap()
        .sign(b"x")
        .unwrap();
}

#[test]
fn security_officer_cannot_see_or_use_private_keys() {
    let Some(token) = own_token("so") else { return };
    let ctx = context();
    let slot = slot_of(&ctx, &token);
    let private_handle = {
        let store = open(&token);
        store
            .generate(&key("officer-proof"), KeySpec::EcP256)
            .unwrap();
        store
            .signer(&key("officer-proof"))
            .unwrap()
            .sign(b"x")
            .unwrap();
        let session = ctx.open_ro_session(slot).unwrap();
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(b"officer-proof".to_vec()),
            ])
            .unwrap();
        assert_eq!(found.len(), 1);
        found[0]
        // The store and this session close here: the application's last sessions with
        // the token, which logs the user out (PKCS#11 v2.40 5.6).
    };

    let session = ctx.open_rw_session(slot).unwrap();
    session
        .login(UserType::So, Some(&AuthPin::from(SO_PIN)))
        .unwrap();
    assert_eq!(
        objects_labelled(&session, ObjectClass::PRIVATE_KEY, "officer-proof"),
        0,
        "the SO sees no private objects"
    );
    assert_eq!(
        objects_labelled(&session, ObjectClass::PUBLIC_KEY, "officer-proof"),
        1,
        "the SO does see the token's public objects"
    );
    assert!(
        session
            .sign(&Mechanism::Ecdsa, private_handle, &[0x42; 32])
            .is_err(),
        "the SO cannot sign with the user's key"
    );
    // While the SO is logged in, the key store (which logs in only as the user) cannot open.
    let config = Pkcs11Config::new(module(), token.label.clone());
    let err = Pkcs11KeyStore::open(&config, &Secret::new(USER_PIN.into())).unwrap_err();
    assert!(err.to_string().contains("security officer"), "{err}");
    session.logout().unwrap();
    drop(session);
    open(&token).signer(&key("officer-proof")).unwrap();
}

#[test]
fn module_context_is_shared_and_initialised() {
    if !softhsm_configured() {
        return;
    }
    let a = pkcs11::module_context(&module()).unwrap();
    let b = pkcs11::module_context(&module()).unwrap();
    // initialised once, and usable through every handle
    assert!(!a.get_all_slots().unwrap().is_empty());
    assert!(!b.get_all_slots().unwrap().is_empty());
    assert!(a.get_library_info().unwrap().cryptoki_version().major() >= 2);
}

mod wrap;
