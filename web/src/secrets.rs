//! Where passphrases and PINs come from: a file named on the command line or in the config,
//! or an environment variable. Never a command-line argument, never the config file itself.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ca_core::secret::Secret;

/// Environment variable holding the embedded token's passphrase.
pub const PASSPHRASE_ENV: &str = "KEYHOLD_PASSPHRASE";
/// Environment variable holding the PKCS#11 user PIN.
pub const PIN_ENV: &str = "KEYHOLD_PKCS11_PIN";
/// Environment variable holding the PKCS#11 security officer PIN.
pub const SO_PIN_ENV: &str = "KEYHOLD_PKCS11_SO_PIN";

/// Reads a secret from `file` if given, else from `env`, else from `fallback_file`.
///
/// Fails if none is available (saying how to provide one), if a file is readable by group or
/// others, or if the secret is empty.
pub fn read(
    file: Option<&Path>,
    env: &str,
    fallback_file: Option<&Path>,
    what: &str,
    flag: &str,
) -> Result<Secret> {
    if let Some(path) = file {
        return read_file(path, what);
    }
    if let Ok(value) = std::env::var(env) {
        if value.is_empty() {
            bail!("{env} is set but empty: set it to the {what}");
        }
        return Ok(Secret::new(value));
    }
    if let Some(path) = fallback_file {
        return read_file(path, what);
    }
    bail!("no {what} given: set {env} or pass {flag} FILE")
}

/// Reads a secret file, refusing one that group or others can read.
///
/// Fails if the file is missing, unreadable, too open or empty.
pub fn read_file(path: &Path, what: &str) -> Result<Secret> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "the {what} file {} is readable by group or others: run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let secret = Secret::new(text);
    if secret.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(secret)
}
