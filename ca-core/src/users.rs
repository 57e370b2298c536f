//! People who sign in to the web UI, their roles, and their sessions.
//!
//! Invariants:
//! - a password exists in clear only while it is typed, hashed or shown once; the store
//!   holds its Argon2id hash (PHC string), and neither appears in `Debug` output;
//! - a session id exists only in the browser's cookie; the store holds its SHA-256;
//! - after [`MAX_FAILURES`] failed sign-ins in a row an account is locked for [`LOCKOUT`]
//!   (CA/Browser Forum Baseline Requirements 5.4 ask for a lockout after at most 5), and
//!   while it is locked no password is even checked;
//! - every sign-in, failure, lockout, sign-out and change to a user is audited, in the same
//!   transaction as the change.

use std::fmt;
use std::time::{Duration, SystemTime};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use crate::apitoken::Role;
use crate::audit::{Action, AuditEvent};
use crate::error::ErrorKind;
use crate::error::StoreError;

/// Failed sign-ins in a row that lock an account.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// A session unused for this long has ended.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, however busy.
pub const MAX_SESSION: Duration = Duration::from_secs(12 * 3600);
/// The shortest password a user may choose.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted (Argon2 takes any length; this bounds the work per try).
pub const MAX_PASSWORD_BYTES: usize = 1024;

mod memory;
pub use memory::{BLOCKS, Buffer, PasswordMemory};

/// Every role, in the order they are shown.
pub const ROLES: [Role; 4] = [Role::Admin, Role::Officer, Role::Auditor, Role::Requester];

/// An Argon2id password hash as a PHC string (`$argon2id$v=19$m=...`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Hashes `password` with Argon2id (OWASP's parameters: 19 MiB, 2 passes) and a random
    /// salt.
    ///
    /// Fails if the password is longer than [`MAX_PASSWORD_BYTES`] or the system's random
    /// source fails.
    pub fn new(password: &str) -> Result<Self, UserError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(UserError::Invalid(format!(
                "a password has at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt)
            .map_err(|_| UserError::Internal("the system random source failed".into()))?;
        let hash = argon2::Argon2::default()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map_err(|e| UserError::Internal(format!("argon2id: {e}")))?;
        Ok(PasswordHash(hash.to_string()))
    }

    /// A hash as stored.
    pub fn from_stored(phc: String) -> Self {
        PasswordHash(phc)
    }

    /// The PHC string, for the store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `password` matches. A hash that does not parse matches nothing.
    pub fn verify(&self, password: &str) -> bool {
        password.len() <= MAX_PASSWORD_BYTES
            && argon2::Argon2::default()
                .verify_password(password.as_bytes(), self.0.as_str())
                .is_ok()
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

/// A user as stored (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Unique name, also the actor name in the audit log.
    pub name: String,
    /// Roles held, in [`ROLES`] order.
    pub roles: Vec<Role>,
    /// A disabled user cannot sign in and their sessions have ended.
    pub disabled: bool,
    /// The next sign-in must choose a new password first (set for one-time passwords).
    pub must_change_password: bool,
    /// Failed sign-ins since the last success or lockout.
    pub failed_logins: u32,
    /// Locked until then.
    pub locked_until: Option<SystemTime>,
    /// When the user was created.
    pub created_at: SystemTime,
    /// Who created them.
    pub created_by: String,
    /// Since when the officer role counts for approvals: set when an officer is created
    /// without a quorum (`keyhold init --officer`, or `[quorum] grant_officer = 0`) or when
    /// the quorum that grants the role is reached; `None` while it waits, and for users who
    /// are no officers. Approvals count only for what was made after it.
    pub officer_since: Option<SystemTime>,
    /// When someone else last reset this user's credentials (a one-time password someone
    /// else saw). Approvals count only for what was made after it.
    pub credentials_reset_at: Option<SystemTime>,
}

impl User {
    /// Whether the user holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the user holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// Whether the account is locked at `now`.
    pub fn is_locked(&self, now: SystemTime) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    /// Its state at `now`, as every interface shows it: `disabled`, `locked`, `new` (must
    /// change its one-time password) or `active`.
    pub fn state(&self, now: SystemTime) -> &'static str {
        if self.disabled {
            "disabled"
        } else if self.is_locked(now) {
            "locked"
        } else if self.must_change_password {
            "new"
        } else {
            "active"
        }
    }

    /// The roles as `admin,officer`.
    pub fn roles_text(&self) -> String {
        roles_text(&self.roles)
    }

    /// As ca-core's issuance sees a person.
    pub fn requester(&self) -> crate::policy::Requester {
        crate::policy::Requester {
            name: self.name.clone(),
            roles: self.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        }
    }
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Unique name.
    pub name: String,
    /// At least one role.
    pub roles: Vec<Role>,
    /// The password's hash.
    pub password: PasswordHash,
    /// Whether the first sign-in must change the password.
    pub must_change_password: bool,
    /// Who creates them.
    pub created_by: String,
}

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its user, as the user stands now.
    pub user: User,
    /// When the session began.
    pub created_at: SystemTime,
    /// When it was last used.
    pub last_seen: SystemTime,
}

