//! The `keyhold` command line. Key generation, destruction and the ceremony live here and
//! only here: the server never reaches them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use ca_core::audit::{Action, AuditEvent};
use ca_core::ceremony::{self, CeremonySpec, OcspResponderRequest};
use ca_core::issuer::{self, Issuer};
use ca_core::keystore::embedded::KdfParams;
use ca_core::keystore::{self, KeyRef, KeySpec, KeyStore, KeyStoreConfig};
use ca_core::secret::Secret;
use ca_core::store::Store;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::init::{self, Backend, InitRequest};
use crate::secrets::{self, PASSPHRASE_ENV, PIN_ENV, SO_PIN_ENV};

/// Keyhold: a certificate authority whose CA keys never leave the HSM.
#[derive(Debug, Parser)]
#[command(name = "keyhold", version, about)]
pub struct Cli {
    /// Directory holding keyhold.toml, the certificates, the embedded token.
    #[arg(
        long,
        global = true,
        default_value = "./keyhold-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// File holding the embedded token's passphrase (else KEYHOLD_PASSPHRASE).
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN (else KEYHOLD_PKCS11_PIN).
    #[arg(long, global = true, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
    /// Directory of certificate profiles (one TOML file each).
    #[arg(long, global = true, default_value = "./policies", value_name = "DIR")]
    pub policies: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
    Issue(crate::ops::IssueArgs),
    /// Browse issued certificates.
    #[command(subcommand)]
    Certs(crate::ops::CertsCommand),
    /// Requests waiting for approval, and the officers' decisions.
    #[command(subcommand)]
    Requests(crate::ops::RequestsCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(crate::ops::AuditCommand),
    /// Run the HTTP server (initialising a demo CA first if the data directory has none).
    Serve(crate::serve::ServeArgs),
    /// API tokens for the HTTP API.
    #[command(subcommand)]
    Tokens(crate::tokens::TokensCommand),
    /// Revoke a certificate (officer): recorded and audited; the next CRL and OCSP
    /// responses say so.
    Revoke(crate::revoke::RevokeArgs),
    /// Revoke an issuing CA's certificate (officer; asks for confirmation unless --yes):
    /// recorded and audited; its parent's next CRL lists it.
    RevokeCa(crate::revoke::RevokeCaArgs),
    /// Certificate revocation lists.
    #[command(subcommand)]
    Crl(crate::revoke::CrlCommand),
    /// Code-signing keys held in the key store for their owners, and signatures with them.
    #[command(subcommand)]
    Codesign(crate::ops::codesign::CodesignCommand),
    /// People who sign in to the web UI.
    #[command(subcommand)]
    Users(crate::users::UsersCommand),
    /// Sensitive operations waiting for a quorum of officers (`[quorum]` in keyhold.toml).
    #[command(subcommand)]
    Ops(crate::ops::operations::OpsCommand),
}

/// `keyhold policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate every profile offline (and, if the data directory holds a CA, that each
    /// profile's issuer exists); lists every problem with its file and line.
    Check {
        /// The profiles' directory (default: --policies).
        dir: Option<PathBuf>,
    },
}

/// Which key store `init` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyStoreKind {
    /// The embedded token (keys sealed under a passphrase in the data directory).
    Embedded,
    /// A PKCS#11 module.
    Pkcs11,
}

