//! [`OperationStore`] on both backends: the `operations` and `operation_approvals` tables
//! (migration `*_operations`). Writes go through the one writer, so the checks and the
//! change of each run under the audit chain's lock.

use std::time::SystemTime;

use ca_core::audit::{AuditEvent, from_unix_micros};
use ca_core::quorum::{NewOperation, OperationKind, OperationRow, OperationStatus, OperationStore};
use ca_core::store::{Approval, StoreError};
use ca_core::users::NewUser;
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::{OpError, corrupt, db_error};
use crate::schema::{operation_approvals, operations};
use crate::writer::Tx;
use crate::{Db, unix_micros};

#[derive(Insertable, Queryable, Selectable)]
#[diesel(table_name = operations)]
struct OperationRecord {
    id: i64,
    kind: String,
    target: String,
    requested_by: String,
    approvals_needed: i64,
    status: String,
    created_at: i64,
    expires_at: i64,
    decided_by: Option<String>,
    reason: Option<String>,
}

#[derive(Insertable, Queryable, Selectable)]
#[diesel(table_name = operation_approvals)]
struct ApprovalRecord {
    operation_id: i64,
    officer: String,
    comment: String,
    at: i64,
}

impl OperationRecord {
    fn into_row(self, approvals: Vec<Approval>) -> Result<OperationRow, StoreError> {
        Ok(OperationRow {
            id: self.id,
            op: NewOperation {
                kind: OperationKind::parse(&self.kind)
                    .ok_or_else(|| corrupt("operation kind", &self.kind))?,
                target: self.target,
                requested_by: self.requested_by,
                approvals_needed: u32::try_from(self.approvals_needed)
                    .map_err(|e| corrupt("operation approvals needed", e))?,
                expires_at: from_unix_micros(self.expires_at),
            },
            status: OperationStatus::parse(&self.status)
                .ok_or_else(|| corrupt("operation status", &self.status))?,
            approvals,
            created_at: from_unix_micros(self.created_at),
            decided_by: self.decided_by,
            reason: self.reason,
        })
    }
}

fn record(conn: &mut AnyConnection, id: i64) -> Result<Option<OperationRecord>, OpError> {
    Ok(operations::table
        .find(id)
        .select(OperationRecord::as_select())
        .get_result(conn)
        .optional()?)
}

fn approvals_of(conn: &mut AnyConnection, id: i64) -> Result<Vec<Approval>, OpError> {
    Ok(operation_approvals::table
        .filter(operation_approvals::operation_id.eq(id))
        .order((
            operation_approvals::at.asc(),
            operation_approvals::officer.asc(),
        ))
        .select(ApprovalRecord::as_select())
        .load(conn)?
        .into_iter()
        .map(|a| Approval {
            officer: a.officer,
            comment: a.comment,
            at: from_unix_micros(a.at),
        })
        .collect())
}

fn row(conn: &mut AnyConnection, id: i64) -> Result<Option<OperationRow>, StoreError> {
    let Some(r) = record(conn, id)? else {
        return Ok(None);
    };
    let approvals = approvals_of(conn, id)?;
    Ok(Some(r.into_row(approvals)?))
}

/// The pending `create_admin` operation waiting for user `name`, if any.
/// The operations that activate an account they created disabled.
const ACCOUNT_KINDS: [&str; 2] = ["create_admin", "grant_officer"];

