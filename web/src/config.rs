//! `keyhold.toml`: the one config file, in the data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ca_core::issuer::IssuerConfig;
use ca_core::keystore::KeyStoreConfig;
use serde::{Deserialize, Serialize};

/// The config file's name inside the data directory.
pub const CONFIG_FILE: &str = "keyhold.toml";

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version; must be 1.
    pub version: u32,
    /// Where the CA publishes certificates, CRLs and OCSP.
    pub base_url: String,
    /// Where secrets come from when no flag or environment variable gives them.
    #[serde(default, skip_serializing_if = "SecretsConfig::is_empty")]
    pub secrets: SecretsConfig,
    /// The key store holding every CA key.
    pub keystore: KeyStoreConfig,
    /// The database (default: SQLite in `keyhold.db` beside this file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseConfig>,
    /// The audit log's checkpoint key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditConfig>,
    /// How long CRLs and OCSP responses are valid.
    #[serde(default, skip_serializing_if = "RevocationConfig::is_empty")]
    pub revocation: RevocationConfig,
    /// The CAs, root first.
    pub issuers: Vec<IssuerConfig>,
    /// Approvals from distinct officers that sensitive operations need (none by default).
    #[serde(default, skip_serializing_if = "QuorumConfig::is_off")]
    pub quorum: QuorumConfig,
    /// Backups: default recipients (and the schedule of `keyhold serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupConfig>,
    /// ACME (RFC 8555) on the HTTPS listener at `/acme/directory` (off unless enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeConfig>,
    /// This node, when several `keyhold serve` processes share one PostgreSQL database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeConfig>,
}

/// `[acme]`: the ACME server and its validation (docs/acme.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// Serve ACME at all.
    #[serde(default)]
    pub enabled: bool,
    /// Every new account must carry an external account binding.
    #[serde(default)]
    pub require_eab: bool,
    /// The port http-01 validation connects to.
    #[serde(default = "default_http01_port")]
    pub http01_port: u16,
    /// The port tls-alpn-01 validation connects to.
    #[serde(default = "default_tls_alpn01_port")]
    pub tls_alpn01_port: u16,
    /// The DNS server dns-01 validation and name lookups ask (`host:port`); absent: the
    /// first nameserver of /etc/resolv.conf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_resolver: Option<String>,
    /// A file holding the secret (at least 32 bytes) every node shares: nonces are
    /// authenticated and EAB keys sealed with keys derived from it. Default `acme.secret` in
    /// the data directory, created on the first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The profile orders get when they name none and their EAB key names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    /// Orders one account may place per hour (0: unlimited).
    #[serde(default = "default_orders_per_hour")]
    pub orders_per_hour: u32,
    /// Orders naming one identifier per hour, across accounts (0: unlimited).
    #[serde(default = "default_orders_per_identifier_per_hour")]
    pub orders_per_identifier_per_hour: u32,
    /// How long a pending order and its authorizations live, e.g. `"8h"`.
    #[serde(default = "default_order_lifetime")]
    pub order_lifetime: String,
    /// The `Retry-After` of renewalInfo answers (RFC 9773 4.2): clients ask again after this
    /// many seconds, so it bounds how late a client learns that a certificate was revoked.
    #[serde(default = "default_ari_retry_after_seconds")]
    pub ari_retry_after_seconds: u64,
}

/// The most `ari_retry_after_seconds` may be: a day (Let's Encrypt answers 6 h).
pub const MAX_ARI_RETRY_AFTER_SECONDS: u64 = 86_400;

impl AcmeConfig {
    /// How long a pending order and its authorizations live.
    ///
    /// Fails, naming the key, if `order_lifetime` is not a duration such as `"8h"`.
    pub fn order_ttl(&self) -> Result<Duration> {
        crate::text::parse_duration(&self.order_lifetime).context("[acme] order_lifetime")
    }

    /// How long clients wait before asking renewalInfo again.
    ///
    /// Fails, naming the key, for 0 or more than [`MAX_ARI_RETRY_AFTER_SECONDS`].
    pub fn ari_retry_after(&self) -> Result<Duration> {
        let secs = self.ari_retry_after_seconds;
        if !(1..=MAX_ARI_RETRY_AFTER_SECONDS).contains(&secs) {
            bail!(
                "[acme] ari_retry_after_seconds = {secs}: must be between 1 and \
                 {MAX_ARI_RETRY_AFTER_SECONDS} (a day); clients ask renewalInfo again after \
                 this many seconds"
            );
        }
        Ok(Duration::from_secs(secs))
    }
}

