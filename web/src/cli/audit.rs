//! `keyhold audit`: verify the hash chain, sign checkpoints, read entries.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Result, bail};
use ca_core::audit;
use ca_core::audit::anchor::AnchorFile;
use ca_core::keystore::KeyStore;
use ca_core::store::AuditLog;
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::cli_actor;
use crate::text::{humantime, plain};
use crate::wiring::{open_db, open_store};

use crate::config::Config;

/// `keyhold audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and check every checkpoint's signature with the audit key; report
    /// the first edited, deleted, inserted or reordered entry (exit 1 if any).
    Verify,
    /// Sign the chain's head now with the audit key (also appended to audit-anchor.log).
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
                    plain(&e.action),
                    plain(&e.actor),
                    plain(&e.source),
                    plain(&e.object)
                );
                for line in e.details.lines() {
                    println!("{:>6}   {}", "", plain(line));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint => {
            let (keys, uri) = audit_key(cli, &config)?;
            let key = keys.key_from_uri(&uri)?;
            let signer = keys.signer(&key)?;
            let anchor = AnchorFile::in_dir(&cli.paths.data_dir);
            let cp = audit::sign_checkpoint(
                db.as_ref(),
                signer.as_ref(),
                &uri,
                &anchor,
                &cli_actor(),
                "cli",
                false,
                SystemTime::now(),
            )?
            .ok_or_else(|| anyhow::anyhow!("nothing to sign"))?;
            println!(
                "signed checkpoint at entry {} (sha256 {}), anchored in {}",
                cp.seq,
                hex::encode(cp.head_hash),
                anchor.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify => {
            let (keys, uri) = audit_key(cli, &config)?;
            let key = keys.key_from_uri(&uri)?;
            let signer = keys.signer(&key)?;
            let head_row = db.audit_head()?;
            let head = head_row.map_or(0, |(seq, _)| seq);
            // Every row, not only those up to the head: rows beyond it are a finding too.
            let entries = db.audit_entries(1, i64::MAX)?;
            let checkpoints = db.checkpoints()?;
            let anchored = AnchorFile::in_dir(&cli.paths.data_dir).read()?;
            let report = audit::verify_complete(
                &audit::Evidence {
                    entries: &entries,
                    checkpoints: &checkpoints,
                    head: head_row,
                    anchored: &anchored,
                },
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
