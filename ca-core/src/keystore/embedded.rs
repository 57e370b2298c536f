//! The embedded token: Keyhold's zero-set-up key store.
//!
//! Invariant: a private key exists in plaintext only inside this process's memory, never on
//! disk and never in a return value. On disk each key is one file, `keys/<label>.key`
//! (mode 0600), holding its label, type and public key in the clear and its PKCS#8 private
//! key sealed with AES-256-GCM. The sealing key is derived from the token passphrase with
//! Argon2id (RFC 9106) and a per-token salt. The AEAD's associated data is the label, type
//! and public key, so a file that was edited, truncated, or swapped for another key's file
//! fails to open instead of yielding the wrong key.
//!
//! A key generated exportable says so in its file, and the flag is part of the associated
//! data, so it cannot be switched on by editing the file; such a key can leave only
//! re-encrypted to an age recipient ([`transfer`]).
//!
//! `token.toml` holds the KDF parameters, the salt and a sealed check value, so that a wrong
//! passphrase is told apart from a damaged key file.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{KeyInfo, KeyRef, KeySpec, KeyStore, KeyStoreError, SigAlg, Signer, SpkiDer};
use crate::secret::Secret;

pub mod transfer;

const TOKEN_FILE: &str = "token.toml";
const KEYS_DIR: &str = "keys";
const CHECK_PLAINTEXT: &[u8] = b"keyhold embedded token v1";
const CHECK_AAD: &[u8] = b"keyhold-embedded-token-check-v1";
const KEY_AAD_PREFIX: &[u8] = b"keyhold-embedded-key-v1";
/// Shortest passphrase accepted for a new token.
pub const MIN_PASSPHRASE_LEN: usize = 12;

/// Argon2id cost parameters, stored in `token.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// RFC 9106 4's second recommended option: 64 MiB, 3 passes, 4 lanes.
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 4,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests only: a token made with them resists no attack.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            m_cost_kib: 256,
            t_cost: 1,
            p_cost: 1,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    version: u32,
    kdf: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
    check: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    label: String,
    spec: KeySpec,
    public_key: String,
    sealed: String,
    /// Made with `generate_exportable`: may leave re-encrypted to a recipient.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    exportable: bool,
}

/// Keys sealed under a passphrase in a directory. See the module docs.
pub struct EmbeddedKeyStore {
    dir: PathBuf,
    kek: LessSafeKey,
    rng: SystemRandom,
    signers: RwLock<HashMap<KeyRef, Arc<EmbeddedSigner>>>,
}

impl std::fmt::Debug for EmbeddedKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl EmbeddedKeyStore {
    /// Creates a new, empty token in `dir` (which must not hold one already) and opens it.
    ///
    /// Fails if a token exists there, if the passphrase is shorter than
    /// [`MIN_PASSPHRASE_LEN`], or if the directory cannot be written.
    pub fn create(
        dir: &Path,
        passphrase: &Secret,
        params: KdfParams,
    ) -> Result<Self, KeyStoreError> {
        if passphrase.expose().chars().count() < MIN_PASSPHRASE_LEN {
            return Err(KeyStoreError::WrongSecret(format!(
                "the embedded token passphrase must be at least {MIN_PASSPHRASE_LEN} characters"
            )));
        }
        let token_path = dir.join(TOKEN_FILE);
        if token_path.exists() {
            return Err(KeyStoreError::Unavailable(format!(
                "{} already holds an embedded token",
                dir.display()
            )));
        }
        create_private_dir(dir)?;
        create_private_dir(&dir.join(KEYS_DIR))?;

        let rng = SystemRandom::new();
        let mut salt = [0u8; 16];
        fill(&rng, &mut salt)?;
        let kek = derive_kek(passphrase, &salt, params)?;
        let check = seal(&kek, &rng, CHECK_PLAINTEXT, CHECK_AAD)?;
        let file = TokenFile {
            version: 1,
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            check: hex::encode(check),
        };
        let text = toml::to_string(&file)
            .map_err(|e| KeyStoreError::Corrupt(format!("cannot encode token file: {e}")))?;
        write_new_private_file(&token_path, text.as_bytes())?;
        Ok(EmbeddedKeyStore {
            dir: dir.to_path_buf(),
            kek,
            rng,
            signers: RwLock::new(HashMap::new()),
        })
    }

