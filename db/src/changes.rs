//! The changes, each run by the writer in its own savepoint with its audit entries.
//!
//! Each checks the state it changes first and fails with `Conflict` or `NotFound` before
//! writing anything (the writer relies on this: see `writer.rs`); a change that fails any
//! other way is undone by the writer's rollback.
//!
//! Lookups of at most one row (by a primary or unique key) use `get_result`, not `first`:
//! `first` adds `LIMIT ?`, and SQLite then re-prepares the statement on every call (measured:
//! 20 µs instead of 8 µs per lookup).

use ca_core::audit::{AuditEvent, Checkpoint, from_unix_micros};
use ca_core::store::{
    Approval, CertStatus, NewCertificate, NewRequest, RequestRow, RequestStatus, Serial, StoreError,
};
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::OpError;
use crate::records::{
    ApprovalRecord, CheckpointRecord, NewCertRecord, NewIssuerRecord, NewRequestRecord,
};
use crate::schema::{approvals, audit_checkpoints, audit_log, certificates, issuers, requests};
use crate::writer::{Merged, Tx};
use crate::{read, unix_micros};

pub(crate) fn ensure_issuer(tx: &mut Tx<'_>, id: &str, der: &[u8]) -> Result<(), OpError> {
    let known: Option<Vec<u8>> = issuers::table
        .find(id)
        .select(issuers::certificate)
        .get_result(tx.conn)
        .optional()?;
    match known {
        Some(known) if known == der => Ok(()),
        Some(_) => Err(conflict(format!(
            "issuer {id} is recorded with a different certificate"
        ))),
        None => {
            diesel::insert_into(issuers::table)
                .values(NewIssuerRecord {
                    id,
                    certificate: der,
                    created_at: unix_micros(tx.now),
                })
                .execute(tx.conn)?;
            Ok(())
        }
    }
}

pub(crate) fn audit(tx: &mut Tx<'_>, events: &[AuditEvent]) -> Result<(), OpError> {
    for event in events {
        tx.audit(event)?;
    }
    Ok(())
}

pub(crate) fn reserve(
    tx: &mut Tx<'_>,
    cert: &NewCertificate,
    event: &AuditEvent,
) -> Result<(), OpError> {
    if let Some(Merged::Reserved(inserted)) = tx.take_merged() {
        // The writer inserted the row with the batch's others (`writer/merge.rs`); the
        // issuer's foreign key stood in for the lookup below. A row not inserted is
        // refused as it would be alone: an unknown issuer first, then the serial in use.
        if !inserted {
            known_issuer(tx, cert)?;
            return Err(in_use(&cert.serial));
        }
        return tx.audit_later(event);
    }
    known_issuer(tx, cert)?;
    if let Some(id) = cert.request_id {
        let status = request_status(tx, id)?;
        if status != RequestStatus::Pending {
            return Err(conflict(format!(
                "request {id} is {}, not pending",
                status.as_str()
            )));
        }
        if let Some(serial) = request_certificate(tx, id)? {
            return Err(conflict(format!(
                "request {id} already has certificate {serial}"
            )));
        }
    }
    let row = NewCertRecord::reserved(cert, tx.now, tx.node.map(|n| n.instance.as_str()));
    // A serial already in use inserts nothing: that is the check, in the same statement.
    let insert = diesel::insert_into(certificates::table)
        .values(row)
        .on_conflict(certificates::serial)
        .do_nothing();
    let inserted = match &mut *tx.conn {
        AnyConnection::Sqlite(c) => insert.execute(c)?,
        AnyConnection::Postgres(c) => insert.execute(c)?,
    };
    if inserted == 0 {
        return Err(in_use(&cert.serial));
    }
    tx.audit_later(event)
}

fn known_issuer(tx: &mut Tx<'_>, cert: &NewCertificate) -> Result<(), OpError> {
    let issuer: Option<String> = issuers::table
        .find(cert.issuer.as_str())
        .select(issuers::id)
        .get_result(tx.conn)
        .optional()?;
    match issuer {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("issuer {}", cert.issuer)).into()),
    }
}

fn in_use(serial: &Serial) -> OpError {
    conflict(format!("serial {serial} is already in use"))
}

