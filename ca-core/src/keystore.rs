//! Key stores: modules that hold CA private keys and sign with them.
//!
//! Invariant: no function in this module or its backends returns private key material. A
//! [`KeyStore`] hands out [`Signer`]s, which sign bytes and expose only the public key.
//! Generating and destroying keys are operations of the CLI (the key ceremony); the server
//! only ever asks for signers.

pub mod embedded;
pub mod pkcs11;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::secret::Secret;

/// The key types Keyhold generates for its CAs and responders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySpec {
    /// ECDSA over NIST P-256, signing with SHA-256.
    #[serde(rename = "p256")]
    EcP256,
    /// ECDSA over NIST P-384, signing with SHA-384 (the default for CA keys).
    #[serde(rename = "p384")]
    EcP384,
}

impl KeySpec {
    /// The signature algorithm a key of this type signs with.
    pub fn signature_algorithm(self) -> SigAlg {
        match self {
            KeySpec::EcP256 => SigAlg::EcdsaP256Sha256,
            KeySpec::EcP384 => SigAlg::EcdsaP384Sha384,
        }
    }

    /// The name used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySpec::EcP256 => "p256",
            KeySpec::EcP384 => "p384",
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeySpec {
    type Err = KeyStoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ec-p256" => Ok(KeySpec::EcP256),
            "p384" | "p-384" | "ec-p384" => Ok(KeySpec::EcP384),
            other => Err(KeyStoreError::Unsupported(format!(
                "key type {other:?} (supported: p256, p384)"
            ))),
        }
    }
}

/// A signature algorithm, as it appears in an X.509 AlgorithmIdentifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigAlg {
    /// ecdsa-with-SHA256 (RFC 5758), on a P-256 key.
    EcdsaP256Sha256,
    /// ecdsa-with-SHA384 (RFC 5758), on a P-384 key.
    EcdsaP384Sha384,
}

impl SigAlg {
    /// The key type that signs with this algorithm.
    pub fn key_spec(self) -> KeySpec {
        match self {
            SigAlg::EcdsaP256Sha256 => KeySpec::EcP256,
            SigAlg::EcdsaP384Sha384 => KeySpec::EcP384,
        }
    }

    /// The signature algorithm's OID (RFC 5758 3.2). Its AlgorithmIdentifier has no
    /// parameters: not even NULL.
    pub fn oid(self) -> const_oid::ObjectIdentifier {
        match self {
            SigAlg::EcdsaP256Sha256 => const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
            SigAlg::EcdsaP384Sha384 => const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
        }
    }
}

/// A DER-encoded SubjectPublicKeyInfo.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SpkiDer(Vec<u8>);

impl SpkiDer {
    /// Wraps DER bytes. The caller vouches that they are a SubjectPublicKeyInfo; use
    /// [`SpkiDer::parse`] for bytes from outside.
    pub fn from_der_unchecked(der: Vec<u8>) -> Self {
        SpkiDer(der)
    }

    /// Parses and re-checks a SubjectPublicKeyInfo.
    ///
    /// Fails if the bytes are not a DER SubjectPublicKeyInfo.
    pub fn parse(der: &[u8]) -> Result<Self, KeyStoreError> {
        use der::Decode;
        spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| KeyStoreError::Corrupt(format!("public key is not a DER SPKI: {e}")))?;
        Ok(SpkiDer(der.to_vec()))
    }

    /// The DER bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The raw public key (the BIT STRING's contents: for EC, the uncompressed point).
    ///
    /// Fails if the bytes no longer parse, which cannot happen for a value built by this
    /// crate.
    pub fn subject_public_key(&self) -> Result<Vec<u8>, KeyStoreError> {
        use der::Decode;
        let spki = spki::SubjectPublicKeyInfoRef::from_der(&self.0)
            .map_err(|e| KeyStoreError::Corrupt(format!("public key is not a DER SPKI: {e}")))?;
        Ok(spki.subject_public_key.raw_bytes().to_vec())
    }

    /// SHA-256 of the DER SPKI, lowercase hex: a stable fingerprint for a key.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&self.0))
    }
}

impl fmt::Debug for SpkiDer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiDer(sha256:{})", &self.fingerprint()[..16])
    }
}

/// The name of a key inside a key store: its label (PKCS#11 CKA_LABEL).
///
/// Labels are 1 to 64 characters from `[A-Za-z0-9._-]`, so they are safe as file names and
/// need no escaping in a PKCS#11 URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef(String);

impl KeyRef {
    /// Checks and wraps a label.
    ///
    /// Fails with [`KeyStoreError::InvalidLabel`] for an empty, over-long or oddly-charactered
    /// label.
    pub fn new(label: impl Into<String>) -> Result<Self, KeyStoreError> {
        let label = label.into();
        let ok = !label.is_empty()
            && label.len() <= 64
            && !label.starts_with('.')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(KeyRef(label))
        } else {
            Err(KeyStoreError::InvalidLabel(label))
        }
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key store says about one of its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's label.
    pub key: KeyRef,
    /// Its type.
    pub spec: KeySpec,
    /// Its public key.
    pub public_key: SpkiDer,
    /// Where it lives, as a URI: `pkcs11:token=..;object=..;type=private` or
    /// `embedded:LABEL`.
    pub uri: String,
}