    /// Opens the token in `dir`.
    ///
    /// Fails with [`KeyStoreError::WrongSecret`] for a wrong passphrase, and with
    /// [`KeyStoreError::Unavailable`] if `dir` holds no token.
    pub fn open(dir: &Path, passphrase: &Secret) -> Result<Self, KeyStoreError> {
        let token_path = dir.join(TOKEN_FILE);
        let text = match fs::read_to_string(&token_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyStoreError::Unavailable(format!(
                    "no embedded token in {}: run `keyhold init` to create one",
                    dir.display()
                )));
            }
            Err(e) => {
                return Err(KeyStoreError::io(
                    format!("reading {}", token_path.display()),
                    e,
                ));
            }
        };
        let file: TokenFile = toml::from_str(&text).map_err(|e| {
            KeyStoreError::Corrupt(format!(
                "{} is damaged: {}",
                token_path.display(),
                e.message()
            ))
        })?;
        if file.version != 1 || file.kdf != "argon2id" {
            return Err(KeyStoreError::Unsupported(format!(
                "{}: token version {} with kdf {:?}",
                token_path.display(),
                file.version,
                file.kdf
            )));
        }
        // A token file is not trusted to make opening it arbitrarily expensive.
        let p = file.params;
        if p.m_cost_kib > 4 * 1024 * 1024 || p.t_cost > 16 || p.p_cost > 16 {
            return Err(KeyStoreError::Unsupported(format!(
                "{}: argon2id parameters beyond the supported maximum (4 GiB, 16 passes, 16 lanes)",
                token_path.display()
            )));
        }
        let salt = unhex(&file.salt, &token_path)?;
        let check = unhex(&file.check, &token_path)?;
        let kek = derive_kek(passphrase, &salt, file.params)?;
        open_sealed(&kek, &check, CHECK_AAD).map_err(|_| {
            KeyStoreError::WrongSecret(format!(
                "wrong passphrase for the embedded token in {}",
                dir.display()
            ))
        })?;
        Ok(EmbeddedKeyStore {
            dir: dir.to_path_buf(),
            kek,
            rng: SystemRandom::new(),
            signers: RwLock::new(HashMap::new()),
        })
    }

    fn key_path(&self, key: &KeyRef) -> PathBuf {
        self.dir.join(KEYS_DIR).join(format!("{}.key", key.label()))
    }

    /// Reads and checks a key file's clear part; the sealed part is opened by `load_signer`.
    fn read_key_file(&self, key: &KeyRef) -> Result<(KeyFile, SpkiDer), KeyStoreError> {
        let path = self.key_path(key);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyStoreError::NotFound(key.label().into()));
            }
            Err(e) => return Err(KeyStoreError::io(format!("reading {}", path.display()), e)),
        };
        let tampered = |why: &str| {
            KeyStoreError::Corrupt(format!(
                "key file {} is damaged or was altered ({why}); restore it from a backup",
                path.display()
            ))
        };
        let file: KeyFile = toml::from_str(&text).map_err(|e| tampered(e.message()))?;
        if file.version != 1 {
            return Err(tampered("unknown version"));
        }
        // A file copied over another key's name still names its own label inside.
        if file.label != key.label() {
            return Err(tampered("it holds the key labelled a different name"));
        }
        let spki = hex::decode(&file.public_key)
            .ok()
            .and_then(|der| SpkiDer::parse(&der).ok())
            .ok_or_else(|| tampered("public key unreadable"))?;
        Ok((file, spki))
    }

    /// Seals `pkcs8` (or a new key) as `key`; fails if the label is taken.
    fn store_new(
        &self,
        key: &KeyRef,
        spec: KeySpec,
        pkcs8: Option<&[u8]>,
        exportable: bool,
    ) -> Result<SpkiDer, KeyStoreError> {
        let path = self.key_path(key);
        if path.exists() {
            return Err(KeyStoreError::LabelExists(key.label().into()));
        }
        let generated;
        let pkcs8 = match pkcs8 {
            Some(given) => given,
            None => {
                generated = EcdsaKeyPair::generate_pkcs8(signing_alg(spec), &self.rng)
                    .map_err(|_| KeyStoreError::Unavailable("key generation failed".into()))?;
                generated.as_ref()
            }
        };
        let key_pair = EcdsaKeyPair::from_pkcs8(signing_alg(spec), pkcs8)
            .map_err(|_| KeyStoreError::Corrupt("not a private key of this type".into()))?;
        let spki = spki_of(&key_pair)?;
        let sealed = seal(
            &self.kek,
            &self.rng,
            pkcs8,
            &key_aad(key, spec, &spki, exportable),
        )?;
        let file = KeyFile {
            version: 1,
            label: key.label().into(),
            spec,
            public_key: hex::encode(spki.as_bytes()),
            sealed: hex::encode(sealed),
            exportable,
        };
        let text = toml::to_string(&file)
            .map_err(|e| KeyStoreError::Corrupt(format!("cannot encode key file: {e}")))?;
        write_new_private_file(&path, text.as_bytes()).map_err(|e| match e {
            KeyStoreError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                KeyStoreError::LabelExists(key.label().into())
            }
            other => other,
        })?;
        Ok(spki)
    }

    fn load_signer(&self, key: &KeyRef) -> Result<Arc<EmbeddedSigner>, KeyStoreError> {
        let (file, spki) = self.read_key_file(key)?;
        let path = self.key_path(key);
        let tampered = || {
            KeyStoreError::Corrupt(format!(
                "key file {} is damaged or was altered (integrity check failed); restore it from a backup",
                path.display()
            ))
        };
        let sealed = hex::decode(&file.sealed).map_err(|_| tampered())?;
        let aad = key_aad(key, file.spec, &spki, file.exportable);
        let pkcs8 = Zeroizing::new(open_sealed(&self.kek, &sealed, &aad).map_err(|_| tampered())?);
        let key_pair =
            EcdsaKeyPair::from_pkcs8(signing_alg(file.spec), &pkcs8).map_err(|_| tampered())?;
        // Belt and braces: the sealed key must be the one the clear public key names.
        if spki_of(&key_pair)? != spki {
            return Err(tampered());
        }
        Ok(Arc::new(EmbeddedSigner {
            label: key.clone(),
            alg: file.spec.signature_algorithm(),
            public_key: spki,
            key_pair,
            rng: SystemRandom::new(),
        }))
    }
}

