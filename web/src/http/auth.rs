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

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let source = req
            .peer_addr()
            .map_or_else(|| "http".to_owned(), |a| a.ip().to_string());
        // Method and path, never the query string (it may hold search terms).
        let route = format!("{} {}", req.method(), req.path());
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .filter(|t| t.starts_with(TOKEN_PREFIX))
            .map(token_hash);
        Box::pin(async move {
            let Some(hash) = presented else {
                return Err(ApiError::unauthenticated(
                    "send an API token: Authorization: Bearer kh_... (keyhold tokens create)",
                ));
            };
            let Some(state) = state else {
                return Err(ApiError::server(
                    ca_core::error::ErrorKind::Internal,
                    &"no application state",
                ));
            };
            let (tokens, uses, store, metrics) = (
                state.tokens.clone(),
                state.token_uses.clone(),
                state.audit_log.clone(),
                state.metrics.clone(),
            );
            let where_ = source.clone();
            let found = web::block(move || -> Result<_, ApiError> {
                let started = Instant::now();
                let found = tokens.token_by_hash(&hash);
                metrics.database("token_lookup", started.elapsed());
                let found = found?.filter(|t| t.usable(SystemTime::now()));
                if let Some(token) = &found
                    && uses.first_this_minute(&token.name, &where_)
                {
                    let event = AuditEvent::new(
                        Action::TokenUsed,
                        &token.name,
                        &where_,
                        format!("token:{}", token.name),
                    )
                    .with("request", &route);
                    store.audit_ordered(&[event])?;
                }
                Ok(found)
            })
            .await??;
            match found {
                Some(token) => Ok(Auth { token, source }),
                // One answer for unknown, revoked and expired: nothing to probe for.
                None => Err(ApiError::unauthenticated(
                    "the API token is unknown, revoked or expired",
                )),
            }
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