pub(crate) fn pending_admin_op(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<i64>, OpError> {
    Ok(operations::table
        .filter(operations::kind.eq_any(ACCOUNT_KINDS))
        .filter(operations::target.eq(name))
        .filter(operations::status.eq(OperationStatus::Pending.as_str()))
        .select(operations::id)
        .first(conn)
        .optional()?)
}

/// The last `create_admin` operation for user `name` if it did not end in `done`: its id,
/// and why the account must stay disabled (`pending`, `expired`, `rejected`, `failed`).
/// An account whose creation the officers refused, or let expire, is never usable.
pub(crate) fn unfinished_admin_op(
    conn: &mut AnyConnection,
    name: &str,
    now: SystemTime,
) -> Result<Option<(i64, &'static str)>, OpError> {
    let last: Option<(i64, String, i64)> = operations::table
        .filter(operations::kind.eq_any(ACCOUNT_KINDS))
        .filter(operations::target.eq(name))
        .order(operations::id.desc())
        .select((operations::id, operations::status, operations::expires_at))
        .first(conn)
        .optional()?;
    let Some((id, status, expires_at)) = last else {
        return Ok(None);
    };
    let status =
        OperationStatus::parse(&status).ok_or_else(|| corrupt("operation status", &status))?;
    Ok(match status {
        OperationStatus::Done => None,
        OperationStatus::Pending if unix_micros(now) >= expires_at => Some((id, "expired")),
        s => Some((id, s.as_str())),
    })
}

fn insert(tx: &mut Tx<'_>, op: &NewOperation, event: &AuditEvent) -> Result<i64, OpError> {
    let last: Option<i64> = operations::table
        .select(diesel::dsl::max(operations::id))
        .get_result(tx.conn)?;
    let id = last.unwrap_or(0) + 1;
    diesel::insert_into(operations::table)
        .values(OperationRecord {
            id,
            kind: op.kind.as_str().to_owned(),
            target: op.target.clone(),
            requested_by: op.requested_by.clone(),
            approvals_needed: i64::from(op.approvals_needed),
            status: OperationStatus::Pending.as_str().to_owned(),
            created_at: unix_micros(tx.now),
            expires_at: unix_micros(op.expires_at),
            decided_by: None,
            reason: None,
        })
        .execute(tx.conn)?;
    let mut event = event.clone();
    if event.object.is_empty() {
        event.object = format!("operation:{id}");
    }
    tx.audit(&event)?;
    Ok(id)
}

fn pending(tx: &mut Tx<'_>, id: i64) -> Result<OperationRecord, OpError> {
    let r = record(tx.conn, id)?.ok_or_else(|| StoreError::NotFound(format!("operation {id}")))?;
    if r.status != OperationStatus::Pending.as_str() {
        return Err(
            StoreError::Conflict(format!("operation {id} is {}, not pending", r.status)).into(),
        );
    }
    Ok(r)
}

/// An operation as the approval rules see it: the administrator a `create_admin` operation
/// would enable may not approve it.
fn operation_subject(r: &OperationRecord) -> ca_core::approval::Subject<'_> {
    ca_core::approval::Subject {
        kind: "operation",
        id: r.id,
        requested_by: &r.requested_by,
        expires_at: from_unix_micros(r.expires_at),
        // Every operation on an account (creating it, granting or resetting it) benefits it.
        beneficiary: (r.kind != OperationKind::DestroyKey.as_str()).then_some(r.target.as_str()),
    }
}

fn approve(
    tx: &mut Tx<'_>,
    id: i64,
    approval: &Approval,
    now: SystemTime,
    event: &AuditEvent,
) -> Result<OperationRow, OpError> {
    let r = pending(tx, id)?;
    let already: i64 = operation_approvals::table
        .filter(operation_approvals::operation_id.eq(id))
        .filter(operation_approvals::officer.eq(&approval.officer))
        .count()
        .get_result(tx.conn)?;
    ca_core::approval::admit(&operation_subject(&r), &approval.officer, already > 0, now)
        .map_err(StoreError::Conflict)?;
    diesel::insert_into(operation_approvals::table)
        .values(ApprovalRecord {
            operation_id: id,
            officer: approval.officer.clone(),
            comment: approval.comment.clone(),
            at: unix_micros(approval.at),
        })
        .execute(tx.conn)?;
    tx.audit(event)?;
    let approvals = approvals_of(tx.conn, id)?;
    Ok(r.into_row(approvals)?)
}

fn set_status(
    tx: &mut Tx<'_>,
    id: i64,
    status: OperationStatus,
    decided_by: Option<&str>,
    reason: Option<&str>,
) -> Result<(), OpError> {
    diesel::update(operations::table.find(id))
        .set((
            operations::status.eq(status.as_str()),
            operations::decided_by.eq(decided_by),
            operations::reason.eq(reason),
        ))
        .execute(tx.conn)?;
    Ok(())
}

