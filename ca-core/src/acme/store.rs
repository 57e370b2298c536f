//! The storage port of the ACME service: accounts, orders, authorizations, challenges and
//! external account binding keys.
//!
//! Invariant: every method that changes state takes the audit event that records the change
//! and writes both in one transaction; a status changes only from the status the caller saw
//! (compare and set), so two nodes racing on one order or challenge never both win.

use std::time::SystemTime;

use super::identifier::{ChallengeType, Identifier};
use super::order::{AuthzStatus, ChallengeStatus, OrderStatus};
use crate::audit::AuditEvent;
use crate::store::StoreError;

/// An account's status (RFC 8555 7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// In use.
    Valid,
    /// Deactivated by its holder; refused from then on.
    Deactivated,
    /// Deactivated by the server.
    Revoked,
}

/// A status's text, as RFC 8555 spells it and the database stores it.
pub trait StatusText: Sized + Copy {
    /// The text.
    fn as_str(self) -> &'static str;
    /// Reads the text back; `None` for anything else.
    fn parse(text: &str) -> Option<Self>;
}

macro_rules! status_text {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl StatusText for $t {
            fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
            fn parse(text: &str) -> Option<Self> {
                match text { $($s => Some(Self::$v),)+ _ => None }
            }
        }
    };
}

status_text!(AccountStatus { Valid => "valid", Deactivated => "deactivated", Revoked => "revoked" });
status_text!(OrderStatus {
    Pending => "pending", Ready => "ready", Processing => "processing", Valid => "valid",
    Invalid => "invalid",
});
status_text!(AuthzStatus {
    Pending => "pending", Valid => "valid", Invalid => "invalid", Deactivated => "deactivated",
    Expired => "expired", Revoked => "revoked",
});
status_text!(ChallengeStatus {
    Pending => "pending", Processing => "processing", Valid => "valid", Invalid => "invalid",
});
status_text!(ChallengeType { Http01 => "http-01", Dns01 => "dns-01", TlsAlpn01 => "tls-alpn-01" });

/// An ACME account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id (the last segment of its URL).
    pub id: String,
    /// The RFC 7638 thumbprint of its key; one account per key.
    pub thumbprint: String,
    /// Its key, as canonical JWK JSON.
    pub jwk: String,
    /// Its status.
    pub status: AccountStatus,
    /// Its contact URLs (`mailto:`).
    pub contact: Vec<String>,
    /// The EAB key it was bound with, if any.
    pub eab_kid: Option<String>,
    /// When it was created.
    pub created_at: SystemTime,
}

/// An external account binding key, as stored: its HMAC key only sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct EabKey {
    /// The key id clients send (`kid`).
    pub kid: String,
    /// A name for people (`team-a`).
    pub name: String,
    /// The profiles its accounts may order under; the first is their default.
    pub profiles: Vec<String>,
    /// DNS suffixes its accounts may name (`.team-a.internal`); empty: the profile decides.
    pub names: Vec<String>,
    /// The HMAC key, sealed under the server's ACME secret.
    pub hmac_sealed: Vec<u8>,
    /// When it was made.
    pub created_at: SystemTime,
    /// Who made it.
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

impl std::fmt::Debug for EabKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EabKey")
            .field("kid", &self.kid)
            .field("name", &self.name)
            .field("profiles", &self.profiles)
            .field("names", &self.names)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its id.
    pub id: String,
    /// The account that placed it.
    pub account_id: String,
    /// Its stored status ([`super::order::order_status`] gives the status now).
    pub status: OrderStatus,
    /// What it names, in the client's order.
    pub identifiers: Vec<Identifier>,
    /// The Keyhold profile it issues under.
    pub profile: String,
    /// The notBefore the client asked for.
    pub not_before: Option<SystemTime>,
    /// The notAfter the client asked for.
    pub not_after: Option<SystemTime>,
    /// When it expires unless finalized.
    pub expires_at: SystemTime,
    /// When it was placed.
    pub created_at: SystemTime,
    /// The certificate's serial, once issued.
    pub serial: Option<String>,
    /// Why it became invalid (a problem's detail).
    pub error: Option<String>,
    /// The ARI id of the certificate it replaces, if the client said so and it checked out.
    pub replaces: Option<String>,
}

/// An authorization: one identifier of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authz {
    /// Its id.
    pub id: String,
    /// Its order.
    pub order_id: String,
    /// The identifier, without any `*.` (see `wildcard`).
    pub identifier: Identifier,
    /// Whether the order asked for the wildcard of it.
    pub wildcard: bool,
    /// Its stored status.
    pub status: AuthzStatus,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// A challenge of an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Its id.
    pub id: String,
    /// Its authorization.
    pub authz_id: String,
    /// Its type.
    pub kind: ChallengeType,
    /// Its token (base64url, 128 random bits at least).
    pub token: String,
    /// Its status.
    pub status: ChallengeStatus,
    /// When validation succeeded.
    pub validated_at: Option<SystemTime>,
    /// Why validation failed.
    pub error: Option<String>,
}

/// How a validation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// The challenge was met.
    Valid,
    /// It was not, for this reason (a problem detail for the client).
    Invalid(String),
}

