//! The approval queue: certificate requests and operations waiting for officers.
//!
//! Handlers parse, check the session's rights (and the anti-CSRF token on POST), call one
//! core service on the blocking pool, and render; the rules live in ca-core.

use std::time::SystemTime;

use actix_web::{HttpResponse, web};
use ca_core::error::ErrorKind;
use ca_core::issuance::{self, Outcome};
use ca_core::store::{RequestFilter, RequestRow, RequestStatus};
use ca_core::users::Role;
use serde::Deserialize;

use crate::http::state::AppState;
use crate::http::ui::session::SignedIn;
use crate::http::ui::views::{Hidden, Layout, OperationView, RequestView, RequestsPage};
use crate::http::ui::{PREFIX, UiError, render, see_other};
use crate::text::humantime;

/// `GET /ui/requests` query.
#[derive(Debug, Deserialize)]
pub struct RequestsQuery {
    show: Option<String>,
    done: Option<String>,
    id: Option<i64>,
}

pub(super) fn request_view(
    r: &RequestRow,
    void: &[(String, String)],
    s: &SignedIn,
    now: SystemTime,
) -> RequestView {
    let status = issuance::effective_request_status(r, now);
    let officer = s.user.has(Role::Officer);
    let mine = r.requester == s.user.name;
    let approved = r.approvals.iter().any(|a| a.officer == s.user.name);
    let why_not = if !officer || status != "pending" {
        String::new()
    } else if mine {
        "You requested this: another officer decides.".into()
    } else if approved {
        "You approved this already.".into()
    } else {
        String::new()
    };
    let counted = |o: &str| !void.iter().any(|(v, _)| v == o);
    let who: Vec<&str> = r
        .approvals
        .iter()
        .map(|a| a.officer.as_str())
        .filter(|o| counted(o))
        .collect();
    let void_text: String = void
        .iter()
        .map(|(_, why)| format!("; no longer counts: {why}"))
        .collect();
    RequestView {
        id: r.id,
        profile: r.profile.clone(),
        requester: r.requester.clone(),
        subject: r.subject.clone(),
        sans: r.sans.clone(),
        status: status.to_owned(),
        approvals: if who.is_empty() {
            format!("0 of {}{void_text}", r.approvals_needed)
        } else {
            format!(
                "{} of {}: {}{void_text}",
                who.len(),
                r.approvals_needed,
                who.join(", ")
            )
        },
        created_at: humantime(r.created_at),
        expires_at: humantime(r.expires_at),
        decidable: officer && status == "pending" && !mine && !approved,
        why_not,
    }
}

