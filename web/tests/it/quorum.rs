//! Approval quorums: counted again at issuance from the accounts as they stand, and
//! requests that expire while nobody looks.

use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::Role;
use ca_core::issuance::{Channel, IssueError, Outcome, Submission};
use ca_core::policy::Requester;
use ca_core::store::StoreError;
use ca_core::users::{self, UserStore};
use serde_json::Value;

use crate::api::Fixture;
use crate::cli::{run, shipped_policies};

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

fn users_of(fx: &Fixture) -> std::sync::Arc<dyn UserStore> {
    ca_web::ui::users(&fx.state)
}

fn add_user(fx: &Fixture, name: &str, roles: &[Role]) {
    users::create_with_one_time_password(users_of(fx).as_ref(), name, roles, "test", "test")
        .unwrap();
}

/// The officer as the UI hands them to ca-core: from their account.
fn officer(fx: &Fixture, name: &str) -> Requester {
    users_of(fx).user(name).unwrap().unwrap().requester()
}

/// A code-signing request by `carol`, received at `at`.
fn code_signing_request(fx: &Fixture, cn: &str, at: SystemTime) -> i64 {
    let csr = fx.csr(cn, &format!("/CN={cn}"), "");
    let outcome = fx
        .state
        .ca
        .submit(
            &Submission {
                profile: "code-signing",
                csr: csr.as_bytes(),
                requester: &Requester {
                    name: "carol".into(),
                    roles: vec!["requester".into()],
                },
                source: "test",
                channel: Channel::Cli,
            },
            at,
        )
        .unwrap();
    match outcome {
        Outcome::Pending { request_id, .. } => request_id,
        other => panic!("code-signing needs approval: {other:?}"),
    }
}

async fn get_request<S>(app: &S, token: &str, id: i64) -> Value
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let res = test::call_service(
        app,
        test::TestRequest::get()
            .uri(&format!("/api/v1/requests/{id}"))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    test::read_body_json(res).await
}

fn cli(fx: &Fixture, args: &[&str]) -> crate::cli::Run {
    let policies = shipped_policies();
    run(crate::cli::keyhold(&fx.tmp.path().join("data"))
        .arg("--policies")
        .arg(&policies)
        .args(args))
}

#[actix_web::test]
async fn an_officer_disabled_after_approving_no_longer_counts_toward_the_quorum() {
    let fx = Fixture::new();
    for name in ["alice", "bob", "cyril"] {
        add_user(&fx, name, &[Role::Officer]);
    }
    let now = SystemTime::now();
    let id = code_signing_request(&fx, "Release signing", now);
    let ca = &fx.state.ca;

    let first = ca
        .approve(id, &officer(&fx, "alice"), "ok", "test", now)
        .unwrap();
    assert!(
        matches!(first, Outcome::Pending { approvals: 1, .. }),
        "{first:?}"
    );
    users::set_disabled(users_of(&fx).as_ref(), "alice", true, "admin", "test").unwrap();

    // Bob's is the second approval given, but only one of the two still counts.
    let second = ca
        .approve(id, &officer(&fx, "bob"), "ok", "test", now)
        .unwrap();
    let Outcome::Pending {
        approvals: 1,
        approvals_needed: 2,
        void,
        ..
    } = &second
    else {
        panic!("not issued on a void approval: {second:?}");
    };
    assert_eq!(void.len(), 1, "{void:?}");
    assert!(void[0].contains("alice") && void[0].contains("disabled"));
    let row = ca.store().request(id).unwrap().unwrap();
    assert!(row.serial.is_none());
    assert_eq!(row.status.as_str(), "pending");

    // The status says so: over the API, the CLI and the UI's text.
    let app = app!(fx);
    let token = fx.token("reader", Role::Auditor);
    let body = get_request(&app, &token, id).await;
    assert_eq!(body["status"], "pending");
    assert_eq!(body["approvals_valid"], 1);
    assert_eq!(body["approvals_needed"], 2);
    let alice = body["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["officer"] == "alice")
        .unwrap();
    assert_eq!(alice["counts"], false);
    assert!(
        alice["void_reason"]
            .as_str()
            .unwrap()
            .contains("alice's account is disabled")
    );
    let shown = cli(&fx, &["requests", "show", &id.to_string()]);
    assert!(shown.ok, "{}", shown.stderr);
    assert!(
        shown.stdout.contains("Approvals: 1 of 2"),
        "{}",
        shown.stdout
    );
    assert!(
        shown
            .stdout
            .contains("no longer counts: alice's account is disabled"),
        "{}",
        shown.stdout
    );

    // A disabled officer cannot approve again either.
    users::set_disabled(users_of(&fx).as_ref(), "cyril", true, "admin", "test").unwrap();
    let err = ca
        .approve(id, &officer(&fx, "cyril"), "ok", "test", now)
        .unwrap_err();
    assert!(
        matches!(&err, IssueError::Forbidden(m) if m.contains("disabled")),
        "{err}"
    );
    // Nor through the CLI under the name of a disabled account.
    let refused = cli(
        &fx,
        &["requests", "approve", &id.to_string(), "--as", "cyril"],
    );
    assert!(!refused.ok);
    assert!(refused.stderr.contains("disabled"), "{}", refused.stderr);

    // A third officer in good standing completes the quorum.
    users::set_disabled(users_of(&fx).as_ref(), "cyril", false, "admin", "test").unwrap();
    let third = ca
        .approve(id, &officer(&fx, "cyril"), "ok", "test", now)
        .unwrap();
    assert!(matches!(third, Outcome::Issued(_)), "{third:?}");
    let body = get_request(&app, &token, id).await;
    assert_eq!(body["status"], "issued");
}

#[actix_web::test]
async fn an_administrator_account_cannot_approve_under_an_officer_role_claimed_on_the_cli() {
    let fx = Fixture::new();
    add_user(&fx, "alice", &[Role::Officer]);
    add_user(&fx, "bob", &[Role::Officer]);
    add_user(&fx, "adam", &[Role::Admin]);
    let now = SystemTime::now();
    let id = code_signing_request(&fx, "Admin claim", now);
    let ca = &fx.state.ca;
    ca.approve(id, &officer(&fx, "alice"), "ok", "test", now)
        .unwrap();
    // `keyhold requests approve --as adam` hands ca-core the officer role; the account
    // says otherwise and wins.
    let refused = cli(
        &fx,
        &["requests", "approve", &id.to_string(), "--as", "adam"],
    );
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains("adam's account holds the admin role"),
        "{}",
        refused.stderr
    );
    let row = ca.store().request(id).unwrap().unwrap();
    assert_eq!(row.approvals.len(), 1, "nothing recorded for adam");
    let done = ca
        .approve(id, &officer(&fx, "bob"), "ok", "test", now)
        .unwrap();
    assert!(matches!(done, Outcome::Issued(_)), "{done:?}");
}