/// `keyhold init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Key store for the CA keys.
    #[arg(long, value_enum, default_value = "embedded")]
    pub keystore: KeyStoreKind,
    /// PKCS#11 module (shared library).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/usr/lib/softhsm/libsofthsm2.so"
    )]
    pub pkcs11_module: PathBuf,
    /// PKCS#11 token label.
    #[arg(long, value_name = "LABEL")]
    pub pkcs11_token: Option<String>,
    /// Where the CA publishes certificates, CRLs and OCSP (goes into CDP and AIA URLs).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// A ceremony file (TOML) describing the hierarchy.
    #[arg(long, value_name = "FILE")]
    pub ceremony: Option<PathBuf>,
    /// Prefix for every key label (several CAs in one token).
    #[arg(long, value_name = "PREFIX")]
    pub key_prefix: Option<String>,
    /// Demo only: generate the embedded token's passphrase and store it in the data dir.
    #[arg(long)]
    pub demo: bool,
    /// Database: `postgres://...` or `sqlite://FILE` (default: SQLite `keyhold.db` in the
    /// data directory).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// `keyhold keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the keys in the key store.
    List,
    /// Generate a key inside the key store.
    Generate {
        /// The new key's label.
        #[arg(long)]
        label: String,
        /// Key type: p384 or p256.
        #[arg(long = "type", default_value = "p384")]
        key_type: KeySpec,
    },
    /// Destroy a key for good.
    Destroy {
        /// The key's label.
        #[arg(long)]
        label: String,
        /// Confirm: destroying a key cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// `keyhold hsm ...`.
#[derive(Debug, Subcommand)]
pub enum HsmCommand {
    /// Initialise a PKCS#11 token and set its user PIN (security officer).
    InitToken {
        /// PKCS#11 module.
        #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
        module: PathBuf,
        /// Label for the new token.
        #[arg(long)]
        label: String,
        /// File holding the SO PIN (else KEYHOLD_PKCS11_SO_PIN).
        #[arg(long, value_name = "FILE")]
        so_pin_file: Option<PathBuf>,
    },
}

/// `keyhold ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Load every issuer, check each key against its certificate, print fingerprints.
    Check,
}

/// `keyhold ocsp ...`.
#[derive(Debug, Subcommand)]
pub enum OcspCommand {
    /// Issue a fresh certificate for an issuer's OCSP responder key.
    Renew {
        /// The issuing CA's id.
        #[arg(long)]
        issuer: String,
        /// Validity in days.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Answer one OCSP request offline, as `POST /ocsp` (or `GET /ocsp/...`) would.
    Respond(crate::revoke::OcspRespondArgs),
}

/// Runs a parsed command line.
///
/// Fails with an error that names the file, key or token involved.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match &cli.command {
        Command::Issue(args) => crate::ops::issue(&cli, args),
        Command::Certs(cmd) => crate::ops::certs(&cli, cmd),
        Command::Requests(cmd) => crate::ops::requests(&cli, cmd),
        Command::Audit(cmd) => crate::ops::audit(&cli, cmd),
        Command::Serve(args) => crate::serve::run(&cli, args),
        Command::Tokens(cmd) => crate::tokens::run(&cli, cmd),
        Command::Revoke(args) => crate::revoke::revoke(&cli, args),
        Command::RevokeCa(args) => crate::revoke::revoke_ca(&cli, args),
        Command::Crl(cmd) => crate::revoke::crl(&cli, cmd),
        Command::Codesign(cmd) => crate::ops::codesign::run(&cli, cmd),
        Command::Users(cmd) => crate::users::run(&cli, cmd),
        Command::Ops(cmd) => crate::ops::operations::run(&cli, cmd),
        Command::Init(args) => done(run_init(&cli, args)),
        Command::Keys(cmd) => done(run_keys(&cli, cmd)),
        Command::Hsm(HsmCommand::InitToken {
            module,
            label,
            so_pin_file,
        }) => done(run_init_token(&cli, module, label, so_pin_file.as_deref())),
        Command::Ca(CaCommand::Check) => done(run_ca_check(&cli)),
        Command::Ocsp(OcspCommand::Renew { issuer, days }) => {
            done(run_ocsp_renew(&cli, issuer, *days))
        }
        Command::Ocsp(OcspCommand::Respond(args)) => crate::revoke::ocsp_respond(&cli, args),
        Command::Policy(PolicyCommand::Check { dir }) => done(run_policy_check(
            &cli,
            dir.as_deref().unwrap_or(&cli.policies),
        )),
    }
}

fn run_init_token(cli: &Cli, module: &Path, label: &str, so_pin_file: Option<&Path>) -> Result<()> {
    let so_pin = secrets::read(
        so_pin_file,
        SO_PIN_ENV,
        None,
        "pkcs#11 SO PIN",
        "--so-pin-file",
    )?;
    let user_pin = secrets::read(
        cli.pin_file.as_deref(),
        PIN_ENV,
        None,
        "pkcs#11 user PIN",
        "--pin-file",
    )?;
    keystore::pkcs11::init_token(module, label, &so_pin, &user_pin)?;
    println!(
        "initialised token {label:?} in {} and set its user PIN",
        module.display()
    );
    Ok(())
}