/// What the ACME service needs from storage.
pub trait AcmeStore: Send + Sync + std::fmt::Debug {
    /// Records a new account and its audit entry. Fails with `Conflict` if its key already
    /// has an account (the caller then answers with that account).
    fn create_account(&self, account: &Account, event: &AuditEvent) -> Result<(), StoreError>;
    /// The account with this id.
    fn account(&self, id: &str) -> Result<Option<Account>, StoreError>;
    /// The account whose key has this thumbprint.
    fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<Account>, StoreError>;
    /// Replaces an account's contact and status, if it is still `valid`. Fails with
    /// `Conflict` otherwise.
    fn update_account(
        &self,
        id: &str,
        contact: &[String],
        status: AccountStatus,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Replaces an account's key. Fails with `Conflict` if another account has the new key.
    fn change_account_key(
        &self,
        id: &str,
        thumbprint: &str,
        jwk: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Every account, newest first, at most `limit`.
    fn accounts(&self, limit: i64) -> Result<Vec<Account>, StoreError>;

    /// Records an EAB key. Fails with `Conflict` if its kid or name is taken.
    fn create_eab_key(&self, key: &EabKey, event: &AuditEvent) -> Result<(), StoreError>;
    /// The EAB key with this kid, revoked or not.
    fn eab_key(&self, kid: &str) -> Result<Option<EabKey>, StoreError>;
    /// Revokes the EAB key named `name`. Fails with `NotFound` or, if already revoked,
    /// `Conflict`.
    fn revoke_eab_key(&self, name: &str, event: &AuditEvent) -> Result<(), StoreError>;
    /// Every EAB key, by name.
    fn eab_keys(&self) -> Result<Vec<EabKey>, StoreError>;

    /// Records an order with its authorizations and their challenges, and its audit entry.
    fn create_order(
        &self,
        order: &Order,
        authzs: &[(Authz, Vec<Challenge>)],
        event: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// The order with this id.
    fn order(&self, id: &str) -> Result<Option<Order>, StoreError>;
    /// An account's orders, newest first, at most `limit`.
    fn orders_of(&self, account_id: &str, limit: i64) -> Result<Vec<Order>, StoreError>;
    /// The newest orders of every account, at most `limit`.
    fn recent_orders(&self, limit: i64) -> Result<Vec<Order>, StoreError>;
    /// Orders placed since `since` by the account (for its rate limit).
    fn orders_since(&self, account_id: &str, since: SystemTime) -> Result<i64, StoreError>;
    /// Authorizations for `value` (a DNS name without `*.`, or an IP) that expire after
    /// `expires_after` (for the per-identifier rate limit).
    fn authzs_for(&self, value: &str, expires_after: SystemTime) -> Result<i64, StoreError>;
    /// Whether the account holds an authorization for `identifier` (a DNS name without
    /// `*.`, or an IP) that is `valid` and unexpired at `now`; with `wildcard`, only one made
    /// for the wildcard counts (RFC 8555 7.6: revocation by an authorized account).
    fn holds_authorization(
        &self,
        account_id: &str,
        identifier: &Identifier,
        wildcard: bool,
        now: SystemTime,
    ) -> Result<bool, StoreError>;
    /// Moves an order from `from` to `to`, recording `serial` or `error`, with `event`.
    /// Returns false, writing nothing, if the order was no longer `from`.
    fn set_order_status(
        &self,
        id: &str,
        from: OrderStatus,
        to: OrderStatus,
        serial: Option<&str>,
        error: Option<&str>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// An order's authorizations with their challenges, in the order's order.
    fn order_authzs(&self, order_id: &str) -> Result<Vec<(Authz, Vec<Challenge>)>, StoreError>;
    /// The authorization with this id, with its challenges.
    fn authz(&self, id: &str) -> Result<Option<(Authz, Vec<Challenge>)>, StoreError>;
    /// Deactivates a pending or valid authorization (RFC 8555 7.5.2). Returns false if it
    /// was neither.
    fn deactivate_authz(&self, id: &str, event: &AuditEvent) -> Result<bool, StoreError>;
    /// The challenge with this id.
    fn challenge(&self, id: &str) -> Result<Option<Challenge>, StoreError>;
    /// Moves a pending challenge of a pending authorization to `processing`. Returns false,
    /// writing nothing, if either had moved on.
    fn start_challenge(&self, id: &str, event: &AuditEvent) -> Result<bool, StoreError>;
    /// Settles a processing challenge and, with it, its authorization (valid or invalid).
    /// Returns false if the challenge was no longer processing.
    fn finish_challenge(
        &self,
        id: &str,
        result: &Validation,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// How many accounts there are, and how many certificates ACME issued (valid orders).
    fn acme_counts(&self) -> Result<(i64, i64), StoreError>;
    /// Challenges left `processing` (by this process or one that died), oldest first.
    fn processing_challenges(&self, limit: i64) -> Result<Vec<Challenge>, StoreError>;

    /// Challenges in `processing` that no live node is validating at `now`: claimed by an
    /// instance other than this process's whose heartbeat is older than
    /// [`crate::cluster::DEAD_AFTER`] (or gone), or claimed by none (started before claims
    /// were recorded). Each with the instance that claimed it.
    fn orphaned_challenges(
        &self,
        now: SystemTime,
        limit: i64,
    ) -> Result<Vec<(Challenge, Option<String>)>, StoreError>;
    /// Claims the processing challenge `id` for this process, if it is still claimed by
    /// `from` (compare and set), with `event`. Returns false, writing nothing, if another
    /// node took it first, it settled, or this process has not joined as a node.
    fn reclaim_challenge(
        &self,
        id: &str,
        from: Option<&str>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Deletes, in batches of at most `batch` orders or authorizations per transaction,
    /// every order that is not `valid` and expired before `before`, and every authorization
    /// that expired before `before`, with their challenges. Each transaction that deletes
    /// something writes `event` with the counts it deleted added. Valid orders stay: one
    /// per certificate, as the certificates table keeps them.
    fn sweep_expired(
        &self,
        before: SystemTime,
        batch: i64,
        event: &AuditEvent,
    ) -> Result<Swept, StoreError>;
}

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Orders.
    pub orders: u64,
    /// Authorizations.
    pub authzs: u64,
    /// Challenges.
    pub challenges: u64,
}
