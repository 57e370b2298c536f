//! `keyhold tokens`: API tokens for the HTTP API. `create` prints the token once, alone on
//! standard output (so `TOKEN=$(keyhold tokens create ...)` works); only its hash is kept.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use ca_core::apitoken::{self, TokenError, TokenRequest, TokenStore};
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::cli_actor;
use crate::config::Config;
use crate::text::{humantime, parse_duration};
use crate::wiring::open_db;

/// `keyhold tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it once, alone on standard output.
    Create {
        /// A unique name; everything done with the token is recorded under it.
        #[arg(long)]
        name: String,
        /// requester, officer, auditor or admin.
        #[arg(long)]
        role: String,
        /// Only these profiles (comma-separated); default: every profile.
        #[arg(long, value_delimiter = ',')]
        profiles: Vec<String>,
        /// Expire after this long (`90d`, `12h`); default: never.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// List the tokens (never the tokens themselves).
    List,
    /// Revoke a token at once.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// Runs `keyhold tokens ...`.
///
/// Fails on bad flags, a name in use, an unknown token, or a database failure.
pub fn run(cli: &Cli, cmd: &TokensCommand) -> Result<ExitCode> {
    let config = Config::load(&cli.paths.data_dir)?;
    let db = open_db(&cli.paths, &config)?;
    let now = SystemTime::now();
    match cmd {
        TokensCommand::Create {
            name,
            role,
            profiles,
            expires,
        } => {
            let lifetime = expires.as_deref().map(parse_duration).transpose()?;
            // Profiles are read only when the token is limited to some.
            let known = if profiles.iter().any(|p| !p.trim().is_empty()) {
                ca_core::policy::load_dir(&cli.paths.policies_dir())?
            } else {
                Vec::new()
            };
            let known: Vec<&str> = known.iter().map(|p| p.name.as_str()).collect();
            let actor = cli_actor();
            let token = apitoken::create_token(
                db.as_ref(),
                &TokenRequest {
                    name,
                    role,
                    profiles,
                    lifetime,
                    actor: &actor,
                    source: "cli",
                },
                &known,
                now,
            )
            .map_err(|e| match e {
                TokenError::Invalid(why) => anyhow!("{why}"),
                e => anyhow::Error::new(e).context(format!("cannot create token {name:?}")),
            })?;
            println!("{token}");
            eprintln!(
                "created {role} token {name:?}: shown once, keep it secret (Authorization: Bearer ...)"
            );
        }
        TokensCommand::List => {
            println!(
                "{:<24} {:<10} {:<9} {:<21} {:<21} PROFILES",
                "NAME", "ROLE", "STATE", "CREATED", "EXPIRES"
            );
            for t in db.tokens()? {
                let state = t.state(now);
                println!(
                    "{:<24} {:<10} {:<9} {:<21} {:<21} {}",
                    t.name,
                    t.role.as_str(),
                    state,
                    humantime(t.created_at),
                    t.expires_at.map_or_else(|| "never".into(), humantime),
                    if t.profiles.is_empty() {
                        "(all)".into()
                    } else {
                        t.profiles.join(",")
                    }
                );
            }
        }
        TokensCommand::Revoke { name } => {
            apitoken::revoke_token(db.as_ref(), name, &cli_actor(), "cli")
                .with_context(|| format!("cannot revoke token {name:?}"))?;
            println!("revoked token {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
