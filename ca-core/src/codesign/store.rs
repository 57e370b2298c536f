//! What code signing needs from the database: the [`CodesignStore`] port and the rows it
//! reads and writes. Every change appends its audit event in the same transaction.

use std::fmt;
use std::time::SystemTime;

use crate::audit::AuditEvent;
use crate::cms::DigestAlg;
use crate::keystore::{KeyRef, KeySpec, SpkiDer};
use crate::store::{CertificateRow, Serial, StoreError};

/// What kind of principal owns a key (issue 15): a person (a user account, or a requester
/// the CLI names) or an API token. A token is never its owner's namesake: a token named like
/// a person owns nothing of theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    /// A person, acting through the CLI (`--as NAME`) or signed in.
    User,
    /// An API token, authenticated by its secret.
    Token,
}

impl OwnerKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::User => "user",
            OwnerKind::Token => "token",
        }
    }

    /// The kind stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(OwnerKind::User),
            "token" => Some(OwnerKind::Token),
            _ => None,
        }
    }
}

/// An authenticated principal: its kind and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal<'a> {
    /// A person or a token.
    pub kind: OwnerKind,
    /// Its name.
    pub name: &'a str,
}

impl<'a> Principal<'a> {
    /// A person named `name`.
    pub fn user(name: &'a str) -> Self {
        Principal {
            kind: OwnerKind::User,
            name,
        }
    }

    /// The API token named `name`.
    pub fn token(name: &'a str) -> Self {
        Principal {
            kind: OwnerKind::Token,
            name,
        }
    }
}

impl fmt::Display for Principal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            OwnerKind::User => write!(f, "{}", self.name),
            OwnerKind::Token => write!(f, "API token {}", self.name),
        }
    }
}

/// A key generated for an owner, as first recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCodesignKey {
    /// Its label in the key store.
    pub key: KeyRef,
    /// Who may sign with it.
    pub owner: String,
    /// Whether the owner is a person or an API token.
    pub owner_kind: OwnerKind,
    /// The profile its certificate is requested under.
    pub profile: String,
    /// Its type.
    pub spec: KeySpec,
    /// Its public key.
    pub public_key: SpkiDer,
    /// When it was generated.
    pub created_at: SystemTime,
}

/// What a key is bound to after it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBinding {
    /// The request for its certificate, waiting for approvals.
    Request(i64),
    /// The certificate issued for it.
    Certificate(Serial),
    /// Retired for this reason (its request was refused, or issuance failed): it never signs.
    Retired(String),
}

/// A code-signing key as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodesignKeyRow {
    /// Its label in the key store.
    pub key: KeyRef,
    /// Who may sign with it.
    pub owner: String,
    /// Whether the owner is a person or an API token.
    pub owner_kind: OwnerKind,
    /// The profile its certificate is requested under.
    pub profile: String,
    /// Its type.
    pub spec: KeySpec,
    /// Its public key.
    pub public_key: SpkiDer,
    /// The request for its certificate.
    pub request_id: Option<i64>,
    /// The certificate bound to it directly (issued without approvals).
    pub serial: Option<Serial>,
    /// Why it was retired, if it was.
    pub retired: Option<String>,
    /// When it was generated.
    pub created_at: SystemTime,
}

impl CodesignKeyRow {
    /// Its owner, as a principal.
    pub fn owner(&self) -> Principal<'_> {
        Principal {
            kind: self.owner_kind,
            name: &self.owner,
        }
    }
}

/// A limit the store enforces when it records a signature: fewer than `max` signatures with
/// the key at or after `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningWindow {
    /// Start of the window.
    pub since: SystemTime,
    /// Signatures allowed in it.
    pub max: u64,
    /// What the limit is, for the refusal: `60 signatures per minute`.
    pub name: String,
}

/// A signature to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSignature {
    /// The key that signed.
    pub key: KeyRef,
    /// Who asked.
    pub caller: String,
    /// The certificate the signature names.
    pub serial: Serial,
    /// The digest's algorithm.
    pub digest_alg: DigestAlg,
    /// The digest, lowercase hex.
    pub digest: String,
    /// The signing time (also in the CMS signed attributes).
    pub at: SystemTime,
}

/// A recorded signature: one line of a key's signing history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRow {
    /// Its id.
    pub id: i64,
    /// What was recorded.
    pub signature: NewSignature,
}

/// What code signing needs from the database. Implemented by the `db` crate next to
/// [`crate::store::Store`]; every change appends its audit event in the same transaction.
pub trait CodesignStore: Send + Sync + fmt::Debug {
    /// Records a new key and appends `event`.
    ///
    /// Fails with `Conflict` if the label is recorded already.
    fn add_codesign_key(&self, key: &NewCodesignKey, event: &AuditEvent) -> Result<(), StoreError>;

    /// Binds a key to its request or certificate, or retires it, and appends `event`.
    ///
    /// Fails with `NotFound` for an unknown key, and `Conflict` if it is retired or bound to
    /// another request or certificate already.
    fn bind_codesign_key(
        &self,
        key: &KeyRef,
        binding: &KeyBinding,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// One key.
    fn codesign_key(&self, key: &KeyRef) -> Result<Option<CodesignKeyRow>, StoreError>;

    /// The certificate the key signs under, with its current status: the serial bound to
    /// the key, or else the certificate issued for its request. `None` while there is none.
    fn codesign_certificate(&self, key: &KeyRef) -> Result<Option<CertificateRow>, StoreError>;

    /// How many signatures the key made at or after `since`.
    fn codesign_signature_count(&self, key: &KeyRef, since: SystemTime) -> Result<u64, StoreError>;

    /// The index of the first of `windows` that is full for `key`: the early check before
    /// signing. [`CodesignStore::record_codesign_signature`] checks every window again,
    /// exactly, so a store may answer `None` for a window its own records say is not full
    /// without counting (a signature another process records meanwhile is caught there).
    fn codesign_full_window(
        &self,
        key: &KeyRef,
        windows: &[SigningWindow],
    ) -> Result<Option<usize>, StoreError> {
        for (i, w) in windows.iter().enumerate() {
            if self.codesign_signature_count(key, w.since)? >= w.max {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Records a signature and appends `event`, in one transaction, after checking every
    /// window again inside it.
    ///
    /// Fails with `Conflict` naming the window that is full; nothing is written then.
    fn record_codesign_signature(
        &self,
        signature: &NewSignature,
        windows: &[SigningWindow],
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The key's signatures, newest first, at most `limit` (the store caps it at 1,000).
    fn codesign_signatures(
        &self,
        key: &KeyRef,
        limit: u32,
    ) -> Result<Vec<SignatureRow>, StoreError>;

    /// Lets the API token named `token` sign with `key` besides its owner (`by` binds it at
    /// `at`), and appends `event`.
    ///
    /// Fails with `NotFound` for an unknown key or token, and `Conflict` if the token is
    /// bound to the key already or is revoked.
    fn bind_codesign_token(
        &self,
        key: &KeyRef,
        token: &str,
        by: &str,
        at: SystemTime,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Removes that binding and appends `event`.
    ///
    /// Fails with `NotFound` if the token is not bound to the key.
    fn unbind_codesign_token(
        &self,
        key: &KeyRef,
        token: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Whether `caller` names an API token bound to `key` that is neither revoked nor
    /// expired at `now`.
    fn codesign_token_bound(
        &self,
        key: &KeyRef,
        caller: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError>;

    /// The names of the tokens bound to `key`, by name.
    fn codesign_bindings(&self, key: &KeyRef) -> Result<Vec<String>, StoreError>;
}
