//! Managing users: `keyhold users`, the users screen, approving a new administrator.

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::users::Role;

use crate::api::Fixture;

use super::*;

#[actix_web::test]
async fn keyhold_users_prints_one_time_passwords_once_and_audits_changes() {
    use crate::cli::{fails_with, keyhold, run};
    let fx = Fixture::new();
    let dir = fx.tmp.path().join("data");
    // Not an officer: making one waits for officers (officers.rs tests that).
    let r = run(keyhold(&dir).args(["users", "add", "alice", "--role", "auditor,requester"]));
    assert!(r.ok, "{}", r.stderr);
    let otp = r.stdout.trim().to_owned();
    assert_eq!(
        otp.len(),
        20,
        "the password alone on stdout: {:?}",
        r.stdout
    );
    assert!(!r.stderr.contains(&otp));
    let s = store(&fx);
    assert!(s.password_hash("alice").unwrap().unwrap().verify(&otp));
    let alice = s.user("alice").unwrap().unwrap();
    assert_eq!(alice.roles, vec![Role::Auditor, Role::Requester]);
    assert!(alice.must_change_password);

    let r = run(keyhold(&dir).args(["users", "list"]));
    assert!(r.ok, "{}", r.stderr);
    let line = r.stdout.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(
        line.contains("auditor,requester") && line.contains("new"),
        "{line}"
    );
    assert!(!r.stdout.contains(&otp));

    fails_with(
        &run(keyhold(&dir).args(["users", "add", "alice", "--role", "admin"])),
        "exists already",
    );
    fails_with(
        &run(keyhold(&dir).args(["users", "add", "bob", "--role", "root"])),
        "unknown role \"root\"",
    );
    fails_with(
        &run(keyhold(&dir).args(["users", "add", "b b", "--role", "admin"])),
        "invalid user name",
    );

    let r = run(keyhold(&dir).args(["users", "reset-password", "alice"]));
    assert!(r.ok, "{}", r.stderr);
    let second = r.stdout.trim();
    assert_ne!(second, otp);
    assert!(s.password_hash("alice").unwrap().unwrap().verify(second));

    assert!(run(keyhold(&dir).args(["users", "disable", "alice"])).ok);
    fails_with(
        &run(keyhold(&dir).args(["users", "disable", "alice"])),
        "already disabled",
    );
    let r = run(keyhold(&dir).args(["users", "list"]));
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("alice") && l.contains("disabled"))
    );
    assert!(run(keyhold(&dir).args(["users", "enable", "alice"])).ok);
    fails_with(
        &run(keyhold(&dir).args(["users", "reset-password", "nobody"])),
        "not found",
    );

    let actions = audit_actions(&fx);
    for a in [
        "user.created",
        "user.password_reset",
        "user.disabled",
        "user.enabled",
    ] {
        assert!(
            actions
                .iter()
                .any(|(x, actor, o)| x == a && actor.starts_with("cli:") && o == "user:alice"),
            "{a}: {actions:?}"
        );
    }
}

fn one_time_password_in(html: &str) -> String {
    let start = html.find("id=\"one-time-password\">").unwrap() + "id=\"one-time-password\">".len();
    html[start..].split('<').next().unwrap().to_owned()
}

