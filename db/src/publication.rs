//! Publishing once for the cluster (issue 20): leases, the stored CRL of each issuer, and the
//! PostgreSQL notices (`NOTIFY`) that tell the other nodes about revocations and new CRLs.

use std::time::{Duration, SystemTime};

use ca_core::audit::from_unix_micros;
use ca_core::issuer::IssuerId;
use ca_core::revocation::crl::SignedCrl;
use ca_core::revocation::publish::shared::StoredAnswer;
use ca_core::store::Serial;
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::conn::AnyConnection;
use crate::error::{OpError, corrupt};
use crate::schema::{leases, ocsp_answers, published_crls};
use crate::unix_micros;
use crate::writer::Tx;

/// The channel revocations are notified on: `ISSUER SERIAL`.
pub(crate) const REVOKED: &str = "keyhold_revoked";
/// The channel new stored CRLs are notified on: `ISSUER NUMBER`.
pub(crate) const CRL: &str = "keyhold_crl";

/// On PostgreSQL, notifies `channel` with `payload` when the transaction commits (and not
/// at all if it, or the savepoint around this change, rolls back). Nothing on SQLite, where
/// one process serves and others are caught by the periodic reads.
pub(crate) fn notify(
    conn: &mut AnyConnection,
    channel: &str,
    payload: &str,
) -> Result<(), OpError> {
    if let AnyConnection::Postgres(_) = conn {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(channel)
            .bind::<Text, _>(payload)
            .execute(conn)?;
    }
    Ok(())
}

/// Takes or renews lease `name` for `holder` until `now + ttl` if it is free, expired or
/// `holder`'s already; returns whether `holder` holds it. The writer's transaction holds the
/// audit chain lock, so two processes never both take an expired lease.
pub(crate) fn take_lease(
    tx: &mut Tx<'_>,
    name: &str,
    holder: &str,
    now: SystemTime,
    ttl: Duration,
) -> Result<bool, OpError> {
    let now = unix_micros(now);
    let until = now.saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
    let updated = diesel::update(
        leases::table
            .find(name)
            .filter(leases::holder.eq(holder).or(leases::expires_at.lt(now))),
    )
    .set((leases::holder.eq(holder), leases::expires_at.eq(until)))
    .execute(tx.conn)?;
    if updated > 0 {
        return Ok(true);
    }
    let exists: i64 = leases::table.find(name).count().get_result(tx.conn)?;
    if exists > 0 {
        return Ok(false);
    }
    diesel::insert_into(leases::table)
        .values((
            leases::name.eq(name),
            leases::holder.eq(holder),
            leases::expires_at.eq(until),
        ))
        .execute(tx.conn)?;
    Ok(true)
}

/// Stores `crl` as `issuer`'s current CRL unless the stored one's number is the same or
/// higher, and notifies [`CRL`]; returns whether it was stored.
pub(crate) fn put_crl(tx: &mut Tx<'_>, issuer: &str, crl: &SignedCrl) -> Result<bool, OpError> {
    let number = i64::try_from(crl.number).map_err(|e| corrupt("CRL number", e))?;
    let stored: Option<i64> = published_crls::table
        .find(issuer)
        .select(published_crls::number)
        .get_result(tx.conn)
        .optional()?;
    if stored.is_some_and(|s| s >= number) {
        return Ok(false);
    }
    let entries = i64::try_from(crl.entries).map_err(|e| corrupt("CRL entries", e))?;
    let row = (
        published_crls::number.eq(number),
        published_crls::this_update.eq(unix_micros(crl.this_update)),
        published_crls::next_update.eq(unix_micros(crl.next_update)),
        published_crls::entries.eq(entries),
        published_crls::der.eq(crl.der.as_slice()),
    );
    if stored.is_some() {
        diesel::update(published_crls::table.find(issuer))
            .set(row)
            .execute(tx.conn)?;
    } else {
        diesel::insert_into(published_crls::table)
            .values((published_crls::issuer.eq(issuer), row))
            .execute(tx.conn)?;
    }
    notify(tx.conn, CRL, &format!("{issuer} {}", crl.number))?;
    Ok(true)
}

/// The number of `issuer`'s stored CRL.
pub(crate) fn stored_crl_number(
    conn: &mut AnyConnection,
    issuer: &str,
) -> Result<Option<u64>, OpError> {
    let number: Option<i64> = published_crls::table
        .find(issuer)
        .select(published_crls::number)
        .get_result(conn)
        .optional()?;
    number
        .map(|n| u64::try_from(n).map_err(|e| corrupt("CRL number", e).into()))
        .transpose()
}

