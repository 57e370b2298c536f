//! `/api/v1/requests/{id}`: follow a request that waits for approval.

use std::time::SystemTime;

use actix_web::{HttpResponse, web};
use ca_core::issuance::{self};
use ca_core::store::RequestRow;
use ca_core::x509::SignedCert;
use serde::Serialize;

use super::certificates::pem;
use crate::http::auth::Auth;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::text::humantime;

#[derive(Serialize)]
struct ApprovalBody {
    officer: String,
    at: String,
    counts: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    void_reason: Option<String>,
}

#[derive(Serialize)]
struct RequestBody {
    id: i64,
    status: &'static str,
    profile: String,
    requester: String,
    subject: String,
    sans: String,
    approvals_needed: u32,
    approvals_valid: usize,
    approvals: Vec<ApprovalBody>,
    created_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<String>,
}

/// `GET /api/v1/requests/{id}`: a request's status, and its certificate once issued.
pub async fn request(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("{:?} is not a request id", id.as_str())))?;
    let (certs, ca) = (state.certs.clone(), state.ca.clone());
    let found = web::block(move || -> Result<_, ca_core::store::StoreError> {
        let Some(row) = certs.request(id)? else {
            return Ok(None);
        };
        let cert = match &row.serial {
            Some(s) => certs.certificate(s)?.and_then(|c| c.der),
            None => None,
        };
        let void = ca.void_approvals(&row)?;
        Ok(Some((row, cert, void)))
    })
    .await??;
    let (row, der, void): (RequestRow, Option<Vec<u8>>, Vec<(String, String)>) = found
        .filter(|(r, _, _)| !auth.own_only() || r.requester == auth.token.name)
        .ok_or_else(|| ApiError::not_found(format!("no request {id}")))?;
    let certificate = der
        .as_deref()
        .map(|d| {
            SignedCert::from_der(d)
                .map_err(|e| ApiError::server(ca_core::error::ErrorKind::Internal, &e))
        })
        .transpose()?
        .map(|c| pem(&c))
        .transpose()?;
    Ok(HttpResponse::Ok().json(RequestBody {
        id: row.id,
        status: issuance::effective_request_status(&row, SystemTime::now()),
        profile: row.profile,
        requester: row.requester,
        subject: row.subject,
        sans: row.sans,
        approvals_needed: row.approvals_needed,
        approvals_valid: row.approvals.len().saturating_sub(void.len()),
        approvals: row
            .approvals
            .iter()
            .map(|a| {
                let why = void
                    .iter()
                    .find(|(o, _)| *o == a.officer)
                    .map(|(_, w)| w.clone());
                ApprovalBody {
                    officer: a.officer.clone(),
                    at: humantime(a.at),
                    counts: why.is_none(),
                    void_reason: why,
                }
            })
            .collect(),
        created_at: humantime(row.created_at),
        expires_at: humantime(row.expires_at),
        reason: row.reason,
        serial: row.serial.map(|s| s.to_string()),
        certificate,
    }))
}
