//! Operations under quorum and code-signing token bindings, on both backends: the checks
//! the store makes inside its write transaction, and the audit entries that go with them.

use std::time::{Duration, SystemTime};

use ca_core::apitoken::{NewApiToken, Role, TokenStore};
use ca_core::audit::{Action, AuditEvent};
use ca_core::codesign::{CodesignStore, NewCodesignKey};
use ca_core::keystore::{KeyRef, KeySpec, SpkiDer};
use ca_core::quorum::{OperationKind, OperationStatus, OperationStore, new_operation};
use ca_core::store::{Approval, AuditLog, StoreError};
use ca_core::users::{self, UserStore};

use crate::support::*;

on_both_backends!(
    operations_take_distinct_approvals_before_their_deadline_and_finish_once,
    a_pending_admin_is_disabled_until_activated_and_cannot_be_enabled,
    a_bound_token_counts_only_while_it_is_neither_revoked_nor_expired,
);

fn approval(officer: &str, at: SystemTime) -> Approval {
    Approval {
        officer: officer.into(),
        comment: "ok".into(),
        at,
    }
}

fn approved(id: i64) -> AuditEvent {
    AuditEvent::new(
        Action::OperationApproved,
        "test",
        "test",
        format!("operation:{id}"),
    )
}

fn conflict(e: StoreError, needle: &str) {
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains(needle)),
        "{needle}: {e:?}"
    );
}

