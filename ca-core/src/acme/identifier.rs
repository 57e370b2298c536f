//! Order identifiers (RFC 8555 7.1.3, 7.1.4; RFC 8738) and the challenges each may use.
//!
//! Invariant: an [`Identifier`] is syntactically sound and canonical (DNS names lowercase
//! without a trailing dot, a wildcard only as the whole leftmost label, IP addresses in
//! their RFC 5952 / dotted-quad text); whether a name may be issued is the profile's
//! decision, made by the policy module exactly as for the API.

use std::net::IpAddr;

use serde_json::Value;

use super::{AcmeProblem, ProblemKind};

/// The challenge types Keyhold validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeType {
    /// RFC 8555 8.3.
    Http01,
    /// RFC 8555 8.4.
    Dns01,
    /// RFC 8737.
    TlsAlpn01,
}

impl ChallengeType {
    /// The `type` value, as ACME spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::Dns01 => "dns-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// One identifier of an order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identifier {
    /// `type` dns; may start with `*.`.
    Dns(String),
    /// `type` ip (RFC 8738).
    Ip(IpAddr),
}

fn rejected(detail: String) -> AcmeProblem {
    AcmeProblem::new(ProblemKind::RejectedIdentifier, detail)
}

fn valid_label(label: &str) -> bool {
    // RFC 1035 2.3.1 (LDH), RFC 1123 2.1 (may start with a digit); punycode passes as LDH.
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

impl Identifier {
    /// Reads `{"type": ..., "value": ...}`. Fails with `unsupportedIdentifier` for a type
    /// other than dns and ip, `malformed` for an IP that is not in canonical text or a dns
    /// value that is an IP address, and `rejectedIdentifier` for a name that is not a valid
    /// DNS name (a wildcard anywhere but the whole leftmost label included).
    pub fn from_json(value: &Value) -> Result<Self, AcmeProblem> {
        let kind = value.get("type").and_then(Value::as_str);
        let text = value.get("value").and_then(Value::as_str);
        let (Some(kind), Some(text)) = (kind, text) else {
            return Err(AcmeProblem::malformed(
                "identifier needs string \"type\" and \"value\"",
            ));
        };
        match kind {
            "dns" => Self::dns(text),
            "ip" => {
                let ip: IpAddr = text.parse().map_err(|_| {
                    AcmeProblem::malformed(format!("ip identifier {text:?} is not an IP address"))
                })?;
                // RFC 8738 3: "the textual form"; one canonical form per address, so that
                // two spellings never make two authorizations.
                if ip.to_string() != text {
                    return Err(AcmeProblem::malformed(format!(
                        "ip identifier {text:?} is not in canonical form ({ip})"
                    )));
                }
                Ok(Self::Ip(ip))
            }
            other => Err(AcmeProblem::new(
                ProblemKind::UnsupportedIdentifier,
                format!("identifier type {other:?} is not supported; use dns or ip"),
            )),
        }
    }

    fn dns(text: &str) -> Result<Self, AcmeProblem> {
        if text.parse::<IpAddr>().is_ok() {
            return Err(AcmeProblem::malformed(format!(
                "dns identifier {text:?} is an IP address; use type ip"
            )));
        }
        let name = text.to_ascii_lowercase();
        let rest = name.strip_prefix("*.").unwrap_or(&name);
        if name.len() > 253 || !rest.split('.').all(valid_label) || rest.split('.').count() < 2 {
            return Err(rejected(format!("{text:?} is not a valid DNS name")));
        }
        Ok(Self::Dns(name))
    }

    /// Whether this is a wildcard name.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Self::Dns(n) if n.starts_with("*."))
    }

    /// The identifier its authorization names: a wildcard's base domain (RFC 8555 7.1.4:
    /// the authorization carries the name without `*.` and `"wildcard": true`).
    pub fn authorization_value(&self) -> String {
        match self {
            Self::Dns(n) => n.strip_prefix("*.").unwrap_or(n).to_owned(),
            Self::Ip(ip) => ip.to_string(),
        }
    }

    /// The challenges offered for it: wildcards only dns-01 (RFC 8555 7.1.3, 8.4); IP
    /// addresses http-01 and tls-alpn-01 (RFC 8738 7: dns-01 is not for IPs); other names
    /// all three.
    pub fn challenge_types(&self) -> &'static [ChallengeType] {
        match self {
            Self::Dns(_) if self.is_wildcard() => &[ChallengeType::Dns01],
            Self::Dns(_) => &[
                ChallengeType::Http01,
                ChallengeType::Dns01,
                ChallengeType::TlsAlpn01,
            ],
            Self::Ip(_) => &[ChallengeType::Http01, ChallengeType::TlsAlpn01],
        }
    }
}

/// Reads a newOrder's `identifiers`: at least one, at most `max` (the profile's SAN limit),
/// duplicates folded, sorted. Fails with `malformed` for none or not an array,
/// `rejectedIdentifier` for more than `max`, and as [`Identifier::from_json`] per entry.
pub fn order_identifiers(value: &Value, max: usize) -> Result<Vec<Identifier>, AcmeProblem> {
    let list = value
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| AcmeProblem::malformed("identifiers must be a non-empty array"))?;
    if list.len() > max {
        return Err(rejected(format!(
            "{} identifiers exceed this profile's limit of {max}",
            list.len()
        )));
    }
    let mut ids = list
        .iter()
        .map(Identifier::from_json)
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}