#[actix_web::test]
async fn a_request_past_its_deadline_shows_expired_everywhere_and_cannot_be_approved() {
    let fx = Fixture::new();
    add_user(&fx, "alice", &[Role::Officer]);
    let now = SystemTime::now();
    // Received eight days ago: the code-signing profile gives seven.
    let id = code_signing_request(&fx, "Old request", now - Duration::from_secs(8 * 86_400));
    let row = fx.state.ca.store().request(id).unwrap().unwrap();
    assert!(row.expires_at < now);
    // Nothing touched it since; its stored state is still pending.
    assert_eq!(row.status.as_str(), "pending");

    let app = app!(fx);
    let token = fx.token("carol", Role::Requester);
    assert_eq!(get_request(&app, &token, id).await["status"], "expired");

    let shown = cli(&fx, &["requests", "show", &id.to_string()]);
    assert!(shown.ok, "{}", shown.stderr);
    assert!(
        shown.stdout.contains("Status:    expired"),
        "{}",
        shown.stdout
    );
    let listed = cli(&fx, &["requests", "list"]);
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with(&id.to_string()) && l.contains("expired")),
        "{}",
        listed.stdout
    );

    let err = fx
        .state
        .ca
        .approve(id, &officer(&fx, "alice"), "too late", "test", now)
        .unwrap_err();
    assert!(
        matches!(&err, IssueError::Store(StoreError::Conflict(m)) if m.contains("expired")),
        "{err}"
    );
    let refused = cli(
        &fx,
        &["requests", "approve", &id.to_string(), "--as", "bob"],
    );
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains(&format!("request {id} has expired")),
        "{}",
        refused.stderr
    );
    let row = fx.state.ca.store().request(id).unwrap().unwrap();
    assert!(row.approvals.is_empty(), "nothing was recorded");
}

#[actix_web::test]
async fn the_approval_deadline_comes_from_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(shipped_policies().join("code-signing.toml")).unwrap();
    std::fs::write(
        dir.path().join("short.toml"),
        base.replace("approvals = 2\n", "approvals = 2\nexpires_after_days = 2\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        base.replace("approvals = 2\n", "approvals = 2\nexpires_after_days = 0\n"),
    )
    .unwrap();
    let err = ca_core::policy::load_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("approval.expires_after_days must be between 1 and 365"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("bad.toml")).unwrap();
    let profiles = ca_core::policy::load_dir(dir.path()).unwrap();
    assert_eq!(profiles[0].approval_ttl(), Duration::from_secs(2 * 86_400));
    let shipped = ca_core::policy::load_dir(&shipped_policies()).unwrap();
    for p in &shipped {
        assert_eq!(
            p.approval_ttl(),
            Duration::from_secs(7 * 86_400),
            "{}",
            p.name
        );
    }
}
