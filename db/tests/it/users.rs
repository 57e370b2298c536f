//! Users and sessions: the same behaviour on both backends.

use std::time::Duration;

use ca_core::audit::{self, Action, AuditEvent};
use ca_core::error::ErrorKind;
use ca_core::keystore::{KeySpec, SpkiDer};
use ca_core::store::AuditLog;
use ca_core::users::{
    self, LOCKOUT, Login, MAX_FAILURES, PasswordHash, Refusal, Role, SessionId, UserStore,
};

use crate::support::*;

on_both_backends!(
    users_are_created_once_and_read_back_with_their_roles,
    five_wrong_passwords_lock_and_the_lock_expires,
    sessions_are_found_by_hash_and_end,
    a_password_change_ends_the_other_sessions,
    disabling_ends_sessions_and_refuses_sign_in,
    user_changes_keep_the_audit_chain_intact,
);

fn event(action: Action, name: &str) -> AuditEvent {
    AuditEvent::new(action, "test", "test", format!("user:{name}"))
}

fn add(b: &Backend, name: &str, roles: &[Role], password: &str) {
    let store: &dyn UserStore = &b.db;
    users::create_with_one_time_password(store, name, roles, "test", "test").unwrap();
    store
        .set_password(
            name,
            &PasswordHash::new(password).unwrap(),
            false,
            None,
            &event(Action::UserPasswordReset, name),
        )
        .unwrap();
}

fn users_are_created_once_and_read_back_with_their_roles(b: &Backend) {
    let store: &dyn UserStore = &b.db;
    let otp = users::create_with_one_time_password(
        store,
        "alice",
        &[Role::Admin, Role::Officer],
        "test",
        "cli",
    )
    .unwrap();
    let u = store.user("alice").unwrap().unwrap();
    assert_eq!(u.roles, vec![Role::Admin, Role::Officer]);
    assert!(u.must_change_password && !u.disabled && u.locked_until.is_none());
    assert!(
        store
            .password_hash("alice")
            .unwrap()
            .unwrap()
            .verify(otp.as_str())
    );
    let again = users::create_with_one_time_password(store, "alice", &[Role::Auditor], "t", "t");
    assert_eq!(again.unwrap_err().kind(), ErrorKind::Conflict);
    assert!(store.user("nobody").unwrap().is_none());
    assert!(store.password_hash("nobody").unwrap().is_none());
    assert_eq!(store.users().unwrap().len(), 1);
}

fn five_wrong_passwords_lock_and_the_lock_expires(b: &Backend) {
    add(b, "bob", &[Role::Auditor], "bob's long password");
    let store: &dyn UserStore = &b.db;
    let id = SessionId::generate().unwrap();
    let now = t0();
    for i in 1..=MAX_FAILURES {
        let r = users::login(store, "bob", "wrong", &id.hash(), "test", now).unwrap();
        let expected = if i == MAX_FAILURES {
            Refusal::LockedNow
        } else {
            Refusal::WrongPassword
        };
        assert_eq!(r, Login::Refused(expected), "failure {i}");
    }
    let u = store.user("bob").unwrap().unwrap();
    assert_eq!(u.locked_until, Some(now + LOCKOUT));
    let r = users::login(store, "bob", "bob's long password", &id.hash(), "test", now).unwrap();
    assert_eq!(r, Login::Refused(Refusal::Locked));
    let later = now + LOCKOUT + Duration::from_secs(1);
    let r = users::login(
        store,
        "bob",
        "bob's long password",
        &id.hash(),
        "test",
        later,
    )
    .unwrap();
    assert!(matches!(r, Login::Succeeded(_)), "{r:?}");
    assert!(store.session(&id.hash()).unwrap().is_some());
}

fn sessions_are_found_by_hash_and_end(b: &Backend) {
    add(b, "carol", &[Role::Requester], "carol's long password");
    let store: &dyn UserStore = &b.db;
    let id = SessionId::generate().unwrap();
    store
        .login_succeeded(
            "carol",
            &id.hash(),
            t0(),
            users::IDLE_TIMEOUT,
            &event(Action::LoginSucceeded, "carol"),
        )
        .unwrap();
    let s = store.session(&id.hash()).unwrap().unwrap();
    assert_eq!(
        (s.user.name.as_str(), s.created_at, s.last_seen),
        ("carol", t0(), t0())
    );
    assert!(!s.idle(t0() + Duration::from_secs(60)));
    assert!(s.idle(t0() + users::IDLE_TIMEOUT));
    store
        .touch_session(&id.hash(), t0() + Duration::from_secs(600))
        .unwrap();
    let s = store.session(&id.hash()).unwrap().unwrap();
    assert_eq!(s.last_seen, t0() + Duration::from_secs(600));
    store
        .end_session(&id.hash(), Some(&event(Action::Logout, "carol")))
        .unwrap();
    assert!(store.session(&id.hash()).unwrap().is_none());
    store.end_session(&id.hash(), None).unwrap();
    // A sign-in sweeps sessions idle for longer than the timeout.
    let old = SessionId::generate().unwrap();
    store
        .login_succeeded(
            "carol",
            &old.hash(),
            t0(),
            users::IDLE_TIMEOUT,
            &event(Action::LoginSucceeded, "carol"),
        )
        .unwrap();
    let new = SessionId::generate().unwrap();
    let later = t0() + users::IDLE_TIMEOUT + Duration::from_secs(1);
    store
        .login_succeeded(
            "carol",
            &new.hash(),
            later,
            users::IDLE_TIMEOUT,
            &event(Action::LoginSucceeded, "carol"),
        )
        .unwrap();
    assert!(store.session(&old.hash()).unwrap().is_none());
    assert!(store.session(&new.hash()).unwrap().is_some());
}

