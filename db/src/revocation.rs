//! Revocation: the change that revokes (run by the writer, with its audit entry), the reads
//! CRLs and OCSP need, and CRL number allocation.

use std::time::SystemTime;

use ca_core::audit::{AuditEvent, from_unix_micros};
use ca_core::issuer::IssuerId;
use ca_core::revocation::Reason;
use ca_core::store::{
    CaRevocation, CertStatus, CrlEntry, CrlList, Revocation, Serial, SerialStatus, StoreError,
};
use diesel::connection::DefaultLoadingMode;
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::{OpError, corrupt, db_error};
use crate::schema::{ca_revocations, certificates, crl_numbers, revocations};
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
    let row: Option<(String, String, i64)> = certificates::table
        .find(serial.as_str())
        .select((
            certificates::status,
            certificates::issuer,
            certificates::not_after,
        ))
        .get_result(tx.conn)
        .optional()?;
    let (status, issuer, not_after) =
        row.ok_or_else(|| StoreError::NotFound(format!("certificate {serial}")))?;
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
            // Copies the CRL reads without a join (see the crl_reads migration).
            revocations::issuer.eq(&issuer),
            revocations::not_after.eq(not_after),
        ))
        .execute(tx.conn)?;
    crate::publication::notify(
        tx.conn,
        crate::publication::REVOKED,
        &format!("{issuer} {serial}"),
    )?;
    crate::publication::drop_answers(tx.conn, serial.as_str())?;
    tx.audit(event)
}

/// Allocates the issuer's next CRL number: the stored number plus one, or `floor` (the
/// CRL's thisUpdate in unix microseconds) if that is larger. The writer's transaction holds
/// the audit chain lock (SQLite: the file's write lock; PostgreSQL: the `audit_head` row),
/// and the first UPDATE takes the `crl_numbers` row lock as well, so no two processes get
/// the same number.
pub(crate) fn next_crl_number(tx: &mut Tx<'_>, issuer: &str, floor: i64) -> Result<u64, OpError> {
    let updated = diesel::update(crl_numbers::table.find(issuer))
        .set(crl_numbers::last.eq(crl_numbers::last + 1))
        .execute(tx.conn)?;
    if updated == 0 {
        diesel::insert_into(crl_numbers::table)
            .values((crl_numbers::issuer.eq(issuer), crl_numbers::last.eq(1_i64)))
            .execute(tx.conn)?;
    }
    let mut last: i64 = crl_numbers::table
        .find(issuer)
        .select(crl_numbers::last)
        .get_result(tx.conn)?;
    if last < floor {
        diesel::update(crl_numbers::table.find(issuer))
            .set(crl_numbers::last.eq(floor))
            .execute(tx.conn)?;
        last = floor;
    }
    u64::try_from(last).map_err(|e| corrupt("crl number", e).into())
}

/// issuer, status, not_after, revoked_at, reason.
type StatusRow = (String, String, i64, Option<i64>, Option<i32>);

fn reason(code: i32) -> Result<Reason, StoreError> {
    u8::try_from(code)
        .ok()
        .and_then(Reason::from_code)
        .ok_or_else(|| corrupt("revocation reason", code))
}

fn crl_entry(
    serial: &str,
    at: i64,
    code: i32,
    invalidity: Option<i64>,
) -> Result<CrlEntry, StoreError> {
    CrlEntry::from_hex(
        serial.as_bytes(),
        reason(code)?,
        from_unix_micros(at),
        invalidity.map(from_unix_micros),
    )
    .map_err(|e| corrupt("serial", e))
}

/// What `issuer`'s next CRL lists at `now`, in one read-only snapshot (SQLite: one read
/// transaction of the WAL; PostgreSQL: REPEATABLE READ), so a revocation committed meanwhile
/// is either in both the list and the count or in neither.
///
/// The list is streamed row by row into fixed-size entries (no row structs, no second copy),
/// in serial order from one sequential scan of the `revocations_crl` covering index (no
/// join). The count is a separate query over `certificates` alone (their status), which the
/// CRL's self-check compares with the list. The CA certificates this issuer revoked come
/// from `ca_revocations`.
pub(crate) fn crl_entries(
    conn: &mut AnyConnection,
    issuer: &str,
    now: SystemTime,
) -> Result<CrlList, StoreError> {
    let now = unix_micros(now);
    conn.transaction::<_, OpError, _>(|conn| {
        if let AnyConnection::Postgres(_) = conn {
            diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(conn)?;
        }
        read_crl_entries(conn, issuer, now)
    })
    .map_err(StoreError::from)
}

/// Allocates the issuer's next CRL number (as [`next_crl_number`]) and reads what that CRL
/// lists (as [`crl_entries`]) in the same write transaction, so that number and content
/// come from one snapshot and in number order: the `crl_numbers` row lock and the audit
/// chain lock (which every revocation takes too) are held from the number to the commit.
/// So no revocation commits between the count and the list, and a generator that gets a
/// higher number reads after the one with the lower number committed: a higher number
/// never lacks a revocation a lower one lists.
pub(crate) fn numbered_crl_entries(
    tx: &mut Tx<'_>,
    issuer: &str,
    floor: i64,
    now: SystemTime,
) -> Result<(u64, CrlList), OpError> {
    let number = next_crl_number(tx, issuer, floor)?;
    let list = read_crl_entries(tx.conn, issuer, unix_micros(now))?;
    Ok((number, list))
}

