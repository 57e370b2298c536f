//! Bearer-token authentication for `/api`: every API handler takes an [`Auth`], so no route
//! can be reached without a usable token. The token is hashed at once and never logged.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use ca_core::apitoken::{ApiToken, Role};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// What every token starts with, so that one found in a log or a repository is recognisable.
pub const TOKEN_PREFIX: &str = "kh_";

/// A new token: the prefix and 256 random bits as hex.
///
/// Fails if the system's random source fails.
pub fn generate_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// The SHA-256 of a token, the only form that is stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

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
            let tokens = state.tokens.clone();
            let found = web::block(move || tokens.token_by_hash(&hash)).await??;
            match found {
                Some(token) if token.usable(SystemTime::now()) => Ok(Auth { token, source }),
                // One answer for unknown, revoked and expired: nothing to probe for.
                _ => Err(ApiError::unauthenticated(
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
    fn tokens_are_256_random_bits_with_a_prefix_and_hash_to_sha256() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_others_are_refused() {
        assert_eq!(bearer("Bearer kh_1"), Some("kh_1"));
        assert_eq!(bearer("bearer  kh_1 "), Some("kh_1"));
        assert_eq!(bearer("Basic kh_1"), None);
        assert_eq!(bearer("kh_1"), None);
    }
}
