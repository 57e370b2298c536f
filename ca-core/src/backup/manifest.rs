//! The manifest: what a backup holds, signed with the audit key.
//!
//! Invariant: a manifest is accepted only if its signature verifies with the public key it
//! names *and* that key is the one the caller trusts, when the caller names one (the
//! restored CA's audit key, or a fingerprint the operator noted): the age format does not
//! authenticate the sender, so anyone with a recipient key could otherwise write a
//! plausible archive.

use serde::{Deserialize, Serialize};

use super::BackupError;
use crate::keystore::{self, SigAlg, Signer, SpkiDer};

/// The archive format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Signed together with the manifest, so a signature made for anything else never verifies.
const DOMAIN: &[u8] = b"keyhold-backup-manifest-v1\0";

/// One file in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Its path inside the archive (relative, `/`-separated).
    pub path: String,
    /// Its length in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

/// The audit chain's head when the backup was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    /// The last entry's sequence number.
    pub seq: i64,
    /// Its hash, lowercase hex.
    pub sha256: String,
}

/// What the archive says about the CA's private keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyNote {
    /// `"embedded"` or `"pkcs11"`.
    pub backend: String,
    /// Whether the private keys are in the archive (sealed, embedded token only).
    pub keys_included: bool,
    /// The key references the CA uses, as in `keyhold.toml`.
    pub references: Vec<String>,
    /// For people: where the keys are and how they come back.
    pub note: String,
}

/// Who signed the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerInfo {
    /// The audit key's URI, as in `keyhold.toml`.
    pub key: String,
    /// `"ecdsa-p256-sha256"` or `"ecdsa-p384-sha384"`.
    pub algorithm: String,
    /// The DER SubjectPublicKeyInfo, lowercase hex.
    pub public_key: String,
    /// SHA-256 of that SPKI, lowercase hex (what `keyhold backup verify` prints).
    pub fingerprint: String,
}

/// What the caller states about a backup; [`super::ArchiveWriter::finish`] adds the parts
/// and the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// The Keyhold version that made it.
    pub keyhold_version: String,
    /// The database schema version (the newest migration applied).
    pub schema_version: String,
    /// `"sqlite"` or `"postgres"`.
    pub database: String,
    /// When the database snapshot was taken, unix microseconds.
    pub created_at_micros: i64,
    /// The audit chain's head in the snapshot.
    pub audit_head: Option<AuditHead>,
    /// Where the keys are.
    pub keys: KeyNote,
}

/// The manifest as stored in `MANIFEST.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The archive format ([`FORMAT`]).
    pub format: u32,
    /// The Keyhold version that made it.
    pub keyhold_version: String,
    /// The database schema version (the newest migration applied).
    pub schema_version: String,
    /// `"sqlite"` or `"postgres"`.
    pub database: String,
    /// When the database snapshot was taken, unix microseconds.
    pub created_at_micros: i64,
    /// The audit chain's head in the snapshot.
    pub audit_head: Option<AuditHead>,
    /// Where the keys are.
    pub keys: KeyNote,
    /// Every other member of the archive, in archive order.
    pub parts: Vec<Part>,
    /// The key that signed this manifest.
    pub signer: SignerInfo,
}

fn alg_name(alg: SigAlg) -> &'static str {
    match alg {
        SigAlg::EcdsaP256Sha256 => "ecdsa-p256-sha256",
        SigAlg::EcdsaP384Sha384 => "ecdsa-p384-sha384",
    }
}

fn alg_from_name(name: &str) -> Option<SigAlg> {
    match name {
        "ecdsa-p256-sha256" => Some(SigAlg::EcdsaP256Sha256),
        "ecdsa-p384-sha384" => Some(SigAlg::EcdsaP384Sha384),
        _ => None,
    }
}

impl Manifest {
    pub(crate) fn new(
        info: ManifestInfo,
        parts: Vec<Part>,
        key_uri: &str,
        signer: &dyn Signer,
    ) -> Self {
        let public = signer.public_key();
        Manifest {
            format: FORMAT,
            keyhold_version: info.keyhold_version,
            schema_version: info.schema_version,
            database: info.database,
            created_at_micros: info.created_at_micros,
            audit_head: info.audit_head,
            keys: info.keys,
            parts,
            signer: SignerInfo {
                key: key_uri.to_owned(),
                algorithm: alg_name(signer.algorithm()).to_owned(),
                public_key: hex::encode(public.as_bytes()),
                fingerprint: public.fingerprint(),
            },
        }
    }

    /// The manifest's bytes as written (pretty JSON, so an operator can read it).
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, BackupError> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| BackupError::Tampered(format!("manifest does not serialise: {e}")))
    }

    /// Signs the manifest's bytes with the audit key.
    pub(crate) fn sign(bytes: &[u8], signer: &dyn Signer) -> Result<Vec<u8>, BackupError> {
        signer
            .sign(&signed_message(bytes))
            .map_err(BackupError::Sign)
    }

    /// Parses `MANIFEST.json` and checks `MANIFEST.sig` over it, with the key it names and,
    /// when given, only if that key is `trusted`.
    ///
    /// Fails with [`BackupError::Tampered`] if it does not parse, is of another format, or
    /// the signature does not verify; with [`BackupError::Refused`] if the signer is not
    /// the trusted key.
    pub(crate) fn check(
        bytes: &[u8],
        signature: &[u8],
        trusted: Option<&SpkiDer>,
    ) -> Result<Manifest, BackupError> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| BackupError::Tampered(format!("MANIFEST.json does not parse: {e}")))?;
        if manifest.format != FORMAT {
            return Err(BackupError::Refused(format!(
                "archive format {} is not one this Keyhold reads (it reads format {FORMAT}); use a newer Keyhold",
                manifest.format
            )));
        }
        let alg = alg_from_name(&manifest.signer.algorithm).ok_or_else(|| {
            BackupError::Tampered(format!(
                "unknown signature algorithm {:?}",
                manifest.signer.algorithm
            ))
        })?;
        let der = hex::decode(&manifest.signer.public_key)
            .map_err(|_| BackupError::Tampered("the signer's public key is not hex".into()))?;
        let public = SpkiDer::parse(&der)
            .map_err(|e| BackupError::Tampered(format!("the signer's public key: {e}")))?;
        keystore::verify(alg, &public, &signed_message(bytes), signature).map_err(|_| {
            BackupError::Tampered(
                "the manifest's signature does not verify with the audit key it names".into(),
            )
        })?;
        if let Some(trusted) = trusted
            && trusted != &public
        {
            return Err(BackupError::Refused(format!(
                "the manifest is signed by key sha256:{}, not by the trusted audit key sha256:{}",
                public.fingerprint(),
                trusted.fingerprint()
            )));
        }
        Ok(manifest)
    }

    /// The signer's public key.
    ///
    /// Fails if it does not parse (impossible for a manifest [`super::verify`] returned).
    pub fn signer_key(&self) -> Result<SpkiDer, BackupError> {
        let der = hex::decode(&self.signer.public_key)
            .map_err(|_| BackupError::Tampered("the signer's public key is not hex".into()))?;
        SpkiDer::parse(&der).map_err(|e| BackupError::Tampered(format!("{e}")))
    }
}

fn signed_message(bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + bytes.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(bytes);
    m
}