fn default_http01_port() -> u16 {
    80
}

fn default_tls_alpn01_port() -> u16 {
    443
}

fn default_orders_per_hour() -> u32 {
    300
}

fn default_orders_per_identifier_per_hour() -> u32 {
    100
}

fn default_order_lifetime() -> String {
    "8h".into()
}

fn default_ari_retry_after_seconds() -> u64 {
    6 * 3600
}

/// `[node]`: this process as one node of several (see docs/deployment.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name, unique among the nodes sharing the database: in `/readyz`, logs,
    /// metrics and every audit entry it writes (default: the host name and process id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The most OCSP answers about this CA's certificates the node holds in memory, in front
    /// of those stored in the database (default 50,000, about 75 MiB; at least 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_cache: Option<usize>,
}

/// `[backup]`: who backups are encrypted to, and where `keyhold serve` writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// age X25519 public keys (`age1...`); the identities stay offline.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// How often `keyhold serve` makes a backup, as a duration (`"24h"`); none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Where scheduled backups go (relative to the data directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// How many scheduled backups to keep (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

/// `[quorum]`: how many officers must approve each sensitive operation; 0 carries it out at
/// once. Granting the officer role and resetting an officer's password default to 1, so
/// that no administrator alone can make officers who approve (issue 15); the others to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumConfig {
    /// `keyhold users add NAME --roles admin` (and the UI's equivalent).
    #[serde(default)]
    pub create_admin: u32,
    /// `keyhold codesign destroy-key LABEL`.
    #[serde(default)]
    pub destroy_key: u32,
    /// `keyhold keys export` and `keyhold keys import`.
    #[serde(default)]
    pub export_key: u32,
    /// `keyhold users add NAME --role officer` (and the UI's equivalent); default 1.
    #[serde(default = "one")]
    pub grant_officer: u32,
    /// `keyhold users reset-password NAME` of an officer (and the UI's); default 1.
    #[serde(default = "one")]
    pub reset_officer: u32,
}

fn one() -> u32 {
    1
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            create_admin: 0,
            destroy_key: 0,
            export_key: 0,
            grant_officer: one(),
            reset_officer: one(),
        }
    }
}

impl QuorumConfig {
    fn is_off(&self) -> bool {
        *self == QuorumConfig::default()
    }

    /// As ca-core takes it.
    pub fn policy(&self) -> ca_core::quorum::QuorumPolicy {
        ca_core::quorum::QuorumPolicy {
            create_admin: self.create_admin,
            destroy_key: self.destroy_key,
            grant_officer: self.grant_officer,
            reset_officer: self.reset_officer,
        }
    }
}

/// `[revocation]`: validity periods, as durations such as `"7d"`, `"36h"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// A CRL's thisUpdate to nextUpdate (default 7d). Served CRLs are regenerated well
    /// before half of it has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_validity: Option<String>,
    /// An OCSP response's thisUpdate to nextUpdate (default 4d). Cached responses are
    /// re-signed well before half of it has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_validity: Option<String>,
}

impl RevocationConfig {
    fn is_empty(&self) -> bool {
        self.crl_validity.is_none() && self.ocsp_validity.is_none()
    }
}

/// The validity periods in force, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationTimes {
    /// A CRL's thisUpdate to nextUpdate.
    pub crl_validity: Duration,
    /// An OCSP response's thisUpdate to nextUpdate.
    pub ocsp_validity: Duration,
}

/// Default CRL validity (RFC 5280 leaves it to the CA; the issue asks for 7 days).
pub const DEFAULT_CRL_VALIDITY: Duration = Duration::from_secs(7 * 86_400);
/// Default OCSP response validity.
pub const DEFAULT_OCSP_VALIDITY: Duration = Duration::from_secs(4 * 86_400);
/// The shortest validity accepted: responses and CRLs are refreshed every minute or so, and
/// clients need time to fetch them before they expire.
pub const MIN_VALIDITY: Duration = Duration::from_secs(3_600);
/// The longest: a year (a CRL or response valid for longer hides a revocation for that long
/// from anyone holding the old one).
pub const MAX_VALIDITY: Duration = Duration::from_secs(366 * 86_400);

