//! Signing in and out: lockout, one-time passwords, the first admin, idle and ended sessions.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::audit::{Action, AuditEvent};
use ca_core::users::{self, Role, SessionId};

use crate::api::Fixture;

use super::*;

#[actix_web::test]
async fn five_failures_lock_the_account_for_fifteen_minutes() {
    let fx = Fixture::new();
    user(&fx, "lena", &[Role::Auditor]);
    let app = app!(fx);
    for _ in 0..4 {
        let res = try_login(&app, "lena", "wrong password!").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Four failures do not lock: the right password still works, and resets the count.
    let (cookie, _) = login(&app, "lena").await;
    assert_eq!(store(&fx).user("lena").unwrap().unwrap().failed_logins, 0);
    drop(cookie);
    for _ in 0..5 {
        let res = try_login(&app, "lena", "wrong password!").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(cookie_value(&res, "kh_session").is_none());
    }
    let res = try_login(&app, "lena", PASSWORD).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "locked: even the right password fails"
    );
    assert!(body(res).await.contains("Sign-in failed"));
    let u = store(&fx).user("lena").unwrap().unwrap();
    let until = u.locked_until.unwrap();
    let left = until.duration_since(SystemTime::now()).unwrap();
    assert!(
        left.as_secs() > 14 * 60 && left.as_secs() <= 15 * 60,
        "{left:?}"
    );

    let actions = audit_actions(&fx);
    let count = |a: &str| {
        actions
            .iter()
            .filter(|(x, _, o)| x == a && o == "user:lena")
            .count()
    };
    assert_eq!(count("login.failed"), 4 + 5 + 1);
    assert_eq!(count("login.locked"), 1);
    assert_eq!(count("login.succeeded"), 1);

    // An administrator's reset clears the lock (and forces a new password).
    users::reset_password(store(&fx).as_ref(), "lena", "test", "test").unwrap();
    assert!(
        !store(&fx)
            .user("lena")
            .unwrap()
            .unwrap()
            .is_locked(SystemTime::now())
    );
}

