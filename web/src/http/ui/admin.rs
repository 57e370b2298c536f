//! `/ui/users`: administrators list, add, disable, enable users and reset their passwords.
//! One-time passwords appear once, in the response to the form that made them (never in a
//! URL, a log or a redirect).

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use ca_core::users::{self, Role, User, UserError};
use serde::Deserialize;

use super::session::SignedIn;
use super::views::{Hidden, Layout, UserRow, UsersPage};
use super::{PREFIX, UiError, render_status, see_other};
use crate::http::state::AppState;
use crate::text::humantime;

fn row(u: &User, me: &str, now: SystemTime) -> UserRow {
    UserRow {
        name: u.name.clone(),
        roles: u.roles_text(),
        state: u.state(now),
        disabled: u.disabled,
        created_at: humantime(u.created_at),
        created_by: u.created_by.clone(),
        is_self: u.name == me,
    }
}

/// The users page; a one-time password, if given, appears once (the officer who completes
/// a `reset_officer` quorum sees it here too).
pub(super) async fn page(
    state: &AppState,
    s: &SignedIn,
    status: StatusCode,
    notice: Option<String>,
    one_time: Option<(String, Hidden)>,
    error: Option<String>,
) -> Result<HttpResponse, UiError> {
    let store = super::users(state);
    let all = web::block(move || store.users()).await??;
    let now = SystemTime::now();
    render_status(
        status,
        &UsersPage {
            layout: Layout::new(s, "users"),
            rows: all.iter().map(|u| row(u, &s.user.name, now)).collect(),
            notice,
            one_time,
            error,
        },
    )
}

/// `GET /ui/users` query.
#[derive(Debug, Deserialize)]
pub struct UsersQuery {
    done: Option<String>,
    name: Option<String>,
}

/// `GET /ui/users` (admins).
pub async fn users(
    state: web::Data<AppState>,
    s: SignedIn,
    query: web::Query<UsersQuery>,
) -> Result<HttpResponse, UiError> {
    s.require(&[Role::Admin])?;
    let q = query.into_inner();
    let notice = match (q.done.as_deref(), q.name) {
        (Some("disable"), Some(n)) if users::valid_name(&n) => {
            Some(format!("{n} is disabled; their sessions have ended."))
        }
        (Some("enable"), Some(n)) if users::valid_name(&n) => Some(format!("{n} is enabled.")),
        _ => None,
    };
    page(&state, &s, StatusCode::OK, notice, None, None).await
}

/// The add-user form: a name and one checkbox per role.
#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    csrf: Hidden,
    #[serde(default)]
    name: String,
    admin: Option<String>,
    officer: Option<String>,
    auditor: Option<String>,
    requester: Option<String>,
}

/// `POST /ui/users` (admins): creates the user and shows their one-time password once.
pub async fn create_user(
    state: web::Data<AppState>,
    s: SignedIn,
    form: web::Form<NewUserForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Admin])?;
    let f = form.into_inner();
    let roles: Vec<Role> = [
        (Role::Admin, f.admin.is_some()),
        (Role::Officer, f.officer.is_some()),
        (Role::Auditor, f.auditor.is_some()),
        (Role::Requester, f.requester.is_some()),
    ]
    .into_iter()
    .filter_map(|(r, on)| on.then_some(r))
    .collect();
    let roles_shown = roles.clone();
    let store = super::users(&state);
    let (db, quorum) = (state.operations.clone(), state.quorum);
    let (name, actor, src) = (
        f.name.trim().to_owned(),
        s.user.name.clone(),
        s.source.clone(),
    );
    let n = name.clone();
    let made = web::block(move || {
        if roles.is_empty() {
            return Err(UserError::Invalid("choose at least one role".into()));
        }
        ca_core::quorum::create_user(
            store.as_ref(),
            db.as_ref(),
            &quorum,
            &n,
            &roles,
            &actor,
            &src,
            std::time::SystemTime::now(),
        )
    })
    .await?;
    match made {
        Ok((password, pending)) => {
            let shown = (name.clone(), Hidden(password.as_str().to_owned()));
            let needed = ca_core::quorum::creation_quorum(&quorum, &roles_shown).map_or(0, |q| q.1);
            let notice = Some(match pending {
                None => format!("Created {name}."),
                Some(id) => format!(
                    "Created {name}, waiting for {needed} officers to approve (operation {id}): \
                     the account cannot sign in before."
                ),
            });
            page(&state, &s, StatusCode::OK, notice, Some(shown), None).await
        }
        Err(e @ UserError::Invalid(_)) => {
            page(
                &state,
                &s,
                StatusCode::BAD_REQUEST,
                None,
                None,
                Some(e.to_string()),
            )
            .await
        }
        Err(e) if e.kind() == ca_core::error::ErrorKind::Conflict => {
            page(
                &state,
                &s,
                StatusCode::CONFLICT,
                None,
                None,
                Some(e.to_string()),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// A form that only carries the anti-CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: Hidden,
}

/// `POST /ui/users/{name}/{disable|enable|reset-password}` (admins; never disabling
/// oneself, so an administrator cannot lock the last one out by a slip).
pub async fn change_user(
    state: web::Data<AppState>,
    s: SignedIn,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Admin])?;
    let (name, action) = path.into_inner();
    let store = super::users(&state);
    let (actor, src) = (s.user.name.clone(), s.source.clone());
    match action.as_str() {
        "disable" | "enable" => {
            let disable = action == "disable";
            if disable && name == s.user.name {
                return Err(UiError::Invalid(
                    "you cannot disable yourself; ask another administrator".into(),
                ));
            }
            let n = name.clone();
            web::block(move || users::set_disabled(store.as_ref(), &n, disable, &actor, &src))
                .await??;
            Ok(see_other(&format!(
                "{PREFIX}/users?done={action}&name={}",
                super::views::query_value(&name)
            )))
        }
        "reset-password" => {
            let n = name.clone();
            let (ops, quorum) = (state.operations.clone(), state.quorum);
            let reset = web::block(move || {
                ca_core::quorum::reset_password(
                    store.as_ref(),
                    ops.as_ref(),
                    &quorum,
                    &n,
                    &actor,
                    &src,
                    SystemTime::now(),
                )
            })
            .await??;
            match reset {
                ca_core::quorum::Reset::Done(password) => {
                    let notice = Some(format!(
                        "{name} has a new one-time password; their sessions have ended."
                    ));
                    let shown = (name, Hidden(password.expose().to_owned()));
                    page(&state, &s, StatusCode::OK, notice, Some(shown), None).await
                }
                ca_core::quorum::Reset::Pending(id) => {
                    let notice = Some(format!(
                        "{name} is an officer: the reset waits for {} officers to approve \
                         operation {id}; the officer who completes it gets the one-time \
                         password.",
                        quorum.reset_officer
                    ));
                    page(&state, &s, StatusCode::ACCEPTED, notice, None, None).await
                }
            }
        }
        _ => Err(UiError::NotFound(format!("no user action {action:?}"))),
    }
}
