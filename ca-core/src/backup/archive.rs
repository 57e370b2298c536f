//! Writing and reading the archive: an age stream around a tar whose last members are the
//! manifest and its signature.
//!
//! Invariant: [`verify`] and [`extract`] succeed only after the whole age stream has been
//! read and authenticated, the manifest's signature checked, and every part matched to the
//! manifest by path, size and SHA-256, in order, with nothing missing or extra.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ManifestInfo, Part};
use super::{BackupError, Identity, Recipient};
use crate::keystore::{Signer, SpkiDer};

/// The manifest's member name.
pub const MANIFEST: &str = "MANIFEST.json";
/// The signature's member name.
pub const SIGNATURE: &str = "MANIFEST.sig";
/// The largest manifest or signature read (a manifest lists a few hundred parts at most).
const MAX_MANIFEST: u64 = 16 << 20;

/// Writes one archive: parts first, then [`ArchiveWriter::finish`] adds the signed manifest.
/// Nothing is readable until `finish` returns; write to a temporary file and rename it.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<age::stream::StreamWriter<W>>,
    parts: Vec<Part>,
}

impl<W: Write> std::fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("parts", &self.parts.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive encrypted to `recipients` (at least one).
    ///
    /// Fails with [`BackupError::Key`] if there is no recipient, or if `out` cannot be
    /// written.
    pub fn new(out: W, recipients: &[Recipient]) -> Result<Self, BackupError> {
        if recipients.is_empty() {
            return Err(BackupError::Key(
                "no backup recipient: name one with --recipient or [backup] recipients (an age1... public key)".into(),
            ));
        }
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| &r.0 as &dyn age::Recipient))
                .map_err(|e| {
                    BackupError::Key(format!("cannot encrypt to these recipients: {e}"))
                })?;
        let stream = encryptor
            .wrap_output(out)
            .map_err(|e| BackupError::io("writing the archive header", e))?;
        let mut tar = tar::Builder::new(stream);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(ArchiveWriter {
            tar,
            parts: Vec::new(),
        })
    }

    /// Adds a part from memory.
    ///
    /// Fails if `path` is not an acceptable part name (see [`check_path`]) or is already
    /// used, or the output cannot be written.
    pub fn add_bytes(&mut self, path: &str, bytes: &[u8]) -> Result<(), BackupError> {
        self.add_reader(path, bytes.len() as u64, bytes)
    }

    /// Adds a part from a file, streamed (the file must not change meanwhile: give it a
    /// snapshot, never a live database).
    ///
    /// Fails if the file cannot be read, changes size while read, or as
    /// [`ArchiveWriter::add_bytes`].
    pub fn add_file(&mut self, path: &str, file: &Path) -> Result<(), BackupError> {
        let f = std::fs::File::open(file)
            .map_err(|e| BackupError::io(format!("reading {}", file.display()), e))?;
        let size = f
            .metadata()
            .map_err(|e| BackupError::io(format!("reading {}", file.display()), e))?
            .len();
        self.add_reader(path, size, f).map_err(|e| match e {
            BackupError::Io { context, source } => BackupError::Io {
                context: format!("{context} (from {})", file.display()),
                source,
            },
            other => other,
        })
    }

    /// Adds every regular file under `dir` (recursively, in name order) as `prefix/...`.
    ///
    /// Fails if the directory cannot be read, holds a name that is not an acceptable part
    /// name, or as [`ArchiveWriter::add_file`].
    pub fn add_dir(&mut self, prefix: &str, dir: &Path) -> Result<(), BackupError> {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| BackupError::io(format!("reading {}", dir.display()), e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BackupError::io(format!("reading {}", dir.display()), e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                BackupError::Refused(format!("{} is not a UTF-8 name", entry.path().display()))
            })?;
            let kind = entry
                .file_type()
                .map_err(|e| BackupError::io(format!("reading {}", entry.path().display()), e))?;
            let part = format!("{prefix}/{name}");
            if kind.is_dir() {
                self.add_dir(&part, &entry.path())?;
            } else if kind.is_file() {
                self.add_file(&part, &entry.path())?;
            }
        }
        Ok(())
    }

    fn add_reader(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), BackupError> {
        check_path(path)?;
        if path == MANIFEST || path == SIGNATURE {
            return Err(BackupError::Refused(format!(
                "{path} is reserved for the manifest"
            )));
        }
        if self.parts.iter().any(|p| p.path == path) {
            return Err(BackupError::Refused(format!("part {path} added twice")));
        }
        let mut reader = Hashing::new(data.take(size));
        append(&mut self.tar, path, size, &mut reader)?;
        let (read, sha256) = reader.finish();
        if read != size {
            return Err(BackupError::io(
                format!("part {path}"),
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("changed while read: {read} bytes of {size}"),
                ),
            ));
        }
        self.parts.push(Part {
            path: path.to_owned(),
            size,
            sha256: hex::encode(sha256),
        });
        Ok(())
    }

    /// Signs the manifest with `signer` (the audit key, named `key_uri`), writes it and its
    /// signature, and closes the age stream. Returns the manifest and the output.
    ///
    /// Fails if the key store cannot sign or the output cannot be written; the output is
    /// then incomplete and must be discarded (it does not decrypt).
    pub fn finish(
        mut self,
        info: ManifestInfo,
        key_uri: &str,
        signer: &dyn Signer,
    ) -> Result<(Manifest, W), BackupError> {
        let manifest = Manifest::new(info, std::mem::take(&mut self.parts), key_uri, signer);
        let bytes = manifest.to_bytes()?;
        let signature = Manifest::sign(&bytes, signer)?;
        append(
            &mut self.tar,
            MANIFEST,
            bytes.len() as u64,
            &mut bytes.as_slice(),
        )?;
        append(
            &mut self.tar,
            SIGNATURE,
            signature.len() as u64,
            &mut signature.as_slice(),
        )?;
        let stream = self
            .tar
            .into_inner()
            .map_err(|e| BackupError::io("closing the archive", e))?;
        let out = stream
            .finish()
            .map_err(|e| BackupError::io("closing the archive", e))?;
        Ok((manifest, out))
    }
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: &mut dyn Read,
) -> Result<(), BackupError> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    tar.append_data(&mut header, path, data)
        .map_err(|e| BackupError::io(format!("writing part {path}"), e))
}

