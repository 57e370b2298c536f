//! The PKCS#11 key store: CA keys are generated inside a token (an HSM, or SoftHSM2 in
//! tests) and never leave it; Keyhold asks the token to sign digests.
//!
//! Invariants:
//! - private keys are created sensitive and non-extractable, and no function here asks a
//!   token for private key material;
//! - the key store logs in only as CKU_USER; the security officer appears only in
//!   [`init_token`];
//! - keys are found by label (CKA_LABEL) and named by RFC 7512 URIs; tokens by label, never
//!   by slot ID;
//! - each module is loaded once per process (see [`module_context`]), and finalized only to
//!   re-initialise a member whose module failed;
//! - a key store has one or more members (HSMs) holding the same keys; a signer's key is
//!   checked on every member that is in, and signs on one of them (see `members`).

mod config;
mod ec;
mod members;
mod module;
mod pool;
mod rv;
pub mod uri;
mod workers;
pub mod wrap;

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

pub use self::config::{
    DEFAULT_KEEPALIVE, DEFAULT_MAX_IN_FLIGHT, DEFAULT_SIGN_TIMEOUT, MemberConfig, MemberToml,
    Pkcs11Config, Pkcs11Toml,
};
use self::members::{KnownKey, Members};
use self::pool::{Connection, OpError};
pub use self::uri::{ObjectType, Pkcs11Uri, UriError};
use super::{KeyInfo, KeyRef, KeySpec, KeyStore, KeyStoreError, SigAlg, Signer, SpkiDer};
use crate::secret::Secret;

/// The process-wide cryptoki context for `module`, loading and initialising it on first use.
///
/// PKCS#11 state is per process: every key store, [`init_token`] and test code that needs
/// raw cryptoki calls share this context, which is initialised with `OS_LOCKING_OK` and never
/// finalized. Do not call `finalize` on it: that ends every session in the process.
///
/// Fails with [`KeyStoreError::Unavailable`] if the file does not exist, is not a PKCS#11
/// module, or refuses to initialise.
pub fn module_context(module: &Path) -> Result<Pkcs11, KeyStoreError> {
    Ok(module::load(module)?.ctx.clone())
}

/// Keys in one PKCS#11 token, held by one or more members (HSMs) and reached through a
/// pool of logged-in sessions per member.
#[derive(Debug)]
pub struct Pkcs11KeyStore {
    members: Arc<Members>,
}

impl Pkcs11KeyStore {
    /// For each member: loads the module, finds the token by label (and serial), checks that
    /// it offers CKM_EC_KEY_PAIR_GEN and CKM_ECDSA, and logs in as the user. A member that
    /// cannot be reached starts out of service and is probed in the background.
    ///
    /// Fails with [`KeyStoreError::Unavailable`] for a missing or unloadable module or an
    /// unknown token when no member can be reached, [`KeyStoreError::Unsupported`] for a
    /// token without ECDSA, and [`KeyStoreError::WrongSecret`] if a PIN is refused or
    /// locked; errors name the member. No error contains a PIN.
    pub fn open(config: &Pkcs11Config, user_pin: &Secret) -> Result<Self, KeyStoreError> {
        Ok(Pkcs11KeyStore {
            members: Members::open(config, user_pin)?,
        })
    }

    /// The token's label.
    pub fn token(&self) -> &str {
        &self.members.token
    }

    fn connection(&self) -> Result<Arc<Connection>, KeyStoreError> {
        self.members.first()
    }
}

/// A key as one member holds it: type, CKA_ID, public key.
type FoundKey = (KeySpec, Vec<u8>, SpkiDer);

/// The private key labelled `label` on one member: its type, CKA_ID and public key.
///
/// Fails with [`KeyStoreError::NotFound`] if the member has none, and
/// [`KeyStoreError::Corrupt`] if several private keys carry the label or the public half is
/// missing.
fn find_key(connection: &Connection, label: &str) -> Result<FoundKey, KeyStoreError> {
    connection.run(|lease| {
        let session = lease.session;
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        let handle = match found.as_slice() {
            [] => return Err(KeyStoreError::NotFound(label.to_owned()).into()),
            [one] => *one,
            many => {
                return Err(KeyStoreError::Corrupt(format!(
                    "{} private keys are labelled {label:?} in pkcs#11 token {:?}; \
                     keyhold needs labels to be unique",
                    many.len(),
                    connection.token()
                ))
                .into());
            }
        };
        let read = private_key_attributes(session, handle)?;
        let spec = read.spec?;
        let public = public_key(session, label, &read.id, spec)?.ok_or_else(|| {
            KeyStoreError::Corrupt(format!(
                "private key {label:?} in pkcs#11 token {:?} has no public key object \
                 with the same label and CKA_ID",
                connection.token()
            ))
        })?;
        Ok((spec, read.id, public))
    })
}

