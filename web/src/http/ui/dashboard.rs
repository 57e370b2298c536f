//! The dashboard: counts (reused for a few seconds), the issuance chart, the next CRL update
//! and, for auditors and admins, recent audit events.
//!
//! Handlers parse, check the session's rights (and the anti-CSRF token on POST), call one
//! core service on the blocking pool, and render; the rules live in ca-core.

use std::time::{Duration, SystemTime};

use actix_web::{HttpResponse, web};
use ca_core::users::Role;

use super::audit::audit_row;
use super::certs::EXPIRING_WITHIN;
use crate::http::state::AppState;
use crate::http::ui::session::SignedIn;
use crate::http::ui::views::{DashboardPage, IssuanceChart, Layout};
use crate::http::ui::{UiError, render};
use crate::text::humantime;

/// What the dashboard says of scheduled backups: the last success (or failure), and whether
/// they are overdue.
fn backup_line(state: &AppState, now: SystemTime) -> Option<(String, bool)> {
    let b = state.backups.as_ref()?;
    let mut line = match b.last_success() {
        Some((at, file, bytes)) => format!(
            "last backup {} ({}, {} bytes)",
            humantime(at),
            file.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            grouped(bytes)
        ),
        None => "no backup made yet".into(),
    };
    if let Some((at, why)) = b.last_failure() {
        line.push_str(&format!("; last failure {}: {why}", humantime(at)));
    }
    Some((line, b.overdue(now).is_some()))
}

/// For each issuer, when its CRL is next due, from the last CRL this server made.
pub(crate) fn crl_lines(state: &AppState) -> Vec<(String, String)> {
    state
        .ca
        .issuers()
        .iter()
        .map(|i| {
            let id = i.id.as_str();
            let line = match state.publisher.crl_status(id) {
                Some((number, this_update, next_update)) => format!(
                    "CRL number {number}, this update {}, next update {} at the latest",
                    humantime(this_update),
                    humantime(next_update)
                ),
                None => "no CRL made by this server yet: the first fetch makes one".to_owned(),
            };
            (id.to_owned(), line)
        })
        .collect()
}

/// `n` with thousands separators: `1,234,567`.
pub(super) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// `GET /ui/`: counts and, for auditors and admins, recent audit events.
pub async fn dashboard(state: web::Data<AppState>, s: SignedIn) -> Result<HttpResponse, UiError> {
    let own = s.own_only().then(|| s.user.name.clone());
    let show_events = s.user.has_any(&[Role::Admin, Role::Auditor]);
    let (certs, audit_log) = (state.certs.clone(), state.audit_log.clone());
    let now = SystemTime::now();
    let probes = state.probes.clone();
    let counts_cache = state.dashboard_counts.clone();
    let acme = state.acme.clone().filter(|_| !s.own_only());
    let (counts, events, health, per_day, acme) = web::block(move || {
        let acme = match acme {
            Some(a) => Some(a.service.counts()?),
            None => None,
        };
        let health = vec![
            ("Database", probes.database().is_ok()),
            ("Key store", probes.key_store().is_ok()),
        ];
        let per_day = certs.issued_per_day(now - CHART_DAYS_SPAN, own.as_deref())?;
        let counts = counts_cache.get(own.as_deref(), || {
            certs.counts(own.as_deref(), now + EXPIRING_WITHIN)
        })?;
        let events = if show_events {
            match audit_log.audit_head()? {
                Some((head, _)) => audit_log.audit_entries((head - 9).max(1), head)?,
                None => Vec::new(),
            }
        } else {
            Vec::new()
        };
        Ok::<_, ca_core::store::StoreError>((counts, events, health, per_day, acme))
    })
    .await??;
    render(&DashboardPage {
        own_only: s.own_only(),
        layout: Layout::new(&s, "dashboard"),
        valid: grouped(counts.valid),
        expiring: grouped(counts.expiring),
        revoked: grouped(counts.revoked),
        pending: grouped(counts.pending),
        events: events.iter().rev().map(audit_row).collect(),
        show_events,
        health,
        crls: crl_lines(&state),
        backup: backup_line(&state, now),
        chart: IssuanceChart::new(&per_day, now),
        acme: acme.map(|(accounts, issued)| {
            let n = |v: i64| grouped(u64::try_from(v).unwrap_or(0));
            (n(issued), n(accounts))
        }),
    })
}

/// How far back the dashboard's issuance chart reaches.
pub(super) const CHART_DAYS: u64 = 90;
pub(super) const CHART_DAYS_SPAN: Duration = Duration::from_secs(CHART_DAYS * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
