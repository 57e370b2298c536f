//! `POST /ui/certs/{serial}/revoke`: officers revoke any certificate; requesters their own,
//! never for cACompromise (ca-core's `revocation::revoke` enforces both).

use std::time::SystemTime;

use actix_web::{HttpResponse, web};
use ca_core::revocation::{Reason, RevokeRequest, Revoker};
use ca_core::store::{CertificateRow, Serial};
use ca_core::users::Role;
use serde::Deserialize;

use super::session::SignedIn;
use super::{PREFIX, UiError, see_other};
use crate::http::state::AppState;

/// Reasons offered, in the order shown (certificateHold and aACompromise are refused by
/// ca-core and never offered).
const OFFERED: [Reason; 7] = [
    Reason::Unspecified,
    Reason::KeyCompromise,
    Reason::Superseded,
    Reason::AffiliationChanged,
    Reason::CessationOfOperation,
    Reason::PrivilegeWithdrawn,
    Reason::CaCompromise,
];

/// How `s` may revoke: as an officer, as the certificate's requester, or not at all.
fn revoker<'a>(s: &'a SignedIn, requester: &str) -> Option<Revoker<'a>> {
    if s.user.has(Role::Officer) {
        Some(Revoker::Officer)
    } else if s.user.has(Role::Requester) && requester == s.user.name {
        Some(Revoker::Requester(&s.user.name))
    } else {
        None
    }
}

/// The reasons `s` may revoke `row` with; empty if they may not revoke it.
pub fn reasons_for(s: &SignedIn, row: &CertificateRow) -> Vec<&'static str> {
    match revoker(s, &row.requester) {
        None => Vec::new(),
        Some(Revoker::Officer) => OFFERED.iter().map(|r| r.as_str()).collect(),
        Some(Revoker::Requester(_)) => OFFERED
            .iter()
            .filter(|r| **r != Reason::CaCompromise)
            .map(|r| r.as_str())
            .collect(),
    }
}

/// The revoke form.
#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: super::views::Hidden,
    #[serde(default)]
    reason: String,
    confirm: Option<String>,
}

/// `POST /ui/certs/{serial}/revoke`.
pub async fn revoke(
    state: web::Data<AppState>,
    s: SignedIn,
    serial: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Officer, Role::Requester])?;
    let f = form.into_inner();
    if f.confirm.is_none() {
        return Err(UiError::Invalid(
            "tick the confirmation: revocation cannot be undone".into(),
        ));
    }
    let serial = Serial::parse(&serial).map_err(UiError::NotFound)?;
    let reason = Reason::parse(&f.reason)?;
    let certs = state.certs.clone();
    let app = state.clone();
    let user = s.clone();
    let sr = serial.clone();
    web::block(move || -> Result<(), UiError> {
        // A requester's own certificate only: someone else's looks like none at all.
        let row = certs
            .certificate(&sr)?
            .ok_or_else(|| UiError::NotFound(format!("no certificate with serial {sr}")))?;
        let Some(revoker) = revoker(&user, &row.requester) else {
            return Err(UiError::NotFound(format!(
                "no certificate with serial {sr}"
            )));
        };
        app.publisher.revoke(
            &RevokeRequest {
                serial: &sr,
                reason,
                invalidity_date: None,
                actor: &user.user.name,
                revoker,
                source: &user.source,
            },
            SystemTime::now(),
        )?;
        Ok(())
    })
    .await??;
    Ok(see_other(&format!("{PREFIX}/certs/{serial}?done=revoked")))
}
