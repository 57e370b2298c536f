//! API tokens: created once per name, found by hash, revoked once, each change audited.

use std::time::{Duration, SystemTime};

use ca_core::apitoken::{NewApiToken, Role, TokenStore};
use ca_core::audit::{Action, AuditEvent};
use ca_core::store::{AuditLog, StoreError};

use crate::support::*;

on_both_backends!(
    tokens_are_found_by_hash_listed_and_revoked_with_audit_entries,
    a_token_name_is_never_reused_even_after_revocation,
    users_and_tokens_never_share_a_name,
);

fn new_token(name: &str, hash: u8) -> NewApiToken {
    NewApiToken {
        name: name.into(),
        hash: [hash; 32],
        role: Role::Requester,
        profiles: vec!["tls-server".into(), "tls-client".into()],
        expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)),
        created_by: "cli:test".into(),
    }
}

fn created(name: &str) -> AuditEvent {
    AuditEvent::new(
        Action::TokenCreated,
        "cli:test",
        "cli",
        format!("token:{name}"),
    )
}

fn tokens_are_found_by_hash_listed_and_revoked_with_audit_entries(b: &Backend) {
    b.db.create_token(&new_token("ci", 1), &created("ci"))
        .unwrap();
    let t = b.db.token_by_hash(&[1; 32]).unwrap().unwrap();
    assert_eq!(t.name, "ci");
    assert_eq!(t.role, Role::Requester);
    assert_eq!(t.profiles, ["tls-server", "tls-client"]);
    assert!(t.revoked_at.is_none() && t.usable(SystemTime::now()));
    assert_eq!(b.db.token_by_hash(&[2; 32]).unwrap(), None);
    assert_eq!(b.db.tokens().unwrap().len(), 1);

    let revoked = AuditEvent::new(Action::TokenRevoked, "cli:test", "cli", "token:ci");
    b.db.revoke_token("ci", &revoked).unwrap();
    let t = b.db.token_by_hash(&[1; 32]).unwrap().unwrap();
    assert!(t.revoked_at.is_some() && !t.usable(SystemTime::now()));
    let err = b.db.revoke_token("ci", &revoked).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = b.db.revoke_token("nobody", &revoked).unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    let actions: Vec<String> =
        b.db.audit_entries(1, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
    assert_eq!(actions, ["token.created", "token.revoked"], "{}", b.name);
}

fn a_token_name_is_never_reused_even_after_revocation(b: &Backend) {
    b.db.create_token(&new_token("ci", 1), &created("ci"))
        .unwrap();
    let err =
        b.db.create_token(&new_token("ci", 2), &created("ci"))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The same hash under another name is refused too.
    let err =
        b.db.create_token(&new_token("other", 1), &created("other"))
            .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        b.db.audit_entries(1, i64::MAX).unwrap().len(),
        1,
        "failed creations are not audited"
    );
}

fn users_and_tokens_never_share_a_name(b: &Backend) {
    use ca_core::users::{self, Role as UserRole};
    b.db.create_token(&new_token("ci", 1), &created("ci"))
        .unwrap();
    let err = users::create_with_one_time_password(&b.db, "ci", &[UserRole::Requester], "t", "t")
        .unwrap_err();
    assert!(
        err.to_string().contains("API token is named"),
        "{}: {err}",
        b.name
    );
    users::create_with_one_time_password(&b.db, "carol", &[UserRole::Requester], "t", "t").unwrap();
    let err =
        b.db.create_token(&new_token("carol", 2), &created("carol"))
            .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("a user is named")),
        "{}: {err}",
        b.name
    );
}