/// The public key of the EC private key with this label and CKA_ID, if its public half is on
/// the token.
fn public_key(
    session: &Session,
    label: &str,
    id: &[u8],
    spec: KeySpec,
) -> Result<Option<SpkiDer>, OpError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if !id.is_empty() {
        template.push(Attribute::Id(id.to_vec()));
    }
    let Some(&handle) = session.find_objects(&template)?.first() else {
        return Ok(None);
    };
    let point = session
        .get_attributes(handle, &[AttributeType::EcPoint])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(point) => Some(point),
            _ => None,
        })
        .ok_or_else(|| {
            KeyStoreError::Corrupt(format!("public key {label:?} has no CKA_EC_POINT"))
        })?;
    Ok(Some(ec::spki(
        spec,
        &ec::point_from_ec_point(&point, spec)?,
    )?))
}

/// What Keyhold reads from a private key object: label, CKA_ID and curve.
struct PrivateKeyAttributes {
    label: Option<String>,
    id: Vec<u8>,
    spec: Result<KeySpec, KeyStoreError>,
}

fn private_key_attributes(
    session: &Session,
    handle: cryptoki::object::ObjectHandle,
) -> Result<PrivateKeyAttributes, OpError> {
    let mut read = PrivateKeyAttributes {
        label: None,
        id: Vec::new(),
        spec: Err(KeyStoreError::Unsupported(
            "private key that is not an ec key with a named curve".into(),
        )),
    };
    let mut is_ec = false;
    let mut params = None;
    for attribute in session.get_attributes(
        handle,
        &[
            AttributeType::Label,
            AttributeType::Id,
            AttributeType::KeyType,
            AttributeType::EcParams,
        ],
    )? {
        match attribute {
            Attribute::Label(label) => read.label = String::from_utf8(label).ok(),
            Attribute::Id(id) => read.id = id,
            Attribute::KeyType(kind) => is_ec = kind == KeyType::EC,
            Attribute::EcParams(p) => params = Some(p),
            _ => {}
        }
    }
    if let (true, Some(params)) = (is_ec, params) {
        read.spec = ec::spec_from_ec_params(&params);
    }
    Ok(read)
}

/// Destroys every key object with this label and CKA_ID (both halves of one generated pair).
fn destroy_pair(session: &Session, label: &str, id: &[u8]) -> Result<(), OpError> {
    for class in [ObjectClass::PUBLIC_KEY, ObjectClass::PRIVATE_KEY] {
        for handle in session.find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ])? {
            session.destroy_object(handle)?;
        }
    }
    Ok(())
}

/// A fresh CKA_ID for a new key pair: 16 random bytes, so that the halves of one pair can
/// be told apart from any other object that ever carried the same label.
fn new_key_id() -> Result<Vec<u8>, KeyStoreError> {
    let mut id = vec![0u8; 16];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| {
        KeyStoreError::Unavailable("the system random number generator failed".into())
    })?;
    Ok(id)
}