/// Checks a part name: relative, `/`-separated segments of `[A-Za-z0-9._-]`, none empty,
/// `.` or `..`, at most 255 bytes. So extracting can never write outside its directory.
///
/// Fails with [`BackupError::Tampered`] naming the path.
pub fn check_path(path: &str) -> Result<(), BackupError> {
    let ok = !path.is_empty()
        && path.len() <= 255
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(BackupError::Tampered(format!(
            "part name {path:?} is not a plain relative path"
        )))
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    read: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            read: 0,
        }
    }

    fn finish(self) -> (u64, [u8; 32]) {
        (self.read, self.hash.finalize().into())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// What [`extract`] restored.
#[derive(Debug)]
pub struct Extracted {
    /// The checked manifest.
    pub manifest: Manifest,
    /// The directory the parts were written to.
    pub dir: PathBuf,
}

/// Decrypts and checks an archive without writing anything: the age stream, the manifest's
/// signature (by `trusted` only, when given) and every part.
///
/// Fails with [`BackupError::Key`] if `identity` does not open it, [`BackupError::Tampered`]
/// if anything was edited, truncated, added or removed, [`BackupError::Refused`] if the
/// signer is not `trusted` or the format is newer than this build.
pub fn verify(
    input: impl Read,
    identity: &Identity,
    trusted: Option<&SpkiDer>,
) -> Result<Manifest, BackupError> {
    walk(input, identity, trusted, &mut |_, data| {
        let mut h = Hashing::new(data);
        io::copy(&mut h, &mut io::sink()).map_err(tampered_io)?;
        Ok(h.finish())
    })
}

/// [`verify`], writing every part under `dest`, which must not exist or be an empty
/// directory: it is created (mode 0700 on Unix) and emptied again if anything fails, so a
/// bad archive leaves nothing.
///
/// Fails as [`verify`], with [`BackupError::Refused`] if `dest` is not empty, and with
/// [`BackupError::Io`] if it cannot be written.
pub fn extract(
    input: impl Read,
    identity: &Identity,
    trusted: Option<&SpkiDer>,
    dest: &Path,
) -> Result<Extracted, BackupError> {
    let existed = prepare_dest(dest)?;
    let result = walk(input, identity, trusted, &mut |path, data| {
        let target = dest.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| BackupError::io(format!("creating {}", parent.display()), e))?;
        }
        let mut file = create_private_file(&target)
            .map_err(|e| BackupError::io(format!("writing {}", target.display()), e))?;
        let mut h = Hashing::new(data);
        io::copy(&mut h, &mut file).map_err(tampered_io)?;
        file.sync_all()
            .map_err(|e| BackupError::io(format!("writing {}", target.display()), e))?;
        Ok(h.finish())
    });
    match result {
        Ok(manifest) => Ok(Extracted {
            manifest,
            dir: dest.to_path_buf(),
        }),
        Err(e) => {
            // Nothing half-written stays behind; the original error is what matters.
            let _ = std::fs::remove_dir_all(dest);
            if existed {
                let _ = create_private_dir(dest);
            }
            Err(e)
        }
    }
}

type Sink<'a> = dyn FnMut(&str, &mut dyn Read) -> Result<(u64, [u8; 32]), BackupError> + 'a;