/// Holds private keys and hands out signers; never returns key material.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// `"pkcs11"` or `"embedded"`, for logs and the audit trail.
    fn backend(&self) -> &'static str;

    /// Generates a key inside the store and returns its public key.
    ///
    /// Fails with [`KeyStoreError::LabelExists`] if a key with this label exists; the store
    /// is unchanged then.
    fn generate(&self, key: &KeyRef, spec: KeySpec) -> Result<SpkiDer, KeyStoreError>;

    /// Generates a key that may leave the key store, but only wrapped (PKCS#11:
    /// CKA_EXTRACTABLE and CKA_WRAP_WITH_TRUSTED, still CKA_SENSITIVE). Keys are
    /// non-exportable unless made with this.
    ///
    /// Fails as [`KeyStore::generate`], or with [`KeyStoreError::Unsupported`] where the key
    /// store cannot export keys.
    fn generate_exportable(&self, key: &KeyRef, spec: KeySpec) -> Result<SpkiDer, KeyStoreError> {
        let _ = (key, spec);
        Err(KeyStoreError::Unsupported(format!(
            "the {} key store cannot make exportable keys (only PKCS#11 can)",
            self.backend()
        )))
    }

    /// A signer for an existing key.
    ///
    /// Fails with [`KeyStoreError::NotFound`] for an unknown label.
    fn signer(&self, key: &KeyRef) -> Result<Arc<dyn Signer>, KeyStoreError>;

    /// Every key in the store, sorted by label.
    fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError>;

    /// Destroys a key for good.
    ///
    /// Fails with [`KeyStoreError::NotFound`] for an unknown label.
    fn destroy(&self, key: &KeyRef) -> Result<(), KeyStoreError>;

    /// The URI that names `key` in this store (RFC 7512 for PKCS#11).
    fn uri(&self, key: &KeyRef) -> String;

    /// The key a URI names, as written in `keyhold.toml` (the inverse of [`KeyStore::uri`]).
    ///
    /// Fails with [`KeyStoreError::InvalidLabel`] or [`KeyStoreError::Unsupported`] if the
    /// URI is malformed or names another store. This default understands `embedded:LABEL`;
    /// backends with their own scheme override it.
    fn key_from_uri(&self, uri: &str) -> Result<KeyRef, KeyStoreError> {
        match uri.strip_prefix("embedded:") {
            Some(label) => KeyRef::new(label),
            None => Err(KeyStoreError::Unsupported(format!(
                "key {uri:?} is not in the {} key store (expected embedded:LABEL)",
                self.backend()
            ))),
        }
    }

    /// The state of each member (HSM) behind this store, in configured order; empty for a
    /// store that has no members (the embedded token).
    fn members(&self) -> Vec<MemberStatus> {
        Vec::new()
    }

    /// Tells `observer` of every member going out or coming back, once per change (and of
    /// changes that happened before it was set). Stores without members ignore it.
    fn watch_members(&self, observer: Arc<dyn MemberObserver>) {
        let _ = observer;
    }
}

/// Whether a member signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Healthy: requests go to it.
    In,
    /// Taken out after a failure or a missed deadline; probed in the background.
    Out,
}

impl MemberState {
    /// `"in"` or `"out"`, for pages, JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::In => "in",
            MemberState::Out => "out",
        }
    }
}

/// What a key store says about one of its members (an HSM holding the same keys).
#[derive(Debug, Clone, PartialEq)]
pub struct MemberStatus {
    /// The member's name from `keyhold.toml`.
    pub name: String,
    /// In or out.
    pub state: MemberState,
    /// The last failure, naming the PKCS#11 call and code; kept after it comes back.
    pub last_error: Option<String>,
    /// How long the last successful signature (request or probe) took.
    pub last_latency: Option<std::time::Duration>,
    /// Signing calls running on it now (abandoned, hung calls included).
    pub in_flight: usize,
    /// Its concurrency cap.
    pub max_in_flight: usize,
    /// Signatures it made (probes included).
    pub signatures: u64,
    /// Signing calls that failed or missed the deadline on it.
    pub errors: u64,
    /// Signing latency histogram: (upper bound in seconds, cumulative count), the last bound
    /// being infinity; and the sum of all latencies in seconds.
    pub latency_buckets: Vec<(f64, u64)>,
    /// Sum of signing latencies, in seconds.
    pub latency_sum: f64,
}

/// Hears of members going out and coming back. Called from a key store's threads, never
/// while it holds a lock; it must not block for long.
pub trait MemberObserver: Send + Sync {
    /// `member` was taken out; `reason` names the failure (no secrets).
    fn member_out(&self, member: &str, reason: &str);
    /// `member` was taken back after a probe signature verified, `after` it went out.
    fn member_back(&self, member: &str, after: std::time::Duration);
}

