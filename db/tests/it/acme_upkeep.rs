//! ACME upkeep: a live node takes over the validations a stopped node left processing, and
//! orders and authorizations long expired are deleted, audited per transaction.

use std::sync::Arc;
use std::time::Duration;

use ca_core::acme::order::OrderStatus;
use ca_core::acme::store::{AcmeStore, Authz, Challenge, Order, Swept, Validation};
use ca_core::audit::Action;
use ca_core::cluster::{DEAD_AFTER, NodeId};
use ca_core::store::AuditLog;
use db::Db;

use crate::acme_state::{ev, order_with_authz};
use crate::support::*;

on_both_backends!(
    a_stopped_nodes_challenge_is_reclaimed_once_by_a_live_node,
    a_challenge_claimed_by_no_node_is_reclaimed_at_once,
    long_expired_orders_and_authorizations_are_swept_valid_orders_stay,
);

/// Another process on the same database, on the test's clock.
fn process(b: &Backend) -> Db {
    let clock = b.clock.clone();
    Db::open_with_clock(&b.url, Arc::new(move || clock.now())).unwrap()
}

fn actions(db: &Db) -> Vec<String> {
    let head = db.audit_head().unwrap().map(|h| h.0).unwrap_or(0);
    db.audit_entries(1, head)
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect()
}

fn a_stopped_nodes_challenge_is_reclaimed_once_by_a_live_node(b: &Backend) {
    let a = NodeId::new(Some("node-a"), "h", t0()).unwrap();
    b.db.join_cluster(&a).unwrap();
    let node_b = process(b);
    let nb = NodeId::new(Some("node-b"), "h", t0()).unwrap();
    node_b.join_cluster(&nb).unwrap();
    order_with_authz(b);
    assert!(
        node_b
            .start_challenge("ch0", &ev(Action::AcmeChallengeAnswered))
            .unwrap()
    );
    // While node-b beats, its validation is its own; to itself it is never an orphan.
    assert!(b.db.orphaned_challenges(t0(), 10).unwrap().is_empty());
    let later = t0() + DEAD_AFTER + Duration::from_secs(1);
    b.clock.set(later);
    assert!(node_b.orphaned_challenges(later, 10).unwrap().is_empty());
    // node-b stops beating: past DEAD_AFTER node-a takes the challenge over, once.
    b.db.heartbeat().unwrap();
    let orphans = b.db.orphaned_challenges(later, 10).unwrap();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0].0.id, "ch0");
    assert_eq!(orphans[0].1.as_deref(), Some(nb.instance.as_str()));
    let e = ev(Action::AcmeChallengeReclaimed);
    assert!(
        b.db.reclaim_challenge("ch0", Some(&nb.instance), &e)
            .unwrap()
    );
    assert!(
        !b.db
            .reclaim_challenge("ch0", Some(&nb.instance), &e)
            .unwrap(),
        "a second claim from the same owner loses"
    );
    assert!(
        !node_b.reclaim_challenge("ch0", None, &e).unwrap(),
        "node-b's claim is gone"
    );
    assert_eq!(
        actions(&b.db).last().map(String::as_str),
        Some("acme.challenge_reclaimed")
    );
    // node-a is alive: to a third node the challenge is no orphan.
    let node_c = process(b);
    node_c
        .join_cluster(&NodeId::new(Some("node-c"), "h", later).unwrap())
        .unwrap();
    assert!(node_c.orphaned_challenges(later, 10).unwrap().is_empty());
    // Once settled it is nobody's.
    assert!(
        b.db.finish_challenge("ch0", &Validation::Valid, &ev(Action::AcmeValidated))
            .unwrap()
    );
    let much_later = later + DEAD_AFTER * 3;
    assert!(
        node_c
            .orphaned_challenges(much_later, 10)
            .unwrap()
            .is_empty()
    );
}