impl Session {
    /// Whether it has ended at `now`: idle for [`IDLE_TIMEOUT`], or older than
    /// [`MAX_SESSION`].
    pub fn idle(&self, now: SystemTime) -> bool {
        self.last_seen + IDLE_TIMEOUT <= now || self.created_at + MAX_SESSION <= now
    }
}

/// A session id: 256 random bits. Only its SHA-256 ([`SessionId::hash`]) is stored; its
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(Zeroizing<String>);

impl SessionId {
    /// A new random id.
    ///
    /// Fails if the system's random source fails.
    pub fn generate() -> Result<Self, UserError> {
        Ok(SessionId(Zeroizing::new(random_hex(32)?)))
    }

    /// An id as presented by a browser.
    pub fn from_cookie(value: &str) -> Option<Self> {
        (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| SessionId(Zeroizing::new(value.to_ascii_lowercase())))
    }

    /// The cookie value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The session's anti-CSRF token: derived from the id under its own domain tag, so it
    /// needs no storage, differs per session, and reveals nothing about the id.
    pub fn csrf_token(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"keyhold-csrf-v1\0");
        h.update(self.0.as_bytes());
        hex::encode(h.finalize())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The input is not acceptable (a name, role or password).
    #[error("{0}")]
    Invalid(String),
    /// The storage failed, or the user does not exist or exists already.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Randomness or hashing failed.
    #[error("{0}")]
    Internal(String),
}

impl UserError {
    /// The broad kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            UserError::Invalid(_) => ErrorKind::Invalid,
            UserError::Store(e) => e.kind(),
            UserError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Storage of users and sessions, implemented by the `db` crate. Every change appends its
/// audit events in the same transaction.
pub trait UserStore: Send + Sync + fmt::Debug {
    /// Records a user and appends `event`.
    ///
    /// Fails with `Conflict` if the name is taken.
    fn create_user(&self, user: &NewUser, event: &AuditEvent) -> Result<(), StoreError>;

    /// Every user, by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;

    /// One user.
    fn user(&self, name: &str) -> Result<Option<User>, StoreError>;

    /// One user's password hash.
    fn password_hash(&self, name: &str) -> Result<Option<PasswordHash>, StoreError>;