/// One private key, ready to sign.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The algorithm this key signs with.
    fn algorithm(&self) -> SigAlg;

    /// The key's public half.
    fn public_key(&self) -> &SpkiDer;

    /// Signs `message` as given (the signer hashes it with the algorithm's digest) and
    /// returns what goes in an X.509 signature BIT STRING: for ECDSA the DER
    /// Ecdsa-Sig-Value, not raw r||s.
    ///
    /// Fails with [`KeyStoreError::Unavailable`] when the module cannot be reached even after
    /// reconnecting.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyStoreError>;

    /// Fails with [`KeyStoreError::Unavailable`] when the key store already knows it cannot
    /// sign now (every PKCS#11 member is out), so that a caller can refuse before it writes
    /// anything. `Ok` promises nothing about the next signature.
    fn ready(&self) -> Result<(), KeyStoreError> {
        Ok(())
    }
}

/// Which key store backend a CA uses, as written in `keyhold.toml`'s `[keystore]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum KeyStoreConfig {
    /// The embedded token: keys sealed under a passphrase in a directory.
    Embedded {
        /// The token directory; relative paths are relative to the data directory.
        #[serde(default = "default_embedded_dir")]
        dir: std::path::PathBuf,
    },
    /// One or several PKCS#11 members (SoftHSM2, CloudHSM, Luna, YubiHSM ...) holding the
    /// same keys.
    Pkcs11(pkcs11::Pkcs11Toml),
}

fn default_embedded_dir() -> std::path::PathBuf {
    "token".into()
}

/// Opens the key store a config names.
///
/// `base` resolves relative paths (the data directory); `secret` is the embedded token's
/// passphrase or the PKCS#11 user PIN. Fails with a message that says what to fix: a wrong
/// secret, a missing module, an unknown token.
pub fn open(
    config: &KeyStoreConfig,
    base: &std::path::Path,
    secret: &Secret,
) -> Result<Arc<dyn KeyStore>, KeyStoreError> {
    match config {
        KeyStoreConfig::Embedded { dir } => Ok(Arc::new(embedded::EmbeddedKeyStore::open(
            &base.join(dir),
            secret,
        )?)),
        KeyStoreConfig::Pkcs11(toml) => {
            let cfg = toml.resolve(base, secret)?;
            Ok(Arc::new(pkcs11::Pkcs11KeyStore::open(&cfg, secret)?))
        }
    }
}

/// Why a key store operation failed. Messages are lower-case, say what is wrong, and never
/// contain PINs, passphrases or key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The passphrase or PIN was refused.
    #[error("{0}")]
    WrongSecret(String),
    /// No key with this label.
    #[error("no key labelled {0:?} in the key store")]
    NotFound(String),
    /// A key with this label exists already.
    #[error(
        "a key labelled {0:?} already exists in the key store; choose another label or destroy the old key first"
    )]
    LabelExists(String),
    /// The label is not acceptable.
    #[error(
        "invalid key label {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ - (not starting with '.')"
    )]
    InvalidLabel(String),
    /// Stored key data failed its integrity check.
    #[error("{0}")]
    Corrupt(String),
    /// The module, token or directory is missing or unusable.
    #[error("{0}")]
    Unavailable(String),
    /// The store cannot do what was asked.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A PKCS#11 call failed in a way that is not one of the above.
    #[error("pkcs#11: {0}")]
    Pkcs11(String),
}

impl KeyStoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KeyStoreError::WrongSecret(_) | KeyStoreError::InvalidLabel(_) => ErrorKind::Invalid,
            KeyStoreError::NotFound(_) => ErrorKind::NotFound,
            KeyStoreError::LabelExists(_) => ErrorKind::Conflict,
            KeyStoreError::Unavailable(_) | KeyStoreError::Io { .. } => ErrorKind::Unavailable,
            KeyStoreError::Unsupported(_) => ErrorKind::Invalid,
            KeyStoreError::Corrupt(_) | KeyStoreError::Pkcs11(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        KeyStoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Verifies an ECDSA signature made by a [`Signer`] against its public key.
///
/// Used after every CA signature (an HSM fault must never produce a certificate with a bad
/// signature) and by the conformance tests. Fails with [`KeyStoreError::Corrupt`] if the
/// signature does not verify.
pub fn verify(
    alg: SigAlg,
    public_key: &SpkiDer,
    message: &[u8],
    signature: &[u8],
) -> Result<(), KeyStoreError> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
    let point = public_key.subject_public_key()?;
    let algorithm = match alg {
        SigAlg::EcdsaP256Sha256 => &ECDSA_P256_SHA256_ASN1,
        SigAlg::EcdsaP384Sha384 => &ECDSA_P384_SHA384_ASN1,
    };
    UnparsedPublicKey::new(algorithm, point)
        .verify(message, signature)
        .map_err(|_| {
            KeyStoreError::Corrupt("signature does not verify with the key's public key".into())
        })
}
