//! Quorum for sensitive operations besides issuance: creating an administrator, granting
//! the officer role, resetting an officer's credentials, destroying a code-signing key, and
//! exporting or importing a wrapped key.
//!
//! Invariants:
//! - an operation needing M approvals is recorded `pending` with its audit entry before
//!   anything else happens; approvals come from distinct officers, never the one who asked,
//!   never an administrator, each audited, and not after the deadline;
//! - the quorum is counted again at the last approval from the accounts as they stand
//!   ([`crate::approval`], the same rules as certificate requests): an officer
//!   disabled since no longer counts;
//! - one rejection ends an operation; a finished operation never runs again;
//! - no single administrator can make a quorum pass: officers are made only by `keyhold
//!   init --officer` or under `[quorum] grant_officer` (the account waits disabled, and its
//!   officer role counts from the instant the quorum is reached, for what is made after);
//!   an officer's credentials are reset only under `[quorum] reset_officer`, and the new
//!   one-time password goes to the officer who completes the quorum, never to the
//!   administrator who asked. See [`crate::approval`] for which approvals count.
//!
//! Carrying the operation out is the caller's ([`Quorum::approve`] says when): creating an
//! administrator activates the account in the same transaction that closes the operation
//! ([`OperationStore::activate_admin`]); destroying a key is
//! [`crate::codesign::Codesign::destroy_key`]; exporting or importing a key is the key
//! store's, with the parameters recorded at the request ([`KeyTransfer`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::approval;
use crate::audit::{Action, AuditEvent};
use crate::issuance::IssueError;
use crate::policy::Requester;
use crate::store::{Approval, Serial, Store, StoreError};
use crate::users::NewUser;

/// How long an operation waits for approvals.
pub const OPERATION_TTL: Duration = Duration::from_secs(7 * 86_400);

/// Approvals each operation needs (0: none, the operation runs at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuorumPolicy {
    /// Creating a user with the admin role.
    pub create_admin: u32,
    /// Destroying a code-signing key (its certificate is revoked, cessationOfOperation).
    pub destroy_key: u32,
    /// Creating a user with the officer role.
    pub grant_officer: u32,
    /// Resetting the password of a user with the officer role.
    pub reset_officer: u32,
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Activate the administrator account named by the target.
    CreateAdmin,
    /// Destroy the code-signing key labelled by the target.
    DestroyKey,
    /// Export a key wrapped, as the target's [`KeyTransfer`] says.
    ExportKey,
    /// Import a wrapped key, as the target's [`KeyTransfer`] says.
    ImportKey,
    /// Activate the officer account named by the target; its officer role counts from then.
    GrantOfficer,
    /// Give the officer named by the target a new one-time password.
    ResetOfficer,
}

impl OperationKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::CreateAdmin => "create_admin",
            OperationKind::DestroyKey => "destroy_key",
            OperationKind::ExportKey => "export_key",
            OperationKind::ImportKey => "import_key",
            OperationKind::GrantOfficer => "grant_officer",
            OperationKind::ResetOfficer => "reset_officer",
        }
    }

    /// The kind stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create_admin" => Some(OperationKind::CreateAdmin),
            "destroy_key" => Some(OperationKind::DestroyKey),
            "export_key" => Some(OperationKind::ExportKey),
            "import_key" => Some(OperationKind::ImportKey),
            "grant_officer" => Some(OperationKind::GrantOfficer),
            "reset_officer" => Some(OperationKind::ResetOfficer),
            _ => None,
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a key export or import operation will do, fixed when it is requested and kept as
/// the operation's target (JSON), so that the officers approve exactly this.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyTransfer {
    /// The key's label (export: in this key store; import: the label it gets here).
    pub label: String,
    /// PKCS#11: the wrapping key's label. Embedded token: the age recipient (export) or the
    /// absolute path of the age identity file (import).
    pub wrapping_key: String,
    /// The wrapped key file (absolute): written by an export, read by an import.
    pub file: String,
    /// Import only: the SHA-256 (hex) of the file as it was when the import was requested;
    /// a file changed since is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    /// Import only: keep the imported key exportable.
    #[serde(default)]
    pub extractable: bool,
}