/// `issuer`'s stored CRL.
pub(crate) fn stored_crl(
    conn: &mut AnyConnection,
    issuer: &str,
) -> Result<Option<SignedCrl>, OpError> {
    let row: Option<(i64, i64, i64, i64, Vec<u8>)> = published_crls::table
        .find(issuer)
        .select((
            published_crls::number,
            published_crls::this_update,
            published_crls::next_update,
            published_crls::entries,
            published_crls::der,
        ))
        .get_result(conn)
        .optional()?;
    let Some((number, this_update, next_update, entries, der)) = row else {
        return Ok(None);
    };
    Ok(Some(SignedCrl {
        der,
        number: u64::try_from(number).map_err(|e| corrupt("CRL number", e))?,
        this_update: from_unix_micros(this_update),
        next_update: from_unix_micros(next_update),
        entries: usize::try_from(entries).map_err(|e| corrupt("CRL entries", e))?,
    }))
}

/// Stores `answers`, each replacing the one stored under its CertID.
pub(crate) fn put_answers(tx: &mut Tx<'_>, answers: &[StoredAnswer]) -> Result<(), OpError> {
    for a in answers {
        diesel::delete(ocsp_answers::table.find(a.cert_id.as_slice())).execute(tx.conn)?;
        diesel::insert_into(ocsp_answers::table)
            .values((
                ocsp_answers::cert_id.eq(a.cert_id.as_slice()),
                ocsp_answers::serial.eq(a.serial.as_str()),
                ocsp_answers::issuer.eq(a.issuer.as_str()),
                ocsp_answers::this_update.eq(unix_micros(a.this_update)),
                ocsp_answers::next_update.eq(unix_micros(a.next_update)),
                ocsp_answers::der.eq(a.der.as_slice()),
            ))
            .execute(tx.conn)?;
    }
    Ok(())
}

/// Drops `serial`'s stored answers (in a revocation's transaction: from its commit on, no
/// node can read an answer signed before it).
pub(crate) fn drop_answers(conn: &mut AnyConnection, serial: &str) -> Result<(), OpError> {
    diesel::delete(ocsp_answers::table.filter(ocsp_answers::serial.eq(serial))).execute(conn)?;
    Ok(())
}

type AnswerRow = (Vec<u8>, String, String, i64, i64, Vec<u8>);

/// The stored answer for `cert_id`.
pub(crate) fn stored_answer(
    conn: &mut AnyConnection,
    cert_id: &[u8],
) -> Result<Option<StoredAnswer>, OpError> {
    let row: Option<AnswerRow> = ocsp_answers::table
        .find(cert_id)
        .select((
            ocsp_answers::cert_id,
            ocsp_answers::serial,
            ocsp_answers::issuer,
            ocsp_answers::this_update,
            ocsp_answers::next_update,
            ocsp_answers::der,
        ))
        .get_result(conn)
        .optional()?;
    let Some((cert_id, serial, issuer, this_update, next_update, der)) = row else {
        return Ok(None);
    };
    Ok(Some(StoredAnswer {
        cert_id,
        serial: Serial::parse(&serial).map_err(|e| corrupt("serial", e))?,
        issuer: IssuerId::new(&issuer).map_err(|e| corrupt("issuer", e))?,
        this_update: from_unix_micros(this_update),
        next_update: from_unix_micros(next_update),
        der,
    }))
}

/// Which of `serials` have a stored answer.
pub(crate) fn answered(
    conn: &mut AnyConnection,
    serials: &[Serial],
) -> Result<Vec<Serial>, OpError> {
    let mut out = Vec::new();
    for chunk in serials.chunks(500) {
        let names: Vec<&str> = chunk.iter().map(Serial::as_str).collect();
        let found: Vec<String> = ocsp_answers::table
            .filter(ocsp_answers::serial.eq_any(names))
            .select(ocsp_answers::serial)
            .distinct()
            .load(conn)?;
        for s in found {
            out.push(Serial::parse(&s).map_err(|e| corrupt("serial", e))?);
        }
    }
    Ok(out)
}

/// Up to `limit` certificates with an answer whose nextUpdate is before `before`.
pub(crate) fn answers_due(
    conn: &mut AnyConnection,
    before: SystemTime,
    limit: u32,
) -> Result<Vec<(IssuerId, Serial)>, OpError> {
    let rows: Vec<(String, String)> = ocsp_answers::table
        .filter(ocsp_answers::next_update.lt(unix_micros(before)))
        .order(ocsp_answers::next_update.asc())
        .select((ocsp_answers::issuer, ocsp_answers::serial))
        .limit(i64::from(limit))
        .load(conn)?;
    let mut out: Vec<(IssuerId, Serial)> = Vec::with_capacity(rows.len());
    for (issuer, serial) in rows {
        let pair = (
            IssuerId::new(&issuer).map_err(|e| corrupt("issuer", e))?,
            Serial::parse(&serial).map_err(|e| corrupt("serial", e))?,
        );
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    Ok(out)
}

/// Drops the answers past their nextUpdate.
pub(crate) fn drop_stale_answers(tx: &mut Tx<'_>, now: SystemTime) -> Result<usize, OpError> {
    Ok(
        diesel::delete(ocsp_answers::table.filter(ocsp_answers::next_update.le(unix_micros(now))))
            .execute(tx.conn)?,
    )
}
