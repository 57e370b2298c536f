//! Keys that leave a token only wrapped: export with C_WrapKey under a wrapping key the
//! security officer marked CKA_TRUSTED, import with C_UnwrapKey into another token.
//!
//! Invariants:
//! - only a key generated exportable (CKA_EXTRACTABLE and CKA_WRAP_WITH_TRUSTED true, still
//!   CKA_SENSITIVE) is ever exported, and only under a CKA_TRUSTED wrapping key; Keyhold
//!   checks both before it asks, and the token enforces them again;
//! - the wrapped bytes are opaque here: Keyhold never unwraps outside a token, and an
//!   imported key is sensitive and, unless asked, non-extractable;
//! - an imported key is used once to sign and checked against the public key that came with
//!   it before the import reports success; a mismatch destroys it again.
//!
//! The wrapping key itself is a secret shared by the tokens that exchange keys; it is made
//! and distributed by the HSM's own key ceremony (see docs/operations.md), and
//! [`install_wrapping_key`] is the security officer's step that puts it in a token, trusted.

use std::path::Path;
use std::str::FromStr;

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};

use super::pool::{self, OpError};
use super::{Pkcs11KeyStore, ec, module, new_key_id, public_key, rv};
use crate::keystore::{self, KeyRef, KeySpec, KeyStore, KeyStoreError, SpkiDer};
use crate::secret::Secret;

/// The mechanism keys are wrapped with: RFC 5649 AES key wrap with padding.
///
/// SoftHSM2 offers it as `CKM_AES_KEY_WRAP_PAD` (0x210A), the default here. PKCS#11 3.0
/// names RFC 5649 `CKM_AES_KEY_WRAP_KWP` (0x210B), which cryptoki 0.12 cannot pass to a
/// module; HSMs that offer RFC 5649 under a vendor-defined id are reached with
/// [`WrapMechanism::Vendor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WrapMechanism {
    /// `CKM_AES_KEY_WRAP_PAD` (0x210A).
    #[default]
    AesKeyWrapPad,
    /// A vendor-defined mechanism id (at least `CKM_VENDOR_DEFINED`, 0x80000000).
    Vendor(u64),
}

impl WrapMechanism {
    /// The PKCS#11 mechanism id.
    pub fn id(self) -> u64 {
        match self {
            WrapMechanism::AesKeyWrapPad => 0x210A,
            WrapMechanism::Vendor(id) => id,
        }
    }

    fn mechanism(self) -> Result<Mechanism<'static>, KeyStoreError> {
        match self {
            WrapMechanism::AesKeyWrapPad => Ok(Mechanism::AesKeyWrapPad),
            WrapMechanism::Vendor(id) => {
                let kind = std::ffi::c_ulong::try_from(id)
                    .ok()
                    .and_then(|id| MechanismType::new_vendor_defined(id).ok())
                    .ok_or_else(|| {
                        KeyStoreError::Unsupported(format!(
                            "mechanism {id:#x} is not vendor-defined (at least 0x80000000)"
                        ))
                    })?;
                Ok(Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(
                    kind, None,
                )))
            }
        }
    }
}

impl std::fmt::Display for WrapMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WrapMechanism::AesKeyWrapPad => f.write_str("CKM_AES_KEY_WRAP_PAD"),
            WrapMechanism::Vendor(id) => write!(f, "{id:#x}"),
        }
    }
}

impl FromStr for WrapMechanism {
    type Err = KeyStoreError;

    /// `CKM_AES_KEY_WRAP_PAD` (or `aes-key-wrap-pad`, `0x210a`), or a vendor-defined id in
    /// hex. `CKM_AES_KEY_WRAP_KWP` is refused with the reason.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "ckm_aes_key_wrap_pad" | "aes-key-wrap-pad" | "0x210a" => {
                return Ok(WrapMechanism::AesKeyWrapPad);
            }
            "ckm_aes_key_wrap_kwp" | "aes-key-wrap-kwp" | "0x210b" => {
                return Err(KeyStoreError::Unsupported(
                    "CKM_AES_KEY_WRAP_KWP (0x210b) cannot be passed to a module by this build \
                     (cryptoki 0.12 knows only CKM_AES_KEY_WRAP_PAD and vendor-defined ids); \
                     use CKM_AES_KEY_WRAP_PAD or your HSM's vendor-defined id for RFC 5649"
                        .into(),
                ));
            }
            _ => {}
        }
        let id = lower
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .filter(|id| *id >= 0x8000_0000)
            .ok_or_else(|| {
                KeyStoreError::Unsupported(format!(
                    "wrapping mechanism {t:?}: use CKM_AES_KEY_WRAP_PAD or a vendor-defined id such as 0x80000171"
                ))
            })?;
        Ok(WrapMechanism::Vendor(id))
    }
}

