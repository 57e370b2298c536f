//! `keyhold audit`: verify the hash chain, sign checkpoints, read entries.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Result, bail};
use ca_core::audit::{self, Action, AuditEvent, Checkpoint};
use ca_core::keystore::KeyStore;
use ca_core::store::AuditLog;
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::cli_actor;
use crate::text::humantime;
use crate::wiring::{open_db, open_store};

use crate::config::Config;

/// `keyhold audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and check every checkpoint's signature with the audit key; report
    /// the first edited, deleted, inserted or reordered entry (exit 1 if any).
    Verify,
    /// Sign the chain's head now with the audit key.
    Checkpoint,
    /// Show the latest entries.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// `keyhold audit ...`.
///
/// Fails if the database or key store cannot be read.
pub fn audit(cli: &Cli, cmd: &AuditCommand) -> Result<ExitCode> {
    let config = Config::load(&cli.paths.data_dir)?;
    let db = open_db(&cli.paths, &config)?;
    match cmd {
        AuditCommand::List { limit } => {
            let Some((head, _)) = db.audit_head()? else {
                println!("the audit log is empty");
                return Ok(ExitCode::SUCCESS);
            };
            let from = (head - i64::from(*limit) + 1).max(1);
            for e in db.audit_entries(from, head)? {
                println!(
                    "{:>6} {} {:<20} {:<18} {:<12} {}",
                    e.seq,
                    humantime(e.at()),
                    e.action,
                    e.actor,
                    e.source,
                    e.object
                );
                for line in e.details.lines() {
                    println!("{:>6}   {line}", "");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint => {
            let (keys, uri) = audit_key(cli, &config)?;
            let key = keys.key_from_uri(&uri)?;
            let signer = keys.signer(&key)?;
            let Some((seq, hash)) = db.audit_head()? else {
                bail!("the audit log is empty: nothing to sign");
            };
            let cp = Checkpoint::sign(seq, hash, &uri, signer.as_ref(), SystemTime::now())?;
            let event = AuditEvent::new(
                Action::CheckpointSigned,
                cli_actor(),
                "cli",
                format!("audit:{seq}"),
            )
            .with("head", hex::encode(hash));
            db.add_checkpoint(&cp, &event)?;
            println!(
                "signed checkpoint at entry {seq} (sha256 {})",
                hex::encode(hash)
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify => {
            let (keys, uri) = audit_key(cli, &config)?;
            let key = keys.key_from_uri(&uri)?;
            let signer = keys.signer(&key)?;
            let head = db.audit_head()?.map_or(0, |(seq, _)| seq);
            let entries = db.audit_entries(1, head)?;
            let checkpoints = db.checkpoints()?;
            let report = audit::verify(
                &entries,
                &checkpoints,
                signer.algorithm(),
                signer.public_key(),
            );
            match &report.first_problem {
                None => {
                    println!(
                        "audit log intact: {} entries, {} signed checkpoint(s), signed up to entry {}",
                        report.entries, report.checkpoints_verified, report.covered_up_to
                    );
                    if report.covered_up_to < head {
                        println!(
                            "  entries {}..{} are not yet covered by a checkpoint (keyhold audit checkpoint)",
                            report.covered_up_to + 1,
                            head
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(finding) => {
                    eprintln!("audit log TAMPERED: {finding}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn audit_key(cli: &Cli, config: &Config) -> Result<(Arc<dyn KeyStore>, String)> {
    let Some(audit) = &config.audit else {
        bail!("keyhold.toml has no [audit] key: checkpoints cannot be signed or checked");
    };
    Ok((open_store(&cli.paths, config)?, audit.key.clone()))
}