impl KeyStore for EmbeddedKeyStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn generate(&self, key: &KeyRef, spec: KeySpec) -> Result<SpkiDer, KeyStoreError> {
        self.store_new(key, spec, None, false)
    }

    fn generate_exportable(&self, key: &KeyRef, spec: KeySpec) -> Result<SpkiDer, KeyStoreError> {
        self.store_new(key, spec, None, true)
    }

    fn signer(&self, key: &KeyRef) -> Result<Arc<dyn Signer>, KeyStoreError> {
        if let Some(signer) = self
            .signers
            .read()
            .map_err(|_| poisoned())?
            .get(key)
            .cloned()
        {
            return Ok(signer);
        }
        let signer = self.load_signer(key)?;
        self.signers
            .write()
            .map_err(|_| poisoned())?
            .insert(key.clone(), signer.clone());
        Ok(signer)
    }

    fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        let keys_dir = self.dir.join(KEYS_DIR);
        let entries = fs::read_dir(&keys_dir)
            .map_err(|e| KeyStoreError::io(format!("listing {}", keys_dir.display()), e))?;
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| KeyStoreError::io(format!("listing {}", keys_dir.display()), e))?;
            let name = entry.file_name();
            let Some(label) = name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue; // temporary files and strangers are not keys
            };
            let Ok(key) = KeyRef::new(label) else {
                continue;
            };
            let (file, public_key) = self.read_key_file(&key)?;
            keys.push(KeyInfo {
                uri: self.uri(&key),
                key,
                spec: file.spec,
                public_key,
            });
        }
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(keys)
    }

    fn destroy(&self, key: &KeyRef) -> Result<(), KeyStoreError> {
        let path = self.key_path(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyStoreError::NotFound(key.label().into()));
            }
            Err(e) => return Err(KeyStoreError::io(format!("removing {}", path.display()), e)),
        }
        sync_dir(&self.dir.join(KEYS_DIR))?;
        self.signers.write().map_err(|_| poisoned())?.remove(key);
        Ok(())
    }

    fn uri(&self, key: &KeyRef) -> String {
        format!("embedded:{}", key.label())
    }
}

