//! The audit log, filtered by actor, action and object.
//!
//! Handlers parse, check the session's rights (and the anti-CSRF token on POST), call one
//! core service on the blocking pool, and render; the rules live in ca-core.

use actix_web::{HttpResponse, web};
use ca_core::audit::AuditRecord;
use ca_core::users::Role;
use serde::Deserialize;

use crate::http::state::AppState;
use crate::http::ui::session::SignedIn;
use crate::http::ui::views::{AuditPage, AuditRow, Layout, query_value};
use crate::http::ui::{PREFIX, UiError, render};
use crate::text::humantime;

/// Audit entries per page.
pub(super) const AUDIT_PAGE: i64 = 50;

pub(super) fn audit_row(r: &AuditRecord) -> AuditRow {
    AuditRow {
        seq: r.seq,
        at: humantime(r.at()),
        actor: r.actor.clone(),
        source: r.source.clone(),
        action: r.action.clone(),
        object: r.object.clone(),
        details: r.details.clone(),
    }
}

/// `GET /ui/audit` query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    object: String,
}

/// Entries read per round trip while filtering.
pub(super) const AUDIT_CHUNK: i64 = 500;
/// Entries one filtered page looks through at most, so a rare match cannot make one
/// request read the whole log; the "older" link goes on from where it stopped.
pub(super) const AUDIT_SCAN: i64 = 20_000;

impl AuditQuery {
    fn filtered(&self) -> bool {
        !(self.actor.is_empty() && self.action.is_empty() && self.object.is_empty())
    }

    /// Actor exactly, action exactly or by prefix (`login.`), object by substring.
    fn matches(&self, r: &AuditRecord) -> bool {
        (self.actor.is_empty() || r.actor == self.actor)
            && (self.action.is_empty()
                || r.action == self.action
                || (self.action.ends_with('.') && r.action.starts_with(&self.action)))
            && (self.object.is_empty() || r.object.contains(&self.object))
    }

    fn url(&self, before: i64) -> String {
        format!(
            "{PREFIX}/audit?actor={}&action={}&object={}&before={before}",
            query_value(&self.actor),
            query_value(&self.action),
            query_value(&self.object)
        )
    }
}

/// `GET /ui/audit`: newest first, filtered by actor, action and object (auditors and
/// admins).
pub async fn audit_log(
    state: web::Data<AppState>,
    s: SignedIn,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, UiError> {
    s.require(&[Role::Auditor, Role::Admin])?;
    let q = query.into_inner();
    let log = state.audit_log.clone();
    let filter = AuditQuery {
        before: q.before,
        actor: q.actor.trim().to_owned(),
        action: q.action.trim().to_owned(),
        object: q.object.trim().to_owned(),
    };
    let f = filter.clone();
    // (matching entries newest first; the next page shows entries below `lowest`; how many
    // entries were looked through)
    let (rows, lowest, scanned) = web::block(move || {
        let Some((head, _)) = log.audit_head()? else {
            return Ok((Vec::new(), 1, 0));
        };
        let mut to = f.before.map_or(head, |b| b.saturating_sub(1).min(head));
        let mut rows: Vec<AuditRecord> = Vec::new();
        let mut scanned = 0;
        let mut lowest = to + 1;
        while to >= 1 && rows.len() < AUDIT_PAGE as usize && scanned < AUDIT_SCAN {
            let chunk = if f.filtered() {
                AUDIT_CHUNK
            } else {
                AUDIT_PAGE
            };
            let from = (to - chunk + 1).max(1);
            let mut entries = log.audit_entries(from, to)?;
            entries.reverse();
            // Where the next page starts: after the last entry looked at.
            lowest = from;
            for e in entries {
                if rows.len() == AUDIT_PAGE as usize {
                    lowest = e.seq + 1;
                    break;
                }
                if f.matches(&e) {
                    rows.push(e);
                }
            }
            scanned += to - from + 1;
            to = from - 1;
        }
        Ok::<_, ca_core::store::StoreError>((rows, lowest, scanned))
    })
    .await??;
    let older = (lowest > 1).then(|| filter.url(lowest));
    let note = (filter.filtered() && scanned >= AUDIT_SCAN && rows.len() < AUDIT_PAGE as usize)
        .then(|| format!("Looked through {scanned} entries; older ones may match too."));
    render(&AuditPage {
        layout: Layout::new(&s, "audit"),
        rows: rows.iter().map(audit_row).collect(),
        older,
        note,
        actor: filter.actor,
        action: filter.action,
        object: filter.object,
    })
}
