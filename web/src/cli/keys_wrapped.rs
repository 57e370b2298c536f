//! `keyhold keys export` and `keys import`: keys leave a PKCS#11 token only wrapped.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ca_core::audit::{Action, AuditEvent};
use ca_core::keystore::KeyRef;
use ca_core::keystore::pkcs11::wrap::WrappedKey;
use ca_core::store::AuditLog;

use crate::cli::Cli;
use crate::cli::io::{cli_actor, write_new};
use crate::config::Config;
use crate::wiring::{open_db, open_pkcs11};

/// Export and import are quorum operations when `[quorum] export_key` is set. Until the
/// quorum flow carries them, they are refused rather than done without the officers.
fn refuse_without_quorum(config: &Config) -> Result<()> {
    if config.quorum.export_key > 0 {
        bail!(
            "[quorum] export_key = {} requires officers' approvals for key export and import, \
             which this version cannot collect yet: refusing rather than exporting without them",
            config.quorum.export_key
        );
    }
    Ok(())
}

pub(super) fn export(
    cli: &Cli,
    config: &Config,
    label: &str,
    wrapping_key: &str,
    out: &Path,
) -> Result<()> {
    refuse_without_quorum(config)?;
    let key = KeyRef::new(label)?;
    if out.exists() {
        bail!("{} exists already: name a new file", out.display());
    }
    let (store, mechanism) = open_pkcs11(&cli.paths, config)?;
    let db = open_db(&cli.paths, config)?;
    let wrapped = store.export_wrapped(&key, wrapping_key, mechanism)?;
    let text = wrapped.to_json()?;
    // Recorded before the file exists: if the record cannot be written, nothing leaves.
    let event = AuditEvent::new(
        Action::KeyExported,
        cli_actor(),
        "cli",
        format!("key:{label}"),
    )
    .with("wrapping_key", wrapping_key)
    .with("mechanism", mechanism.to_string())
    .with("sha256", wrapped.spki()?.fingerprint());
    db.audit(&[event])?;
    write_new(out, text.as_bytes())?;
    println!(
        "exported key {label} wrapped under {wrapping_key} ({mechanism}) to {}  sha256:{}",
        out.display(),
        wrapped.spki()?.fingerprint()
    );
    Ok(())
}

pub(super) fn import(
    cli: &Cli,
    config: &Config,
    input: &Path,
    wrapping_key: &str,
    label: Option<&str>,
    extractable: bool,
) -> Result<()> {
    refuse_without_quorum(config)?;
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read {}", input.display()))?;
    let wrapped = WrappedKey::from_json(&text).with_context(|| input.display().to_string())?;
    let key = KeyRef::new(label.unwrap_or(&wrapped.label))?;
    let (store, _) = open_pkcs11(&cli.paths, config)?;
    let db = open_db(&cli.paths, config)?;
    let spki = store.import_wrapped(&wrapped, &key, wrapping_key, extractable)?;
    let event = AuditEvent::new(
        Action::KeyImported,
        cli_actor(),
        "cli",
        format!("key:{}", key.label()),
    )
    .with("wrapping_key", wrapping_key)
    .with("extractable", extractable.to_string())
    .with("sha256", spki.fingerprint());
    if let Err(e) = db.audit(&[event]) {
        // Fail closed: a key the audit log does not know must not exist.
        let undone = ca_core::keystore::KeyStore::destroy(&store, &key).is_ok();
        bail!(
            "cannot write the audit log ({e}); the imported key was {}",
            if undone {
                "destroyed again"
            } else {
                "NOT destroyed: remove it by hand"
            }
        );
    }
    println!(
        "imported key {} (sensitive, {}) sha256:{}",
        key.label(),
        if extractable {
            "exportable under trusted keys"
        } else {
            "non-extractable"
        },
        spki.fingerprint()
    );
    Ok(())
}
