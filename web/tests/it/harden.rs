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

/// Raw SQL on the CA's SQLite file, outside Keyhold: what someone who can write the database
/// does.
fn sql(dir: &std::path::Path, statements: &str) {
    use diesel::{Connection, RunQueryDsl, SqliteConnection};
    let mut conn = SqliteConnection::establish(dir.join("keyhold.db").to_str().unwrap()).unwrap();
    diesel::connection::SimpleConnection::batch_execute(&mut conn, statements).unwrap();
    let _ = diesel::sql_query("SELECT 1").execute(&mut conn);
}

fn keyhold(dir: &std::path::Path, args: &[&str]) -> crate::cli::Run {
    crate::cli::with_pass(dir, args)
}

/// A CA with a checkpoint at entry `n`, its record at `n + 1`, and two later entries.
fn checkpointed() -> (tempfile::TempDir, std::path::PathBuf, i64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(crate::cli::init_embedded(&dir).ok);
    let r = keyhold(&dir, &["audit", "checkpoint"]);
    assert!(r.ok, "{}", r.stderr);
    let n: i64 = r
        .stdout
        .split_whitespace()
        .nth(4)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.stdout));
    for name in ["later1", "later2"] {
        assert!(keyhold(&dir, &["users", "add", name, "--role", "auditor"]).ok);
    }
    let r = keyhold(&dir, &["audit", "verify"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    (tmp, dir, n)
}

fn tampered(dir: &std::path::Path, needle: &str) {
    let r = keyhold(dir, &["audit", "verify"]);
    assert_eq!(r.code, Some(1), "verify said: {}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(needle), "{needle:?} in {}", r.stderr);
}

/// Item 6: after a checkpoint, the last rows of `audit_log` are deleted while `audit_head`
/// still names the higher sequence.
#[std::prelude::v1::test]
fn entries_cut_after_the_last_checkpoint_are_noticed() {
    let (_tmp, dir, n) = checkpointed();
    sql(
        &dir,
        &format!("DELETE FROM audit_log WHERE seq > {}", n + 1),
    );
    tampered(&dir, "are missing from the end");
}

/// Item 6: every checkpoint and more rows deleted; then also the head moved back to the new
/// end, so the database agrees with itself: the anchor file outside it does not.
#[std::prelude::v1::test]
fn checkpoints_and_entries_deleted_together_are_noticed() {
    let (_tmp, dir, n) = checkpointed();
    sql(
        &dir,
        &format!(
            "DELETE FROM audit_checkpoints; DELETE FROM audit_log WHERE seq > {};",
            n - 2
        ),
    );
    tampered(&dir, "are missing from the end");
    sql(
        &dir,
        &format!(
            "UPDATE audit_head SET seq = {m}, hash = (SELECT hash FROM audit_log WHERE seq = {m})",
            m = n - 2
        ),
    );
    tampered(&dir, &format!("entries up to {n} are missing from the end"));
}

/// Item 6: a checkpoint row deleted alone is missed by nothing: its `audit.checkpoint`
/// entry still records it.
#[std::prelude::v1::test]
fn a_deleted_checkpoint_row_is_noticed() {
    let (_tmp, dir, n) = checkpointed();
    sql(&dir, "DELETE FROM audit_checkpoints");
    tampered(&dir, &format!("the checkpoint at entry {n} was deleted"));
}

/// Item 6: the server signs checkpoints by itself (at start, then on its schedule), each
/// one also appended to the anchor file.
#[std::prelude::v1::test]
fn the_server_signs_checkpoints_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(crate::cli::init_embedded(&dir).ok);
    let anchor = dir.join("audit-anchor.log");
    assert!(!anchor.exists());
    let mut child = crate::cli::keyhold(&dir)
        .env("KEYHOLD_PASSPHRASE", crate::cli::PASS)
        .arg("--policies")
        .arg(crate::cli::shipped_policies())
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-listen", "none"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !anchor.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&anchor).unwrap();
    assert!(text.starts_with("keyhold-audit-anchor-v1 "), "{text}");
    let r = keyhold(&dir, &["audit", "verify"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("1 signed checkpoint(s)"), "{}", r.stdout);
    let r = keyhold(&dir, &["audit", "list"]);
    assert!(
        r.stdout.contains("audit.checkpoint") && r.stdout.contains("system"),
        "{}",
        r.stdout
    );
}

/// Item 12: a CN carrying terminal escapes (erase line, carriage return, hidden text) is
/// shown with its control characters made visible by `requests list|show`, `certs list`
/// and `audit list`, never sent raw to the officer's terminal.
#[actix_web::test]
async fn terminal_escapes_in_a_subject_never_reach_the_terminal() {
    let fx = Fixture::new();
    for name in ["alice", "bob"] {
        add_user(&fx, name, &[Role::Officer]);
    }
    let cn = "Release\u{1b}[2K\rCN=Harmless test\u{1b}[8m";
    let csr = fx.csr("evil", &format!("/CN={cn}"), "");
    let r = crate::cli::run(
        crate::cli::keyhold(&fx.tmp.path().join("data"))
            .arg("--policies")
            .arg(crate::cli::shipped_policies())
            .args([
                "issue",
                "--profile",
                "code-signing",
                "--requester",
                "carol",
                "--csr",
            ])
            .arg(fx.tmp.path().join("evil.csr")),
    );
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    assert!(!csr.is_empty());
    let raw = |out: &str| out.contains('\u{1b}') || out.contains('\r');
    for args in [
        &["requests", "list"][..],
        &["requests", "show", "1"],
        &["audit", "list", "--limit", "50"],
    ] {
        let r = cli(&fx, args);
        assert!(r.ok, "{args:?}: {}", r.stderr);
        assert!(
            !raw(&r.stdout),
            "{args:?} printed raw escapes: {:?}",
            r.stdout
        );
        assert!(
            r.stdout.contains("Release\\u{1b}[2K\\u{d}CN=Harmless test"),
            "{args:?}: {:?}",
            r.stdout
        );
    }
    for who in ["alice", "bob"] {
        let r = cli(&fx, &["requests", "approve", "1", "--as", who]);
        assert!(r.code == Some(0) || r.code == Some(3), "{}", r.stderr);
    }
    let r = cli(&fx, &["certs", "list"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        !raw(&r.stdout),
        "certs list printed raw escapes: {:?}",
        r.stdout
    );
    assert!(r.stdout.contains("Release\\u{1b}"), "{:?}", r.stdout);
}
