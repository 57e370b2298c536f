//! `keyhold tokens`: API tokens for the HTTP API. `create` prints the token once, alone on
//! standard output (so `TOKEN=$(keyhold tokens create ...)` works); only its hash is kept.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use ca_core::apitoken::{NewApiToken, Role, TokenStore};
use ca_core::audit::{Action, AuditEvent};
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::cli_actor;
use crate::config::Config;
use crate::text::{humantime, parse_duration};
use crate::wiring::open_db;
use ca_core::apitoken::{generate_token, token_hash};

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

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
            if !valid_name(name) {
                bail!("invalid token name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 - _ .");
            }
            let role = Role::parse(role).ok_or_else(|| {
                anyhow!("unknown role {role:?} (requester, officer, auditor, admin)")
            })?;
            let profiles: Vec<String> = profiles
                .iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect();
            if !profiles.is_empty() {
                let known = ca_core::policy::load_dir(&cli.paths.policies)?;
                for p in &profiles {
                    if !known.iter().any(|k| &k.name == p) {
                        bail!(
                            "unknown profile {p:?} in --profiles (see {})",
                            cli.paths.policies.display()
                        );
                    }
                }
            }
            let expires_at = expires
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(|d| now + d);
            let token = generate_token()?;
            let new = NewApiToken {
                name: name.clone(),
                hash: token_hash(&token),
                role,
                profiles: profiles.clone(),
                expires_at,
                created_by: cli_actor(),
            };
            let mut event = AuditEvent::new(
                Action::TokenCreated,
                cli_actor(),
                "cli",
                format!("token:{name}"),
            )
            .with("role", role.as_str())
            .with("profiles", profiles.join(","));
            if let Some(t) = expires_at {
                event = event.with("expires_at", humantime(t));
            }
            db.create_token(&new, &event)
                .with_context(|| format!("cannot create token {name:?}"))?;
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
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if !t.usable(now) {
                    "expired"
                } else {
                    "active"
                };
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
            let event = AuditEvent::new(
                Action::TokenRevoked,
                cli_actor(),
                "cli",
                format!("token:{name}"),
            );
            db.revoke_token(name, &event)
                .with_context(|| format!("cannot revoke token {name:?}"))?;
            println!("revoked token {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
