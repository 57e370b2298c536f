//! `keyhold policy check`: validate certificate profiles offline.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::cli::Cli;
use crate::config::Config;

/// `keyhold policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate every profile offline (and, if the data directory holds a CA, that each
    /// profile's issuer exists); lists every problem with its file and line.
    Check {
        /// The profiles' directory (default: --policies).
        dir: Option<PathBuf>,
    },
}

pub fn run_policy_check(cli: &Cli, dir: &Path) -> Result<()> {
    let profiles = ca_core::policy::load_dir(dir)?;
    if cli.paths.data_dir.join(crate::config::CONFIG_FILE).exists() {
        let config = Config::load(&cli.paths.data_dir)?;
        let missing: Vec<String> = profiles
            .iter()
            .filter(|p| {
                let configured = |id: &ca_core::issuer::IssuerId| config.issuers.iter().any(|i| &i.id == id);
                if configured(p.issuer()) {
                    return false;
                }
                match p.fallback_issuer() {
                    Some(f) if configured(f) => {
                        println!(
                            "warning: {}: issuer {:?} is not configured; its fallback_issuer {:?} signs under it",
                            p.path.display(),
                            p.issuer().as_str(),
                            f.as_str()
                        );
                        false
                    }
                    _ => true,
                }
            })
            .map(|p| {
                format!(
                    "{}: issuer {:?} is not in {}",
                    p.path.display(),
                    p.issuer().as_str(),
                    cli.paths
                        .data_dir
                        .join(crate::config::CONFIG_FILE)
                        .display()
                )
            })
            .collect();
        if !missing.is_empty() {
            bail!("invalid policies:\n  - {}", missing.join("\n  - "));
        }
    }
    println!(
        "{} profile(s) in {} are valid:",
        profiles.len(),
        dir.display()
    );
    for p in &profiles {
        println!(
            "  {:<14} issuer {:<12} {}",
            p.name,
            p.issuer().as_str(),
            p.description()
        );
    }
    Ok(())
}
