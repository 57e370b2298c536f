//! API tokens: who may call the HTTP API, with which role, for which profiles.
//!
//! Invariant: only the SHA-256 of a token is ever stored or handed to a [`TokenStore`]; the
//! token itself exists once, when it is created, and is shown to its creator alone.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::audit::{Action, AuditEvent};
use crate::error::StoreError;

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

/// The longest a token may live: ten years. Longer would outlive any key or person it
/// stands for; a token with no expiry is asked for explicitly.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3_650 * 86_400);

/// Whether `name` is acceptable for a principal (a user or an API token): 1 to 64 of
/// `A-Z a-z 0-9 - _ .`, so it reads the same in the audit log, a URL and a shell.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A token to create: the one set of rules the CLI and the UI both apply.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    /// Its unique name (1 to 64 of A-Z a-z 0-9 - _ .).
    pub name: &'a str,
    /// Its role, as typed (`requester`, `officer`, `auditor`, `admin`).
    pub role: &'a str,
    /// Profiles it may request (empty entries ignored); none means every profile.
    pub profiles: &'a [String],
    /// How long it lives; `None`: until revoked.
    pub lifetime: Option<Duration>,
    /// Who creates it, for the record and the audit log.
    pub actor: &'a str,
    /// From where (`cli`, an IP address).
    pub source: &'a str,
}

/// Why a token was not created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The request is not acceptable; nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// No token could be made.
    #[error(transparent)]
    Random(#[from] RandomFailed),
    /// The store refused (a name in use: `Conflict`) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TokenError {
    /// The broad kind, for exit codes and HTTP statuses.
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            TokenError::Invalid(_) => crate::error::ErrorKind::Invalid,
            TokenError::Random(_) => crate::error::ErrorKind::Internal,
            TokenError::Store(e) => e.kind(),
        }
    }
}

/// The requester recorded for the certificates Keyhold issues to its own HTTPS listener.
pub const OWN_SERVER_REQUESTER: &str = "keyhold-server";

/// Names no token may take: the server's own requester (its HTTPS certificates), and the
/// actors the audit log uses for the system and for unauthenticated callers.
pub const RESERVED_NAMES: [&str; 3] = [OWN_SERVER_REQUESTER, "system", "anonymous"];

/// Creates an API token: checks the request against one set of rules (a valid, unused name,
/// a known role, profiles among `known_profiles`, a lifetime of at most [`MAX_LIFETIME`]),
/// records its hash with its audit entry in one transaction, and returns the token itself,
/// which exists nowhere else: show it once.
///
/// Fails with [`TokenError::Invalid`] naming what is wrong, or the store's `Conflict` for a
/// name in use; nothing is written then.
pub fn create_token(
    store: &dyn TokenStore,
    request: &TokenRequest<'_>,
    known_profiles: &[&str],
    now: SystemTime,
) -> Result<String, TokenError> {
    let name = request.name.trim();
    if !valid_name(name) {
        return Err(TokenError::Invalid(format!(
            "invalid token name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 - _ ."
        )));
    }
    // A token's name is the principal its requests act as: never one of Keyhold's own.
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(TokenError::Invalid(format!(
            "token name {name:?} is reserved (Keyhold's own principals: {})",
            RESERVED_NAMES.join(", ")
        )));
    }
    let role = Role::parse(request.role.trim()).ok_or_else(|| {
        TokenError::Invalid(format!(
            "unknown role {:?} (requester, officer, auditor, admin)",
            request.role
        ))
    })?;
    let profiles: Vec<String> = request
        .profiles
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(p) = profiles
        .iter()
        .find(|p| !known_profiles.contains(&p.as_str()))
    {
        return Err(TokenError::Invalid(format!("unknown profile {p:?}")));
    }
    if let Some(life) = request.lifetime
        && (life.is_zero() || life > MAX_LIFETIME)
    {
        return Err(TokenError::Invalid(
            "a token lives from a second to ten years (3650d)".into(),
        ));
    }
    let expires_at = request.lifetime.map(|d| now + d);
    let token = generate_token()?;
    let new = NewApiToken {
        name: name.to_owned(),
        hash: token_hash(&token),
        role,
        profiles: profiles.clone(),
        expires_at,
        created_by: request.actor.to_owned(),
    };
    let mut event = AuditEvent::new(
        Action::TokenCreated,
        request.actor,
        request.source,
        format!("token:{name}"),
    )
    .with("role", role.as_str())
    .with("profiles", profiles.join(","));
    if let Some(t) = expires_at {
        let when = crate::x509::x509_time(t).map_or_else(
            |_| "(out of range)".into(),
            |t| t.to_date_time().to_string(),
        );
        event = event.with("expires_at", when);
    }
    store.create_token(&new, &event)?;
    Ok(token)
}

/// Revokes the token `name` at once, with its audit entry.
///
/// Fails with `NotFound` if there is no such token, `Conflict` if it is already revoked.
pub fn revoke_token(
    store: &dyn TokenStore,
    name: &str,
    actor: &str,
    source: &str,
) -> Result<(), StoreError> {
    let event = AuditEvent::new(Action::TokenRevoked, actor, source, format!("token:{name}"));
    store.revoke_token(name, &event)
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

    /// Its state at `now`, as every interface shows it: `revoked`, `expired` or `active`.
    pub fn state(&self, now: SystemTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if !self.usable(now) {
            "expired"
        } else {
            "active"
        }
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
