//! The one composition root: every command and the server assemble the config, key store,
//! issuers, profiles, database and CA here, the same way, so they cannot drift apart.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use ca_core::issuance::Ca;
use ca_core::issuer::{self, Issuer};
use ca_core::keystore::{self, KeyStore, KeyStoreConfig};
use ca_core::secret::Secret;
use ca_core::store::Store;

use crate::config::Config;
use crate::secrets::{self, PASSPHRASE_ENV, PIN_ENV};

/// Where a Keyhold installation lives and where its secrets come from: the options every
/// command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Paths {
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
    /// Directory of certificate profiles, one TOML file each (default: `policies/` in the
    /// data directory, which `init` fills; else `./policies`).
    #[arg(long, global = true, value_name = "DIR")]
    pub policies: Option<PathBuf>,
}

/// The profiles' directory inside a data directory, written by `init`.
pub const POLICIES_DIR: &str = "policies";

impl Paths {
    /// Where the profiles are: `--policies` if given; else `policies/` in the data directory
    /// (`init` writes the shipped profiles there, so any working directory will do); else
    /// `./policies`, where data directories made before `init` wrote them found theirs.
    pub fn policies_dir(&self) -> PathBuf {
        if let Some(dir) = &self.policies {
            return dir.clone();
        }
        let own = self.data_dir.join(POLICIES_DIR);
        if own.is_dir() {
            own
        } else {
            PathBuf::from(".").join(POLICIES_DIR)
        }
    }
}

/// The configured key store, opened with the secret it needs.
pub fn open_store(paths: &Paths, config: &Config) -> Result<Arc<dyn KeyStore>> {
    let base = &paths.data_dir;
    let secret: Secret = match &config.keystore {
        KeyStoreConfig::Embedded { .. } => secrets::read(
            paths.passphrase_file.as_deref(),
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
        KeyStoreConfig::Pkcs11(_) => secrets::read(
            paths.pin_file.as_deref(),
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

/// The configured embedded token as itself (for export to a recipient and import).
///
/// Fails if the key store is not the embedded token or it cannot be opened.
pub fn open_embedded(
    paths: &Paths,
    config: &Config,
) -> Result<keystore::embedded::EmbeddedKeyStore> {
    let KeyStoreConfig::Embedded { dir } = &config.keystore else {
        anyhow::bail!("this CA's keys are in a PKCS#11 token, not the embedded token");
    };
    let passphrase = secrets::read(
        paths.passphrase_file.as_deref(),
        PASSPHRASE_ENV,
        config
            .secrets
            .passphrase_file
            .as_ref()
            .map(|p| paths.data_dir.join(p))
            .as_deref(),
        "embedded token passphrase",
        "--passphrase-file",
    )?;
    Ok(keystore::embedded::EmbeddedKeyStore::open(
        &paths.data_dir.join(dir),
        &passphrase,
    )?)
}

/// The configured PKCS#11 key store as itself (for wrapped export and import), with the
/// wrapping mechanism `[keystore] wrap_mechanism` names (default CKM_AES_KEY_WRAP_PAD).
///
/// Fails if the key store is not PKCS#11, the mechanism is not one Keyhold can use, or the
/// token cannot be opened.
pub fn open_pkcs11(
    paths: &Paths,
    config: &Config,
) -> Result<(
    keystore::pkcs11::Pkcs11KeyStore,
    keystore::pkcs11::wrap::WrapMechanism,
)> {
    let KeyStoreConfig::Pkcs11(toml) = &config.keystore else {
        anyhow::bail!(
            "wrapped export and import need a PKCS#11 key store; this CA uses the embedded token"
        );
    };
    let mechanism = match &toml.wrap_mechanism {
        Some(m) => m.parse().context("[keystore] wrap_mechanism")?,
        None => keystore::pkcs11::wrap::WrapMechanism::default(),
    };
    let pin = secrets::read(
        paths.pin_file.as_deref(),
        PIN_ENV,
        config
            .secrets
            .pin_file
            .as_ref()
            .map(|p| paths.data_dir.join(p))
            .as_deref(),
        "pkcs#11 user PIN",
        "--pin-file",
    )?;
    let cfg = toml.resolve(&paths.data_dir, &pin)?;
    Ok((
        keystore::pkcs11::Pkcs11KeyStore::open(&cfg, &pin)?,
        mechanism,
    ))
}

/// The config, the key store and every issuer, each checked against its key.
///
/// Fails listing every issuer problem.
pub fn load_issuers(paths: &Paths) -> Result<(Config, Arc<dyn KeyStore>, Vec<Issuer>)> {
    let config = Config::load(&paths.data_dir)?;
    let store = open_store(paths, &config)?;
    let issuers =
        issuer::load_all(&config.issuers, &paths.data_dir, store.as_ref()).map_err(|problems| {
            anyhow::anyhow!("the CA cannot load:\n  - {}", problems.join("\n  - "))
        })?;
    Ok((config, store, issuers))
}

/// Opens the database named by the config.
pub fn open_db(paths: &Paths, config: &Config) -> Result<Arc<db::Db>> {
    let url = config.database_url(&paths.data_dir);
    Ok(Arc::new(
        db::Db::open(&url).context("cannot open the database")?,
    ))
}

/// The CA with its issuers, profiles and database.
///
/// Fails listing every problem that stops the CA from starting.
pub fn load_ca(paths: &Paths) -> Result<Ca> {
    let (config, _keys, issuers) = load_issuers(paths)?;
    let profiles = ca_core::policy::load_dir(&paths.policies_dir())?;
    let store: Arc<dyn Store> = open_db(paths, &config)?;
    Ca::new(issuers, profiles, store, &config.base_url)
        .map_err(|p| anyhow!("the CA cannot start:\n  - {}", p.join("\n  - ")))
}

/// Who runs this process, for the audit log: `cli:<os user>`, from the process's real uid
/// (not `$USER`, which the caller controls), with the name from `/etc/passwd` when it has one.
pub fn os_actor() -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "cli:unknown".into();
    };
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        });
    match name {
        Some(name) => format!("cli:{name}"),
        None => format!("cli:uid {uid}"),
    }
}

