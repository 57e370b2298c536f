//! Evaluating a request against a profile: the pure function the module invariant of
//! [`crate::policy`] describes, and the plan for Keyhold's own server certificate.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::{
    Decision, KeyFamily, KeyKind, OnExcess, Plan, Profile, ProfileFile, RequestFacts, Requester,
    San, SubjectKey, names, usages_for_key,
};

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
        let times = request.subject.iter().filter(|(a, _)| a == attr).count();
        if times > 1 {
            // Two CNs: OpenSSL's usual lookup returns the last, a name check the first, so
            // an mTLS server could map the certificate to a name nobody checked.
            if !why
                .iter()
                .any(|w| w.starts_with(&format!("subject attribute {attr} appears")))
            {
                why.push(format!(
                    "subject attribute {attr} appears {times} times in the request; at most once \
                     is allowed"
                ));
            }
            continue;
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
    for (_, cn) in subject.iter().filter(|(a, _)| a == "CN") {
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
        key_usage: usages_for_key(&p.usage.key_usage, KeyFamily::of(&request.key)),
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
/// usage (the bits that fit `key`, see [`usages_for_key`]) and extended key usage. The
/// issuer's name constraints are applied by the caller
/// ([`crate::issuance::Ca::issue_own_server_cert`]), so a constrained CA never issues
/// outside its constraints this way either.
///
/// Fails with every reason if the profile does not make TLS server certificates
/// (`serverAuth`), a name is malformed, there are no names, or the issuer has expired.
pub fn own_server_plan(
    profile: &Profile,
    key: KeyFamily,
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
        key_usage: usages_for_key(&p.usage.key_usage, key),
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

/// Every reason the profile refuses these names (none: all allowed).
pub(crate) fn names_refused(profile: &Profile, sans: &[San]) -> Vec<String> {
    let mut why = Vec::new();
    check_names(profile, sans, &mut why);
    why
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