pub(crate) fn complete(
    tx: &mut Tx<'_>,
    serial: &Serial,
    der: &[u8],
    event: &AuditEvent,
) -> Result<(), OpError> {
    // The check (reserved) and the change in one statement; only when it changes nothing
    // does a read say why.
    let update = diesel::update(
        certificates::table
            .find(serial.as_str())
            .filter(certificates::status.eq(CertStatus::Reserved.as_str())),
    )
    .set((
        certificates::status.eq(CertStatus::Valid.as_str()),
        certificates::der.eq(der),
    ))
    .returning((
        certificates::request_id,
        certificates::requester,
        certificates::created_at,
    ));
    let updated: Option<(Option<i64>, String, i64)> = match (tx.take_merged(), &mut *tx.conn) {
        // The writer updated the row with the batch's others (`writer/merge.rs`).
        (Some(Merged::Completed(row)), _) => row,
        (_, AnyConnection::Sqlite(c)) => update.get_result(c).optional()?,
        (_, AnyConnection::Postgres(c)) => update.get_result(c).optional()?,
    };
    let Some((request_id, requester, created_at)) = updated else {
        return Err(match cert_status(tx, serial)? {
            None => StoreError::NotFound(format!("certificate {serial}")).into(),
            Some((status, _)) => {
                conflict(format!("certificate {serial} is {status}, not reserved"))
            }
        });
    };
    // The dashboard's per-day count: added up over the batch, written once per day and
    // requester at its end (see `writer.rs`).
    tx.count_issued(created_at, requester);
    if let Some(id) = request_id {
        // The request was pending when the serial was reserved, and `reject` and
        // `fail_request` refuse a request whose certificate is being signed.
        diesel::update(requests::table.find(id))
            .set((
                requests::status.eq(RequestStatus::Issued.as_str()),
                requests::serial.eq(serial.as_str()),
            ))
            .execute(tx.conn)?;
    }
    tx.audit_later(event)
}

pub(crate) fn fail(
    tx: &mut Tx<'_>,
    serial: &Serial,
    reason: &str,
    event: &AuditEvent,
) -> Result<(), OpError> {
    let request_id = reserved(tx, serial)?;
    diesel::update(certificates::table.find(serial.as_str()))
        .set((
            certificates::status.eq(CertStatus::Failed.as_str()),
            certificates::failure.eq(reason),
        ))
        .execute(tx.conn)?;
    if let Some(id) = request_id {
        diesel::update(
            requests::table
                .find(id)
                .filter(requests::status.eq(RequestStatus::Pending.as_str())),
        )
        .set((
            requests::status.eq(RequestStatus::Failed.as_str()),
            requests::reason.eq(reason),
        ))
        .execute(tx.conn)?;
    }
    tx.audit(event)
}

pub(crate) fn create_request(
    tx: &mut Tx<'_>,
    request: &NewRequest,
    event: &AuditEvent,
) -> Result<i64, OpError> {
    // Every write holds the chain lock, so max + 1 cannot be taken twice.
    let last: Option<i64> = requests::table
        .select(diesel::dsl::max(requests::id))
        .get_result(tx.conn)?;
    let id = last.unwrap_or(0) + 1;
    diesel::insert_into(requests::table)
        .values(NewRequestRecord::pending(id, request, tx.now))
        .execute(tx.conn)?;
    let mut event = event.clone();
    if event.object.is_empty() {
        event.object = format!("request:{id}");
    }
    tx.audit(&event)?;
    Ok(id)
}

pub(crate) fn approve(
    tx: &mut Tx<'_>,
    id: i64,
    approval: &Approval,
    now: std::time::SystemTime,
    event: &AuditEvent,
) -> Result<RequestRow, OpError> {
    let request = read::request_record(tx.conn, id)?
        .ok_or_else(|| StoreError::NotFound(format!("request {id}")))?;
    let status = request.status()?;
    if status != RequestStatus::Pending {
        return Err(conflict(format!(
            "request {id} is {}, not pending",
            status.as_str()
        )));
    }
    let already: i64 = approvals::table
        .filter(approvals::request_id.eq(id))
        .filter(approvals::officer.eq(&approval.officer))
        .count()
        .get_result(tx.conn)?;
    ca_core::approval::admit(
        &request_subject(&request),
        &approval.officer,
        already > 0,
        now,
    )
    .map_err(conflict)?;
    diesel::insert_into(approvals::table)
        .values(ApprovalRecord::new(id, approval))
        .execute(tx.conn)?;
    tx.audit(event)?;
    let approvals = read::approvals_of(tx.conn, id)?;
    Ok(request.into_row(approvals)?)
}

pub(crate) fn reject(
    tx: &mut Tx<'_>,
    id: i64,
    officer: &str,
    reason: &str,
    event: &AuditEvent,
) -> Result<(), OpError> {
    let request = decidable(tx, id)?;
    ca_core::approval::may_reject(&request_subject(&request), officer).map_err(conflict)?;
    diesel::update(requests::table.find(id))
        .set((
            requests::status.eq(RequestStatus::Rejected.as_str()),
            requests::decided_by.eq(officer),
            requests::reason.eq(reason),
        ))
        .execute(tx.conn)?;
    tx.audit(event)
}

