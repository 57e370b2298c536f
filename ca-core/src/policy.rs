//! Certificate profiles (one TOML file each in `policies/`) and their evaluation.
//!
//! Invariant: [`evaluate`] is a pure function of (profile, request facts, requester, time,
//! issuer notAfter). It returns [`Decision::Reject`] with every violation, never just the
//! first, and the [`Plan`] it returns for an accepted request is all that may go into the
//! certificate: the CSR never chooses key usage, extended key usage or fixed subject fields.

pub mod constraints;
mod evaluate;
pub mod names;

pub use self::evaluate::{evaluate, own_server_plan};

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use self::names::IpNet;
use crate::issuer::IssuerId;

/// A subject public key type a profile may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum KeyKind {
    /// ECDSA P-256.
    #[serde(rename = "p256")]
    P256,
    /// ECDSA P-384.
    #[serde(rename = "p384")]
    P384,
    /// RSA with at least `min_rsa_bits` bits.
    #[serde(rename = "rsa")]
    Rsa,
}

/// What the request's public key is, as parsed from the CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectKey {
    /// An EC key on a named curve that was checked to hold the point.
    Ec(KeyKind),
    /// An RSA key.
    Rsa {
        /// Modulus size in bits.
        bits: u32,
        /// The public exponent (must be odd and greater than 1; 65537 is usual).
        exponent: u64,
    },
    /// An algorithm or curve Keyhold does not issue for.
    Other(String),
}

/// A subject alternative name in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// dNSName.
    Dns(String),
    /// iPAddress.
    Ip(IpAddr),
    /// rfc822Name.
    Email(String),
    /// uniformResourceIdentifier.
    Uri(String),
}

/// SANs as searchable text: `DNS:a.internal IP:10.0.0.1 email:a@b URI:https://x`.
pub fn sans_text(sans: &[San]) -> String {
    sans.iter()
        .map(|s| match s {
            San::Dns(d) => format!("DNS:{d}"),
            San::Ip(ip) => format!("IP:{ip}"),
            San::Email(e) => format!("email:{e}"),
            San::Uri(u) => format!("URI:{u}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a request asks for, parsed and its signature already checked.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// Subject attributes from the CSR, by short name (`CN`, `O`, ...), in order.
    pub subject: Vec<(String, String)>,
    /// Requested SANs.
    pub sans: Vec<San>,
    /// The subject's public key.
    pub key: SubjectKey,
    /// Whether the key is one of the CA's own (never certified for a subscriber).
    pub key_is_a_ca_key: bool,
    /// Requested validity in days, if the requester asked for one.
    pub validity_days: Option<u32>,
}

/// Who asks.
#[derive(Debug, Clone)]
pub struct Requester {
    /// User name.
    pub name: String,
    /// Roles held.
    pub roles: Vec<String>,
}

/// What a certificate issued under a profile will contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The issuer that signs.
    pub issuer: IssuerId,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter (clamped to the profile and the issuer).
    pub not_after: SystemTime,
    /// Subject attributes: fixed ones from the profile, allowed ones from the CSR.
    pub subject: Vec<(String, String)>,
    /// SANs, normalised.
    pub sans: Vec<San>,
    /// keyUsage bits by RFC 5280 name: those of the profile's list that fit the subject
    /// key's type ([`usages_for_key`]).
    pub key_usage: Vec<String>,
    /// Extended key usages by name (serverAuth, clientAuth, codeSigning, ...).
    pub extended_key_usage: Vec<String>,
}

/// The outcome of evaluating a request against a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Issue now.
    Issue(Plan),
    /// Issue after this many approvals from distinct officers (never the requester).
    NeedsApproval {
        /// Approvals needed.
        approvals: u32,
        /// What will be issued.
        plan: Plan,
    },
    /// Refuse, for every one of these reasons.
    Reject(Vec<String>),
}

/// A validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name (the file stem).
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    file: ProfileFile,
    ip_ranges: Vec<IpNet>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    version: u32,
    #[serde(default)]
    description: String,
    issuer: IssuerId,
    #[serde(default)]
    fallback_issuer: Option<IssuerId>,
    #[serde(default)]
    cli_only: bool,
    /// Open to ACME accounts (issue 17); never with approvals, keyCertSign or cli_only.
    #[serde(default)]
    acme: bool,
    validity: ValidityRule,
    keys: KeyRule,
    #[serde(default)]
    names: NameRule,
    #[serde(default)]
    subject: SubjectRule,
    usage: UsageRule,
    #[serde(default)]
    approval: ApprovalRule,
    #[serde(default)]
    codesign: Option<CodesignRule>,
}

