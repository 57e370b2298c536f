//! Backups as the CLI and the server make them: one archive written atomically and audited
//! ([`write_backup`]), and the server's schedule ([`spawn_schedule`]): a backup every
//! `[backup] every` into `[backup] dir`, keeping the newest `[backup] keep`, with the last
//! success and failure for `/metrics`, `/readyz` and the dashboard.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use ca_core::audit::{Action, AuditEvent};
use ca_core::backup::{self, Manifest, Recipient, plan};
use ca_core::keystore::KeyStoreConfig;
use ca_core::store::AuditLog;

use crate::config::{CONFIG_FILE, Config};
use crate::wiring::{Paths, open_db, open_store};

/// The recipients: `flags`, else `[backup] recipients`.
fn recipients(config: &Config, flags: &[String]) -> Result<Vec<Recipient>> {
    let texts: Vec<&String> = if flags.is_empty() {
        config
            .backup
            .iter()
            .flat_map(|b| b.recipients.iter())
            .collect()
    } else {
        flags.iter().collect()
    };
    Ok(texts
        .into_iter()
        .map(|t| Recipient::parse(t))
        .collect::<Result<_, _>>()?)
}

/// Every key reference the CA uses.
fn key_references(config: &Config) -> Vec<String> {
    let mut refs: Vec<String> = config
        .issuers
        .iter()
        .flat_map(|i| std::iter::once(i.ca.key.clone()).chain(i.ocsp.iter().map(|o| o.key.clone())))
        .collect();
    refs.extend(config.audit.iter().map(|a| a.key.clone()));
    refs
}

