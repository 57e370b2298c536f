//! ACME upkeep in the database: which node validates a processing challenge (and taking
//! over those of nodes that stopped), and deleting orders and authorizations long expired.

use std::time::SystemTime;

use ca_core::acme::order::{ChallengeStatus, OrderStatus};
use ca_core::acme::store::{Challenge, StatusText, Swept};
use ca_core::audit::AuditEvent;
use ca_core::cluster::DEAD_AFTER;
use ca_core::store::StoreError;
use diesel::prelude::*;

use super::records::ChallengeRecord;
use crate::conn::AnyConnection;
use crate::error::{OpError, db_error};
use crate::schema::{acme_authzs, acme_challenges, acme_orders, nodes};
use crate::unix_micros;
use crate::writer::Tx;

/// Processing challenges no live node validates (see `AcmeStore::orphaned_challenges`).
pub(super) fn orphaned(
    conn: &mut AnyConnection,
    own: Option<&str>,
    now: SystemTime,
    limit: i64,
) -> Result<Vec<(Challenge, Option<String>)>, StoreError> {
    let dead_after = i64::try_from(DEAD_AFTER.as_micros()).unwrap_or(i64::MAX);
    let alive: Vec<String> = nodes::table
        .filter(nodes::heartbeat_at.ge(unix_micros(now).saturating_sub(dead_after)))
        .select(nodes::instance)
        .load(conn)
        .map_err(db_error)?;
    let rows: Vec<(ChallengeRecord, Option<String>)> = acme_challenges::table
        .filter(acme_challenges::status.eq(ChallengeStatus::Processing.as_str()))
        .select((ChallengeRecord::as_select(), acme_challenges::claimed_by))
        .load(conn)
        .map_err(db_error)?;
    let mut out = Vec::new();
    for (record, by) in rows {
        let orphaned = match by.as_deref() {
            Some(instance) => Some(instance) != own && !alive.iter().any(|a| a == instance),
            None => true,
        };
        if orphaned {
            out.push((Challenge::try_from(record)?, by));
            if i64::try_from(out.len()).unwrap_or(i64::MAX) >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Claims challenge `id` for `own` if it is processing and still claimed by `from`.
pub(super) fn reclaim(
    tx: &mut Tx<'_>,
    id: &str,
    from: Option<&str>,
    own: &str,
    event: &AuditEvent,
) -> Result<bool, OpError> {
    let target = acme_challenges::table
        .find(id)
        .filter(acme_challenges::status.eq(ChallengeStatus::Processing.as_str()));
    let n = match from {
        Some(from) => diesel::update(target.filter(acme_challenges::claimed_by.eq(from)))
            .set(acme_challenges::claimed_by.eq(own))
            .execute(tx.conn)?,
        None => diesel::update(target.filter(acme_challenges::claimed_by.is_null()))
            .set(acme_challenges::claimed_by.eq(own))
            .execute(tx.conn)?,
    };
    if n == 0 {
        return Ok(false);
    }
    tx.audit(event)?;
    Ok(true)
}

/// Deletes `authz_ids`' challenges and the authorizations; returns (authzs, challenges).
fn delete_authzs(tx: &mut Tx<'_>, authz_ids: &[String]) -> Result<(u64, u64), OpError> {
    let challenges =
        diesel::delete(acme_challenges::table.filter(acme_challenges::authz_id.eq_any(authz_ids)))
            .execute(tx.conn)?;
    let authzs = diesel::delete(acme_authzs::table.filter(acme_authzs::id.eq_any(authz_ids)))
        .execute(tx.conn)?;
    Ok((authzs as u64, challenges as u64))
}

fn audit_swept(tx: &mut Tx<'_>, event: &AuditEvent, swept: Swept) -> Result<(), OpError> {
    if swept == Swept::default() {
        return Ok(());
    }
    tx.audit(
        &event
            .clone()
            .with("orders", swept.orders.to_string())
            .with("authorizations", swept.authzs.to_string())
            .with("challenges", swept.challenges.to_string()),
    )
}

/// One batch of expired orders that are not valid, with their authorizations and
/// challenges.
pub(super) fn sweep_orders(
    tx: &mut Tx<'_>,
    before: SystemTime,
    batch: i64,
    event: &AuditEvent,
) -> Result<Swept, OpError> {
    let expired = acme_orders::table
        .filter(acme_orders::status.ne(OrderStatus::Valid.as_str()))
        .filter(acme_orders::expires_at.lt(unix_micros(before)));
    let orders: Vec<String> = expired.select(acme_orders::id).limit(batch).load(tx.conn)?;
    if orders.is_empty() {
        return Ok(Swept::default());
    }
    // Subqueries, not id lists: an order may name up to 100 identifiers, and a list of
    // every authorization of a batch could pass SQLite's limit on bound parameters.
    let of_orders = acme_authzs::table
        .filter(acme_authzs::order_id.eq_any(&orders))
        .select(acme_authzs::id);
    let challenges =
        diesel::delete(acme_challenges::table.filter(acme_challenges::authz_id.eq_any(of_orders)))
            .execute(tx.conn)? as u64;
    let authzs = diesel::delete(acme_authzs::table.filter(acme_authzs::order_id.eq_any(&orders)))
        .execute(tx.conn)? as u64;
    let deleted =
        diesel::delete(expired.filter(acme_orders::id.eq_any(&orders))).execute(tx.conn)? as u64;
    let swept = Swept {
        orders: deleted,
        authzs,
        challenges,
    };
    audit_swept(tx, event, swept)?;
    Ok(swept)
}

/// One batch of authorizations expired before `before` (those of valid orders: the orders
/// that were not valid went with [`sweep_orders`]), with their challenges.
pub(super) fn sweep_authzs(
    tx: &mut Tx<'_>,
    before: SystemTime,
    batch: i64,
    event: &AuditEvent,
) -> Result<Swept, OpError> {
    let authz_ids: Vec<String> = acme_authzs::table
        .filter(acme_authzs::expires_at.lt(unix_micros(before)))
        .select(acme_authzs::id)
        .limit(batch)
        .load(tx.conn)?;
    if authz_ids.is_empty() {
        return Ok(Swept::default());
    }
    let (authzs, challenges) = delete_authzs(tx, &authz_ids)?;
    let swept = Swept {
        orders: 0,
        authzs,
        challenges,
    };
    audit_swept(tx, event, swept)?;
    Ok(swept)
}
