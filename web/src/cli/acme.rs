//! `keyhold acme`: external account binding keys for the ACME server. `eab create` prints the
//! key id and HMAC key once (only a sealed copy of the key is kept).

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use ca_core::acme::eab_keys::{self, EabRequest};
use ca_core::acme::store::AcmeStore;
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::cli_actor;
use crate::config::Config;
use crate::text::humantime;
use crate::wiring::{acme_secret, open_db};

/// `keyhold acme ...`.
#[derive(Debug, Subcommand)]
pub enum AcmeCommand {
    /// External account binding keys.
    #[command(subcommand)]
    Eab(EabCommand),
}

/// `keyhold acme eab ...`.
#[derive(Debug, Subcommand)]
pub enum EabCommand {
    /// Create a key and print its id (`kid:`) and HMAC key (`hmac:`) once.
    Create {
        /// A unique name (`team-a`).
        #[arg(long)]
        name: String,
        /// A profile its accounts may use (repeat; the first is their default). Default:
        /// every profile with `acme = true`.
        #[arg(long = "profile")]
        profiles: Vec<String>,
        /// A DNS name or `.suffix` its accounts may name (repeat). Default: whatever the
        /// profile allows.
        #[arg(long = "allow-name")]
        names: Vec<String>,
    },
    /// List the keys (never their HMAC keys).
    List,
    /// Revoke a key: no account can bind to it, its accounts can order no more.
    Revoke {
        /// The key's name.
        name: String,
    },
}

/// Runs `keyhold acme ...`.
///
/// Fails on bad flags, a name in use, an unknown key, or a database failure.
pub fn run(cli: &Cli, cmd: &AcmeCommand) -> Result<ExitCode> {
    let AcmeCommand::Eab(cmd) = cmd;
    let config = Config::load(&cli.paths.data_dir)?;
    let db = open_db(&cli.paths, &config)?;
    match cmd {
        EabCommand::Create {
            name,
            profiles,
            names,
        } => {
            let secret_file = config.acme.as_ref().and_then(|a| a.secret_file.as_deref());
            let secret = acme_secret(&cli.paths.data_dir, secret_file)?;
            let open: Vec<String> = ca_core::policy::load_dir(&cli.paths.policies_dir())?
                .into_iter()
                .filter(|p| p.acme())
                .map(|p| p.name)
                .collect();
            let actor = cli_actor();
            let key = eab_keys::create(
                db.as_ref(),
                &secret,
                &open,
                &EabRequest {
                    name,
                    profiles,
                    names,
                    actor: &actor,
                    source: "cli",
                },
                SystemTime::now(),
            )
            .map_err(|e| anyhow!("cannot create EAB key {name:?}: {e}"))?;
            println!("kid: {}", key.kid);
            println!("hmac: {}", key.hmac_b64.as_str());
            eprintln!("created EAB key {name:?}: the HMAC key is shown once, keep it secret");
        }
        EabCommand::List => {
            println!(
                "{:<20} {:<24} {:<9} {:<21} PROFILES / NAMES",
                "NAME", "KID", "STATE", "CREATED"
            );
            for k in db.eab_keys()? {
                println!(
                    "{:<20} {:<24} {:<9} {:<21} {} / {}",
                    k.name,
                    k.kid,
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    humantime(k.created_at),
                    k.profiles.join(","),
                    if k.names.is_empty() {
                        "(profile)".into()
                    } else {
                        k.names.join(",")
                    }
                );
            }
        }
        EabCommand::Revoke { name } => {
            eab_keys::revoke(db.as_ref(), name, &cli_actor(), "cli")
                .with_context(|| format!("cannot revoke EAB key {name:?}"))?;
            println!("revoked EAB key {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