/// A private key of the embedded token, decrypted in memory.
pub struct EmbeddedSigner {
    label: KeyRef,
    alg: SigAlg,
    public_key: SpkiDer,
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for EmbeddedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedSigner")
            .field("label", &self.label)
            .field("alg", &self.alg)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl Signer for EmbeddedSigner {
    fn algorithm(&self) -> SigAlg {
        self.alg
    }

    fn public_key(&self) -> &SpkiDer {
        &self.public_key
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let signature = self.key_pair.sign(&self.rng, message).map_err(|_| {
            KeyStoreError::Unavailable(format!("signing with {} failed", self.label))
        })?;
        Ok(signature.as_ref().to_vec())
    }
}

fn signing_alg(spec: KeySpec) -> &'static EcdsaSigningAlgorithm {
    match spec {
        KeySpec::EcP256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
        KeySpec::EcP384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
    }
}

fn spki_of(key_pair: &EcdsaKeyPair) -> Result<SpkiDer, KeyStoreError> {
    let der = key_pair
        .public_key()
        .as_der()
        .map_err(|_| KeyStoreError::Corrupt("cannot encode public key".into()))?;
    SpkiDer::parse(der.as_ref())
}

/// Associated data binding a sealed key to its label, type and public key.
fn key_aad(key: &KeyRef, spec: KeySpec, spki: &SpkiDer, exportable: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(KEY_AAD_PREFIX.len() + 96 + spki.as_bytes().len());
    let flag: &[u8] = if exportable { b"exportable" } else { b"" };
    for part in [
        KEY_AAD_PREFIX,
        key.label().as_bytes(),
        spec.as_str().as_bytes(),
        flag,
    ] {
        if part.is_empty() {
            // Files from before the flag (never exportable) keep their associated data.
            continue;
        }
        aad.extend_from_slice(part);
        aad.push(0);
    }
    aad.extend_from_slice(spki.as_bytes());
    aad
}

fn derive_kek(
    passphrase: &Secret,
    salt: &[u8],
    p: KdfParams,
) -> Result<LessSafeKey, KeyStoreError> {
    let params = argon2::Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| KeyStoreError::Unsupported(format!("argon2id parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.expose().as_bytes(), salt, key.as_mut())
        .map_err(|e| KeyStoreError::Unsupported(format!("argon2id: {e}")))?;
    let unbound = UnboundKey::new(&AES_256_GCM, key.as_ref())
        .map_err(|_| KeyStoreError::Unsupported("aes-256-gcm key".into()))?;
    Ok(LessSafeKey::new(unbound))
}

/// AES-256-GCM with a random 96-bit nonce; output is nonce || ciphertext || tag.
fn seal(
    key: &LessSafeKey,
    rng: &SystemRandom,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, KeyStoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill(rng, &mut nonce)?;
    let mut out = Zeroizing::new(plaintext.to_vec());
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut *out,
    )
    .map_err(|_| KeyStoreError::Unavailable("sealing failed".into()))?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&out);
    Ok(sealed)
}

