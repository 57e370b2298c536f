//! `keyhold init`: runs the key ceremony and writes a data directory.
//!
//! Invariant: init either leaves a complete data directory or none. Everything is written
//! into a staging directory inside the data directory and moved into place at the end,
//! `keyhold.toml` last (its presence is what marks a data directory as holding a CA). On any
//! failure the staging directory is removed, a data directory that init created is removed,
//! and keys generated in a PKCS#11 token are destroyed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use ca_core::ceremony::{self, CeremonySpec, Hierarchy};
use ca_core::issuer::{IssuerConfig, IssuerId, KeyedCertConfig};
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, Pkcs11Toml};
use ca_core::keystore::{KeyStore, KeyStoreConfig};
use ca_core::secret::Secret;

use ca_core::audit::{Action, AuditEvent};
use ca_core::store::AuditLog;

use crate::config::{
    AuditConfig, CONFIG_FILE, Config, DEFAULT_DB_FILE, DatabaseConfig, SecretsConfig,
};
use crate::secrets::{self, PASSPHRASE_ENV};

/// The demo passphrase file written by `init --demo`.
pub const DEMO_PASSPHRASE_FILE: &str = "demo-passphrase";

/// Which key store `init` creates the CA in.
#[derive(Debug)]
pub enum Backend {
    /// A new embedded token in `DATA_DIR/token`.
    Embedded {
        /// Its passphrase; `None` with `demo` generates one.
        passphrase: Option<Secret>,
        /// Argon2id cost.
        kdf: KdfParams,
    },
    /// An initialised PKCS#11 token.
    Pkcs11 {
        /// Module path.
        module: PathBuf,
        /// Token label.
        token: String,
        /// User PIN.
        pin: Secret,
    },
}

/// Everything `init` needs.
#[derive(Debug)]
pub struct InitRequest {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The ceremony.
    pub spec: CeremonySpec,
    /// The key store.
    pub backend: Backend,
    /// Generate and store a passphrase (embedded only): for demos, never production.
    pub demo: bool,
    /// The database URL for keyhold.toml; `None` is SQLite in the data directory.
    pub database_url: Option<String>,
    /// Who runs the ceremony, for the audit log.
    pub actor: String,
    /// The first officers (`--officer NAME`): the only officers made without a quorum of
    /// officers, each with a one-time password shown once (issue 15).
    pub officers: Vec<String>,
}

/// What `init` made, for printing.
#[derive(Debug)]
pub struct InitOutcome {
    /// The hierarchy.
    pub hierarchy: Hierarchy,
    /// Files written, relative to the data directory.
    pub files: Vec<PathBuf>,
    /// Where a demo passphrase was stored.
    pub demo_passphrase: Option<PathBuf>,
    /// The first officers and their one-time passwords, to show once.
    pub officers: Vec<(String, ca_core::quorum::OneTimePassword)>,
}

impl InitOutcome {
    /// What was made, for people: each CA's subject, key, serial and fingerprint, the files,
    /// and the loud warning a demo passphrase deserves.
    pub fn summary(&self, data_dir: &Path) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let h = &self.hierarchy;
        let _ = writeln!(out, "Created a CA hierarchy in {}", data_dir.display());
        let mut show = |role: &str, m: &ceremony::CaMaterial| {
            let _ = writeln!(out, "  {role}: {}", m.cert.subject());
            let _ = writeln!(out, "    key          {}", m.key_uri);
            let _ = writeln!(out, "    serial       {}", m.cert.serial_hex());
            let _ = writeln!(out, "    SHA-256      {}", m.cert.fingerprint_sha256());
        };
        show("root CA", &h.root);
        show("OCSP responder for root", &h.root_ocsp);
        for ca in &h.issuing {
            show(&format!("issuing CA {}", ca.id), &ca.ca);
            show(&format!("OCSP responder for {}", ca.id), &ca.ocsp);
        }
        let _ = writeln!(out, "Files:");
        for f in &self.files {
            let _ = writeln!(out, "  {}", data_dir.join(f).display());
        }
        if let Some(p) = &self.demo_passphrase {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "WARNING: DEMO ONLY. The embedded token's passphrase was generated and stored in"
            );
            let _ = writeln!(
                out,
                "  {} (mode 0600), beside the keys it protects.",
                p.display()
            );
            let _ = writeln!(
                out,
                "  Anyone who can read the data directory can use the CA keys. For real use, run"
            );
            let _ = writeln!(
                out,
                "  `keyhold init` with KEYHOLD_PASSPHRASE or --passphrase-file, or with --keystore pkcs11."
            );
        }
        out
    }
}