impl KeyTransfer {
    /// The operation target that records it.
    ///
    /// Fails only if serialisation fails (it does not for these fields).
    pub fn to_target(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The transfer an operation's target records.
    ///
    /// Fails if the target is not one.
    pub fn from_target(target: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(target)
    }
}

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationStatus {
    /// Waiting for approvals.
    Pending,
    /// Carried out.
    Done,
    /// Rejected by an officer.
    Rejected,
    /// Approved, but carrying it out failed (the reason says how).
    Failed,
}

impl OperationStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Pending => "pending",
            OperationStatus::Done => "done",
            OperationStatus::Rejected => "rejected",
            OperationStatus::Failed => "failed",
        }
    }

    /// The status stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(OperationStatus::Pending),
            "done" => Some(OperationStatus::Done),
            "rejected" => Some(OperationStatus::Rejected),
            "failed" => Some(OperationStatus::Failed),
            _ => None,
        }
    }
}

/// An operation to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOperation {
    /// What it does.
    pub kind: OperationKind,
    /// To what: a user name, a key label.
    pub target: String,
    /// Who asked (never an approver).
    pub requested_by: String,
    /// Approvals needed.
    pub approvals_needed: u32,
    /// After this it can no longer be approved.
    pub expires_at: SystemTime,
}

/// An operation as recorded, with its approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRow {
    /// Its id.
    pub id: i64,
    /// What it records.
    pub op: NewOperation,
    /// Where it stands.
    pub status: OperationStatus,
    /// Approvals given, oldest first.
    pub approvals: Vec<Approval>,
    /// When it was recorded.
    pub created_at: SystemTime,
    /// Who rejected it, if someone did.
    pub decided_by: Option<String>,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
}

impl OperationRow {
    /// Its status as shown: `expired` once a pending operation is past its deadline.
    pub fn effective_status(&self, now: SystemTime) -> &'static str {
        match self.status {
            OperationStatus::Pending if self.op.expires_at < now => "expired",
            s => s.as_str(),
        }
    }
}

/// Storage of operations, implemented by the `db` crate; every change appends its audit
/// event in the same transaction.
pub trait OperationStore: Send + Sync + fmt::Debug {
    /// Records a pending operation and appends `event` (object filled in as
    /// `operation:<id>`). Returns its id.
    fn create_operation(&self, op: &NewOperation, event: &AuditEvent) -> Result<i64, StoreError>;

    /// Records `user` disabled (with no `officer_since`) and a pending `create_admin` or
    /// `grant_officer` operation for them, appending both events, in one transaction.
    /// Returns the operation's id.
    ///
    /// Fails with `Conflict` if the name is taken.
    fn create_pending_admin(
        &self,
        user: &NewUser,
        op: &NewOperation,
        user_event: &AuditEvent,
        op_event: &AuditEvent,
    ) -> Result<i64, StoreError>;

    /// One operation.
    fn operation(&self, id: i64) -> Result<Option<OperationRow>, StoreError>;

    /// Operations, newest first (only pending ones with `pending_only`), at most 500.
    fn operations(&self, pending_only: bool) -> Result<Vec<OperationRow>, StoreError>;

    /// The pending `create_admin` or `grant_officer` operation for user `name`, if any.
    fn pending_admin(&self, name: &str) -> Result<Option<i64>, StoreError>;

    /// Adds an approval and appends `event`; returns the operation as it now stands.
    ///
    /// Fails with `NotFound`, or `Conflict` if it is not pending, past its deadline at
    /// `now`, the officer asked for it, or already approved it.
    fn approve_operation(
        &self,
        id: i64,
        approval: &Approval,
        now: SystemTime,
        event: &AuditEvent,
    ) -> Result<OperationRow, StoreError>;

