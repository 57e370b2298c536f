//! Moving a key between embedded tokens: it leaves re-encrypted to an age X25519 recipient,
//! never in plaintext, and only if it was generated exportable. The file holds the label,
//! type and public key in the clear and the PKCS#8 key age-encrypted (age authenticates it);
//! the import checks the decrypted key against the public key before sealing it under the
//! other token's passphrase.

use std::io::{Read, Write};

use aws_lc_rs::signature::EcdsaKeyPair;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{EmbeddedKeyStore, key_aad, open_sealed, signing_alg, spki_of};
use crate::backup::{Identity, Recipient};
use crate::keystore::{KeyRef, KeySpec, KeyStoreError, SpkiDer};

/// The `format` of an exported embedded key file.
pub const EXPORTED_KEY_FORMAT: &str = "keyhold-embedded-exported-key-v1";

/// An exported embedded key (JSON): no plaintext private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedKey {
    /// [`EXPORTED_KEY_FORMAT`].
    pub format: String,
    /// The key's label where it was exported.
    pub label: String,
    /// Its type.
    pub spec: KeySpec,
    /// Its public key (DER SPKI, hex).
    pub public_key: String,
    /// The PKCS#8 private key, age-encrypted to the recipient (hex).
    pub encrypted: String,
}

impl ExportedKey {
    /// Its public key.
    ///
    /// Fails with [`KeyStoreError::Corrupt`] if it is not a DER SPKI.
    pub fn spki(&self) -> Result<SpkiDer, KeyStoreError> {
        hex::decode(&self.public_key)
            .ok()
            .and_then(|der| SpkiDer::parse(&der).ok())
            .ok_or_else(|| {
                KeyStoreError::Corrupt("the exported key's public key is unreadable".into())
            })
    }

    /// The file's text.
    ///
    /// Fails only if serialisation fails.
    pub fn to_json(&self) -> Result<String, KeyStoreError> {
        serde_json::to_string_pretty(self)
            .map_err(|e| KeyStoreError::Corrupt(format!("serialising the exported key: {e}")))
    }

    /// Reads a file `to_json` wrote.
    ///
    /// Fails with [`KeyStoreError::Corrupt`] if it is not one.
    pub fn from_json(text: &str) -> Result<Self, KeyStoreError> {
        let e: ExportedKey = serde_json::from_str(text)
            .map_err(|e| KeyStoreError::Corrupt(format!("not an exported embedded key: {e}")))?;
        if e.format != EXPORTED_KEY_FORMAT {
            return Err(KeyStoreError::Corrupt(format!(
                "not an exported embedded key (format {:?})",
                e.format
            )));
        }
        Ok(e)
    }
}

