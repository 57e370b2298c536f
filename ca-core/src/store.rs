//! What the CA needs from its database, as a trait the `db` crate implements with diesel.
//!
//! Every method that changes state takes the [`AuditEvent`]s describing the change and
//! appends them in the same transaction: if an audit entry cannot be written, the change does
//! not happen (fail closed). Methods are synchronous; implementations may batch concurrent
//! callers into one transaction (group commit) as long as each call returns only once its
//! change is durable.

use std::fmt;
use std::time::SystemTime;

use crate::audit::{AuditEvent, AuditRecord, Checkpoint};
use crate::issuer::IssuerId;
use crate::revocation::Reason;

/// A certificate serial as lowercase hex without separators (the DER INTEGER's content bytes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(String);

impl Serial {
    /// Parses hex, with or without colons or spaces, in either case (`0A:1b` or `0a1b`), with
    /// or without DER's leading zero octet.
    ///
    /// Fails if it is not 1 to 20 octets of hex.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hex: String = text
            .trim()
            .chars()
            .filter(|c| *c != ':' && *c != ' ')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let ok = !hex.is_empty()
            && hex.len().is_multiple_of(2)
            && hex.len() <= 40
            && hex.chars().all(|c| c.is_ascii_hexdigit());
        if ok {
            Ok(Serial::canonical(hex))
        } else {
            Err(format!(
                "{text:?} is not a serial number (expected 1 to 20 octets of hex, e.g. 4f:0a:...)"
            ))
        }
    }

    /// From the DER INTEGER content bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Serial::canonical(hex::encode(bytes))
    }

    /// Without the leading zero octet DER adds when the top bit is set, as openssl prints
    /// serials: one spelling per number.
    fn canonical(mut hex: String) -> Self {
        while hex.len() > 2 && hex.starts_with("00") {
            hex.drain(..2);
        }
        Serial(hex)
    }

    /// Lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.0)
    }
}

/// A certificate's state in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// The serial is reserved and the certificate is being signed.
    Reserved,
    /// Issued and not revoked (it may have expired: compare `not_after`).
    Valid,
    /// Revoked.
    Revoked,
    /// Signing or recording failed, or the process died while signing. The serial is burnt.
    Failed,
}

impl CertStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Reserved => "reserved",
            CertStatus::Valid => "valid",
            CertStatus::Revoked => "revoked",
            CertStatus::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            CertStatus::Reserved,
            CertStatus::Valid,
            CertStatus::Revoked,
            CertStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// Waiting for approvals.
    Pending,
    /// Approved and issued (the certificate's serial is on the request).
    Issued,
    /// An officer rejected it.
    Rejected,
    /// Approved, but issuance then failed (policy no longer allows it, or signing failed).
    Failed,
    /// Not approved in time.
    Expired,
}

impl RequestStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Issued => "issued",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Failed => "failed",
            RequestStatus::Expired => "expired",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            RequestStatus::Pending,
            RequestStatus::Issued,
            RequestStatus::Rejected,
            RequestStatus::Failed,
            RequestStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A serial to reserve before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    /// The serial (random, 128 bits).
    pub serial: Serial,
    /// Who signs.
    pub issuer: IssuerId,
    /// The profile it is issued under.
    pub profile: String,
    /// Who asked.
    pub requester: String,
    /// Subject in RFC 4514 form.
    pub subject: String,
    /// SANs as searchable text, e.g. `DNS:a.internal IP:10.0.0.1`.
    pub sans: String,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// The approval request this issuance completes, if any.
    pub request_id: Option<i64>,
}

/// A certificate row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// Serial.
    pub serial: Serial,
    /// Issuer id.
    pub issuer: String,
    /// Profile.
    pub profile: String,
    /// Requester.
    pub requester: String,
    /// Subject.
    pub subject: String,
    /// SANs as text.
    pub sans: String,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// State.
    pub status: CertStatus,
    /// The certificate, once issued.
    pub der: Option<Vec<u8>>,
    /// When the serial was reserved.
    pub created_at: SystemTime,
    /// The request it completes.
    pub request_id: Option<i64>,
    /// Why it failed, for `Failed`.
    pub failure: Option<String>,
}

