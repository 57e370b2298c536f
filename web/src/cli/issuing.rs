//! `keyhold ca add-issuing`: one more issuing CA under the root of an existing CA, made as
//! the ceremony makes its issuing CAs (key and OCSP responder key in the key store,
//! certificates signed by the root), written beside the others and added to keyhold.toml.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use ca_core::audit::{Action, AuditEvent};
use ca_core::ceremony::{self, CeremonySpec, IssuingSpec};
use ca_core::issuer::{IssuerConfig, IssuerId, KeyedCertConfig};
use ca_core::keystore::KeySpec;
use ca_core::store::AuditLog;

use crate::cli::Cli;
use crate::cli::io::{cli_actor, replace_file, write_new};
use crate::config::{CONFIG_FILE, Config};
use crate::wiring::{load_issuers, open_db};

/// `keyhold ca add-issuing ...`.
#[derive(Debug, clap::Args)]
pub struct AddIssuingArgs {
    /// The new CA's id (URLs, file names, profiles' `issuer`).
    #[arg(long)]
    id: String,
    /// Its subject DN (RFC 4514).
    #[arg(long)]
    subject: String,
    /// The purposes it is constrained to, comma-separated: serverAuth, clientAuth,
    /// codeSigning, emailProtection, timeStamping.
    #[arg(long, value_delimiter = ',')]
    eku: Vec<String>,
    /// Key type.
    #[arg(long, default_value = "p384")]
    key_type: KeySpec,
    /// Validity in years (never past the root's).
    #[arg(long, default_value_t = 5)]
    validity_years: u32,
    /// Its OCSP responder certificate's validity in days.
    #[arg(long, default_value_t = 30)]
    ocsp_days: u32,
    /// The root that signs it.
    #[arg(long, default_value = "root")]
    parent: String,
}

