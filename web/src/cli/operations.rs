//! `keyhold ops ...`: sensitive operations waiting for a quorum of officers (creating an
//! administrator or an officer, resetting an officer's password, destroying a code-signing
//! key, exporting or importing a wrapped key). The rules live in `ca_core::quorum`; the
//! operation is carried out here once its quorum is reached.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Result, anyhow};
use ca_core::policy::Requester;
use ca_core::quorum::{Approved, OperationStore, Quorum};
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::issue::EXIT_PENDING;
use crate::config::Config;
use crate::text::humantime;
use crate::text::plain;
use crate::wiring::open_db;

/// `keyhold ops ...`.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Operations waiting for approval (every one with --all).
    List {
        /// Include finished operations.
        #[arg(long)]
        all: bool,
    },
    /// One operation with its approvals.
    Show {
        /// Its id.
        id: i64,
    },
    /// Approve an operation as an officer (never the one who asked); at the quorum it is
    /// carried out.
    Approve {
        /// Its id.
        id: i64,
        /// The approving officer.
        #[arg(long = "as", value_name = "NAME")]
        officer: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject an operation as an officer; one rejection ends it.
    Reject {
        /// Its id.
        id: i64,
        /// The rejecting officer.
        #[arg(long = "as", value_name = "NAME")]
        officer: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
}

fn officer(name: &str) -> Requester {
    Requester {
        name: name.to_owned(),
        roles: vec!["officer".into()],
    }
}

/// `keyhold ops ...`.
///
/// Fails on an unknown operation, a refused approval, or a database or key store failure.
pub fn run(cli: &Cli, cmd: &OpsCommand) -> Result<ExitCode> {
    let config = Config::load(&cli.paths.data_dir)?;
    let db = open_db(&cli.paths, &config)?;
    let quorum = Quorum {
        ops: db.as_ref(),
        accounts: db.as_ref(),
    };
    let now = SystemTime::now();
    match cmd {
        OpsCommand::List { all } => {
            println!(
                "{:<6} {:<9} {:<9} {:<13} {:<24} REQUESTED BY",
                "ID", "STATUS", "APPROVED", "KIND", "TARGET"
            );
            for r in db.operations(!all)? {
                println!(
                    "{:<6} {:<9} {:<9} {:<13} {:<24} {}",
                    r.id,
                    r.effective_status(now),
                    format!("{}/{}", r.approvals.len(), r.op.approvals_needed),
                    r.op.kind,
                    plain(&r.op.target),
                    plain(&r.op.requested_by)
                );
            }
        }
        OpsCommand::Show { id } => {
            let r = db
                .operation(*id)?
                .ok_or_else(|| anyhow!("no operation {id}"))?;
            println!("Operation {}", r.id);
            println!("  Status:       {}", r.effective_status(now));
            println!("  Kind:         {}", r.op.kind);
            println!("  Target:       {}", plain(&r.op.target));
            println!("  Requested by: {}", plain(&r.op.requested_by));
            println!("  Received:     {}", humantime(r.created_at));
            println!("  Deadline:     {}", humantime(r.op.expires_at));
            println!(
                "  Approvals:    {} of {}",
                r.approvals.len(),
                r.op.approvals_needed
            );
            for a in &r.approvals {
                println!(
                    "    {} at {}: {}",
                    plain(&a.officer),
                    humantime(a.at),
                    plain(&a.comment)
                );
                if let Some(why) =
                    ca_core::issuance::approval_void(db.as_ref(), &a.officer, r.created_at)?
                {
                    println!("      no longer counts: {why}");
                }
            }
            if let Some(by) = &r.decided_by {
                println!("  Decided by:   {}", plain(by));
            }
            if let Some(reason) = &r.reason {
                println!("  Reason:       {}", plain(reason));
            }
        }
        OpsCommand::Approve {
            id,
            officer: name,
            comment,
        } => match quorum.approve(*id, &officer(name), comment, "cli", now)? {
            Approved::Pending {
                approvals,
                approvals_needed,
                void,
            } => {
                println!(
                    "operation {id} is waiting for approval ({approvals} of {approvals_needed})"
                );
                for why in void {
                    println!("  an approval no longer counts: {why}");
                }
                return Ok(ExitCode::from(EXIT_PENDING));
            }
            Approved::Ready(row) => {
                let destroy = |label: &str, why: &str| {
                    crate::cli::codesign::destroy_now(cli, label, why, name)
                };
                let destroy =
                    |label: &str, why: &str| destroy(label, why).map_err(|e| format!("{e:#}"));
                // Exports and imports run here, on the CA host, by the officer whose
                // approval completed the quorum, as the request fixed them.
                let transfer = |kind, what: &ca_core::quorum::KeyTransfer, id| {
                    crate::cli::keys::wrapped::carry_out(cli, &config, kind, what, name, Some(id))
                        .map_err(|e| format!("{e:#}"))
                };
                let done = ca_core::quorum::carry_out(
                    db.as_ref(),
                    db.as_ref(),
                    destroy,
                    transfer,
                    &row,
                    name,
                    "cli",
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                if let ca_core::quorum::CarriedOut::CredentialsReset { password, .. } = &done {
                    // Alone on standard output, like `keyhold users add`.
                    println!("{}", password.expose());
                    eprintln!("{done}");
                } else {
                    println!("{done}");
                }
            }
        },
        OpsCommand::Reject {
            id,
            officer: name,
            reason,
        } => {
            quorum.reject(*id, &officer(name), reason, "cli")?;
            println!("operation {id} rejected");
        }
    }
    Ok(ExitCode::SUCCESS)
}
