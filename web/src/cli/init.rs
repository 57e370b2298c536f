//! `keyhold init` (the key ceremony) and `keyhold hsm init-token`: the only commands that
//! create a CA or a token.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use ca_core::ceremony::CeremonySpec;
use ca_core::keystore::{self};
use clap::{Subcommand, ValueEnum};

use crate::cli::Cli;
use crate::init::{self, Backend, InitRequest};
use crate::secrets::{self, PIN_ENV, SO_PIN_ENV};

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
    /// Create an officer account (repeat for several): the first officers, the only ones
    /// made without the approval of existing officers. Each one-time password is printed
    /// once.
    #[arg(long = "officer", value_name = "NAME")]
    pub officers: Vec<String>,
}

pub fn run_init(cli: &Cli, args: &InitArgs) -> Result<()> {
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
            init::embedded_backend(cli.paths.passphrase_file.as_deref(), args.demo)?
        }
        KeyStoreKind::Pkcs11 => {
            let Some(token) = args.pkcs11_token.clone() else {
                bail!(
                    "--keystore pkcs11 needs --pkcs11-token LABEL (create one with `keyhold hsm init-token`)"
                );
            };
            let pin = secrets::read(
                cli.paths.pin_file.as_deref(),
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
            data_dir: cli.paths.data_dir.clone(),
            spec,
            backend,
            demo: args.demo,
            database_url: args.database_url.clone(),
            actor: crate::cli::io::cli_actor(),
            officers: args.officers.clone(),
        },
        SystemTime::now(),
    )?;

    print!("{}", outcome.summary(&cli.paths.data_dir));
    init::print_officers(&outcome);
    Ok(())
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
    /// Install an AES-256 wrapping key, marked CKA_TRUSTED, for `keys export` and `import`
    /// (security officer). The same value goes into every token that exchanges keys.
    InstallWrappingKey {
        /// PKCS#11 module.
        #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
        module: PathBuf,
        /// The token's label.
        #[arg(long)]
        token: String,
        /// The wrapping key's label.
        #[arg(long)]
        label: String,
        /// File (mode 0600) holding the key as 64 hex digits, from the key ceremony.
        #[arg(long, value_name = "FILE")]
        value_file: PathBuf,
        /// File holding the SO PIN (else KEYHOLD_PKCS11_SO_PIN).
        #[arg(long, value_name = "FILE")]
        so_pin_file: Option<PathBuf>,
    },
}

/// `keyhold hsm install-wrapping-key`.
///
/// Fails if a secret cannot be read, the value is not 64 hex digits, or the token refuses.
pub fn run_install_wrapping_key(
    module: &Path,
    token: &str,
    label: &str,
    value_file: &Path,
    so_pin_file: Option<&Path>,
) -> Result<()> {
    let so_pin = secrets::read(
        so_pin_file,
        SO_PIN_ENV,
        None,
        "pkcs#11 SO PIN",
        "--so-pin-file",
    )?;
    let text = secrets::read(
        Some(value_file),
        "KEYHOLD_WRAPPING_KEY",
        None,
        "wrapping key",
        "--value-file",
    )?;
    let mut value = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.expose().trim(), value.as_mut()).map_err(|_| {
        anyhow::anyhow!(
            "{}: the wrapping key must be 64 hex digits",
            value_file.display()
        )
    })?;
    keystore::pkcs11::wrap::install_wrapping_key(module, token, &so_pin, label, &value)?;
    println!("installed trusted wrapping key {label:?} in token {token:?}");
    Ok(())
}

pub fn run_init_token(
    cli: &Cli,
    module: &Path,
    label: &str,
    so_pin_file: Option<&Path>,
) -> Result<()> {
    let so_pin = secrets::read(
        so_pin_file,
        SO_PIN_ENV,
        None,
        "pkcs#11 SO PIN",
        "--so-pin-file",
    )?;
    let user_pin = secrets::read(
        cli.paths.pin_file.as_deref(),
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
