//! Who reaches which UI route: sign-in redirects, security headers, roles, CSRF.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{App, test, web};
use ca_core::users::Role;

use crate::api::Fixture;

use super::*;

#[actix_web::test]
async fn every_ui_route_redirects_to_sign_in_without_a_session() {
    let fx = Fixture::new();
    let app = app!(fx);
    for uri in [
        "/ui",
        "/ui/",
        "/ui/certs",
        "/ui/certs/0a0b",
        "/ui/certs/0a0b/download/pem",
        "/ui/requests",
        "/ui/audit",
        "/ui/password",
        "/ui/users",
    ] {
        let res = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(location(&res), "/ui/login", "{uri}");
    }
    for uri in [
        "/ui/logout",
        "/ui/password",
        "/ui/requests/1/approve",
        "/ui/requests/1/reject",
        "/ui/users",
        "/ui/users/x/disable",
    ] {
        let res =
            test::call_service(&app, post(uri, "", form(&[("csrf", "x")])).to_request()).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(location(&res), "/ui/login", "{uri}");
    }
    // A made-up session id is no session.
    let res = test::call_service(
        &app,
        get("/ui/", &format!("kh_session={}", "ab".repeat(32))).to_request(),
    )
    .await;
    assert_eq!(location(&res), "/ui/login");
}

#[actix_web::test]
async fn ui_responses_carry_the_security_headers_and_a_strict_cookie() {
    let fx = Fixture::new();
    user(&fx, "alice", &[Role::Admin]);
    let app = app!(fx);
    let res = try_login(&app, "alice", PASSWORD).await;
    let session = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("kh_session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: no Secure flag");
    let (cookie, _) = login(&app, "alice").await;
    for uri in ["/ui/login", "/ui/", "/ui/nowhere"] {
        let res = test::call_service(&app, get(uri, &cookie).to_request()).await;
        let h = res.headers();
        let csp = h
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'"), "{uri}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{uri}: {csp}");
        assert_eq!(h.get(header::X_FRAME_OPTIONS).unwrap(), "DENY", "{uri}");
        assert_eq!(
            h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff",
            "{uri}"
        );
        assert_eq!(
            h.get(header::REFERRER_POLICY).unwrap(),
            "no-referrer",
            "{uri}"
        );
    }
    let css = test::call_service(&app, get("/ui/static/app.css", "").to_request()).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(body(css).await.contains("font-family"));
}

