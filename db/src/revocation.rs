//! Revocation: the change that revokes (run by the writer, with its audit entry), the reads
//! CRLs and OCSP need, and CRL number allocation.

use std::time::SystemTime;

use ca_core::audit::{AuditEvent, from_unix_micros};
use ca_core::revocation::Reason;
use ca_core::store::{CertStatus, Revocation, RevokedEntry, Serial, SerialStatus, StoreError};
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::{OpError, corrupt, db_error};
use crate::schema::{certificates, crl_numbers, revocations};
use crate::unix_micros;
use crate::writer::Tx;

/// Revokes an issued certificate. Decides (`NotFound`, `Conflict`) before writing anything,
/// as the writer requires.
pub(crate) fn revoke(
    tx: &mut Tx<'_>,
    revocation: &Revocation,
    event: &AuditEvent,
) -> Result<(), OpError> {
    let serial = &revocation.serial;
    let status: Option<String> = certificates::table
        .find(serial.as_str())
        .select(certificates::status)
        .get_result(tx.conn)
        .optional()?;
    let status = status.ok_or_else(|| StoreError::NotFound(format!("certificate {serial}")))?;
    let refuse = |why: &str| -> Result<(), OpError> {
        Err(StoreError::Conflict(format!("certificate {serial} {why}")).into())
    };
    match CertStatus::parse(&status) {
        Some(CertStatus::Valid) => {}
        Some(CertStatus::Revoked) => return refuse("is already revoked"),
        Some(CertStatus::Reserved) => {
            return refuse("is still being signed (reserved) and cannot be revoked yet");
        }
        Some(CertStatus::Failed) => return refuse("was never issued (its issuance failed)"),
        None => return Err(corrupt("certificate status", &status).into()),
    }
    diesel::update(
        certificates::table
            .find(serial.as_str())
            .filter(certificates::status.eq(CertStatus::Valid.as_str())),
    )
    .set(certificates::status.eq(CertStatus::Revoked.as_str()))
    .execute(tx.conn)?;
    diesel::insert_into(revocations::table)
        .values((
            revocations::serial.eq(serial.as_str()),
            revocations::revoked_at.eq(unix_micros(revocation.revoked_at)),
            revocations::reason.eq(i32::from(revocation.reason.code())),
            revocations::invalidity_date.eq(revocation.invalidity_date.map(unix_micros)),
        ))
        .execute(tx.conn)?;
    tx.audit(event)
}

/// Allocates the issuer's next CRL number. The writer's transaction holds the audit chain
/// lock (SQLite: the file's write lock; PostgreSQL: the `audit_head` row), and the UPDATE
/// takes the `crl_numbers` row lock as well, so no two processes get the same number.
pub(crate) fn next_crl_number(tx: &mut Tx<'_>, issuer: &str) -> Result<u64, OpError> {
    let updated = diesel::update(crl_numbers::table.find(issuer))
        .set(crl_numbers::last.eq(crl_numbers::last + 1))
        .execute(tx.conn)?;
    if updated == 0 {
        diesel::insert_into(crl_numbers::table)
            .values((crl_numbers::issuer.eq(issuer), crl_numbers::last.eq(1_i64)))
            .execute(tx.conn)?;
    }
    let last: i64 = crl_numbers::table
        .find(issuer)
        .select(crl_numbers::last)
        .get_result(tx.conn)?;
    u64::try_from(last).map_err(|e| corrupt("crl number", e).into())
}

/// serial, revoked_at, reason, invalidity_date, not_after.
type RevokedRow = (String, i64, i32, Option<i64>, i64);

/// issuer, status, not_after, revoked_at, reason.
type StatusRow = (String, String, i64, Option<i64>, Option<i32>);

fn reason(code: i32) -> Result<Reason, StoreError> {
    u8::try_from(code)
        .ok()
        .and_then(Reason::from_code)
        .ok_or_else(|| corrupt("revocation reason", code))
}

/// The issuer's revoked certificates whose notAfter is not before `now`, by serial.
pub(crate) fn revoked_unexpired(
    conn: &mut AnyConnection,
    issuer: &str,
    now: SystemTime,
) -> Result<Vec<RevokedEntry>, StoreError> {
    let rows: Vec<RevokedRow> = certificates::table
        .inner_join(revocations::table)
        .filter(certificates::issuer.eq(issuer))
        .filter(certificates::status.eq(CertStatus::Revoked.as_str()))
        .filter(certificates::not_after.ge(unix_micros(now)))
        .order(certificates::serial.asc())
        .select((
            certificates::serial,
            revocations::revoked_at,
            revocations::reason,
            revocations::invalidity_date,
            certificates::not_after,
        ))
        .load(conn)
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(serial, at, code, invalidity, not_after)| {
            Ok(RevokedEntry {
                serial: Serial::parse(&serial).map_err(|e| corrupt("serial", e))?,
                revoked_at: from_unix_micros(at),
                reason: reason(code)?,
                invalidity_date: invalidity.map(from_unix_micros),
                not_after: from_unix_micros(not_after),
            })
        })
        .collect()
}

/// One serial's status, if `issuer` issued it.
pub(crate) fn status(
    conn: &mut AnyConnection,
    issuer: &str,
    serial: &Serial,
) -> Result<Option<SerialStatus>, StoreError> {
    let row: Option<StatusRow> = certificates::table
        .left_join(revocations::table)
        .filter(certificates::serial.eq(serial.as_str()))
        .select((
            certificates::issuer,
            certificates::status,
            certificates::not_after,
            revocations::revoked_at.nullable(),
            revocations::reason.nullable(),
        ))
        .get_result(conn)
        .optional()
        .map_err(db_error)?;
    let Some((owner, status, not_after, at, code)) = row else {
        return Ok(None);
    };
    if owner != issuer {
        return Ok(None);
    }
    let status =
        CertStatus::parse(&status).ok_or_else(|| corrupt("certificate status", &status))?;
    let revoked = match (status, at, code) {
        (CertStatus::Revoked, Some(at), Some(code)) => Some((from_unix_micros(at), reason(code)?)),
        (CertStatus::Revoked, _, _) => {
            return Err(corrupt(
                "revocation",
                format!("certificate {serial} is revoked but has no revocation record"),
            ));
        }
        _ => None,
    };
    Ok(Some(SerialStatus {
        status,
        not_after: from_unix_micros(not_after),
        revoked,
    }))
}

/// See [`ca_core::store::Store::revoked_since`]; the `revocations (revoked_at)` index
/// answers it.
pub(crate) fn revoked_since(
    conn: &mut AnyConnection,
    since: SystemTime,
) -> Result<Vec<(ca_core::issuer::IssuerId, Serial)>, StoreError> {
    let rows: Vec<(String, String)> = revocations::table
        .inner_join(certificates::table.on(certificates::serial.eq(revocations::serial)))
        .filter(revocations::revoked_at.ge(unix_micros(since)))
        .order((revocations::revoked_at.asc(), revocations::serial.asc()))
        .select((certificates::issuer, revocations::serial))
        .load(conn)
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(issuer, serial)| {
            let issuer = ca_core::issuer::IssuerId::new(&issuer)
                .map_err(|_| corrupt("issuer id", &issuer))?;
            let serial = Serial::parse(&serial).map_err(|_| corrupt("serial", &serial))?;
            Ok((issuer, serial))
        })
        .collect()
}