impl Pkcs11KeyStore {
    /// [`KeyStore::generate`], and with `exportable` a key that can leave the token wrapped
    /// (see [`wrap`]).
    fn generate_pair(
        &self,
        key: &KeyRef,
        spec: KeySpec,
        exportable: bool,
    ) -> Result<SpkiDer, KeyStoreError> {
        let label = key.label();
        let label_bytes = label.as_bytes().to_vec();
        let params = ec::ec_params(spec)?;
        let id = new_key_id()?;
        // PKCS#11 v2.40 curr. mech. 2.3.3/2.3.4: EC public and private key attributes.
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
            Attribute::EcParams(params),
            Attribute::Label(label_bytes.clone()),
            Attribute::Id(id.clone()),
        ];
        // PKCS#11 v2.40 4.9: sensitive from birth, and non-extractable unless asked, so the
        // token also sets CKA_ALWAYS_SENSITIVE (and CKA_NEVER_EXTRACTABLE); signing is its
        // only use. An exportable key can leave only wrapped under a key the security
        // officer marked CKA_TRUSTED (CKA_WRAP_WITH_TRUSTED, read-only once true).
        let mut private_template = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(exportable),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            Attribute::Unwrap(false),
            Attribute::Label(label_bytes.clone()),
            Attribute::Id(id.clone()),
        ];
        if exportable {
            private_template.push(Attribute::WrapWithTrusted(true));
        }
        // Set while a pair this call generated is on the token but not yet accounted for:
        // a retry after a reconnect, or the clean-up below, destroys it.
        let pending = Cell::new(false);
        let connection = self.connection()?;
        let exclusive = connection.write_guard();

        let result = connection.run_exclusive(&exclusive, |lease| {
            let session = lease.session;
            if pending.get() {
                destroy_pair(session, label, &id)?;
                pending.set(false);
            }
            // 1. Refuse a label that names a key already (the store stays unchanged).
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                let existing = session.find_objects(&[
                    Attribute::Class(class),
                    Attribute::Label(label_bytes.clone()),
                ])?;
                if !existing.is_empty() {
                    return Err(KeyStoreError::LabelExists(label.to_owned()).into());
                }
            }
            // 2. Generate the pair inside the token.
            let (public, _private) = session.generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public_template,
                &private_template,
            )?;
            pending.set(true);
            // 3. Read the public point back and build the SPKI.
            let point = session
                .get_attributes(public, &[AttributeType::EcPoint])?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(point) => Some(point),
                    _ => None,
                })
                .ok_or_else(|| {
                    KeyStoreError::Corrupt("the new public key has no CKA_EC_POINT".into())
                })?;
            let spki = ec::spki(spec, &ec::point_from_ec_point(&point, spec)?)?;
            pending.set(false);
            Ok(spki)
        });

        match result {
            Ok(spki) => Ok(spki),
            // No orphan keys: a pair that exists without a usable public key goes again.
            Err(err) if pending.get() => match connection
                .run_exclusive(&exclusive, |lease| destroy_pair(lease.session, label, &id))
            {
                Ok(()) => Err(err),
                Err(cleanup) => Err(KeyStoreError::Pkcs11(format!(
                    "{err}; destroying the half-generated key {label:?} also failed: {cleanup}"
                ))),
            },
            Err(err) => Err(err),
        }
    }
}

impl KeyStore for Pkcs11KeyStore {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn generate(&self, key: &KeyRef, spec: KeySpec) -> Result<SpkiDer, KeyStoreError> {
        self.generate_pair(key, spec, false)
    }

    /// Finds the key on every member that is in; fails with [`KeyStoreError::Corrupt`]
    /// naming a member that lacks it or holds a different key under the label.
    fn generate_exportable(&self, key: &KeyRef, spec: KeySpec) -> Result<SpkiDer, KeyStoreError> {
        Pkcs11KeyStore::generate_exportable(self, key, spec)
    }

    fn signer(&self, key: &KeyRef) -> Result<Arc<dyn Signer>, KeyStoreError> {
        let known = self.members.key(key.label())?;
        Ok(Arc::new(Pkcs11Signer {
            members: Arc::clone(&self.members),
            algorithm: known.spec.signature_algorithm(),
            public_key: known.public.clone(),
            key: known,
        }))
    }