    /// Sets a pending operation `rejected` by `officer` for `reason`, appending `event`.
    ///
    /// Fails with `NotFound`, or `Conflict` if it is not pending or the officer asked for it.
    fn reject_operation(
        &self,
        id: i64,
        officer: &str,
        reason: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Sets a pending operation `done` (no reason) or `failed` (with it), appending `event`.
    ///
    /// Fails with `Conflict` if it is not pending.
    fn finish_operation(
        &self,
        id: i64,
        failed: Option<&str>,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Enables the account a pending `create_admin` or `grant_officer` operation waits for
    /// (an officer's role counting from now: `officer_since`) and sets the operation `done`,
    /// appending `event`, in one transaction.
    ///
    /// Fails with `Conflict` if the operation is not a pending `create_admin` or
    /// `grant_officer`.
    fn activate_admin(&self, id: i64, event: &AuditEvent) -> Result<(), StoreError>;
}

/// What an approval came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    /// Still waiting.
    Pending {
        /// Approvals that count.
        approvals: u32,
        /// Approvals needed.
        approvals_needed: u32,
        /// Approvals given that no longer count, with why.
        void: Vec<String>,
    },
    /// The quorum is reached: the caller carries the operation out now.
    Ready(OperationRow),
}

/// What carrying out an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarriedOut {
    /// The administrator may now sign in.
    AdminActivated {
        /// The operation.
        id: i64,
        /// The administrator's name.
        name: String,
    },
    /// The officer's credentials were reset: the one-time password is for the officer who
    /// completed the quorum to hand over, shown once.
    CredentialsReset {
        /// The operation.
        id: i64,
        /// The officer's name.
        name: String,
        /// The new one-time password.
        password: OneTimePassword,
    },
    /// The code-signing key was destroyed in the key store.
    KeyDestroyed {
        /// The operation.
        id: i64,
        /// The key's label.
        label: String,
        /// Its certificate, revoked (cessationOfOperation), if it had a valid one.
        revoked: Option<Serial>,
    },
    /// A key was exported or imported wrapped.
    KeyTransferred {
        /// The operation.
        id: i64,
        /// Export or import.
        kind: OperationKind,
        /// What the key store did, as its caller tells it.
        done: String,
    },
}

impl fmt::Display for CarriedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CarriedOut::AdminActivated { id, name } => write!(
                f,
                "operation {id}: account {name} approved and may now sign in"
            ),
            CarriedOut::CredentialsReset { id, name, .. } => write!(
                f,
                "operation {id}: {name} has a new one-time password (shown once; hand it to \
                 {name} yourself: the first sign-in must change it)"
            ),
            CarriedOut::KeyDestroyed { id, label, revoked } => {
                write!(
                    f,
                    "operation {id}: quorum reached; key {label} destroyed in the key store"
                )?;
                match revoked {
                    Some(serial) => {
                        write!(f, "; certificate {serial} revoked (cessationOfOperation)")
                    }
                    None => write!(f, " (it had no valid certificate)"),
                }
            }
            CarriedOut::KeyTransferred { id, done, .. } => {
                write!(f, "operation {id}: quorum reached; {done}")
            }
        }
    }
}