/// `[codesign]`: limits on signatures made with keys held for their owners (code-signing
/// profiles only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodesignRule {
    #[serde(default = "default_per_minute")]
    max_signatures_per_minute: u32,
    #[serde(default)]
    max_signatures_per_day: Option<u32>,
}

fn default_per_minute() -> u32 {
    DEFAULT_SIGNATURES_PER_MINUTE
}

/// Signatures per key per minute when a code-signing profile sets no limit.
pub const DEFAULT_SIGNATURES_PER_MINUTE: u32 = 60;

/// How often a key certified under a code-signing profile may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodesignLimits {
    /// Signatures per key in any 60 seconds.
    pub per_minute: u32,
    /// Signatures per key in any 24 hours, if the profile sets a quota.
    pub per_day: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidityRule {
    max_days: u32,
    #[serde(default)]
    on_excess: OnExcess,
}

/// What to do with a request for a longer validity than the profile allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OnExcess {
    #[default]
    Clamp,
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRule {
    allowed: Vec<KeyKind>,
    #[serde(default = "default_min_rsa")]
    min_rsa_bits: u32,
}

fn default_min_rsa() -> u32 {
    2048
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRule {
    #[serde(default)]
    dns_exact: Vec<String>,
    #[serde(default)]
    dns_suffixes: Vec<String>,
    #[serde(default)]
    ip_ranges: Vec<String>,
    #[serde(default)]
    email_domains: Vec<String>,
    #[serde(default)]
    uri_prefixes: Vec<String>,
    #[serde(default)]
    allow_wildcards: bool,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default = "default_max_sans")]
    max_sans: usize,
    #[serde(default)]
    require_san: bool,
}

