//! Backups: one archive of everything needed to bring a CA back, encrypted before it is
//! written and signed with the audit key.
//!
//! Invariants:
//! - the archive is an age file (age-encryption.org/v1) to one or more X25519 recipients:
//!   a server can make backups it cannot read, and the identity stays offline;
//! - inside is a POSIX tar whose last two members are `MANIFEST.json` (each part's path,
//!   size and SHA-256, the Keyhold and schema versions, the audit head) and `MANIFEST.sig`
//!   (the audit key's signature over the manifest);
//! - reading checks everything before it reports success: the age stream's authentication
//!   (an edited or truncated file fails), the signature, every part's size and digest, no
//!   part missing, extra, repeated or after the manifest. [`archive::extract`] writes only
//!   into a directory it creates and removes it on any failure, so a bad archive leaves
//!   nothing behind;
//! - no private key is ever written in plaintext: for the embedded token the archive holds
//!   the sealed key files as they are on disk; for PKCS#11 it holds key references only.

pub mod archive;
pub mod manifest;
pub mod plan;

use std::path::Path;

use crate::error::ErrorKind;
use crate::keystore::KeyStoreError;

pub use archive::{ArchiveWriter, Extracted, extract, verify};
pub use manifest::{AuditHead, KeyNote, Manifest, ManifestInfo, Part, SignerInfo};
pub use plan::{DbExport, Exporter, Sources, create};

/// Why a backup could not be made, read or checked. Messages name what is wrong and never
/// carry key bytes or identities.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A recipient or identity is malformed, or the identity does not open the archive.
    #[error("{0}")]
    Key(String),
    /// The archive is not a Keyhold backup, or it was edited, truncated or re-signed.
    #[error("backup archive refused: {0}")]
    Tampered(String),
    /// The archive is sound but cannot be used here (newer schema, destination not empty).
    #[error("{0}")]
    Refused(String),
    /// The audit key could not sign.
    #[error("signing the manifest: {0}")]
    Sign(#[source] KeyStoreError),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl BackupError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackupError::Key(_) | BackupError::Tampered(_) => ErrorKind::Invalid,
            BackupError::Refused(_) => ErrorKind::Conflict,
            BackupError::Sign(e) => e.kind(),
            BackupError::Io { .. } => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BackupError::Io {
            context: context.into(),
            source,
        }
    }
}

/// An X25519 public key backups are encrypted to (`age1...`).
#[derive(Clone)]
pub struct Recipient(age::x25519::Recipient);

impl Recipient {
    /// Parses an `age1...` recipient.
    ///
    /// Fails with [`BackupError::Key`] naming the value if it is not one.
    pub fn parse(text: &str) -> Result<Self, BackupError> {
        text.trim()
            .parse::<age::x25519::Recipient>()
            .map(Recipient)
            .map_err(|e| {
                BackupError::Key(format!(
                    "{:?} is not an age X25519 recipient (age1...): {e}",
                    text.trim()
                ))
            })
    }
}

impl Recipient {
    /// As the age crate takes it.
    pub(crate) fn as_age(&self) -> &dyn age::Recipient {
        &self.0
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipient({})", self.0)
    }
}

/// The private half that opens backups: one or more `AGE-SECRET-KEY-1...` lines.
pub struct Identity(Vec<age::x25519::Identity>);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({} key(s), redacted)", self.0.len())
    }
}

impl Identity {
    /// A new random identity (what `age-keygen` makes).
    pub fn generate() -> Self {
        Identity(vec![age::x25519::Identity::generate()])
    }

    /// The recipient of this identity's first key.
    pub fn recipient(&self) -> Option<Recipient> {
        self.0.first().map(|i| Recipient(i.to_public()))
    }

    /// The identity file's text, as `age-keygen` writes it (with the public key as a
    /// comment). Secret: write it only to a file the operator keeps offline.
    pub fn to_file_text(&self) -> zeroize::Zeroizing<String> {
        use age::secrecy::ExposeSecret;
        let mut out = zeroize::Zeroizing::new(String::new());
        for id in &self.0 {
            out.push_str(&format!("# public key: {}\n", id.to_public()));
            out.push_str(id.to_string().expose_secret());
            out.push('\n');
        }
        out
    }

    /// Parses an identity file: `AGE-SECRET-KEY-1...` lines, `#` comments and blank lines.
    ///
    /// Fails with [`BackupError::Key`] if a line is neither or no key is present; the
    /// message never repeats the line.
    pub fn parse(text: &str) -> Result<Self, BackupError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = line.parse::<age::x25519::Identity>().map_err(|_| {
                BackupError::Key(format!(
                    "line {} of the identity file is not an age X25519 identity (AGE-SECRET-KEY-1...)",
                    n + 1
                ))
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(BackupError::Key(
                "the identity file holds no AGE-SECRET-KEY-1... line".into(),
            ));
        }
        Ok(Identity(keys))
    }

    /// Reads and parses an identity file.
    ///
    /// Fails if it cannot be read or does not parse (see [`Identity::parse`]).
    pub fn read(path: &Path) -> Result<Self, BackupError> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| BackupError::io(format!("reading {}", path.display()), e))?,
        );
        Self::parse(&text).map_err(|e| match e {
            BackupError::Key(m) => BackupError::Key(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub(crate) fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.0.iter().map(|i| i as &dyn age::Identity)
    }
}

#[cfg(test)]
mod tests;
