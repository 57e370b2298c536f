//! `keyhold ca check` and `keyhold ocsp renew`: the CA's own certificates.

use std::time::SystemTime;

use anyhow::{Result, bail};
use ca_core::ceremony::{self, OcspResponderRequest};
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::replace_file;
use crate::text::humantime;
use crate::wiring::load_issuers;

/// `keyhold ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Load every issuer, check each key against its certificate, print fingerprints.
    Check,
}

pub fn run_ca_check(cli: &Cli) -> Result<()> {
    let (config, store, issuers) = load_issuers(&cli.paths)?;
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
    Respond(crate::cli::revoke::OcspRespondArgs),
}

pub fn run_ocsp_renew(cli: &Cli, issuer_id: &str, days: u32) -> Result<()> {
    let (config, _store, issuers) = load_issuers(&cli.paths)?;
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
    let path = cli.paths.data_dir.join(&responder_config.certificate);
    replace_file(&path, cert.to_pem()?.as_bytes())?;
    println!(
        "renewed the OCSP responder certificate of {issuer_id} until {}: {}",
        humantime(cert.not_after()),
        path.display()
    );
    println!("  SHA-256 {}", cert.fingerprint_sha256());
    Ok(())
}