/// Logs and audits every HSM member going out of service or coming back, once per change
/// (the key store reports each change once, not each failed call).
#[derive(Debug)]
pub struct MemberAudit {
    db: Arc<db::Db>,
}

impl MemberAudit {
    /// Audits into `db`.
    pub fn new(db: Arc<db::Db>) -> Self {
        MemberAudit { db }
    }

    fn audit(&self, event: ca_core::audit::AuditEvent) {
        use ca_core::store::AuditLog as _;
        if let Err(e) = self.db.audit(&[event]) {
            tracing::error!(error = %e, "cannot audit an hsm member change");
        }
    }
}

impl ca_core::keystore::MemberObserver for MemberAudit {
    fn member_out(&self, member: &str, reason: &str) {
        tracing::error!(member, reason, "hsm member taken out of service");
        self.audit(
            ca_core::audit::AuditEvent::new(
                ca_core::audit::Action::HsmMemberOut,
                "system",
                "keystore",
                format!("hsm-member:{member}"),
            )
            .with("reason", reason),
        );
    }

    fn member_back(&self, member: &str, after: std::time::Duration) {
        tracing::warn!(
            member,
            out_for_ms = after.as_millis() as u64,
            "hsm member back in service"
        );
        self.audit(
            ca_core::audit::AuditEvent::new(
                ca_core::audit::Action::HsmMemberBack,
                "system",
                "keystore",
                format!("hsm-member:{member}"),
            )
            .with("out_for_ms", after.as_millis().to_string()),
        );
    }
}

/// The ACME secret every node shares: `[acme] secret_file`, else `acme.secret` in the data
/// directory, which is created (32 random bytes, mode 0600) if it does not exist.
///
/// Fails naming the file if it cannot be read or written, or holds under 32 bytes.
pub fn acme_secret(
    data_dir: &std::path::Path,
    secret_file: Option<&std::path::Path>,
) -> Result<ca_core::acme::secret::AcmeSecret> {
    let path = match secret_file {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => data_dir.join(p),
        None => data_dir.join("acme.secret"),
    };
    if secret_file.is_none() && !path.exists() {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| anyhow!("no randomness"))?;
        write_private(&path, bytes.as_ref())
            .with_context(|| format!("cannot create the ACME secret {}", path.display()))?;
    }
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(&path)
            .with_context(|| format!("cannot read the ACME secret {}", path.display()))?,
    );
    ca_core::acme::secret::AcmeSecret::new(&bytes)
        .map_err(|e| anyhow!("[acme] secret_file {}: {e}", path.display()))
}

/// Writes `bytes` to a new file only its owner can read.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The ACME service's settings from `[acme]`.
///
/// Fails if `order_lifetime` is not a duration or `ari_retry_after_seconds` is out of range.
pub fn acme_settings(
    config: &crate::config::AcmeConfig,
) -> Result<ca_core::acme::service::AcmeSettings> {
    Ok(ca_core::acme::service::AcmeSettings {
        require_eab: config.require_eab,
        order_ttl: config.order_ttl()?,
        orders_per_hour: config.orders_per_hour,
        orders_per_identifier_per_hour: config.orders_per_identifier_per_hour,
        default_profile: config.default_profile.clone(),
        ari_retry_after: config.ari_retry_after()?,
    })
}
