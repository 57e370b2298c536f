//! `keyhold issue`: a CSR through a profile, and the exit codes scripts rely on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Result;
use ca_core::issuance::{Channel, Issued, Outcome, Submission};
use ca_core::policy::Requester;

use crate::cli::Cli;
use crate::cli::io::{cli_actor, read_input, write_new};
use crate::text::humantime;
use crate::wiring::load_ca;

/// Exit code: refused by policy.
pub const EXIT_REJECTED: u8 = 2;
/// Exit code: waiting for approval.
pub const EXIT_PENDING: u8 = 3;

/// `keyhold issue`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The profile (a file name in --policies without `.toml`).
    #[arg(long)]
    pub profile: String,
    /// The CSR, PEM or DER (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub csr: PathBuf,
    /// Write the certificate chain here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Who the request is for (default: the OS user running the command).
    #[arg(long, value_name = "NAME")]
    pub requester: Option<String>,
}

/// `keyhold issue`.
///
/// Fails on a bad CSR, an unknown profile, or a database or key store failure.
pub fn issue(cli: &Cli, args: &IssueArgs) -> Result<ExitCode> {
    let csr = read_input(&args.csr)?;
    let ca = load_ca(&cli.paths)?;
    // The CLI runs on the CA host with the key store at hand: the ceremony. Its operator may
    // ask for what requesters and officers may (a sub-CA certificate is an officer's request);
    // approvals are still needed from distinct officers, never the one asking.
    let requester = Requester {
        name: args.requester.clone().unwrap_or_else(cli_actor),
        roles: vec!["requester".into(), "officer".into()],
    };
    let outcome = ca.submit(
        &Submission {
            profile: &args.profile,
            csr: &csr,
            requester: &requester,
            source: "cli",
            channel: Channel::Cli,
        },
        SystemTime::now(),
    )?;
    report(outcome, args.out.as_deref())
}

pub fn report(outcome: Outcome, out: Option<&Path>) -> Result<ExitCode> {
    match outcome {
        Outcome::Issued(issued) => {
            write_chain(&issued, out)?;
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Pending {
            request_id,
            approvals,
            approvals_needed,
            void,
        } => {
            println!(
                "request {request_id} is waiting for approval ({approvals} of {approvals_needed}): keyhold requests approve {request_id} --as OFFICER"
            );
            for why in void {
                println!("  an approval no longer counts: {why}");
            }
            Ok(ExitCode::from(EXIT_PENDING))
        }
        Outcome::Rejected(reasons) => {
            eprintln!("refused by policy:");
            for r in reasons {
                eprintln!("  - {r}");
            }
            Ok(ExitCode::from(EXIT_REJECTED))
        }
    }
}

fn write_chain(issued: &Issued, out: Option<&Path>) -> Result<()> {
    let pem = issued.chain_pem()?;
    match out {
        Some(path) => {
            write_new(path, pem.as_bytes())?;
            eprintln!(
                "issued {} (serial {}, valid until {}): {}",
                issued.cert.subject(),
                issued.serial,
                humantime(issued.cert.not_after()),
                path.display()
            );
        }
        None => print!("{pem}"),
    }
    Ok(())
}