    /// Sets the password hash and `must_change`, clears the failure counter and lock, ends
    /// every session of the user except `keep` (a session hash), and appends `event`. With
    /// `must_change` (a one-time password someone else has seen: a reset) it also records
    /// the time as the user's `credentials_reset_at`.
    ///
    /// Fails with `NotFound` if there is no such user.
    fn set_password(
        &self,
        name: &str,
        hash: &PasswordHash,
        must_change: bool,
        keep: Option<[u8; 32]>,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The pending quorum operation (see [`crate::quorum`]) an administrator account waits
    /// for before it can sign in, if any.
    fn awaiting_approval(&self, name: &str) -> Result<Option<i64>, StoreError>;

    /// Disables (ending every session) or enables the user, appending `event`.
    ///
    /// Fails with `NotFound` if there is no such user, `Conflict` if it is already so.
    fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Appends `failed` for a sign-in refused at `now`. With `count`, also counts the failure
    /// against the user: when the count reaches [`MAX_FAILURES`] the account is locked until
    /// `now + LOCKOUT`, the count starts again and `locked` is appended too. For an unknown
    /// name only `failed` is appended. Returns whether this failure locked the account.
    fn login_failed(
        &self,
        name: &str,
        count: bool,
        now: SystemTime,
        failed: &AuditEvent,
        locked: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Clears the failure counter, records a session (by its id's hash) begun at `now`,
    /// removes sessions idle since before `now - idle`, and appends `event`.
    ///
    /// Fails with `NotFound` if there is no such user.
    fn login_succeeded(
        &self,
        name: &str,
        session: &[u8; 32],
        now: SystemTime,
        idle: Duration,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The session whose id hashes to `hash`, with its user.
    fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError>;

    /// Marks the session used at `now`.
    fn touch_session(&self, hash: &[u8; 32], now: SystemTime) -> Result<(), StoreError>;

    /// Removes the session (a no-op if it is gone) and appends `event` if given.
    fn end_session(&self, hash: &[u8; 32], event: Option<&AuditEvent>) -> Result<(), StoreError>;
}

/// Whether `name` is acceptable for a user: the same rule as for API tokens.
pub use crate::apitoken::valid_name;

/// Parses `admin,officer` into roles in [`ROLES`] order, without duplicates.
///
/// Fails naming an unknown role, or if none is given.
pub fn parse_roles(text: &str) -> Result<Vec<Role>, UserError> {
    let mut roles = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let role = Role::parse(part).ok_or_else(|| {
            UserError::Invalid(format!(
                "unknown role {part:?} (admin, officer, auditor, requester)"
            ))
        })?;
        roles.push(role);
    }
    let roles: Vec<Role> = ROLES.into_iter().filter(|r| roles.contains(r)).collect();
    if roles.is_empty() {
        return Err(UserError::Invalid(
            "give at least one role (admin, officer, auditor, requester)".into(),
        ));
    }
    Ok(roles)
}

/// Roles as `admin,officer`.
pub fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A one-time password: 20 characters from an alphabet without look-alikes (about 100 bits).
///
/// Fails if the system's random source fails.
pub fn one_time_password() -> Result<Zeroizing<String>, UserError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679";
    let mut bytes = Zeroizing::new([0u8; 20]);
    aws_lc_rs::rand::fill(bytes.as_mut())
        .map_err(|_| UserError::Internal("the system random source failed".into()))?;
    let mut out = Zeroizing::new(String::with_capacity(20));
    for b in bytes.iter() {
        // 256 is not a multiple of the alphabet's 50 letters: a bias of under 1 bit in 100.
        out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
    }
    Ok(out)
}

fn random_hex(n: usize) -> Result<String, UserError> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    aws_lc_rs::rand::fill(bytes.as_mut_slice())
        .map_err(|_| UserError::Internal("the system random source failed".into()))?;
    Ok(hex::encode(bytes.as_slice()))
}

/// Whether `password` is acceptable as a new password.
///
/// Fails saying what is wrong.
pub fn check_new_password(password: &str, name: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::Invalid(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::Invalid(format!(
            "a password has at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if password.eq_ignore_ascii_case(name) {
        return Err(UserError::Invalid(
            "a password must differ from the user name".into(),
        ));
    }
    Ok(())
}

/// Creates a user with a one-time password, returned once; audited as `user.created` by
/// `actor` from `source`.
///
/// Fails if the name or roles are not acceptable, the name is taken, or storage fails.
pub fn create_with_one_time_password(
    store: &dyn UserStore,
    name: &str,
    roles: &[Role],
    actor: &str,
    source: &str,
) -> Result<Zeroizing<String>, UserError> {
    let (user, password) = prepare(name, roles, actor)?;
    let event = AuditEvent::new(Action::UserCreated, actor, source, format!("user:{name}"))
        .with("roles", roles_text(roles));
    store.create_user(&user, &event)?;
    Ok(password)
}

/// A user to create with a fresh one-time password (returned with it), after checking the
/// name and roles.
///
/// Fails if the name or roles are not acceptable or hashing fails.
pub fn prepare(
    name: &str,
    roles: &[Role],
    actor: &str,
) -> Result<(NewUser, Zeroizing<String>), UserError> {
    if !valid_name(name) {
        return Err(UserError::Invalid(format!(
            "invalid user name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 - _ ."
        )));
    }
    if roles.is_empty() {
        return Err(UserError::Invalid("give at least one role".into()));
    }
    let password = one_time_password()?;
    let user = NewUser {
        name: name.to_owned(),
        roles: roles.to_vec(),
        password: PasswordHash::new(&password)?,
        must_change_password: true,
        created_by: actor.to_owned(),
    };
    Ok((user, password))
}

/// Gives `name` a new one-time password (returned once) that must be changed at the next
/// sign-in; clears any lock and ends their sessions. Audited as `user.password_reset`.
///
/// Fails if there is no such user or storage fails.
pub fn reset_password(
    store: &dyn UserStore,
    name: &str,
    actor: &str,
    source: &str,
) -> Result<Zeroizing<String>, UserError> {
    let password = one_time_password()?;
    let hash = PasswordHash::new(&password)?;
    let event = AuditEvent::new(
        Action::UserPasswordReset,
        actor,
        source,
        format!("user:{name}"),
    );
    store.set_password(name, &hash, true, None, &event)?;
    Ok(password)
}

/// Disables `name` (ending their sessions) or enables them again; audited as
/// `user.disabled` / `user.enabled` by `actor` from `source`.
///
/// Fails if there is no such user, the user is already so, or storage fails.
pub fn set_disabled(
    store: &dyn UserStore,
    name: &str,
    disabled: bool,
    actor: &str,
    source: &str,
) -> Result<(), UserError> {
    let action = if disabled {
        Action::UserDisabled
    } else {
        Action::UserEnabled
    };
    let event = AuditEvent::new(action, actor, source, format!("user:{name}"));
    store.set_disabled(name, disabled, &event)?;
    Ok(())
}

/// What a sign-in attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// Signed in; the session is recorded.
    Succeeded(User),
    /// Refused: unknown user, wrong password, disabled, or locked. The caller shows one
    /// message for all of them, so nothing can be learnt about which.
    Refused(Refusal),
}

/// Why a sign-in was refused (for the audit log and tests; shown only when it is
/// [`Refusal::AwaitingApproval`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such user.
    UnknownUser,
    /// Wrong password.
    WrongPassword,
    /// Wrong password, and this failure locked the account.
    LockedNow,
    /// The account is locked.
    Locked,
    /// The account is disabled.
    Disabled,
    /// The password is right, but the administrator account waits for officers' approval
    /// (this operation): the only refusal worth telling, since only the holder of the
    /// password learns it.
    AwaitingApproval(i64),
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown user",
            Refusal::WrongPassword | Refusal::LockedNow => "wrong password",
            Refusal::Locked => "account locked",
            Refusal::Disabled => "account disabled",
            Refusal::AwaitingApproval(_) => "administrator awaiting approval",
        }
    }
}

