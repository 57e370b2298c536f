//! Issue 15: each attack from the hardening review, performed as described (CLI, UI or API),
//! and refused.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::users::{self, Role};

use crate::api::Fixture;
use crate::quorum::{add_user, cli, require_quorum, users_of};
use crate::ui::{form, login, post, user};

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

/// Item 1: `users add zed --role admin` under quorum, `ops reject`, then `users enable zed`
/// (CLI) or `POST /ui/users/zed/enable` (UI) must not bring the account to life.
#[actix_web::test]
async fn a_rejected_administrator_can_never_be_enabled() {
    let fx = Fixture::new();
    require_quorum(&fx, 2, 0);
    for name in ["alice", "bob"] {
        add_user(&fx, name, &[Role::Officer]);
    }
    user(&fx, "root", &[Role::Admin]);
    let made = cli(&fx, &["users", "add", "zed", "--role", "admin"]);
    assert!(made.ok, "{}", made.stderr);
    let password = made.stdout.trim().to_owned();
    let rejected = cli(
        &fx,
        &["ops", "reject", "1", "--as", "alice", "--reason", "no"],
    );
    assert!(rejected.ok, "{}", rejected.stderr);

    let enabled = cli(&fx, &["users", "enable", "zed"]);
    assert!(!enabled.ok, "enabled after rejection: {}", enabled.stdout);
    assert!(
        enabled.stderr.contains("operation 1 is rejected"),
        "{}",
        enabled.stderr
    );

    let app = app!(fx);
    let (cookie, csrf) = login(&app, "root").await;
    let res = test::call_service(
        &app,
        post("/ui/users/zed/enable", &cookie, form(&[("csrf", &csrf)])).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);

    let store = users_of(&fx);
    assert!(store.user("zed").unwrap().unwrap().disabled);
    let attempt = users::login(
        store.as_ref(),
        "zed",
        &password,
        &[7u8; 32],
        "127.0.0.1",
        SystemTime::now(),
    )
    .unwrap();
    assert!(
        matches!(attempt, users::Login::Refused(_)),
        "zed signed in: {attempt:?}"
    );
}