impl RevocationConfig {
    /// The validity periods, defaults filled in.
    ///
    /// Fails naming the key if a value is not a duration or is outside 1h to 366d.
    pub fn times(&self) -> Result<RevocationTimes> {
        let one = |key: &str, value: &Option<String>, default: Duration| -> Result<Duration> {
            let Some(text) = value else {
                return Ok(default);
            };
            let d = crate::text::parse_duration(text)
                .with_context(|| format!("[revocation] {key} = {text:?}"))?;
            if d < MIN_VALIDITY || d > MAX_VALIDITY {
                bail!("[revocation] {key} = {text:?}: must be between 1h and 366d");
            }
            Ok(d)
        };
        Ok(RevocationTimes {
            crl_validity: one("crl_validity", &self.crl_validity, DEFAULT_CRL_VALIDITY)?,
            ocsp_validity: one("ocsp_validity", &self.ocsp_validity, DEFAULT_OCSP_VALIDITY)?,
        })
    }
}

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (relative to the data directory) or `postgres://...`. A password in
    /// the URL belongs in `KEYHOLD_DATABASE_URL` instead, which overrides this.
    pub url: String,
}

/// How the audit log is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// URI of the key (in the configured key store) that signs checkpoints.
    pub key: String,
    /// How often the server signs a checkpoint when entries were appended since the last
    /// one (default 1h; between 1m and 1d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<String>,
}

/// Default interval between the server's checkpoints.
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(3_600);

impl AuditConfig {
    /// The interval between the server's checkpoints.
    ///
    /// Fails if `checkpoint_every` is not a duration between 1m and 1d.
    pub fn checkpoint_every(&self) -> Result<Duration> {
        let Some(text) = &self.checkpoint_every else {
            return Ok(DEFAULT_CHECKPOINT_EVERY);
        };
        let d = crate::text::parse_duration(text)
            .with_context(|| format!("[audit] checkpoint_every = {text:?}"))?;
        if d < Duration::from_secs(60) || d > Duration::from_secs(86_400) {
            bail!("[audit] checkpoint_every = {text:?}: must be between 1m and 1d");
        }
        Ok(d)
    }
}

/// The environment variable that overrides `[database] url`.
pub const DATABASE_URL_ENV: &str = "KEYHOLD_DATABASE_URL";

/// The default SQLite file in the data directory.
pub const DEFAULT_DB_FILE: &str = "keyhold.db";

/// Paths of files holding secrets (never the secrets themselves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// File holding the embedded token's passphrase (mode 0600); relative to the data dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN (mode 0600); relative to the data dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
}

impl SecretsConfig {
    fn is_empty(&self) -> bool {
        self.passphrase_file.is_none() && self.pin_file.is_none()
    }
}

impl Config {
    /// Parses config text.
    ///
    /// Fails with the TOML error (line and reason) or an unsupported version.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text)?;
        if config.version != 1 {
            bail!("version = {} is not supported (use 1)", config.version);
        }
        config.revocation.times()?;
        if let Some(acme) = &config.acme {
            acme.order_ttl()?;
            acme.ari_retry_after()?;
        }
        Ok(config)
    }

    /// The database URL: `KEYHOLD_DATABASE_URL`, else `[database] url`, else SQLite in the
    /// data directory. A relative SQLite path is resolved against the data directory.
    pub fn database_url(&self, data_dir: &Path) -> String {
        let url = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| self.database.as_ref().map(|d| d.url.clone()))
            .unwrap_or_else(|| format!("sqlite://{DEFAULT_DB_FILE}"));
        resolve_sqlite(&url, data_dir)
    }

    /// Loads `DATA_DIR/keyhold.toml`.
    ///
    /// Fails naming the file if it is missing (saying to run `keyhold init`) or invalid.
    pub fn load(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} holds no CA ({} not found): run `keyhold init --data-dir {}` first",
                data_dir.display(),
                CONFIG_FILE,
                data_dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Config::parse(&text).with_context(|| format!("invalid config {}", path.display()))
    }
}