fn a_challenge_claimed_by_no_node_is_reclaimed_at_once(b: &Backend) {
    // A process that never joined (or a challenge started before claims were recorded).
    order_with_authz(b);
    assert!(
        b.db.start_challenge("ch1", &ev(Action::AcmeChallengeAnswered))
            .unwrap()
    );
    let live = process(b);
    let e = ev(Action::AcmeChallengeReclaimed);
    assert!(
        !live.reclaim_challenge("ch1", None, &e).unwrap(),
        "a process that has not joined claims nothing"
    );
    live.join_cluster(&NodeId::new(Some("node-a"), "h", t0()).unwrap())
        .unwrap();
    let orphans = live.orphaned_challenges(t0(), 10).unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].1, None);
    assert!(live.reclaim_challenge("ch1", None, &e).unwrap());
    assert!(live.orphaned_challenges(t0(), 10).unwrap().is_empty());
}

fn valid_order(b: &Backend) {
    let order = Order {
        id: "ord2".into(),
        account_id: "acct".into(),
        status: OrderStatus::Pending,
        identifiers: vec![ca_core::acme::identifier::Identifier::Dns(
            "v.internal".into(),
        )],
        profile: "tls-server".into(),
        not_before: None,
        not_after: None,
        expires_at: t0() + Duration::from_secs(3600),
        created_at: t0(),
        serial: None,
        error: None,
        replaces: None,
    };
    let authz = Authz {
        id: "az2".into(),
        order_id: "ord2".into(),
        identifier: ca_core::acme::identifier::Identifier::Dns("v.internal".into()),
        wildcard: false,
        status: ca_core::acme::order::AuthzStatus::Pending,
        expires_at: t0() + Duration::from_secs(3600),
    };
    let challenge = Challenge {
        id: "ch2".into(),
        authz_id: "az2".into(),
        kind: ca_core::acme::identifier::ChallengeType::Http01,
        token: "token2".into(),
        status: ca_core::acme::order::ChallengeStatus::Pending,
        validated_at: None,
        error: None,
    };
    b.db.create_order(
        &order,
        &[(authz, vec![challenge])],
        &ev(Action::AcmeOrderCreated),
    )
    .unwrap();
    assert!(
        b.db.set_order_status(
            "ord2",
            OrderStatus::Pending,
            OrderStatus::Valid,
            Some("0b"),
            None,
            &ev(Action::AcmeOrderFinalized)
        )
        .unwrap()
    );
}

fn long_expired_orders_and_authorizations_are_swept_valid_orders_stay(b: &Backend) {
    order_with_authz(b); // pending: ord, az (wildcard), ch0 and ch1; expires t0 + 1 h
    valid_order(b); // valid: ord2, az2, ch2; expires t0 + 1 h
    let e = ev(Action::AcmeSwept);
    let expiry = t0() + Duration::from_secs(3600);
    assert_eq!(b.db.sweep_expired(expiry, 1, &e).unwrap(), Swept::default());
    let before = actions(&b.db).len();
    let swept =
        b.db.sweep_expired(expiry + Duration::from_secs(1), 1, &e)
            .unwrap();
    assert_eq!(
        swept,
        Swept {
            orders: 1,
            authzs: 2,
            challenges: 3
        }
    );
    let after = actions(&b.db);
    assert_eq!(
        after[before..],
        ["acme.swept".to_owned(), "acme.swept".to_owned()],
        "one entry per transaction that deleted something (batches of 1)"
    );
    assert!(b.db.order("ord").unwrap().is_none());
    assert!(b.db.authz("az").unwrap().is_none());
    assert!(b.db.challenge("ch0").unwrap().is_none());
    let kept = b.db.order("ord2").unwrap().unwrap();
    assert_eq!(kept.status, OrderStatus::Valid, "a valid order stays");
    assert!(b.db.order_authzs("ord2").unwrap().is_empty());
    assert_eq!(b.db.acme_counts().unwrap(), (1, 1));
    // Nothing left to do writes nothing.
    assert_eq!(
        b.db.sweep_expired(expiry + Duration::from_secs(7200), 500, &e)
            .unwrap(),
        Swept::default()
    );
    assert_eq!(actions(&b.db).len(), after.len());
}
