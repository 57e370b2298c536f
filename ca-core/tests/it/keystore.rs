//! The key store conformance suite, written once against the trait and run on every
//! backend, then the embedded token's own tamper tests.

use std::fs;
use std::sync::Arc;

use ca_core::keystore::embedded::EmbeddedKeyStore;
use ca_core::keystore::{KeyRef, KeySpec, KeyStore, KeyStoreError, verify};
use ca_core::secret::Secret;

use crate::support::{self, backends, unique};

fn key(label: &str) -> KeyRef {
    KeyRef::new(label).unwrap()
}

#[test]
fn every_backend_generates_keys_that_sign_verifiable_der_signatures() {
    for b in backends() {
        for spec in [KeySpec::EcP256, KeySpec::EcP384] {
            let k = key(&unique("sig"));
            let spki = b.store.generate(&k, spec).unwrap();
            let signer = b.store.signer(&k).unwrap();
            assert_eq!(signer.public_key(), &spki, "{}", b.name);
            assert_eq!(signer.algorithm(), spec.signature_algorithm());
            let msg = b"to be signed";
            let sig = signer.sign(msg).unwrap();
            assert_eq!(
                sig[0], 0x30,
                "{}: a DER Ecdsa-Sig-Value, not raw r||s",
                b.name
            );
            verify(signer.algorithm(), &spki, msg, &sig).unwrap();
            assert!(verify(signer.algorithm(), &spki, b"other message", &sig).is_err());
        }
    }
}

#[test]
fn every_backend_lists_keys_with_uris_that_name_them() {
    for b in backends() {
        let (a, z) = (key(&unique("list-a")), key(&unique("list-z")));
        b.store.generate(&z, KeySpec::EcP256).unwrap();
        let spki = b.store.generate(&a, KeySpec::EcP384).unwrap();
        let keys = b.store.list().unwrap();
        let labels: Vec<_> = keys.iter().map(|k| k.key.label().to_string()).collect();
        let mut sorted = labels.clone();
        sorted.sort();
        assert_eq!(labels, sorted, "{}: sorted by label", b.name);
        let info = keys.iter().find(|k| k.key == a).unwrap();
        assert_eq!((info.spec, &info.public_key), (KeySpec::EcP384, &spki));
        assert_eq!(info.uri, b.store.uri(&a));
        assert_eq!(b.store.key_from_uri(&info.uri).unwrap(), a, "{}", b.name);
        assert!(keys.iter().any(|k| k.key == z));
    }
}

#[test]
fn every_backend_refuses_an_existing_label_and_keeps_the_old_key() {
    for b in backends() {
        let k = key(&unique("dup"));
        let first = b.store.generate(&k, KeySpec::EcP256).unwrap();
        let err = b.store.generate(&k, KeySpec::EcP384).unwrap_err();
        assert!(
            matches!(err, KeyStoreError::LabelExists(_)),
            "{}: {err}",
            b.name
        );
        assert_eq!(b.store.signer(&k).unwrap().public_key(), &first);
        assert_eq!(
            b.store
                .list()
                .unwrap()
                .iter()
                .filter(|i| i.key == k)
                .count(),
            1
        );
    }
}

#[test]
fn every_backend_destroys_keys_for_good() {
    for b in backends() {
        let k = key(&unique("gone"));
        b.store.generate(&k, KeySpec::EcP256).unwrap();
        b.store.destroy(&k).unwrap();
        assert!(
            !b.store.list().unwrap().iter().any(|i| i.key == k),
            "{}",
            b.name
        );
        assert!(
            matches!(b.store.signer(&k), Err(KeyStoreError::NotFound(_))),
            "{}",
            b.name
        );
        assert!(
            matches!(b.store.destroy(&k), Err(KeyStoreError::NotFound(_))),
            "{}",
            b.name
        );
    }
}

#[test]
fn every_backend_reports_unknown_keys_as_not_found() {
    for b in backends() {
        let err = b.store.signer(&key(&unique("never"))).unwrap_err();
        assert!(
            matches!(err, KeyStoreError::NotFound(_)),
            "{}: {err}",
            b.name
        );
    }
}

