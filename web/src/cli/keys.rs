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
        /// PKCS#11 only: a key that can leave the token, but only wrapped under a key the
        /// security officer marked trusted (CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED; still
        /// sensitive). Keys are non-exportable by default.
        #[arg(long)]
        exportable: bool,
    },
    /// Write an exportable key wrapped (C_WrapKey, RFC 5649) under a trusted wrapping key,
    /// with its public key. Never plaintext.
    Export {
        /// The key's label.
        #[arg(long)]
        label: String,
        /// The trusted wrapping key's label (an AES key in the token).
        #[arg(long)]
        wrapping_key: String,
        /// The file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Unwrap a key written by `keys export` into this token (sensitive; non-extractable
    /// unless --extractable).
    Import {
        /// The file `keys export` wrote.
        #[arg(long = "in")]
        input: PathBuf,
        /// The wrapping key's label in this token (the same secret as at export).
        #[arg(long)]
        wrapping_key: String,
        /// The label here (default: the label at export).
        #[arg(long)]
        label: Option<String>,
        /// Keep the imported key exportable (again only under trusted keys).
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
            out,
        } => return wrapped::export(cli, &config, label, wrapping_key, out),
        KeysCommand::Import {
            input,
            wrapping_key,
            label,
            extractable,
        } => {
            return wrapped::import(
                cli,
                &config,
                input,
                wrapping_key,
                label.as_deref(),
                *extractable,
            );
        }
        KeysCommand::Generate {
            label,
            key_type,
            exportable,
        } => {
            let key = KeyRef::new(label.as_str())?;
            let db = crate::wiring::open_db(&cli.paths, &config)?;
            let spki = if *exportable {
                let (pkcs11, _) =
                    crate::wiring::open_pkcs11(&cli.paths, &config).context("--exportable")?;
                pkcs11.generate_exportable(&key, *key_type)?
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
