//! Certificate profiles (one TOML file each in `policies/`) and their evaluation.
//!
//! Invariant: [`evaluate`] is a pure function of (profile, request facts, requester, time,
//! issuer notAfter). It returns [`Decision::Reject`] with every violation, never just the
//! first, and the [`Plan`] it returns for an accepted request is all that may go into the
//! certificate: the CSR never chooses key usage, extended key usage or fixed subject fields.

pub mod constraints;
pub mod names;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
    /// keyUsage bits by RFC 5280 name.
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
    cli_only: bool,
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

    /// Whether only the ceremony CLI may issue under it (sub-CA certificates).
    pub fn cli_only(&self) -> bool {
        self.file.cli_only
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

/// Evaluates a request against a profile at `now`, for an issuer whose certificate ends at
/// `issuer_not_after`. See the module docs.
pub fn evaluate(
    profile: &Profile,
    request: &RequestFacts,
    requester: &Requester,
    now: SystemTime,
    issuer_not_after: SystemTime,
) -> Decision {
    let p = &profile.file;
    let mut why = Vec::new();

    // 1. Who may ask.
    if p.cli_only {
        why.push(format!(
            "profile {} is issued only by the ceremony CLI",
            profile.name
        ));
    }
    if !requester
        .roles
        .iter()
        .any(|r| p.approval.requester_roles.contains(r))
    {
        why.push(format!(
            "{} may not request profile {} (needs role {})",
            requester.name,
            profile.name,
            p.approval.requester_roles.join(" or ")
        ));
    }

    // 2. The key.
    check_key(p, request, &mut why);

    // 3. The names.
    let sans = check_names(profile, &request.sans, &mut why);

    // 4. The subject: fixed fields from the profile, allowed fields from the CSR.
    let mut subject: Vec<(String, String)> = p
        .subject
        .fixed
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (attr, value) in &request.subject {
        if p.subject.fixed.contains_key(attr) {
            continue; // the profile decides; the CSR's value is ignored
        }
        if p.subject.from_csr.contains(attr) {
            subject.push((attr.clone(), value.clone()));
        } else {
            why.push(format!(
                "subject attribute {attr} may not come from the request in profile {}",
                profile.name
            ));
        }
    }
    if let Some((_, cn)) = subject.iter().find(|(a, _)| a == "CN") {
        // CA/B BR 7.1.4.3: a CN, if present, is one of the SANs.
        let lower = cn.to_ascii_lowercase();
        let in_sans = sans.iter().any(|s| match s {
            San::Dns(d) => *d == lower,
            San::Ip(ip) => cn.parse::<IpAddr>().is_ok_and(|c| c == *ip),
            San::Email(e) => e.eq_ignore_ascii_case(cn),
            San::Uri(u) => u == cn,
        });
        if p.names.require_san && !in_sans {
            why.push(format!(
                "subject CN {cn:?} is not one of the subject alternative names"
            ));
        }
    }

    // 5. Validity: never past the profile's maximum or the issuer's own notAfter.
    let max = Duration::from_secs(u64::from(p.validity.max_days) * 86_400);
    let wanted = request
        .validity_days
        .map(|d| Duration::from_secs(u64::from(d) * 86_400))
        .unwrap_or(max);
    if wanted > max && p.validity.on_excess == OnExcess::Reject {
        why.push(format!(
            "requested validity of {} days exceeds the profile's maximum of {} days",
            wanted.as_secs() / 86_400,
            p.validity.max_days
        ));
    }
    let not_after = (now + wanted.min(max)).min(issuer_not_after);
    if not_after <= now {
        why.push("the issuer's certificate has expired".into());
    }

    if !why.is_empty() {
        return Decision::Reject(why);
    }
    let plan = Plan {
        issuer: p.issuer.clone(),
        not_before: now,
        not_after,
        subject,
        sans,
        key_usage: p.usage.key_usage.clone(),
        extended_key_usage: p.usage.extended_key_usage.clone(),
    };
    match p.approval.approvals {
        0 => Decision::Issue(plan),
        n => Decision::NeedsApproval { approvals: n, plan },
    }
}

/// The plan for the certificate Keyhold issues to its own HTTPS listener under `profile`,
/// valid from `now` for `lifetime` at most (less if the profile's maximum or
/// `issuer_not_after` is sooner).
///
/// This is not a request, so the requester rules do not apply: no roles, no approvals, and
/// the profile's allowed names (DNS suffixes, IP ranges) are not consulted, because the
/// listener's own names (`localhost`, `127.0.0.1`, the host it listens on) are rarely among
/// them. What the profile says the certificate *is* still applies: its fixed subject, key
/// usage and extended key usage. The issuer's name constraints are applied by the caller
/// ([`crate::issuance::Ca::issue_own_server_cert`]), so a constrained CA never issues
/// outside its constraints this way either.
///
/// Fails with every reason if the profile does not make TLS server certificates
/// (`serverAuth`), a name is malformed, there are no names, or the issuer has expired.
pub fn own_server_plan(
    profile: &Profile,
    sans: &[San],
    lifetime: Duration,
    now: SystemTime,
    issuer_not_after: SystemTime,
) -> Result<Plan, Vec<String>> {
    let p = &profile.file;
    let mut why = Vec::new();
    if !p.usage.extended_key_usage.iter().any(|e| e == "serverAuth") {
        why.push(format!(
            "profile {} does not issue TLS server certificates (no serverAuth)",
            profile.name
        ));
    }
    let mut names: Vec<San> = Vec::new();
    for san in sans {
        let san = match san {
            San::Dns(raw) => match names::normalise_dns(raw) {
                Ok(name) => San::Dns(name),
                Err(e) => {
                    why.push(e);
                    continue;
                }
            },
            San::Ip(ip) => San::Ip(*ip),
            San::Email(_) | San::Uri(_) => {
                why.push("a server certificate names DNS names and IP addresses only".into());
                continue;
            }
        };
        if !names.contains(&san) {
            names.push(san);
        }
    }
    if names.is_empty() {
        why.push("at least one subject alternative name is required".into());
    }
    let max = Duration::from_secs(u64::from(p.validity.max_days) * 86_400);
    let not_after = (now + lifetime.min(max)).min(issuer_not_after);
    if not_after <= now {
        why.push("the issuer's certificate has expired".into());
    }
    if !why.is_empty() {
        return Err(why);
    }
    let mut subject: Vec<(String, String)> = p
        .subject
        .fixed
        .iter()
        .filter(|(k, _)| k.as_str() != "CN")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // CA/B BR 7.1.4.3: a CN, if present, is one of the SANs.
    if let Some(first) = names.first() {
        let cn = match first {
            San::Dns(d) => d.clone(),
            San::Ip(ip) => ip.to_string(),
            San::Email(e) | San::Uri(e) => e.clone(),
        };
        subject.push(("CN".into(), cn));
    }
    Ok(Plan {
        issuer: p.issuer.clone(),
        not_before: now,
        not_after,
        subject,
        sans: names,
        key_usage: p.usage.key_usage.clone(),
        extended_key_usage: p.usage.extended_key_usage.clone(),
    })
}

fn check_key(p: &ProfileFile, request: &RequestFacts, why: &mut Vec<String>) {
    if request.key_is_a_ca_key {
        why.push("the request's public key is one of this CA's own keys".into());
    }
    match &request.key {
        SubjectKey::Ec(kind) if !p.keys.allowed.contains(kind) => {
            why.push(format!("key type {kind:?} is not allowed by this profile"));
        }
        SubjectKey::Ec(_) => {}
        SubjectKey::Rsa { bits, exponent } => {
            if !p.keys.allowed.contains(&KeyKind::Rsa) {
                why.push("RSA keys are not allowed by this profile".into());
            }
            if *bits < p.keys.min_rsa_bits {
                why.push(format!(
                    "RSA key of {bits} bits is below the minimum of {}",
                    p.keys.min_rsa_bits
                ));
            }
            if *exponent <= 1 || exponent % 2 == 0 {
                why.push(format!(
                    "RSA public exponent {exponent} is not odd and greater than 1"
                ));
            }
        }
        SubjectKey::Other(what) => why.push(format!("unsupported key: {what}")),
    }
}

fn check_names(profile: &Profile, requested: &[San], why: &mut Vec<String>) -> Vec<San> {
    let n = &profile.file.names;
    if requested.len() > n.max_sans {
        why.push(format!(
            "{} subject alternative names requested; at most {} allowed",
            requested.len(),
            n.max_sans
        ));
    }
    if n.require_san && requested.is_empty() {
        why.push("at least one subject alternative name is required".into());
    }
    let mut sans = Vec::new();
    for san in requested {
        match san {
            San::Dns(raw) => {
                let name = match names::normalise_dns(raw) {
                    Ok(name) => name,
                    Err(e) => {
                        why.push(e);
                        continue;
                    }
                };
                let base = match name.strip_prefix("*.") {
                    Some(rest) if !n.allow_wildcards => {
                        why.push(format!("wildcard name {name:?} is not allowed"));
                        rest.to_string()
                    }
                    Some(rest) => rest.to_string(),
                    None => name.clone(),
                };
                let denied = n.deny.iter().any(|d| {
                    let d = d.to_ascii_lowercase();
                    base == d.trim_start_matches('.')
                        || names::has_suffix(&base, &format!(".{}", d.trim_start_matches('.')))
                });
                let allowed = n.dns_exact.iter().any(|e| e.eq_ignore_ascii_case(&base))
                    || n.dns_suffixes
                        .iter()
                        .any(|s| names::has_suffix(&base, &s.to_ascii_lowercase()));
                if denied {
                    why.push(format!("dns name {name:?} is on the deny list"));
                } else if !allowed {
                    why.push(format!(
                        "dns name {name:?} is outside the names profile {} allows",
                        profile.name
                    ));
                }
                sans.push(San::Dns(name));
            }
            San::Ip(ip) => {
                if !profile.ip_ranges.iter().any(|r| r.contains(*ip)) {
                    why.push(format!(
                        "ip address {ip} is outside the ranges profile {} allows",
                        profile.name
                    ));
                }
                sans.push(San::Ip(*ip));
            }
            San::Email(addr) => {
                let domain = addr.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
                match domain {
                    Some(d) if n.email_domains.iter().any(|x| x.eq_ignore_ascii_case(&d)) => {}
                    _ => why.push(format!(
                        "email address {addr:?} is outside the domains profile {} allows",
                        profile.name
                    )),
                }
                sans.push(San::Email(addr.clone()));
            }
            San::Uri(uri) => {
                if !n.uri_prefixes.iter().any(|p| uri.starts_with(p.as_str())) {
                    why.push(format!(
                        "uri {uri:?} is outside the prefixes profile {} allows",
                        profile.name
                    ));
                }
                sans.push(San::Uri(uri.clone()));
            }
        }
    }
    sans
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLS: &str = r#"
        version = 1
        issuer = "issuing-ca"
        [validity]
        max_days = 90
        [keys]
        allowed = ["p256", "p384", "rsa"]
        [names]
        dns_suffixes = [".internal", ".corp"]
        dns_exact = ["exact.example"]
        ip_ranges = ["10.0.0.0/8"]
        email_domains = ["corp.example"]
        uri_prefixes = ["spiffe://corp/"]
        deny = ["admin.corp"]
        max_sans = 3
        require_san = true
        [subject]
        from_csr = ["CN"]
        fixed = { O = "Example" }
        [usage]
        key_usage = ["digitalSignature"]
        extended_key_usage = ["serverAuth"]
    "#;

    fn profile(text: &str) -> Profile {
        Profile::parse("tls-server", Path::new("tls-server.toml"), text).unwrap()
    }

    fn request() -> RequestFacts {
        RequestFacts {
            subject: vec![("CN".into(), "db.corp".into())],
            sans: vec![San::Dns("db.corp".into())],
            key: SubjectKey::Ec(KeyKind::P384),
            key_is_a_ca_key: false,
            validity_days: None,
        }
    }

    fn alice() -> Requester {
        Requester {
            name: "alice".into(),
            roles: vec!["requester".into()],
        }
    }

    const NOW: Duration = Duration::from_secs(1_800_000_000);
    const YEAR: Duration = Duration::from_secs(365 * 86_400);

    fn eval(p: &Profile, r: &RequestFacts) -> Decision {
        let now = SystemTime::UNIX_EPOCH + NOW;
        evaluate(p, r, &alice(), now, now + YEAR)
    }

    fn rejected(d: Decision) -> Vec<String> {
        match d {
            Decision::Reject(why) => why,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn own_server_plan_ignores_the_allowed_names_but_keeps_usages_and_validity_caps() {
        let now = SystemTime::UNIX_EPOCH + NOW;
        let sans = [
            San::Dns("LocalHost".into()),
            San::Ip("127.0.0.1".parse().unwrap()),
            San::Dns("localhost".into()),
        ];
        let day = Duration::from_secs(86_400);
        let plan = own_server_plan(&profile(TLS), &sans, 30 * day, now, now + YEAR).unwrap();
        assert_eq!(
            plan.sans,
            [
                San::Dns("localhost".into()),
                San::Ip("127.0.0.1".parse().unwrap())
            ]
        );
        assert_eq!(
            plan.subject,
            [
                ("O".to_string(), "Example".to_string()),
                ("CN".into(), "localhost".into())
            ]
        );
        assert_eq!(plan.extended_key_usage, ["serverAuth"]);
        assert_eq!(plan.not_after, now + 30 * day);
        // Never past the profile's maximum or the issuer's notAfter.
        let plan = own_server_plan(&profile(TLS), &sans, YEAR, now, now + YEAR).unwrap();
        assert_eq!(plan.not_after, now + 90 * day);
        let plan = own_server_plan(&profile(TLS), &sans, YEAR, now, now + day).unwrap();
        assert_eq!(plan.not_after, now + day);
    }

    #[test]
    fn own_server_plan_refuses_non_server_profiles_bad_names_and_an_expired_issuer() {
        let now = SystemTime::UNIX_EPOCH + NOW;
        let client = profile(&TLS.replace(r#"["serverAuth"]"#, r#"["clientAuth"]"#));
        let why = own_server_plan(
            &client,
            &[San::Dns("bad name".into()), San::Email("a@b.corp".into())],
            YEAR,
            now,
            now,
        )
        .unwrap_err();
        assert_eq!(why.len(), 5, "{why:?}");
        assert!(why[0].contains("no serverAuth"), "{why:?}");
        assert!(why[4].contains("expired"), "{why:?}");
        let why = own_server_plan(&profile(TLS), &[], YEAR, now, now + YEAR).unwrap_err();
        assert!(why[0].contains("at least one"), "{why:?}");
    }

    #[test]
    fn a_conforming_request_is_issued_with_the_profiles_usages_and_fixed_subject() {
        let Decision::Issue(plan) = eval(&profile(TLS), &request()) else {
            panic!()
        };
        assert_eq!(plan.extended_key_usage, ["serverAuth"]);
        assert_eq!(
            plan.subject,
            [
                ("O".to_string(), "Example".to_string()),
                ("CN".into(), "db.corp".into())
            ]
        );
        assert_eq!(
            plan.not_after
                .duration_since(plan.not_before)
                .unwrap()
                .as_secs(),
            90 * 86_400
        );
    }

    #[test]
    fn each_rule_rejects_what_it_should() {
        type Case = (&'static str, fn(&mut RequestFacts), &'static str);
        let cases: &[Case] = &[
            (
                "suffix",
                |r| r.sans = vec![San::Dns("db.example.com".into())],
                "outside the names",
            ),
            (
                "suffix boundary",
                |r| r.sans = vec![San::Dns("evilcorp".into())],
                "outside the names",
            ),
            (
                "wildcard",
                |r| r.sans = vec![San::Dns("*.svc.corp".into())],
                "wildcard",
            ),
            (
                "deny list",
                |r| r.sans = vec![San::Dns("x.admin.corp".into())],
                "deny list",
            ),
            (
                "bad dns",
                |r| r.sans = vec![San::Dns("a..corp".into())],
                "invalid label",
            ),
            (
                "ip range",
                |r| r.sans = vec![San::Ip("192.168.1.1".parse().unwrap())],
                "ip address",
            ),
            (
                "email",
                |r| r.sans = vec![San::Email("x@evil.example".into())],
                "email",
            ),
            (
                "uri",
                |r| r.sans = vec![San::Uri("https://x".into())],
                "uri",
            ),
            (
                "max sans",
                |r| r.sans = vec![San::Dns("a.corp".into()); 4],
                "at most 3",
            ),
            (
                "no san",
                |r| r.sans.clear(),
                "at least one subject alternative name",
            ),
            (
                "cn not a san",
                |r| r.subject = vec![("CN".into(), "other.corp".into())],
                "not one of the subject alternative",
            ),
            (
                "subject field",
                |r| r.subject.push(("OU".into(), "x".into())),
                "OU may not come",
            ),
            (
                "key type",
                |r| r.key = SubjectKey::Other("ed25519".into()),
                "unsupported key",
            ),
            (
                "small rsa",
                |r| {
                    r.key = SubjectKey::Rsa {
                        bits: 1024,
                        exponent: 65537,
                    }
                },
                "below the minimum",
            ),
            (
                "rsa exponent 1",
                |r| {
                    r.key = SubjectKey::Rsa {
                        bits: 2048,
                        exponent: 1,
                    }
                },
                "exponent 1",
            ),
            (
                "even exponent",
                |r| {
                    r.key = SubjectKey::Rsa {
                        bits: 2048,
                        exponent: 65536,
                    }
                },
                "exponent 65536",
            ),
            ("ca key", |r| r.key_is_a_ca_key = true, "CA's own keys"),
        ];
        for (name, mutate, needle) in cases {
            let mut r = request();
            mutate(&mut r);
            let why = rejected(eval(&profile(TLS), &r));
            assert!(why.iter().any(|w| w.contains(needle)), "{name}: {why:?}");
        }
    }

    #[test]
    fn every_violation_is_reported_not_just_the_first() {
        let mut r = request();
        r.sans = vec![
            San::Dns("x.example.com".into()),
            San::Ip("8.8.8.8".parse().unwrap()),
        ];
        r.key = SubjectKey::Rsa {
            bits: 1024,
            exponent: 3,
        };
        let why = rejected(eval(&profile(TLS), &r));
        assert_eq!(why.len(), 4, "{why:?}"); // dns, ip, cn-not-in-sans, rsa size
    }

    #[test]
    fn validity_is_clamped_or_refused_as_the_profile_says_and_never_outlives_the_issuer() {
        let mut r = request();
        r.validity_days = Some(400);
        let Decision::Issue(plan) = eval(&profile(TLS), &r) else {
            panic!()
        };
        assert_eq!(
            plan.not_after
                .duration_since(plan.not_before)
                .unwrap()
                .as_secs(),
            90 * 86_400
        );
        let strict =
            profile(&TLS.replace("max_days = 90", "max_days = 90\non_excess = \"reject\""));
        assert!(rejected(eval(&strict, &r))[0].contains("exceeds"));

        let now = SystemTime::UNIX_EPOCH + NOW;
        let soon = now + Duration::from_secs(86_400);
        let Decision::Issue(plan) = evaluate(&profile(TLS), &request(), &alice(), now, soon) else {
            panic!()
        };
        assert_eq!(plan.not_after, soon);
    }

    #[test]
    fn approvals_and_roles_are_enforced() {
        let quorum = profile(&format!(
            "{TLS}\n[approval]\napprovals = 2\nrequester_roles = [\"requester\"]\n"
        ));
        assert!(matches!(
            eval(&quorum, &request()),
            Decision::NeedsApproval { approvals: 2, .. }
        ));
        let officers_only = profile(&format!(
            "{TLS}\n[approval]\nrequester_roles = [\"officer\"]\n"
        ));
        assert!(rejected(eval(&officers_only, &request()))[0].contains("needs role officer"));
        let cli = profile(&TLS.replace(
            "issuer = \"issuing-ca\"",
            "issuer = \"issuing-ca\"\ncli_only = true",
        ));
        assert!(rejected(eval(&cli, &request()))[0].contains("ceremony CLI"));
    }

    #[test]
    fn invalid_profiles_report_every_problem_with_the_path() {
        let bad = TLS
            .replace("version = 1", "version = 2")
            .replace("\"serverAuth\"", "\"serverAuthh\"")
            .replace("10.0.0.0/8", "10.0.0.1/8")
            .replace("from_csr = [\"CN\"]", "from_csr = [\"XX\"]");
        let err = Profile::parse("t", Path::new("policies/t.toml"), &bad).unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        assert!(
            err.0.iter().all(|e| e.starts_with("policies/t.toml: ")),
            "{err}"
        );
        let err = Profile::parse(
            "t",
            Path::new("policies/t.toml"),
            "version = 1\nbogus = 1\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("line 1") || err.to_string().contains("bogus"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_policies_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let profiles = load_dir(&dir).unwrap();
        let names: Vec<_> = profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["code-signing", "sub-ca", "tls-client", "tls-server"]
        );
        let limits = profiles[0].codesign_limits().unwrap();
        assert_eq!(limits.per_minute, 60);
        assert_eq!(limits.per_day, Some(1000));
        assert_eq!(profiles[3].codesign_limits(), None);
    }

    #[test]
    fn codesign_limits_default_and_are_validated_at_load() {
        let signing = TLS.replace("\"serverAuth\"", "\"codeSigning\"");
        assert_eq!(
            profile(&signing).codesign_limits(),
            Some(CodesignLimits {
                per_minute: DEFAULT_SIGNATURES_PER_MINUTE,
                per_day: None
            })
        );
        let zero = format!(
            "{signing}\n[codesign]\nmax_signatures_per_minute = 0\nmax_signatures_per_day = 0\n"
        );
        let err = Profile::parse("t", Path::new("t.toml"), &zero).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(
            err.to_string()
                .contains("max_signatures_per_minute must be at least 1")
        );
        let on_tls = format!("{TLS}\n[codesign]\nmax_signatures_per_day = 5\n");
        let err = Profile::parse("t", Path::new("t.toml"), &on_tls).unwrap_err();
        assert!(err.to_string().contains("only to profiles"), "{err}");
        let typo = format!("{signing}\n[codesign]\nmax_per_day = 5\n");
        assert!(Profile::parse("t", Path::new("t.toml"), &typo).is_err());
    }

    #[test]
    fn a_ca_profile_must_be_cli_only_under_two_approvals_without_ekus() {
        let ca = |extra: &str| {
            let text = format!(
                "version = 1\nissuer = \"root\"\n{extra}\n[validity]\nmax_days = 365\n\
                 [keys]\nallowed = [\"p384\"]\n[usage]\nkey_usage = [\"keyCertSign\", \"cRLSign\"]\n"
            );
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("ca.toml"), text).unwrap();
            load_dir(dir.path()).map(|_| ()).map_err(|e| e.to_string())
        };
        let e = ca("").unwrap_err();
        assert!(
            e.contains("must be cli_only") && e.contains("at least 2"),
            "{e}"
        );
        let e = ca("cli_only = true\n[approval]\napprovals = 1").unwrap_err();
        assert!(e.contains("at least 2") && !e.contains("cli_only"), "{e}");
        ca("cli_only = true\n[approval]\napprovals = 2\nrequester_roles = [\"officer\"]").unwrap();
    }
}
