//! What a backup of a CA holds, and the one procedure that makes it.
//!
//! Archive layout (the data directory's, so a restore is an extraction):
//!
//! ```text
//! keyhold.toml            the config
//! ca/...                  the CA certificates
//! policies/...            the certificate profiles
//! token/...               embedded token only: token.toml and the sealed key files
//! db/keyhold.db           SQLite: the snapshot (VACUUM INTO)
//! db/TABLE.jsonl          PostgreSQL: one file per table, from one REPEATABLE READ snapshot
//! MANIFEST.json, MANIFEST.sig
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::manifest::{AuditHead, KeyNote, Manifest, ManifestInfo};
use super::{ArchiveWriter, BackupError, Recipient};
use crate::keystore::Signer;
use crate::store::StoreError;

/// Where the database parts live in the archive.
pub const DB_DIR: &str = "db";

/// One consistent export of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbExport {
    /// `"sqlite"` or `"postgres"`.
    pub backend: String,
    /// The newest migration applied in the export.
    pub schema_version: String,
    /// The audit chain's head in the export.
    pub audit_head: Option<(i64, [u8; 32])>,
    /// When it was taken.
    pub taken_at: SystemTime,
    /// Its files: (name under `db/`, path).
    pub files: Vec<(String, PathBuf)>,
}

/// The database port a backup needs: one consistent export into a directory.
pub trait Exporter {
    /// Writes a consistent export of the database into `dir` (existing, empty, private).
    ///
    /// Fails if the database cannot be read or `dir` written.
    fn export(&self, dir: &Path) -> Result<DbExport, StoreError>;
}

/// The files of a CA besides its database.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    /// `keyhold.toml`.
    pub config: &'a Path,
    /// The CA certificates' directory.
    pub ca_dir: &'a Path,
    /// The profiles' directory, if it exists.
    pub policies: Option<&'a Path>,
    /// The embedded token's directory (sealed keys), or `None` for PKCS#11.
    pub token_dir: Option<&'a Path>,
    /// Where the keys are, for the manifest.
    pub keys: KeyNote,
}

/// Makes one backup: exports the database into `scratch` (an existing, empty, private
/// directory the caller removes afterwards), then writes the archive to `out`, encrypted to
/// `recipients`, with the manifest signed by `signer` (the audit key `audit_key_uri`).
///
/// Fails with [`BackupError::Key`] without recipients, [`BackupError::Refused`] if the
/// database cannot be exported, [`BackupError::Io`] if a file cannot be read or written,
/// [`BackupError::Sign`] if the key store cannot sign; `out` is then incomplete and must be
/// discarded (write to a temporary file and rename on success).
#[allow(clippy::too_many_arguments)]
pub fn create<W: Write>(
    out: W,
    recipients: &[Recipient],
    sources: &Sources<'_>,
    db: &dyn Exporter,
    scratch: &Path,
    audit_key_uri: &str,
    signer: &dyn Signer,
    keyhold_version: &str,
) -> Result<(Manifest, W), BackupError> {
    // 1. Recipients first: no point exporting a database nobody could read.
    let mut archive = ArchiveWriter::new(out, recipients)?;
    // 2. The database, at one instant.
    let export = db
        .export(scratch)
        .map_err(|e| BackupError::Refused(format!("exporting the database: {e}")))?;
    // 3. Files, then the database parts.
    archive.add_file("keyhold.toml", sources.config)?;
    archive.add_dir("ca", sources.ca_dir)?;
    if let Some(dir) = sources.policies {
        archive.add_dir("policies", dir)?;
    }
    if let Some(dir) = sources.token_dir {
        archive.add_dir("token", dir)?;
    }
    for (name, path) in &export.files {
        archive.add_file(&format!("{DB_DIR}/{name}"), path)?;
    }
    // 4. The signed manifest.
    let info = ManifestInfo {
        keyhold_version: keyhold_version.to_owned(),
        schema_version: export.schema_version.clone(),
        database: export.backend.clone(),
        created_at_micros: crate::audit::unix_micros(export.taken_at),
        audit_head: export.audit_head.map(|(seq, hash)| AuditHead {
            seq,
            sha256: hex::encode(hash),
        }),
        keys: sources.keys.clone(),
    };
    archive.finish(info, audit_key_uri, signer)
}

/// The note for a PKCS#11 key store: references only.
pub fn pkcs11_note(references: Vec<String>) -> KeyNote {
    KeyNote {
        backend: "pkcs11".into(),
        keys_included: false,
        references,
        note: "the private keys stay in the HSM and are NOT in this archive: back them up with \
               the HSM's own mechanism (CloudHSM cluster backups, Luna cloning or backup HSM, \
               SoftHSM2 token directory copy) or export exportable keys wrapped (keyhold keys export)"
            .into(),
    }
}

/// The note for the embedded token: sealed key files included.
pub fn embedded_note(references: Vec<String>) -> KeyNote {
    KeyNote {
        backend: "embedded".into(),
        keys_included: true,
        references,
        note: "the embedded token's key files are included as stored: sealed under the token \
               passphrase, which is not in this archive"
            .into(),
    }
}