fn walk(
    input: impl Read,
    identity: &Identity,
    trusted: Option<&SpkiDer>,
    sink: &mut Sink<'_>,
) -> Result<Manifest, BackupError> {
    let decryptor = age::Decryptor::new(input).map_err(decrypt_error)?;
    let stream = decryptor
        .decrypt(identity.as_dyn())
        .map_err(decrypt_error)?;
    let mut archive = tar::Archive::new(stream);
    let mut seen: Vec<Part> = Vec::new();
    let mut manifest: Option<Vec<u8>> = None;
    let mut signature: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(tampered_io)? {
        let mut entry = entry.map_err(tampered_io)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BackupError::Tampered(
                "a member is not a regular file".into(),
            ));
        }
        let path = entry
            .path()
            .map_err(tampered_io)?
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| BackupError::Tampered("a member's name is not UTF-8".into()))?;
        check_path(&path)?;
        if signature.is_some() {
            return Err(BackupError::Tampered(format!(
                "{path} follows the manifest's signature"
            )));
        }
        let size = entry.size();
        match (path.as_str(), &manifest) {
            (MANIFEST, None) => manifest = Some(read_small(&mut entry, MANIFEST)?),
            (SIGNATURE, Some(_)) => signature = Some(read_small(&mut entry, SIGNATURE)?),
            (MANIFEST | SIGNATURE, _) => {
                return Err(BackupError::Tampered(format!("{path} out of place")));
            }
            (_, Some(_)) => {
                return Err(BackupError::Tampered(format!(
                    "{path} follows the manifest"
                )));
            }
            (_, None) => {
                if seen.iter().any(|p| p.path == path) {
                    return Err(BackupError::Tampered(format!("{path} appears twice")));
                }
                let (read, sha256) = sink(&path, &mut entry)?;
                if read != size {
                    return Err(BackupError::Tampered(format!("{path} is truncated")));
                }
                seen.push(Part {
                    path,
                    size,
                    sha256: hex::encode(sha256),
                });
            }
        }
    }
    // Read to the end, so the age stream's last chunk is authenticated too: a truncated
    // archive fails here even if the tar looked complete.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(tampered_io)?;
    let (Some(manifest), Some(signature)) = (manifest, signature) else {
        return Err(BackupError::Tampered(
            "no signed manifest: the archive is truncated or not a Keyhold backup".into(),
        ));
    };
    let manifest = Manifest::check(&manifest, &signature, trusted)?;
    compare(&manifest.parts, &seen)?;
    Ok(manifest)
}

fn compare(listed: &[Part], seen: &[Part]) -> Result<(), BackupError> {
    for (i, want) in listed.iter().enumerate() {
        match seen.get(i) {
            None => {
                return Err(BackupError::Tampered(format!(
                    "{} is in the manifest but not in the archive",
                    want.path
                )));
            }
            Some(got) if got.path != want.path => {
                return Err(BackupError::Tampered(format!(
                    "{} is in the archive where the manifest lists {}",
                    got.path, want.path
                )));
            }
            Some(got) if got.size != want.size || got.sha256 != want.sha256 => {
                return Err(BackupError::Tampered(format!(
                    "{} does not match its SHA-256 in the manifest",
                    want.path
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = seen.get(listed.len()) {
        return Err(BackupError::Tampered(format!(
            "{} is in the archive but not in the manifest",
            extra.path
        )));
    }
    Ok(())
}

fn read_small(entry: &mut impl Read, name: &str) -> Result<Vec<u8>, BackupError> {
    let mut buf = Vec::new();
    entry
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut buf)
        .map_err(tampered_io)?;
    if buf.len() as u64 > MAX_MANIFEST {
        return Err(BackupError::Tampered(format!("{name} is too large")));
    }
    Ok(buf)
}

fn decrypt_error(e: age::DecryptError) -> BackupError {
    match e {
        age::DecryptError::NoMatchingKeys => BackupError::Key(
            "the identity does not open this archive (it was encrypted to other recipients)".into(),
        ),
        other => BackupError::Tampered(format!("not a readable age archive: {other}")),
    }
}

fn tampered_io(e: io::Error) -> BackupError {
    BackupError::Tampered(format!("the archive is damaged or truncated: {e}"))
}

/// Creates `dest`, or accepts it if it is an empty directory. Returns whether it existed.
fn prepare_dest(dest: &Path) -> Result<bool, BackupError> {
    match create_private_dir(dest) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let mut entries = std::fs::read_dir(dest)
                .map_err(|e| BackupError::io(format!("reading {}", dest.display()), e))?;
            if entries.next().is_some() {
                Err(BackupError::Refused(format!(
                    "{} is not empty: restore into a new or empty directory, never over an existing CA",
                    dest.display()
                )))
            } else {
                Ok(true)
            }
        }
        Err(e) => Err(BackupError::io(format!("creating {}", dest.display()), e)),
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn create_private_file(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