/// Why carrying out an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CarryOutError<E: fmt::Display + fmt::Debug> {
    /// The operation itself failed; it is closed `failed` with this reason.
    #[error("operation {id} failed: {source}")]
    Failed {
        /// The operation.
        id: i64,
        /// What failed.
        source: E,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Carries out an operation whose quorum was reached, closing it `done` or `failed` with its
/// audit entry. `destroy` destroys a code-signing key (label, why) and returns the serial of
/// the certificate it revoked; `transfer` exports or imports a key as the operation
/// recorded it (kind, what, the operation's id) and says what it did. The one place every
/// interface (CLI, UI) carries operations out, so none can forget to close one.
///
/// Fails if carrying it out fails (the operation is then closed `failed` with the reason)
/// or the database fails.
pub fn carry_out<E: fmt::Display + fmt::Debug>(
    ops: &dyn OperationStore,
    users: &dyn crate::users::UserStore,
    destroy: impl FnOnce(&str, &str) -> Result<Option<Serial>, E>,
    transfer: impl FnOnce(OperationKind, &KeyTransfer, i64) -> Result<String, E>,
    row: &OperationRow,
    by: &str,
    source: &str,
) -> Result<CarriedOut, CarryOutError<E>> {
    let done = |action: Action| {
        AuditEvent::new(action, by, source, format!("operation:{}", row.id))
            .with("kind", row.op.kind.as_str())
            .with("target", row.op.target.as_str())
    };
    match row.op.kind {
        OperationKind::CreateAdmin | OperationKind::GrantOfficer => {
            ops.activate_admin(row.id, &done(Action::OperationDone))?;
            Ok(CarriedOut::AdminActivated {
                id: row.id,
                name: row.op.target.clone(),
            })
        }
        OperationKind::ResetOfficer => {
            let name = row.op.target.as_str();
            // The approving officer who completes the quorum resets it and sees the password.
            let password =
                crate::users::reset_password(users, name, by, source).map_err(|e| match e {
                    crate::users::UserError::Store(e) => e,
                    other => {
                        StoreError::Database(format!("cannot reset {name}'s password: {other}"))
                    }
                })?;
            ops.finish_operation(row.id, None, &done(Action::OperationDone))?;
            Ok(CarriedOut::CredentialsReset {
                id: row.id,
                name: name.to_owned(),
                password: OneTimePassword(password),
            })
        }
        OperationKind::DestroyKey => {
            let why = format!("operation {} approved", row.id);
            let result = destroy(&row.op.target, &why).map(|revoked| CarriedOut::KeyDestroyed {
                id: row.id,
                label: row.op.target.clone(),
                revoked,
            });
            close(ops, row, result, done)
        }
        kind @ (OperationKind::ExportKey | OperationKind::ImportKey) => {
            let result = match KeyTransfer::from_target(&row.op.target) {
                Ok(what) => transfer(kind, &what, row.id),
                Err(e) => {
                    // Only a target Keyhold did not write gets here: close it failed.
                    let reason = format!("the operation's target is not a key transfer: {e}");
                    ops.finish_operation(
                        row.id,
                        Some(&reason),
                        &done(Action::OperationFailed).with("reason", reason.as_str()),
                    )?;
                    return Err(CarryOutError::Store(StoreError::Conflict(reason)));
                }
            };
            let result = result.map(|what| CarriedOut::KeyTransferred {
                id: row.id,
                kind,
                done: what,
            });
            close(ops, row, result, done)
        }
    }
}

/// Closes an operation `done` or `failed` as its result says.
fn close<E: fmt::Display + fmt::Debug>(
    ops: &dyn OperationStore,
    row: &OperationRow,
    result: Result<CarriedOut, E>,
    done: impl Fn(Action) -> AuditEvent,
) -> Result<CarriedOut, CarryOutError<E>> {
    match result {
        Ok(carried) => {
            ops.finish_operation(row.id, None, &done(Action::OperationDone))?;
            Ok(carried)
        }
        Err(e) => {
            let reason = e.to_string();
            ops.finish_operation(
                row.id,
                Some(&reason),
                &done(Action::OperationFailed).with("reason", reason.as_str()),
            )?;
            Err(CarryOutError::Failed {
                id: row.id,
                source: e,
            })
        }
    }
}

/// Opening, approving and rejecting operations.
#[derive(Debug, Clone, Copy)]
pub struct Quorum<'a> {
    /// Where operations live.
    pub ops: &'a dyn OperationStore,
    /// Where accounts are read, to count approvals again.
    pub accounts: &'a dyn Store,
}

