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

pub(crate) fn users_of(fx: &Fixture) -> std::sync::Arc<dyn UserStore> {
    ca_web::http::ui::users(&fx.state)
}

pub(crate) fn add_user(fx: &Fixture, name: &str, roles: &[Role]) {
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

pub(crate) fn cli(fx: &Fixture, args: &[&str]) -> crate::cli::Run {
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
    let row = fx.state.ledger.request(id).unwrap().unwrap();
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
    let row = fx.state.ledger.request(id).unwrap().unwrap();
    assert_eq!(row.approvals.len(), 1, "nothing recorded for adam");
    let done = ca
        .approve(id, &officer(&fx, "bob"), "ok", "test", now)
        .unwrap();
    assert!(matches!(done, Outcome::Issued(_)), "{done:?}");
}

#[actix_web::test]
async fn a_request_past_its_deadline_shows_expired_everywhere_and_cannot_be_approved() {
    let fx = Fixture::new();
    for name in ["alice", "bob"] {
        add_user(&fx, name, &[Role::Officer]);
    }
    let now = SystemTime::now();
    // Received eight days ago: the code-signing profile gives seven.
    let id = code_signing_request(&fx, "Old request", now - Duration::from_secs(8 * 86_400));
    let row = fx.state.ledger.request(id).unwrap().unwrap();
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
    let row = fx.state.ledger.request(id).unwrap().unwrap();
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

/// Turns on `[quorum]` in the fixture's keyhold.toml (for the CLI, which reads it per run).
pub(crate) fn require_quorum(fx: &Fixture, create_admin: u32, destroy_key: u32) {
    let path = fx.tmp.path().join("data").join("keyhold.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[quorum]\ncreate_admin = {create_admin}\ndestroy_key = {destroy_key}\n"
    ));
    std::fs::write(&path, text).unwrap();
}

fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("{label} in {text}"))
        .trim()
        .to_owned()
}

pub(crate) fn audited(fx: &Fixture, object: &str) -> Vec<(String, String)> {
    let store = &fx.state.ledger;
    let head = store.audit_head().unwrap().unwrap().0;
    store
        .audit_entries(1, head)
        .unwrap()
        .into_iter()
        .filter(|e| e.object == object)
        .map(|e| (e.action, e.actor))
        .collect()
}

#[actix_web::test]
async fn an_administrator_under_quorum_cannot_sign_in_until_two_other_officers_approve() {
    let fx = Fixture::new();
    require_quorum(&fx, 2, 0);
    for name in ["alice", "bob"] {
        add_user(&fx, name, &[Role::Officer]);
    }
    let made = cli(&fx, &["users", "add", "adam", "--role", "admin"]);
    assert!(made.ok, "{}", made.stderr);
    let password = made.stdout.trim().to_owned();
    assert_eq!(
        password.len(),
        20,
        "the one-time password, alone: {}",
        made.stdout
    );
    assert!(
        made.stderr
            .contains("cannot sign in until 2 officers approve operation 1"),
        "{}",
        made.stderr
    );
    let users = users_of(&fx);
    let sign_in = |pw: &str| {
        users::login(
            users.as_ref(),
            "adam",
            pw,
            &[7u8; 32],
            "127.0.0.1",
            SystemTime::now(),
        )
        .unwrap()
    };
    assert_eq!(
        sign_in(&password),
        users::Login::Refused(users::Refusal::AwaitingApproval(1))
    );
    // A wrong password learns nothing about the pending approval.
    assert_eq!(
        sign_in("not the password at all"),
        users::Login::Refused(users::Refusal::Disabled)
    );
    // No administrator can shortcut the quorum by enabling the account.
    let enabled = cli(&fx, &["users", "enable", "adam"]);
    assert!(!enabled.ok);
    assert!(
        enabled.stderr.contains("waiting for officers' approval"),
        "{}",
        enabled.stderr
    );

    let shown = cli(&fx, &["ops", "show", "1"]);
    assert!(shown.ok, "{}", shown.stderr);
    assert!(shown.stdout.contains("create_admin"), "{}", shown.stdout);
    let creator = field(&shown.stdout, "Requested by:");
    // Never the creator, never the new administrator, never an administrator.
    for who in [creator.as_str(), "adam"] {
        let r = cli(&fx, &["ops", "approve", "1", "--as", who]);
        assert!(!r.ok, "{who} approved: {}", r.stdout);
    }
    let r = cli(
        &fx,
        &["ops", "approve", "1", "--as", "alice", "--comment", "known"],
    );
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("1 of 2"), "{}", r.stdout);
    let again = cli(&fx, &["ops", "approve", "1", "--as", "alice"]);
    assert!(!again.ok);
    assert!(
        again.stderr.contains("already approved"),
        "{}",
        again.stderr
    );
    assert!(matches!(
        sign_in(&password),
        users::Login::Refused(users::Refusal::AwaitingApproval(1))
    ));
    let r = cli(&fx, &["ops", "approve", "1", "--as", "bob"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("may now sign in"), "{}", r.stdout);
    assert!(matches!(sign_in(&password), users::Login::Succeeded(_)));
    let done = cli(&fx, &["ops", "approve", "1", "--as", "cyril"]);
    assert!(!done.ok, "a finished operation never runs again");

    let actions: Vec<String> = audited(&fx, "operation:1")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        actions,
        [
            "operation.requested",
            "operation.approved",
            "operation.approved",
            "operation.done"
        ]
    );
    // Without the admin role no quorum applies.
    let plain = cli(&fx, &["users", "add", "rita", "--role", "requester"]);
    assert!(
        plain.ok && !plain.stderr.contains("operation"),
        "{}",
        plain.stderr
    );
}