pub(crate) fn run_init(cli: &Cli, args: &InitArgs) -> Result<()> {
    let mut spec = match &args.ceremony {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read ceremony file {}", path.display()))?;
            CeremonySpec::from_toml(&text)
                .with_context(|| format!("invalid ceremony file {}", path.display()))?
        }
        None => CeremonySpec::default(),
    };
    if let Some(url) = &args.base_url {
        spec.base_url = url.trim_end_matches('/').to_string();
    }
    if let Some(prefix) = &args.key_prefix {
        spec.key_label_prefix = prefix.clone();
    }
    let backend = match args.keystore {
        KeyStoreKind::Embedded => {
            let given = cli.passphrase_file.is_some() || std::env::var_os(PASSPHRASE_ENV).is_some();
            let passphrase = match (given, args.demo) {
                (false, true) => None,
                (false, false) => bail!(
                    "no passphrase for the new embedded token: set {PASSPHRASE_ENV}, pass --passphrase-file FILE, \
                     or add --demo (demo only: stores a generated passphrase beside the keys)"
                ),
                (true, _) => Some(secrets::read(
                    cli.passphrase_file.as_deref(),
                    PASSPHRASE_ENV,
                    None,
                    "embedded token passphrase",
                    "--passphrase-file",
                )?),
            };
            Backend::Embedded {
                passphrase,
                kdf: KdfParams::default(),
            }
        }
        KeyStoreKind::Pkcs11 => {
            let Some(token) = args.pkcs11_token.clone() else {
                bail!(
                    "--keystore pkcs11 needs --pkcs11-token LABEL (create one with `keyhold hsm init-token`)"
                );
            };
            let pin = secrets::read(
                cli.pin_file.as_deref(),
                PIN_ENV,
                None,
                "pkcs#11 user PIN",
                "--pin-file",
            )?;
            Backend::Pkcs11 {
                module: args.pkcs11_module.clone(),
                token,
                pin,
            }
        }
    };
    let outcome = init::run(
        InitRequest {
            data_dir: cli.data_dir.clone(),
            spec,
            backend,
            demo: args.demo,
            database_url: args.database_url.clone(),
            actor: crate::ops::cli_actor(),
        },
        SystemTime::now(),
    )?;

    let h = &outcome.hierarchy;
    println!("Created a CA hierarchy in {}", cli.data_dir.display());
    let show = |role: &str, m: &ceremony::CaMaterial| {
        println!("  {role}: {}", m.cert.subject());
        println!("    key          {}", m.key_uri);
        println!("    serial       {}", m.cert.serial_hex());
        println!("    SHA-256      {}", m.cert.fingerprint_sha256());
    };
    show("root CA", &h.root);
    for ca in &h.issuing {
        show(&format!("issuing CA {}", ca.id), &ca.ca);
        show(&format!("OCSP responder for {}", ca.id), &ca.ocsp);
    }
    println!("Files:");
    for f in &outcome.files {
        println!("  {}", cli.data_dir.join(f).display());
    }
    if let Some(p) = &outcome.demo_passphrase {
        println!();
        println!("WARNING: DEMO ONLY. The embedded token's passphrase was generated and stored in");
        println!(
            "  {} (mode 0600), beside the keys it protects.",
            p.display()
        );
        println!("  Anyone who can read the data directory can use the CA keys. For real use, run");
        println!(
            "  `keyhold init` with KEYHOLD_PASSPHRASE or --passphrase-file, or with --keystore pkcs11."
        );
    }
    Ok(())
}