/// Prints the first officers' one-time passwords, once, on standard output (never logged).
pub fn print_officers(outcome: &InitOutcome) {
    if outcome.officers.is_empty() {
        return;
    }
    println!(
        "Officers (one-time passwords, shown once; the first sign-in must change each; more \
         officers need their approval: keyhold ops):"
    );
    for (name, password) in &outcome.officers {
        println!("  officer {name} {}", password.expose());
    }
}

/// A new embedded token's backend: its passphrase from `passphrase_file` or
/// `KEYHOLD_PASSPHRASE`, or, with `demo` and neither given, one generated and stored.
///
/// Fails if neither is given without `demo`, or the passphrase cannot be read.
pub fn embedded_backend(passphrase_file: Option<&Path>, demo: bool) -> Result<Backend> {
    let given = passphrase_file.is_some() || std::env::var_os(PASSPHRASE_ENV).is_some();
    let passphrase = match (given, demo) {
        (false, true) => None,
        (false, false) => bail!(
            "no passphrase for the new embedded token: set {PASSPHRASE_ENV}, pass --passphrase-file FILE, \
             or add --demo (demo only: stores a generated passphrase beside the keys)"
        ),
        (true, _) => Some(secrets::read(
            passphrase_file,
            PASSPHRASE_ENV,
            None,
            "embedded token passphrase",
            "--passphrase-file",
        )?),
    };
    Ok(Backend::Embedded {
        passphrase,
        kdf: KdfParams::default(),
    })
}

/// Runs `init`. See the module docs for what happens on failure.
///
/// Fails if the data directory already holds a CA, the ceremony is invalid, the key store
/// refuses, or the data directory cannot be written.
pub fn run(req: InitRequest, now: SystemTime) -> Result<InitOutcome> {
    req.spec.check()?;
    for (i, name) in req.officers.iter().enumerate() {
        if !ca_core::users::valid_name(name) {
            bail!("invalid officer name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 - _ .");
        }
        if req.officers[..i].contains(name) {
            bail!("officer {name:?} is named twice");
        }
    }
    let data_dir = &req.data_dir;
    for marker in [CONFIG_FILE, "token", "ca"] {
        if data_dir.join(marker).exists() {
            bail!(
                "{} already holds a CA ({} exists); init changed nothing. Use another --data-dir, or move the old one away",
                data_dir.display(),
                marker
            );
        }
    }
    if req.demo && !matches!(req.backend, Backend::Embedded { .. }) {
        bail!("--demo only applies to the embedded key store");
    }

    let created_data_dir = !data_dir.exists();
    fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    // One init at a time per data directory: a second one fails here instead of racing the
    // first one's files.
    let lock = data_dir.join(".init.lock");
    if let Err(e) = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
    {
        if created_data_dir {
            let _ = fs::remove_dir(data_dir);
        }
        return Err(e).with_context(|| {
            format!(
                "cannot lock {} (is another `keyhold init` running? if not, remove the stale lock file)",
                lock.display()
            )
        });
    }
    let staging = data_dir.join(format!(".init-staging-{}", std::process::id()));
    let result = stage_and_commit(&req, &staging, now);
    let _ = fs::remove_file(&lock);
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
        if created_data_dir {
            let _ = fs::remove_dir(data_dir);
        }
    }
    result
}