impl OperationStore for Db {
    fn create_operation(&self, op: &NewOperation, event: &AuditEvent) -> Result<i64, StoreError> {
        let (op, event) = (op.clone(), event.clone());
        self.writer.write(move |tx| insert(tx, &op, &event))
    }

    fn create_pending_admin(
        &self,
        user: &NewUser,
        op: &NewOperation,
        user_event: &AuditEvent,
        op_event: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let (user, op, user_event, op_event) = (
            user.clone(),
            op.clone(),
            user_event.clone(),
            op_event.clone(),
        );
        self.writer.write(move |tx| {
            crate::users::create(tx, &user, &user_event)?;
            // Disabled until the quorum activates it: it cannot sign in before.
            diesel::update(crate::schema::users::table.find(&user.name))
                .set((
                    crate::schema::users::disabled.eq(true),
                    crate::schema::users::officer_since.eq(None::<i64>),
                ))
                .execute(tx.conn)?;
            insert(tx, &op, &op_event)
        })
    }

    fn operation(&self, id: i64) -> Result<Option<OperationRow>, StoreError> {
        self.read(|conn| row(conn, id))
    }

    fn operations(&self, pending_only: bool) -> Result<Vec<OperationRow>, StoreError> {
        self.read(|conn| {
            let mut q = operations::table.into_boxed();
            if pending_only {
                q = q.filter(operations::status.eq(OperationStatus::Pending.as_str()));
            }
            let records: Vec<OperationRecord> = q
                .order(operations::id.desc())
                .limit(500)
                .select(OperationRecord::as_select())
                .load(conn)
                .map_err(db_error)?;
            records
                .into_iter()
                .map(|r| {
                    let approvals = approvals_of(conn, r.id)?;
                    r.into_row(approvals)
                })
                .collect()
        })
    }

    fn pending_admin(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.read(|conn| Ok(pending_admin_op(conn, name)?))
    }

    fn approve_operation(
        &self,
        id: i64,
        approval: &Approval,
        now: SystemTime,
        event: &AuditEvent,
    ) -> Result<OperationRow, StoreError> {
        let (approval, event) = (approval.clone(), event.clone());
        self.writer
            .write(move |tx| approve(tx, id, &approval, now, &event))
    }

    fn reject_operation(
        &self,
        id: i64,
        officer: &str,
        reason: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (officer, reason, event) = (officer.to_owned(), reason.to_owned(), event.clone());
        self.writer.write(move |tx| {
            let r = pending(tx, id)?;
            ca_core::approval::may_reject(&operation_subject(&r), &officer)
                .map_err(StoreError::Conflict)?;
            set_status(
                tx,
                id,
                OperationStatus::Rejected,
                Some(&officer),
                Some(&reason),
            )?;
            tx.audit(&event)
        })
    }

    fn finish_operation(
        &self,
        id: i64,
        failed: Option<&str>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (failed, event) = (failed.map(str::to_owned), event.clone());
        self.writer.write(move |tx| {
            pending(tx, id)?;
            let status = if failed.is_some() {
                OperationStatus::Failed
            } else {
                OperationStatus::Done
            };
            set_status(tx, id, status, None, failed.as_deref())?;
            tx.audit(&event)
        })
    }

    fn activate_admin(&self, id: i64, event: &AuditEvent) -> Result<(), StoreError> {
        let event = event.clone();
        self.writer.write(move |tx| {
            let r = pending(tx, id)?;
            if !ACCOUNT_KINDS.contains(&r.kind.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "operation {id} does not create an account"
                ))
                .into());
            }
            use crate::schema::users;
            let roles: String = users::table
                .find(&r.target)
                .select(users::roles)
                .get_result(tx.conn)?;
            // The officer role counts from the quorum on, for what is made after it.
            let officer = roles.split(',').any(|p| p == "officer");
            diesel::update(users::table.find(&r.target))
                .set((
                    users::disabled.eq(false),
                    users::officer_since.eq(officer.then(|| crate::unix_micros(tx.now))),
                ))
                .execute(tx.conn)?;
            set_status(tx, id, OperationStatus::Done, None, None)?;
            tx.audit(&event)
        })
    }
}
