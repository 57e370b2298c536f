//! The admin UI under `/ui`: server-rendered HTML (askama), no JavaScript, a session cookie.
//!
//! Every route takes a [`session::SignedIn`] (or is the sign-in page itself), so none can be
//! reached without a session; each handler then states the roles it needs. Every response
//! of the scope carries the security headers of [`security_headers`]; every state-changing
//! form carries an anti-CSRF token that its handler checks before anything else.

pub mod acme;
pub mod admin;
pub mod audit;
pub mod bootstrap;
pub mod ca;
pub mod certs;
pub mod dashboard;
pub mod login;
pub mod requests;
pub mod revoke;
pub mod session;
pub mod submit;
pub mod tokens;
pub mod views;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpResponse, ResponseError, web};
use askama::Template;
use ca_core::error::ErrorKind;
use ca_core::users::UserStore;

use crate::http::state::AppState;

/// The UI's path prefix.
pub const PREFIX: &str = "/ui";

/// The style sheet, embedded in the binary.
const CSS: &str = include_str!("../../../static/app.css");

/// Content-Security-Policy for every UI response: nothing but our own style sheet and forms
/// posting back to us; no script at all, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes, mounted by [`crate::configure`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(PREFIX)
            .wrap(security_headers())
            .app_data(
                web::FormConfig::default()
                    .limit(crate::MAX_BODY)
                    .error_handler(|e, _| UiError::Invalid(format!("invalid form: {e}")).into()),
            )
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| UiError::Invalid(format!("invalid query: {e}")).into()),
            )
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| UiError::NotFound(format!("no such page: {e}")).into()),
            )
            .route("/static/app.css", web::get().to(css))
            .service(
                web::resource("/login")
                    .route(web::get().to(login::login_form))
                    .route(web::post().to(login::login)),
            )
            .route("/logout", web::post().to(login::logout))
            .service(
                web::resource("/password")
                    .route(web::get().to(login::password_form))
                    .route(web::post().to(login::change_password)),
            )
            .route("/", web::get().to(dashboard::dashboard))
            .route("", web::get().to(dashboard::dashboard))
            .route("/certs", web::get().to(certs::certificates))
            .route("/certs.csv", web::get().to(certs::certificates_csv))
            .route("/certs/{serial}", web::get().to(certs::certificate))
            .route("/certs/{serial}/revoke", web::post().to(revoke::revoke))
            .route(
                "/certs/{serial}/download/{format}",
                web::get().to(certs::download),
            )
            .route("/requests", web::get().to(requests::requests))
            .service(
                web::resource("/requests/new")
                    .route(web::get().to(submit::form))
                    .route(web::post().to(submit::submit)),
            )
            .route("/requests/{id}/approve", web::post().to(requests::approve))
            .route("/requests/{id}/reject", web::post().to(requests::reject))
            .route(
                "/operations/{id}/approve",
                web::post().to(requests::approve_operation),
            )
            .route(
                "/operations/{id}/reject",
                web::post().to(requests::reject_operation),
            )
            .route("/audit", web::get().to(audit::audit_log))
            .route("/ca", web::get().to(ca::ca))
            .route("/policies", web::get().to(ca::policies))
            .service(
                web::resource("/users")
                    .route(web::get().to(admin::users))
                    .route(web::post().to(admin::create_user)),
            )
            .route("/users/{name}/{action}", web::post().to(admin::change_user))
            .service(
                web::resource("/tokens")
                    .route(web::get().to(tokens::tokens))
                    .route(web::post().to(tokens::create)),
            )
            .route("/tokens/{name}/revoke", web::post().to(tokens::revoke))
            .route("/acme", web::get().to(acme::acme))
            .route("/acme/eab", web::post().to(acme::create_eab))
            .route("/acme/eab/{name}/revoke", web::post().to(acme::revoke_eab))
            .default_service(web::to(not_found)),
    );
}

/// The headers every UI response carries (added unless a handler set its own).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::CACHE_CONTROL, "no-store"))
        .add(("cross-origin-opener-policy", "same-origin"))
}

async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(CSS)
}

async fn not_found() -> Result<HttpResponse, UiError> {
    Err(UiError::NotFound("no such page".into()))
}

/// The users and sessions. The database that holds the CA's tables holds them too.
pub fn users(state: &AppState) -> Arc<dyn UserStore> {
    state.users.clone()
}

