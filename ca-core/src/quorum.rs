//! Quorum for sensitive operations besides issuance: creating an administrator,
//! destroying a code-signing key, and exporting or importing a wrapped key.
//!
//! Invariants:
//! - an operation needing M approvals is recorded `pending` with its audit entry before
//!   anything else happens; approvals come from distinct officers, never the one who asked,
//!   never an administrator, each audited, and not after the deadline;
//! - the quorum is counted again at the last approval from the accounts as they stand
//!   ([`crate::approval`], the same rules as certificate requests): an officer
//!   disabled since no longer counts;
//! - one rejection ends an operation; a finished operation never runs again.
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
}

impl OperationKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::CreateAdmin => "create_admin",
            OperationKind::DestroyKey => "destroy_key",
            OperationKind::ExportKey => "export_key",
            OperationKind::ImportKey => "import_key",
        }
    }

    /// The kind stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create_admin" => Some(OperationKind::CreateAdmin),
            "destroy_key" => Some(OperationKind::DestroyKey),
            "export_key" => Some(OperationKind::ExportKey),
            "import_key" => Some(OperationKind::ImportKey),
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

    /// Records `user` disabled and a pending `create_admin` operation for them, appending
    /// both events, in one transaction. Returns the operation's id.
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

    /// The pending `create_admin` operation for user `name`, if any.
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

    /// Enables the administrator a pending `create_admin` operation waits for and sets the
    /// operation `done`, appending `event`, in one transaction.
    ///
    /// Fails with `Conflict` if the operation is not a pending `create_admin`.
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
                "operation {id}: administrator {name} approved and may now sign in"
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
        OperationKind::CreateAdmin => {
            ops.activate_admin(row.id, &done(Action::OperationDone))?;
            Ok(CarriedOut::AdminActivated {
                id: row.id,
                name: row.op.target.clone(),
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
        approval::may_approve(self.accounts, officer)?;
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
        let tally = approval::tally(self.accounts, &row.approvals, row.op.approvals_needed)?;
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

/// Creates a user with a one-time password (returned once). A user with the admin role,
/// when `policy.create_admin` asks for approvals, is created disabled together with a
/// pending `create_admin` operation (its id is returned too): they cannot sign in until
/// that many officers approve. Audited as `user.created` (with `pending`) and
/// `operation.requested`.
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
    use crate::users::{self, Role};
    if !roles.contains(&Role::Admin) || policy.create_admin == 0 {
        let password = users::create_with_one_time_password(users, name, roles, actor, source)?;
        return Ok((password, None));
    }
    let (user, password) = users::prepare(name, roles, actor)?;
    let user_event = AuditEvent::new(Action::UserCreated, actor, source, format!("user:{name}"))
        .with("roles", users::roles_text(roles))
        .with("pending", "approval by officers");
    let (op, op_event) = new_operation(
        OperationKind::CreateAdmin,
        name,
        policy.create_admin,
        actor,
        source,
        now,
    );
    let id = ops.create_pending_admin(&user, &op, &user_event, &op_event)?;
    Ok((password, Some(id)))
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