pub(crate) fn fail_request(
    tx: &mut Tx<'_>,
    id: i64,
    reason: &str,
    event: &AuditEvent,
) -> Result<(), OpError> {
    decidable(tx, id)?;
    diesel::update(requests::table.find(id))
        .set((
            requests::status.eq(RequestStatus::Failed.as_str()),
            requests::reason.eq(reason),
        ))
        .execute(tx.conn)?;
    tx.audit(event)
}

pub(crate) fn add_checkpoint(
    tx: &mut Tx<'_>,
    checkpoint: &Checkpoint,
    event: &AuditEvent,
) -> Result<(), OpError> {
    let seq = checkpoint.seq;
    let entry: Option<Vec<u8>> = audit_log::table
        .find(seq)
        .select(audit_log::hash)
        .get_result(tx.conn)
        .optional()?;
    match entry {
        None => return Err(StoreError::NotFound(format!("audit entry {seq}")).into()),
        Some(hash) if hash != checkpoint.head_hash => {
            return Err(conflict(format!(
                "the checkpoint names a different hash than audit entry {seq}"
            )));
        }
        Some(_) => {}
    }
    let exists: i64 = audit_checkpoints::table
        .filter(audit_checkpoints::seq.eq(seq))
        .count()
        .get_result(tx.conn)?;
    if exists > 0 {
        return Err(conflict(format!(
            "audit entry {seq} is already checkpointed"
        )));
    }
    diesel::insert_into(audit_checkpoints::table)
        .values(CheckpointRecord::from(checkpoint))
        .execute(tx.conn)?;
    tx.audit(event)
}

fn conflict(message: String) -> OpError {
    StoreError::Conflict(message).into()
}

fn cert_status(tx: &mut Tx<'_>, serial: &Serial) -> Result<Option<(String, Option<i64>)>, OpError> {
    Ok(certificates::table
        .find(serial.as_str())
        .select((certificates::status, certificates::request_id))
        .get_result(tx.conn)
        .optional()?)
}

/// The serial's request, if the serial is reserved; `NotFound` or `Conflict` otherwise.
fn reserved(tx: &mut Tx<'_>, serial: &Serial) -> Result<Option<i64>, OpError> {
    match cert_status(tx, serial)? {
        None => Err(StoreError::NotFound(format!("certificate {serial}")).into()),
        Some((status, request_id)) if status == CertStatus::Reserved.as_str() => Ok(request_id),
        Some((status, _)) => Err(conflict(format!(
            "certificate {serial} is {status}, not reserved"
        ))),
    }
}

fn request_status(tx: &mut Tx<'_>, id: i64) -> Result<RequestStatus, OpError> {
    let status: Option<String> = requests::table
        .find(id)
        .select(requests::status)
        .get_result(tx.conn)
        .optional()?;
    let status = status.ok_or_else(|| StoreError::NotFound(format!("request {id}")))?;
    RequestStatus::parse(&status)
        .ok_or_else(|| crate::error::corrupt("request status", &status).into())
}

fn request_certificate(tx: &mut Tx<'_>, id: i64) -> Result<Option<String>, OpError> {
    Ok(certificates::table
        .filter(certificates::request_id.eq(id))
        .select(certificates::serial)
        .get_result(tx.conn)
        .optional()?)
}

/// A request as the approval rules see it.
fn request_subject(request: &crate::records::RequestRecord) -> ca_core::approval::Subject<'_> {
    ca_core::approval::Subject {
        kind: "request",
        id: request.id,
        requested_by: &request.requester,
        expires_at: from_unix_micros(request.expires_at),
        beneficiary: None,
    }
}

/// A request that an officer or the issuance can still decide: pending, and with no
/// certificate being signed for it.
fn decidable(tx: &mut Tx<'_>, id: i64) -> Result<crate::records::RequestRecord, OpError> {
    let request = read::request_record(tx.conn, id)?
        .ok_or_else(|| StoreError::NotFound(format!("request {id}")))?;
    let status = request.status()?;
    if status != RequestStatus::Pending {
        return Err(conflict(format!(
            "request {id} is {}, not pending",
            status.as_str()
        )));
    }
    if let Some(serial) = request_certificate(tx, id)? {
        return Err(conflict(format!(
            "request {id} is being issued as certificate {serial}"
        )));
    }
    Ok(request)
}
