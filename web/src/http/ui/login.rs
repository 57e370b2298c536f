//! Sign-in, sign-out and password change.
//!
//! Handlers parse, check the session's rights (and the anti-CSRF token on POST), call one
//! core service on the blocking pool, and render; the rules live in ca-core.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::audit::{Action, AuditEvent};
use ca_core::users::{self, Login, Refusal, SessionId};
use serde::Deserialize;

use crate::http::state::AppState;
use crate::http::ui::session::{
    AnySession, LOGIN_COOKIE, SESSION_COOKIE, cookie, same_token, set_cookie, source,
};
use crate::http::ui::views::{Hidden, Layout, LoginPage, PasswordPage};
use crate::http::ui::{PREFIX, UiError, render, render_status, see_other};

/// The sign-in form and its anti-CSRF token. Its `Debug` shows the name only.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `GET /ui/login`.
pub async fn login_form(req: HttpRequest) -> Result<HttpResponse, UiError> {
    login_page(&req, String::new(), None, StatusCode::OK)
}

pub(super) fn login_page(
    req: &HttpRequest,
    name: String,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, UiError> {
    let token = SessionId::generate()?;
    let csrf = token.csrf_token();
    let mut res = render_status(
        status,
        &LoginPage {
            csrf: Hidden(csrf.clone()),
            name,
            error,
        },
    )?;
    set_cookie(&mut res, req, LOGIN_COOKIE, &csrf, Some(3600));
    Ok(res)
}

/// Why a sign-in POST came from another site, if it did. The anti-CSRF cookie alone is a
/// double submit, which a page that can plant cookies for this host (a sibling subdomain, a
/// plain-HTTP answer on the path) could satisfy; the `Origin` and `Sec-Fetch-Site` headers
/// are set by the browser and no page can forge them. Requests without either (scripts,
/// old browsers) fall back to the cookie check alone.
fn cross_site(req: &HttpRequest) -> Option<String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // A sibling subdomain (`same-site`) is exactly the page that can plant cookies here.
    if let Some(site) = header("sec-fetch-site")
        && !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"))
    {
        return Some(format!(
            "the form was sent from another site (Sec-Fetch-Site: {site})"
        ));
    }
    let origin = header("origin")?;
    // `null` says nothing: browsers send it for any POST from a page whose referrer policy
    // is `no-referrer`, as Keyhold's pages are; Sec-Fetch-Site above has decided then.
    if origin == "null" {
        return None;
    }
    let host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    let ours = req.connection_info().host().to_owned();
    (!host.eq_ignore_ascii_case(&ours))
        .then(|| format!("the form was sent from {origin:?}, not from {ours}"))
}

/// `POST /ui/login`.
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, UiError> {
    let form = form.into_inner();
    if let Some(why) = cross_site(&req) {
        return Err(UiError::Forbidden(format!(
            "sign-in refused: {why}. Sign in from Keyhold's own sign-in page"
        )));
    }
    let expected = cookie(&req, LOGIN_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || expected.is_empty() || !same_token(&form.csrf, &expected) {
        return Err(UiError::Forbidden(
            "the sign-in form's anti-CSRF token is missing or stale: reload the sign-in page \
             (your browser must accept cookies from this site)"
                .into(),
        ));
    }
    // Each check costs an Argon2id hash (19 MiB, tens of ms) even for unknown names: a few
    // at a time in buffers allocated once, so a flood of sign-ins cannot grow memory or
    // exhaust the blocking pool that signing and the database share; and one at a time per
    // address and per name, so a flood from one place cannot crowd out everyone else.
    let mut ticket = match state
        .sign_ins
        .try_start(req.peer_addr().map(|a| a.ip()), &form.name)
    {
        Ok(t) => t,
        Err(crate::http::state::SignInBusy::Same) => {
            return Err(UiError::Busy(
                "a sign-in from your address or for this name is being checked: try again \
                 in a moment"
                    .into(),
            ));
        }
        Err(crate::http::state::SignInBusy::Full) => {
            return Err(UiError::Busy(
                "too many sign-ins at once: try again in a moment".into(),
            ));
        }
    };
    let id = SessionId::generate()?;
    let hash = id.hash();
    let store = super::users(&state);
    let src = source(&req);
    let name = form.name.clone();
    let outcome = web::block(move || {
        users::login_in(
            store.as_ref(),
            &form.name,
            &form.password,
            &hash,
            &src,
            SystemTime::now(),
            &mut ticket.buffer,
        )
    })
    .await??;
    match outcome {
        Login::Succeeded(user) => {
            let to = if user.must_change_password {
                format!("{PREFIX}/password")
            } else {
                format!("{PREFIX}/")
            };
            let mut res = see_other(&to);
            set_cookie(&mut res, &req, SESSION_COOKIE, id.expose(), None);
            set_cookie(&mut res, &req, LOGIN_COOKIE, "", Some(0));
            Ok(res)
        }
        Login::Refused(Refusal::AwaitingApproval(id)) => login_page(
            &req,
            name.chars().take(64).collect(),
            Some(format!(
                "This administrator account waits for officers to approve it (operation \
                 {id}: keyhold ops approve {id}); it cannot sign in before."
            )),
            StatusCode::FORBIDDEN,
        ),
        Login::Refused(_) => login_page(
            &req,
            name.chars().take(64).collect(),
            Some(
                "Sign-in failed: wrong user name or password, or the account is disabled or \
                 locked (for 15 minutes after 5 failures)."
                    .into(),
            ),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

/// A form that only carries the anti-CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: Hidden,
}

/// `POST /ui/logout`.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: AnySession,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    let s = session.0;
    s.check_csrf(&form.csrf.0)?;
    let store = super::users(&state);
    let event = AuditEvent::new(
        Action::Logout,
        &s.user.name,
        &s.source,
        format!("user:{}", s.user.name),
    );
    let hash = s.id.hash();
    web::block(move || store.end_session(&hash, Some(&event))).await??;
    let mut res = see_other(&format!("{PREFIX}/login"));
    set_cookie(&mut res, &req, SESSION_COOKIE, "", Some(0));
    Ok(res)
}

/// `GET /ui/password`.
pub async fn password_form(session: AnySession) -> Result<HttpResponse, UiError> {
    let s = session.0;
    render(&PasswordPage {
        forced: s.user.must_change_password,
        layout: Layout::new(&s, "password"),
        error: None,
    })
}

/// The password change form. Its `Debug` shows nothing of it.
#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: Hidden,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

impl std::fmt::Debug for PasswordForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordForm").finish_non_exhaustive()
    }
}

/// `POST /ui/password`.
pub async fn change_password(
    state: web::Data<AppState>,
    session: AnySession,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, UiError> {
    let s = session.0;
    s.check_csrf(&form.csrf.0)?;
    let form = form.into_inner();
    let again = |error: String| {
        render_status(
            StatusCode::BAD_REQUEST,
            &PasswordPage {
                forced: s.user.must_change_password,
                layout: Layout::new(&s, "password"),
                error: Some(error),
            },
        )
    };
    if form.new != form.confirm {
        return again("The two new passwords differ.".into());
    }
    let store = super::users(&state);
    let (user, keep, src) = (s.user.clone(), s.id.hash(), s.source.clone());
    let done = web::block(move || {
        users::change_password(store.as_ref(), &user, &form.current, &form.new, &keep, &src)
    })
    .await?;
    match done {
        Ok(()) => Ok(see_other(&format!("{PREFIX}/"))),
        Err(users::UserError::Invalid(why)) => again(why),
        Err(e) => Err(e.into()),
    }
}