#[actix_web::test]
async fn unknown_users_fail_like_wrong_passwords_and_are_audited() {
    let fx = Fixture::new();
    let app = app!(fx);
    let res = try_login(&app, "nobody", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let actions = audit_actions(&fx);
    // The name is not kept (it may be a password typed into the wrong field): a marker is.
    assert!(actions.contains(&(
        "login.failed".into(),
        "anonymous".into(),
        users::UNKNOWN_USER_OBJECT.into()
    )));
    assert!(!actions.iter().any(|(_, _, o)| o.contains("nobody")));
}

#[actix_web::test]
async fn a_one_time_password_must_be_changed_before_anything_else() {
    let fx = Fixture::new();
    let s = store(&fx);
    let otp =
        users::create_with_one_time_password(s.as_ref(), "nina", &[Role::Auditor], "test", "test")
            .unwrap();
    let app = app!(fx);
    let res = try_login(&app, "nina", otp.as_str()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/ui/password");
    let id = cookie_value(&res, "kh_session").unwrap();
    let cookie = format!("kh_session={id}");
    let csrf = SessionId::from_cookie(&id).unwrap().csrf_token();
    for uri in ["/ui/", "/ui/certs", "/ui/audit"] {
        let res = test::call_service(&app, get(uri, &cookie).to_request()).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(location(&res), "/ui/password", "{uri}");
    }
    let res = test::call_service(&app, get("/ui/password", &cookie).to_request()).await;
    assert!(body(res).await.contains("one-time password"));
    // Too short, then mismatched, then right.
    for (new, confirm) in [
        ("short", "short"),
        ("a long new password", "a different one!!"),
    ] {
        let res = test::call_service(
            &app,
            post(
                "/ui/password",
                &cookie,
                form(&[
                    ("csrf", &csrf),
                    ("current", otp.as_str()),
                    ("new", new),
                    ("confirm", confirm),
                ]),
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{new}");
    }
    let res = test::call_service(
        &app,
        post(
            "/ui/password",
            &cookie,
            form(&[
                ("csrf", &csrf),
                ("current", otp.as_str()),
                ("new", PASSWORD),
                ("confirm", PASSWORD),
            ]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/ui/");
    let res = test::call_service(&app, get("/ui/", &cookie).to_request()).await;
    assert_eq!(res.status(), StatusCode::OK, "the same session goes on");
    let actions = audit_actions(&fx);
    assert!(
        actions
            .iter()
            .any(|(a, _, o)| a == "user.password_changed" && o == "user:nina")
    );
}

#[actix_web::test]
async fn sign_out_ends_the_session_and_is_audited() {
    let fx = Fixture::new();
    user(&fx, "adam", &[Role::Admin]);
    let app = app!(fx);
    let (cookie, csrf) = login(&app, "adam").await;
    let res = test::call_service(
        &app,
        post("/ui/logout", &cookie, form(&[("csrf", &csrf)])).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/ui/login");
    let res = test::call_service(&app, get("/ui/", &cookie).to_request()).await;
    assert_eq!(location(&res), "/ui/login", "the old cookie is worthless");
    let actions = audit_actions(&fx);
    assert!(actions.contains(&("logout".into(), "adam".into(), "user:adam".into())));
}

#[actix_web::test]
async fn disabling_a_user_ends_their_sessions() {
    let fx = Fixture::new();
    user(&fx, "dora", &[Role::Auditor]);
    let app = app!(fx);
    let (cookie, _) = login(&app, "dora").await;
    store(&fx)
        .set_disabled(
            "dora",
            true,
            &AuditEvent::new(Action::UserDisabled, "test", "test", "user:dora"),
        )
        .unwrap();
    let res = test::call_service(&app, get("/ui/", &cookie).to_request()).await;
    assert_eq!(location(&res), "/ui/login");
    let res = try_login(&app, "dora", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn the_first_start_creates_one_admin_who_must_change_the_password() {
    let fx = Fixture::new();
    let created = ca_web::http::ui::bootstrap::ensure_admin(&fx.state).unwrap();
    assert_eq!(created.as_deref(), Some("admin"));
    let admin = store(&fx).user("admin").unwrap().unwrap();
    assert_eq!(admin.roles, vec![Role::Admin]);
    assert!(admin.must_change_password);
    assert_eq!(
        ca_web::http::ui::bootstrap::ensure_admin(&fx.state).unwrap(),
        None,
        "only once"
    );
    // A disabled admin does not count: the next start creates another.
    store(&fx)
        .set_disabled(
            "admin",
            true,
            &AuditEvent::new(Action::UserDisabled, "t", "t", "user:admin"),
        )
        .unwrap();
    let created = ca_web::http::ui::bootstrap::ensure_admin(&fx.state).unwrap();
    assert_eq!(created.as_deref(), Some("admin-2"));
}

#[actix_web::test]
async fn an_idle_session_has_ended() {
    let fx = Fixture::new();
    user(&fx, "ida", &[Role::Auditor]);
    let app = app!(fx);
    let (cookie, _) = login(&app, "ida").await;
    let id = SessionId::from_cookie(cookie.trim_start_matches("kh_session=")).unwrap();
    // Used 29 minutes ago: still alive, and this use counts.
    let recent = SystemTime::now() - std::time::Duration::from_secs(29 * 60);
    store(&fx).touch_session(&id.hash(), recent).unwrap();
    let res = test::call_service(&app, get("/ui/", &cookie).to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(store(&fx).session(&id.hash()).unwrap().unwrap().last_seen > recent);
    // Unused for 31 minutes: ended, and removed.
    let stale = SystemTime::now() - std::time::Duration::from_secs(31 * 60);
    store(&fx).touch_session(&id.hash(), stale).unwrap();
    let res = test::call_service(&app, get("/ui/", &cookie).to_request()).await;
    assert_eq!(location(&res), "/ui/login");
    assert!(store(&fx).session(&id.hash()).unwrap().is_none());
}
