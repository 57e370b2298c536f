//! `/ui/requests/new`: a requester pastes a CSR and chooses a profile. The profile's policy
//! (in ca-core) decides: issued at once, recorded for approval, or refused with every reason.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use ca_core::issuance::{Channel, IssueError, Outcome, Submission};
use ca_core::users::Role;
use serde::Deserialize;

use super::session::SignedIn;
use super::views::{Layout, SubmitPage};
use super::{PREFIX, UiError, render_status, see_other};
use crate::http::state::AppState;

/// Profiles `s` may request from the web: not reserved to the ceremony CLI, and open to
/// one of the user's roles.
fn profiles(state: &AppState, s: &SignedIn) -> Vec<(String, String)> {
    let roles: Vec<&str> = s.user.roles.iter().map(|r| r.as_str()).collect();
    state
        .ca
        .profiles()
        .iter()
        .filter(|p| !p.cli_only())
        .filter(|p| {
            p.requester_roles()
                .iter()
                .any(|r| roles.contains(&r.as_str()))
        })
        .map(|p| (p.name.clone(), p.description().to_owned()))
        .collect()
}

fn page(
    state: &AppState,
    s: &SignedIn,
    status: StatusCode,
    profile: String,
    csr: String,
    errors: Vec<String>,
) -> Result<HttpResponse, UiError> {
    render_status(
        status,
        &SubmitPage {
            layout: Layout::new(s, "requests"),
            profiles: profiles(state, s),
            profile,
            csr,
            errors,
        },
    )
}

/// `GET /ui/requests/new` (requesters).
pub async fn form(state: web::Data<AppState>, s: SignedIn) -> Result<HttpResponse, UiError> {
    s.require(&[Role::Requester])?;
    page(
        &state,
        &s,
        StatusCode::OK,
        String::new(),
        String::new(),
        Vec::new(),
    )
}

/// The submit form.
#[derive(Debug, Deserialize)]
pub struct SubmitForm {
    #[serde(default)]
    csrf: super::views::Hidden,
    #[serde(default)]
    profile: String,
    #[serde(default)]
    csr: String,
}

/// `POST /ui/requests/new` (requesters): issued goes to the certificate, pending to the
/// queue, refused back to the form with every reason.
pub async fn submit(
    state: web::Data<AppState>,
    s: SignedIn,
    form: web::Form<SubmitForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Requester])?;
    let f = form.into_inner();
    if !profiles(&state, &s).iter().any(|(p, _)| *p == f.profile) {
        return page(
            &state,
            &s,
            StatusCode::FORBIDDEN,
            f.profile.clone(),
            f.csr,
            vec![format!("you may not request profile {:?}", f.profile)],
        );
    }
    let ca = state.ca.clone();
    let (requester, src) = (s.user.requester(), s.source.clone());
    let (profile, csr) = (f.profile.clone(), f.csr.clone());
    let outcome = web::block(move || {
        ca.submit(
            &Submission {
                profile: &profile,
                csr: csr.trim().as_bytes(),
                requester: &requester,
                source: &src,
                channel: Channel::Api,
            },
            SystemTime::now(),
        )
    })
    .await?;
    match outcome {
        Ok(Outcome::Issued(issued)) => Ok(see_other(&format!("{PREFIX}/certs/{}", issued.serial))),
        Ok(Outcome::Pending { request_id, .. }) => Ok(see_other(&format!(
            "{PREFIX}/requests?done=submitted&id={request_id}"
        ))),
        Ok(Outcome::Rejected(reasons)) => page(
            &state,
            &s,
            StatusCode::UNPROCESSABLE_ENTITY,
            f.profile,
            f.csr,
            reasons,
        ),
        Err(e @ (IssueError::Csr(_) | IssueError::UnknownProfile { .. })) => page(
            &state,
            &s,
            StatusCode::BAD_REQUEST,
            f.profile,
            f.csr,
            vec![e.to_string()],
        ),
        Err(e) => Err(e.into()),
    }
}