#[actix_web::test]
async fn administrators_manage_users_in_the_ui() {
    let fx = Fixture::new();
    user(&fx, "adam", &[Role::Admin]);
    user(&fx, "aude", &[Role::Auditor]);
    let app = app!(fx);
    let (aude, aude_csrf) = login(&app, "aude").await;
    let res = test::call_service(&app, get("/ui/users", &aude).to_request()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = test::call_service(
        &app,
        post(
            "/ui/users",
            &aude,
            form(&[("csrf", &aude_csrf), ("name", "x"), ("auditor", "on")]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let (adam, csrf) = login(&app, "adam").await;
    let html = body(test::call_service(&app, get("/ui/users", &adam).to_request()).await).await;
    assert!(html.contains("id=\"user-aude\"") && html.contains("href=\"/ui/users\""));
    assert!(
        !html.contains("/ui/users/adam/disable"),
        "no disabling oneself"
    );

    // Create: the one-time password is shown once, in the response.
    let res = test::call_service(
        &app,
        post(
            "/ui/users",
            &adam,
            form(&[
                ("csrf", &csrf),
                ("name", "nora"),
                // Not an officer: making one waits for officers (officers.rs tests that).
                ("auditor", "on"),
                ("requester", "on"),
            ]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let otp = one_time_password_in(&body(res).await);
    let nora = store(&fx).user("nora").unwrap().unwrap();
    assert_eq!(nora.roles, vec![Role::Auditor, Role::Requester]);
    assert!(nora.must_change_password);
    assert!(
        store(&fx)
            .password_hash("nora")
            .unwrap()
            .unwrap()
            .verify(&otp)
    );
    let html = body(test::call_service(&app, get("/ui/users", &adam).to_request()).await).await;
    assert!(!html.contains(&otp), "shown once only");

    for (fields, status) in [
        (
            vec![("name", "nora"), ("auditor", "on")],
            StatusCode::CONFLICT,
        ),
        (vec![("name", "nobody-roles")], StatusCode::BAD_REQUEST),
        (
            vec![("name", "bad name"), ("auditor", "on")],
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(fields);
        let res = test::call_service(&app, post("/ui/users", &adam, form(&all)).to_request()).await;
        assert_eq!(res.status(), status);
    }

    // Disable, enable, reset.
    let res = test::call_service(
        &app,
        post("/ui/users/nora/disable", &adam, form(&[("csrf", &csrf)])).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(store(&fx).user("nora").unwrap().unwrap().disabled);
    let res = test::call_service(&app, get(&location(&res), &adam).to_request()).await;
    assert!(body(res).await.contains("nora is disabled"));
    let res = test::call_service(
        &app,
        post("/ui/users/nora/enable", &adam, form(&[("csrf", &csrf)])).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(!store(&fx).user("nora").unwrap().unwrap().disabled);
    let res = test::call_service(
        &app,
        post("/ui/users/adam/disable", &adam, form(&[("csrf", &csrf)])).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "not oneself");
    let res = test::call_service(
        &app,
        post(
            "/ui/users/nora/reset-password",
            &adam,
            form(&[("csrf", &csrf)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = one_time_password_in(&body(res).await);
    assert_ne!(second, otp);
    assert!(
        store(&fx)
            .password_hash("nora")
            .unwrap()
            .unwrap()
            .verify(&second)
    );
    for uri in [
        "/ui/users",
        "/ui/users/nora/disable",
        "/ui/users/nora/reset-password",
    ] {
        let res = test::call_service(
            &app,
            post(uri, &adam, form(&[("name", "z"), ("admin", "on")])).to_request(),
        )
        .await;
        assert_eq!(
            res.status(),
            StatusCode::FORBIDDEN,
            "{uri} without a CSRF token"
        );
    }
    let res = test::call_service(
        &app,
        post(
            "/ui/users/nobody/reset-password",
            &adam,
            form(&[("csrf", &csrf)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let actions = audit_actions(&fx);
    for a in [
        "user.created",
        "user.disabled",
        "user.enabled",
        "user.password_reset",
    ] {
        assert!(
            actions
                .iter()
                .any(|(x, actor, o)| x == a && actor == "adam" && o == "user:nora"),
            "{a}"
        );
    }
}

#[actix_web::test]
async fn officers_approve_a_new_administrator_in_the_ui_who_may_then_sign_in() {
    let fx = Fixture::new();
    let dir = fx.tmp.path().join("data");
    let toml = dir.join("keyhold.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n[quorum]\ncreate_admin = 2\n")).unwrap();
    for name in ["alice", "bob"] {
        user(&fx, name, &[Role::Officer]);
    }
    user(&fx, "rita", &[Role::Requester]);
    let made = crate::cli::run(
        crate::cli::keyhold(&dir)
            .arg("--policies")
            .arg(crate::cli::shipped_policies())
            .args(["users", "add", "adam", "--role", "admin"]),
    );
    assert!(made.ok, "{}", made.stderr);
    let otp = made.stdout.trim().to_owned();
    let app = app!(fx);

    // The right password is told the account waits; nothing else is.
    let res = try_login(&app, "adam", &otp).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(body(res).await.contains("waits for officers to approve it"));

    // Requesters do not see operations; officers do, with the approve form.
    let (rita, _) = login(&app, "rita").await;
    let html = body(test::call_service(&app, get("/ui/requests", &rita).to_request()).await).await;
    assert!(!html.contains("operation-1"), "{html}");
    for (officer, done) in [("alice", "op-approved"), ("bob", "op-done")] {
        let (cookie, csrf) = login(&app, officer).await;
        let html =
            body(test::call_service(&app, get("/ui/requests", &cookie).to_request()).await).await;
        assert!(
            html.contains("/ui/operations/1/approve"),
            "{officer}: {html}"
        );
        assert!(html.contains("create_admin"));
        let res = test::call_service(
            &app,
            post(
                "/ui/operations/1/approve",
                &cookie,
                form(&[("csrf", &csrf), ("comment", "known to us")]),
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{officer}");
        assert_eq!(location(&res), format!("/ui/requests?done={done}&id=1"));
    }
    // Carried out once: adam signs in (and must change the one-time password).
    let res = try_login(&app, "adam", &otp).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // Rejecting a finished operation is a clear 4xx.
    let (cookie, csrf) = login(&app, "alice").await;
    let res = test::call_service(
        &app,
        post(
            "/ui/operations/1/reject",
            &cookie,
            form(&[("csrf", &csrf), ("reason", "late")]),
        )
        .to_request(),
    )
    .await;
    assert!(res.status().is_client_error(), "{}", res.status());
}
