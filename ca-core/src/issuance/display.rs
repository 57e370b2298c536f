//! How requests and certificates read as text: RFC 4514 subjects and display statuses.

use std::time::SystemTime;

use crate::policy::Plan;
use crate::store::{CertStatus, RequestRow, RequestStatus};

/// RFC 4514 text of the planned subject, most specific attribute first.
pub(super) fn plan_subject(plan: &Plan) -> String {
    let mut attrs = plan.subject.clone();
    attrs.sort_by_key(|(k, _)| std::cmp::Reverse(attr_rank(k)));
    attrs
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_rdn_value(v)))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn facts_subject(subject: &[(String, String)]) -> String {
    subject
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_rdn_value(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The DER order of subject attributes: country first, common name last.
pub(super) fn attr_rank(attr: &str) -> u8 {
    match attr {
        "C" => 0,
        "ST" => 1,
        "L" => 2,
        "O" => 3,
        "OU" => 4,
        "CN" => 6,
        "emailAddress" => 7,
        _ => 5,
    }
}

/// Escapes a value for RFC 4514 text (section 2.4).
pub(super) fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The status a certificate row shows, with expiry taken into account.
pub fn effective_status(
    status: CertStatus,
    not_after: SystemTime,
    now: SystemTime,
) -> &'static str {
    match status {
        CertStatus::Valid if not_after < now => "expired",
        s => s.as_str(),
    }
}

/// The status a request row shows, with its approval deadline taken into account.
pub fn effective_request_status(row: &RequestRow, now: SystemTime) -> &'static str {
    match row.status {
        RequestStatus::Pending if row.expires_at < now => "expired",
        s => s.as_str(),
    }
}