/// The reads of [`crl_entries`], in the caller's transaction.
fn read_crl_entries(conn: &mut AnyConnection, issuer: &str, now: i64) -> Result<CrlList, OpError> {
    let counted: i64 = certificates::table
        .filter(certificates::issuer.eq(issuer))
        .filter(certificates::status.eq(CertStatus::Revoked.as_str()))
        .filter(certificates::not_after.ge(now))
        .count()
        .get_result(conn)?;
    let counted = u64::try_from(counted).map_err(|e| corrupt("count", e))?;
    let cas: Vec<(String, i64, i32)> = ca_revocations::table
        .filter(ca_revocations::parent.eq(issuer))
        .filter(ca_revocations::not_after.ge(now))
        .select((
            ca_revocations::serial,
            ca_revocations::revoked_at,
            ca_revocations::reason,
        ))
        .load(conn)?;
    let mut entries = Vec::with_capacity(usize::try_from(counted).unwrap_or(0) + cas.len());
    let rows = revocations::table
        .filter(revocations::issuer.eq(issuer))
        .filter(revocations::not_after.ge(now))
        .order(revocations::serial.asc())
        .select((
            revocations::serial,
            revocations::revoked_at,
            revocations::reason,
            revocations::invalidity_date,
        ))
        .load_iter::<(String, i64, i32, Option<i64>), DefaultLoadingMode>(conn)?;
    for row in rows {
        let (serial, at, code, invalidity) = row?;
        entries.push(crl_entry(&serial, at, code, invalidity)?);
    }
    for (serial, at, code) in &cas {
        entries.push(crl_entry(serial, *at, *code, None)?);
    }
    Ok(CrlList {
        entries,
        counted: counted + cas.len() as u64,
    })
}

/// Records a CA certificate's revocation by its parent. Decides (`Conflict`) before
/// writing anything, as the writer requires.
pub(crate) fn revoke_ca(
    tx: &mut Tx<'_>,
    revocation: &CaRevocation,
    event: &AuditEvent,
) -> Result<(), OpError> {
    let parent = revocation.parent.as_str();
    let serial = revocation.serial.as_str();
    let already: i64 = ca_revocations::table
        .filter(ca_revocations::parent.eq(parent))
        .filter(ca_revocations::serial.eq(serial))
        .count()
        .get_result(tx.conn)?;
    if already > 0 {
        return Err(StoreError::Conflict(format!(
            "the certificate of CA {} (serial {serial}) is already revoked",
            revocation.ca
        ))
        .into());
    }
    diesel::insert_into(ca_revocations::table)
        .values((
            ca_revocations::parent.eq(parent),
            ca_revocations::serial.eq(serial),
            ca_revocations::ca.eq(revocation.ca.as_str()),
            ca_revocations::not_after.eq(unix_micros(revocation.not_after)),
            ca_revocations::revoked_at.eq(unix_micros(revocation.revoked_at)),
            ca_revocations::reason.eq(i32::from(revocation.reason.code())),
            ca_revocations::revoked_by.eq(&revocation.revoked_by),
        ))
        .execute(tx.conn)?;
    crate::publication::notify(
        tx.conn,
        crate::publication::REVOKED,
        &format!("{parent} {serial}"),
    )?;
    crate::publication::drop_answers(tx.conn, serial)?;
    tx.audit(event)
}

/// parent, serial, ca, not_after, revoked_at, reason, revoked_by.
type CaRevocationRow = (String, String, String, i64, i64, i32, String);

/// Every revoked CA certificate, oldest revocation first.
pub(crate) fn ca_revocations(conn: &mut AnyConnection) -> Result<Vec<CaRevocation>, StoreError> {
    ca_revocation_rows(conn, None)
}

/// The revocation of the CA certificate `serial` that `parent` signed, if recorded.
pub(crate) fn ca_revocation(
    conn: &mut AnyConnection,
    parent: &str,
    serial: &Serial,
) -> Result<Option<CaRevocation>, StoreError> {
    Ok(ca_revocation_rows(conn, Some((parent, serial.as_str())))?
        .into_iter()
        .next())
}

/// Revoked CA certificates, all or the one (parent, serial), oldest revocation first.
fn ca_revocation_rows(
    conn: &mut AnyConnection,
    only: Option<(&str, &str)>,
) -> Result<Vec<CaRevocation>, StoreError> {
    let mut query = ca_revocations::table.into_boxed();
    if let Some((parent, serial)) = only {
        query = query
            .filter(ca_revocations::parent.eq(parent))
            .filter(ca_revocations::serial.eq(serial));
    }
    let rows: Vec<CaRevocationRow> = query
        .order((
            ca_revocations::revoked_at.asc(),
            ca_revocations::serial.asc(),
        ))
        .select((
            ca_revocations::parent,
            ca_revocations::serial,
            ca_revocations::ca,
            ca_revocations::not_after,
            ca_revocations::revoked_at,
            ca_revocations::reason,
            ca_revocations::revoked_by,
        ))
        .load(conn)
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(parent, serial, ca, not_after, at, code, by)| {
            Ok(CaRevocation {
                ca: IssuerId::new(&ca).map_err(|e| corrupt("issuer id", e))?,
                parent: IssuerId::new(&parent).map_err(|e| corrupt("issuer id", e))?,
                serial: Serial::parse(&serial).map_err(|e| corrupt("serial", e))?,
                not_after: from_unix_micros(not_after),
                reason: reason(code)?,
                revoked_at: from_unix_micros(at),
                revoked_by: by,
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
