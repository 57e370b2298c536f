//! Several nodes on one database (issue 20): heartbeats, reservations that name their
//! instance, and a live node closing those of a dead one.

use std::sync::Arc;
use std::time::Duration;

use ca_core::audit::Action;
use ca_core::cluster::{self, DEAD_AFTER, Liveness, NodeId};
use ca_core::store::{AuditLog, CertStatus, CertificateQueries, IssuanceLedger};
use db::Db;

use crate::support::*;

/// Another process on the same database, on the test's clock.
fn process(b: &Backend) -> Db {
    let clock = b.clock.clone();
    Db::open_with_clock(&b.url, Arc::new(move || clock.now())).unwrap()
}

fn last_audit(db: &Db) -> ca_core::audit::AuditRecord {
    let head = db.audit_head().unwrap().unwrap().0;
    db.audit_entries(head, head).unwrap().remove(0)
}

fn a_dead_nodes_reservations_are_closed_by_a_live_one(b: &Backend) {
    with_issuer(b);
    let a = NodeId::new(Some("node-a"), "h", t0()).unwrap();
    let n2 = NodeId::new(Some("node-b"), "h", t0()).unwrap();
    b.db.join_cluster(&a).unwrap();
    assert!(b.db.join_cluster(&a).is_err(), "a process joins once");
    let other = process(b);
    other.join_cluster(&n2).unwrap();
    let s1 = serial(1);
    other
        .reserve(&new_cert(&s1), &cert_event(Action::IssuanceStarted, &s1))
        .unwrap();
    // Every audit entry names the node that wrote it.
    assert!(
        last_audit(&other).details.contains("node=node-b"),
        "{}",
        last_audit(&other).details
    );
    // While node-b beats, its reservation is its own business; to itself it is never an
    // orphan.
    assert!(b.db.orphans(t0()).unwrap().is_empty());
    let later = t0() + DEAD_AFTER + Duration::from_secs(1);
    b.clock.set(later);
    assert!(other.orphans(later).unwrap().is_empty());
    // node-b stops: past DEAD_AFTER node-a takes it for dead, and closes its reservation.
    b.db.heartbeat().unwrap();
    let orphans = b.db.orphans(later).unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].serial, s1);
    assert_eq!(orphans[0].instance.as_deref(), Some(n2.instance.as_str()));
    assert_eq!(cluster::close_orphans(&b.db, &b.db, &a, later).unwrap(), 1);
    assert_eq!(
        b.db.certificate(&s1).unwrap().unwrap().status,
        CertStatus::Failed
    );
    let closed = last_audit(&b.db);
    assert_eq!(closed.action, "issuance.abandoned");
    assert_eq!(closed.source, "node:node-a");
    assert!(closed.details.contains(&n2.instance), "{}", closed.details);
    // Twice is nothing to do.
    assert_eq!(cluster::close_orphans(&b.db, &b.db, &a, later).unwrap(), 0);
}

fn a_restarted_node_orphans_its_earlier_instance_at_once(b: &Backend) {
    with_issuer(b);
    let first = process(b);
    first
        .join_cluster(&NodeId::new(Some("node-b"), "h", t0()).unwrap())
        .unwrap();
    let s2 = serial(2);
    first
        .reserve(&new_cert(&s2), &cert_event(Action::IssuanceStarted, &s2))
        .unwrap();
    // Killed, and started again at once under the same name: a new instance.
    drop(first);
    let again = process(b);
    again
        .join_cluster(&NodeId::new(Some("node-b"), "h", t0() + Duration::from_millis(1)).unwrap())
        .unwrap();
    let orphans = again.orphans(t0()).unwrap();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0].serial, s2);
    // A reservation naming no instance (a CLI command) waits for ABANDONED_AFTER.
    let s3 = serial(3);
    b.db.reserve(&new_cert(&s3), &cert_event(Action::IssuanceStarted, &s3))
        .unwrap();
    assert_eq!(again.orphans(t0()).unwrap().len(), 1);
    let late = t0() + ca_core::issuance::ABANDONED_AFTER + Duration::from_secs(1);
    assert_eq!(again.orphans(late).unwrap().len(), 2);
}

fn the_heartbeat_is_a_committed_write(b: &Backend) {
    with_issuer(b);
    // Without a node it still commits a write transaction.
    b.db.heartbeat().unwrap();
    let n = NodeId::new(Some("node-c"), "h", t0()).unwrap();
    b.db.join_cluster(&n).unwrap();
    b.clock.set(t0() + Duration::from_secs(5));
    b.db.heartbeat().unwrap();
    // Seen by another process: node-c is alive at t0 + 5 s + DEAD_AFTER, dead just after.
    let other = process(b);
    let s4 = serial(4);
    b.db.reserve(&new_cert(&s4), &cert_event(Action::IssuanceStarted, &s4))
        .unwrap();
    let edge = t0() + Duration::from_secs(5) + DEAD_AFTER;
    assert!(other.orphans(edge).unwrap().is_empty());
    assert_eq!(
        other.orphans(edge + Duration::from_secs(1)).unwrap().len(),
        1
    );
    assert!(!b.db.known_down());
}

on_both_backends!(
    a_dead_nodes_reservations_are_closed_by_a_live_one,
    a_restarted_node_orphans_its_earlier_instance_at_once,
    the_heartbeat_is_a_committed_write,
);
