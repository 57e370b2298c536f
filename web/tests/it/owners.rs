//! Issue 15, item 3: administrators cannot sign with other people's code-signing keys. A
//! key's owner is a principal (a person, or the API token that asked for it), binding a
//! token needs the owner's consent, and token names never collide with people, key owners
//! or reserved names. Each attack as the review performed it, refused.

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::Role;
use ca_core::issuance::Channel;
use serde_json::json;

use crate::api::Fixture;
use crate::bindings::issued_key_via;
use crate::quorum::cli;
use crate::support::bearer;

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

fn sign(token: &str, label: &str) -> actix_http::Request {
    let digest = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        b"build 42",
    ));
    test::TestRequest::post()
        .uri("/api/v1/sign")
        .insert_header(bearer(token))
        .set_json(json!({"key": label, "digest": digest, "digest_algorithm": "sha256"}))
        .to_request()
}

fn bind(token: &str, label: &str, who: &str) -> actix_http::Request {
    test::TestRequest::post()
        .uri(&format!("/api/v1/codesign/keys/{label}/bindings"))
        .insert_header(bearer(token))
        .set_json(json!({"token": who}))
        .to_request()
}

#[actix_web::test]
async fn an_administrator_cannot_bind_a_token_it_made_to_someone_elses_key() {
    let fx = Fixture::new();
    let app = app!(fx);
    // carol, a CLI-only requester, owns the key.
    let label = issued_key_via(&fx, Channel::Cli);
    let admin = fx.token("root-admin", Role::Admin);
    // The administrator makes a token of its own...
    let made = cli(
        &fx,
        &[
            "tokens",
            "create",
            "--name",
            "mallory-ci",
            "--role",
            "requester",
        ],
    );
    assert!(made.ok, "{}", made.stderr);
    let mallory = made
        .stdout
        .split_whitespace()
        .find(|w| w.len() > 30)
        .unwrap_or_else(|| panic!("a token in {}", made.stdout))
        .to_owned();
    // ...and binds it to carol's key: through the API (its admin token, or the new token
    // itself) and through the CLI (naming itself or anyone but carol). All refused.
    for t in [&admin, &mallory] {
        let res = test::call_service(&app, bind(t, &label, "mallory-ci")).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    for who in ["root", "mallory-ci", "root-admin"] {
        let r = cli(
            &fx,
            &[
                "codesign",
                "bind",
                "--key",
                &label,
                "--token",
                "mallory-ci",
                "--as",
                who,
            ],
        );
        assert!(!r.ok, "{who} bound: {}", r.stdout);
        assert!(r.stderr.contains("is not the owner"), "{}", r.stderr);
    }
    let res = test::call_service(&app, sign(&mallory, &label)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(fx.state.codesign.bindings(&label).unwrap().is_empty());

    // With carol's consent the same token signs.
    let r = cli(
        &fx,
        &[
            "codesign",
            "bind",
            "--key",
            &label,
            "--token",
            "mallory-ci",
            "--as",
            "carol",
        ],
    );
    assert!(r.ok, "{}", r.stderr);
    let res = test::call_service(&app, sign(&mallory, &label)).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn a_token_named_like_a_key_owner_neither_exists_nor_signs_as_them() {
    let fx = Fixture::new();
    let app = app!(fx);
    // A token named carol made before carol's key existed (or before this rule)...
    let namesake = fx.token("carol", Role::Requester);
    let label = issued_key_via(&fx, Channel::Cli);
    // ...is not carol: the key's owner is the person, and the token is refused.
    let res = test::call_service(&app, sign(&namesake, &label)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = test::read_body(res).await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("API token carol may not sign"), "{text}");

    // A new token cannot take a key owner's name at all; nor a person's, nor a reserved
    // one; and a person cannot take a token's name.
    let other = issued_key_via_owner(&fx, "dora");
    assert!(!other.is_empty());
    for name in ["dora", "keyhold-server", "system"] {
        let r = cli(
            &fx,
            &["tokens", "create", "--name", name, "--role", "requester"],
        );
        assert!(!r.ok, "token {name} made: {}", r.stdout);
    }
    let r = cli(
        &fx,
        &["tokens", "create", "--name", "dora", "--role", "requester"],
    );
    assert!(r.stderr.contains("owns code-signing key"), "{}", r.stderr);
    fx.token("ci-build", Role::Requester);
    let r = cli(&fx, &["users", "add", "ci-build", "--role", "requester"]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(r.stderr.contains("API token is named"), "{}", r.stderr);
}

/// A code-signing key asked for on the command line for the person `owner`.
fn issued_key_via_owner(fx: &Fixture, owner: &str) -> String {
    let requested = fx
        .state
        .codesign
        .request_key(
            &fx.state.ca,
            &ca_core::codesign::KeyRequest {
                owner: &ca_core::policy::Requester {
                    name: owner.into(),
                    roles: vec!["requester".into()],
                },
                profile: "code-signing",
                subject: "CN=Dora release signing",
                spec: ca_core::keystore::KeySpec::EcP256,
                source: "test",
                channel: Channel::Cli,
            },
            std::time::SystemTime::now(),
        )
        .unwrap();
    requested.key.label().to_owned()
}
