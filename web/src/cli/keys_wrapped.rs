//! `keyhold keys export` and `keys import`: keys leave a PKCS#11 token only wrapped, and
//! the embedded token only re-encrypted to an age recipient.
//!
//! With `[quorum] export_key = M` (M > 0) either command only records a pending operation
//! whose target fixes what will be done ([`KeyTransfer`]: key, wrapping key, absolute file
//! path, and for an import the file's SHA-256); the officer whose `keyhold ops approve`
//! completes the quorum carries it out, on the CA host, with this data directory's token
//! ([`carry_out`], called from `ops approve`). With M = 0 they run at once.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use ca_core::audit::{Action, AuditEvent};
use ca_core::backup::{Identity, Recipient};
use ca_core::keystore::embedded::transfer::ExportedKey;
use ca_core::keystore::pkcs11::wrap::WrappedKey;
use ca_core::keystore::{KeyRef, KeyStoreConfig};
use ca_core::quorum::{KeyTransfer, OperationKind, Quorum};
use ca_core::store::AuditLog;
use sha2::{Digest, Sha256};

use crate::cli::Cli;
use crate::cli::io::{cli_actor, write_new};
use crate::config::Config;
use crate::wiring::{open_db, open_embedded, open_pkcs11};

/// Largest wrapped key file read (they are a few kilobytes).
const FILE_LIMIT: u64 = 1 << 20;

/// What a key moves under: a PKCS#11 wrapping key's label, or for the embedded token an age
/// recipient (export) or the absolute path of an age identity file (import).
pub(super) enum Via {
    Wrapping(String),
    Age(String),
}

impl Via {
    /// The one the key store needs, from the flags given.
    pub(super) fn new(
        config: &Config,
        wrapping_key: Option<&str>,
        age: Option<&str>,
    ) -> Result<Self> {
        match (&config.keystore, wrapping_key, age) {
            (KeyStoreConfig::Pkcs11(_), Some(w), None) => {
                KeyRef::new(w).context("--wrapping-key")?;
                Ok(Via::Wrapping(w.to_owned()))
            }
            (KeyStoreConfig::Pkcs11(_), _, _) => bail!(
                "a PKCS#11 key moves only wrapped: name the trusted wrapping key with --wrapping-key"
            ),
            (KeyStoreConfig::Embedded { .. }, None, Some(a)) => Ok(Via::Age(a.to_owned())),
            (KeyStoreConfig::Embedded { .. }, _, _) => bail!(
                "an embedded-token key moves only re-encrypted to an age recipient: \
                 --recipient age1... to export, --identity FILE to import"
            ),
        }
    }

    fn text(&self) -> &str {
        match self {
            Via::Wrapping(t) | Via::Age(t) => t,
        }
    }
}

pub(super) fn export(
    cli: &Cli,
    config: &Config,
    label: &str,
    via: Via,
    out: &Path,
) -> Result<ExitCode> {
    KeyRef::new(label)?;
    match &via {
        Via::Age(r) => {
            Recipient::parse(r).context("--recipient")?;
        }
        // Refuses at once what could never be carried out: a token that cannot be opened.
        Via::Wrapping(_) => {
            open_pkcs11(&cli.paths, config)?;
        }
    }
    let out = std::path::absolute(out).with_context(|| out.display().to_string())?;
    if out.exists() {
        bail!("{} exists already: name a new file", out.display());
    }
    let what = KeyTransfer {
        label: label.to_owned(),
        wrapping_key: via.text().to_owned(),
        file: path_text(&out)?,
        file_sha256: None,
        extractable: false,
    };
    request_or_run(cli, config, OperationKind::ExportKey, &what)
}

pub(super) fn import(
    cli: &Cli,
    config: &Config,
    input: &Path,
    via: Via,
    label: Option<&str>,
    extractable: bool,
) -> Result<ExitCode> {
    let input = std::path::absolute(input).with_context(|| input.display().to_string())?;
    let (text, sha256) = read_wrapped(&input)?;
    let exported_label = match &via {
        Via::Wrapping(_) => {
            open_pkcs11(&cli.paths, config)?;
            WrappedKey::from_json(&text)
                .with_context(|| input.display().to_string())?
                .label
        }
        Via::Age(identity) => {
            if !Path::new(identity).is_file() {
                bail!("--identity {identity}: no such file");
            }
            ExportedKey::from_json(&text)
                .with_context(|| input.display().to_string())?
                .label
        }
    };
    let key = KeyRef::new(label.unwrap_or(&exported_label))?;
    let what = KeyTransfer {
        label: key.label().to_owned(),
        wrapping_key: via.text().to_owned(),
        file: path_text(&input)?,
        file_sha256: Some(sha256),
        extractable,
    };
    request_or_run(cli, config, OperationKind::ImportKey, &what)
}

