//! `keyhold requests`: the requests waiting for approval, and the officers' decisions.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Result, anyhow};
use ca_core::issuance::{self};
use ca_core::policy::Requester;
use ca_core::store::{CertificateQueries, RequestFilter, RequestStatus};
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::issue::report;
use crate::text::{humantime, plain};
use crate::wiring::{load_ca, open_db};

use crate::config::Config;

/// `keyhold requests ...`.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List requests, newest first.
    List {
        /// Only this status: pending, issued, rejected, failed, expired.
        #[arg(long)]
        status: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one request with its approvals.
    Show {
        /// The request id.
        id: i64,
    },
    /// Approve a request as an officer; the last approval the quorum needs issues it.
    Approve {
        /// The request id.
        id: i64,
        /// The approving officer (the web UI adds real users).
        #[arg(long = "as", value_name = "NAME")]
        officer: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// Write the certificate chain here once issued.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Reject a request as an officer. One rejection ends it.
    Reject {
        /// The request id.
        id: i64,
        /// The rejecting officer.
        #[arg(long = "as", value_name = "NAME")]
        officer: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
}

/// `keyhold requests ...`.
///
/// Fails on an unknown request, a decision the rules forbid, or a database failure.
pub fn requests(cli: &Cli, cmd: &RequestsCommand) -> Result<ExitCode> {
    let now = SystemTime::now();
    match cmd {
        RequestsCommand::List { status, limit } => {
            let config = Config::load(&cli.paths.data_dir)?;
            let db = open_db(&cli.paths, &config)?;
            let status = status
                .as_deref()
                .map(|s| {
                    RequestStatus::parse(s).ok_or_else(|| {
                        anyhow!("unknown status {s:?} (pending, issued, rejected, failed, expired)")
                    })
                })
                .transpose()?;
            let rows = db.requests(&RequestFilter {
                status,
                limit: (*limit).clamp(1, 1000),
                ..RequestFilter::default()
            })?;
            println!(
                "{:<6} {:<9} {:<9} {:<14} {:<16} SUBJECT / SANS",
                "ID", "STATUS", "APPROVED", "PROFILE", "REQUESTER"
            );
            for r in rows {
                println!(
                    "{:<6} {:<9} {:<9} {:<14} {:<16} {} {}",
                    r.id,
                    issuance::effective_request_status(&r, now),
                    format!("{}/{}", r.approvals.len(), r.approvals_needed),
                    r.profile,
                    plain(&r.requester),
                    plain(&r.subject),
                    plain(&r.sans)
                );
            }
        }
        RequestsCommand::Show { id } => {
            let config = Config::load(&cli.paths.data_dir)?;
            let db = open_db(&cli.paths, &config)?;
            let r = db.request(*id)?.ok_or_else(|| anyhow!("no request {id}"))?;
            let void = issuance::void_approvals(db.as_ref(), &r)?;
            println!("Request {}", r.id);
            println!(
                "  Status:    {}",
                issuance::effective_request_status(&r, now)
            );
            println!("  Profile:   {}", r.profile);
            println!("  Requester: {}", plain(&r.requester));
            println!("  Subject:   {}", plain(&r.subject));
            println!("  SANs:      {}", plain(&r.sans));
            println!("  Received:  {}", humantime(r.created_at));
            println!("  Deadline:  {}", humantime(r.expires_at));
            println!(
                "  Approvals: {} of {}",
                r.approvals.len() - void.len(),
                r.approvals_needed
            );
            for a in &r.approvals {
                println!(
                    "    {} at {}: {}",
                    plain(&a.officer),
                    humantime(a.at),
                    plain(&a.comment)
                );
                if let Some((_, why)) = void.iter().find(|(o, _)| *o == a.officer) {
                    println!("      no longer counts: {why}");
                }
            }
            if let Some(by) = &r.decided_by {
                println!("  Decided by: {}", plain(by));
            }
            if let Some(reason) = &r.reason {
                println!("  Reason:    {}", plain(reason));
            }
            if let Some(serial) = &r.serial {
                println!("  Certificate: {serial}");
            }
        }
        RequestsCommand::Approve {
            id,
            officer,
            comment,
            out,
        } => {
            let ca = load_ca(&cli.paths)?;
            let officer = Requester {
                name: officer.clone(),
                roles: vec!["officer".into()],
            };
            let outcome = ca.approve(*id, &officer, comment, "cli", now)?;
            return report(outcome, out.as_deref());
        }
        RequestsCommand::Reject {
            id,
            officer,
            reason,
        } => {
            let ca = load_ca(&cli.paths)?;
            let officer = Requester {
                name: officer.clone(),
                roles: vec!["officer".into()],
            };
            ca.reject(*id, &officer, reason, "cli")?;
            println!("request {id} rejected");
        }
    }
    Ok(ExitCode::SUCCESS)
}