/// Which certificates to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertFilter {
    /// Only this profile.
    pub profile: Option<String>,
    /// Only this status.
    pub status: Option<CertStatus>,
    /// Only those issued (status valid) whose notAfter is before this time and not yet past.
    pub expiring_before: Option<SystemTime>,
    /// Only issued, unrevoked certificates that have expired (`Some(true)`) or not
    /// (`Some(false)`) at the store's current time.
    pub expired: Option<bool>,
    /// Only those whose subject, SANs or serial contain this text (case-insensitive).
    pub search: Option<String>,
    /// Only this requester's.
    pub requester: Option<String>,
    /// In which order.
    pub sort: CertSort,
    /// Keyset cursor: continue after this `(key, serial)` in `sort`'s order, where the key
    /// is the issue time (`created_at`) or the expiry (`not_after`), as `sort` says.
    pub after: Option<(SystemTime, Serial)>,
    /// Page size (the store caps it at 1,000).
    pub limit: u32,
}

/// The order of a certificate list. Ties are broken by serial, in the same direction, so
/// that a `(key, serial)` cursor names one place in the list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CertSort {
    /// Issued most recently first.
    #[default]
    Newest,
    /// Issued longest ago first.
    Oldest,
    /// Soonest `notAfter` first.
    ExpiresFirst,
    /// Latest `notAfter` first.
    ExpiresLast,
}

impl CertSort {
    /// Every order, as offered to users.
    pub const ALL: [CertSort; 4] = [
        CertSort::Newest,
        CertSort::Oldest,
        CertSort::ExpiresFirst,
        CertSort::ExpiresLast,
    ];

    /// The name used in URLs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CertSort::Newest => "newest",
            CertSort::Oldest => "oldest",
            CertSort::ExpiresFirst => "expiry",
            CertSort::ExpiresLast => "expiry-desc",
        }
    }

    /// Parses [`CertSort::as_str`]'s names.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the cursor's key is `not_after` (else `created_at`).
    pub fn by_expiry(self) -> bool {
        matches!(self, CertSort::ExpiresFirst | CertSort::ExpiresLast)
    }

    /// The cursor key of `row` in this order.
    pub fn key(self, row: &CertificateRow) -> SystemTime {
        if self.by_expiry() {
            row.not_after
        } else {
            row.created_at
        }
    }
}

/// The dashboard's counts, exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CertCounts {
    /// Issued, not revoked, not expired.
    pub valid: u64,
    /// Of those, expiring before the time asked about.
    pub expiring: u64,
    /// Revoked (expired or not).
    pub revoked: u64,
    /// Requests waiting for approval that have not expired.
    pub pending: u64,
}

/// A request waiting for, or done with, approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    /// Profile.
    pub profile: String,
    /// Who asked.
    pub requester: String,
    /// The CSR, DER.
    pub csr_der: Vec<u8>,
    /// Subject asked for.
    pub subject: String,
    /// SANs asked for, as text.
    pub sans: String,
    /// Approvals needed.
    pub approvals_needed: u32,
    /// After this, it can no longer be approved.
    pub expires_at: SystemTime,
}

/// One officer's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The officer.
    pub officer: String,
    /// Their comment.
    pub comment: String,
    /// When.
    pub at: SystemTime,
}

