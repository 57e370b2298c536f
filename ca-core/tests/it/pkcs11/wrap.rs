//! Keys that leave a SoftHSM2 token only wrapped: export from one token, import into
//! another, sign with both, and verify both signatures with the one public key; a
//! non-exportable key and an untrusted wrapping key are refused, by Keyhold and by the token.

use ca_core::keystore::pkcs11::wrap::{self, WrapMechanism, WrappedKey};
use cryptoki::object::KeyType;

use super::*;

/// Puts an AES-256 wrapping key with this value into `token`: trusted, as the security
/// officer installs it; untrusted, as a user could make one.
fn install_wrapping_key(token: &TestToken, label: &str, value: &[u8; 32], trusted: bool) {
    if trusted {
        wrap::install_wrapping_key(
            &module(),
            &token.label,
            &Secret::new(SO_PIN.into()),
            label,
            &zeroize::Zeroizing::new(*value),
        )
        .unwrap();
        return;
    }
    let ctx = context();
    let session = ctx.open_rw_session(slot_of(&ctx, token)).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::from(USER_PIN)))
        .unwrap();
    session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Value(value.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    session.logout().unwrap();
}

fn attribute(store_token: &TestToken, label: &str, kind: AttributeType) -> Attribute {
    let ctx = context();
    let session = ctx.open_ro_session(slot_of(&ctx, store_token)).unwrap();
    let handle = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap()[0];
    session.get_attributes(handle, &[kind]).unwrap().remove(0)
}

#[test]
fn a_key_exported_wrapped_from_one_token_signs_in_another_with_the_same_public_key() {
    let (Some(a), Some(b)) = (own_token("wrap-a"), own_token("wrap-b")) else {
        return;
    };
    let mut kek = [0u8; 32];
    aws_lc_rs::rand::fill(&mut kek).unwrap();
    install_wrapping_key(&a, "kek", &kek, true);
    install_wrapping_key(&b, "kek", &kek, true);
    install_wrapping_key(&a, "kek-untrusted", &kek, false);

    let store_a = open(&a);
    let store_b = open(&b);
    let exportable = key("issuing-exportable");
    let public = store_a
        .generate_exportable(&exportable, KeySpec::EcP384)
        .unwrap();
    // Still sensitive; extractable only under trusted keys.
    assert_eq!(
        attribute(&a, exportable.label(), AttributeType::Sensitive),
        Attribute::Sensitive(true)
    );
    assert_eq!(
        attribute(&a, exportable.label(), AttributeType::WrapWithTrusted),
        Attribute::WrapWithTrusted(true)
    );

    // A key made the ordinary way never leaves.
    let plain = key("issuing-plain");
    store_a.generate(&plain, KeySpec::EcP384).unwrap();
    let err = store_a
        .export_wrapped(&plain, "kek", WrapMechanism::default())
        .unwrap_err();
    assert!(err.to_string().contains("is not exportable"), "{err}");

    // Nor does an exportable one under a key the security officer did not mark trusted:
    // Keyhold refuses, and so does the token when asked directly.
    let err = store_a
        .export_wrapped(&exportable, "kek-untrusted", WrapMechanism::default())
        .unwrap_err();
    assert!(err.to_string().contains("not marked CKA_TRUSTED"), "{err}");
    {
        let ctx = context();
        let session = ctx.open_ro_session(slot_of(&ctx, &a)).unwrap();
        let find = |class, label: &str| {
            session
                .find_objects(&[
                    Attribute::Class(class),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
                .unwrap()[0]
        };
        let untrusted = find(ObjectClass::SECRET_KEY, "kek-untrusted");
        let private = find(ObjectClass::PRIVATE_KEY, exportable.label());
        assert!(
            session
                .wrap_key(&Mechanism::AesKeyWrapPad, untrusted, private)
                .is_err(),
            "SoftHSM2 wrapped a CKA_WRAP_WITH_TRUSTED key under an untrusted key"
        );
    }

    // Export under the trusted key, through the file format, into the other token.
    let wrapped = store_a
        .export_wrapped(&exportable, "kek", WrapMechanism::default())
        .unwrap();
    assert_eq!(wrapped.mechanism, 0x210A);
    assert_eq!(wrapped.spki().unwrap(), public);
    let file = wrapped.to_json().unwrap();
    let read = WrappedKey::from_json(&file).unwrap();
    let imported = key("issuing-imported");
    let spki_b = store_b
        .import_wrapped(&read, &imported, "kek", false)
        .unwrap();
    assert_eq!(spki_b, public);
    assert_eq!(
        attribute(&b, imported.label(), AttributeType::Sensitive),
        Attribute::Sensitive(true)
    );
    assert_eq!(
        attribute(&b, imported.label(), AttributeType::Extractable),
        Attribute::Extractable(false)
    );

    // Both tokens sign; each signature verifies with the one public key from token A.
    let message = b"signed in two tokens with one key";
    let signer_a = store_a.signer(&exportable).unwrap();
    let signer_b = store_b.signer(&imported).unwrap();
    assert_eq!(signer_b.public_key(), &public);
    for signer in [&signer_a, &signer_b] {
        let signature = signer.sign(message).unwrap();
        verify(SigAlg::EcdsaP384Sha384, &public, message, &signature).unwrap();
        verify_independently(signer.as_ref(), message, &signature);
    }

    // The imported copy is not exportable, and its label cannot be imported over.
    let err = store_b
        .export_wrapped(&imported, "kek", WrapMechanism::default())
        .unwrap_err();
    assert!(err.to_string().contains("is not exportable"), "{err}");
    let err = store_b
        .import_wrapped(&read, &imported, "kek", false)
        .unwrap_err();
    assert!(matches!(err, KeyStoreError::LabelExists(_)), "{err}");
}

#[test]
fn a_wrapped_key_file_that_does_not_match_its_public_key_is_refused_and_removed() {
    let (Some(a), Some(b)) = (own_token("wrap-c"), own_token("wrap-d")) else {
        return;
    };
    let mut kek = [0u8; 32];
    aws_lc_rs::rand::fill(&mut kek).unwrap();
    install_wrapping_key(&a, "kek", &kek, true);
    install_wrapping_key(&b, "kek", &kek, true);
    let store_a = open(&a);
    let store_b = open(&b);
    let one = key("one");
    let other = key("other");
    store_a.generate_exportable(&one, KeySpec::EcP256).unwrap();
    let other_public = store_a
        .generate_exportable(&other, KeySpec::EcP256)
        .unwrap();
    let mut wrapped = store_a
        .export_wrapped(&one, "kek", WrapMechanism::default())
        .unwrap();
    // Someone swaps in another key's public key.
    wrapped.public_key = hex::encode(other_public.as_bytes());
    let err = store_b
        .import_wrapped(&wrapped, &key("swapped"), "kek", false)
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(matches!(
        store_b.signer(&key("swapped")),
        Err(KeyStoreError::NotFound(_))
    ));
}