/// `GET /ui/requests`: the approval queue (or every request); requesters see their own.
pub async fn requests(
    state: web::Data<AppState>,
    s: SignedIn,
    query: web::Query<RequestsQuery>,
) -> Result<HttpResponse, UiError> {
    let q = query.into_inner();
    let all = q.show.as_deref() == Some("all");
    let filter = RequestFilter {
        status: (!all).then_some(RequestStatus::Pending),
        requester: s.own_only().then(|| s.user.name.clone()),
        limit: 200,
        ..RequestFilter::default()
    };
    let (certs, ca) = (state.certs.clone(), state.ca.clone());
    let rows = web::block(move || -> Result<_, ca_core::store::StoreError> {
        let rows = certs.requests(&filter)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let void = ca.void_approvals(&r)?;
            out.push((r, void));
        }
        Ok(out)
    })
    .await??;
    let now = SystemTime::now();
    let notice = match (q.done.as_deref(), q.id) {
        (Some("approved"), Some(id)) => Some(format!(
            "Request {id} approved; it waits for further approvals."
        )),
        (Some("issued"), Some(id)) => {
            Some(format!("Request {id} approved and its certificate issued."))
        }
        (Some("refused"), Some(id)) => Some(format!(
            "Request {id} approved, but the profile no longer allows it: nothing was issued."
        )),
        (Some("rejected"), Some(id)) => Some(format!("Request {id} rejected.")),
        (Some("op-approved"), Some(id)) => Some(format!(
            "Operation {id} approved; it waits for further approvals."
        )),
        (Some("op-done"), Some(id)) => Some(format!(
            "Operation {id} approved by its quorum and carried out."
        )),
        (Some("op-rejected"), Some(id)) => Some(format!("Operation {id} rejected.")),
        (Some("submitted"), Some(id)) => Some(format!(
            "Request {id} recorded: it waits for an officer's approval."
        )),
        _ => None,
    };
    let operations = if s.own_only() {
        Vec::new()
    } else {
        let db = state.operations.clone();
        let ops =
            web::block(move || ca_core::quorum::OperationStore::operations(db.as_ref(), true))
                .await??;
        ops.iter()
            .filter(|o| o.effective_status(now) == "pending")
            .map(|o| {
                let who: Vec<&str> = o.approvals.iter().map(|a| a.officer.as_str()).collect();
                let mine = o.op.requested_by == s.user.name || o.op.target == s.user.name;
                let approved = who.contains(&s.user.name.as_str());
                OperationView {
                    id: o.id,
                    kind: o.op.kind.as_str().to_owned(),
                    target: o.op.target.clone(),
                    requested_by: o.op.requested_by.clone(),
                    approvals: format!(
                        "{} of {}{}{}",
                        who.len(),
                        o.op.approvals_needed,
                        if who.is_empty() { "" } else { ": " },
                        who.join(", ")
                    ),
                    expires_at: humantime(o.op.expires_at),
                    decidable: s.user.has(Role::Officer)
                        && !s.user.has(Role::Admin)
                        && !mine
                        && !approved,
                }
            })
            .collect()
    };
    render(&RequestsPage {
        operations,
        layout: Layout::new(&s, "requests"),
        show: if all { "all" } else { "pending" }.into(),
        rows: rows
            .iter()
            .filter(|(r, _)| all || issuance::effective_request_status(r, now) == "pending")
            .map(|(r, void)| request_view(r, void, &s, now))
            .collect(),
        notice,
        can_submit: s.user.has(Role::Requester),
    })
}

/// The approve form.
#[derive(Debug, Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    csrf: Hidden,
    #[serde(default)]
    comment: String,
}

/// `POST /ui/requests/{id}/approve` (officers; never one's own request: ca-core refuses).
pub async fn approve(
    state: web::Data<AppState>,
    s: SignedIn,
    id: web::Path<i64>,
    form: web::Form<ApproveForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Officer])?;
    let id = id.into_inner();
    let ca = state.ca.clone();
    let (officer, src, comment) = (
        s.user.requester(),
        s.source.clone(),
        form.into_inner().comment,
    );
    let outcome =
        web::block(move || ca.approve(id, &officer, comment.trim(), &src, SystemTime::now()))
            .await??;
    let done = match outcome {
        Outcome::Issued(_) => "issued",
        Outcome::Pending { .. } => "approved",
        Outcome::Rejected(_) => "refused",
    };
    Ok(see_other(&format!("{PREFIX}/requests?done={done}&id={id}")))
}