/// Runs the transfer now (no quorum), or records it pending for the officers.
fn request_or_run(
    cli: &Cli,
    config: &Config,
    kind: OperationKind,
    what: &KeyTransfer,
) -> Result<ExitCode> {
    let actor = cli_actor();
    let needed = config.quorum.export_key;
    if needed == 0 {
        println!("{}", carry_out(cli, config, kind, what, &actor, None)?);
        return Ok(ExitCode::SUCCESS);
    }
    let db = open_db(&cli.paths, config)?;
    let id = Quorum {
        ops: db.as_ref(),
        accounts: db.as_ref(),
    }
    .open(
        kind,
        &what.to_target()?,
        needed,
        &actor,
        "cli",
        SystemTime::now(),
    )?;
    let verb = match kind {
        OperationKind::ImportKey => "importing",
        _ => "exporting",
    };
    println!(
        "operation {id}: {verb} key {} waits for {needed} officers (keyhold ops approve {id} --as \
         OFFICER, on this host); the approval that completes the quorum carries it out ({})",
        what.label, what.file
    );
    Ok(ExitCode::from(crate::cli::issue::EXIT_PENDING))
}

/// Exports or imports as `what` says, audited as done by `actor` (for operation `op`, if
/// one). Returns what was done, to print. The one place both paths (direct, and at the
/// quorum from `keyhold ops approve`) go through.
///
/// Fails if the key store refuses (a key not exportable, an untrusted wrapping key, an
/// existing file, a file changed since the import was requested) or the audit log cannot
/// be written; nothing is left behind then.
pub(crate) fn carry_out(
    cli: &Cli,
    config: &Config,
    kind: OperationKind,
    what: &KeyTransfer,
    actor: &str,
    op: Option<i64>,
) -> Result<String> {
    let embedded = matches!(config.keystore, KeyStoreConfig::Embedded { .. });
    match (kind, embedded) {
        (OperationKind::ExportKey, false) => export_now(cli, config, what, actor, op),
        (OperationKind::ImportKey, false) => import_now(cli, config, what, actor, op),
        (OperationKind::ExportKey, true) => export_embedded(cli, config, what, actor, op),
        (OperationKind::ImportKey, true) => import_embedded(cli, config, what, actor, op),
        (other, _) => bail!("operation kind {other} is not a key transfer"),
    }
}

fn export_now(
    cli: &Cli,
    config: &Config,
    what: &KeyTransfer,
    actor: &str,
    op: Option<i64>,
) -> Result<String> {
    let key = KeyRef::new(what.label.as_str())?;
    let out = Path::new(&what.file);
    if out.exists() {
        bail!("{} exists already: nothing was exported", out.display());
    }
    let (store, mechanism) = open_pkcs11(&cli.paths, config)?;
    let db = open_db(&cli.paths, config)?;
    let wrapped = store.export_wrapped(&key, &what.wrapping_key, mechanism)?;
    let text = wrapped.to_json()?;
    let fingerprint = wrapped.spki()?.fingerprint();
    // Recorded before the file exists: if the record cannot be written, nothing leaves.
    let mut event = AuditEvent::new(
        Action::KeyExported,
        actor,
        "cli",
        format!("key:{}", what.label),
    )
    .with("wrapping_key", what.wrapping_key.as_str())
    .with("mechanism", mechanism.to_string())
    .with("file", what.file.as_str())
    .with("sha256", fingerprint.as_str());
    if let Some(id) = op {
        event = event.with("operation", id.to_string());
    }
    db.audit(&[event])?;
    write_new(out, text.as_bytes())?;
    Ok(format!(
        "exported key {} wrapped under {} ({mechanism}) to {}  sha256:{fingerprint}",
        what.label,
        what.wrapping_key,
        out.display(),
    ))
}

fn import_now(
    cli: &Cli,
    config: &Config,
    what: &KeyTransfer,
    actor: &str,
    op: Option<i64>,
) -> Result<String> {
    let input = Path::new(&what.file);
    let (text, sha256) = read_wrapped(input)?;
    if let Some(expected) = &what.file_sha256
        && *expected != sha256
    {
        bail!(
            "{} changed since the import was requested (SHA-256 {sha256}, requested \
             {expected}): nothing was imported",
            input.display()
        );
    }
    let wrapped = WrappedKey::from_json(&text).with_context(|| input.display().to_string())?;
    let key = KeyRef::new(what.label.as_str())?;
    let (store, _) = open_pkcs11(&cli.paths, config)?;
    let db = open_db(&cli.paths, config)?;
    let spki = store.import_wrapped(&wrapped, &key, &what.wrapping_key, what.extractable)?;
    let mut event = AuditEvent::new(
        Action::KeyImported,
        actor,
        "cli",
        format!("key:{}", key.label()),
    )
    .with("wrapping_key", what.wrapping_key.as_str())
    .with("extractable", what.extractable.to_string())
    .with("file_sha256", sha256.as_str())
    .with("sha256", spki.fingerprint());
    if let Some(id) = op {
        event = event.with("operation", id.to_string());
    }
    audit_import_or_undo(&db, &store, &key, event)?;
    Ok(format!(
        "imported key {} (sensitive, {}) sha256:{}",
        key.label(),
        if what.extractable {
            "exportable under trusted keys"
        } else {
            "non-extractable"
        },
        spki.fingerprint()
    ))
}