fn operations_take_distinct_approvals_before_their_deadline_and_finish_once(b: &Backend) {
    let now = t0();
    let (op, ev) = new_operation(OperationKind::DestroyKey, "cs-1", 2, "cli:root", "cli", now);
    let id = b.db.create_operation(&op, &ev).unwrap();
    let row = b.db.operation(id).unwrap().unwrap();
    assert_eq!(row.op, op);
    assert_eq!(row.status, OperationStatus::Pending);

    conflict(
        b.db.approve_operation(id, &approval("cli:root", now), now, &approved(id))
            .unwrap_err(),
        "asked for operation",
    );
    let row =
        b.db.approve_operation(id, &approval("alice", now), now, &approved(id))
            .unwrap();
    assert_eq!(row.approvals.len(), 1);
    conflict(
        b.db.approve_operation(id, &approval("alice", now), now, &approved(id))
            .unwrap_err(),
        "already approved",
    );
    let late = op.expires_at + Duration::from_secs(1);
    conflict(
        b.db.approve_operation(id, &approval("bob", late), late, &approved(id))
            .unwrap_err(),
        "expired",
    );
    assert_eq!(row.effective_status(late), "expired");
    b.db.approve_operation(id, &approval("bob", now), now, &approved(id))
        .unwrap();
    b.db.finish_operation(id, None, &event(Action::OperationDone, "operation:1"))
        .unwrap();
    conflict(
        b.db.finish_operation(id, None, &event(Action::OperationDone, "operation:1"))
            .unwrap_err(),
        "not pending",
    );
    assert_eq!(
        b.db.operation(id).unwrap().unwrap().status,
        OperationStatus::Done
    );
    assert!(b.db.operations(true).unwrap().is_empty());
    assert_eq!(b.db.operations(false).unwrap().len(), 1);

    // One rejection ends another; never by the one who asked.
    let (op, ev) = new_operation(OperationKind::DestroyKey, "cs-2", 2, "cli:root", "cli", now);
    let id2 = b.db.create_operation(&op, &ev).unwrap();
    let rejected = event(Action::OperationRejected, "operation:2");
    conflict(
        b.db.reject_operation(id2, "cli:root", "no", &rejected)
            .unwrap_err(),
        "cannot reject",
    );
    b.db.reject_operation(id2, "alice", "key in use", &rejected)
        .unwrap();
    let row = b.db.operation(id2).unwrap().unwrap();
    assert_eq!(row.status, OperationStatus::Rejected);
    assert_eq!(row.reason.as_deref(), Some("key in use"));
    assert!(matches!(
        b.db.approve_operation(7, &approval("bob", now), now, &approved(7)),
        Err(StoreError::NotFound(_))
    ));
    let actions: Vec<String> =
        b.db.audit_entries(1, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
    assert_eq!(
        actions,
        [
            "operation.requested",
            "operation.approved",
            "operation.approved",
            "operation.done",
            "operation.requested",
            "operation.rejected"
        ]
    );
}

fn a_pending_admin_is_disabled_until_activated_and_cannot_be_enabled(b: &Backend) {
    let (user, _password) = users::prepare("adam", &[Role::Admin], "cli:root").unwrap();
    let (op, ev) = new_operation(
        OperationKind::CreateAdmin,
        "adam",
        2,
        "cli:root",
        "cli",
        t0(),
    );
    let id =
        b.db.create_pending_admin(&user, &op, &event(Action::UserCreated, "user:adam"), &ev)
            .unwrap();
    let store: &dyn UserStore = &b.db;
    assert!(store.user("adam").unwrap().unwrap().disabled);
    assert_eq!(store.awaiting_approval("adam").unwrap(), Some(id));
    conflict(
        store
            .set_disabled("adam", false, &event(Action::UserEnabled, "user:adam"))
            .unwrap_err(),
        "waiting for officers' approval",
    );
    // The same name again is refused, with nothing written.
    let err =
        b.db.create_pending_admin(&user, &op, &event(Action::UserCreated, "user:adam"), &ev)
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(b.db.operations(false).unwrap().len(), 1);

    b.db.activate_admin(id, &event(Action::OperationDone, "operation:1"))
        .unwrap();
    assert!(!store.user("adam").unwrap().unwrap().disabled);
    assert_eq!(store.awaiting_approval("adam").unwrap(), None);
    conflict(
        b.db.activate_admin(id, &event(Action::OperationDone, "operation:1"))
            .unwrap_err(),
        "not pending",
    );
}

fn a_bound_token_counts_only_while_it_is_neither_revoked_nor_expired(b: &Backend) {
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    der.push(4);
    der.extend([1u8; 64]);
    let key = KeyRef::new("cs-k").unwrap();
    b.db.add_codesign_key(
        &NewCodesignKey {
            key: key.clone(),
            owner: "carol".into(),
            owner_kind: ca_core::codesign::OwnerKind::User,
            profile: "code-signing".into(),
            spec: KeySpec::EcP256,
            public_key: SpkiDer::parse(&der).unwrap(),
            created_at: t0(),
        },
        &event(Action::KeyGenerated, "key:embedded:cs-k"),
    )
    .unwrap();
    let token = |name: &str, hash: u8, expires_at: Option<SystemTime>| NewApiToken {
        name: name.into(),
        hash: [hash; 32],
        role: Role::Requester,
        profiles: Vec::new(),
        expires_at,
        created_by: "cli:test".into(),
    };
    let bound = |name: &str| event(Action::CodesignTokenBound, name);
    b.db.create_token(
        &token("ci", 1, None),
        &event(Action::TokenCreated, "token:ci"),
    )
    .unwrap();
    b.db.create_token(
        &token("old", 2, Some(t0() + Duration::from_secs(60))),
        &event(Action::TokenCreated, "token:old"),
    )
    .unwrap();
    let now = t0();
    assert!(!b.db.codesign_token_bound(&key, "ci", now).unwrap());
    b.db.bind_codesign_token(&key, "ci", "admin", now, &bound("ci"))
        .unwrap();
    b.db.bind_codesign_token(&key, "old", "admin", now, &bound("old"))
        .unwrap();
    conflict(
        b.db.bind_codesign_token(&key, "ci", "admin", now, &bound("ci"))
            .unwrap_err(),
        "already",
    );
    assert!(matches!(
        b.db.bind_codesign_token(&key, "ghost", "admin", now, &bound("ghost")),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        b.db.bind_codesign_token(
            &KeyRef::new("cs-none").unwrap(),
            "ci",
            "admin",
            now,
            &bound("ci")
        ),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(b.db.codesign_bindings(&key).unwrap(), ["ci", "old"]);
    assert!(b.db.codesign_token_bound(&key, "ci", now).unwrap());
    assert!(b.db.codesign_token_bound(&key, "old", now).unwrap());
    // Expired: no longer counts.
    let later = t0() + Duration::from_secs(120);
    assert!(!b.db.codesign_token_bound(&key, "old", later).unwrap());
    assert!(!b.db.codesign_token_bound(&key, "carol", now).unwrap());
    // Revoked: no longer counts, and cannot be bound again.
    b.db.revoke_token("ci", &event(Action::TokenRevoked, "token:ci"))
        .unwrap();
    assert!(!b.db.codesign_token_bound(&key, "ci", now).unwrap());
    b.db.unbind_codesign_token(&key, "ci", &event(Action::CodesignTokenUnbound, "ci"))
        .unwrap();
    conflict(
        b.db.bind_codesign_token(&key, "ci", "admin", now, &bound("ci"))
            .unwrap_err(),
        "revoked",
    );
    assert!(matches!(
        b.db.unbind_codesign_token(&key, "ci", &event(Action::CodesignTokenUnbound, "ci")),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(b.db.codesign_bindings(&key).unwrap(), ["old"]);
}