/// A request row with its approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    /// Id.
    pub id: i64,
    /// Profile.
    pub profile: String,
    /// Requester.
    pub requester: String,
    /// The CSR, DER.
    pub csr_der: Vec<u8>,
    /// Subject asked for.
    pub subject: String,
    /// SANs asked for.
    pub sans: String,
    /// State.
    pub status: RequestStatus,
    /// Approvals needed.
    pub approvals_needed: u32,
    /// Approvals given, oldest first.
    pub approvals: Vec<Approval>,
    /// When it arrived.
    pub created_at: SystemTime,
    /// Approval deadline.
    pub expires_at: SystemTime,
    /// The officer who rejected it, or why issuance failed.
    pub decided_by: Option<String>,
    /// Rejection reason or failure.
    pub reason: Option<String>,
    /// The certificate issued for it.
    pub serial: Option<Serial>,
}

/// Which requests to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only this status.
    pub status: Option<RequestStatus>,
    /// Only this requester's.
    pub requester: Option<String>,
    /// Keyset cursor: continue after this id, newest first.
    pub before_id: Option<i64>,
    /// Page size (capped at 1,000).
    pub limit: u32,
}

pub use crate::error::StoreError;

/// The audit log: appending events, reading the chain, and its signed checkpoints.
pub trait AuditLog: Send + Sync + fmt::Debug {
    /// Appends stand-alone audit events (key generated, CA initialised...) in one transaction.
    fn audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// Like [`AuditLog::audit`], for events that record a read, not a change (a token used):
    /// committed and ordered in the chain, made durable by the next durable write (see
    /// [`IssuanceLedger::reserve`]) rather than flushed on their own.
    fn audit_ordered(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.audit(events)
    }

    /// Audit entries with `seq` in `from..=to`, in order.
    fn audit_entries(&self, from: i64, to: i64) -> Result<Vec<AuditRecord>, StoreError>;

    /// The last entry's `(seq, hash)`, or `None` for an empty log.
    fn audit_head(&self) -> Result<Option<(i64, [u8; 32])>, StoreError>;

    /// Stores a checkpoint and appends `event`, in one transaction.
    fn add_checkpoint(&self, checkpoint: &Checkpoint, event: &AuditEvent)
    -> Result<(), StoreError>;

    /// Every checkpoint, oldest first.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
}

/// What the issuance cycle writes: issuers, reservations, certificates, requests and
/// their approvals (each change with its audit event, in one transaction).
pub trait IssuanceLedger: Send + Sync + fmt::Debug {
    /// Records an issuer's certificate (DER) under its id if it is not there yet. Certificates
    /// reference issuers, so this runs at start-up for every configured issuer.
    ///
    /// Fails with `Conflict` if the id is recorded with a different certificate.
    fn ensure_issuer(&self, id: &IssuerId, der: &[u8]) -> Result<(), StoreError>;

    /// Reserves `cert.serial` with status `Reserved` and appends `event`, in one transaction.
    ///
    /// Fails with `Conflict` if the serial exists (for this or any issuer), or, when
    /// `cert.request_id` is set, if that request is not pending.
    ///
    /// Unlike every other change, the reservation need not be durable when this returns: it
    /// must be committed, visible, and ordered before every later change, so that a crash
    /// can lose it only together with the [`IssuanceLedger::complete`] that follows it. The
    /// certificate signed in between exists only in the caller's memory until `complete`
    /// returns, durably, so nothing is ever handed out that the database does not hold, and
    /// an issuance pays for one disk flush, not two.
    fn reserve(&self, cert: &NewCertificate, event: &AuditEvent) -> Result<(), StoreError>;

    /// Stores the signed certificate, sets status `Valid`, marks its request `Issued`, and
    /// appends `event`, in one transaction.
    ///
    /// Fails with `NotFound` or `Conflict` if the serial is not `Reserved`.
    fn complete(&self, serial: &Serial, der: &[u8], event: &AuditEvent) -> Result<(), StoreError>;

    /// Marks a reserved serial `Failed` with `reason` (and its request `Failed`), appending
    /// `event`, in one transaction.
    fn fail(&self, serial: &Serial, reason: &str, event: &AuditEvent) -> Result<(), StoreError>;

    /// Serials still `Reserved`, oldest first: left by a process that died while signing.
    fn reserved(&self) -> Result<Vec<CertificateRow>, StoreError>;

