//! The admin UI through the real route table: sessions, CSRF, roles, lockout, screens.

use std::time::SystemTime;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::test;
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

// Declared after the macros above, so that these modules can use them.
mod access;
mod accounts;
mod credentials;
mod pages;
mod requests;
mod revoke;
mod sign_in;

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