fn default_max_sans() -> usize {
    100
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectRule {
    #[serde(default)]
    from_csr: Vec<String>,
    #[serde(default)]
    fixed: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageRule {
    key_usage: Vec<String>,
    #[serde(default)]
    extended_key_usage: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalRule {
    #[serde(default)]
    approvals: u32,
    #[serde(default = "default_roles")]
    requester_roles: Vec<String>,
    /// A pending request can no longer be approved this many days after it arrived.
    #[serde(default = "default_expiry_days")]
    expires_after_days: u32,
}

impl Default for ApprovalRule {
    fn default() -> Self {
        ApprovalRule {
            approvals: 0,
            requester_roles: default_roles(),
            expires_after_days: default_expiry_days(),
        }
    }
}

fn default_expiry_days() -> u32 {
    7
}

fn default_roles() -> Vec<String> {
    vec!["requester".into()]
}

const KEY_USAGES: &[&str] = &[
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
];
const EKUS: &[&str] = &[
    "serverAuth",
    "clientAuth",
    "codeSigning",
    "emailProtection",
    "timeStamping",
    "OCSPSigning",
];
const SUBJECT_ATTRS: &[&str] = &[
    "CN",
    "O",
    "OU",
    "C",
    "ST",
    "L",
    "emailAddress",
    "serialNumber",
];

/// Why profiles did not load: every problem, each naming its file (and line, for TOML errors).
#[derive(Debug, thiserror::Error)]
#[error("invalid policies:\n  - {}", .0.join("\n  - "))]
pub struct PolicyError(pub Vec<String>);

impl Profile {
    /// Parses and validates one profile; `name` is its file stem.
    ///
    /// Fails with every problem in the file.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Self, PolicyError> {
        let at = |msg: String| format!("{}: {msg}", path.display());
        let file: ProfileFile =
            toml::from_str(text).map_err(|e| PolicyError(vec![at(e.to_string())]))?;
        let mut problems = Vec::new();
        if file.version != 1 {
            problems.push(at(format!(
                "version = {} is not supported (use 1)",
                file.version
            )));
        }
        if file.validity.max_days == 0 {
            problems.push(at("validity.max_days must be at least 1".into()));
        }
        if file.keys.allowed.is_empty() {
            problems.push(at("keys.allowed must name at least one key type".into()));
        }
        if file.keys.min_rsa_bits < 2048 {
            problems.push(at("keys.min_rsa_bits below 2048 is not allowed".into()));
        }
        for ku in &file.usage.key_usage {
            if !KEY_USAGES.contains(&ku.as_str()) {
                problems.push(at(format!(
                    "unknown key usage {ku:?} (known: {})",
                    KEY_USAGES.join(", ")
                )));
            }
        }
        // A CA certificate (keyCertSign) is the most dangerous thing a profile can hand out:
        // only from the ceremony CLI, under a quorum of at least two officers, and with no
        // extended key usage to narrow what the new CA may do by surprise.
        if file.usage.key_usage.iter().any(|k| k == "keyCertSign") {
            if !file.cli_only {
                problems.push(at("a CA profile (keyCertSign) must be cli_only".into()));
            }
            if file.approval.approvals < 2 {
                problems.push(at(
                    "a CA profile (keyCertSign) needs [approval] approvals of at least 2".into(),
                ));
            }
            if !file.usage.extended_key_usage.is_empty() {
                problems.push(at(
                    "a CA profile (keyCertSign) takes no extended_key_usage".into()
                ));
            }
        } else if file.usage.key_usage.iter().any(|k| k == "cRLSign") {
            problems.push(at(
                "cRLSign needs keyCertSign: only CA profiles sign CRLs".into()
            ));
        }
        for eku in &file.usage.extended_key_usage {
            if !EKUS.contains(&eku.as_str()) {
                problems.push(at(format!(
                    "unknown extended key usage {eku:?} (known: {})",
                    EKUS.join(", ")
                )));
            }
        }
        for attr in file
            .subject
            .from_csr
            .iter()
            .chain(file.subject.fixed.keys())
        {
            if !SUBJECT_ATTRS.contains(&attr.as_str()) {
                problems.push(at(format!(
                    "unknown subject attribute {attr:?} (known: {})",
                    SUBJECT_ATTRS.join(", ")
                )));
            }
        }
        for suffix in &file.names.dns_suffixes {
            if !suffix.starts_with('.') || names::normalise_dns(&suffix[1..]).is_err() {
                problems.push(at(format!(
                    "dns suffix {suffix:?} must be a '.' followed by a DNS name"
                )));
            }
        }
        for name in file.names.dns_exact.iter().chain(&file.names.deny) {
            if names::normalise_dns(name.trim_start_matches('.')).is_err() {
                problems.push(at(format!("{name:?} is not a DNS name")));
            }
        }
        let mut ip_ranges = Vec::new();
        for range in &file.names.ip_ranges {
            match IpNet::parse(range) {
                Ok(net) => ip_ranges.push(net),
                Err(e) => problems.push(at(e)),
            }
        }
        if let Some(cs) = &file.codesign {
            if !file
                .usage
                .extended_key_usage
                .iter()
                .any(|e| e == "codeSigning")
            {
                problems.push(at(
                    "[codesign] limits apply only to profiles whose usage.extended_key_usage includes codeSigning".into(),
                ));
            }
            if cs.max_signatures_per_minute == 0 {
                problems.push(at(
                    "codesign.max_signatures_per_minute must be at least 1".into()
                ));
            }
            if cs.max_signatures_per_day == Some(0) {
                problems.push(at(
                    "codesign.max_signatures_per_day must be at least 1 (leave it out for no daily quota)".into(),
                ));
            }
        }
        // ACME issues at once to whoever proves control of the names: a profile whose
        // certificates need officers' approval, or that makes CAs, cannot be open to it.
        if file.acme {
            if file.approval.approvals > 0 {
                problems.push(at(
                    "acme = true: a profile that needs approvals cannot be open to ACME".into(),
                ));
            }
            if file.cli_only || file.usage.key_usage.iter().any(|k| k == "keyCertSign") {
                problems.push(at(
                    "acme = true: a CA (keyCertSign) or cli_only profile cannot be open to ACME"
                        .into(),
                ));
            }
        }
        if !(1..=365).contains(&file.approval.expires_after_days) {
            problems.push(at(
                "approval.expires_after_days must be between 1 and 365".into()
            ));
        }
        if file.approval.requester_roles.is_empty() {
            problems.push(at(
                "approval.requester_roles must name at least one role".into()
            ));
        }
        if problems.is_empty() {
            Ok(Profile {
                name: name.into(),
                path: path.into(),
                file,
                ip_ranges,
            })
        } else {
            Err(PolicyError(problems))
        }
    }

    /// The issuer that signs under this profile.
    pub fn issuer(&self) -> &IssuerId {
        &self.file.issuer
    }

    /// The issuer that signs under this profile when [`Profile::issuer`] is not configured
    /// (a data directory made before that CA existed), with a warning at start-up.
    pub fn fallback_issuer(&self) -> Option<&IssuerId> {
        self.file.fallback_issuer.as_ref()
    }

    /// Whether only the ceremony CLI may issue under it (sub-CA certificates).
    pub fn cli_only(&self) -> bool {
        self.file.cli_only
    }

    /// Whether ACME accounts may order under it (`acme = true`).
    pub fn acme(&self) -> bool {
        self.file.acme
    }

    /// Checks names (and their count) the way [`evaluate`] does: every reason the profile
    /// refuses them, or none.
    pub fn names_refused(&self, sans: &[San]) -> Vec<String> {
        evaluate::names_refused(self, sans)
    }

    /// The profile's description.
    pub fn description(&self) -> &str {
        &self.file.description
    }

    /// The roles that may request under it.
    pub fn requester_roles(&self) -> &[String] {
        &self.file.approval.requester_roles
    }

    /// How long a request under it waits for approvals before it expires
    /// (`[approval] expires_after_days`, default 7 days).
    pub fn approval_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.file.approval.expires_after_days) * 86_400)
    }

    /// The signing limits for keys certified under this profile, or `None` if it does not
    /// issue code-signing certificates (its extended key usage lacks codeSigning). A
    /// code-signing profile without a `[codesign]` section gets
    /// [`DEFAULT_SIGNATURES_PER_MINUTE`] and no daily quota.
    pub fn codesign_limits(&self) -> Option<CodesignLimits> {
        if !self
            .file
            .usage
            .extended_key_usage
            .iter()
            .any(|e| e == "codeSigning")
        {
            return None;
        }
        Some(match &self.file.codesign {
            Some(rule) => CodesignLimits {
                per_minute: rule.max_signatures_per_minute,
                per_day: rule.max_signatures_per_day,
            },
            None => CodesignLimits {
                per_minute: DEFAULT_SIGNATURES_PER_MINUTE,
                per_day: None,
            },
        })
    }

    /// The same profile as seen from the ceremony CLI, where `cli_only` is satisfied.
    pub fn without_cli_only(&self) -> Profile {
        let mut p = self.clone();
        p.file.cli_only = false;
        p
    }
}