/// Makes one backup of the CA in `paths` at `out` (written atomically: a sibling file,
/// fsynced, renamed) and audits it. Returns the manifest and the archive's size.
///
/// Fails naming what is missing (recipients, the audit key) or what could not be read or
/// written; nothing is left at `out` then.
pub fn write_backup(
    paths: &Paths,
    config: &Config,
    out: &Path,
    recipient_flags: &[String],
    actor: &str,
    source: &str,
) -> Result<(Manifest, u64)> {
    let recipients = recipients(config, recipient_flags)?;
    let audit = config
        .audit
        .as_ref()
        .ok_or_else(|| anyhow!("keyhold.toml has no [audit] key: backups are signed with it"))?;
    if out.exists() {
        bail!("{} exists already: name a new file", out.display());
    }
    let keys = open_store(paths, config)?;
    let signer = keys.signer(&keys.key_from_uri(&audit.key)?)?;
    let db = open_db(paths, config)?;

    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", out.display()))?
        .to_string_lossy()
        .into_owned();
    let partial = parent.join(format!(".{name}.partial"));
    let scratch = parent.join(format!(".{name}.parts"));
    let result = (|| -> Result<(Manifest, u64)> {
        create_private_dir(&scratch)?;
        let file = create_private_file(&partial)?;
        let data = &paths.data_dir;
        let token_dir = match &config.keystore {
            KeyStoreConfig::Embedded { dir } => Some(data.join(dir)),
            KeyStoreConfig::Pkcs11 { .. } => None,
        };
        let refs = key_references(config);
        let policies = paths.policies_dir();
        let sources = plan::Sources {
            config: &data.join(CONFIG_FILE),
            ca_dir: &data.join("ca"),
            policies: policies.is_dir().then_some(policies.as_path()),
            token_dir: token_dir.as_deref(),
            keys: if token_dir.is_some() {
                plan::embedded_note(refs)
            } else {
                plan::pkcs11_note(refs)
            },
        };
        let (manifest, writer) = backup::create(
            std::io::BufWriter::new(file),
            &recipients,
            &sources,
            db.as_ref(),
            &scratch,
            &audit.key,
            signer.as_ref(),
            env!("CARGO_PKG_VERSION"),
        )?;
        let file = writer
            .into_inner()
            .map_err(|e| anyhow!("writing {}: {e}", partial.display()))?;
        file.sync_all()
            .with_context(|| format!("writing {}", partial.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or_default();
        std::fs::rename(&partial, out)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
        Ok((manifest, size))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_file(&partial);
    let (manifest, size) = result?;
    let event = AuditEvent::new(
        Action::BackupCreated,
        actor,
        source,
        format!("backup:{name}"),
    )
    .with("bytes", size.to_string())
    .with("parts", manifest.parts.len().to_string())
    .with(
        "audit_head",
        manifest
            .audit_head
            .as_ref()
            .map_or(0, |h| h.seq)
            .to_string(),
    );
    db.audit(&[event])
        .context("the backup was written, but its audit entry was not")?;
    Ok((manifest, size))
}

/// Creates a directory only its owner can enter.
///
/// Fails naming the directory.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Creates a new file only its owner can read.
///
/// Fails naming the file, also if it exists.
pub fn create_private_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// What the schedule did last: read by `/metrics`, `/readyz` and the dashboard.
#[derive(Debug)]
pub struct Status {
    /// The interval.
    pub every: Duration,
    /// When the schedule started (a backup older than twice the interval, or none that long
    /// after start, makes `/readyz` degraded).
    pub started: SystemTime,
    last: Mutex<Last>,
}

#[derive(Debug, Default, Clone)]
struct Last {
    success: Option<(SystemTime, PathBuf, u64)>,
    failure: Option<(SystemTime, String)>,
}

impl Status {
    /// The last successful backup: when, where, how many bytes.
    pub fn last_success(&self) -> Option<(SystemTime, PathBuf, u64)> {
        self.last.lock().ok().and_then(|l| l.success.clone())
    }

    /// The last failure: when, and why.
    pub fn last_failure(&self) -> Option<(SystemTime, String)> {
        self.last.lock().ok().and_then(|l| l.failure.clone())
    }

    /// Why backups are overdue at `now`, if they are: no success within twice the interval.
    pub fn overdue(&self, now: SystemTime) -> Option<String> {
        let since = self.last_success().map_or(self.started, |(t, ..)| t);
        let late = now.duration_since(since).unwrap_or_default() > self.every * 2;
        late.then(|| match self.last_failure() {
            Some((_, why)) => {
                format!("no backup for over twice [backup] every; last failure: {why}")
            }
            None => "no backup for over twice [backup] every".into(),
        })
    }
}

/// `[backup] every` and where its backups go, if the config schedules any.
///
/// Fails if `every` is not a duration of at least a second, or no recipient is configured.
pub fn schedule(paths: &Paths, config: &Config) -> Result<Option<(Duration, PathBuf, usize)>> {
    let Some(b) = &config.backup else {
        return Ok(None);
    };
    let Some(every) = &b.every else {
        return Ok(None);
    };
    let every = crate::text::parse_duration(every)
        .with_context(|| format!("[backup] every = {every:?}"))?;
    if every < Duration::from_secs(1) {
        bail!("[backup] every must be at least 1s");
    }
    if b.recipients.is_empty() {
        bail!(
            "[backup] every is set but [backup] recipients is empty: nobody could read the backups"
        );
    }
    let dir = paths
        .data_dir
        .join(b.dir.clone().unwrap_or_else(|| PathBuf::from("backups")));
    let keep = b.keep.unwrap_or(7).max(1) as usize;
    Ok(Some((every, dir, keep)))
}

/// Starts the thread that makes a backup every `every` into `dir` (the first at once),
/// names each `keyhold-<UTC time>.age`, keeps the newest `keep`, and records each outcome
/// in the returned [`Status`] and the log; it stops when `stop` is set.
///
/// Fails if `dir` cannot be created or the thread cannot start.
pub fn spawn_schedule(
    paths: Paths,
    config: Config,
    (every, dir, keep): (Duration, PathBuf, usize),
    stop: Arc<AtomicBool>,
    span: tracing::Span,
) -> Result<(Arc<Status>, std::thread::JoinHandle<()>)> {
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let status = Arc::new(Status {
        every,
        started: SystemTime::now(),
        last: Mutex::default(),
    });
    let shared = status.clone();
    let handle = std::thread::Builder::new()
        .name("backups".into())
        .spawn(move || {
            let _span = span.entered();
            let mut last: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                if last.is_none_or(|t| t.elapsed() >= every) {
                    last = Some(Instant::now());
                    one_scheduled(&paths, &config, &dir, keep, &shared);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .context("cannot start the backup thread")?;
    Ok((status, handle))
}

/// One scheduled backup, then the oldest beyond `keep` removed.
fn one_scheduled(paths: &Paths, config: &Config, dir: &Path, keep: usize, status: &Status) {
    let now = SystemTime::now();
    let stamp = ca_core::revocation::rfc3339(now).replace(':', "");
    let mut out = dir.join(format!("keyhold-{stamp}.age"));
    for n in 2.. {
        if !out.exists() {
            break;
        }
        out = dir.join(format!("keyhold-{stamp}-{n}.age"));
    }
    let outcome = write_backup(paths, config, &out, &[], "system", "schedule");
    let Ok(mut last) = status.last.lock() else {
        return;
    };
    match outcome {
        Ok((_, size)) => {
            tracing::info!(file = %out.display(), bytes = size, "backup made");
            last.success = Some((now, out, size));
            prune(dir, keep);
        }
        Err(e) => {
            let why = format!("{e:#}");
            tracing::error!(error = %why, "scheduled backup failed");
            last.failure = Some((now, why));
        }
    }
}

/// Removes the oldest `keyhold-*.age` files in `dir` beyond the newest `keep`.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("keyhold-") && n.ends_with(".age"))
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    files.sort();
    let drop = files.len().saturating_sub(keep);
    for (_, p) in files.into_iter().take(drop) {
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!(file = %p.display(), error = %e, "cannot remove an old backup");
        }
    }
}