fn open_sealed(key: &LessSafeKey, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, ()> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(());
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ())?;
    let mut buf = body.to_vec();
    let plain_len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| ())?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

fn fill(rng: &SystemRandom, buf: &mut [u8]) -> Result<(), KeyStoreError> {
    rng.fill(buf)
        .map_err(|_| KeyStoreError::Unavailable("the system random generator failed".into()))
}

fn unhex(text: &str, path: &Path) -> Result<Vec<u8>, KeyStoreError> {
    hex::decode(text).map_err(|_| KeyStoreError::Corrupt(format!("{} is damaged", path.display())))
}

fn poisoned() -> KeyStoreError {
    KeyStoreError::Corrupt("embedded token state poisoned by an earlier panic".into())
}

fn create_private_dir(dir: &Path) -> Result<(), KeyStoreError> {
    fs::create_dir_all(dir)
        .map_err(|e| KeyStoreError::io(format!("creating {}", dir.display()), e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| KeyStoreError::io(format!("restricting {}", dir.display()), e))
}

/// Writes a file that must not exist yet, mode 0600, durably: a temporary file is written and
/// synced, then hard-linked into place (which fails if the name is taken, even against another
/// process), then the directory is synced.
fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyStoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut nonce = [0u8; 8];
    fill(&SystemRandom::new(), &mut nonce)?;
    let tmp = dir.join(format!(".tmp-{}", hex::encode(nonce)));
    let ctx = |what: &str| format!("{what} {}", path.display());
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| KeyStoreError::io(ctx("writing"), e))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| KeyStoreError::io(ctx("writing"), e))?;
        fs::hard_link(&tmp, path).map_err(|e| KeyStoreError::io(ctx("creating"), e))
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), KeyStoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| KeyStoreError::io(format!("syncing {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass() -> Secret {
        Secret::new("correct horse battery staple".into())
    }

    #[test]
    fn short_passphrase_is_refused_for_a_new_token() {
        let dir = tempfile::tempdir().unwrap();
        let err = EmbeddedKeyStore::create(
            &dir.path().join("t"),
            &Secret::new("short".into()),
            KdfParams::insecure_for_tests(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("at least 12"), "{err}");
        assert!(!dir.path().join("t").exists());
    }

    #[test]
    fn key_files_and_token_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        let store = EmbeddedKeyStore::create(&t, &pass(), KdfParams::insecure_for_tests()).unwrap();
        store
            .generate(&KeyRef::new("k").unwrap(), KeySpec::EcP256)
            .unwrap();
        for p in [t.join("token.toml"), t.join("keys/k.key")] {
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        assert_eq!(
            fs::metadata(&t).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn a_token_is_not_created_twice() {
        let dir = tempfile::tempdir().unwrap();
        EmbeddedKeyStore::create(dir.path(), &pass(), KdfParams::insecure_for_tests()).unwrap();
        let err = EmbeddedKeyStore::create(dir.path(), &pass(), KdfParams::insecure_for_tests())
            .unwrap_err();
        assert!(err.to_string().contains("already holds"), "{err}");
    }

    #[test]
    fn key_file_holds_no_plaintext_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedKeyStore::create(dir.path(), &pass(), KdfParams::insecure_for_tests()).unwrap();
        store
            .generate(&KeyRef::new("k").unwrap(), KeySpec::EcP384)
            .unwrap();
        let text = fs::read_to_string(dir.path().join("keys/k.key")).unwrap();
        // A PKCS#8 EC key starts with SEQUENCE, INTEGER 0, SEQUENCE { id-ecPublicKey ... }.
        assert!(!text.contains("020100301006072a8648ce3d0201"), "{text}");
    }
}