/// The configured key store, opened with the secret it needs.
pub(crate) fn open_store(cli: &Cli, config: &Config) -> Result<Arc<dyn KeyStore>> {
    let base = &cli.data_dir;
    let secret: Secret = match &config.keystore {
        KeyStoreConfig::Embedded { .. } => secrets::read(
            cli.passphrase_file.as_deref(),
            PASSPHRASE_ENV,
            config
                .secrets
                .passphrase_file
                .as_ref()
                .map(|p| base.join(p))
                .as_deref(),
            "embedded token passphrase",
            "--passphrase-file",
        )?,
        KeyStoreConfig::Pkcs11 { .. } => secrets::read(
            cli.pin_file.as_deref(),
            PIN_ENV,
            config
                .secrets
                .pin_file
                .as_ref()
                .map(|p| base.join(p))
                .as_deref(),
            "pkcs#11 user PIN",
            "--pin-file",
        )?,
    };
    Ok(keystore::open(&config.keystore, base, &secret)?)
}

pub(crate) fn load_issuers(cli: &Cli) -> Result<(Config, Arc<dyn KeyStore>, Vec<Issuer>)> {
    let config = Config::load(&cli.data_dir)?;
    let store = open_store(cli, &config)?;
    let issuers =
        issuer::load_all(&config.issuers, &cli.data_dir, store.as_ref()).map_err(|problems| {
            anyhow::anyhow!("the CA cannot load:\n  - {}", problems.join("\n  - "))
        })?;
    Ok((config, store, issuers))
}

fn run_keys(cli: &Cli, cmd: &KeysCommand) -> Result<()> {
    let config = Config::load(&cli.data_dir)?;
    let store = open_store(cli, &config)?;
    match cmd {
        KeysCommand::List => {
            let keys = store.list()?;
            println!("{} key store: {} key(s)", store.backend(), keys.len());
            for k in keys {
                println!(
                    "  {:<24} {:<5} sha256:{}  {}",
                    k.key.label(),
                    k.spec.as_str(),
                    k.public_key.fingerprint(),
                    k.uri
                );
            }
        }
        KeysCommand::Generate { label, key_type } => {
            let key = KeyRef::new(label.as_str())?;
            let db = crate::ops::open_db(cli, &config)?;
            let spki = store.generate(&key, *key_type)?;
            let event = AuditEvent::new(
                Action::KeyGenerated,
                crate::ops::cli_actor(),
                "cli",
                format!("key:{}", store.uri(&key)),
            )
            .with("type", key_type.as_str())
            .with("sha256", spki.fingerprint());
            if let Err(e) = db.audit(&[event]) {
                // Fail closed: a key the audit log does not know must not exist.
                let undone = store.destroy(&key).is_ok();
                bail!(
                    "cannot write the audit log ({e}); the new key was {}",
                    if undone {
                        "destroyed again"
                    } else {
                        "NOT destroyed: remove it by hand"
                    }
                );
            }
            println!(
                "generated {key_type} key {}  sha256:{}",
                store.uri(&key),
                spki.fingerprint()
            );
        }
        KeysCommand::Destroy { label, yes } => {
            let key = KeyRef::new(label.as_str())?;
            let users: Vec<String> = config
                .issuers
                .iter()
                .flat_map(|i| {
                    std::iter::once((&i.id, "CA key", &i.ca.key)).chain(
                        i.ocsp
                            .iter()
                            .map(move |o| (&i.id, "OCSP responder key", &o.key)),
                    )
                })
                .filter(|(_, _, uri)| store.key_from_uri(uri).is_ok_and(|k| k == key))
                .map(|(id, role, _)| format!("{role} of issuer {id}"))
                .collect();
            if !users.is_empty() {
                bail!(
                    "key {label:?} is in use as the {}; remove it from keyhold.toml first",
                    users.join(", ")
                );
            }
            if !yes {
                bail!("destroying key {label:?} cannot be undone: add --yes to confirm");
            }
            // Recorded before it happens: if the record cannot be written, nothing happens.
            let db = crate::ops::open_db(cli, &config)?;
            let object = format!("key:{}", store.uri(&key));
            let event = AuditEvent::new(
                Action::KeyDestroyed,
                crate::ops::cli_actor(),
                "cli",
                object.as_str(),
            );
            db.audit(&[event])?;
            if let Err(e) = store.destroy(&key) {
                let failed =
                    AuditEvent::new(Action::KeyDestroyed, crate::ops::cli_actor(), "cli", object)
                        .with("failed", e.to_string());
                let _ = db.audit(&[failed]);
                return Err(e.into());
            }
            println!("destroyed key {}", store.uri(&key));
        }
    }
    Ok(())
}