#[test]
fn every_backend_signs_from_several_threads_at_once() {
    for b in backends() {
        let k = key(&unique("threads"));
        b.store.generate(&k, KeySpec::EcP384).unwrap();
        let signer = b.store.signer(&k).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let signer = Arc::clone(&signer);
                s.spawn(move || {
                    for i in 0..25u8 {
                        let msg = [t, i];
                        let sig = signer.sign(&msg).unwrap();
                        verify(signer.algorithm(), signer.public_key(), &msg, &sig).unwrap();
                    }
                });
            }
        });
    }
}

#[test]
fn every_backend_refuses_uris_of_other_stores() {
    for b in backends() {
        let foreign = match b.name {
            "embedded" => "pkcs11:token=x;object=y".to_string(),
            _ => "embedded:y".to_string(),
        };
        assert!(b.store.key_from_uri(&foreign).is_err(), "{}", b.name);
    }
}

// --- the embedded token: a wrong passphrase and every way a key file can be altered -------

fn token_with_keys() -> (tempfile::TempDir, std::path::PathBuf) {
    let b = support::embedded();
    b.store.generate(&key("alpha"), KeySpec::EcP384).unwrap();
    b.store.generate(&key("beta"), KeySpec::EcP384).unwrap();
    let dir = b._dir.unwrap();
    let token = dir.path().join("token");
    (dir, token)
}

fn reopen(token: &std::path::Path) -> EmbeddedKeyStore {
    EmbeddedKeyStore::open(token, &support::passphrase()).unwrap()
}

fn assert_refused(token: &std::path::Path, label: &str) {
    let err = reopen(token).signer(&key(label)).unwrap_err();
    assert!(matches!(err, KeyStoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("damaged or was altered"), "{err}");
}

#[test]
fn embedded_refuses_a_wrong_passphrase_without_echoing_it() {
    let (_dir, token) = token_with_keys();
    let wrong = "not the right passphrase";
    let err = EmbeddedKeyStore::open(&token, &Secret::new(wrong.into())).unwrap_err();
    assert!(matches!(err, KeyStoreError::WrongSecret(_)), "{err}");
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    assert!(!format!("{err} {err:?}").contains(wrong));
}

#[test]
fn embedded_reopens_with_the_right_passphrase_and_the_same_keys() {
    let (_dir, token) = token_with_keys();
    let store = reopen(&token);
    let signer = store.signer(&key("alpha")).unwrap();
    let sig = signer.sign(b"m").unwrap();
    verify(signer.algorithm(), signer.public_key(), b"m", &sig).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn embedded_refuses_an_edited_sealed_key() {
    let (_dir, token) = token_with_keys();
    let path = token.join("keys/alpha.key");
    let text = fs::read_to_string(&path).unwrap();
    let at = text.find("sealed = \"").unwrap() + 40;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    fs::write(&path, bytes).unwrap();
    assert_refused(&token, "alpha");
}

#[test]
fn embedded_refuses_a_truncated_key_file() {
    let (_dir, token) = token_with_keys();
    let path = token.join("keys/alpha.key");
    let text = fs::read(&path).unwrap();
    fs::write(&path, &text[..text.len() - 20]).unwrap();
    assert_refused(&token, "alpha");
}

#[test]
fn embedded_refuses_a_key_file_swapped_for_another_keys() {
    let (_dir, token) = token_with_keys();
    fs::copy(token.join("keys/beta.key"), token.join("keys/alpha.key")).unwrap();
    assert_refused(&token, "alpha");
    // And with the label inside edited to match: the AEAD's associated data still differs.
    let text = fs::read_to_string(token.join("keys/beta.key")).unwrap();
    fs::write(
        token.join("keys/alpha.key"),
        text.replace("label = \"beta\"", "label = \"alpha\""),
    )
    .unwrap();
    assert_refused(&token, "alpha");
}

#[test]
fn embedded_refuses_a_key_file_whose_public_key_was_replaced() {
    let (_dir, token) = token_with_keys();
    let alpha = fs::read_to_string(token.join("keys/alpha.key")).unwrap();
    let beta = fs::read_to_string(token.join("keys/beta.key")).unwrap();
    let pk = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("public_key"))
            .unwrap()
            .to_string()
    };
    fs::write(
        token.join("keys/alpha.key"),
        alpha.replace(&pk(&alpha), &pk(&beta)),
    )
    .unwrap();
    assert_refused(&token, "alpha");
}