/// The file format version [`WrappedKey`] writes.
pub const WRAPPED_KEY_FORMAT: &str = "keyhold-wrapped-key-v1";

/// A private key wrapped under a token's wrapping key, with its public key and what the
/// importing token needs to know. Holds no plaintext key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKey {
    /// [`WRAPPED_KEY_FORMAT`].
    pub format: String,
    /// The key's label in the token it came from.
    pub label: String,
    /// Its type.
    pub spec: KeySpec,
    /// The DER SubjectPublicKeyInfo, lowercase hex.
    pub public_key: String,
    /// The wrapping mechanism's PKCS#11 id.
    pub mechanism: u64,
    /// The wrapping key's label (the same secret key must be in the importing token).
    pub wrapping_key: String,
    /// The C_WrapKey output, lowercase hex.
    pub wrapped: String,
}

impl WrappedKey {
    /// The public key.
    ///
    /// Fails with [`KeyStoreError::Corrupt`] if it is not a DER SPKI in hex.
    pub fn spki(&self) -> Result<SpkiDer, KeyStoreError> {
        let der = hex::decode(&self.public_key).map_err(|_| {
            KeyStoreError::Corrupt("the wrapped key's public key is not hex".into())
        })?;
        SpkiDer::parse(&der)
    }

    /// Parses a wrapped key file.
    ///
    /// Fails with [`KeyStoreError::Corrupt`] naming what is wrong.
    pub fn from_json(text: &str) -> Result<Self, KeyStoreError> {
        let w: WrappedKey = serde_json::from_str(text)
            .map_err(|e| KeyStoreError::Corrupt(format!("not a wrapped key file: {e}")))?;
        if w.format != WRAPPED_KEY_FORMAT {
            return Err(KeyStoreError::Corrupt(format!(
                "wrapped key format {:?} is not {WRAPPED_KEY_FORMAT:?}",
                w.format
            )));
        }
        Ok(w)
    }

    /// The file's text.
    ///
    /// Fails only if serialisation fails, which it cannot for this type.
    pub fn to_json(&self) -> Result<String, KeyStoreError> {
        serde_json::to_string_pretty(self)
            .map_err(|e| KeyStoreError::Corrupt(format!("serialising the wrapped key: {e}")))
    }
}

fn bool_attr(
    session: &Session,
    handle: ObjectHandle,
    kind: AttributeType,
) -> Result<bool, OpError> {
    Ok(session
        .get_attributes(handle, &[kind])?
        .into_iter()
        .any(|a| {
            matches!(
                a,
                Attribute::Extractable(true)
                    | Attribute::WrapWithTrusted(true)
                    | Attribute::Trusted(true)
                    | Attribute::Sensitive(true)
            )
        }))
}

