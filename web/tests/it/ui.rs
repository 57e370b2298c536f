//! The admin UI through the real route table: sessions, CSRF, roles, lockout, screens.

use std::time::SystemTime;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{App, test, web};
use ca_core::audit::{Action, AuditEvent};
use ca_core::issuance::{Channel, Outcome, Submission};
use ca_core::policy::Requester;
use ca_core::users::{self, PasswordHash, Role, SessionId, UserStore};

use crate::api::Fixture;

pub(crate) const PASSWORD: &str = "a test password, long enough";

macro_rules! app {
    ($fx:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($fx.state.clone()))
                .configure(ca_web::configure),
        )
        .await
    };
}

fn store(fx: &Fixture) -> std::sync::Arc<dyn UserStore> {
    ca_web::http::ui::users(&fx.state)
}

/// A user with `roles` and the password [`PASSWORD`], already changed (no forced change).
pub(crate) fn user(fx: &Fixture, name: &str, roles: &[Role]) {
    let s = store(fx);
    users::create_with_one_time_password(s.as_ref(), name, roles, "test", "test").unwrap();
    s.set_password(
        name,
        &PasswordHash::new(PASSWORD).unwrap(),
        false,
        None,
        &AuditEvent::new(
            Action::UserPasswordReset,
            "test",
            "test",
            format!("user:{name}"),
        ),
    )
    .unwrap();
}

pub(crate) fn set_cookies(res: &ServiceResponse) -> Vec<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

pub(crate) fn cookie_value(res: &ServiceResponse, name: &str) -> Option<String> {
    set_cookies(res).iter().find_map(|c| {
        c.split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    })
}

pub(crate) fn location(res: &ServiceResponse) -> String {
    res.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", ca_web::http::ui::views::query_value(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn post(uri: &str, cookie: &str, body: String) -> test::TestRequest {
    test::TestRequest::post()
        .uri(uri)
        .insert_header((header::COOKIE, cookie.to_owned()))
        .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
        .set_payload(body)
}

pub(crate) fn get(uri: &str, cookie: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri(uri)
        .insert_header((header::COOKIE, cookie.to_owned()))
}

/// Signs in through the form; the response to the POST.
pub(crate) async fn try_login<S>(app: &S, name: &str, password: &str) -> ServiceResponse
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let page =
        test::call_service(app, test::TestRequest::get().uri("/ui/login").to_request()).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = cookie_value(&page, "kh_login").unwrap();
    let body = String::from_utf8(test::read_body(page).await.to_vec()).unwrap();
    assert!(
        body.contains(&csrf),
        "the form carries the token of its cookie"
    );
    test::call_service(
        app,
        post(
            "/ui/login",
            &format!("kh_login={csrf}"),
            form(&[("csrf", &csrf), ("name", name), ("password", password)]),
        )
        .to_request(),
    )
    .await
}

/// Signs in; the `Cookie` header value and the session's CSRF token.
pub(crate) async fn login<S>(app: &S, name: &str) -> (String, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let res = try_login(app, name, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{name} signs in");
    let id = cookie_value(&res, "kh_session").unwrap();
    let csrf = SessionId::from_cookie(&id).unwrap().csrf_token();
    (format!("kh_session={id}"), csrf)
}

pub(crate) async fn body(res: ServiceResponse) -> String {
    String::from_utf8(test::read_body(res).await.to_vec()).unwrap()
}

fn audit_actions(fx: &Fixture) -> Vec<(String, String, String)> {
    let store = &fx.state.ledger;
    let (head, _) = store.audit_head().unwrap().unwrap();
    store
        .audit_entries(1, head)
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.actor, r.object))
        .collect()
}

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

fn submit(
    fx: &Fixture,
    requester: &str,
    roles: &[&str],
    profile: &str,
    cn: &str,
    sans: &str,
) -> Outcome {
    let csr = fx.csr(cn, &format!("/CN={cn}"), sans);
    fx.state
        .ca
        .submit(
            &Submission {
                profile,
                csr: csr.as_bytes(),
                requester: &Requester {
                    name: requester.into(),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                },
                source: "test",
                channel: Channel::Cli,
            },
            SystemTime::now(),
        )
        .unwrap()
}