#[actix_web::test]
async fn destroying_a_code_signing_key_under_quorum_revokes_its_certificate_and_stops_signing() {
    let fx = Fixture::new();
    require_quorum(&fx, 0, 2);
    let label = crate::bindings::issued_key(&fx);
    let key = ca_core::keystore::KeyRef::new(label.as_str()).unwrap();
    let dir = fx.tmp.path().join("data");
    let config = ca_web::config::Config::load(&dir).unwrap();
    let db = db::Db::open(&config.database_url(&dir)).unwrap();
    let cert = ca_core::codesign::CodesignStore::codesign_certificate(&db, &key)
        .unwrap()
        .unwrap();
    let sign = || {
        let digest = ca_core::cms::DigestAlg::Sha256
            .hash_reader(&b"artifact"[..])
            .unwrap();
        fx.state.codesign.sign(
            &ca_core::codesign::SignRequest {
                caller: ca_core::codesign::Principal::token("carol"),
                key: &label,
                digest: &digest,
                source: "test",
            },
            SystemTime::now(),
        )
    };
    sign().unwrap();

    let opened = cli(&fx, &["codesign", "destroy-key", &label]);
    assert_eq!(opened.code, Some(3), "{}{}", opened.stdout, opened.stderr);
    assert!(opened.stdout.contains("operation 1"), "{}", opened.stdout);
    // Nothing happens before the quorum.
    sign().unwrap();
    let r = cli(&fx, &["ops", "approve", "1", "--as", "olga"]);
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    sign().unwrap();
    let r = cli(&fx, &["ops", "approve", "1", "--as", "oscar"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "certificate {} revoked (cessationOfOperation)",
            cert.serial
        )),
        "{}",
        r.stdout
    );

    // Signing now fails, clearly; the certificate is revoked for cessationOfOperation; the
    // key object is gone from the key store.
    let err = sign().unwrap_err();
    assert!(
        err.to_string()
            .contains("retired (destroyed: operation 1 approved)"),
        "{err}"
    );
    let issuer = ca_core::issuer::IssuerId::new(&cert.issuer).unwrap();
    let status = fx
        .state
        .ledger
        .revocation_status(&issuer, &cert.serial)
        .unwrap()
        .unwrap();
    assert_eq!(
        status.revoked.map(|(_, r)| r),
        Some(ca_core::revocation::Reason::CessationOfOperation)
    );
    // (Listed from the token's files: this process's cache is not the CLI's.)
    let left = fx.state.probes.keys.list().unwrap();
    assert!(left.iter().all(|k| k.key != key), "the key object is gone");
    let again = cli(&fx, &["codesign", "destroy-key", &label]);
    assert!(!again.ok);
    assert!(again.stderr.contains("retired already"), "{}", again.stderr);
    let actions: Vec<String> = audited(&fx, "operation:1")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        actions,
        [
            "operation.requested",
            "operation.approved",
            "operation.approved",
            "operation.done"
        ]
    );
}