    /// Every EC private key Keyhold can use: labels that are valid [`KeyRef`]s, curves P-256
    /// and P-384, with their public half on the token. Other objects (keys of other
    /// applications sharing the token) are left out.
    fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        let connection = self.connection()?;
        let mut keys = connection.run(|lease| {
            let session = lease.session;
            let mut keys = Vec::new();
            for handle in session.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC),
            ])? {
                let read = private_key_attributes(session, handle)?;
                let (Some(label), Ok(spec)) = (read.label, read.spec) else {
                    continue;
                };
                let Ok(key) = KeyRef::new(label) else {
                    continue;
                };
                let Some(public_key) = public_key(session, key.label(), &read.id, spec)? else {
                    continue;
                };
                keys.push(KeyInfo {
                    uri: self.uri(&key),
                    key,
                    spec,
                    public_key,
                });
            }
            Ok(keys)
        })?;
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(keys)
    }

    fn destroy(&self, key: &KeyRef) -> Result<(), KeyStoreError> {
        let label = key.label();
        let connection = self.connection()?;
        let exclusive = connection.write_guard();
        connection.run_exclusive(&exclusive, |lease| {
            let session = lease.session;
            let find = |class| {
                session.find_objects(&[
                    Attribute::Class(class),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
            };
            let private = find(ObjectClass::PRIVATE_KEY)?;
            let public = find(ObjectClass::PUBLIC_KEY)?;
            if private.is_empty() && public.is_empty() {
                return Err(KeyStoreError::NotFound(label.to_owned()).into());
            }
            // Public halves first: if destroying the private key then fails, a retry still
            // finds it.
            for handle in public.into_iter().chain(private) {
                session.destroy_object(handle)?;
            }
            Ok(())
        })?;
        connection.forget_key(label);
        self.members.forget(label);
        Ok(())
    }

    fn uri(&self, key: &KeyRef) -> String {
        Pkcs11Uri::private_key(self.token(), key.label()).to_string()
    }

    fn key_from_uri(&self, uri: &str) -> Result<KeyRef, KeyStoreError> {
        let parsed = Pkcs11Uri::parse(uri)
            .map_err(|e| KeyStoreError::Unsupported(format!("key uri: {e}")))?;
        // A PIN never belongs in the config: refuse query attributes (pin-value, pin-source,
        // module-path ...) rather than echo or use them.
        if !parsed.query.is_empty() {
            return Err(KeyStoreError::Unsupported(
                "key uris in keyhold.toml take no query attributes (no pin-value or module-path): give the PIN with KEYHOLD_PKCS11_PIN or --pin-file".into(),
            ));
        }
        // RFC 7512 2.3: an absent attribute matches any value; a present one must match.
        if let Some(token) = parsed.token.as_ref().filter(|t| *t != self.token()) {
            return Err(KeyStoreError::Unsupported(format!(
                "key {uri:?} names token {token:?}, but the key store is token {:?}",
                self.token()
            )));
        }
        let object = parsed.object.ok_or_else(|| {
            KeyStoreError::Unsupported(format!("key {uri:?} has no object= attribute"))
        })?;
        KeyRef::new(object)
    }

    fn members(&self) -> Vec<crate::keystore::MemberStatus> {
        self.members.status()
    }

    fn watch_members(&self, observer: Arc<dyn crate::keystore::MemberObserver>) {
        self.members.watch(observer);
    }
}

/// A private key in a PKCS#11 token, signing on one of the key store's members.
pub struct Pkcs11Signer {
    members: Arc<Members>,
    /// The key, with its CKA_ID on each member: a key generated later under the same label
    /// is a different key.
    key: Arc<KnownKey>,
    algorithm: SigAlg,
    public_key: SpkiDer,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("key", &self.key.label)
            .field("algorithm", &self.algorithm)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl Signer for Pkcs11Signer {
    fn algorithm(&self) -> SigAlg {
        self.algorithm
    }

    fn public_key(&self) -> &SpkiDer {
        &self.public_key
    }

    /// Hashes on the host and signs the digest with CKM_ECDSA: portable, and the only
    /// choice on SoftHSM2 2.6, which lacks CKM_ECDSA_SHA384.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let spec = self.algorithm.key_spec();
        let digest = ec::digest(spec, message);
        let raw = self.members.sign(&self.key, &digest)?;
        ec::raw_signature_to_der(&raw, spec)
    }

    /// Out only when no member is in: a member being probed back counts as out.
    fn ready(&self) -> Result<(), KeyStoreError> {
        self.members.first().map(|_| ())
    }
}

/// Initialises a token in a free slot of `module` and sets its user PIN: the security
/// officer's part of the key ceremony.
///
/// Steps: find a slot whose token is not initialised (SoftHSM2 always offers one), C_InitToken
/// with the SO PIN, find the token again by label (slot IDs change), open a read/write
/// session, log in as the SO, C_InitPIN, log out. The SO never signs.
///
/// Fails with [`KeyStoreError::Unsupported`] for a label that is empty, longer than 32
/// bytes or padded with spaces, [`KeyStoreError::Unavailable`] if a token with this label
/// exists already or no slot is free, and [`KeyStoreError::WrongSecret`] if a PIN is
/// refused (for example, outside the token's length range). No error contains a PIN.
pub fn init_token(
    module: &Path,
    token_label: &str,
    so_pin: &Secret,
    user_pin: &Secret,
) -> Result<(), KeyStoreError> {
    // PKCS#11 v2.40 3.2: CK_TOKEN_INFO.label is 32 bytes, blank padded.
    if token_label.is_empty() || token_label.len() > 32 || token_label.trim() != token_label {
        return Err(KeyStoreError::Unsupported(format!(
            "token label {token_label:?}: use 1 to 32 bytes without leading or trailing spaces"
        )));
    }
    let loaded = module::load(module)?;
    let ctx = &loaded.ctx;
    let _only_us = loaded.write_guard();

    // 1. Refuse a label that is taken: two tokens with one label would make lookups ambiguous.
    if pool::slot_by_label(&loaded, token_label)?.is_some() {
        return Err(KeyStoreError::Unavailable(format!(
            "a pkcs#11 token labelled {token_label:?} already exists in module {}; \
             choose another label",
            module.display()
        )));
    }
    // 2. A slot whose token is not initialised (CKF_TOKEN_INITIALIZED off).
    let mut free = None;
    for slot in ctx.get_slots_with_token().map_err(|e| rv::failed(&e))? {
        let info = ctx.get_token_info(slot).map_err(|e| rv::failed(&e))?;
        if !info.token_initialized() {
            free = Some((slot, info.min_pin_length(), info.max_pin_length()));
            break;
        }
    }
    let Some((free, min_pin, max_pin)) = free else {
        return Err(KeyStoreError::Unavailable(format!(
            "pkcs#11 module {} has no slot with an uninitialised token",
            module.display()
        )));
    };
    let pin_error = |who: &str, err: Error| match err {
        Error::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _) => {
            KeyStoreError::WrongSecret(format!("the pkcs#11 {who} pin was refused"))
        }
        Error::Pkcs11(RvError::PinLenRange, _) => KeyStoreError::WrongSecret(format!(
            "the pkcs#11 {who} pin must be {min_pin} to {max_pin} characters long"
        )),
        Error::Pkcs11(RvError::PinLocked, _) => {
            KeyStoreError::WrongSecret(format!("the pkcs#11 {who} pin is locked"))
        }
        other => rv::failed(&other),
    };

    // 3. C_InitToken with the SO PIN.
    let so = AuthPin::from(so_pin.expose());
    ctx.init_token(free, &so, token_label)
        .map_err(|e| pin_error("security officer", e))?;
    // 4. Slot IDs may change when a token is initialised: find it again by label.
    let slot = pool::find_token(&loaded, module, token_label)?;
    // 5. As the SO, set the user PIN, then log out (closing the session would too).
    let session = ctx.open_rw_session(slot).map_err(|e| rv::failed(&e))?;
    session
        .login(UserType::So, Some(&so))
        .map_err(|e| pin_error("security officer", e))?;
    session
        .init_pin(&AuthPin::from(user_pin.expose()))
        .map_err(|e| pin_error("user", e))?;
    session.logout().map_err(|e| rv::failed(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn config_debug_has_no_secret_and_a_sane_pool() {
        let mut config = Pkcs11Config::new("/usr/lib/softhsm/libsofthsm2.so".into(), "ca".into());
        config.members[0].pin = Some(Secret::new("hunter2".into()));
        assert!(config.sessions >= 2);
        assert!(!format!("{config:?}").contains("hunter2"));
        let debug = format!("{config:?}");
        assert!(debug.contains("libsofthsm2.so") && debug.contains("\"ca\""));
    }

    #[test]
    fn missing_module_says_where_to_look() {
        let err = module_context(Path::new("/nonexistent/libnothing.so")).unwrap_err();
        assert!(matches!(err, KeyStoreError::Unavailable(_)));
        assert_eq!(
            err.to_string(),
            "pkcs#11 module /nonexistent/libnothing.so not found: check keystore.module in keyhold.toml"
        );
    }

    #[test]
    fn refuses_token_labels_pkcs11_cannot_hold() {
        let pin = Secret::new("1234".into());
        for label in ["", " padded", "a-label-that-is-longer-than-32-bytes"] {
            let err = init_token(Path::new("/nonexistent.so"), label, &pin, &pin).unwrap_err();
            assert!(
                matches!(err, KeyStoreError::Unsupported(_)),
                "{label:?}: {err}"
            );
        }
    }
}