/// Checks `name`'s `password` at `now`; on success records the session whose id hashes to
/// `session`. Every outcome is audited (`login.succeeded`, `login.failed`, `login.locked`).
///
/// Fails only if storage fails.
pub fn login(
    store: &dyn UserStore,
    name: &str,
    password: &str,
    session: &[u8; 32],
    source: &str,
    now: SystemTime,
) -> Result<Login, UserError> {
    login_in(
        store,
        name,
        password,
        session,
        source,
        now,
        &mut Buffer::standalone(),
    )
}

/// [`login`], with Argon2id computing in `buffer` (from a [`PasswordMemory`], so that the
/// server's password checks never hold more memory than its pool).
///
/// Fails only if storage fails.
pub fn login_in(
    store: &dyn UserStore,
    name: &str,
    password: &str,
    session: &[u8; 32],
    source: &str,
    now: SystemTime,
    buffer: &mut Buffer,
) -> Result<Login, UserError> {
    // Names from the form go into the audit log: bound them and keep them printable. A name
    // that is no account's is not stored at all: people type their password into the name
    // field, and the audit log keeps what it is given for good.
    let shown: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    let user = if valid_name(name) {
        store.user(name)?
    } else {
        None
    };
    let object = if user.is_some() {
        format!("user:{shown}")
    } else {
        UNKNOWN_USER_OBJECT.to_owned()
    };
    let hash = match &user {
        Some(_) => store.password_hash(name)?,
        None => None,
    };
    let refusal = match (&user, hash) {
        (Some(u), Some(h)) if !u.disabled && !u.is_locked(now) => {
            (!h.verify_in(password, buffer)).then_some(Refusal::WrongPassword)
        }
        (user, _) => {
            // Spend the time a real check takes, so timing tells nothing about the account.
            let _ = dummy_hash().verify_in(password, buffer);
            Some(match user {
                Some(u) if u.disabled => match store.awaiting_approval(name)? {
                    Some(id)
                        if store
                            .password_hash(name)?
                            .is_some_and(|h| h.verify_in(password, buffer)) =>
                    {
                        Refusal::AwaitingApproval(id)
                    }
                    _ => Refusal::Disabled,
                },
                Some(u) if u.is_locked(now) => Refusal::Locked,
                Some(_) => Refusal::WrongPassword,
                None => Refusal::UnknownUser,
            })
        }
    };
    let Some(refusal) = refusal else {
        let event = AuditEvent::new(Action::LoginSucceeded, &shown, source, &object);
        store.login_succeeded(name, session, now, IDLE_TIMEOUT, &event)?;
        let user = store
            .user(name)?
            .ok_or_else(|| UserError::Store(StoreError::NotFound(format!("user {name:?}"))))?;
        return Ok(Login::Succeeded(user));
    };
    // Nobody is authenticated yet: the claimed name is the object, not the actor.
    let failed = AuditEvent::new(Action::LoginFailed, "anonymous", source, &object)
        .with("reason", refusal.as_str());
    if refusal == Refusal::WrongPassword {
        let locked = AuditEvent::new(Action::LoginLocked, "system", source, &object)
            .with("failures", MAX_FAILURES.to_string())
            .with("minutes", (LOCKOUT.as_secs() / 60).to_string());
        let locked_now = store.login_failed(name, true, now, &failed, &locked)?;
        if locked_now {
            return Ok(Login::Refused(Refusal::LockedNow));
        }
    } else {
        // Nothing to count (unknown, disabled, already locked): only the audit entry.
        store.login_failed(name, false, now, &failed, &failed)?;
    }
    Ok(Login::Refused(refusal))
}