/// Loads every `*.toml` in `dir`, sorted by name.
///
/// Fails with every problem in every file, each naming its path.
pub fn load_dir(dir: &Path) -> Result<Vec<Profile>, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        PolicyError(vec![format!(
            "cannot read policy directory {}: {e}",
            dir.display()
        )])
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut profiles = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || name.is_empty()
        {
            problems.push(format!(
                "{}: profile names (file stems) use a-z 0-9 - only",
                path.display()
            ));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => match Profile::parse(&name, &path, &text) {
                Ok(p) => profiles.push(p),
                Err(PolicyError(p)) => problems.extend(p),
            },
            Err(e) => problems.push(format!("cannot read {}: {e}", path.display())),
        }
    }
    if profiles.is_empty() && problems.is_empty() {
        problems.push(format!("{} holds no *.toml profile", dir.display()));
    }
    if problems.is_empty() {
        Ok(profiles)
    } else {
        Err(PolicyError(problems))
    }
}

/// What a subject key can do, as far as keyUsage is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// RSA: signs, and can encipher keys (RSA key transport, TLS 1.2 RSA key exchange).
    Rsa,
    /// Elliptic curve (ECDSA keys): signs, and can agree keys (ECDH); never enciphers.
    Ec,
}

impl KeyFamily {
    /// The family of a parsed subject key; keys Keyhold does not issue for count as EC,
    /// which allows the fewest bits (they are refused before a plan exists anyway).
    pub fn of(key: &SubjectKey) -> Self {
        match key {
            SubjectKey::Rsa { .. } => Self::Rsa,
            SubjectKey::Ec(_) | SubjectKey::Other(_) => Self::Ec,
        }
    }
}

/// The keyUsage bits a certificate for a `family` key gets from a profile that allows
/// `allowed`: the profile's list says what it allows, the key type what makes sense.
///
/// `keyEncipherment` and `dataEncipherment` need an RSA key (RFC 8813 section 3: they are
/// wrong for EC keys), and `keyAgreement` an EC key (RFC 5480 section 3). NSS refuses an RSA
/// TLS server certificate without `keyEncipherment`, so the shipped TLS server profile allows
/// it and EC certificates from it carry `digitalSignature` alone. Never fails; the order of
/// `allowed` is kept.
pub fn usages_for_key(allowed: &[String], family: KeyFamily) -> Vec<String> {
    allowed
        .iter()
        .filter(|ku| match ku.as_str() {
            "keyEncipherment" | "dataEncipherment" => family == KeyFamily::Rsa,
            "keyAgreement" => family == KeyFamily::Ec,
            _ => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