/// Renders `page` as a 200 HTML response.
///
/// Fails only if the template fails, which is a bug.
pub fn render(page: &impl Template) -> Result<HttpResponse, UiError> {
    render_status(StatusCode::OK, page)
}

pub(crate) fn render_status(
    status: StatusCode,
    page: &impl Template,
) -> Result<HttpResponse, UiError> {
    let html = page
        .render()
        .map_err(|e| UiError::server(ErrorKind::Internal, &e))?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// A 303 to `to` (after a form, or to the sign-in page).
pub fn see_other(to: &str) -> HttpResponse {
    let mut res = HttpResponse::SeeOther().finish();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// A failed UI request, shown as a page (or a redirect to the sign-in page).
#[derive(Debug)]
pub enum UiError {
    /// No session, or it has ended: go to the sign-in page.
    SignIn,
    /// The session must choose a new password first.
    ChangePassword,
    /// 400.
    Invalid(String),
    /// 403: the user's roles do not allow this, or a CSRF token is missing or wrong.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 409: the state does not allow it (already decided...).
    Conflict(String),
    /// 429: too much at once (sign-ins); try again shortly.
    Busy(String),
    /// 500 or 503; the details were logged.
    Server(StatusCode),
}

impl UiError {
    /// A 5xx whose cause is logged with the request id, never shown.
    pub fn server(kind: ErrorKind, what: &dyn std::fmt::Display) -> Self {
        tracing::error!(request_id = %crate::http::error::request_id(), error = %what, "ui request failed");
        UiError::Server(if kind == ErrorKind::Unavailable {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        })
    }

    fn from_kind(kind: ErrorKind, what: &dyn std::fmt::Display) -> Self {
        match kind {
            ErrorKind::Invalid => UiError::Invalid(what.to_string()),
            ErrorKind::Rejected => UiError::Forbidden(what.to_string()),
            ErrorKind::NotFound => UiError::NotFound(what.to_string()),
            ErrorKind::Conflict => UiError::Conflict(what.to_string()),
            ErrorKind::Unavailable | ErrorKind::Internal => UiError::server(kind, what),
        }
    }
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UiError::SignIn => f.write_str("sign in first"),
            UiError::ChangePassword => f.write_str("choose a new password first"),
            UiError::Invalid(m)
            | UiError::Forbidden(m)
            | UiError::NotFound(m)
            | UiError::Conflict(m)
            | UiError::Busy(m) => f.write_str(m),
            UiError::Server(s) => write!(f, "server error {s}"),
        }
    }
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            UiError::SignIn | UiError::ChangePassword => StatusCode::SEE_OTHER,
            UiError::Invalid(_) => StatusCode::BAD_REQUEST,
            UiError::Forbidden(_) => StatusCode::FORBIDDEN,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            UiError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            UiError::Server(s) => *s,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            UiError::SignIn => return see_other(&format!("{PREFIX}/login")),
            UiError::ChangePassword => return see_other(&format!("{PREFIX}/password")),
            _ => {}
        }
        let status = self.status_code();
        let detail = match self {
            UiError::Server(s) if *s == StatusCode::SERVICE_UNAVAILABLE => {
                "A service the CA depends on is unavailable; try again later.".to_owned()
            }
            UiError::Server(_) => "Internal error.".to_owned(),
            other => other.to_string(),
        };
        let page = views::ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail,
            request_id: crate::http::error::request_id(),
        };
        render_status(status, &page).unwrap_or_else(|_| {
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(status.to_string())
        })
    }
}

impl From<ca_core::store::StoreError> for UiError {
    fn from(e: ca_core::store::StoreError) -> Self {
        Self::from_kind(e.kind(), &e)
    }
}

impl From<ca_core::users::UserError> for UiError {
    fn from(e: ca_core::users::UserError) -> Self {
        Self::from_kind(e.kind(), &e)
    }
}

impl From<ca_core::issuance::IssueError> for UiError {
    fn from(e: ca_core::issuance::IssueError) -> Self {
        Self::from_kind(e.kind(), &e)
    }
}

impl From<ca_core::revocation::RevocationError> for UiError {
    fn from(e: ca_core::revocation::RevocationError) -> Self {
        Self::from_kind(e.kind(), &e)
    }
}

impl From<actix_web::error::BlockingError> for UiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::server(ErrorKind::Unavailable, &e)
    }
}