/// The audit object of a failed sign-in under a name that is no account's (the name itself
/// is never stored: it may be a password typed into the wrong field).
pub const UNKNOWN_USER_OBJECT: &str = "user:(unknown name)";

/// A fixed hash to check against when the user does not exist.
fn dummy_hash() -> PasswordHash {
    PasswordHash(
        "$argon2id$v=19$m=19456,t=2,p=1$a2V5aG9sZC1kdW1teQ$\
         0QkCb6yUXFv9WTAwzGg0nVR0IuKYsMbqLbvZQ/ozOm8"
            .into(),
    )
}

/// Changes `user`'s own password after checking `current`; the session whose id hashes to
/// `keep` stays, every other one ends. Audited as `user.password_changed`.
///
/// Fails if `current` is wrong, the new password is not acceptable, or storage fails.
pub fn change_password(
    store: &dyn UserStore,
    user: &User,
    current: &str,
    new: &str,
    keep: &[u8; 32],
    source: &str,
) -> Result<(), UserError> {
    let ok = store
        .password_hash(&user.name)?
        .is_some_and(|h| h.verify(current));
    if !ok {
        return Err(UserError::Invalid("the current password is wrong".into()));
    }
    check_new_password(new, &user.name)?;
    if new == current {
        return Err(UserError::Invalid(
            "the new password must differ from the current one".into(),
        ));
    }
    let hash = PasswordHash::new(new)?;
    let event = AuditEvent::new(
        Action::UserPasswordChanged,
        &user.name,
        source,
        format!("user:{}", user.name),
    );
    store.set_password(&user.name, &hash, false, Some(*keep), &event)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let h = PasswordHash::new("correct horse battery").unwrap();
        assert!(h.as_str().starts_with("$argon2id$"));
        assert!(h.verify("correct horse battery"));
        assert!(!h.verify("correct horse batterY"));
        assert!(!format!("{h:?}").contains("argon2id"));
    }

    #[test]
    fn the_dummy_hash_parses_and_matches_nothing_typed() {
        assert!(!dummy_hash().verify("password"));
        assert!(argon2::password_hash::phc::PasswordHash::new(dummy_hash().as_str()).is_ok());
    }

    #[test]
    fn roles_parse_in_order_without_duplicates() {
        assert_eq!(
            parse_roles("requester, admin,admin").unwrap(),
            vec![Role::Admin, Role::Requester]
        );
        assert!(parse_roles("root").is_err());
        assert!(parse_roles(" , ").is_err());
    }

    #[test]
    fn one_time_passwords_are_long_and_differ() {
        let a = one_time_password().unwrap();
        let b = one_time_password().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(*a, *b);
    }

    #[test]
    fn session_ids_hide_in_debug_and_parse_back() {
        let id = SessionId::generate().unwrap();
        assert!(!format!("{id:?}").contains(id.expose()));
        assert_eq!(SessionId::from_cookie(id.expose()), Some(id.clone()));
        assert_eq!(SessionId::from_cookie("zz"), None);
        assert_ne!(id.csrf_token(), id.expose());
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_new_password("short", "alice").is_err());
        assert!(check_new_password("a long enough one", "alice").is_ok());
    }
}