impl Quorum<'_> {
    /// Records a pending operation asked for by `requested_by`, audited as
    /// `operation.requested`. Returns its id.
    ///
    /// Fails if the database fails.
    pub fn open(
        &self,
        kind: OperationKind,
        target: &str,
        approvals_needed: u32,
        requested_by: &str,
        source: &str,
        now: SystemTime,
    ) -> Result<i64, StoreError> {
        let (op, event) = new_operation(kind, target, approvals_needed, requested_by, source, now);
        self.ops.create_operation(&op, &event)
    }

    /// Records `officer`'s approval of operation `id` and counts the quorum again.
    ///
    /// Fails if the officer is not an officer in good standing (or is an administrator),
    /// or the store refuses (unknown, not pending, expired, theirs, approved twice).
    pub fn approve(
        &self,
        id: i64,
        officer: &Requester,
        comment: &str,
        source: &str,
        now: SystemTime,
    ) -> Result<Approved, IssueError> {
        // Approvals count only from officers who held the role before the operation was
        // made; an unknown id is refused by the store below.
        let made = self.ops.operation(id)?.map_or(now, |r| r.created_at);
        approval::may_approve(self.accounts, officer, made)?;
        let approval = Approval {
            officer: officer.name.clone(),
            comment: comment.to_owned(),
            at: now,
        };
        let event = AuditEvent::new(
            Action::OperationApproved,
            &officer.name,
            source,
            format!("operation:{id}"),
        )
        .with("comment", comment);
        let row = self.ops.approve_operation(id, &approval, now, &event)?;
        let tally = approval::tally(
            self.accounts,
            &row.approvals,
            row.op.approvals_needed,
            row.created_at,
        )?;
        if !tally.reached() {
            return Ok(Approved::Pending {
                approvals: tally.counted,
                approvals_needed: row.op.approvals_needed,
                void: tally.void_reasons(),
            });
        }
        Ok(Approved::Ready(row))
    }

    /// Rejects operation `id`; one rejection ends it. Audited as `operation.rejected`.
    ///
    /// Fails if the officer is not an officer, the reason is empty, or the store refuses.
    pub fn reject(
        &self,
        id: i64,
        officer: &Requester,
        reason: &str,
        source: &str,
    ) -> Result<(), IssueError> {
        approval::check_rejection(officer, reason)?;
        let event = AuditEvent::new(
            Action::OperationRejected,
            &officer.name,
            source,
            format!("operation:{id}"),
        )
        .with("reason", reason);
        self.ops
            .reject_operation(id, &officer.name, reason, &event)?;
        Ok(())
    }
}

/// The operation (and the approvals it needs) under which a user with `roles` is created,
/// or `None` if it is created at once: the admin role under `create_admin`, the officer role
/// under `grant_officer` (both: the larger quorum).
pub fn creation_quorum(
    policy: &QuorumPolicy,
    roles: &[crate::users::Role],
) -> Option<(OperationKind, u32)> {
    use crate::users::Role;
    let admin = if roles.contains(&Role::Admin) {
        policy.create_admin
    } else {
        0
    };
    let officer = if roles.contains(&Role::Officer) {
        policy.grant_officer
    } else {
        0
    };
    match (admin, officer) {
        (0, 0) => None,
        (a, o) if a >= o => Some((OperationKind::CreateAdmin, a)),
        (_, o) => Some((OperationKind::GrantOfficer, o)),
    }
}

/// Creates a user with a one-time password (returned once). A user with the admin role
/// (when `policy.create_admin` asks for approvals) or the officer role (when
/// `policy.grant_officer` does) is created disabled together with a pending `create_admin`
/// or `grant_officer` operation (its id is returned too): they cannot sign in, nor count as
/// an officer, until that many officers approve. Audited as `user.created` (with
/// `pending`) and `operation.requested`.
///
/// Fails if the name or roles are not acceptable, the name is taken, or storage fails.
#[allow(clippy::too_many_arguments)]
pub fn create_user(
    users: &dyn crate::users::UserStore,
    ops: &dyn OperationStore,
    policy: &QuorumPolicy,
    name: &str,
    roles: &[crate::users::Role],
    actor: &str,
    source: &str,
    now: SystemTime,
) -> Result<(zeroize::Zeroizing<String>, Option<i64>), crate::users::UserError> {
    use crate::users;
    let Some((kind, needed)) = creation_quorum(policy, roles) else {
        let password = users::create_with_one_time_password(users, name, roles, actor, source)?;
        return Ok((password, None));
    };
    let (user, password) = users::prepare(name, roles, actor)?;
    let user_event = AuditEvent::new(Action::UserCreated, actor, source, format!("user:{name}"))
        .with("roles", users::roles_text(roles))
        .with("pending", "approval by officers");
    let (op, op_event) = new_operation(kind, name, needed, actor, source, now);
    let id = ops.create_pending_admin(&user, &op, &user_event, &op_event)?;
    Ok((password, Some(id)))
}

