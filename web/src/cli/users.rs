//! `keyhold users`: people who sign in to the web UI. `add` and `reset-password` print a
//! one-time password once, alone on standard output; only its Argon2id hash is kept, and
//! the first sign-in must replace it.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result};
use ca_core::users::{self, UserStore};
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::cli_actor;
use crate::config::Config;
use crate::text::humantime;
use crate::text::plain;
use crate::wiring::open_db;

/// `keyhold users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user and print a one-time password once, alone on standard output.
    Add {
        /// A unique name (A-Z a-z 0-9 - _ .).
        name: String,
        /// Roles, comma-separated: admin, officer, auditor, requester.
        #[arg(long = "role", value_name = "ROLE[,ROLE]")]
        roles: String,
    },
    /// List the users.
    List,
    /// Disable a user at once (their sessions end).
    Disable {
        /// The user's name.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// The user's name.
        name: String,
    },
    /// Give a user a new one-time password (printed once); clears a lockout.
    ResetPassword {
        /// The user's name.
        name: String,
    },
}

/// Runs `keyhold users ...`.
///
/// Fails on a bad name or role, a name in use, an unknown user, or a database failure.
pub fn run(cli: &Cli, cmd: &UsersCommand) -> Result<ExitCode> {
    let config = Config::load(&cli.paths.data_dir)?;
    let db = open_db(&cli.paths, &config)?;
    let store: &dyn UserStore = db.as_ref();
    let actor = cli_actor();
    match cmd {
        UsersCommand::Add { name, roles } => {
            let roles = users::parse_roles(roles)?;
            let policy = config.quorum.policy();
            let (password, pending) = ca_core::quorum::create_user(
                store,
                db.as_ref(),
                &policy,
                name,
                &roles,
                &actor,
                "cli",
                SystemTime::now(),
            )
            .with_context(|| format!("cannot create user {name:?}"))?;
            println!("{}", password.as_str());
            eprintln!(
                "created user {name:?} ({}): the one-time password above is shown once; \
                 the first sign-in must change it",
                users::roles_text(&roles)
            );
            if let Some(id) = pending {
                let needed =
                    ca_core::quorum::creation_quorum(&policy, &roles).map_or(0, |(_, n)| n);
                eprintln!(
                    "the account cannot sign in until {needed} officers approve operation {id} \
                     (keyhold ops approve {id} --as OFFICER)"
                );
            }
        }
        UsersCommand::List => {
            let now = SystemTime::now();
            println!(
                "{:<24} {:<32} {:<10} {:<21} CREATED BY",
                "NAME", "ROLES", "STATE", "CREATED"
            );
            for u in store.users()? {
                let state = u.state(now);
                println!(
                    "{:<24} {:<32} {:<10} {:<21} {}",
                    u.name,
                    u.roles_text(),
                    state,
                    humantime(u.created_at),
                    plain(&u.created_by)
                );
            }
        }
        UsersCommand::Disable { name } | UsersCommand::Enable { name } => {
            let disable = matches!(cmd, UsersCommand::Disable { .. });
            users::set_disabled(store, name, disable, &actor, "cli")
                .with_context(|| format!("cannot change user {name:?}"))?;
            println!(
                "{} user {name:?}",
                if disable { "disabled" } else { "enabled" }
            );
        }
        UsersCommand::ResetPassword { name } => {
            let reset = ca_core::quorum::reset_password(
                store,
                db.as_ref(),
                &config.quorum.policy(),
                name,
                &actor,
                "cli",
                SystemTime::now(),
            )
            .with_context(|| format!("cannot reset the password of user {name:?}"))?;
            match reset {
                ca_core::quorum::Reset::Done(password) => {
                    println!("{}", password.expose());
                    eprintln!(
                        "new one-time password for {name:?} above, shown once; their sessions \
                         have ended"
                    );
                }
                ca_core::quorum::Reset::Pending(id) => {
                    eprintln!(
                        "{name:?} is an officer: the reset waits for {} officers to approve \
                         operation {id} (keyhold ops approve {id} --as OFFICER); the one who \
                         completes it gets the one-time password",
                        config.quorum.reset_officer
                    );
                    return Ok(ExitCode::from(crate::cli::issue::EXIT_PENDING));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
