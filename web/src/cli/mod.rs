//! The `keyhold` command line. Key generation, destruction and the ceremony live here and
//! only here: the server never reaches them.

pub mod acme;
pub mod audit;
pub mod backup;
pub mod ca;
pub mod certs;
pub mod codesign;
pub mod init;
pub mod io;
pub mod issue;
pub mod issuing;
pub mod keys;
pub mod operations;
pub mod policy;
pub mod requests;
pub mod revoke;
pub mod tokens;
pub mod users;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use self::ca::{CaCommand, OcspCommand, run_ca_check, run_ocsp_renew};
use self::init::{HsmCommand, InitArgs, run_init, run_init_token};
use self::keys::{KeysCommand, run_keys};
use self::policy::{PolicyCommand, run_policy_check};
use crate::wiring::Paths;

/// Keyhold: a certificate authority whose CA keys never leave the HSM.
#[derive(Debug, Parser)]
#[command(name = "keyhold", version, about)]
pub struct Cli {
    /// The data directory, secrets and profiles.
    #[command(flatten)]
    pub paths: Paths,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Command {
    /// Whether this command runs the long-lived server (`serve`).
    pub fn is_server(&self) -> bool {
        matches!(self, Command::Serve(_))
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a CA hierarchy (root, issuing CA, OCSP responder) in a key store.
    Init(InitArgs),
    /// Manage keys in the configured key store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Security-officer operations on a PKCS#11 token.
    #[command(subcommand)]
    Hsm(HsmCommand),
    /// Inspect the CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Manage OCSP responder certificates.
    #[command(subcommand)]
    Ocsp(OcspCommand),
    /// Certificate profiles.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Issue a certificate for a CSR under a profile (exit 0 issued, 2 refused by policy,
    /// 3 waiting for approval, 1 any other error).
    Issue(crate::cli::issue::IssueArgs),
    /// Browse issued certificates.
    #[command(subcommand)]
    Certs(crate::cli::certs::CertsCommand),
    /// Requests waiting for approval, and the officers' decisions.
    #[command(subcommand)]
    Requests(crate::cli::requests::RequestsCommand),
    /// Encrypted, signed backups of the CA: create, verify, restore.
    #[command(subcommand)]
    Backup(crate::cli::backup::BackupCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(crate::cli::audit::AuditCommand),
    /// Run the HTTP server (initialising a demo CA first if the data directory has none).
    Serve(crate::serve::ServeArgs),
    /// API tokens for the HTTP API.
    #[command(subcommand)]
    Tokens(crate::cli::tokens::TokensCommand),
    /// The ACME server's external account binding keys.
    #[command(subcommand)]
    Acme(crate::cli::acme::AcmeCommand),
    /// Revoke a certificate (officer): recorded and audited; the next CRL and OCSP
    /// responses say so.
    Revoke(crate::cli::revoke::RevokeArgs),
    /// Revoke an issuing CA's certificate (officer; asks for confirmation unless --yes):
    /// recorded and audited; its parent's next CRL lists it.
    RevokeCa(crate::cli::revoke::RevokeCaArgs),
    /// Certificate revocation lists.
    #[command(subcommand)]
    Crl(crate::cli::revoke::CrlCommand),
    /// Code-signing keys held in the key store for their owners, and signatures with them.
    #[command(subcommand)]
    Codesign(crate::cli::codesign::CodesignCommand),
    /// People who sign in to the web UI.
    #[command(subcommand)]
    Users(crate::cli::users::UsersCommand),
    /// Sensitive operations waiting for a quorum of officers (`[quorum]` in keyhold.toml).
    #[command(subcommand)]
    Ops(crate::cli::operations::OpsCommand),
}

/// Runs a parsed command line.
///
/// Fails with an error that names the file, key or token involved.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match &cli.command {
        Command::Issue(args) => crate::cli::issue::issue(&cli, args),
        Command::Certs(cmd) => crate::cli::certs::certs(&cli, cmd),
        Command::Requests(cmd) => crate::cli::requests::requests(&cli, cmd),
        Command::Audit(cmd) => crate::cli::audit::audit(&cli, cmd),
        Command::Backup(cmd) => crate::cli::backup::run(&cli, cmd),
        Command::Serve(args) => crate::serve::run(&cli.paths, args),
        Command::Tokens(cmd) => crate::cli::tokens::run(&cli, cmd),
        Command::Acme(cmd) => crate::cli::acme::run(&cli, cmd),
        Command::Revoke(args) => crate::cli::revoke::revoke(&cli, args),
        Command::RevokeCa(args) => crate::cli::revoke::revoke_ca(&cli, args),
        Command::Crl(cmd) => crate::cli::revoke::crl(&cli, cmd),
        Command::Codesign(cmd) => crate::cli::codesign::run(&cli, cmd),
        Command::Users(cmd) => crate::cli::users::run(&cli, cmd),
        Command::Ops(cmd) => crate::cli::operations::run(&cli, cmd),
        Command::Init(args) => done(run_init(&cli, args)),
        Command::Keys(cmd) => run_keys(&cli, cmd),
        Command::Hsm(HsmCommand::InitToken {
            module,
            label,
            so_pin_file,
        }) => done(run_init_token(&cli, module, label, so_pin_file.as_deref())),
        Command::Hsm(HsmCommand::InstallWrappingKey {
            module,
            token,
            label,
            value_file,
            so_pin_file,
        }) => done(crate::cli::init::run_install_wrapping_key(
            module,
            token,
            label,
            value_file,
            so_pin_file.as_deref(),
        )),
        Command::Ca(CaCommand::Check) => done(run_ca_check(&cli)),
        Command::Ca(CaCommand::AddIssuing(args)) => {
            done(self::issuing::run_add_issuing(&cli, args))
        }
        Command::Ocsp(OcspCommand::Renew { issuer, days }) => {
            done(run_ocsp_renew(&cli, issuer, *days))
        }
        Command::Ocsp(OcspCommand::Respond(args)) => crate::cli::revoke::ocsp_respond(&cli, args),
        Command::Policy(PolicyCommand::Check { dir }) => done(run_policy_check(
            &cli,
            dir.as_deref().unwrap_or(&cli.paths.policies_dir()),
        )),
    }
}