/// `POST /ui/operations/{id}/approve` (officers; never the one who asked): at the quorum
/// the operation is carried out here.
pub async fn approve_operation(
    state: web::Data<AppState>,
    s: SignedIn,
    id: web::Path<i64>,
    form: web::Form<ApproveForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Officer])?;
    let id = id.into_inner();
    let (ops, db, codesign, users) = (
        state.operations.clone(),
        state.ledger.clone(),
        state.codesign.clone(),
        super::users(&state),
    );
    let (officer, src, comment) = (
        s.user.requester(),
        s.source.clone(),
        form.into_inner().comment,
    );
    let done = web::block(move || -> Result<_, UiError> {
        let now = SystemTime::now();
        // A key export or import is carried out by the approval that completes its quorum,
        // with the CA host's token and file system: officers approve it there, with
        // `keyhold ops approve`, never from a browser.
        if let Some(row) = ops
            .operation(id)
            .map_err(|e| UiError::server(e.kind(), &e))?
            && matches!(
                row.op.kind,
                ca_core::quorum::OperationKind::ExportKey
                    | ca_core::quorum::OperationKind::ImportKey
            )
        {
            return Err(UiError::Conflict(format!(
                "operation {id} ({}) is approved on the CA host with `keyhold ops approve {id} \
                 --as OFFICER`, which carries it out there",
                row.op.kind
            )));
        }
        let quorum = ca_core::quorum::Quorum {
            ops: ops.as_ref(),
            accounts: db.as_ref(),
        };
        match quorum.approve(id, &officer, comment.trim(), &src, now)? {
            ca_core::quorum::Approved::Pending { .. } => Ok(None),
            ca_core::quorum::Approved::Ready(row) => {
                let destroy = |label: &str, why: &str| {
                    codesign
                        .destroy_key(db.as_ref(), label, why, &officer.name, &src, now)
                        .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
                };
                let transfer = |kind, _: &ca_core::quorum::KeyTransfer, _| {
                    Err(format!(
                        "{kind} is carried out by `keyhold ops approve` only"
                    ))
                };
                let done = ca_core::quorum::carry_out(
                    ops.as_ref(),
                    users.as_ref(),
                    destroy,
                    transfer,
                    &row,
                    &officer.name,
                    &src,
                )
                .map_err(|e| UiError::server(ErrorKind::Unavailable, &format!("{e:#}")))?;
                Ok(Some(done))
            }
        }
    })
    .await??;
    match done {
        // The officer who completes a reset hands the one-time password over: shown once.
        Some(ca_core::quorum::CarriedOut::CredentialsReset { name, password, .. }) => {
            let notice = Some(format!(
                "Operation {id} done: {name} has a new one-time password, shown once below; \
                 hand it to them yourself."
            ));
            let shown = (name, super::views::Hidden(password.expose().to_owned()));
            super::admin::page(
                &state,
                &s,
                actix_web::http::StatusCode::OK,
                notice,
                Some(shown),
                None,
            )
            .await
        }
        Some(_) => Ok(see_other(&format!(
            "{PREFIX}/requests?done=op-done&id={id}"
        ))),
        None => Ok(see_other(&format!(
            "{PREFIX}/requests?done=op-approved&id={id}"
        ))),
    }
}

/// `POST /ui/operations/{id}/reject` (officers; a reason is required).
pub async fn reject_operation(
    state: web::Data<AppState>,
    s: SignedIn,
    id: web::Path<i64>,
    form: web::Form<RejectForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Officer])?;
    let id = id.into_inner();
    let (ops, db) = (state.operations.clone(), state.ledger.clone());
    let (officer, src, reason) = (
        s.user.requester(),
        s.source.clone(),
        form.into_inner().reason,
    );
    web::block(move || {
        ca_core::quorum::Quorum {
            ops: ops.as_ref(),
            accounts: db.as_ref(),
        }
        .reject(id, &officer, reason.trim(), &src)
    })
    .await??;
    Ok(see_other(&format!(
        "{PREFIX}/requests?done=op-rejected&id={id}"
    )))
}

/// The reject form.
#[derive(Debug, Deserialize)]
pub struct RejectForm {
    #[serde(default)]
    csrf: Hidden,
    #[serde(default)]
    reason: String,
}

/// `POST /ui/requests/{id}/reject` (officers; a reason is required).
pub async fn reject(
    state: web::Data<AppState>,
    s: SignedIn,
    id: web::Path<i64>,
    form: web::Form<RejectForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Officer])?;
    let id = id.into_inner();
    let reason = form.into_inner().reason.trim().to_owned();
    if reason.is_empty() {
        return Err(UiError::Invalid("a rejection needs a reason".into()));
    }
    let ca = state.ca.clone();
    let (officer, src) = (s.user.requester(), s.source.clone());
    web::block(move || ca.reject(id, &officer, &reason, &src)).await??;
    Ok(see_other(&format!(
        "{PREFIX}/requests?done=rejected&id={id}"
    )))
}