fn export_embedded(
    cli: &Cli,
    config: &Config,
    what: &KeyTransfer,
    actor: &str,
    op: Option<i64>,
) -> Result<String> {
    let key = KeyRef::new(what.label.as_str())?;
    let recipient = Recipient::parse(&what.wrapping_key)?;
    let out = Path::new(&what.file);
    if out.exists() {
        bail!("{} exists already: nothing was exported", out.display());
    }
    let store = open_embedded(&cli.paths, config)?;
    let db = open_db(&cli.paths, config)?;
    let exported = store.export_to(&key, &recipient)?;
    let text = exported.to_json()?;
    let fingerprint = exported.spki()?.fingerprint();
    // Recorded before the file exists: if the record cannot be written, nothing leaves.
    let mut event = AuditEvent::new(
        Action::KeyExported,
        actor,
        "cli",
        format!("key:{}", what.label),
    )
    .with("recipient", what.wrapping_key.as_str())
    .with("file", what.file.as_str())
    .with("sha256", fingerprint.as_str());
    if let Some(id) = op {
        event = event.with("operation", id.to_string());
    }
    db.audit(&[event])?;
    write_new(out, text.as_bytes())?;
    Ok(format!(
        "exported key {} re-encrypted to {} to {}  sha256:{fingerprint}",
        what.label,
        what.wrapping_key,
        out.display(),
    ))
}

fn import_embedded(
    cli: &Cli,
    config: &Config,
    what: &KeyTransfer,
    actor: &str,
    op: Option<i64>,
) -> Result<String> {
    let input = Path::new(&what.file);
    let (text, sha256) = read_wrapped(input)?;
    if let Some(expected) = &what.file_sha256
        && *expected != sha256
    {
        bail!(
            "{} changed since the import was requested (SHA-256 {sha256}, requested \
             {expected}): nothing was imported",
            input.display()
        );
    }
    let exported = ExportedKey::from_json(&text).with_context(|| input.display().to_string())?;
    let identity_text = std::fs::read_to_string(&what.wrapping_key)
        .with_context(|| format!("cannot read the identity file {}", what.wrapping_key))?;
    let identity = Identity::parse(&identity_text)?;
    let key = KeyRef::new(what.label.as_str())?;
    let store = open_embedded(&cli.paths, config)?;
    let db = open_db(&cli.paths, config)?;
    let spki = store.import_from(&exported, &key, &identity, what.extractable)?;
    let mut event = AuditEvent::new(
        Action::KeyImported,
        actor,
        "cli",
        format!("key:{}", key.label()),
    )
    .with("extractable", what.extractable.to_string())
    .with("file_sha256", sha256.as_str())
    .with("sha256", spki.fingerprint());
    if let Some(id) = op {
        event = event.with("operation", id.to_string());
    }
    audit_import_or_undo(&db, &store, &key, event)?;
    Ok(format!(
        "imported key {} into the embedded token ({}) sha256:{}",
        key.label(),
        if what.extractable {
            "exportable"
        } else {
            "not exportable"
        },
        spki.fingerprint()
    ))
}

/// A wrapped key file's text and its SHA-256 (hex).
fn read_wrapped(path: &Path) -> Result<(String, String)> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(FILE_LIMIT + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > FILE_LIMIT {
        bail!(
            "{} is larger than a wrapped key file can be",
            path.display()
        );
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not a wrapped key file (not UTF-8)", path.display()))?;
    Ok((text, sha256))
}

fn path_text(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8: name another file", path.display()))
}

/// Audits an imported key, or destroys it again: a key the audit log does not know must not
/// exist (fail closed).
fn audit_import_or_undo(
    db: &db::Db,
    store: &dyn ca_core::keystore::KeyStore,
    key: &KeyRef,
    event: AuditEvent,
) -> Result<()> {
    if let Err(e) = db.audit(&[event]) {
        let undone = store.destroy(key).is_ok();
        bail!(
            "cannot write the audit log ({e}); the imported key was {}",
            if undone {
                "destroyed again"
            } else {
                "NOT destroyed: remove it by hand"
            }
        );
    }
    Ok(())
}