    /// Records a request needing approval and appends `event` (whose object the store fills in
    /// as `request:<id>` if it is empty), in one transaction. Returns its id.
    fn create_request(&self, request: &NewRequest, event: &AuditEvent) -> Result<i64, StoreError>;

    /// Adds `officer`'s approval and appends `event`, in one transaction. Returns the request
    /// as it now stands.
    ///
    /// Fails with `Conflict` if the request is not pending, has expired (at `now`), the
    /// officer is its requester, or the officer already approved it.
    fn approve(
        &self,
        id: i64,
        approval: &Approval,
        now: SystemTime,
        event: &AuditEvent,
    ) -> Result<RequestRow, StoreError>;

    /// The web UI account called `name` as it stands now (disabled or not, its roles), or
    /// `None` if no account has that name: approvals are checked against it again when a
    /// quorum is counted.
    fn account(&self, name: &str) -> Result<Option<crate::users::User>, StoreError>;

    /// Sets a pending request `Rejected` by `officer` for `reason`, appending `event`.
    ///
    /// Fails with `Conflict` if it is not pending or the officer is its requester.
    fn reject(
        &self,
        id: i64,
        officer: &str,
        reason: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Sets a pending request `Failed` (approved but could not be issued), appending `event`.
    fn fail_request(&self, id: i64, reason: &str, event: &AuditEvent) -> Result<(), StoreError>;
}

/// Read-only queries over certificates and requests, for lists, pages and the API.
pub trait CertificateQueries: Send + Sync + fmt::Debug {
    /// One certificate.
    fn certificate(&self, serial: &Serial) -> Result<Option<CertificateRow>, StoreError>;

    /// A page of certificates, in `filter.sort`'s order.
    fn certificates(&self, filter: &CertFilter) -> Result<Vec<CertificateRow>, StoreError>;

    /// Exact counts of valid, expiring (before `expiring_before`), revoked certificates and
    /// pending requests, at the store's current time; only `requester`'s, if given.
    fn counts(
        &self,
        requester: Option<&str>,
        expiring_before: SystemTime,
    ) -> Result<CertCounts, StoreError>;

    /// How many certificates were issued (now valid or revoked) on each UTC day from `since`
    /// on, oldest first, as (days since the Unix epoch, count); days without any are left
    /// out. Only `requester`'s, if given.
    fn issued_per_day(
        &self,
        since: SystemTime,
        requester: Option<&str>,
    ) -> Result<Vec<(i64, u64)>, StoreError>;

    /// One request with its approvals.
    fn request(&self, id: i64) -> Result<Option<RequestRow>, StoreError>;

    /// A page of requests, newest first.
    fn requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError>;
}

/// Revocations, and what CRLs and OCSP read of them.
pub trait RevocationLedger: Send + Sync + fmt::Debug {
    /// Marks an issued certificate revoked and appends `event`, in one transaction.
    /// Expired certificates can be revoked too.
    ///
    /// Fails with `NotFound` for an unknown serial, and with `Conflict` if it is already
    /// revoked, still reserved (being signed) or failed (never issued).
    fn revoke(&self, revocation: &Revocation, event: &AuditEvent) -> Result<(), StoreError>;

    /// What `issuer`'s next CRL must list at `now`: every revoked certificate it issued, and
    /// every CA certificate it signed that was revoked, whose notAfter is not before `now`;
    /// with their count taken separately, all from one snapshot.
    fn crl_entries(&self, issuer: &IssuerId, now: SystemTime) -> Result<CrlList, StoreError>;

    /// Records that the CA certificate of `revocation.ca` is revoked, and appends `event`, in
    /// one transaction.
    ///
    /// Fails with `Conflict` if that CA certificate is already revoked.
    fn revoke_ca(&self, revocation: &CaRevocation, event: &AuditEvent) -> Result<(), StoreError>;

    /// The CA certificates recorded as revoked, in the order they were revoked.
    fn ca_revocations(&self) -> Result<Vec<CaRevocation>, StoreError>;

