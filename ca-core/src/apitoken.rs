//! API tokens: who may call the HTTP API, with which role, for which profiles.
//!
//! Invariant: only the SHA-256 of a token is ever stored or handed to a [`TokenStore`]; the
//! token itself exists once, when it is created, and is shown to its creator alone.

use std::fmt;
use std::time::SystemTime;

use crate::audit::AuditEvent;
use crate::store::StoreError;

/// What every token starts with, so that one found in a log or a repository is recognisable.
pub const TOKEN_PREFIX: &str = "kh_";

/// The system's random source failed: no token could be made.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomFailed;

/// A new token: the prefix and 256 random bits as hex.
///
/// Fails if the system's random source fails.
pub fn generate_token() -> Result<String, RandomFailed> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomFailed)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// The SHA-256 of a token, the only form that is stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// What a token's holder may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Submits certificate requests and reads its own.
    Requester,
    /// Reads every certificate and request (and decides on requests in a later release).
    Officer,
    /// Reads every certificate and request; changes nothing.
    Auditor,
    /// Everything the API offers.
    Admin,
}

impl Role {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Officer => "officer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [Role::Requester, Role::Officer, Role::Auditor, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token to record. Its `Debug` leaves the hash out: with it, a guess of the token could be
/// checked offline.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// Unique name, also the requester name of everything done with it.
    pub name: String,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Its role.
    pub role: Role,
    /// Profiles it may request; empty means every profile its role may use.
    pub profiles: Vec<String>,
    /// After this it is refused; `None` never expires.
    pub expires_at: Option<SystemTime>,
    /// Who created it.
    pub created_by: String,
}

impl std::fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("profiles", &self.profiles)
            .field("expires_at", &self.expires_at)
            .field("created_by", &self.created_by)
            .finish_non_exhaustive()
    }
}

/// A recorded token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Profiles it may request; empty means all.
    pub profiles: Vec<String>,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it expires.
    pub expires_at: Option<SystemTime>,
    /// When it was revoked.
    pub revoked_at: Option<SystemTime>,
    /// Who created it.
    pub created_by: String,
}

impl ApiToken {
    /// Whether it may be used at `now`: not revoked, not expired.
    pub fn usable(&self, now: SystemTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }

    /// Whether it may request certificates under `profile`.
    pub fn allows_profile(&self, profile: &str) -> bool {
        self.profiles.is_empty() || self.profiles.iter().any(|p| p == profile)
    }
}

/// Storage of API tokens, implemented by the `db` crate. Kept apart from [`crate::store::Store`]
/// so that only the token commands and the HTTP authentication depend on it.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// Records a token and appends `event`, in one transaction.
    ///
    /// Fails with `Conflict` if a token of that name exists (even revoked: names are never
    /// reused, so the audit log stays unambiguous) or the hash is already recorded.
    fn create_token(&self, token: &NewApiToken, event: &AuditEvent) -> Result<(), StoreError>;

    /// Marks the token `name` revoked at the store's current time and appends `event`, in one
    /// transaction.
    ///
    /// Fails with `NotFound` if there is no such token, `Conflict` if it is already revoked.
    fn revoke_token(&self, name: &str, event: &AuditEvent) -> Result<(), StoreError>;

    /// Every token, by name.
    fn tokens(&self) -> Result<Vec<ApiToken>, StoreError>;

    /// The token whose SHA-256 is `hash`, revoked or not.
    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError>;
}

#[cfg(test)]
mod tests {
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

    use super::*;

    #[test]
    fn a_new_tokens_debug_shows_no_hash() {
        let token = NewApiToken {
            name: "ci".into(),
            hash: [0xab; 32],
            role: Role::Requester,
            profiles: Vec::new(),
            expires_at: None,
            created_by: "admin".into(),
        };
        let shown = format!("{token:?}");
        assert!(shown.contains("\"ci\""), "{shown}");
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
    }
}
