//! The day-to-day commands: `issue`, `certs`, `requests` and `audit`. They hold no policy:
//! they parse flags, call [`ca_core::issuance::Ca`] or the store, and print.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use ca_core::audit::{self, Action, AuditEvent, Checkpoint};
use ca_core::inspect;
use ca_core::issuance::{self, Ca, Channel, Issued, Outcome, Submission};
use ca_core::keystore::KeyStore;
use ca_core::policy::Requester;
use ca_core::store::{CertFilter, CertStatus, RequestFilter, RequestStatus, Serial, Store};
use ca_core::x509::SignedCert;
use clap::Subcommand;

use crate::cli::{Cli, humantime, load_issuers, open_store};

pub mod codesign;
pub mod operations;
use crate::config::Config;

/// Exit code: refused by policy.
pub const EXIT_REJECTED: u8 = 2;
/// Exit code: waiting for approval.
pub const EXIT_PENDING: u8 = 3;

/// `keyhold issue`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The profile (a file name in --policies without `.toml`).
    #[arg(long)]
    pub profile: String,
    /// The CSR, PEM or DER (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub csr: PathBuf,
    /// Write the certificate chain here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Who the request is for (default: the OS user running the command).
    #[arg(long, value_name = "NAME")]
    pub requester: Option<String>,
}

/// `keyhold certs ...`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// List certificates, newest first.
    List {
        /// Only this profile.
        #[arg(long)]
        profile: Option<String>,
        /// Only this status: valid, expired, revoked, failed, reserved.
        #[arg(long)]
        status: Option<String>,
        /// Only valid certificates that expire within this time (`30d`, `12h`).
        #[arg(long, value_name = "DURATION")]
        expiring_within: Option<String>,
        /// Only those whose subject, SANs or serial contain this text.
        #[arg(long)]
        search: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this cursor (printed at the end of a full page).
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one certificate's fields.
    Show {
        /// Serial, hex, with or without colons.
        serial: String,
        /// Print the PEM instead.
        #[arg(long)]
        pem: bool,
    },
}