/// Makes a relative `sqlite://` path absolute under `data_dir`; other URLs pass unchanged.
pub fn resolve_sqlite(url: &str, data_dir: &Path) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path) if !Path::new(path).is_absolute() => {
            format!("sqlite://{}", data_dir.join(path).display())
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../keyhold.example.toml");
        let config = Config::parse(text).unwrap();
        assert_eq!(config.issuers.len(), 2);
        assert!(matches!(config.keystore, KeyStoreConfig::Pkcs11(_)));
        assert_eq!(
            config.quorum,
            QuorumConfig {
                create_admin: 2,
                destroy_key: 2,
                export_key: 0,
                grant_officer: 1,
                reset_officer: 1,
            }
        );
    }

    #[test]
    fn quorum_is_off_unless_configured_and_refuses_unknown_operations() {
        let text = include_str!("../../keyhold.example.toml");
        let without = text.split("\n[quorum]").next().unwrap_or(text);
        assert_eq!(
            Config::parse(without).unwrap().quorum,
            QuorumConfig::default()
        );
        let typo = text.replace("destroy_key = 2", "destroy_keys = 2");
        let err = format!("{:#}", Config::parse(&typo).unwrap_err());
        assert!(err.contains("destroy_keys"), "{err}");
    }

    #[test]
    fn revocation_validity_comes_from_the_config_and_absurd_values_are_refused() {
        let base = include_str!("../../keyhold.example.toml");
        let defaults = Config::parse(base).unwrap().revocation.times().unwrap();
        assert_eq!(defaults.crl_validity, DEFAULT_CRL_VALIDITY);
        assert_eq!(defaults.ocsp_validity, DEFAULT_OCSP_VALIDITY);
        let with = |section: &str| {
            let text = base.replacen("[keystore]", &format!("{section}\n\n[keystore]"), 1);
            Config::parse(&text)
        };
        let times = with("[revocation]\ncrl_validity = \"3d\"\nocsp_validity = \"36h\"")
            .unwrap()
            .revocation
            .times()
            .unwrap();
        assert_eq!(times.crl_validity, Duration::from_secs(3 * 86_400));
        assert_eq!(times.ocsp_validity, Duration::from_secs(36 * 3_600));
        for (bad, needle) in [
            (
                "crl_validity = \"0d\"",
                "crl_validity = \"0d\": must be between 1h and 366d",
            ),
            (
                "ocsp_validity = \"400d\"",
                "ocsp_validity = \"400d\": must be between",
            ),
            ("crl_validity = \"soon\"", "crl_validity = \"soon\""),
            ("crl_lifetime = \"7d\"", "crl_lifetime"),
        ] {
            let err = format!("{:#}", with(&format!("[revocation]\n{bad}")).unwrap_err());
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn ari_retry_after_defaults_to_six_hours_and_absurd_values_are_refused() {
        let base = include_str!("../../keyhold.example.toml");
        let with = |lines: &str| {
            let text = base.replacen(
                "[keystore]",
                &format!("[acme]\nenabled = true\n{lines}\n\n[keystore]"),
                1,
            );
            Config::parse(&text)
        };
        let acme = |c: Config| c.acme.unwrap().ari_retry_after().unwrap();
        assert_eq!(acme(with("").unwrap()), Duration::from_secs(21_600));
        assert_eq!(
            acme(with("ari_retry_after_seconds = 2").unwrap()),
            Duration::from_secs(2)
        );
        assert_eq!(
            acme(with("ari_retry_after_seconds = 86400").unwrap()),
            Duration::from_secs(86_400)
        );
        for bad in ["0", "86401", "18446744073709551615"] {
            let err = format!(
                "{:#}",
                with(&format!("ari_retry_after_seconds = {bad}")).unwrap_err()
            );
            assert!(
                err.contains(&format!(
                    "ari_retry_after_seconds = {bad}: must be between 1 and 86400"
                )),
                "{bad}: {err}"
            );
        }
        let err = format!("{:#}", with("ari_retry_after_seconds = -1").unwrap_err());
        assert!(err.contains("ari_retry_after_seconds"), "{err}");
        // order_lifetime too is checked when the config is read, not first when ACME starts.
        let acme = |c: Config| c.acme.unwrap().order_ttl().unwrap();
        assert_eq!(
            acme(with("").unwrap()),
            Duration::from_secs(8 * 3600),
            "the default"
        );
        let err = format!("{:#}", with("order_lifetime = \"soon\"").unwrap_err());
        assert!(err.contains("[acme] order_lifetime"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let text = include_str!("../../keyhold.example.toml").replace("base_url", "base_uri");
        let err = format!("{:#}", Config::parse(&text).unwrap_err());
        assert!(err.contains("base_uri"), "{err}");
    }
}