impl EmbeddedKeyStore {
    /// Exports `key` re-encrypted to `recipient`.
    ///
    /// Fails with [`KeyStoreError::Unsupported`] if the key was not generated exportable,
    /// [`KeyStoreError::NotFound`] or [`KeyStoreError::Corrupt`] as signing would.
    pub fn export_to(
        &self,
        key: &KeyRef,
        recipient: &Recipient,
    ) -> Result<ExportedKey, KeyStoreError> {
        let (file, spki) = self.read_key_file(key)?;
        if !file.exportable {
            return Err(KeyStoreError::Unsupported(format!(
                "key {:?} is not exportable: it was generated without --exportable and never \
                 leaves this token; back the token up with keyhold backup",
                key.label()
            )));
        }
        let damaged = || {
            KeyStoreError::Corrupt(format!(
                "key file for {:?} is damaged or was altered; restore it from a backup",
                key.label()
            ))
        };
        let sealed = hex::decode(&file.sealed).map_err(|_| damaged())?;
        let aad = key_aad(key, file.spec, &spki, true);
        let pkcs8 = Zeroizing::new(open_sealed(&self.kek, &sealed, &aad).map_err(|_| damaged())?);
        let unavailable = |e: std::io::Error| KeyStoreError::io("encrypting the exported key", e);
        let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient.as_age()))
            .map_err(|e| {
                KeyStoreError::Unsupported(format!("cannot encrypt to {recipient}: {e}"))
            })?;
        let mut out = Vec::new();
        let mut writer = encryptor.wrap_output(&mut out).map_err(unavailable)?;
        writer.write_all(&pkcs8).map_err(unavailable)?;
        writer.finish().map_err(unavailable)?;
        Ok(ExportedKey {
            format: EXPORTED_KEY_FORMAT.into(),
            label: key.label().into(),
            spec: file.spec,
            public_key: hex::encode(spki.as_bytes()),
            encrypted: hex::encode(out),
        })
    }

    /// Imports an exported key as `key`, decrypting it with `identity` and sealing it under
    /// this token's passphrase; exportable again only if `exportable`. Returns its public key.
    ///
    /// Fails with [`KeyStoreError::WrongSecret`] if the identity does not open it,
    /// [`KeyStoreError::Corrupt`] if it is damaged or its key is not its public key,
    /// [`KeyStoreError::LabelExists`] if the label is taken; nothing is written then.
    pub fn import_from(
        &self,
        exported: &ExportedKey,
        key: &KeyRef,
        identity: &Identity,
        exportable: bool,
    ) -> Result<SpkiDer, KeyStoreError> {
        let spki = exported.spki()?;
        let damaged = |what: &str| KeyStoreError::Corrupt(format!("the exported key {what}"));
        let bytes = hex::decode(&exported.encrypted).map_err(|_| damaged("is not hex"))?;
        let decryptor = age::Decryptor::new(&bytes[..]).map_err(|_| damaged("is damaged"))?;
        let mut reader = decryptor.decrypt(identity.as_dyn()).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => KeyStoreError::WrongSecret(
                "this identity does not open the exported key (it was encrypted to another recipient)"
                    .into(),
            ),
            _ => damaged("is damaged or was altered"),
        })?;
        let mut pkcs8 = Zeroizing::new(Vec::new());
        reader
            .read_to_end(&mut pkcs8)
            .map_err(|_| damaged("is damaged or was altered"))?;
        let pair = EcdsaKeyPair::from_pkcs8(signing_alg(exported.spec), &pkcs8)
            .map_err(|_| damaged("is not a key of the type it names"))?;
        if spki_of(&pair)? != spki {
            return Err(damaged("does not match its public key"));
        }
        self.store_new(key, exported.spec, Some(&pkcs8), exportable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::KeyStore;
    use crate::keystore::embedded::KdfParams;
    use crate::secret::Secret;

    fn token(dir: &std::path::Path, pass: &str) -> EmbeddedKeyStore {
        EmbeddedKeyStore::create(
            dir,
            &Secret::new(pass.into()),
            KdfParams::insecure_for_tests(),
        )
        .unwrap()
    }

    #[test]
    fn an_exportable_key_moves_to_another_token_and_signs_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let a = token(&tmp.path().join("a"), "first token passphrase");
        let b = token(&tmp.path().join("b"), "second token passphrase");
        let key = KeyRef::new("moves").unwrap();
        let spki = a.generate_exportable(&key, KeySpec::EcP384).unwrap();
        let id = Identity::generate();
        let exported = a.export_to(&key, &id.recipient().unwrap()).unwrap();
        let text = exported.to_json().unwrap();
        assert!(!text.contains("PRIVATE"));
        let back = ExportedKey::from_json(&text).unwrap();
        // Another identity cannot open it; the right one can.
        let err = b
            .import_from(&back, &key, &Identity::generate(), false)
            .unwrap_err();
        assert!(matches!(err, KeyStoreError::WrongSecret(_)), "{err}");
        assert_eq!(b.import_from(&back, &key, &id, false).unwrap(), spki);
        let msg = b"signed in two tokens";
        for store in [&a, &b] {
            let sig = store.signer(&key).unwrap().sign(msg).unwrap();
            crate::keystore::verify(KeySpec::EcP384.signature_algorithm(), &spki, msg, &sig)
                .unwrap();
        }
        // Imported non-exportable: it does not leave again.
        let err = b.export_to(&key, &id.recipient().unwrap()).unwrap_err();
        assert!(err.to_string().contains("not exportable"), "{err}");
    }

    #[test]
    fn a_key_not_made_exportable_never_leaves_and_the_flag_cannot_be_edited_in() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let a = token(&dir, "first token passphrase");
        let key = KeyRef::new("stays").unwrap();
        a.generate(&key, KeySpec::EcP256).unwrap();
        let id = Identity::generate();
        let err = a.export_to(&key, &id.recipient().unwrap()).unwrap_err();
        assert!(err.to_string().contains("not exportable"), "{err}");
        let path = dir.join("keys").join("stays.key");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}exportable = true\n")).unwrap();
        let a =
            EmbeddedKeyStore::open(&dir, &Secret::new("first token passphrase".into())).unwrap();
        let err = a.export_to(&key, &id.recipient().unwrap()).unwrap_err();
        assert!(matches!(err, KeyStoreError::Corrupt(_)), "{err}");
    }
}
