//! `keyhold revoke` and `keyhold crl ...`: they parse flags, call
//! [`ca_core::revocation`], and print.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use ca_core::revocation::{self, Reason, RevokeRequest, crl};
use ca_core::store::Serial;
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::{cli_actor, replace_file};
use crate::config::Config;
use crate::text::humantime;
use crate::wiring::{load_issuers, open_db};

/// `keyhold revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The certificate's serial, hex, with or without colons.
    pub serial: String,
    /// Why (RFC 5280): keyCompromise, cACompromise, affiliationChanged, superseded,
    /// cessationOfOperation, privilegeWithdrawn or unspecified.
    #[arg(long)]
    pub reason: String,
    /// When the key was known or suspected to be compromised, e.g. 2026-11-20T10:00:00Z.
    #[arg(long, value_name = "TIME")]
    pub invalidity_date: Option<String>,
}

/// `keyhold revoke-ca`.
#[derive(Debug, clap::Args)]
pub struct RevokeCaArgs {
    /// The issuing CA's id (as in keyhold.toml, e.g. issuing-ca).
    pub issuer: String,
    /// Why (RFC 5280): cACompromise, keyCompromise, superseded, cessationOfOperation or
    /// affiliationChanged.
    #[arg(long)]
    pub reason: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// `keyhold crl ...`.
#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Build, sign and check an issuer's full CRL now, and write it to a file.
    Generate {
        /// The issuer's id (as in keyhold.toml, e.g. issuing-ca or root).
        #[arg(long)]
        issuer: String,
        /// Where to write it (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Write PEM instead of DER.
        #[arg(long)]
        pem: bool,
        /// Days from thisUpdate to nextUpdate (default: `[revocation] crl_validity` in
        /// keyhold.toml, else 7).
        #[arg(long)]
        days: Option<u32>,
    },
}

/// `keyhold revoke`: records the revocation with its audit entry. The revoking officer is
/// the OS user running the command.
///
/// Fails on an unknown serial or reason, a certificate already revoked or never issued, a
/// future invalidity date, or a database failure.
pub fn revoke(cli: &Cli, args: &RevokeArgs) -> Result<ExitCode> {
    let serial = Serial::parse(&args.serial).map_err(anyhow::Error::msg)?;
    let reason = Reason::parse(&args.reason)?;
    let invalidity_date = args
        .invalidity_date
        .as_deref()
        .map(revocation::parse_rfc3339)
        .transpose()
        .map_err(|e| anyhow!("--invalidity-date: {e}"))?;
    let config = Config::load(&cli.paths.data_dir)?;
    let db = open_db(&cli.paths, &config)?;
    let actor = cli_actor();
    let done = revocation::revoke(
        db.as_ref(),
        &RevokeRequest {
            serial: &serial,
            reason,
            invalidity_date,
            actor: &actor,
            revoker: revocation::Revoker::Officer,
            source: "cli",
        },
        SystemTime::now(),
    )?;
    println!(
        "revoked certificate {serial} at {} ({reason}); the next CRL and OCSP responses say so",
        humantime(done.revoked_at)
    );
    Ok(ExitCode::SUCCESS)
}

/// `keyhold revoke-ca`: records that an issuing CA's certificate is revoked, with its audit
/// entry, so its parent's CRL lists it. Asks the operator to type the CA's id unless
/// `--yes`. The revoking officer is the OS user running the command.
///
/// Fails on an unknown issuer or reason, a root, a CA already revoked, a refused or
/// unanswered confirmation, or a database failure.
pub fn revoke_ca(cli: &Cli, args: &RevokeCaArgs) -> Result<ExitCode> {
    use ca_core::issuer::IssuerId;
    use ca_core::x509::SignedCert;
    let reason = Reason::parse(&args.reason)?;
    let config = Config::load(&cli.paths.data_dir)?;
    let id = IssuerId::new(&args.issuer).map_err(anyhow::Error::msg)?;
    let mut certs = Vec::new();
    for issuer in &config.issuers {
        let path = cli.paths.data_dir.join(&issuer.ca.certificate);
        let pem =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let cert = SignedCert::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        certs.push(cert);
    }
    let cas: Vec<revocation::ConfiguredCa<'_>> = config
        .issuers
        .iter()
        .zip(&certs)
        .map(|(i, cert)| revocation::ConfiguredCa {
            id: &i.id,
            parent: i.parent.as_ref(),
            cert,
        })
        .collect();
    let Some(ca) = cas.iter().find(|c| c.id == &id) else {
        return Err(anyhow!("no issuer {:?} in keyhold.toml", args.issuer));
    };
    if !args.yes {
        use std::io::{BufRead, Write};
        print!(
            "Revoke the certificate of CA {id} ({}, serial {}) for {reason}? Every certificate \
             it issued stops validating once relying parties fetch the new CRL; this cannot \
             be undone. Type the CA's id to confirm: ",
            ca.cert.subject(),
            ca.cert.serial_hex()
        );
        std::io::stdout().flush().ok();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the confirmation")?;
        if line.trim() != id.as_str() {
            return Err(anyhow!(
                "not confirmed: nothing was revoked (type the CA's id, or pass --yes)"
            ));
        }
    }
    let db = open_db(&cli.paths, &config)?;
    let done = revocation::revoke_ca(
        db.as_ref(),
        &cas,
        &id,
        reason,
        &cli_actor(),
        "cli",
        SystemTime::now(),
    )?;
    println!(
        "revoked the certificate of CA {id} (serial {}) at {} ({reason}); the next CRL of {} lists it",
        done.serial,
        humantime(done.revoked_at),
        done.parent
    );
    Ok(ExitCode::SUCCESS)
}