fn serial(o: &Outcome) -> String {
    match o {
        Outcome::Issued(i) => i.serial.to_string(),
        other => panic!("not issued: {other:?}"),
    }
}

#[actix_web::test]
async fn requesters_see_only_their_own_certificates() {
    let fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    user(&fx, "aude", &[Role::Auditor]);
    let mine = serial(&submit(
        &fx,
        "rita",
        &["requester"],
        "tls-server",
        "rita.internal",
        "DNS:rita.internal",
    ));
    let theirs = serial(&submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "bob.internal",
        "DNS:bob.internal",
    ));
    let app = app!(fx);
    let (rita, _) = login(&app, "rita").await;
    let html = body(test::call_service(&app, get("/ui/certs", &rita).to_request()).await).await;
    assert!(html.contains(&mine) && !html.contains(&theirs), "{html}");
    let res = test::call_service(
        &app,
        get(&format!("/ui/certs/{theirs}"), &rita).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(
        &app,
        get(&format!("/ui/certs/{theirs}/download/pem"), &rita).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(&app, get(&format!("/ui/certs/{mine}"), &rita).to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body(res).await;
    assert!(html.contains("DNS:rita.internal") && html.contains("SHA-256 fingerprint"));
    let pem = test::call_service(
        &app,
        get(&format!("/ui/certs/{mine}/download/pem"), &rita).to_request(),
    )
    .await;
    assert_eq!(pem.status(), StatusCode::OK);
    assert!(body(pem).await.starts_with("-----BEGIN CERTIFICATE-----"));

    // A requester naming someone else still sees only their own.
    let html =
        body(test::call_service(&app, get("/ui/certs?requester=bob", &rita).to_request()).await)
            .await;
    assert!(html.contains(&mine) && !html.contains(&theirs), "{html}");

    let (aude, _) = login(&app, "aude").await;
    let html = body(test::call_service(&app, get("/ui/certs", &aude).to_request()).await).await;
    assert!(html.contains(&mine) && html.contains(&theirs));
    // Search by SAN, and by serial with colons.
    let html =
        body(test::call_service(&app, get("/ui/certs?q=bob.intern", &aude).to_request()).await)
            .await;
    assert!(html.contains(&theirs) && !html.contains(&mine));
    let colons: Vec<String> = theirs
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
        .collect();
    let uri = format!("/ui/certs?q={}", colons.join("%3A"));
    let html = body(test::call_service(&app, get(&uri, &aude).to_request()).await).await;
    assert!(html.contains(&theirs) && !html.contains(&mine), "{uri}");
    let res = test::call_service(&app, get("/ui/certs?status=bogus", &aude).to_request()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Every order lists both; an unknown one is refused.
    for sort in ["newest", "oldest", "expiry", "expiry-desc"] {
        let uri = format!("/ui/certs?sort={sort}");
        let html = body(test::call_service(&app, get(&uri, &aude).to_request()).await).await;
        assert!(html.contains(&theirs) && html.contains(&mine), "{uri}");
    }
    let res = test::call_service(&app, get("/ui/certs?sort=sideways", &aude).to_request()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // By requester.
    let html =
        body(test::call_service(&app, get("/ui/certs?requester=bob", &aude).to_request()).await)
            .await;
    assert!(html.contains(&theirs) && !html.contains(&mine), "{html}");
}

#[actix_web::test]
async fn officers_approve_others_requests_never_their_own() {
    let fx = Fixture::new();
    user(&fx, "otto", &[Role::Officer, Role::Requester]);
    user(&fx, "olga", &[Role::Officer]);
    user(&fx, "oscar", &[Role::Officer]);
    let Outcome::Pending { request_id, .. } = submit(
        &fx,
        "otto",
        &["officer", "requester"],
        "code-signing",
        "Release signing",
        "",
    ) else {
        panic!("code-signing needs approval");
    };
    let app = app!(fx);
    let (otto, otto_csrf) = login(&app, "otto").await;
    let html = body(test::call_service(&app, get("/ui/requests", &otto).to_request()).await).await;
    assert!(html.contains(&format!("request-{request_id}")));
    assert!(html.contains("another officer decides"));
    assert!(!html.contains(&format!("/ui/requests/{request_id}/approve")));
    // Posting anyway: ca-core refuses.
    let res = test::call_service(
        &app,
        post(
            &format!("/ui/requests/{request_id}/approve"),
            &otto,
            form(&[("csrf", &otto_csrf), ("comment", "mine")]),
        )
        .to_request(),
    )
    .await;
    assert!(res.status().is_client_error(), "{}", res.status());

    for officer in ["olga", "oscar"] {
        let (cookie, csrf) = login(&app, officer).await;
        let html =
            body(test::call_service(&app, get("/ui/requests", &cookie).to_request()).await).await;
        assert!(
            html.contains(&format!("/ui/requests/{request_id}/approve")),
            "{officer}"
        );
        let res = test::call_service(
            &app,
            post(
                &format!("/ui/requests/{request_id}/approve"),
                &cookie,
                form(&[("csrf", &csrf), ("comment", "looks right")]),
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{officer}");
        let done = if officer == "olga" {
            "approved"
        } else {
            "issued"
        };
        assert_eq!(
            location(&res),
            format!("/ui/requests?done={done}&id={request_id}")
        );
        let res = test::call_service(&app, get(&location(&res), &cookie).to_request()).await;
        assert!(
            body(res)
                .await
                .contains(&format!("Request {request_id} approved"))
        );
    }
    let row = fx.state.ledger.request(request_id).unwrap().unwrap();
    assert!(row.serial.is_some(), "issued after two approvals");
}

#[actix_web::test]
async fn officers_reject_with_a_reason() {
    let fx = Fixture::new();
    user(&fx, "olga", &[Role::Officer]);
    let Outcome::Pending { request_id, .. } =
        submit(&fx, "carl", &["requester"], "code-signing", "Nightly", "")
    else {
        panic!("code-signing needs approval");
    };
    let app = app!(fx);
    let (cookie, csrf) = login(&app, "olga").await;
    let uri = format!("/ui/requests/{request_id}/reject");
    let res = test::call_service(
        &app,
        post(&uri, &cookie, form(&[("csrf", &csrf), ("reason", " ")])).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = test::call_service(
        &app,
        post(
            &uri,
            &cookie,
            form(&[("csrf", &csrf), ("reason", "not ours")]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = test::call_service(
        &app,
        post(&uri, &cookie, form(&[("csrf", &csrf), ("reason", "again")])).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "already decided");
}

#[actix_web::test]
async fn the_dashboard_counts_and_the_audit_log_shows_sign_ins() {
    let fx = Fixture::new();
    user(&fx, "aude", &[Role::Auditor]);
    user(&fx, "rita", &[Role::Requester]);
    submit(
        &fx,
        "rita",
        &["requester"],
        "tls-server",
        "a.internal",
        "DNS:a.internal",
    );
    submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "b.internal",
        "DNS:b.internal",
    );
    submit(&fx, "carl", &["requester"], "code-signing", "Nightly", "");
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let html = body(test::call_service(&app, get("/ui/", &aude).to_request()).await).await;
    assert!(html.contains("id=\"count-valid\">2<"), "{html}");
    assert!(html.contains("id=\"count-pending\">1<"), "{html}");
    assert!(html.contains("login.succeeded"), "recent events: {html}");
    assert!(html.contains("Database: <span class=\"status valid\">answers"));
    assert!(html.contains("Key store: <span class=\"status valid\">answers"));
    let (rita, _) = login(&app, "rita").await;
    let html = body(test::call_service(&app, get("/ui/", &rita).to_request()).await).await;
    assert!(html.contains("id=\"count-valid\">1<"), "own only: {html}");
    assert!(
        !html.contains("login.succeeded"),
        "no audit events for requesters"
    );
    let html = body(test::call_service(&app, get("/ui/audit", &aude).to_request()).await).await;
    assert!(html.contains("user.created") && html.contains("login.succeeded"));
}

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
async fn requesters_submit_csrs_under_the_profiles_open_to_them() {
    let fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    user(&fx, "aude", &[Role::Auditor]);
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let res = test::call_service(&app, get("/ui/requests/new", &aude).to_request()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let (rita, csrf) = login(&app, "rita").await;
    let html =
        body(test::call_service(&app, get("/ui/requests/new", &rita).to_request()).await).await;
    assert!(html.contains("value=\"tls-server\"") && html.contains("value=\"code-signing\""));
    assert!(!html.contains("value=\"sub-ca\""), "officers only");

    // Issued at once: to the certificate.
    let csr = fx.csr("svc", "/CN=svc.internal", "DNS:svc.internal");
    let submit = |profile: &str, csr: &str, token: &str| {
        post(
            "/ui/requests/new",
            &rita,
            form(&[("csrf", token), ("profile", profile), ("csr", csr)]),
        )
        .to_request()
    };
    let res = test::call_service(&app, submit("tls-server", &csr, &csrf)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&res).starts_with("/ui/certs/"),
        "{}",
        location(&res)
    );
    let res = test::call_service(&app, get(&location(&res), &rita).to_request()).await;
    assert!(body(res).await.contains("DNS:svc.internal"));

    // Needs approval: to the queue, where rita sees her own request.
    let csr = fx.csr("sign", "/CN=Rita signing", "");
    let res = test::call_service(&app, submit("code-signing", &csr, &csrf)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/ui/requests?done=submitted&id="));
    let html = body(test::call_service(&app, get(&location(&res), &rita).to_request()).await).await;
    assert!(html.contains("waits for an officer") && html.contains("CN=Rita signing"));

    // Refused by policy, with the reasons; a bad CSR; a profile not open to her; no token.
    let outside = fx.csr("out", "/CN=www.example.com", "DNS:www.example.com");
    let res = test::call_service(&app, submit("tls-server", &outside, &csrf)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body(res).await.contains("www.example.com"));
    let res = test::call_service(&app, submit("tls-server", "not a csr", &csrf)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = test::call_service(&app, submit("sub-ca", &csr, &csrf)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = test::call_service(&app, submit("tls-server", &csr, "")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
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

#[actix_web::test]
async fn officers_revoke_any_certificate_requesters_their_own() {
    let fx = Fixture::new();
    user(&fx, "olga", &[Role::Officer]);
    user(&fx, "rita", &[Role::Requester]);
    user(&fx, "aude", &[Role::Auditor]);
    let ritas = serial(&submit(
        &fx,
        "rita",
        &["requester"],
        "tls-server",
        "r.internal",
        "DNS:r.internal",
    ));
    let bobs = serial(&submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "b.internal",
        "DNS:b.internal",
    ));
    let app = app!(fx);
    let revoke = |serial: &str, cookie: &str, fields: &[(&str, &str)]| {
        post(&format!("/ui/certs/{serial}/revoke"), cookie, form(fields)).to_request()
    };

    let (aude, aude_csrf) = login(&app, "aude").await;
    let html =
        body(test::call_service(&app, get(&format!("/ui/certs/{bobs}"), &aude).to_request()).await)
            .await;
    assert!(!html.contains("/revoke\""), "auditors get no revoke form");
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &aude,
            &[
                ("csrf", &aude_csrf),
                ("reason", "superseded"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A requester: her own, not for cACompromise, never someone else's.
    let (rita, rita_csrf) = login(&app, "rita").await;
    let html = body(
        test::call_service(&app, get(&format!("/ui/certs/{ritas}"), &rita).to_request()).await,
    )
    .await;
    assert!(html.contains("value=\"superseded\"") && !html.contains("value=\"cACompromise\""));
    let res = test::call_service(
        &app,
        revoke(
            &ritas,
            &rita,
            &[
                ("csrf", &rita_csrf),
                ("reason", "cACompromise"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &rita,
            &[
                ("csrf", &rita_csrf),
                ("reason", "superseded"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(
        &app,
        revoke(
            &ritas,
            &rita,
            &[
                ("csrf", &rita_csrf),
                ("reason", "superseded"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("/ui/certs/{ritas}?done=revoked"));

    // An officer: anyone's, once, and only after confirming.
    let (olga, csrf) = login(&app, "olga").await;
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &olga,
            &[("csrf", &csrf), ("reason", "keyCompromise")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "no confirmation");
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &olga,
            &[("csrf", &csrf), ("reason", "stolen"), ("confirm", "on")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "unknown reason");
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &olga,
            &[
                ("csrf", &csrf),
                ("reason", "keyCompromise"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = body(test::call_service(&app, get(&location(&res), &olga).to_request()).await).await;
    assert!(
        html.contains("id=\"revoked\"") && html.contains("(keyCompromise)"),
        "{html}"
    );
    assert!(!html.contains("Revoke this certificate"));
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &olga,
            &[
                ("csrf", &csrf),
                ("reason", "keyCompromise"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "already revoked");
    let html = body(test::call_service(&app, get("/ui/", &olga).to_request()).await).await;
    assert!(html.contains("id=\"count-revoked\">2<"), "{html}");

    let actions = audit_actions(&fx);
    assert!(actions.contains(&(
        "certificate.revoked".into(),
        "rita".into(),
        format!("certificate:{ritas}")
    )));
    assert!(actions.contains(&(
        "certificate.revoked".into(),
        "olga".into(),
        format!("certificate:{bobs}")
    )));
}

#[actix_web::test]
async fn the_ca_and_policy_pages_show_the_hierarchy_and_the_profiles() {
    let fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    let app = app!(fx);
    let (rita, _) = login(&app, "rita").await;
    let html = body(test::call_service(&app, get("/ui/ca", &rita).to_request()).await).await;
    for issuer in fx.state.ca.issuers() {
        assert!(
            html.contains(&format!("id=\"issuer-{}\"", issuer.id)),
            "{}",
            issuer.id
        );
        assert!(
            html.contains(&issuer.ca.cert.fingerprint_sha256()),
            "{}",
            issuer.id
        );
        assert!(html.contains(&format!("href=\"/ca/{}.pem\"", issuer.id)));
    }
    assert!(html.contains("Root CA") && html.contains("OCSP responder"));
    let html = body(test::call_service(&app, get("/ui/policies", &rita).to_request()).await).await;
    assert!(html.contains("id=\"profile-tls-server\"") && html.contains("requester, officer"));
    assert!(html.contains("dns_suffixes"), "the file itself");
}

#[actix_web::test]
async fn the_audit_log_filters_by_actor_action_and_object_across_pages() {
    let fx = Fixture::new();
    user(&fx, "aude", &[Role::Auditor]);
    let events: Vec<AuditEvent> = (0..60)
        .map(|i| {
            AuditEvent::new(Action::LoginFailed, "anonymous", "10.0.0.9", "user:mallory")
                .with("try", i.to_string())
        })
        .collect();
    fx.state.ledger.audit(&events).unwrap();
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let count = |html: &str, action: &str| html.matches(&format!("<code>{action}</code>")).count();

    let html = body(
        test::call_service(
            &app,
            get("/ui/audit?action=login.failed", &aude).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(count(&html, "login.failed"), 50);
    assert_eq!(count(&html, "login.succeeded"), 0);
    let start = html
        .find("rel=\"next\"")
        .map(|i| html[..i].rfind("href=\"").unwrap() + 6)
        .unwrap();
    let older = html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let html = body(test::call_service(&app, get(&older, &aude).to_request()).await).await;
    assert_eq!(count(&html, "login.failed"), 10, "{older}");

    let html =
        body(test::call_service(&app, get("/ui/audit?action=login.", &aude).to_request()).await)
            .await;
    assert_eq!(
        count(&html, "login.succeeded"),
        1,
        "a prefix ending in a dot"
    );
    let html =
        body(test::call_service(&app, get("/ui/audit?actor=aude", &aude).to_request()).await).await;
    assert_eq!(count(&html, "login.succeeded"), 1);
    assert_eq!(count(&html, "login.failed"), 0);
    let html =
        body(test::call_service(&app, get("/ui/audit?object=aude", &aude).to_request()).await)
            .await;
    assert!(count(&html, "user.created") == 1 && count(&html, "login.failed") == 0);
    let html =
        body(test::call_service(&app, get("/ui/audit?actor=nobody", &aude).to_request()).await)
            .await;
    assert!(html.contains("No entries."));
}

#[actix_web::test]
async fn the_certificate_list_exports_its_filter_as_csv() {
    let fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    user(&fx, "aude", &[Role::Auditor]);
    let mine = serial(&submit(
        &fx,
        "rita",
        &["requester"],
        "tls-server",
        "c1.internal",
        "DNS:c1.internal",
    ));
    let theirs = serial(&submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "c2.internal",
        "DNS:c2.internal",
    ));
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let html =
        body(test::call_service(&app, get("/ui/certs?q=c2.internal", &aude).to_request()).await)
            .await;
    assert!(
        html.contains("href=\"/ui/certs.csv?q=c2.internal&amp;profile=&amp;status=\"")
            || html.contains("/ui/certs.csv?q=c2.internal&#38;"),
        "{html}"
    );
    let res = test::call_service(&app, get("/ui/certs.csv", &aude).to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = body(res).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "serial,status,subject,sans,profile,requester,not_before,not_after,issued_at"
    );
    assert_eq!(lines.len(), 3);
    assert!(csv.contains(&mine) && csv.contains(&theirs));
    assert!(csv.contains("\"CN=c2.internal,O=Keyhold\""));
    let csv = body(
        test::call_service(&app, get("/ui/certs.csv?q=c2.internal", &aude).to_request()).await,
    )
    .await;
    assert_eq!(csv.lines().count(), 2);
    let (rita, _) = login(&app, "rita").await;
    let csv = body(test::call_service(&app, get("/ui/certs.csv", &rita).to_request()).await).await;
    assert!(
        csv.contains(&mine) && !csv.contains(&theirs),
        "requesters export their own only"
    );
}

#[actix_web::test]
async fn administrators_create_and_revoke_api_tokens_in_the_ui() {
    let fx = Fixture::new();
    user(&fx, "adam", &[Role::Admin]);
    let app = app!(fx);
    let (adam, csrf) = login(&app, "adam").await;
    let create = |fields: &[(&str, &str)]| {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        post("/ui/tokens", &adam, form(&all)).to_request()
    };
    let res = test::call_service(
        &app,
        create(&[
            ("name", "deployer"),
            ("role", "requester"),
            ("profiles", "tls-server"),
            ("days", "30"),
        ]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body(res).await;
    let start = html.find("id=\"new-token\">").unwrap() + "id=\"new-token\">".len();
    let token = html[start..].split('<').next().unwrap().to_owned();
    assert!(token.starts_with("kh_"));
    let api = |token: &str| {
        test::TestRequest::get()
            .uri("/api/v1/certificates")
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
            .to_request()
    };
    assert_eq!(
        test::call_service(&app, api(&token)).await.status(),
        StatusCode::OK
    );
    let html = body(test::call_service(&app, get("/ui/tokens", &adam).to_request()).await).await;
    assert!(
        html.contains("id=\"token-deployer\"") && !html.contains(&token),
        "shown once"
    );

    for (fields, status) in [
        (
            vec![("name", "deployer"), ("role", "requester")],
            StatusCode::CONFLICT,
        ),
        (
            vec![("name", "x y"), ("role", "requester")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("name", "z"), ("role", "root")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("name", "z"), ("role", "admin"), ("profiles", "nope")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("name", "z"), ("role", "admin"), ("days", "0")],
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let res = test::call_service(&app, create(&fields)).await;
        assert_eq!(res.status(), status, "{fields:?}");
    }

    let res = test::call_service(
        &app,
        post(
            "/ui/tokens/deployer/revoke",
            &adam,
            form(&[("csrf", &csrf)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        test::call_service(&app, api(&token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let res = test::call_service(
        &app,
        post(
            "/ui/tokens/deployer/revoke",
            &adam,
            form(&[("csrf", &csrf)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "already revoked");
    let actions = audit_actions(&fx);
    assert!(actions.contains(&(
        "token.created".into(),
        "adam".into(),
        "token:deployer".into()
    )));
    assert!(actions.contains(&(
        "token.revoked".into(),
        "adam".into(),
        "token:deployer".into()
    )));
}

#[actix_web::test]
async fn revoking_in_the_ui_makes_ocsp_answer_revoked_at_once() {
    use std::process::Command;
    let fx = Fixture::new();
    user(&fx, "olga", &[Role::Officer]);
    let s = serial(&submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "b.internal",
        "DNS:b.internal",
    ));
    let app = app!(fx);
    let work = fx.tmp.path().to_owned();
    let row = fx
        .state
        .ledger
        .certificate(&ca_core::store::Serial::parse(&s).unwrap())
        .unwrap()
        .unwrap();
    let cert = ca_core::x509::SignedCert::from_der(row.der.as_deref().unwrap()).unwrap();
    std::fs::write(work.join("cert.pem"), cert.to_pem().unwrap()).unwrap();
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/ca/issuing-ca.pem")
            .to_request(),
    )
    .await;
    std::fs::write(work.join("issuer.pem"), test::read_body(res).await).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&work)
            .output()
            .expect("openssl must be installed (.ci/setup installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    openssl(&[
        "ocsp",
        "-issuer",
        "issuer.pem",
        "-cert",
        "cert.pem",
        "-no_nonce",
        "-reqout",
        "plain.der",
    ]);
    let plain = std::fs::read(work.join("plain.der")).unwrap();
    let ask = |body: Vec<u8>| {
        test::TestRequest::post()
            .uri("/ocsp")
            .insert_header(("Content-Type", "application/ocsp-request"))
            .set_payload(body)
            .to_request()
    };
    let status_of = |der: &[u8], name: &str| {
        std::fs::write(work.join(name), der).unwrap();
        let text = openssl(&["ocsp", "-respin", name, "-resp_text", "-noverify"]);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("Cert Status: "))
            .unwrap()
            .to_owned()
    };
    // Asked once, the `good` answer is now cached.
    let first = test::read_body(test::call_service(&app, ask(plain.clone())).await).await;
    assert_eq!(status_of(&first, "r1.der"), "good");
    let (olga, csrf) = login(&app, "olga").await;
    let res = test::call_service(
        &app,
        post(
            &format!("/ui/certs/{s}/revoke"),
            &olga,
            form(&[
                ("csrf", &csrf),
                ("reason", "keyCompromise"),
                ("confirm", "on"),
            ]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let after = test::read_body(test::call_service(&app, ask(plain)).await).await;
    assert_eq!(status_of(&after, "r2.der"), "revoked");
}

#[actix_web::test]
async fn an_audit_page_below_the_first_entry_is_empty_not_an_error() {
    let fx = Fixture::new();
    user(&fx, "aude", &[Role::Auditor]);
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let res = test::call_service(
        &app,
        get("/ui/audit?before=-9223372036854775808", &aude).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
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

#[actix_web::test]
async fn the_dashboard_shows_scheduled_backups() {
    // Issue 19: what `[backup] every` did last is on the dashboard, beside /metrics and
    // /readyz.
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("identity.txt");
    let r = crate::cli::run(crate::cli::keyhold(&keys.path().join("data")).args([
        "backup",
        "keygen",
        "--out",
        identity.to_str().unwrap(),
    ]));
    assert!(r.ok, "{}", r.stderr);
    let recipient = r.stdout.trim().to_owned();
    let mut fx = Fixture::with_config(&format!(
        "[backup]\nrecipients = [\"{recipient}\"]\nevery = \"1h\"\n"
    ));
    let dir = fx.tmp.path().join("data");
    let paths = ca_web::wiring::Paths {
        data_dir: dir.clone(),
        passphrase_file: None,
        pin_file: None,
        policies: Some(crate::cli::shipped_policies()),
    };
    let config = ca_web::config::Config::load(&dir).unwrap();
    let plan = ca_web::backups::schedule(&paths, &config).unwrap().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (status, handle) =
        ca_web::backups::spawn_schedule(paths, config, plan, stop.clone(), tracing::Span::none())
            .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status.last_success().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            status.last_failure()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    fx.state.backups = Some(status);
    user(&fx, "aude", &[Role::Auditor]);
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let html = body(test::call_service(&app, get("/ui/", &aude).to_request()).await).await;
    assert!(html.contains("id=\"backup-status\""), "{html}");
    assert!(
        html.contains("on schedule") && html.contains("last backup"),
        "{html}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    handle.join().unwrap();
}

#[actix_web::test]
async fn administrators_create_and_revoke_acme_eab_keys_in_the_ui() {
    let fx = Fixture::new();
    user(&fx, "adam", &[Role::Admin]);
    let dir = tempfile::tempdir().unwrap();
    let config = ca_web::config::AcmeConfig {
        enabled: true,
        require_eab: true,
        http01_port: 80,
        tls_alpn01_port: 443,
        dns_resolver: Some("127.0.0.1:53".into()),
        secret_file: None,
        default_profile: None,
        orders_per_hour: 0,
        orders_per_identifier_per_hour: 0,
        order_lifetime: "1h".into(),
    };
    let mut state = fx.state.clone();
    state.acme = Some(ca_web::http::acme::start(&state, dir.path(), &config).unwrap());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(ca_web::configure),
    )
    .await;
    let (adam, csrf) = login(&app, "adam").await;
    let res = test::call_service(
        &app,
        post(
            "/ui/acme/eab",
            &adam,
            form(&[
                ("csrf", &csrf),
                ("name", "team-a"),
                ("profiles", "tls-server"),
            ]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body(res).await;
    let shown = |id: &str| {
        let start = html.find(&format!("id=\"{id}\">")).unwrap() + id.len() + 6;
        html[start..].split('<').next().unwrap().to_owned()
    };
    let (kid, hmac) = (shown("new-eab-kid"), shown("new-eab-hmac"));
    assert!(kid.len() >= 22 && hmac.len() >= 43, "{kid} {hmac}");
    let html = body(test::call_service(&app, get("/ui/acme", &adam).to_request()).await).await;
    assert!(
        html.contains("id=\"eab-team-a\"") && html.contains(&kid) && !html.contains(&hmac),
        "listed, the HMAC key shown once"
    );
    let res = test::call_service(
        &app,
        post(
            "/ui/acme/eab",
            &adam,
            form(&[("csrf", &csrf), ("name", "team-b"), ("profiles", "sub-ca")]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "a profile closed to ACME"
    );
    let res = test::call_service(
        &app,
        post(
            "/ui/acme/eab/team-a/revoke",
            &adam,
            form(&[("csrf", &csrf)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(location(&res), "/ui/acme?revoked=team-a");
    let html =
        body(test::call_service(&app, get("/ui/acme?revoked=team-a", &adam).to_request()).await)
            .await;
    assert!(html.contains("EAB key team-a revoked.") && html.contains(">revoked<"));
    let dashboard = body(test::call_service(&app, get("/ui/", &adam).to_request()).await).await;
    assert!(
        dashboard.contains("id=\"count-acme\""),
        "the dashboard counts ACME issuance"
    );
}