fn stage_and_commit(req: &InitRequest, staging: &Path, now: SystemTime) -> Result<InitOutcome> {
    fs::create_dir(staging).with_context(|| {
        format!(
            "cannot write in the data directory {}",
            req.data_dir.display()
        )
    })?;
    fs::set_permissions(staging, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", staging.display()))?;

    let mut secrets = SecretsConfig::default();
    let mut demo_passphrase = None;
    let (store, keystore_config): (Arc<dyn KeyStore>, KeyStoreConfig) = match &req.backend {
        Backend::Embedded { passphrase, kdf } => {
            let passphrase = match (passphrase, req.demo) {
                (Some(p), _) => p.clone(),
                (None, true) => {
                    let p = generate_passphrase()?;
                    write_private(&staging.join(DEMO_PASSPHRASE_FILE), p.expose().as_bytes())?;
                    secrets.passphrase_file = Some(DEMO_PASSPHRASE_FILE.into());
                    demo_passphrase = Some(req.data_dir.join(DEMO_PASSPHRASE_FILE));
                    p
                }
                (None, false) => bail!(
                    "no passphrase for the new embedded token: set KEYHOLD_PASSPHRASE, pass --passphrase-file FILE, or use --demo"
                ),
            };
            let store = EmbeddedKeyStore::create(&staging.join("token"), &passphrase, *kdf)?;
            (
                Arc::new(store),
                KeyStoreConfig::Embedded {
                    dir: "token".into(),
                },
            )
        }
        Backend::Pkcs11 { module, token, pin } => {
            let config = Pkcs11Config::new(module.clone(), token.clone());
            let store = Pkcs11KeyStore::open(&config, pin)?;
            (
                Arc::new(store),
                KeyStoreConfig::Pkcs11(Pkcs11Toml::single(module.clone(), token.clone())),
            )
        }
    };

    let hierarchy = ceremony::run(&req.spec, store.as_ref(), now)?;
    let mut officers = Vec::new();
    let written = record_ceremony(req, staging, &hierarchy, store.backend(), &mut officers)
        .and_then(|()| write_outputs(req, staging, &hierarchy, keystore_config, secrets));
    let files = match written {
        Ok(files) => files,
        Err(e) => {
            // The embedded token's keys go with the staging directory; a token's do not.
            if matches!(req.backend, Backend::Pkcs11 { .. }) {
                destroy_all(store.as_ref(), &hierarchy);
            }
            return Err(e);
        }
    };
    Ok(InitOutcome {
        hierarchy,
        files,
        demo_passphrase,
        officers,
    })
}

/// Creates the database (SQLite in the staging directory unless a URL was given) and records
/// the ceremony in its audit log: every key generated and the CA initialised; then creates
/// the first officers (audited `user.created`, source `init`), their passwords into
/// `officers`.
fn record_ceremony(
    req: &InitRequest,
    staging: &Path,
    hierarchy: &Hierarchy,
    backend: &str,
    officers: &mut Vec<(String, ca_core::quorum::OneTimePassword)>,
) -> Result<()> {
    let url = match &req.database_url {
        Some(url) => crate::config::resolve_sqlite(url, &req.data_dir),
        None => format!("sqlite://{}", staging.join(DEFAULT_DB_FILE).display()),
    };
    let db = db::Db::open(&url).context("cannot create the database")?;
    let mut events = Vec::new();
    let mut key = |uri: &str, role: &str| {
        events.push(
            AuditEvent::new(
                Action::KeyGenerated,
                &req.actor,
                "cli",
                format!("key:{uri}"),
            )
            .with("role", role)
            .with("backend", backend),
        );
    };
    key(&hierarchy.root.key_uri, "root CA");
    key(&hierarchy.root_ocsp.key_uri, "OCSP responder of root");
    for ca in &hierarchy.issuing {
        key(&ca.ca.key_uri, &format!("issuing CA {}", ca.id));
        key(&ca.ocsp.key_uri, &format!("OCSP responder of {}", ca.id));
    }
    key(&hierarchy.audit_key_uri, "audit checkpoints");
    let mut init = AuditEvent::new(Action::CaInitialised, &req.actor, "cli", "ca:root")
        .with("root", hierarchy.root.cert.subject())
        .with("root_sha256", hierarchy.root.cert.fingerprint_sha256());
    for ca in &hierarchy.issuing {
        init = init.with(
            "issuing",
            format!("{} {}", ca.id, ca.ca.cert.fingerprint_sha256()),
        );
    }
    events.push(init);
    db.audit(&events).context("cannot write the audit log")?;
    for name in &req.officers {
        // The bootstrap: officers made here hold the role from now, without a quorum (there
        // is no officer yet to form one); every later officer needs the quorum's approval.
        let password = ca_core::users::create_with_one_time_password(
            &db,
            name,
            &[ca_core::users::Role::Officer],
            &req.actor,
            "init",
        )
        .with_context(|| format!("cannot create officer {name:?}"))?;
        officers.push((
            name.clone(),
            ca_core::quorum::OneTimePassword::new(password),
        ));
    }
    drop(db);
    // The certificates, requests and the audit log are the CA's business only.
    let file = staging.join(DEFAULT_DB_FILE);
    if req.database_url.is_none() {
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", file.display()))?;
    }
    Ok(())
}

fn destroy_all(store: &dyn KeyStore, hierarchy: &Hierarchy) {
    let mut keys = vec![&hierarchy.root.key, &hierarchy.root_ocsp.key];
    for ca in &hierarchy.issuing {
        keys.push(&ca.ca.key);
        keys.push(&ca.ocsp.key);
    }
    keys.push(&hierarchy.audit_key);
    for key in keys {
        let _ = store.destroy(key);
    }
}

/// The profiles shipped in the repository's `policies/`, built into the binary so `init`
/// can write them into a data directory made anywhere.
const SHIPPED_PROFILES: [(&str, &str); 4] = [
    (
        "code-signing.toml",
        include_str!("../../policies/code-signing.toml"),
    ),
    ("sub-ca.toml", include_str!("../../policies/sub-ca.toml")),
    (
        "tls-client.toml",
        include_str!("../../policies/tls-client.toml"),
    ),
    (
        "tls-server.toml",
        include_str!("../../policies/tls-server.toml"),
    ),
];

fn write_outputs(
    req: &InitRequest,
    staging: &Path,
    hierarchy: &Hierarchy,
    keystore: KeyStoreConfig,
    secrets: SecretsConfig,
) -> Result<Vec<PathBuf>> {
    let ca_dir = staging.join("ca");
    fs::create_dir(&ca_dir).with_context(|| format!("cannot create {}", ca_dir.display()))?;
    let mut files = Vec::new();
    // The shipped profiles, so every command finds them from the data directory wherever it
    // runs; the operator edits these copies (`--policies DIR` still overrides). A profile
    // directory the operator already put in the data directory is kept as it is.
    if !req.data_dir.join(crate::wiring::POLICIES_DIR).exists() {
        let policies = staging.join(crate::wiring::POLICIES_DIR);
        fs::create_dir(&policies)
            .with_context(|| format!("cannot create {}", policies.display()))?;
        for (name, text) in SHIPPED_PROFILES {
            let rel = PathBuf::from(crate::wiring::POLICIES_DIR).join(name);
            write_file(&staging.join(&rel), text.as_bytes())?;
            files.push(rel);
        }
    }

    let mut put = |name: String, contents: String| -> Result<PathBuf> {
        let rel = PathBuf::from("ca").join(name);
        write_file(&staging.join(&rel), contents.as_bytes())?;
        files.push(rel.clone());
        Ok(rel)
    };

    let root_id = IssuerId::new("root").map_err(anyhow::Error::msg)?;
    let root_pem = hierarchy.root.cert.to_pem()?;
    let mut issuers = vec![IssuerConfig {
        id: root_id.clone(),
        parent: None,
        ca: KeyedCertConfig {
            certificate: put("root.pem".into(), root_pem.clone())?,
            key: hierarchy.root.key_uri.clone(),
        },
        ocsp: Some(KeyedCertConfig {
            certificate: put("root-ocsp.pem".into(), hierarchy.root_ocsp.cert.to_pem()?)?,
            key: hierarchy.root_ocsp.key_uri.clone(),
        }),
    }];
    for (i, ca) in hierarchy.issuing.iter().enumerate() {
        let pem = ca.ca.cert.to_pem()?;
        let chain = format!("{pem}{root_pem}");
        put(format!("{}-chain.pem", ca.id), chain.clone())?;
        if i == 0 {
            put("chain.pem".into(), chain)?;
        }
        issuers.push(IssuerConfig {
            id: ca.id.clone(),
            parent: Some(root_id.clone()),
            ca: KeyedCertConfig {
                certificate: put(format!("{}.pem", ca.id), pem)?,
                key: ca.ca.key_uri.clone(),
            },
            ocsp: Some(KeyedCertConfig {
                certificate: put(format!("{}-ocsp.pem", ca.id), ca.ocsp.cert.to_pem()?)?,
                key: ca.ocsp.key_uri.clone(),
            }),
        });
    }

    let config = Config {
        version: 1,
        base_url: req.spec.base_url.clone(),
        secrets,
        keystore,
        database: req
            .database_url
            .as_ref()
            .map(|url| DatabaseConfig { url: url.clone() }),
        audit: Some(AuditConfig {
            key: hierarchy.audit_key_uri.clone(),
            checkpoint_every: None,
        }),
        revocation: crate::config::RevocationConfig::default(),
        issuers,
        quorum: Default::default(),
        backup: None,
        acme: None,
        node: None,
    };
    let text = format!(
        "# Written by `keyhold init`. Secrets are never stored here.\n{}",
        toml::to_string(&config).context("cannot encode keyhold.toml")?
    );
    write_file(&staging.join(CONFIG_FILE), text.as_bytes())?;

    // Move everything into place, keyhold.toml last: it marks the directory as initialised.
    let mut entries: Vec<PathBuf> = fs::read_dir(staging)
        .with_context(|| format!("cannot list {}", staging.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", staging.display()))?;
    entries.sort_by_key(|p| p.ends_with(CONFIG_FILE));
    let mut moved = Vec::new();
    for from in entries {
        let Some(name) = from.file_name() else {
            continue;
        };
        let to = req.data_dir.join(name);
        // Never replace: rename(2) would silently overwrite a file put there since the check.
        let result = if to.exists() {
            Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
        } else {
            fs::rename(&from, &to)
        };
        if let Err(e) = result {
            for (back_from, back_to) in moved.iter().rev() {
                let _ = fs::rename(back_to, back_from);
            }
            return Err(e)
                .with_context(|| format!("cannot move {} into {}", from.display(), to.display()));
        }
        moved.push((from, to));
    }
    // keyhold.toml is in place: the CA exists. Nothing after this point may roll back (that
    // would destroy keys a complete config names), so failures below only warn.
    if let Err(e) = fs::remove_dir(staging).and_then(|()| sync_dir_io(&req.data_dir)) {
        eprintln!(
            "warning: the CA was created, but tidying {} failed: {e}",
            staging.display()
        );
    }
    files.push(CONFIG_FILE.into());
    Ok(files)
}

/// Writes a new file durably (write, fsync); two outputs with one name are a bug, never an
/// overwrite.
fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn sync_dir_io(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all())
}

/// 32 random bytes as hex: a 256-bit passphrase for demo tokens.
fn generate_passphrase() -> Result<Secret> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(Secret::new(hex::encode(&bytes[..])))
}
