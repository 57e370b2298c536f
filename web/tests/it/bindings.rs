//! Tokens an administrator binds to a code-signing key sign with it besides its owner; no
//! other token does, and a revoked one stops at once.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::Role;
use ca_core::audit::{Action, AuditEvent};
use ca_core::codesign::KeyRequest;
use ca_core::issuance::{Channel, Outcome};
use ca_core::keystore::KeySpec;
use ca_core::policy::Requester;
use serde_json::{Value, json};

use crate::api::Fixture;
use crate::cli::{run, shipped_policies};
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

fn person(name: &str, role: &str) -> Requester {
    Requester {
        name: name.into(),
        roles: vec![role.into()],
    }
}

/// A P-256 key held for carol, its certificate issued after two approvals; its label.
/// A code-signing key asked for through the API by the token `carol` (its owner), issued.
pub(crate) fn issued_key(fx: &Fixture) -> String {
    issued_key_via(fx, Channel::Api)
}

/// A code-signing key for `carol`, asked for through `channel` (the API: the token `carol`
/// owns it; the CLI: the person `carol` does), issued.
pub(crate) fn issued_key_via(fx: &Fixture, channel: Channel) -> String {
    for officer in ["olga", "oscar"] {
        // Approvals count only from officer accounts that held the role before the request.
        if crate::quorum::users_of(fx).user(officer).unwrap().is_none() {
            crate::quorum::add_user(fx, officer, &[Role::Officer]);
        }
    }
    let now = SystemTime::now();
    let requested = fx
        .state
        .codesign
        .request_key(
            &fx.state.ca,
            &KeyRequest {
                owner: &person("carol", "requester"),
                profile: "code-signing",
                subject: "CN=Carol release signing",
                spec: KeySpec::EcP256,
                source: "test",
                channel,
            },
            now,
        )
        .unwrap();
    let Outcome::Pending { request_id, .. } = requested.outcome else {
        panic!("{:?}", requested.outcome)
    };
    for officer in ["olga", "oscar"] {
        fx.state
            .ca
            .approve(request_id, &person(officer, "officer"), "ok", "test", now)
            .unwrap();
    }
    requested.key.label().to_owned()
}

fn sign_body(label: &str) -> Value {
    let digest = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        b"build 42",
    ));
    json!({"key": label, "digest": digest, "digest_algorithm": "sha256"})
}

fn sign(token: &str, label: &str) -> actix_http::Request {
    test::TestRequest::post()
        .uri("/api/v1/sign")
        .insert_header(bearer(token))
        .set_json(sign_body(label))
        .to_request()
}

fn bind(token: &str, label: &str, who: &str) -> actix_http::Request {
    test::TestRequest::post()
        .uri(&format!("/api/v1/codesign/keys/{label}/bindings"))
        .insert_header(bearer(token))
        .set_json(json!({"token": who}))
        .to_request()
}

fn unbind(token: &str, label: &str, who: &str) -> actix_http::Request {
    test::TestRequest::delete()
        .uri(&format!("/api/v1/codesign/keys/{label}/bindings/{who}"))
        .insert_header(bearer(token))
        .to_request()
}

fn signatures(fx: &Fixture) -> Vec<String> {
    let store = &fx.state.ledger;
    let head = store.audit_head().unwrap().unwrap().0;
    store
        .audit_entries(1, head)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::CodesignSigned.as_str())
        .map(|e| e.actor)
        .collect()
}

