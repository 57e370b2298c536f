//! `keyhold ca check` and `keyhold ocsp renew`: the CA's own certificates.

use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use ca_core::ceremony::{self, OcspResponderRequest};
use clap::Subcommand;

use crate::cli::Cli;
use crate::cli::io::{cli_actor, replace_file, write_new};
use crate::config::{CONFIG_FILE, Config};
use crate::text::humantime;
use crate::wiring::{load_issuers, open_db};

/// `keyhold ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Load every issuer, check each key against its certificate, print fingerprints.
    Check,
    /// Add an issuing CA (with its OCSP responder) under the root: the ceremony's step for
    /// one CA, for a data directory made before it existed (e.g. `--id codesign-ca --eku
    /// codeSigning`). Audited; restart `keyhold serve` to use it.
    AddIssuing(crate::cli::issuing::AddIssuingArgs),
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
    /// Issue a fresh certificate for an issuer's OCSP responder key; for an issuer that has
    /// no responder (the root of a CA made before roots had one), create its key and
    /// certificate and add it to keyhold.toml.
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
    let (config, store, issuers) = load_issuers(&cli.paths)?;
    let Some(issuer) = issuers.iter().find(|i| i.id.as_str() == issuer_id) else {
        bail!("no issuer {issuer_id:?} in keyhold.toml");
    };
    if issuer.ocsp.is_none() {
        return add_responder(cli, &config, store.as_ref(), issuer, days);
    }
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

/// `keyhold ocsp renew` for an issuer without a responder: generates its key, issues its
/// certificate, writes `ca/{id}-ocsp.pem`, records the key's creation in the audit log, and
/// adds `[issuers.ocsp]` to keyhold.toml (keeping the file's comments and layout). On a
/// failure before keyhold.toml is written, the new key and certificate file are removed.
fn add_responder(
    cli: &Cli,
    config: &Config,
    store: &dyn ca_core::keystore::KeyStore,
    issuer: &ca_core::issuer::Issuer,
    days: u32,
) -> Result<()> {
    use ca_core::audit::{Action, AuditEvent};
    use ca_core::store::AuditLog;
    let Some(issuer_config) = config.issuers.iter().find(|c| c.id == issuer.id) else {
        bail!("no issuer {} in keyhold.toml", issuer.id);
    };
    let issuer_key = store.key_from_uri(&issuer_config.ca.key)?;
    let rel = std::path::PathBuf::from("ca").join(format!("{}-ocsp.pem", issuer.id));
    let path = cli.paths.data_dir.join(&rel);
    if path.exists() {
        bail!(
            "{} exists but keyhold.toml names no OCSP responder for {}: move it away first",
            path.display(),
            issuer.id
        );
    }
    let config_path = cli.paths.data_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let db = open_db(&cli.paths, config)?;
    let made = ceremony::add_ocsp_responder(store, issuer, &issuer_key, days, SystemTime::now())?;
    let responder = ca_core::issuer::KeyedCertConfig {
        certificate: rel.clone(),
        key: made.key_uri.clone(),
    };
    let event = AuditEvent::new(
        Action::KeyGenerated,
        cli_actor(),
        "cli",
        format!("key:{}", made.key_uri),
    )
    .with("role", format!("OCSP responder of {}", issuer.id))
    .with("backend", store.backend())
    .with("certificate_sha256", made.cert.fingerprint_sha256());
    let written = add_ocsp_to_config(&text, &issuer.id, &responder).and_then(|new_text| {
        db.audit(&[event]).context("cannot write the audit log")?;
        write_new(&path, made.cert.to_pem()?.as_bytes())?;
        replace_file(&config_path, new_text.as_bytes()).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })
    });
    if let Err(e) = written {
        if store.destroy(&made.key).is_err() {
            return Err(e.context(format!(
                "and the new key {} could not be destroyed: remove it by hand",
                made.key_uri
            )));
        }
        return Err(e);
    }
    println!(
        "created an OCSP responder for {} until {}: {} (key {})",
        issuer.id,
        humantime(made.cert.not_after()),
        path.display(),
        made.key_uri
    );
    println!("  SHA-256 {}", made.cert.fingerprint_sha256());
    println!("  restart `keyhold serve` to answer OCSP for the CA certificates it signed");
    Ok(())
}

