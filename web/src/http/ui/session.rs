//! The session cookie and the signed-in user.
//!
//! The cookie holds a random session id (HttpOnly, SameSite=Strict, Path=/ui, Secure when
//! the connection is TLS); the database holds its SHA-256. Each request loads the session
//! and its user afresh, so disabling a user or changing their roles takes effect at once.
//! A session idle for [`ca_core::users::IDLE_TIMEOUT`] has ended.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use ca_core::error::ErrorKind;
use ca_core::users::{Role, SessionId, User};

use super::{PREFIX, UiError, users};
use crate::http::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kh_session";
/// The sign-in form's anti-CSRF cookie (double submit: before sign-in there is no session).
pub const LOGIN_COOKIE: &str = "kh_login";
/// A session's last use is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The value of cookie `name` in the request, if any.
pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// Adds a `Set-Cookie` for `name=value` (HttpOnly, SameSite=Strict, Path=/ui, Secure on TLS);
/// `max_age` 0 deletes it. Values are hex, so need no quoting.
pub fn set_cookie(
    res: &mut HttpResponse,
    req: &HttpRequest,
    name: &str,
    value: &str,
    max_age: Option<u64>,
) {
    let mut c = format!("{name}={value}; Path={PREFIX}; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if req.app_config().secure() {
        c.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Where the request came from, for the audit log.
pub fn source(req: &HttpRequest) -> String {
    req.peer_addr()
        .map_or_else(|| "http".to_owned(), |a| a.ip().to_string())
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A request with a live session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The user, as stored now.
    pub user: User,
    /// The session's id (for its CSRF token and for sign-out).
    pub id: SessionId,
    /// Where the request came from.
    pub source: String,
}

impl SignedIn {
    /// The token every state-changing form of this session carries.
    pub fn csrf(&self) -> String {
        self.id.csrf_token()
    }

    /// Fails with 403 unless `presented` is this session's CSRF token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), UiError> {
        if presented.is_empty() {
            return Err(UiError::Forbidden(
                "the form carries no anti-CSRF token: reload the page and try again".into(),
            ));
        }
        if same_token(presented, &self.csrf()) {
            Ok(())
        } else {
            Err(UiError::Forbidden(
                "the form's anti-CSRF token does not match this session: reload the page and try again"
                    .into(),
            ))
        }
    }

    /// Fails with 403 unless the user holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), UiError> {
        if self.user.has_any(roles) {
            Ok(())
        } else {
            let need: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(UiError::Forbidden(format!(
                "this page needs the {} role; you hold {}",
                need.join(" or "),
                self.user.roles_text()
            )))
        }
    }

    /// Whether the user may see only what they requested themselves.
    pub fn own_only(&self) -> bool {
        !self
            .user
            .has_any(&[Role::Admin, Role::Officer, Role::Auditor])
    }
}

/// Like [`SignedIn`], but also for a session that must change its password first (the
/// password page itself).
#[derive(Debug, Clone)]
pub struct AnySession(pub SignedIn);

impl FromRequest for SignedIn {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let fut = load(req);
        Box::pin(async move {
            let s = fut.await?;
            if s.user.must_change_password {
                return Err(UiError::ChangePassword);
            }
            Ok(s)
        })
    }
}

impl FromRequest for AnySession {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let fut = load(req);
        Box::pin(async move { fut.await.map(AnySession) })
    }
}

fn load(req: &HttpRequest) -> Pin<Box<dyn Future<Output = Result<SignedIn, UiError>>>> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let id = cookie(req, SESSION_COOKIE).and_then(|v| SessionId::from_cookie(&v));
    let source = source(req);
    Box::pin(async move {
        let Some(id) = id else {
            return Err(UiError::SignIn);
        };
        let Some(state) = state else {
            return Err(UiError::server(
                ErrorKind::Internal,
                &"no application state",
            ));
        };
        let store = users(&state);
        let hash = id.hash();
        let now = SystemTime::now();
        let user = web::block(move || -> Result<Option<User>, UiError> {
            let Some(session) = store.session(&hash)? else {
                return Ok(None);
            };
            if session.idle(now) || session.user.disabled {
                store.end_session(&hash, None)?;
                return Ok(None);
            }
            if session.last_seen + TOUCH_EVERY <= now {
                store.touch_session(&hash, now)?;
            }
            Ok(Some(session.user))
        })
        .await??;
        match user {
            Some(user) => Ok(SignedIn { user, id, source }),
            None => Err(UiError::SignIn),
        }
    })
}
