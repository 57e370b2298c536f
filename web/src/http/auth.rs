//! Bearer-token authentication for `/api`: every API handler takes an [`Auth`], so no route
//! can be reached without a usable token. The token is hashed at once and never logged.

use std::future::Future;
use std::pin::Pin;

use std::time::{Instant, SystemTime};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use ca_core::apitoken::{ApiToken, Role, TOKEN_PREFIX, token_hash};
use ca_core::audit::{Action, AuditEvent};

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// The credentials of an `Authorization: Bearer ...` header (RFC 6750; the scheme name is
/// case-insensitive, RFC 9110 11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Its token's record.
    pub token: ApiToken,
    /// Where the call came from, for the audit log.
    pub source: String,
}

impl Auth {
    /// Fails with 403 unless the token's role is one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.token.role) {
            Ok(())
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "token {:?} has role {}; this needs {}",
                self.token.name,
                self.token.role,
                allowed.join(" or ")
            )))
        }
    }

    /// Whether the caller may only see what it requested itself.
    pub fn own_only(&self) -> bool {
        self.token.role == Role::Requester
    }
}

/// A bearer token as presented, hashed and not yet looked up: for a handler that looks it
/// up on the blocking thread it uses anyway ([`Presented::authenticate`]), which saves a
/// hop between threads per call. A request without a token is refused at once.
#[derive(Debug)]
pub struct Presented {
    hash: [u8; 32],
    source: String,
    route: String,
}

impl Presented {
    /// Looks the token up (blocking: call it off the async workers), and audits its first
    /// use this minute from this source.
    ///
    /// Fails with 401 if the token is unknown, revoked or expired.
    pub fn authenticate(self, state: &AppState) -> Result<Auth, ApiError> {
        let started = Instant::now();
        let found = state.tokens.token_by_hash(&self.hash);
        state.metrics.database("token_lookup", started.elapsed());
        let found = found?.filter(|t| t.usable(SystemTime::now()));
        let Some(token) = found else {
            // One answer for unknown, revoked and expired: nothing to probe for.
            return Err(ApiError::unauthenticated(
                "the API token is unknown, revoked or expired",
            ));
        };
        if state
            .token_uses
            .first_this_minute(&token.name, &self.source)
        {
            let event = AuditEvent::new(
                Action::TokenUsed,
                &token.name,
                &self.source,
                format!("token:{}", token.name),
            )
            .with("request", &self.route);
            state.audit_log.audit_ordered(&[event])?;
        }
        Ok(Auth {
            token,
            source: self.source,
        })
    }
}

impl FromRequest for Presented {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let source = req
            .peer_addr()
            .map_or_else(|| "http".to_owned(), |a| a.ip().to_string());
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .filter(|t| t.starts_with(TOKEN_PREFIX))
            .map(token_hash);
        std::future::ready(match presented {
            Some(hash) => Ok(Presented {
                hash,
                source,
                // Method and path, never the query string (it may hold search terms).
                route: format!("{} {}", req.method(), req.path()),
            }),
            None => Err(ApiError::unauthenticated(
                "send an API token: Authorization: Bearer kh_... (keyhold tokens create)",
            )),
        })
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let presented = Presented::from_request(req, payload).into_inner();
        Box::pin(async move {
            let presented = presented?;
            let Some(state) = state else {
                return Err(ApiError::server(
                    ca_core::error::ErrorKind::Internal,
                    &"no application state",
                ));
            };
            web::block(move || presented.authenticate(&state)).await?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_others_are_refused() {
        assert_eq!(bearer("Bearer kh_1"), Some("kh_1"));
        assert_eq!(bearer("bearer  kh_1 "), Some("kh_1"));
        assert_eq!(bearer("Basic kh_1"), None);
        assert_eq!(bearer("kh_1"), None);
    }
}