fn run_ca_check(cli: &Cli) -> Result<()> {
    let (config, store, issuers) = load_issuers(cli)?;
    println!(
        "{} key store, {} issuer(s), base URL {}",
        store.backend(),
        issuers.len(),
        config.base_url
    );
    for i in &issuers {
        println!(
            "  {} ({}): key matches certificate",
            i.id,
            i.ca.cert.subject()
        );
        println!("    SHA-256   {}", i.ca.cert.fingerprint_sha256());
        println!("    notAfter  {}", humantime(i.ca.cert.not_after()));
        if let Some(o) = &i.ocsp {
            println!(
                "    OCSP responder {} until {}",
                o.cert.subject(),
                humantime(o.cert.not_after())
            );
        }
    }
    Ok(())
}

fn run_ocsp_renew(cli: &Cli, issuer_id: &str, days: u32) -> Result<()> {
    let (config, _store, issuers) = load_issuers(cli)?;
    let Some(issuer) = issuers.iter().find(|i| i.id.as_str() == issuer_id) else {
        bail!("no issuer {issuer_id:?} in keyhold.toml");
    };
    let (Some(responder), Some(responder_config)) = (
        &issuer.ocsp,
        config
            .issuers
            .iter()
            .find(|c| c.id == issuer.id)
            .and_then(|c| c.ocsp.as_ref()),
    ) else {
        bail!("issuer {issuer_id} has no OCSP responder configured");
    };
    if !(1..=366).contains(&days) {
        bail!("--days must be between 1 and 366");
    }
    let cert = ceremony::issue_ocsp_responder(
        &OcspResponderRequest {
            issuer_name: issuer.ca.cert.cert.tbs_certificate().subject(),
            issuer_not_after: issuer.ca.cert.not_after(),
            issuer_id: &issuer.id,
            public_key: responder.signer.public_key(),
            validity_days: days,
        },
        issuer.ca.signer.as_ref(),
        SystemTime::now(),
    )?;
    let path = cli.data_dir.join(&responder_config.certificate);
    replace_file(&path, cert.to_pem()?.as_bytes())?;
    println!(
        "renewed the OCSP responder certificate of {issuer_id} until {}: {}",
        humantime(cert.not_after()),
        path.display()
    );
    println!("  SHA-256 {}", cert.fingerprint_sha256());
    Ok(())
}

fn run_policy_check(cli: &Cli, dir: &Path) -> Result<()> {
    let profiles = ca_core::policy::load_dir(dir)?;
    if cli.data_dir.join(crate::config::CONFIG_FILE).exists() {
        let config = Config::load(&cli.data_dir)?;
        let missing: Vec<String> = profiles
            .iter()
            .filter(|p| !config.issuers.iter().any(|i| &i.id == p.issuer()))
            .map(|p| {
                format!(
                    "{}: issuer {:?} is not in {}",
                    p.path.display(),
                    p.issuer().as_str(),
                    cli.data_dir.join(crate::config::CONFIG_FILE).display()
                )
            })
            .collect();
        if !missing.is_empty() {
            bail!("invalid policies:\n  - {}", missing.join("\n  - "));
        }
    }
    println!(
        "{} profile(s) in {} are valid:",
        profiles.len(),
        dir.display()
    );
    for p in &profiles {
        println!(
            "  {:<14} issuer {:<12} {}",
            p.name,
            p.issuer().as_str(),
            p.description()
        );
    }
    Ok(())
}

/// Replaces a file atomically (write a sibling, fsync, rename).
fn replace_file(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("pem.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// RFC 3339 date and time, UTC, to the second.
pub(crate) fn humantime(t: SystemTime) -> String {
    match ca_core::x509::x509_time(t) {
        Ok(time) => time.to_date_time().to_string(),
        Err(_) => "(out of range)".into(),
    }
}
