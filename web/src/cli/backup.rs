//! `keyhold backup`: create, verify and restore encrypted, signed backups of the CA.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use ca_core::audit::{Action, AuditEvent};
use ca_core::backup::{self, Identity, Manifest, plan};
use ca_core::keystore::SpkiDer;
use ca_core::store::AuditLog;
use clap::Subcommand;

use crate::backups::{create_private_file, write_backup};
use crate::cli::Cli;
use crate::cli::io::cli_actor;
use crate::config::Config;
use crate::wiring::{Paths, open_store};

/// `keyhold backup ...`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write one archive of the CA, consistent at one instant, encrypted to the recipients
    /// and signed with the audit key.
    Create {
        /// The archive to write (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// An age X25519 public key (age1...) to encrypt to; repeatable. Default: `[backup]
        /// recipients` in keyhold.toml.
        #[arg(long = "recipient")]
        recipients: Vec<String>,
    },
    /// Check an archive's encryption, signature and every part, without restoring.
    Verify {
        /// The archive.
        file: PathBuf,
        /// The age identity file (AGE-SECRET-KEY-1...).
        #[arg(long)]
        identity: PathBuf,
        /// Refuse unless the manifest is signed by the audit key with this SHA-256 SPKI
        /// fingerprint (as `keyhold backup verify` and `create` print it).
        #[arg(long)]
        signer: Option<String>,
    },
    /// Restore an archive into --data-dir, which must be new or empty.
    Restore {
        /// The archive.
        file: PathBuf,
        /// The age identity file. The database restored into is the one the restored
        /// keyhold.toml names, or KEYHOLD_DATABASE_URL (as for every command); PostgreSQL:
        /// it must hold no Keyhold data.
        #[arg(long)]
        identity: PathBuf,
    },
    /// Make an age identity for backups: writes it (mode 0600) and prints its recipient.
    Keygen {
        /// The identity file to write (must not exist). Keep it offline.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `keyhold backup ...`.
///
/// Fails naming the file, key or database involved.
pub fn run(cli: &Cli, cmd: &BackupCommand) -> Result<ExitCode> {
    match cmd {
        BackupCommand::Create { out, recipients } => {
            let config = Config::load(&cli.paths.data_dir)?;
            let (manifest, size) =
                write_backup(&cli.paths, &config, out, recipients, &cli_actor(), "cli")?;
            println!(
                "wrote backup {} ({size} bytes, {} parts, database {} schema {}, audit head {})",
                out.display(),
                manifest.parts.len(),
                manifest.database,
                manifest.schema_version,
                manifest.audit_head.as_ref().map_or(0, |h| h.seq)
            );
            println!("signed by audit key sha256:{}", manifest.signer.fingerprint);
            if !manifest.keys.keys_included {
                println!("note: {}", manifest.keys.note);
            }
        }
        BackupCommand::Verify {
            file,
            identity,
            signer,
        } => {
            let identity = Identity::read(identity)?;
            let manifest = backup::verify(open(file)?, &identity, None)?;
            check_signer(&manifest, signer.as_deref())?;
            describe(file, &manifest);
        }
        BackupCommand::Restore { file, identity } => restore(&cli.paths, file, identity)?,
        BackupCommand::Keygen { out } => {
            let id = Identity::generate();
            let recipient = id
                .recipient()
                .ok_or_else(|| anyhow!("no key was generated"))?;
            write_private(out, id.to_file_text().as_bytes())?;
            println!("{recipient}");
            eprintln!(
                "identity written to {} (keep it offline); put the line above in [backup] recipients",
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open(file: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    Ok(std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
    ))
}

fn check_signer(manifest: &Manifest, expected: Option<&str>) -> Result<()> {
    if let Some(fp) = expected {
        let fp = fp.trim().trim_start_matches("sha256:").to_ascii_lowercase();
        if manifest.signer.fingerprint != fp {
            bail!(
                "the archive is signed by sha256:{}, not by the expected audit key sha256:{fp}",
                manifest.signer.fingerprint
            );
        }
    }
    Ok(())
}

fn describe(file: &Path, m: &Manifest) {
    println!(
        "backup {} is intact: {} parts, Keyhold {}, schema {}, {} database, taken {}",
        file.display(),
        m.parts.len(),
        m.keyhold_version,
        m.schema_version,
        m.database,
        crate::text::humantime(ca_core::audit::from_unix_micros(m.created_at_micros))
    );
    if let Some(h) = &m.audit_head {
        println!("audit log up to entry {} (sha256 {})", h.seq, h.sha256);
    }
    println!(
        "signed by audit key sha256:{} ({})",
        m.signer.fingerprint, m.signer.key
    );
    println!(
        "keys ({}): {}",
        m.keys.backend,
        if m.keys.keys_included {
            "sealed key files included"
        } else {
            "references only"
        }
    );
}

fn restore(paths: &Paths, file: &Path, identity: &Path) -> Result<()> {
    let identity = Identity::read(identity)?;
    let dest = &paths.data_dir;
    // 1. Decrypt, check and extract (refuses a non-empty directory; leaves nothing on
    //    failure).
    let extracted = backup::extract(open(file)?, &identity, None, dest)?;
    let manifest = extracted.manifest;
    let result = (|| -> Result<String> {
        db::backup::check_schema(&manifest.schema_version)?;
        // 2. The restored key store's audit key must be the one that signed the manifest:
        //    an archive forged by someone with only a recipient key stops here.
        let config = Config::load(dest)?;
        let audit = config
            .audit
            .as_ref()
            .ok_or_else(|| anyhow!("the restored keyhold.toml has no [audit] key"))?;
        let keys = open_store(paths, &config)?;
        let signer = keys.signer(&keys.key_from_uri(&audit.key)?)?;
        let signed_by: SpkiDer = manifest.signer_key()?;
        if signer.public_key() != &signed_by {
            bail!(
                "the archive is signed by key sha256:{}, but the restored CA's audit key is sha256:{}: refusing it",
                signed_by.fingerprint(),
                signer.public_key().fingerprint()
            );
        }
        // 3. The database.
        let url = config.database_url(dest);
        db::backup::restore(
            &dest.join(plan::DB_DIR),
            &manifest.database,
            &manifest.schema_version,
            &url,
        )?;
        Ok(url)
    })();
    let url = match result {
        Ok(url) => url,
        Err(e) => {
            wipe(dest);
            return Err(e);
        }
    };
    let _ = std::fs::remove_dir_all(dest.join(plan::DB_DIR));
    // 4. Opened once (migrating to this build's schema), and the restore audited in it.
    let db = db::Db::open(&url).context("cannot open the restored database")?;
    let event = AuditEvent::new(
        Action::BackupRestored,
        cli_actor(),
        "cli",
        format!(
            "backup:{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        ),
    )
    .with("taken_at_micros", manifest.created_at_micros.to_string())
    .with(
        "audit_head",
        manifest
            .audit_head
            .as_ref()
            .map_or(0, |h| h.seq)
            .to_string(),
    );
    db.audit(&[event])?;
    describe(file, &manifest);
    println!("restored into {}", dest.display());
    if dest.join("policies").is_dir() {
        println!(
            "profiles restored into {} (where this data directory's commands read them)",
            dest.join("policies").display()
        );
    }
    if !manifest.keys.keys_included {
        println!(
            "keys: {} ({})",
            manifest.keys.note,
            manifest.keys.references.join(", ")
        );
    }
    Ok(())
}

/// Empties a data directory a failed restore wrote into (it was new or empty before).
fn wipe(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = create_private_file(path)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