fn a_password_change_ends_the_other_sessions(b: &Backend) {
    add(b, "dan", &[Role::Officer], "dan's long password");
    let store: &dyn UserStore = &b.db;
    let (one, two) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    for id in [&one, &two] {
        let r = users::login(
            store,
            "dan",
            "dan's long password",
            &id.hash(),
            "test",
            t0(),
        )
        .unwrap();
        assert!(matches!(r, Login::Succeeded(_)));
    }
    let user = store.user("dan").unwrap().unwrap();
    let wrong =
        users::change_password(store, &user, "nope", "dan's new password", &one.hash(), "t");
    assert_eq!(wrong.unwrap_err().kind(), ErrorKind::Invalid);
    users::change_password(
        store,
        &user,
        "dan's long password",
        "dan's new password",
        &one.hash(),
        "test",
    )
    .unwrap();
    assert!(store.session(&one.hash()).unwrap().is_some());
    assert!(store.session(&two.hash()).unwrap().is_none());
    assert!(
        store
            .password_hash("dan")
            .unwrap()
            .unwrap()
            .verify("dan's new password")
    );
    // A reset ends every session and forces a change.
    users::reset_password(store, "dan", "test", "cli").unwrap();
    assert!(store.session(&one.hash()).unwrap().is_none());
    assert!(store.user("dan").unwrap().unwrap().must_change_password);
    let missing = users::reset_password(store, "nobody", "test", "cli");
    assert_eq!(missing.unwrap_err().kind(), ErrorKind::NotFound);
}

fn disabling_ends_sessions_and_refuses_sign_in(b: &Backend) {
    add(b, "eve", &[Role::Auditor], "eve's long password");
    let store: &dyn UserStore = &b.db;
    let id = SessionId::generate().unwrap();
    users::login(
        store,
        "eve",
        "eve's long password",
        &id.hash(),
        "test",
        t0(),
    )
    .unwrap();
    store
        .set_disabled("eve", true, &event(Action::UserDisabled, "eve"))
        .unwrap();
    assert!(store.session(&id.hash()).unwrap().is_none());
    let again = store.set_disabled("eve", true, &event(Action::UserDisabled, "eve"));
    assert_eq!(again.unwrap_err().kind(), ErrorKind::Conflict);
    let r = users::login(
        store,
        "eve",
        "eve's long password",
        &id.hash(),
        "test",
        t0(),
    )
    .unwrap();
    assert_eq!(r, Login::Refused(Refusal::Disabled));
    store
        .set_disabled("eve", false, &event(Action::UserEnabled, "eve"))
        .unwrap();
    let r = users::login(
        store,
        "eve",
        "eve's long password",
        &id.hash(),
        "test",
        t0(),
    )
    .unwrap();
    assert!(matches!(r, Login::Succeeded(_)));
}

fn user_changes_keep_the_audit_chain_intact(b: &Backend) {
    add(b, "fay", &[Role::Admin], "fay's long password");
    let store: &dyn UserStore = &b.db;
    let id = SessionId::generate().unwrap();
    users::login(store, "fay", "wrong", &id.hash(), "10.0.0.1", t0()).unwrap();
    users::login(store, "ghost", "wrong", &id.hash(), "10.0.0.1", t0()).unwrap();
    users::login(
        store,
        "fay",
        "fay's long password",
        &id.hash(),
        "10.0.0.1",
        t0(),
    )
    .unwrap();
    store
        .end_session(&id.hash(), Some(&event(Action::Logout, "fay")))
        .unwrap();
    let entries = b.db.audit_entries(1, i64::MAX).unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.created",
            "user.password_reset",
            "login.failed",
            "login.failed",
            "login.succeeded",
            "logout"
        ]
    );
    assert!(entries[3].details.contains("unknown user"));
    let report = audit::verify(
        &entries,
        &[],
        KeySpec::EcP256.signature_algorithm(),
        &SpkiDer::from_der_unchecked(Vec::new()),
    );
    assert!(report.ok(), "{report:?}");
    // No password material in the log.
    for e in &entries {
        assert!(
            !e.details.contains("password ") && !e.details.contains("argon2"),
            "{e:?}"
        );
    }
}
