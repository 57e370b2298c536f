//! Issue 15, item 2: no single administrator can make a quorum pass. The attack as the
//! review performed it: an administrator makes officers `sock1` and `sock2` (or resets a
//! real officer's password), signs in as them and approves its own pending administrator,
//! a code-signing or sub-CA request, or a key destruction. Each is refused, through the CLI
//! and through the UI; a quorum of officers who held the role before still passes.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::issuance::{Channel, Outcome, Submission};
use ca_core::policy::Requester;
use ca_core::users::{PasswordHash, Role};

use crate::api::Fixture;
use crate::cli::Run;
use crate::quorum::{add_user, cli, require_quorum, users_of};
use crate::ui::{PASSWORD, body, form, login, post, try_login, user};

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

/// A request under `profile` by `carol` (CLI channel), pending its approvals; a sub-CA
/// request (P-384, by an officer, as `policies/sub-ca.toml` asks) by `rex`.
fn pending_request(fx: &Fixture, profile: &str, cn: &str) -> i64 {
    let (curve, name, role) = match profile {
        "sub-ca" => ("P-384", "rex", "officer"),
        _ => ("P-256", "carol", "requester"),
    };
    let file = crate::support::csr_file(fx.tmp.path(), cn, &format!("/CN={cn}"), "", curve);
    let csr = std::fs::read_to_string(file).unwrap();
    let outcome = fx
        .state
        .ca
        .submit(
            &Submission {
                profile,
                csr: csr.as_bytes(),
                requester: &Requester {
                    name: name.into(),
                    roles: vec![role.into()],
                },
                source: "test",
                channel: Channel::Cli,
            },
            SystemTime::now(),
        )
        .unwrap();
    match outcome {
        Outcome::Pending { request_id, .. } => request_id,
        other => panic!("{profile} needs approval: {other:?}"),
    }
}