/// `keyhold requests ...`.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List requests, newest first.
    List {
        /// Only this status: pending, issued, rejected, failed, expired.
        #[arg(long)]
        status: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one request with its approvals.
    Show {
        /// The request id.
        id: i64,
    },
    /// Approve a request as an officer; the last approval the quorum needs issues it.
    Approve {
        /// The request id.
        id: i64,
        /// The approving officer (the web UI adds real users).
        #[arg(long = "as", value_name = "NAME")]
        officer: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// Write the certificate chain here once issued.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Reject a request as an officer. One rejection ends it.
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
}

/// `keyhold audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and check every checkpoint's signature with the audit key; report
    /// the first edited, deleted, inserted or reordered entry (exit 1 if any).
    Verify,
    /// Sign the chain's head now with the audit key.
    Checkpoint,
    /// Show the latest entries.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// Who runs the command, for the audit log: `cli:<os user>`, from the process's real uid
/// (not `$USER`, which the caller controls), with the name from `/etc/passwd` when it has one.
pub fn cli_actor() -> String {
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

/// Opens the database named by the config.
pub fn open_db(cli: &Cli, config: &Config) -> Result<Arc<db::Db>> {
    let url = config.database_url(&cli.data_dir);
    Ok(Arc::new(
        db::Db::open(&url).context("cannot open the database")?,
    ))
}

fn load_ca(cli: &Cli) -> Result<Ca> {
    let (config, _keys, issuers) = load_issuers(cli)?;
    let profiles = ca_core::policy::load_dir(&cli.policies)?;
    let store: Arc<dyn Store> = open_db(cli, &config)?;
    Ca::new(issuers, profiles, store, &config.base_url)
        .map_err(|p| anyhow!("the CA cannot start:\n  - {}", p.join("\n  - ")))
}

/// `keyhold issue`.
///
/// Fails on a bad CSR, an unknown profile, or a database or key store failure.
pub fn issue(cli: &Cli, args: &IssueArgs) -> Result<ExitCode> {
    let csr = read_input(&args.csr)?;
    let ca = load_ca(cli)?;
    // The CLI runs on the CA host with the key store at hand: the ceremony. Its operator may
    // ask for what requesters and officers may (a sub-CA certificate is an officer's request);
    // approvals are still needed from distinct officers, never the one asking.
    let requester = Requester {
        name: args.requester.clone().unwrap_or_else(cli_actor),
        roles: vec!["requester".into(), "officer".into()],
    };
    let outcome = ca.submit(
        &Submission {
            profile: &args.profile,
            csr: &csr,
            requester: &requester,
            source: "cli",
            channel: Channel::Cli,
        },
        SystemTime::now(),
    )?;
    report(outcome, args.out.as_deref())
}

fn report(outcome: Outcome, out: Option<&Path>) -> Result<ExitCode> {
    match outcome {
        Outcome::Issued(issued) => {
            write_chain(&issued, out)?;
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Pending {
            request_id,
            approvals,
            approvals_needed,
            void,
        } => {
            println!(
                "request {request_id} is waiting for approval ({approvals} of {approvals_needed}): keyhold requests approve {request_id} --as OFFICER"
            );
            for why in void {
                println!("  an approval no longer counts: {why}");
            }
            Ok(ExitCode::from(EXIT_PENDING))
        }
        Outcome::Rejected(reasons) => {
            eprintln!("refused by policy:");
            for r in reasons {
                eprintln!("  - {r}");
            }
            Ok(ExitCode::from(EXIT_REJECTED))
        }
    }
}

fn write_chain(issued: &Issued, out: Option<&Path>) -> Result<()> {
    let pem = issued.chain_pem()?;
    match out {
        Some(path) => {
            write_new(path, pem.as_bytes())?;
            eprintln!(
                "issued {} (serial {}, valid until {}): {}",
                issued.cert.subject(),
                issued.serial,
                humantime(issued.cert.not_after()),
                path.display()
            );
        }
        None => print!("{pem}"),
    }
    Ok(())
}

/// `keyhold certs ...`.
///
/// Fails on bad flags or a database failure.
pub fn certs(cli: &Cli, cmd: &CertsCommand) -> Result<ExitCode> {
    let config = Config::load(&cli.data_dir)?;
    let db = open_db(cli, &config)?;
    let now = SystemTime::now();
    match cmd {
        CertsCommand::List {
            profile,
            status,
            expiring_within,
            search,
            limit,
            after,
        } => {
            let mut filter = CertFilter {
                profile: profile.clone(),
                search: search.clone(),
                limit: (*limit).clamp(1, 1000),
                ..CertFilter::default()
            };
            match status.as_deref() {
                None => {}
                Some("expired") => filter.expired = Some(true),
                Some("valid") => {
                    filter.status = Some(CertStatus::Valid);
                    filter.expired = Some(false);
                }
                Some(s) => {
                    filter.status = Some(CertStatus::parse(s).ok_or_else(|| {
                        anyhow!("unknown status {s:?} (valid, expired, revoked, failed, reserved)")
                    })?);
                }
            }
            if let Some(d) = expiring_within {
                filter.expiring_before = Some(now + parse_duration(d)?);
            }
            if let Some(cursor) = after {
                filter.after = Some(parse_cursor(cursor)?);
            }
            let rows = db.certificates(&filter)?;
            println!(
                "{:<34} {:<8} {:<20} {:<12} SUBJECT / SANS",
                "SERIAL", "STATUS", "NOT AFTER", "PROFILE"
            );
            for r in &rows {
                println!(
                    "{:<34} {:<8} {:<20} {:<12} {} {}",
                    r.serial,
                    issuance::effective_status(r.status, r.not_after, now),
                    humantime(r.not_after),
                    r.profile,
                    r.subject,
                    r.sans
                );
            }
            if let Some(last) = rows.last().filter(|_| rows.len() as u32 == filter.limit) {
                println!(
                    "more: --after {}:{}",
                    audit::unix_micros(last.created_at),
                    last.serial
                );
            }
        }
        CertsCommand::Show { serial, pem } => {
            let serial = Serial::parse(serial).map_err(anyhow::Error::msg)?;
            let row = db
                .certificate(&serial)?
                .ok_or_else(|| anyhow!("no certificate with serial {serial}"))?;
            let Some(der) = &row.der else {
                bail!(
                    "serial {serial} was reserved but never issued (status {}{})",
                    row.status.as_str(),
                    row.failure
                        .as_deref()
                        .map(|f| format!(": {f}"))
                        .unwrap_or_default()
                );
            };
            let cert = SignedCert::from_der(der)?;
            if *pem {
                print!("{}", cert.to_pem()?);
            } else {
                print_details(&cert, &row, now);
                if row.status == CertStatus::Revoked {
                    crate::revoke::print_revocation(db.as_ref(), &row)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_details(cert: &SignedCert, row: &ca_core::store::CertificateRow, now: SystemTime) {
    let d = inspect::details(cert);
    let left = match d.not_after.duration_since(now) {
        Ok(left) => format!("expires in {} days", left.as_secs() / 86_400),
        Err(_) => "expired".into(),
    };
    println!("Certificate {}", d.serial);
    println!(
        "  Status:     {}",
        issuance::effective_status(row.status, row.not_after, now)
    );
    println!("  Subject:    {}", d.subject);
    println!("  Issuer:     {}", d.issuer);
    println!("  Not before: {}", humantime(d.not_before));
    println!("  Not after:  {} ({left})", humantime(d.not_after));
    println!("  Key:        {}", d.key);
    println!("  Signature:  {}", d.signature_algorithm);
    if !d.sans.is_empty() {
        println!("  SANs:       {}", d.sans.join(", "));
    }
    println!("  Profile:    {}", row.profile);
    println!("  Requester:  {}", row.requester);
    println!("  Extensions:");
    for (name, critical, value) in &d.extensions {
        let crit = if *critical { " (critical)" } else { "" };
        println!("    {name}{crit}: {value}");
    }
    println!("  SHA-256:    {}", d.sha256);
    println!("  SHA-1:      {}", d.sha1);
}

/// `keyhold requests ...`.
///
/// Fails on an unknown request, a decision the rules forbid, or a database failure.
pub fn requests(cli: &Cli, cmd: &RequestsCommand) -> Result<ExitCode> {
    let now = SystemTime::now();
    match cmd {
        RequestsCommand::List { status, limit } => {
            let config = Config::load(&cli.data_dir)?;
            let db = open_db(cli, &config)?;
            let status = status
                .as_deref()
                .map(|s| {
                    RequestStatus::parse(s).ok_or_else(|| {
                        anyhow!("unknown status {s:?} (pending, issued, rejected, failed, expired)")
                    })
                })
                .transpose()?;
            let rows = db.requests(&RequestFilter {
                status,
                limit: (*limit).clamp(1, 1000),
                ..RequestFilter::default()
            })?;
            println!(
                "{:<6} {:<9} {:<9} {:<14} {:<16} SUBJECT / SANS",
                "ID", "STATUS", "APPROVED", "PROFILE", "REQUESTER"
            );
            for r in rows {
                println!(
                    "{:<6} {:<9} {:<9} {:<14} {:<16} {} {}",
                    r.id,
                    issuance::effective_request_status(&r, now),
                    format!("{}/{}", r.approvals.len(), r.approvals_needed),
                    r.profile,
                    r.requester,
                    r.subject,
                    r.sans
                );
            }
        }
        RequestsCommand::Show { id } => {
            let config = Config::load(&cli.data_dir)?;
            let db = open_db(cli, &config)?;
            let r = db.request(*id)?.ok_or_else(|| anyhow!("no request {id}"))?;
            let void = issuance::void_approvals(db.as_ref(), &r)?;
            println!("Request {}", r.id);
            println!(
                "  Status:    {}",
                issuance::effective_request_status(&r, now)
            );
            println!("  Profile:   {}", r.profile);
            println!("  Requester: {}", r.requester);
            println!("  Subject:   {}", r.subject);
            println!("  SANs:      {}", r.sans);
            println!("  Received:  {}", humantime(r.created_at));
            println!("  Deadline:  {}", humantime(r.expires_at));
            println!(
                "  Approvals: {} of {}",
                r.approvals.len() - void.len(),
                r.approvals_needed
            );
            for a in &r.approvals {
                println!("    {} at {}: {}", a.officer, humantime(a.at), a.comment);
                if let Some((_, why)) = void.iter().find(|(o, _)| *o == a.officer) {
                    println!("      no longer counts: {why}");
                }
            }
            if let Some(by) = &r.decided_by {
                println!("  Decided by: {by}");
            }
            if let Some(reason) = &r.reason {
                println!("  Reason:    {reason}");
            }
            if let Some(serial) = &r.serial {
                println!("  Certificate: {serial}");
            }
        }
        RequestsCommand::Approve {
            id,
            officer,
            comment,
            out,
        } => {
            let ca = load_ca(cli)?;
            let officer = Requester {
                name: officer.clone(),
                roles: vec!["officer".into()],
            };
            let outcome = ca.approve(*id, &officer, comment, "cli", now)?;
            return report(outcome, out.as_deref());
        }
        RequestsCommand::Reject {
            id,
            officer,
            reason,
        } => {
            let ca = load_ca(cli)?;
            let officer = Requester {
                name: officer.clone(),
                roles: vec!["officer".into()],
            };
            ca.reject(*id, &officer, reason, "cli")?;
            println!("request {id} rejected");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keyhold audit ...`.
///
/// Fails if the database or key store cannot be read.
pub fn audit(cli: &Cli, cmd: &AuditCommand) -> Result<ExitCode> {
    let config = Config::load(&cli.data_dir)?;
    let db = open_db(cli, &config)?;
    match cmd {
        AuditCommand::List { limit } => {
            let Some((head, _)) = db.audit_head()? else {
                println!("the audit log is empty");
                return Ok(ExitCode::SUCCESS);
            };
            let from = (head - i64::from(*limit) + 1).max(1);
            for e in db.audit_entries(from, head)? {
                println!(
                    "{:>6} {} {:<20} {:<18} {:<12} {}",
                    e.seq,
                    humantime(e.at()),
                    e.action,
                    e.actor,
                    e.source,
                    e.object
                );
                for line in e.details.lines() {
                    println!("{:>6}   {line}", "");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint => {
            let (keys, uri) = audit_key(cli, &config)?;
            let key = keys.key_from_uri(&uri)?;
            let signer = keys.signer(&key)?;
            let Some((seq, hash)) = db.audit_head()? else {
                bail!("the audit log is empty: nothing to sign");
            };
            let cp = Checkpoint::sign(seq, hash, &uri, signer.as_ref(), SystemTime::now())?;
            let event = AuditEvent::new(
                Action::CheckpointSigned,
                cli_actor(),
                "cli",
                format!("audit:{seq}"),
            )
            .with("head", hex::encode(hash));
            db.add_checkpoint(&cp, &event)?;
            println!(
                "signed checkpoint at entry {seq} (sha256 {})",
                hex::encode(hash)
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify => {
            let (keys, uri) = audit_key(cli, &config)?;
            let key = keys.key_from_uri(&uri)?;
            let signer = keys.signer(&key)?;
            let head = db.audit_head()?.map_or(0, |(seq, _)| seq);
            let entries = db.audit_entries(1, head)?;
            let checkpoints = db.checkpoints()?;
            let report = audit::verify(
                &entries,
                &checkpoints,
                signer.algorithm(),
                signer.public_key(),
            );
            match &report.first_problem {
                None => {
                    println!(
                        "audit log intact: {} entries, {} signed checkpoint(s), signed up to entry {}",
                        report.entries, report.checkpoints_verified, report.covered_up_to
                    );
                    if report.covered_up_to < head {
                        println!(
                            "  entries {}..{} are not yet covered by a checkpoint (keyhold audit checkpoint)",
                            report.covered_up_to + 1,
                            head
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(finding) => {
                    eprintln!("audit log TAMPERED: {finding}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn audit_key(cli: &Cli, config: &Config) -> Result<(Arc<dyn KeyStore>, String)> {
    let Some(audit) = &config.audit else {
        bail!("keyhold.toml has no [audit] key: checkpoints cannot be signed or checked");
    };
    Ok((open_store(cli, config)?, audit.key.clone()))
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    const LIMIT: u64 = 1 << 20;
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(LIMIT)
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(LIMIT).read_to_end(&mut buf))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(buf)
}

/// Writes a new file; refuses to overwrite one.
fn write_new(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The longest duration accepted: 100 years, past any certificate or token lifetime, and far
/// from where adding it to a time overflows.
const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 86_400);

/// `30d`, `12h`, `90m`, `45s`, at most 100 years.
pub(crate) fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (num, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{text:?} is not a duration (e.g. 30d, 12h)"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => bail!("{text:?} is not a duration (units: d, h, m, s)"),
    };
    let d = Duration::from_secs(n.saturating_mul(secs));
    if d > MAX_DURATION {
        bail!("{text:?} is longer than 100 years");
    }
    Ok(d)
}

pub(crate) fn parse_cursor(text: &str) -> Result<(SystemTime, Serial)> {
    let (micros, serial) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("{text:?} is not a cursor (MICROS:SERIAL)"))?;
    let micros: i64 = micros
        .parse()
        .map_err(|_| anyhow!("{text:?} is not a cursor (MICROS:SERIAL)"))?;
    let serial = Serial::parse(serial).map_err(anyhow::Error::msg)?;
    Ok((audit::from_unix_micros(micros), serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3_600)
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3w").is_err());
        // Anything a time could not be moved by is refused, not saturated.
        assert!(parse_duration("18446744073709551615s").is_err());
        assert!(parse_duration("36601d").is_err());
        assert!(parse_duration("36600d").is_ok());
    }
}
