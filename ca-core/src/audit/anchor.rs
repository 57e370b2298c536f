//! The anchor: every signed checkpoint is also appended to a file outside the database
//! (`audit-anchor.log` in the data directory), so someone who can rewrite the database,
//! deleting entries from the end, the checkpoints and the recorded head together, still
//! leaves the anchor naming a head that the chain no longer reaches.
//!
//! One line per checkpoint: `keyhold-audit-anchor-v1 SEQ HEAD-HEX AT-MICROS SIG-HEX KEY-URI`.
//! The file is only appended to, and synced to disk before the checkpoint is reported done.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Checkpoint;

const TAG: &str = "keyhold-audit-anchor-v1";

/// The name of the anchor file in the data directory.
pub const FILE_NAME: &str = "audit-anchor.log";

/// What the anchor file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchored {
    /// There is no anchor file (no checkpoint was ever anchored, or it was removed).
    Missing,
    /// The checkpoints in the file, in the order written.
    Checkpoints(Vec<Checkpoint>),
}

/// Why the anchor file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// Reading or writing failed.
    #[error("cannot use the audit anchor file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A line is not a checkpoint as this module writes it.
    #[error("the audit anchor file {path} has an unreadable line {line}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
}

/// The anchor file at a path.
#[derive(Debug, Clone)]
pub struct AnchorFile {
    path: PathBuf,
}

impl AnchorFile {
    /// The anchor file `dir/audit-anchor.log`.
    pub fn in_dir(dir: &Path) -> Self {
        AnchorFile {
            path: dir.join(FILE_NAME),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line that records `cp`.
    pub fn line(cp: &Checkpoint) -> String {
        format!(
            "{TAG} {} {} {} {} {}",
            cp.seq,
            hex::encode(cp.head_hash),
            cp.at_micros,
            hex::encode(&cp.signature),
            cp.key.replace(['\n', '\r'], " ")
        )
    }

    /// Appends `cp` and syncs the file to disk.
    ///
    /// Fails if the file cannot be opened, written or synced.
    pub fn append(&self, cp: &Checkpoint) -> Result<(), AnchorError> {
        let io = |source| AnchorError::Io {
            path: self.path.clone(),
            source,
        };
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        writeln!(f, "{}", Self::line(cp)).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Reads every anchored checkpoint.
    ///
    /// Fails if the file exists but cannot be read, or a line is not a checkpoint.
    pub fn read(&self) -> Result<Anchored, AnchorError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Anchored::Missing),
            Err(source) => {
                return Err(AnchorError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            out.push(parse(line).ok_or_else(|| AnchorError::Corrupt {
                path: self.path.clone(),
                line: i + 1,
            })?);
        }
        Ok(Anchored::Checkpoints(out))
    }
}

fn parse(line: &str) -> Option<Checkpoint> {
    let mut parts = line.splitn(6, ' ');
    if parts.next()? != TAG {
        return None;
    }
    let seq = parts.next()?.parse().ok()?;
    let head_hash = hex::decode(parts.next()?).ok()?.try_into().ok()?;
    let at_micros = parts.next()?.parse().ok()?;
    let signature = hex::decode(parts.next()?).ok()?;
    let key = parts.next().unwrap_or_default().to_owned();
    Some(Checkpoint {
        seq,
        head_hash,
        at_micros,
        key,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_a_missing_file_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let file = AnchorFile::in_dir(dir.path());
        assert_eq!(file.read().unwrap(), Anchored::Missing);
        let cp = Checkpoint {
            seq: 42,
            head_hash: [7; 32],
            at_micros: 1_700_000_000_000_000,
            key: "pkcs11:object=audit;type=private".into(),
            signature: vec![1, 2, 3],
        };
        file.append(&cp).unwrap();
        file.append(&cp).unwrap();
        assert_eq!(
            file.read().unwrap(),
            Anchored::Checkpoints(vec![cp.clone(), cp])
        );
        std::fs::write(file.path(), "garbage\n").unwrap();
        assert!(matches!(
            file.read(),
            Err(AnchorError::Corrupt { line: 1, .. })
        ));
    }
}