fn refused(r: &Run, needle: &str) {
    assert!(!r.ok, "approved: {}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(needle), "{needle:?} in {}", r.stderr);
}

fn operation_of(r: &Run) -> String {
    let text = format!("{}{}", r.stdout, r.stderr);
    text.split("operation ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| panic!("an operation in {text}"))
        .to_owned()
}

#[actix_web::test]
async fn officers_an_administrator_makes_or_resets_cannot_approve_through_the_cli() {
    let fx = Fixture::new();
    require_quorum(&fx, 2, 2);
    // The officers who were there before: made without a quorum, as `init --officer` does.
    for name in ["alice", "bob", "olga", "oscar"] {
        add_user(&fx, name, &[Role::Officer]);
    }
    let label = crate::bindings::issued_key(&fx);
    let code_signing = pending_request(&fx, "code-signing", "Release signing");
    let sub_ca = pending_request(&fx, "sub-ca", "Team Sub CA");
    let zed = cli(&fx, &["users", "add", "zed", "--role", "admin"]);
    assert!(zed.ok, "{}", zed.stderr);
    let zed_op = operation_of(&zed);
    let destroy = cli(&fx, &["codesign", "destroy-key", &label]);
    assert_eq!(
        destroy.code,
        Some(3),
        "{}{}",
        destroy.stdout,
        destroy.stderr
    );
    let destroy_op = operation_of(&destroy);

    // The attack: make two officers (no quorum asked for before), approve with them.
    let mut socks = Vec::new();
    for sock in ["sock1", "sock2"] {
        let made = cli(&fx, &["users", "add", sock, "--role", "officer"]);
        assert!(made.ok, "{}", made.stderr);
        assert!(
            made.stderr
                .contains("cannot sign in until 1 officers approve"),
            "{}",
            made.stderr
        );
        socks.push(operation_of(&made));
        // Even with the one-time password, the account cannot sign in.
        let users = users_of(&fx);
        let signed = ca_core::users::login(
            users.as_ref(),
            sock,
            made.stdout.trim(),
            &[9u8; 32],
            "127.0.0.1",
            SystemTime::now(),
        )
        .unwrap();
        assert!(
            matches!(
                signed,
                ca_core::users::Login::Refused(ca_core::users::Refusal::AwaitingApproval(_))
            ),
            "{signed:?}"
        );
    }
    for sock in ["sock1", "sock2"] {
        for op in [&zed_op, &destroy_op] {
            refused(
                &cli(&fx, &["ops", "approve", op, "--as", sock]),
                "cannot approve",
            );
        }
        for id in [code_signing, sub_ca] {
            refused(
                &cli(&fx, &["requests", "approve", &id.to_string(), "--as", sock]),
                "cannot approve",
            );
        }
    }
    // Nor does one grant the other, nor itself: both wait, disabled.
    refused(
        &cli(&fx, &["ops", "approve", &socks[0], "--as", "sock1"]),
        "sock1's account is disabled",
    );
    refused(
        &cli(&fx, &["ops", "approve", &socks[0], "--as", "sock2"]),
        "sock2's account is disabled",
    );
    // A name with no account at all is no officer either.
    refused(
        &cli(&fx, &["ops", "approve", &zed_op, "--as", "ghost"]),
        "no officer account",
    );

    // The same through resetting a real officer's password: it only opens an operation,
    // and the administrator who asked sees no password.
    let reset = cli(&fx, &["users", "reset-password", "alice"]);
    assert_eq!(reset.code, Some(3), "{}{}", reset.stdout, reset.stderr);
    assert!(reset.stdout.trim().is_empty(), "{}", reset.stdout);
    let reset_op = operation_of(&reset);
    refused(
        &cli(&fx, &["ops", "approve", &reset_op, "--as", "alice"]),
        "their own account",
    );

    // Nothing passed: zed cannot sign in, the key and requests wait.
    let ops = cli(&fx, &["ops", "list"]);
    for op in [&zed_op, &destroy_op, &reset_op] {
        assert!(
            ops.stdout
                .lines()
                .any(|l| l.starts_with(op.as_str()) && l.contains("pending")),
            "{op}: {}",
            ops.stdout
        );
    }

    // The officers who held the role before still make every quorum pass.
    for op in [&zed_op, &destroy_op] {
        let r = cli(&fx, &["ops", "approve", op, "--as", "olga"]);
        assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
        let r = cli(&fx, &["ops", "approve", op, "--as", "oscar"]);
        assert!(r.ok, "{}{}", r.stdout, r.stderr);
    }
    // The reset goes to the officer who completes it, alone on standard output.
    let r = cli(&fx, &["ops", "approve", &reset_op, "--as", "bob"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let otp = r.stdout.trim();
    assert_eq!(otp.len(), 20, "{}", r.stdout);
    // alice's approvals no longer count for what was made before her reset...
    refused(
        &cli(
            &fx,
            &[
                "requests",
                "approve",
                &code_signing.to_string(),
                "--as",
                "alice",
            ],
        ),
        "reset",
    );
    // ...and a quorum-granted officer counts only for what is made after the grant.
    let r = cli(&fx, &["ops", "approve", &socks[0], "--as", "bob"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    refused(
        &cli(
            &fx,
            &[
                "requests",
                "approve",
                &code_signing.to_string(),
                "--as",
                "sock1",
            ],
        ),
        "not yet an officer",
    );
    let later = pending_request(&fx, "code-signing", "Later signing");
    let r = cli(
        &fx,
        &["requests", "approve", &later.to_string(), "--as", "sock1"],
    );
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    for id in [code_signing, sub_ca] {
        let r = cli(
            &fx,
            &["requests", "approve", &id.to_string(), "--as", "olga"],
        );
        assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
        let r = cli(
            &fx,
            &["requests", "approve", &id.to_string(), "--as", "oscar"],
        );
        assert!(r.ok, "{}{}", r.stdout, r.stderr);
    }
}

#[actix_web::test]
async fn officers_an_administrator_makes_or_resets_cannot_approve_through_the_ui() {
    let fx = Fixture::new();
    require_quorum(&fx, 2, 0);
    for name in ["alice", "bob"] {
        user(&fx, name, &[Role::Officer]);
    }
    user(&fx, "root", &[Role::Admin]);
    let code_signing = pending_request(&fx, "code-signing", "Release signing");
    let app = app!(fx);
    let (root, csrf) = login(&app, "root").await;

    // The administrator creates officers sock1 and sock2: they wait for the quorum and
    // cannot sign in, even with the password the administrator saw.
    for sock in ["sock1", "sock2"] {
        let res = test::call_service(
            &app,
            post(
                "/ui/users",
                &root,
                form(&[("csrf", &csrf), ("name", sock), ("officer", "on")]),
            )
            .to_request(),
        )
        .await;
        let status = res.status();
        let html = body(res).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("waiting for 1 officers"), "{html}");
        // The administrator knows the password: give the account one it can type.
        users_of(&fx)
            .set_password(
                sock,
                &PasswordHash::new(PASSWORD).unwrap(),
                false,
                None,
                &ca_core::audit::AuditEvent::new(
                    ca_core::audit::Action::UserPasswordChanged,
                    sock,
                    "test",
                    format!("user:{sock}"),
                ),
            )
            .unwrap();
        let res = try_login(&app, sock, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{sock} signed in");
    }

    // Resetting a real officer's password only opens an operation; bob's password holds.
    let res = test::call_service(
        &app,
        post(
            "/ui/users/bob/reset-password",
            &root,
            form(&[("csrf", &csrf)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let html = body(res).await;
    assert!(html.contains("the reset waits for 1 officers"), "{html}");
    login(&app, "bob").await;
    let bob_user = users_of(&fx).user("bob").unwrap().unwrap();
    assert!(bob_user.credentials_reset_at.is_none());

    // With the quorum relaxed (`[quorum] grant_officer = 0`) the administrator's officers
    // exist at once, but count only for what is made after them: the pending request is
    // still out of reach.
    let users = users_of(&fx);
    ca_core::users::create_with_one_time_password(
        users.as_ref(),
        "sock3",
        &[Role::Officer],
        "root",
        "test",
    )
    .unwrap();
    users
        .set_password(
            "sock3",
            &PasswordHash::new(PASSWORD).unwrap(),
            false,
            None,
            &ca_core::audit::AuditEvent::new(
                ca_core::audit::Action::UserPasswordChanged,
                "sock3",
                "test",
                "user:sock3",
            ),
        )
        .unwrap();
    let (sock3, sock3_csrf) = login(&app, "sock3").await;
    let res = test::call_service(
        &app,
        post(
            &format!("/ui/requests/{code_signing}/approve"),
            &sock3,
            form(&[("csrf", &sock3_csrf), ("comment", "mine")]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(body(res).await.contains("not yet an officer"));

    // The legitimate officer completes the reset and is shown the new password, once.
    let ops = fx.state.operations.operations(true).unwrap();
    let reset = ops
        .iter()
        .find(|o| o.op.kind == ca_core::quorum::OperationKind::ResetOfficer)
        .unwrap();
    let (alice, alice_csrf) = login(&app, "alice").await;
    let res = test::call_service(
        &app,
        post(
            &format!("/ui/operations/{}/approve", reset.id),
            &alice,
            form(&[("csrf", &alice_csrf), ("comment", "bob forgot it")]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body(res).await;
    assert!(html.contains("has a new one-time password"), "{html}");
    assert!(try_login(&app, "bob", PASSWORD).await.status() != StatusCode::SEE_OTHER);
    // bob's approvals no longer count for what was made before the reset.
    let bob_user = users_of(&fx).user("bob").unwrap().unwrap();
    assert!(bob_user.credentials_reset_at.is_some());
}

/// The bootstrap: `keyhold init --officer NAME` makes the first officers, each one-time
/// password printed once, audited from source `init`; a bad or repeated name makes nothing.
#[std::prelude::v1::test]
fn init_makes_the_first_officers_and_prints_each_password_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    for bad in [
        &["--officer", "ann", "--officer", "ann"][..],
        &["--officer", "a b"],
    ] {
        let mut args = vec!["init"];
        args.extend_from_slice(bad);
        let r = crate::cli::with_pass(&dir, &args);
        assert!(!r.ok, "{bad:?}: {}", r.stdout);
        assert!(!dir.exists(), "{bad:?} left {}", dir.display());
    }
    let r = crate::cli::with_pass(&dir, &["init", "--officer", "ann", "--officer", "ben"]);
    assert!(r.ok, "{}", r.stderr);
    let password = |name: &str| {
        r.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("officer {name} ")))
            .unwrap_or_else(|| panic!("{name}'s password in {}", r.stdout))
            .to_owned()
    };
    let (ann, ben) = (password("ann"), password("ben"));
    assert_eq!((ann.len(), ben.len()), (20, 20));
    assert_ne!(ann, ben);
    let config = ca_web::config::Config::load(&dir).unwrap();
    let db = db::Db::open(&config.database_url(&dir)).unwrap();
    let user = ca_core::users::UserStore::user(&db, "ann")
        .unwrap()
        .unwrap();
    assert!(user.officer_since.is_some() && user.must_change_password && !user.disabled);
    assert!(
        ca_core::users::UserStore::password_hash(&db, "ann")
            .unwrap()
            .unwrap()
            .verify(&ann)
    );
    let head = ca_core::store::AuditLog::audit_head(&db)
        .unwrap()
        .unwrap()
        .0;
    let created: Vec<(String, String)> = ca_core::store::AuditLog::audit_entries(&db, 1, head)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "user.created")
        .map(|e| (e.object, e.source))
        .collect();
    assert_eq!(
        created,
        [
            ("user:ann".to_owned(), "init".to_owned()),
            ("user:ben".to_owned(), "init".to_owned())
        ]
    );
    // The passwords appear nowhere else: not in the audit log, not on stderr.
    let log = crate::cli::with_pass(&dir, &["audit", "list"]);
    assert!(!log.stdout.contains(&ann) && !r.stderr.contains(&ann));
}