    /// Certificates revoked at or after `since` (by their recorded revocation time), as
    /// (issuer, serial), oldest first: what an OCSP responder holding answers signed ahead of
    /// time must sign again when the revocation was made by another process.
    fn revoked_since(&self, since: SystemTime) -> Result<Vec<(IssuerId, Serial)>, StoreError>;

    /// The status of `serial` as issued by `issuer`, for OCSP; `None` if `issuer` never
    /// issued that serial.
    fn revocation_status(
        &self,
        issuer: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<SerialStatus>, StoreError>;

    /// The revocation of the CA certificate with `serial` that `parent` signed, if it is
    /// recorded (what OCSP answers about a CA certificate); `None` if it is not revoked.
    fn ca_revocation(
        &self,
        parent: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<CaRevocation>, StoreError>;

    /// Allocates `issuer`'s next CRL number for a CRL whose thisUpdate is `this_update`,
    /// durably: every call returns a number larger than any returned before, by any process
    /// sharing the database (numbers may be skipped, never reused), and at least
    /// `this_update` in microseconds since the Unix epoch.
    ///
    /// The second floor is what keeps numbers from going backwards when the database itself
    /// does: after a restore of an old backup, or an asynchronous failover, the stored
    /// counter is behind what was published, but thisUpdate has moved on (one CRL takes far
    /// more than a microsecond to sign, so a published number is never ahead of its own
    /// thisUpdate by more than the CRLs signed within one microsecond). RFC 5280 5.2.3
    /// allows up to 20 octets; this uses 8.
    fn next_crl_number(
        &self,
        issuer: &IssuerId,
        this_update: SystemTime,
    ) -> Result<u64, StoreError>;

    /// [`RevocationLedger::next_crl_number`] and [`RevocationLedger::crl_entries`] at once,
    /// from one snapshot and in number order: whatever CRL any process numbers higher lists
    /// every revocation this one lists (unless expired by its own thisUpdate). What a CRL
    /// generator must use; the two calls apart let another process's revocation fall
    /// between them.
    fn numbered_crl_entries(
        &self,
        issuer: &IssuerId,
        this_update: SystemTime,
    ) -> Result<(u64, CrlList), StoreError>;
}

/// The CA's database: every port at once. Implemented by the `db` crate for SQLite and
/// PostgreSQL; each consumer is handed only the port it needs (an `Arc<dyn Store>` coerces to
/// any of them).
pub trait Store: IssuanceLedger + CertificateQueries + AuditLog + RevocationLedger {}

impl<T: IssuanceLedger + CertificateQueries + AuditLog + RevocationLedger + ?Sized> Store for T {}

/// The one thing an OCSP responder needs from storage: a narrow port, so that it can be
/// served from a cache or a read replica. Every [`Store`] is one.
pub trait StatusReader: Send + Sync + fmt::Debug {
    /// The status of `serial` as issued by `issuer`; `None` if `issuer` never issued it.
    fn revocation_status(
        &self,
        issuer: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<SerialStatus>, StoreError>;

    /// The revocation of the CA certificate with `serial` that `parent` signed, if recorded.
    fn ca_revocation(
        &self,
        parent: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<CaRevocation>, StoreError>;
}

impl<T: RevocationLedger + ?Sized> StatusReader for T {
    fn revocation_status(
        &self,
        issuer: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<SerialStatus>, StoreError> {
        RevocationLedger::revocation_status(self, issuer, serial)
    }

    fn ca_revocation(
        &self,
        parent: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<CaRevocation>, StoreError> {
        RevocationLedger::ca_revocation(self, parent, serial)
    }
}

/// A revocation to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate.
    pub serial: Serial,
    /// Why (RFC 5280 5.3.1).
    pub reason: Reason,
    /// When the key is known or suspected to have been compromised (RFC 5280 5.3.2).
    pub invalidity_date: Option<SystemTime>,
    /// When the CA revoked it (the CRL's revocationDate, OCSP's revocationTime).
    pub revoked_at: SystemTime,
}

/// A revoked certificate, as a CRL lists it: fixed-size and `Copy`, so the entries of a
/// million-certificate CRL are one allocation, not several per entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CrlEntry {
    /// The serial's octets, big-endian, without leading zero octets, in `serial[..len]`.
    serial: [u8; 20],
    len: u8,
    /// Why.
    pub reason: Reason,
    /// When it was revoked.
    pub revoked_at: SystemTime,
    /// Since when the key is suspect, if given.
    pub invalidity_date: Option<SystemTime>,
}

impl CrlEntry {
    /// An entry for the certificate whose serial is the lowercase hex `serial` (as stored).
    ///
    /// Fails if `serial` is not 1 to 20 octets of hex.
    pub fn from_hex(
        serial: &[u8],
        reason: Reason,
        revoked_at: SystemTime,
        invalidity_date: Option<SystemTime>,
    ) -> Result<Self, String> {
        let bad = || format!("{:?} is not a serial", String::from_utf8_lossy(serial));
        if serial.is_empty() || serial.len() > 40 || !serial.len().is_multiple_of(2) {
            return Err(bad());
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut octets = [0u8; 20];
        for (i, pair) in serial.chunks_exact(2).enumerate() {
            octets[i] = match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => hi << 4 | lo,
                _ => return Err(bad()),
            };
        }
        let n = serial.len() / 2;
        // One spelling per number: drop leading zero octets, keeping at least one.
        let skip = octets[..n - 1].iter().take_while(|b| **b == 0).count();
        let mut out = [0u8; 20];
        out[..n - skip].copy_from_slice(&octets[skip..n]);
        Ok(CrlEntry {
            serial: out,
            len: (n - skip) as u8,
            reason,
            revoked_at,
            invalidity_date,
        })
    }

    /// The serial's octets, big-endian, without leading zero octets (the DER INTEGER's
    /// content needs a leading zero when the first octet's top bit is set).
    pub fn serial_octets(&self) -> &[u8] {
        &self.serial[..usize::from(self.len)]
    }

    /// The serial.
    pub fn serial(&self) -> Serial {
        Serial::from_bytes(self.serial_octets())
    }
}

impl fmt::Debug for CrlEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrlEntry")
            .field("serial", &self.serial())
            .field("reason", &self.reason)
            .field("revoked_at", &self.revoked_at)
            .field("invalidity_date", &self.invalidity_date)
            .finish()
    }
}

/// What an issuer's next CRL must list, read from one consistent snapshot of the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlList {
    /// Every unexpired revoked certificate of the issuer (for a root: also the revoked
    /// certificates of the CAs it signed), in any order.
    pub entries: Vec<CrlEntry>,
    /// How many there are, counted by a separate query over the certificates' own status
    /// (not over the rows `entries` came from): the CRL's self-check compares the two, so a
    /// read that misses rows cannot produce a CRL.
    pub counted: u64,
}

/// An issuing CA's certificate revoked by its parent (the CA that signed it), so the
/// parent's CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRevocation {
    /// The revoked CA's issuer id.
    pub ca: IssuerId,
    /// The parent whose CRL lists it.
    pub parent: IssuerId,
    /// The revoked CA certificate's serial.
    pub serial: Serial,
    /// The revoked CA certificate's notAfter (after it, CRLs may drop the entry).
    pub not_after: SystemTime,
    /// Why (RFC 5280 5.3.1).
    pub reason: Reason,
    /// When.
    pub revoked_at: SystemTime,
    /// Who revoked it.
    pub revoked_by: String,
}

/// A serial's status, as an OCSP responder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialStatus {
    /// The stored state.
    pub status: CertStatus,
    /// Its notAfter.
    pub not_after: SystemTime,
    /// When and why, if revoked.
    pub revoked: Option<(SystemTime, Reason)>,
}