/// Makes the CA, writes `ca/{id}.pem`, `ca/{id}-ocsp.pem` and `ca/{id}-chain.pem`, records
/// both keys in the audit log, and appends its `[[issuers]]` entry to keyhold.toml (checked
/// by parsing). On a failure the new keys and files are removed.
///
/// Fails if the id is taken or invalid, the parent is not a configured root, a key label
/// or file exists, or the key store, database or files fail.
pub fn run_add_issuing(cli: &Cli, args: &AddIssuingArgs) -> Result<()> {
    let (config, store, issuers) = load_issuers(&cli.paths)?;
    let id = IssuerId::new(&args.id).map_err(anyhow::Error::msg)?;
    if issuers.iter().any(|i| i.id == id) {
        bail!("issuer {id} is already configured in keyhold.toml");
    }
    let Some(root) = issuers.iter().find(|i| i.id.as_str() == args.parent) else {
        bail!("no issuer {:?} in keyhold.toml", args.parent);
    };
    if root.parent.is_some() {
        bail!(
            "{} is not a root: issuing CAs are signed by the root",
            root.id
        );
    }
    let Some(root_config) = config.issuers.iter().find(|c| c.id == root.id) else {
        bail!("no issuer {} in keyhold.toml", root.id);
    };
    // Keys are named like the ceremony's: the root's label prefix (before `root-ca`), the id.
    let root_label = store.key_from_uri(&root_config.ca.key)?;
    let prefix = root_label
        .label()
        .strip_suffix("root-ca")
        .unwrap_or_default()
        .to_owned();
    let spec = CeremonySpec {
        base_url: config.base_url.clone(),
        key_label_prefix: prefix,
        issuing: vec![IssuingSpec {
            id: args.id.clone(),
            subject: args.subject.clone(),
            key_label: None,
            key_type: args.key_type,
            validity_years: args.validity_years,
            ocsp_validity_days: args.ocsp_days,
            extended_key_usage: args.eku.clone(),
            exportable: false,
        }],
        ..CeremonySpec::default()
    };
    let ca_dir = cli.paths.data_dir.join("ca");
    let files = [
        format!("{id}.pem"),
        format!("{id}-ocsp.pem"),
        format!("{id}-chain.pem"),
    ];
    for f in &files {
        if ca_dir.join(f).exists() {
            bail!("{} exists: move it away first", ca_dir.join(f).display());
        }
    }
    let config_path = cli.paths.data_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let db = open_db(&cli.paths, &config)?;

    let made = ceremony::add_issuing(&spec, root, store.as_ref(), SystemTime::now())?;
    let entry = IssuerConfig {
        id: id.clone(),
        parent: Some(root.id.clone()),
        ca: KeyedCertConfig {
            certificate: PathBuf::from("ca").join(&files[0]),
            key: made.ca.key_uri.clone(),
        },
        ocsp: Some(KeyedCertConfig {
            certificate: PathBuf::from("ca").join(&files[1]),
            key: made.ocsp.key_uri.clone(),
        }),
    };
    let written = (|| -> Result<()> {
        let new_text = append_issuer(&text, &entry)?;
        let key_event = |uri: &str, role: String| {
            AuditEvent::new(
                Action::KeyGenerated,
                cli_actor(),
                "cli",
                format!("key:{uri}"),
            )
            .with("role", role)
            .with("backend", store.backend())
        };
        db.audit(&[
            key_event(&made.ca.key_uri, format!("issuing CA {id}"))
                .with("certificate_sha256", made.ca.cert.fingerprint_sha256())
                .with("extended_key_usage", args.eku.join(",")),
            key_event(&made.ocsp.key_uri, format!("OCSP responder of {id}")),
        ])
        .context("cannot write the audit log")?;
        let pem = made.ca.cert.to_pem()?;
        let contents = [
            pem.clone(),
            made.ocsp.cert.to_pem()?,
            format!("{pem}{}", root.ca.cert.to_pem()?),
        ];
        for (name, body) in files.iter().zip(&contents) {
            write_new(&ca_dir.join(name), body.as_bytes())?;
        }
        replace_file(&config_path, new_text.as_bytes())
    })();
    if let Err(e) = written {
        for f in &files {
            let _ = std::fs::remove_file(ca_dir.join(f));
        }
        let left: Vec<String> = [&made.ca, &made.ocsp]
            .into_iter()
            .filter(|m| store.destroy(&m.key).is_err())
            .map(|m| m.key_uri.clone())
            .collect();
        if !left.is_empty() {
            return Err(e.context(format!(
                "and these new keys could not be destroyed, remove them by hand: {}",
                left.join(", ")
            )));
        }
        return Err(e);
    }
    println!(
        "added issuing CA {id} ({}) under {}, until {}",
        made.ca.cert.subject(),
        root.id,
        crate::text::humantime(made.ca.cert.not_after())
    );
    println!("  key          {}", made.ca.key_uri);
    println!("  SHA-256      {}", made.ca.cert.fingerprint_sha256());
    println!("  OCSP responder key {}", made.ocsp.key_uri);
    println!("  restart `keyhold serve` to use it; profiles name it with issuer = \"{id}\"");
    Ok(())
}

/// `text` (keyhold.toml) with `entry` appended as one more `[[issuers]]`, everything else
/// unchanged; checked by parsing.
fn append_issuer(text: &str, entry: &IssuerConfig) -> Result<String> {
    #[derive(serde::Serialize)]
    struct One<'a> {
        issuers: [&'a IssuerConfig; 1],
    }
    let added = toml::to_string(&One { issuers: [entry] }).context("cannot encode the issuer")?;
    let mut new_text = text.trim_end().to_owned();
    new_text.push_str("\n\n");
    new_text.push_str(&added);
    let parsed = Config::parse(&new_text)?;
    if parsed
        .issuers
        .iter()
        .filter(|c| c.id == entry.id)
        .collect::<Vec<_>>()
        != [entry]
    {
        bail!("appending the issuer to keyhold.toml would not configure it; add it by hand");
    }
    Ok(new_text)
}
