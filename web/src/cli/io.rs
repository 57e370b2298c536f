//! Reading input and writing output files for the commands, and who runs them.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

pub use crate::wiring::os_actor as cli_actor;

pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    const LIMIT: u64 = 1 << 20;
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(LIMIT)
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(LIMIT).read_to_end(&mut buf))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(buf)
}

/// Writes a new file; refuses to overwrite one.
pub fn write_new(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Replaces a file atomically (write a sibling, fsync, rename), so a reader never sees half
/// a CRL.
pub fn replace_file(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?
        .to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}
