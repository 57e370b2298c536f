//! RFC 5280 4.2.1.10 name constraints: whether a requested name lies within the subtrees a
//! CA certificate permits and outside those it excludes.
//!
//! Invariant: a name of a type the constraints do not mention is allowed; one of a type they
//! do mention must lie within a permitted subtree of that type, and never within an excluded
//! one. Matching is case-insensitive and at label boundaries, as for the profile's own name
//! rules in [`super::names`].

use std::net::IpAddr;

use x509_cert::ext::pkix::constraints::name::{GeneralSubtree, NameConstraints};
use x509_cert::ext::pkix::name::GeneralName;

use super::{San, sans_text};
use crate::issuer::IssuerId;

/// Adds to `why` a violation for every name in `sans` that the constraints `nc` of CA `ca`
/// exclude or do not permit.
pub fn check_constraints(nc: &NameConstraints, ca: &IssuerId, sans: &[San], why: &mut Vec<String>) {
    let permitted = nc.permitted_subtrees.as_deref().unwrap_or_default();
    let excluded = nc.excluded_subtrees.as_deref().unwrap_or_default();
    for san in sans {
        let same_type = |t: &&GeneralSubtree| same_kind(&t.base, san);
        if excluded
            .iter()
            .filter(same_type)
            .any(|t| matches(&t.base, san))
        {
            why.push(format!(
                "{} is excluded by the name constraints of issuer {ca}",
                sans_text(std::slice::from_ref(san))
            ));
            continue;
        }
        let mut of_type = permitted.iter().filter(same_type).peekable();
        if of_type.peek().is_some() && !of_type.any(|t| matches(&t.base, san)) {
            why.push(format!(
                "{} is outside the name constraints of issuer {ca}",
                sans_text(std::slice::from_ref(san))
            ));
        }
    }
}

fn same_kind(base: &GeneralName, san: &San) -> bool {
    matches!(
        (base, san),
        (GeneralName::DnsName(_), San::Dns(_))
            | (GeneralName::IpAddress(_), San::Ip(_))
            | (GeneralName::Rfc822Name(_), San::Email(_))
            | (GeneralName::UniformResourceIdentifier(_), San::Uri(_))
    )
}

/// Whether `san` lies within the subtree `base` (RFC 5280 4.2.1.10 matching rules).
fn matches(base: &GeneralName, san: &San) -> bool {
    match (base, san) {
        (GeneralName::DnsName(b), San::Dns(d)) => dns_within(b.as_str(), d),
        (GeneralName::Rfc822Name(b), San::Email(e)) => {
            let b = b.as_str().to_ascii_lowercase();
            let e = e.to_ascii_lowercase();
            if b.contains('@') {
                e == b
            } else if b.starts_with('.') {
                e.rsplit_once('@')
                    .is_some_and(|(_, host)| host.ends_with(&b))
            } else {
                e.rsplit_once('@').is_some_and(|(_, host)| host == b)
            }
        }
        (GeneralName::UniformResourceIdentifier(b), San::Uri(u)) => uri_host(u).is_some_and(|h| {
            let b = b.as_str().to_ascii_lowercase();
            if b.starts_with('.') {
                h.ends_with(&b)
            } else {
                h == b
            }
        }),
        (GeneralName::IpAddress(b), San::Ip(ip)) => {
            let b = b.as_bytes();
            let addr: Vec<u8> = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            b.len() == addr.len() * 2
                && addr
                    .iter()
                    .zip(&b[..addr.len()])
                    .zip(&b[addr.len()..])
                    .all(|((a, net), mask)| a & mask == net & mask)
        }
        _ => false,
    }
}

/// DNS subtree matching: `b` = `corp.example` permits `corp.example` and `x.corp.example`;
/// a leading dot permits only subdomains.
fn dns_within(base: &str, name: &str) -> bool {
    let base = base.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    if base.is_empty() {
        return true;
    }
    if let Some(suffix) = base.strip_prefix('.') {
        return name.ends_with(&format!(".{suffix}"));
    }
    name == base || name.ends_with(&format!(".{base}"))
}

fn uri_host(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_subtrees_match_by_label() {
        assert!(dns_within("corp.example", "corp.example"));
        assert!(dns_within("corp.example", "a.corp.example"));
        assert!(!dns_within("corp.example", "evilcorp.example"));
        assert!(!dns_within(".corp.example", "corp.example"));
        assert!(dns_within(".corp.example", "a.corp.example"));
    }

    #[test]
    fn uri_hosts_are_extracted() {
        assert_eq!(
            uri_host("https://user@Svc.corp:8443/x").as_deref(),
            Some("svc.corp")
        );
        assert_eq!(uri_host("not a uri"), None);
    }
}
