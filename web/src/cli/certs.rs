//! `keyhold certs`: browse issued certificates.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Result, anyhow, bail};
use ca_core::audit::{self};
use ca_core::inspect;
use ca_core::issuance::{self};
use ca_core::store::{CertFilter, CertStatus, CertificateQueries, Serial};
use ca_core::x509::SignedCert;
use clap::Subcommand;

use crate::cli::Cli;
use crate::text::{humantime, parse_cursor, parse_duration, plain};
use crate::wiring::open_db;

use crate::config::Config;

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

/// `keyhold certs ...`.
///
/// Fails on bad flags or a database failure.
pub fn certs(cli: &Cli, cmd: &CertsCommand) -> Result<ExitCode> {
    let config = Config::load(&cli.paths.data_dir)?;
    let db = open_db(&cli.paths, &config)?;
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
            if let Some(word) = status.as_deref() {
                ca_core::status::filter_by_status(&mut filter, word, now)
                    .map_err(anyhow::Error::msg)?;
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
                    plain(&r.subject),
                    plain(&r.sans)
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
                    crate::cli::revoke::print_revocation(db.as_ref(), &row)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_details(cert: &SignedCert, row: &ca_core::store::CertificateRow, now: SystemTime) {
    let d = inspect::details(cert);
    let left = ca_core::status::expires_in(d.not_after, now);
    println!("Certificate {}", d.serial);
    println!(
        "  Status:     {}",
        issuance::effective_status(row.status, row.not_after, now)
    );
    println!("  Subject:    {}", plain(&d.subject.to_string()));
    println!("  Issuer:     {}", plain(&d.issuer.to_string()));
    println!("  Not before: {}", humantime(d.not_before));
    println!("  Not after:  {} ({left})", humantime(d.not_after));
    println!("  Key:        {}", d.key);
    println!("  Signature:  {}", d.signature_algorithm);
    if !d.sans.is_empty() {
        println!("  SANs:       {}", plain(&d.sans.join(", ")));
    }
    println!("  Profile:    {}", row.profile);
    println!("  Requester:  {}", plain(&row.requester));
    println!("  Extensions:");
    for (name, critical, value) in &d.extensions {
        let crit = if *critical { " (critical)" } else { "" };
        println!("    {name}{crit}: {}", plain(&value.to_string()));
    }
    println!("  SHA-256:    {}", d.sha256);
    println!("  SHA-1:      {}", d.sha1);
}