/// A one-time password, shown once; never in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimePassword(zeroize::Zeroizing<String>);

impl OneTimePassword {
    /// Wraps a password made by [`crate::users::one_time_password`].
    pub fn new(password: zeroize::Zeroizing<String>) -> Self {
        OneTimePassword(password)
    }

    /// The password, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTimePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimePassword([redacted])")
    }
}

/// What asking for a password reset came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reset {
    /// Done: the new one-time password, to show once to the one who asked.
    Done(OneTimePassword),
    /// The user is an officer and `[quorum] reset_officer` asks for approvals: this
    /// operation waits for them, and the password will go to the officer who completes it.
    Pending(i64),
}

/// Resets `name`'s password. An officer's, when `policy.reset_officer` asks for approvals,
/// only opens a pending `reset_officer` operation (an administrator who could reset an
/// officer's password alone could approve as that officer); anyone else's is reset at once
/// (audited as `user.password_reset`; the reset is recorded as `credentials_reset_at`, so the
/// user's approvals do not count for anything made before it).
///
/// Fails if there is no such user or storage fails.
pub fn reset_password(
    users: &dyn crate::users::UserStore,
    ops: &dyn OperationStore,
    policy: &QuorumPolicy,
    name: &str,
    actor: &str,
    source: &str,
    now: SystemTime,
) -> Result<Reset, crate::users::UserError> {
    let user = users
        .user(name)?
        .ok_or_else(|| StoreError::NotFound(format!("user {name:?}")))?;
    if user.has(crate::users::Role::Officer) && policy.reset_officer > 0 {
        let (op, event) = new_operation(
            OperationKind::ResetOfficer,
            name,
            policy.reset_officer,
            actor,
            source,
            now,
        );
        return Ok(Reset::Pending(ops.create_operation(&op, &event)?));
    }
    let password = crate::users::reset_password(users, name, actor, source)?;
    Ok(Reset::Done(OneTimePassword(password)))
}

/// The record and audit event of a new operation.
pub fn new_operation(
    kind: OperationKind,
    target: &str,
    approvals_needed: u32,
    requested_by: &str,
    source: &str,
    now: SystemTime,
) -> (NewOperation, AuditEvent) {
    let op = NewOperation {
        kind,
        target: target.to_owned(),
        requested_by: requested_by.to_owned(),
        approvals_needed,
        expires_at: now + OPERATION_TTL,
    };
    let event = AuditEvent::new(Action::OperationRequested, requested_by, source, "")
        .with("kind", kind.as_str())
        .with("target", target)
        .with("approvals_needed", approvals_needed.to_string());
    (op, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_statuses_round_trip() {
        for k in [
            OperationKind::CreateAdmin,
            OperationKind::DestroyKey,
            OperationKind::ExportKey,
            OperationKind::ImportKey,
            OperationKind::GrantOfficer,
            OperationKind::ResetOfficer,
        ] {
            assert_eq!(OperationKind::parse(k.as_str()), Some(k));
        }
        for s in [
            OperationStatus::Pending,
            OperationStatus::Done,
            OperationStatus::Rejected,
            OperationStatus::Failed,
        ] {
            assert_eq!(OperationStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OperationKind::parse("drop_table"), None);
    }
}