fn one(
    session: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Option<ObjectHandle>, OpError> {
    let found = session.find_objects(&[
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    match found.as_slice() {
        [] => Ok(None),
        [h] => Ok(Some(*h)),
        many => Err(KeyStoreError::Corrupt(format!(
            "{} objects are labelled {label:?}; labels must be unique",
            many.len()
        ))
        .into()),
    }
}

fn wrapping_key(session: &Session, label: &str) -> Result<ObjectHandle, OpError> {
    one(session, ObjectClass::SECRET_KEY, label)?
        .ok_or_else(|| KeyStoreError::NotFound(format!("{label} (a secret wrapping key)")).into())
}

impl Pkcs11KeyStore {
    /// Generates a key that can leave the token, but only wrapped under a CKA_TRUSTED key:
    /// CKA_EXTRACTABLE and CKA_WRAP_WITH_TRUSTED true, CKA_SENSITIVE true.
    ///
    /// Fails as [`KeyStore::generate`].
    pub fn generate_exportable(
        &self,
        key: &KeyRef,
        spec: KeySpec,
    ) -> Result<SpkiDer, KeyStoreError> {
        self.generate_pair(key, spec, true)
    }

    /// Wraps `key` under the secret key labelled `wrapping` with `mechanism` (C_WrapKey).
    ///
    /// Fails with [`KeyStoreError::NotFound`] for an unknown key or wrapping key,
    /// [`KeyStoreError::Unsupported`] if the key is not exportable (generated without
    /// `--exportable`) or the wrapping key is not CKA_TRUSTED, and with the token's error if
    /// it refuses.
    pub fn export_wrapped(
        &self,
        key: &KeyRef,
        wrapping: &str,
        mechanism: WrapMechanism,
    ) -> Result<WrappedKey, KeyStoreError> {
        let label = key.label();
        let mech = mechanism.mechanism()?;
        // Key ceremonies act on the first healthy member; replication is the HSM's job.
        self.connection()?.run(|lease| {
            let session = lease.session;
            let private = one(session, ObjectClass::PRIVATE_KEY, label)?
                .ok_or_else(|| KeyStoreError::NotFound(label.to_owned()))?;
            // 1. The key must be exportable, and only under trusted keys.
            if !bool_attr(session, private, AttributeType::Extractable)?
                || !bool_attr(session, private, AttributeType::WrapWithTrusted)?
            {
                return Err(KeyStoreError::Unsupported(format!(
                    "key {label:?} is not exportable: it was generated without --exportable \
                     (CKA_EXTRACTABLE false) and can never leave the token; back it up with the HSM's own mechanism"
                ))
                .into());
            }
            // 2. The wrapping key must be one the security officer trusts.
            let kek = wrapping_key(session, wrapping)?;
            if !bool_attr(session, kek, AttributeType::Trusted)? {
                return Err(KeyStoreError::Unsupported(format!(
                    "wrapping key {wrapping:?} is not marked CKA_TRUSTED by the security officer \
                     (keyhold hsm install-wrapping-key); an exportable key leaves only under a trusted key"
                ))
                .into());
            }
            let read = super::private_key_attributes(session, private)?;
            let spec = read.spec?;
            let spki = public_key(session, label, &read.id, spec)?.ok_or_else(|| {
                KeyStoreError::Corrupt(format!("key {label:?} has no public key object"))
            })?;
            // 3. C_WrapKey: the token encrypts the key under the wrapping key.
            let wrapped = session.wrap_key(&mech, kek, private)?;
            Ok(WrappedKey {
                format: WRAPPED_KEY_FORMAT.into(),
                label: label.to_owned(),
                spec,
                public_key: hex::encode(spki.as_bytes()),
                mechanism: mechanism.id(),
                wrapping_key: wrapping.to_owned(),
                wrapped: hex::encode(wrapped),
            })
        })
    }

    /// Unwraps `wrapped` into this token as `key` (C_UnwrapKey under the secret key labelled
    /// `wrapping`), sensitive and, unless `extractable`, non-extractable; adds its public
    /// key object; signs once and checks the signature with the public key in the file.
    ///
    /// Fails with [`KeyStoreError::LabelExists`] if `key` exists, [`KeyStoreError::NotFound`]
    /// for an unknown wrapping key, [`KeyStoreError::Corrupt`] if the file is damaged or the
    /// unwrapped key does not match its public key (it is destroyed again), and with the
    /// token's error if it refuses.
    pub fn import_wrapped(
        &self,
        wrapped: &WrappedKey,
        key: &KeyRef,
        wrapping: &str,
        extractable: bool,
    ) -> Result<SpkiDer, KeyStoreError> {
        let label = key.label();
        let spki = wrapped.spki()?;
        let bytes = hex::decode(&wrapped.wrapped)
            .map_err(|_| KeyStoreError::Corrupt("the wrapped key is not hex".into()))?;
        let mechanism = match wrapped.mechanism {
            0x210A => WrapMechanism::AesKeyWrapPad,
            id => WrapMechanism::Vendor(id),
        };
        let mech = mechanism.mechanism()?;
        let spec = wrapped.spec;
        let point = spki.subject_public_key()?;
        let id = new_key_id()?;
        let connection = self.connection()?;
        let exclusive = connection.write_guard();
        connection.run_exclusive(&exclusive, |lease| {
            let session = lease.session;
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                if one(session, class, label)?.is_some() {
                    return Err(KeyStoreError::LabelExists(label.to_owned()).into());
                }
            }
            let kek = wrapping_key(session, wrapping)?;
            let mut template = vec![
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(extractable),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Derive(false),
                Attribute::Unwrap(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.clone()),
            ];
            if extractable {
                template.push(Attribute::WrapWithTrusted(true));
            }
            let private = session.unwrap_key(&mech, kek, &bytes, &template)?;
            let made = session.create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::Encrypt(false),
                Attribute::Wrap(false),
                Attribute::Derive(false),
                Attribute::EcParams(ec::ec_params(spec)?),
                Attribute::EcPoint(der_octet_string(&point)),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.clone()),
            ]);
            if let Err(e) = made {
                let _ = session.destroy_object(private);
                return Err(e.into());
            }
            Ok(())
        })?;
        drop(exclusive);
        // The unwrapped key must be the one its public key says.
        let check = self.signer(key).and_then(|signer| {
            let message = b"keyhold import check";
            let signature = signer.sign(message)?;
            keystore::verify(spec.signature_algorithm(), &spki, message, &signature)
        });
        if let Err(e) = check {
            let _ = self.destroy(key);
            return Err(KeyStoreError::Corrupt(format!(
                "the unwrapped key does not match the public key in the file ({e}); it was removed again"
            )));
        }
        Ok(spki)
    }
}

