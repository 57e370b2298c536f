//! `keyhold keys`: list, generate and destroy keys in the configured key store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use ca_core::audit::{Action, AuditEvent};
use ca_core::keystore::{KeyRef, KeySpec};
use ca_core::store::AuditLog;
use clap::Subcommand;

use crate::cli::Cli;
use crate::config::Config;
use crate::wiring::open_store;

/// `keyhold keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the keys in the key store.
    List,
    /// Generate a key inside the key store.
    Generate {
        /// The new key's label.
        #[arg(long)]
        label: String,
        /// Key type: p384 or p256.
        #[arg(long = "type", default_value = "p384")]
        key_type: KeySpec,
        /// A key that can leave the key store, never in plaintext: PKCS#11, only wrapped
        /// under a key the security officer marked trusted (CKA_EXTRACTABLE,
        /// CKA_WRAP_WITH_TRUSTED; still sensitive); embedded token, only re-encrypted to an
        /// age recipient. Keys are non-exportable by default.
        #[arg(long)]
        exportable: bool,
    },
    /// Write an exportable key, never in plaintext: PKCS#11, wrapped (C_WrapKey, RFC 5649)
    /// under a trusted wrapping key; embedded token, re-encrypted to an age recipient.
    Export {
        /// The key's label.
        #[arg(long)]
        label: String,
        /// PKCS#11: the trusted wrapping key's label (an AES key in the token).
        #[arg(long, conflicts_with = "recipient")]
        wrapping_key: Option<String>,
        /// Embedded token: the age recipient (age1...) whose identity will import it.
        #[arg(long)]
        recipient: Option<String>,
        /// The file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a key written by `keys export` (sensitive; not exportable again unless
    /// --extractable).
    Import {
        /// The file `keys export` wrote.
        #[arg(long = "in")]
        input: PathBuf,
        /// PKCS#11: the wrapping key's label in this token (the same secret as at export).
        #[arg(long, conflicts_with = "identity")]
        wrapping_key: Option<String>,
        /// Embedded token: the age identity file (AGE-SECRET-KEY-1...) of the recipient.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// The label here (default: the label at export).
        #[arg(long)]
        label: Option<String>,
        /// Keep the imported key exportable.
        #[arg(long)]
        extractable: bool,
    },
    /// Destroy a key for good.
    Destroy {
        /// The key's label.
        #[arg(long)]
        label: String,
        /// Confirm: destroying a key cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[path = "keys_wrapped.rs"]
pub(crate) mod wrapped;

pub fn run_keys(cli: &Cli, cmd: &KeysCommand) -> Result<ExitCode> {
    let config = Config::load(&cli.paths.data_dir)?;
    let store = open_store(&cli.paths, &config)?;
    match cmd {
        KeysCommand::List => {
            let keys = store.list()?;
            println!("{} key store: {} key(s)", store.backend(), keys.len());
            for k in keys {
                println!(
                    "  {:<24} {:<5} sha256:{}  {}",
                    k.key.label(),
                    k.spec.as_str(),
                    k.public_key.fingerprint(),
                    k.uri
                );
            }
        }
        KeysCommand::Export {
            label,
            wrapping_key,
            recipient,
            out,
        } => {
            let via = wrapped::Via::new(&config, wrapping_key.as_deref(), recipient.as_deref())?;
            return wrapped::export(cli, &config, label, via, out);
        }
        KeysCommand::Import {
            input,
            wrapping_key,
            identity,
            label,
            extractable,
        } => {
            let identity = match identity {
                Some(p) => Some(
                    std::path::absolute(p)?
                        .to_str()
                        .context("--identity: name a file whose path is UTF-8")?
                        .to_owned(),
                ),
                None => None,
            };
            let via = wrapped::Via::new(&config, wrapping_key.as_deref(), identity.as_deref())?;
            return wrapped::import(cli, &config, input, via, label.as_deref(), *extractable);
        }
        KeysCommand::Generate {
            label,
            key_type,
            exportable,
        } => {
            let key = KeyRef::new(label.as_str())?;
            let db = crate::wiring::open_db(&cli.paths, &config)?;
            let spki = if *exportable {
                store
                    .generate_exportable(&key, *key_type)
                    .context("--exportable")?
            } else {
                store.generate(&key, *key_type)?
            };
            let event = AuditEvent::new(
                Action::KeyGenerated,
                crate::cli::io::cli_actor(),
                "cli",
                format!("key:{}", store.uri(&key)),
            )
            .with("type", key_type.as_str())
            .with("exportable", exportable.to_string())
            .with("sha256", spki.fingerprint());
            if let Err(e) = db.audit(&[event]) {
                // Fail closed: a key the audit log does not know must not exist.
                let undone = store.destroy(&key).is_ok();
                bail!(
                    "cannot write the audit log ({e}); the new key was {}",
                    if undone {
                        "destroyed again"
                    } else {
                        "NOT destroyed: remove it by hand"
                    }
                );
            }
            println!(
                "generated {key_type} key {}  sha256:{}",
                store.uri(&key),
                spki.fingerprint()
            );
        }
        KeysCommand::Destroy { label, yes } => {
            let key = KeyRef::new(label.as_str())?;
            let users: Vec<String> = config
                .issuers
                .iter()
                .flat_map(|i| {
                    std::iter::once((&i.id, "CA key", &i.ca.key)).chain(
                        i.ocsp
                            .iter()
                            .map(move |o| (&i.id, "OCSP responder key", &o.key)),
                    )
                })
                .filter(|(_, _, uri)| store.key_from_uri(uri).is_ok_and(|k| k == key))
                .map(|(id, role, _)| format!("{role} of issuer {id}"))
                .collect();
            if !users.is_empty() {
                bail!(
                    "key {label:?} is in use as the {}; remove it from keyhold.toml first",
                    users.join(", ")
                );
            }
            if !yes {
                bail!("destroying key {label:?} cannot be undone: add --yes to confirm");
            }
            // Recorded before it happens: if the record cannot be written, nothing happens.
            let db = crate::wiring::open_db(&cli.paths, &config)?;
            let object = format!("key:{}", store.uri(&key));
            let event = AuditEvent::new(
                Action::KeyDestroyed,
                crate::cli::io::cli_actor(),
                "cli",
                object.as_str(),
            );
            db.audit(&[event])?;
            if let Err(e) = store.destroy(&key) {
                let failed = AuditEvent::new(
                    Action::KeyDestroyed,
                    crate::cli::io::cli_actor(),
                    "cli",
                    object,
                )
                .with("failed", e.to_string());
                let _ = db.audit(&[failed]);
                return Err(e.into());
            }
            println!("destroyed key {}", store.uri(&key));
        }
    }
    Ok(ExitCode::SUCCESS)
}