/// `text` (keyhold.toml) with an `[issuers.ocsp]` table added to the `[[issuers]]` entry
/// `id`, every other line unchanged. Checked by parsing the result.
///
/// Fails if the entry cannot be found or the result does not say what was meant.
fn add_ocsp_to_config(
    text: &str,
    id: &ca_core::issuer::IssuerId,
    responder: &ca_core::issuer::KeyedCertConfig,
) -> Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let mut insert_at = None;
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "[[issuers]]" {
            continue;
        }
        let end = lines[i + 1..]
            .iter()
            .position(|l| is_header(l))
            .map_or(lines.len(), |p| i + 1 + p);
        let block = lines[i + 1..end].join("\n");
        let names_id = toml::from_str::<toml::Table>(&block)
            .ok()
            .and_then(|t| t.get("id").and_then(|v| v.as_str()).map(str::to_owned))
            .is_some_and(|found| found == id.as_str());
        if names_id {
            insert_at = Some(end);
            break;
        }
    }
    let Some(at) = insert_at else {
        bail!(
            "cannot find the [[issuers]] entry with id = {:?} in keyhold.toml to add its responder; add it by hand",
            id.as_str()
        );
    };
    let mut table = toml::Table::new();
    table.insert(
        "ocsp".into(),
        toml::Value::try_from(responder).context("cannot encode the responder")?,
    );
    let mut issuers = toml::Table::new();
    issuers.insert("issuers".into(), toml::Value::Table(table));
    let added = toml::to_string(&issuers).context("cannot encode the responder")?;
    let mut out: Vec<String> = lines[..at].iter().map(|l| (*l).to_owned()).collect();
    // Keep a blank line between tables, as init writes them.
    if out.last().is_some_and(|l| !l.trim().is_empty()) {
        out.push(String::new());
    }
    out.push(added.trim_end().to_owned());
    if at < lines.len() {
        out.push(String::new());
    }
    out.extend(lines[at..].iter().map(|l| (*l).to_owned()));
    let mut new_text = out.join("\n");
    new_text.push('\n');
    let parsed = Config::parse(&new_text)?;
    let ok = parsed
        .issuers
        .iter()
        .find(|c| &c.id == id)
        .and_then(|c| c.ocsp.as_ref())
        == Some(responder);
    if !ok {
        bail!(
            "adding [issuers.ocsp] to keyhold.toml would not configure {id}'s responder; add it by hand"
        );
    }
    Ok(new_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_responder_goes_into_the_right_issuer_entry_and_nothing_else_changes() {
        let text = "# a comment\nversion = 1\nbase_url = \"http://x\"\n\n[keystore]\nbackend = \"embedded\"\ndir = \"token\"\n\n[[issuers]]\nid = \"root\"\ncertificate = \"ca/root.pem\"\nkey = \"embedded:root-ca\"\n\n[[issuers]]\nid = \"issuing-ca\"\nparent = \"root\"\ncertificate = \"ca/issuing-ca.pem\"\nkey = \"embedded:issuing-ca\"\n";
        let responder = ca_core::issuer::KeyedCertConfig {
            certificate: "ca/root-ocsp.pem".into(),
            key: "embedded:root-ca-ocsp".into(),
        };
        let root = ca_core::issuer::IssuerId::new("root").unwrap();
        let out = add_ocsp_to_config(text, &root, &responder).unwrap();
        assert!(out.starts_with("# a comment\n"), "{out}");
        let config = Config::parse(&out).unwrap();
        assert_eq!(config.issuers[0].ocsp.as_ref(), Some(&responder));
        assert_eq!(config.issuers[1].ocsp, None);
        assert_eq!(config.issuers[1].parent.as_ref(), Some(&root));
        let gone = ca_core::issuer::IssuerId::new("gone").unwrap();
        assert!(add_ocsp_to_config(text, &gone, &responder).is_err());
    }
}