#[actix_web::test]
async fn every_page_shows_the_user_roles_and_a_sign_out_button() {
    let fx = Fixture::new();
    user(&fx, "olga", &[Role::Officer, Role::Auditor]);
    let app = app!(fx);
    let (cookie, csrf) = login(&app, "olga").await;
    for uri in [
        "/ui/",
        "/ui/certs",
        "/ui/requests",
        "/ui/audit",
        "/ui/password",
    ] {
        let res = test::call_service(&app, get(uri, &cookie).to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        let html = body(res).await;
        assert!(html.contains(">olga<"), "{uri}");
        assert!(html.contains("officer,auditor"), "{uri}");
        assert!(html.contains("action=\"/ui/logout\""), "{uri}");
        assert!(
            html.contains(&csrf),
            "{uri}: the sign-out form carries the token"
        );
        assert!(!html.contains("<script"), "{uri}");
    }
}

#[actix_web::test]
async fn roles_without_the_right_get_403() {
    let fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    user(&fx, "otto", &[Role::Officer]);
    user(&fx, "aude", &[Role::Auditor]);
    user(&fx, "adam", &[Role::Admin]);
    let app = app!(fx);
    let mut sessions = Vec::new();
    for name in ["rita", "otto", "aude", "adam"] {
        sessions.push((name, login(&app, name).await));
    }
    for (name, (cookie, csrf)) in &sessions {
        let audit = test::call_service(&app, get("/ui/audit", cookie).to_request()).await;
        let expected = if matches!(*name, "aude" | "adam") {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(audit.status(), expected, "{name} GET /ui/audit");
        for uri in ["/ui/", "/ui/certs", "/ui/requests"] {
            let res = test::call_service(&app, get(uri, cookie).to_request()).await;
            assert_eq!(res.status(), StatusCode::OK, "{name} GET {uri}");
        }
        for action in ["approve", "reject"] {
            let res = test::call_service(
                &app,
                post(
                    &format!("/ui/requests/1/{action}"),
                    cookie,
                    form(&[("csrf", csrf), ("reason", "no"), ("comment", "ok")]),
                )
                .to_request(),
            )
            .await;
            if *name == "otto" {
                // An officer may; request 1 does not exist.
                assert_eq!(res.status(), StatusCode::NOT_FOUND, "{name} {action}");
            } else {
                assert_eq!(res.status(), StatusCode::FORBIDDEN, "{name} {action}");
            }
        }
    }
}

#[actix_web::test]
async fn posts_without_the_csrf_token_are_refused() {
    let fx = Fixture::new();
    user(&fx, "otto", &[Role::Officer]);
    let app = app!(fx);
    let (cookie, csrf) = login(&app, "otto").await;
    for uri in [
        "/ui/logout",
        "/ui/password",
        "/ui/requests/1/approve",
        "/ui/requests/1/reject",
    ] {
        for token in ["", "0000", &"a".repeat(64)] {
            let body = form(&[
                ("csrf", token),
                ("current", PASSWORD),
                ("new", "another long password"),
                ("confirm", "another long password"),
                ("reason", "r"),
            ]);
            let res = test::call_service(&app, post(uri, &cookie, body).to_request()).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{uri} with {token:?}");
        }
        let res = test::call_service(
            &app,
            post(uri, &cookie, "reason=r&comment=c".into()).to_request(),
        )
        .await;
        assert_eq!(
            res.status(),
            StatusCode::FORBIDDEN,
            "{uri} without the field"
        );
    }
    // The session survived all that (the logout was refused too).
    let res = test::call_service(&app, get("/ui/", &cookie).to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The sign-in form needs its token and the matching cookie.
    let res = test::call_service(
        &app,
        post(
            "/ui/login",
            "",
            form(&[("csrf", &csrf), ("name", "otto"), ("password", PASSWORD)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(cookie_value(&res, "kh_session").is_none());
}

/// Every UI page, with the roles that may see it (empty: every signed-in user).
const GET_ROUTES: &[(&str, &[Role])] = &[
    ("/ui/", &[]),
    ("/ui/certs", &[]),
    ("/ui/requests", &[]),
    ("/ui/password", &[]),
    ("/ui/ca", &[]),
    ("/ui/policies", &[]),
    ("/ui/requests/new", &[Role::Requester]),
    ("/ui/audit", &[Role::Auditor, Role::Admin]),
    ("/ui/users", &[Role::Admin]),
    ("/ui/tokens", &[Role::Admin]),
    ("/ui/acme", &[Role::Admin]),
];

/// Every UI form target, with the roles that may post to it.
const POST_ROUTES: &[(&str, &[Role])] = &[
    ("/ui/logout", &[]),
    ("/ui/password", &[]),
    ("/ui/requests/new", &[Role::Requester]),
    ("/ui/requests/999/approve", &[Role::Officer]),
    ("/ui/requests/999/reject", &[Role::Officer]),
    ("/ui/operations/999/approve", &[Role::Officer]),
    ("/ui/operations/999/reject", &[Role::Officer]),
    ("/ui/certs/0a0b/revoke", &[Role::Officer, Role::Requester]),
    ("/ui/users", &[Role::Admin]),
    ("/ui/users/nobody/disable", &[Role::Admin]),
    ("/ui/users/nobody/enable", &[Role::Admin]),
    ("/ui/users/nobody/reset-password", &[Role::Admin]),
    ("/ui/tokens", &[Role::Admin]),
    ("/ui/tokens/nobody/revoke", &[Role::Admin]),
    ("/ui/acme/eab", &[Role::Admin]),
    ("/ui/acme/eab/nobody/revoke", &[Role::Admin]),
];

#[actix_web::test]
async fn every_route_for_every_role_without_a_session_and_without_a_token() {
    let fx = Fixture::new();
    let people = [
        ("req", Role::Requester),
        ("off", Role::Officer),
        ("aud", Role::Auditor),
        ("adm", Role::Admin),
    ];
    for (name, role) in people {
        user(&fx, name, &[role]);
    }
    let app = app!(fx);
    let fields = |token: &str| {
        form(&[
            ("csrf", token),
            ("reason", "r"),
            ("comment", "c"),
            ("profile", "tls-server"),
            ("csr", "x"),
            ("name", "x"),
        ])
    };
    for (uri, _) in GET_ROUTES {
        let res = test::call_service(&app, get(uri, "").to_request()).await;
        assert_eq!(location(&res), "/ui/login", "GET {uri} without a session");
    }
    for (uri, _) in POST_ROUTES {
        let res = test::call_service(&app, post(uri, "", fields("x")).to_request()).await;
        assert_eq!(location(&res), "/ui/login", "POST {uri} without a session");
    }
    for (name, role) in people {
        let (cookie, csrf) = login(&app, name).await;
        for (uri, allowed) in GET_ROUTES {
            let res = test::call_service(&app, get(uri, &cookie).to_request()).await;
            let expected = if allowed.is_empty() || allowed.contains(&role) {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(res.status(), expected, "{name} GET {uri}");
        }
        for (uri, allowed) in POST_ROUTES {
            for token in ["", "0", &"f".repeat(64)] {
                let res =
                    test::call_service(&app, post(uri, &cookie, fields(token)).to_request()).await;
                assert_eq!(
                    res.status(),
                    StatusCode::FORBIDDEN,
                    "{name} POST {uri} with {token:?}"
                );
            }
            if *uri == "/ui/logout" {
                continue; // would end the session the loop goes on with
            }
            let res =
                test::call_service(&app, post(uri, &cookie, fields(&csrf)).to_request()).await;
            let may = allowed.is_empty() || allowed.contains(&role);
            if may {
                assert_ne!(res.status(), StatusCode::FORBIDDEN, "{name} POST {uri}");
                assert_ne!(location(&res), "/ui/login", "{name} POST {uri}");
            } else {
                assert_eq!(res.status(), StatusCode::FORBIDDEN, "{name} POST {uri}");
            }
        }
        let res = test::call_service(&app, get("/ui/nowhere", &cookie).to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let res = test::call_service(
            &app,
            post("/ui/logout", &cookie, fields(&csrf)).to_request(),
        )
        .await;
        assert_eq!(location(&res), "/ui/login", "{name} signs out");
    }
}