#[actix_web::test]
async fn a_token_its_owner_binds_signs_until_unbound_or_revoked_and_others_get_403() {
    let fx = Fixture::new();
    let app = app!(fx);
    let label = issued_key(&fx);
    // The key's owner: the token that asked for it.
    let owner = fx.token("carol", Role::Requester);
    let admin = fx.token("root-admin", Role::Admin);
    let ci = fx.token("ci-release", Role::Requester);
    let other = fx.token("ci-other", Role::Requester);
    let officer = fx.token("olga-token", Role::Officer);

    // Not bound: 403, nothing signed.
    let res = test::call_service(&app, sign(&ci, &label)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(signatures(&fx).is_empty());

    // Only the owner binds (issue 15: an administrator binding a token it made to someone
    // else's key is refused); unknown keys and tokens are 404, repeats 409.
    for t in [&ci, &officer, &admin] {
        let res = test::call_service(&app, bind(t, &label, "ci-release")).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let res = test::call_service(&app, bind(&owner, "cs-nope", "ci-release")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(&app, bind(&owner, &label, "no-such-token")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(&app, bind(&owner, &label, "ci-release")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = test::call_service(&app, bind(&owner, &label, "ci-release")).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri(&format!("/api/v1/codesign/keys/{label}/bindings"))
            .insert_header(bearer(&owner))
            .set_json(json!({"token": "ci-release", "extra": 1}))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let listed: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::get()
            .uri(&format!("/api/v1/codesign/keys/{label}/bindings"))
            .insert_header(bearer(&officer))
            .to_request(),
    )
    .await;
    assert_eq!(listed["tokens"], json!(["ci-release"]));

    // The bound token signs; another requester still gets 403.
    let res = test::call_service(&app, sign(&ci, &label)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = test::call_service(&app, sign(&other, &label)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(signatures(&fx), ["ci-release"]);

    // Unbound (an administrator may take a binding back): 403 again; twice is 404; another
    // requester cannot unbind.
    let res = test::call_service(&app, unbind(&other, &label, "ci-release")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = test::call_service(&app, unbind(&admin, &label, "ci-release")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = test::call_service(&app, unbind(&admin, &label, "ci-release")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(&app, sign(&ci, &label)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Bound again, then revoked: the token stops at once (401 at the door), and the core
    // refuses the binding of a revoked token too (the CLI path, which has no token check).
    let res = test::call_service(&app, bind(&owner, &label, "ci-release")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    fx.state
        .tokens
        .revoke_token(
            "ci-release",
            &AuditEvent::new(Action::TokenRevoked, "test", "test", "token:ci-release"),
        )
        .unwrap();
    let res = test::call_service(&app, sign(&ci, &label)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let digest = ca_core::cms::Digest::from_hex(
        ca_core::cms::DigestAlg::Sha256,
        sign_body(&label)["digest"].as_str().unwrap(),
    )
    .unwrap();
    let err = fx
        .state
        .codesign
        .sign(
            &ca_core::codesign::SignRequest {
                caller: ca_core::codesign::Principal::token("ci-release"),
                key: &label,
                digest: &digest,
                source: "cli",
            },
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(
        matches!(err, ca_core::codesign::CodesignError::Forbidden(_)),
        "{err}"
    );
    let res = test::call_service(&app, bind(&owner, &label, "ci-other")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(signatures(&fx), ["ci-release"], "nothing more was signed");

    // Every binding change is audited, naming who made it.
    let store = &fx.state.ledger;
    let head = store.audit_head().unwrap().unwrap().0;
    let changes: Vec<(String, String)> = store
        .audit_entries(1, head)
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("codesign.token_"))
        .map(|e| (e.action, e.actor))
        .collect();
    assert_eq!(
        changes,
        [
            ("codesign.token_bound".to_owned(), "carol".to_owned()),
            ("codesign.token_unbound".to_owned(), "root-admin".to_owned()),
            ("codesign.token_bound".to_owned(), "carol".to_owned()),
            ("codesign.token_bound".to_owned(), "carol".to_owned()),
        ]
    );
}

#[actix_web::test]
async fn keyhold_codesign_bind_and_unbind_on_the_command_line() {
    let fx = Fixture::new();
    // Owned by the person carol (asked for on the command line).
    let label = issued_key_via(&fx, Channel::Cli);
    fx.token("ci-release", Role::Requester);
    let dir = fx.tmp.path().join("data");
    let policies = shipped_policies();
    let keyhold = |args: &[&str]| {
        run(crate::cli::keyhold(&dir)
            .arg("--policies")
            .arg(&policies)
            .args(args))
    };
    let bind_as = |who: &str, token: &str| {
        keyhold(&[
            "codesign", "bind", "--key", &label, "--token", token, "--as", who,
        ])
    };
    // Only the owner consents: the operator's own name, or another person's, is refused.
    let r = bind_as("root", "ci-release");
    assert!(!r.ok, "{}", r.stdout);
    assert!(r.stderr.contains("is not the owner"), "{}", r.stderr);
    let r = bind_as("carol", "ci-release");
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("may now sign"), "{}", r.stdout);
    assert_eq!(fx.state.codesign.bindings(&label).unwrap(), ["ci-release"]);
    let r = bind_as("carol", "ci-release");
    assert!(!r.ok);
    assert!(
        r.stderr.contains("bound to code-signing key"),
        "{}",
        r.stderr
    );
    let r = bind_as("carol", "ghost");
    assert!(!r.ok);
    assert!(r.stderr.contains("\"ghost\""), "{}", r.stderr);
    let r = keyhold(&[
        "codesign",
        "unbind",
        "--key",
        &label,
        "--token",
        "ci-release",
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert!(fx.state.codesign.bindings(&label).unwrap().is_empty());
    let r = keyhold(&[
        "codesign",
        "unbind",
        "--key",
        &label,
        "--token",
        "ci-release",
    ]);
    assert!(!r.ok);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
}
