//! Several nodes on one database (issue 20): each `keyhold serve` process's heartbeat row,
//! and the reservations left by instances whose heartbeat has stopped.

use std::time::{Duration, SystemTime};

use ca_core::cluster::{NodeId, Orphan};
use ca_core::store::{CertStatus, Serial, StoreError};
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::{OpError, corrupt};
use crate::schema::{certificates, nodes};
use crate::unix_micros;
use crate::writer::Tx;
use ca_core::audit::from_unix_micros;

/// Records `node`'s heartbeat at `tx.now` (inserting its row the first time). With
/// `replace_older`, first forgets every other instance of the same node name: they are this
/// node's earlier processes, gone (node names are unique), so their reservations are
/// orphans at once.
pub(crate) fn heartbeat(
    tx: &mut Tx<'_>,
    node: &NodeId,
    replace_older: bool,
) -> Result<(), OpError> {
    let now = unix_micros(tx.now);
    if replace_older {
        diesel::delete(
            nodes::table
                .filter(nodes::name.eq(&node.name))
                .filter(nodes::instance.ne(&node.instance)),
        )
        .execute(tx.conn)?;
    }
    let updated = diesel::update(nodes::table.find(&node.instance))
        .set(nodes::heartbeat_at.eq(now))
        .execute(tx.conn)?;
    if updated == 0 {
        diesel::insert_into(nodes::table)
            .values((
                nodes::instance.eq(&node.instance),
                nodes::name.eq(&node.name),
                nodes::started_at.eq(unix_micros(node.started_at)),
                nodes::heartbeat_at.eq(now),
            ))
            .execute(tx.conn)?;
    }
    Ok(())
}

/// Reservations no live process can still complete, at `now`: those made by an instance
/// that is not `own` and whose heartbeat is older than `dead_after` (or that has no
/// heartbeat row any more), and those that name no instance (made by a CLI process, or
/// before this column) and are older than `unnamed_after`.
pub(crate) fn orphans(
    conn: &mut AnyConnection,
    own: Option<&str>,
    now: SystemTime,
    dead_after: Duration,
    unnamed_after: Duration,
) -> Result<Vec<Orphan>, StoreError> {
    let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let now = unix_micros(now);
    let alive: Vec<String> = nodes::table
        .filter(nodes::heartbeat_at.ge(now.saturating_sub(micros(dead_after))))
        .select(nodes::instance)
        .load(conn)
        .map_err(crate::error::db_error)?;
    let rows: Vec<(String, i64, Option<String>)> = certificates::table
        .filter(certificates::status.eq(CertStatus::Reserved.as_str()))
        .select((
            certificates::serial,
            certificates::created_at,
            certificates::reserved_by,
        ))
        .load(conn)
        .map_err(crate::error::db_error)?;
    let unnamed_before = now.saturating_sub(micros(unnamed_after));
    let mut out = Vec::new();
    for (serial, created, by) in rows {
        let orphaned = match by.as_deref() {
            Some(instance) => Some(instance) != own && !alive.iter().any(|a| a == instance),
            None => created < unnamed_before,
        };
        if orphaned {
            out.push(Orphan {
                serial: Serial::parse(&serial).map_err(|e| corrupt("serial", e))?,
                reserved_at: from_unix_micros(created),
                instance: by,
            });
        }
    }
    Ok(out)
}