/// CKA_EC_POINT is the point wrapped in a DER OCTET STRING (PKCS#11 v2.40 2.3.3).
fn der_octet_string(point: &[u8]) -> Vec<u8> {
    // P-256 and P-384 points are 65 and 97 bytes: short-form length.
    let mut out = vec![0x04, point.len() as u8];
    out.extend_from_slice(point);
    out
}

/// The security officer installs the AES-256 wrapping key `value` in `token` as `label`,
/// marked CKA_TRUSTED so exportable keys may be wrapped under it: a token object the SO can
/// create (CKA_PRIVATE false), sensitive, never extractable, for wrapping and unwrapping
/// only. The same value goes into every token that exchanges keys; it comes from the key
/// ceremony (for example two officers' XORed components) and is never stored by Keyhold.
///
/// PKCS#11 v2.40 4.4: only the SO can set CKA_TRUSTED; SoftHSM2 accepts it only when the
/// object is created, so this creates the key rather than marking an existing one.
///
/// Fails with [`KeyStoreError::WrongSecret`] if the SO PIN is refused,
/// [`KeyStoreError::LabelExists`] if a secret key has this label, and with the token's
/// error if it refuses (for example while this process is logged in to the token as the
/// user).
pub fn install_wrapping_key(
    module_path: &Path,
    token: &str,
    so_pin: &Secret,
    label: &str,
    value: &zeroize::Zeroizing<[u8; 32]>,
) -> Result<(), KeyStoreError> {
    let loaded = module::load(module_path)?;
    let _only_us = loaded.write_guard();
    let slot = pool::find_token(&loaded, module_path, token)?;
    let session = loaded
        .ctx
        .open_rw_session(slot)
        .map_err(|e| rv::failed(&e))?;
    session
        .login(UserType::So, Some(&AuthPin::from(so_pin.expose())))
        .map_err(|e| match rv::rv_of(&e) {
            Some(cryptoki::error::RvError::PinIncorrect) => {
                KeyStoreError::WrongSecret("the pkcs#11 security officer pin was refused".into())
            }
            _ => rv::failed(&e),
        })?;
    let result = (|| {
        let existing = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|e| rv::failed(&e))?;
        if !existing.is_empty() {
            return Err(KeyStoreError::LabelExists(label.to_owned()));
        }
        let value = zeroize::Zeroizing::new(value.to_vec());
        session
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Trusted(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Derive(false),
                Attribute::Value(value.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map(|_| ())
            .map_err(|e| rv::failed(&e))
    })();
    let _ = session.logout();
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mechanism_names_parse_and_kwp_is_refused_with_the_reason() {
        for name in ["CKM_AES_KEY_WRAP_PAD", "aes-key-wrap-pad", "0x210A"] {
            assert_eq!(
                name.parse::<WrapMechanism>().unwrap(),
                WrapMechanism::AesKeyWrapPad
            );
        }
        assert_eq!(
            "0x80000171".parse::<WrapMechanism>().unwrap(),
            WrapMechanism::Vendor(0x8000_0171)
        );
        let err = "CKM_AES_KEY_WRAP_KWP".parse::<WrapMechanism>().unwrap_err();
        assert!(err.to_string().contains("0x210b"), "{err}");
        assert!("0x1234".parse::<WrapMechanism>().is_err());
        assert_eq!(WrapMechanism::default().id(), 0x210A);
    }
}
