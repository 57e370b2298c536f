//! `keyhold codesign ...`: keys held in the key store for their owners, and detached CMS
//! signatures with them through the local key store. The file to sign is hashed here; only
//! its digest reaches the signing code (as it will over HTTP).
//!
//! `keyhold codesign approve|reject` are `keyhold requests approve|reject`: the key's
//! certificate is found through its request once issued, however it was approved.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use ca_core::cms::DigestAlg;
use ca_core::codesign::{
    Codesign, CodesignError, CodesignStore, KeyRequest, Principal, SignRequest,
};
use ca_core::issuance::{Ca, Channel, Outcome};
use ca_core::keystore::{KeyRef, KeySpec};
use ca_core::policy::Requester;
use ca_core::store::Store;
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::cli_actor;
use crate::cli::issue::{EXIT_REJECTED, report};
use crate::text::humantime;
use crate::wiring::{load_issuers, open_db};

/// `keyhold codesign ...`.
#[derive(Debug, Subcommand)]
pub enum CodesignCommand {
    /// Generate a code-signing key inside the key store for a requester and request its
    /// certificate (exit 3 while it waits for approvals: `keyhold requests approve ID --as
    /// OFFICER`). With a CSR instead, use `keyhold issue --profile code-signing --csr FILE`.
    Request {
        /// Generate the key in the key store (non-extractable); required.
        #[arg(long)]
        key_in_hsm: bool,
        /// The certificate subject, RFC 4514 (`CN=Release signing,OU=Builds`).
        #[arg(long)]
        subject: String,
        /// Key type: p256 or p384.
        #[arg(long = "type", default_value = "p256", value_name = "TYPE")]
        key_type: String,
        /// The profile.
        #[arg(long, default_value = "code-signing")]
        profile: String,
        /// Who will own the key (default: the OS user running the command).
        #[arg(long, value_name = "NAME")]
        requester: Option<String>,
        /// Write the certificate chain here if it is issued at once.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Sign FILE with a key held for you: FILE is hashed here, only its digest is signed.
    /// Writes a detached CMS signature (DER; PEM with --pem) that `openssl cms -verify
    /// -binary -content FILE` checks.
    Sign {
        /// The key's label (printed by `keyhold codesign request`).
        #[arg(long, value_name = "LABEL")]
        key: String,
        /// The file to sign.
        file: PathBuf,
        /// Where to write the signature (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Write PEM instead of DER.
        #[arg(long)]
        pem: bool,
        /// Sign as this user (default: the OS user running the command); only a key's owner
        /// may sign with it.
        #[arg(long = "as", value_name = "NAME")]
        caller: Option<String>,
    },
    /// Approve a code-signing request as an officer (the same as `keyhold requests approve`).
    Approve {
        /// The request id.
        id: i64,
        /// The approving officer.
        #[arg(long = "as", value_name = "NAME")]
        officer: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject a code-signing request as an officer (the same as `keyhold requests reject`).
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
    /// Let an API token sign with a key besides its owner (an administrator's command,
    /// audited). Revoking the token, or `unbind`, stops it.
    Bind {
        /// The key's label.
        #[arg(long, value_name = "LABEL")]
        key: String,
        /// The API token's name.
        #[arg(long, value_name = "NAME")]
        token: String,
        /// The key's owner, consenting (only the owner binds a token to their key).
        #[arg(long = "as", value_name = "OWNER")]
        owner: String,
    },
    /// Take back `bind` (audited).
    Unbind {
        /// The key's label.
        #[arg(long, value_name = "LABEL")]
        key: String,
        /// The API token's name.
        #[arg(long, value_name = "NAME")]
        token: String,
    },
    /// Destroy a code-signing key in the key store and revoke its certificate
    /// (cessationOfOperation). With `[quorum] destroy_key = M` in keyhold.toml this opens an
    /// operation that M officers approve (`keyhold ops approve ID`; exit 3 meanwhile).
    DestroyKey {
        /// The key's label.
        label: String,
    },
    /// A key's signing history, newest first (its owner only).
    History {
        /// The key's label.
        #[arg(long, value_name = "LABEL")]
        key: String,
        /// As this user (default: the OS user running the command).
        #[arg(long = "as", value_name = "NAME")]
        caller: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// `keyhold codesign ...`.
///
/// Fails naming the key, file or database involved; a refusal (not the owner, rate limit)
/// exits 2.
pub fn run(cli: &Cli, cmd: &CodesignCommand) -> Result<ExitCode> {
    match cmd {
        // Approvals are the issuance cycle's: the key's certificate is found through its
        // request, however it was approved.
        CodesignCommand::Approve {
            id,
            officer,
            comment,
        } => crate::cli::requests::requests(
            cli,
            &crate::cli::requests::RequestsCommand::Approve {
                id: *id,
                officer: officer.clone(),
                comment: comment.clone(),
                out: None,
            },
        ),
        CodesignCommand::Reject {
            id,
            officer,
            reason,
        } => crate::cli::requests::requests(
            cli,
            &crate::cli::requests::RequestsCommand::Reject {
                id: *id,
                officer: officer.clone(),
                reason: reason.clone(),
            },
        ),
        CodesignCommand::Request {
            key_in_hsm,
            subject,
            key_type,
            profile,
            requester,
            out,
        } => {
            if !key_in_hsm {
                bail!(
                    "give --key-in-hsm to have the key generated in the key store, or request a certificate for your own key with keyhold issue --profile {profile} --csr FILE"
                );
            }
            let spec: KeySpec = key_type.parse()?;
            let Loaded {
                config,
                issuers,
                profiles,
                db,
                codesign,
            } = load(cli)?;
            let now = SystemTime::now();
            let store: Arc<dyn Store> = db.clone();
            let ca = Ca::new(issuers, profiles, store, &config.base_url)
                .map_err(|p| anyhow!("the CA cannot start:\n  - {}", p.join("\n  - ")))?;
            let owner = Requester {
                name: requester.clone().unwrap_or_else(cli_actor),
                roles: vec!["requester".into()],
            };
            let requested = codesign.request_key(
                &ca,
                &KeyRequest {
                    owner: &owner,
                    profile,
                    subject,
                    spec,
                    source: "cli",
                    channel: Channel::Cli,
                },
                now,
            )?;
            if matches!(requested.outcome, Outcome::Rejected(_)) {
                eprintln!(
                    "key {} was destroyed: its request was refused",
                    requested.key
                );
            } else {
                println!(
                    "key {} ({spec}, sha256:{}) generated in the key store for {}",
                    requested.key,
                    requested.public_key.fingerprint(),
                    owner.name
                );
            }
            report(requested.outcome, out.as_deref())
        }
        CodesignCommand::Sign {
            key,
            file,
            out,
            pem,
            caller,
        } => {
            let caller = caller.clone().unwrap_or_else(cli_actor);
            let Loaded { db, codesign, .. } = load(cli)?;
            let label = KeyRef::new(key.as_str())?;
            let row = db
                .codesign_key(&label)?
                .ok_or_else(|| anyhow!("no code-signing key labelled {key:?}"))?;
            // The key decides the digest: SHA-256 for P-256, SHA-384 for P-384.
            let alg = DigestAlg::of_signature(row.spec.signature_algorithm());
            let input = std::fs::File::open(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let digest = alg
                .hash_reader(std::io::BufReader::new(input))
                .with_context(|| format!("cannot read {}", file.display()))?;
            // Claim the output first: a signature is recorded and audited when it is made,
            // so it must never be made only to find it cannot be delivered.
            let mut output = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(out)
                .with_context(|| {
                    format!("cannot create {} (it must not exist yet)", out.display())
                })?;
            // The signing time is now, after the file was read and hashed.
            let now = SystemTime::now();
            let signed = codesign.sign(
                &SignRequest {
                    caller: Principal::user(&caller),
                    key,
                    digest: &digest,
                    source: "cli",
                },
                now,
            );
            let signature = match signed {
                Ok(s) => s,
                Err(e) => {
                    drop(output);
                    let _ = std::fs::remove_file(out);
                    if matches!(
                        e,
                        CodesignError::Forbidden(_) | CodesignError::RateLimited(_)
                    ) {
                        eprintln!("refused: {e}");
                        return Ok(ExitCode::from(EXIT_REJECTED));
                    }
                    return Err(e.into());
                }
            };
            let bytes = if *pem {
                signature.cms.to_pem()?.into_bytes()
            } else {
                signature.cms.into_der()
            };
            output
                .write_all(&bytes)
                .and_then(|()| output.sync_all())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "signed {} ({alg} {}) with key {key} (certificate {}): {}",
                file.display(),
                digest.to_hex(),
                signature.serial,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CodesignCommand::DestroyKey { label } => {
            let config = crate::config::Config::load(&cli.paths.data_dir)?;
            let needed = config.quorum.destroy_key;
            let actor = cli_actor();
            if needed == 0 {
                let revoked = destroy_now(cli, label, "keyhold codesign destroy-key", &actor)?;
                println!("{}", destroyed_text(label, revoked.as_ref()));
                return Ok(ExitCode::SUCCESS);
            }
            let db = open_db(&cli.paths, &config)?;
            let key = KeyRef::new(label.as_str())?;
            let row = db
                .codesign_key(&key)?
                .ok_or_else(|| anyhow!("no code-signing key labelled {label:?}"))?;
            if let Some(reason) = row.retired {
                bail!("key {label} is retired already ({reason})");
            }
            let id = ca_core::quorum::Quorum {
                ops: db.as_ref(),
                accounts: db.as_ref(),
            }
            .open(
                ca_core::quorum::OperationKind::DestroyKey,
                label,
                needed,
                &actor,
                "cli",
                SystemTime::now(),
            )?;
            println!(
                "operation {id}: destroying key {label} waits for {needed} officers (keyhold ops approve {id} --as OFFICER)"
            );
            Ok(ExitCode::from(crate::cli::issue::EXIT_PENDING))
        }
        CodesignCommand::Bind { key, token, owner } => {
            let Loaded { codesign, .. } = load(cli)?;
            codesign.bind_token(key, token, Principal::user(owner), "cli", SystemTime::now())?;
            println!("API token {token} may now sign with key {key}");
            Ok(ExitCode::SUCCESS)
        }
        CodesignCommand::Unbind { key, token } => {
            let Loaded { codesign, .. } = load(cli)?;
            // Taking a binding back needs no consent: the operator of the data directory may.
            let actor = cli_actor();
            codesign.unbind_token(key, token, Principal::user(&actor), true, "cli")?;
            println!("API token {token} may no longer sign with key {key}");
            Ok(ExitCode::SUCCESS)
        }
        CodesignCommand::History { key, caller, limit } => {
            let caller = caller.clone().unwrap_or_else(cli_actor);
            let Loaded { codesign, .. } = load(cli)?;
            let rows =
                match codesign.history(Principal::user(&caller), key, (*limit).clamp(1, 1000)) {
                    Ok(rows) => rows,
                    Err(e @ CodesignError::Forbidden(_)) => {
                        eprintln!("refused: {e}");
                        return Ok(ExitCode::from(EXIT_REJECTED));
                    }
                    Err(e) => return Err(e.into()),
                };
            println!(
                "{:<6} {:<20} {:<16} {:<7} DIGEST",
                "ID", "AT", "CALLER", "ALG"
            );
            for r in rows {
                let s = &r.signature;
                println!(
                    "{:<6} {:<20} {:<16} {:<7} {}",
                    r.id,
                    humantime(s.at),
                    s.caller,
                    s.digest_alg,
                    s.digest
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Destroys code-signing key `label` now (its quorum, if any, was reached): retired,
/// certificate revoked, key object destroyed, each audited. Returns the revoked serial.
///
/// Fails if the key is unknown or retired, or the key store or database fails.
pub(crate) fn destroy_now(
    cli: &Cli,
    label: &str,
    why: &str,
    actor: &str,
) -> Result<Option<ca_core::store::Serial>> {
    let Loaded { db, codesign, .. } = load(cli)?;
    Ok(codesign.destroy_key(db.as_ref(), label, why, actor, "cli", SystemTime::now())?)
}

/// What destroying a key did, for people.
pub(crate) fn destroyed_text(label: &str, revoked: Option<&ca_core::store::Serial>) -> String {
    match revoked {
        Some(serial) => format!(
            "key {label} destroyed in the key store; certificate {serial} revoked (cessationOfOperation)"
        ),
        None => format!("key {label} destroyed in the key store (it had no valid certificate)"),
    }
}

/// Whoever runs the CLI with access to the data directory administers the CA (as for
/// `keyhold tokens create`); the audit log names their OS user.
/// What the key-using commands need: the config, the CA's issuers and profiles, the database
/// and the code-signing service over the configured key store.
struct Loaded {
    config: crate::config::Config,
    issuers: Vec<ca_core::issuer::Issuer>,
    profiles: Vec<ca_core::policy::Profile>,
    db: Arc<db::Db>,
    codesign: Codesign,
}

fn load(cli: &Cli) -> Result<Loaded> {
    let (config, keys, issuers) = load_issuers(&cli.paths)?;
    let profiles = ca_core::policy::load_dir(&cli.paths.policies_dir())?;
    let db = open_db(&cli.paths, &config)?;
    let codesign = Codesign::new(keys, db.clone(), profiles.clone(), issuers.clone());
    Ok(Loaded {
        config,
        issuers,
        profiles,
        db,
        codesign,
    })
}