/// `keyhold crl ...`.
///
/// Fails if the issuer is unknown, the key store or database fails, or the CRL does not pass
/// its self-check against the database (it is then not written).
pub fn crl(cli: &Cli, cmd: &CrlCommand) -> Result<ExitCode> {
    match cmd {
        CrlCommand::Generate {
            issuer,
            out,
            pem,
            days,
        } => {
            if days.is_some_and(|d| !(1..=366).contains(&d)) {
                return Err(anyhow!("--days must be between 1 and 366"));
            }
            let (config, _keys, issuers) = load_issuers(&cli.paths)?;
            let validity = match days {
                Some(d) => Duration::from_secs(u64::from(*d) * 86_400),
                None => config.revocation.times()?.crl_validity,
            };
            let issuer = issuers
                .iter()
                .find(|i| i.id.as_str() == issuer)
                .ok_or_else(|| anyhow!("no issuer {issuer:?} in keyhold.toml"))?;
            let db = open_db(&cli.paths, &config)?;
            let signed = crl::generate(db.as_ref(), issuer, SystemTime::now(), validity)?;
            let bytes = if *pem {
                signed.to_pem()?.into_bytes()
            } else {
                signed.der.clone()
            };
            replace_file(out, &bytes)?;
            println!(
                "CRL number {} of {}: {} revoked certificate(s), next update {}, checked against the database: {}",
                signed.number,
                issuer.id,
                signed.entries,
                humantime(signed.next_update),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `keyhold ocsp respond`.
#[derive(Debug, clap::Args)]
pub struct OcspRespondArgs {
    /// The DER OCSPRequest (`-` for standard input), as POSTed to /ocsp.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "get",
        required_unless_present = "get"
    )]
    pub request: Option<PathBuf>,
    /// The request as it appears after `/ocsp/` in a GET URL (base64, maybe URL-encoded).
    #[arg(long, value_name = "PATH")]
    pub get: Option<String>,
    /// Where to write the DER OCSPResponse.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Days from thisUpdate to nextUpdate (default: `[revocation] ocsp_validity` in
    /// keyhold.toml, else 4).
    #[arg(long)]
    pub days: Option<u32>,
}

/// `keyhold ocsp respond`: the responder the server runs, on one request from a file.
/// Unsuccessful OCSP answers (malformedRequest, unauthorized) are written too, and named on
/// standard error.
///
/// Fails if the request file or GET path cannot be read, the CA does not load, or the
/// response cannot be written.
pub fn ocsp_respond(cli: &Cli, args: &OcspRespondArgs) -> Result<ExitCode> {
    use ca_core::revocation::ocsp::{self, OcspResponder, ResponseStatus};
    if args.days.is_some_and(|d| !(1..=366).contains(&d)) {
        return Err(anyhow!("--days must be between 1 and 366"));
    }
    let request = match (&args.request, &args.get) {
        (_, Some(path)) => ocsp::decode_get_path(path)?,
        (Some(file), None) => read_limited(file, ocsp::MAX_REQUEST_LEN as u64 + 1)?,
        (None, None) => return Err(anyhow!("give --request FILE or --get PATH")),
    };
    let (config, _keys, issuers) = load_issuers(&cli.paths)?;
    let db = open_db(&cli.paths, &config)?;
    let validity = match args.days {
        Some(d) => Duration::from_secs(u64::from(d) * 86_400),
        None => config.revocation.times()?.ocsp_validity,
    };
    let responder = OcspResponder::new(&issuers, db, validity)?;
    let answer = responder.answer(&request, SystemTime::now());
    replace_file(&args.out, &answer.der)?;
    match answer.status {
        ResponseStatus::Successful => println!(
            "signed an OCSP response{}: {}",
            if answer.nonce { " (nonce echoed)" } else { "" },
            args.out.display()
        ),
        status => eprintln!(
            "answered {status:?}: {}",
            answer.problem.as_deref().unwrap_or("")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut buf))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(buf)
}

/// The `Revoked:` line of `keyhold certs show`.
///
/// Fails if the database cannot be read.
pub(crate) fn print_revocation(
    db: &dyn ca_core::store::Store,
    row: &ca_core::store::CertificateRow,
) -> Result<()> {
    let issuer = ca_core::issuer::IssuerId::new(&row.issuer).map_err(anyhow::Error::msg)?;
    if let Some((at, reason)) = db
        .revocation_status(&issuer, &row.serial)?
        .and_then(|s| s.revoked)
    {
        println!("  Revoked:    {} ({reason})", humantime(at));
    }
    Ok(())
}
