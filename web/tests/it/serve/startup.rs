//! Starting `keyhold serve`: a fresh directory, a PKCS#11 token, refusals, tokens, scheduled backups.

use std::fs::{self};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{keyhold, run, shipped_policies};
use crate::support::free_port;

use super::*;

#[test]
fn serve_on_a_fresh_directory_issues_over_http_and_openssl_verifies_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    let server = Server::start(work, &dir);
    let out = server.logs();
    assert!(out.contains("DEMO ONLY"), "{out}");
    assert!(
        out.contains(&format!(
            "OCSP, CRL, CA certificates: http://127.0.0.1:{}/",
            server.port
        )),
        "{out}"
    );
    assert!(out.contains("SHA-256"), "{out}");
    // The demo CA's base URL is this server, so its AIA and CDP URLs point here.
    let config = fs::read_to_string(dir.join("keyhold.toml")).unwrap();
    assert!(
        config.contains(&format!("http://127.0.0.1:{}", server.port)),
        "{config}"
    );

    let token = create_token(&server.dir, "ci-deployer", "requester");
    assert!(!server.logs().contains(&token));

    let issued = issue_and_verify(&server, work, &token);

    let serial = issued["serial"].as_str().unwrap();
    let one = server.get(&format!("/api/v1/certificates/{serial}"), Some(&token));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["requester"], "ci-deployer");
    assert_eq!(server.get("/readyz", None).status, 200);

    // Listing shows the token, revoking it locks it out at once.
    let r = run(keyhold(&server.dir).args(["tokens", "list"]));
    assert!(
        r.ok && r.stdout.contains("ci-deployer") && !r.stdout.contains("kh_"),
        "{}",
        r.stdout
    );
    let r = run(keyhold(&server.dir).args(["tokens", "revoke", "ci-deployer"]));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(server.get("/api/v1/certificates", Some(&token)).status, 401);
    let r = run(keyhold(&server.dir)
        .args(["audit", "list", "--limit", "50"])
        .env("KEYHOLD_PASSPHRASE", "unused"));
    for action in ["token.created", "token.revoked", "certificate.issued"] {
        assert!(r.stdout.contains(action), "{action}: {}", r.stdout);
    }

    let logs = server.terminate();
    assert!(logs.contains("stopped"), "{logs}");
    assert!(!logs.contains(&token), "a token was logged");
}

#[test]
fn serve_refuses_to_start_listing_every_problem() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = crate::cli::init_embedded(&dir);
    assert!(r.ok, "{}", r.stderr);
    // Two profiles naming issuers that do not exist: both are reported.
    let policies = tmp.path().join("policies");
    fs::create_dir(&policies).unwrap();
    for name in ["tls-server", "tls-client"] {
        let text = fs::read_to_string(shipped_policies().join(format!("{name}.toml")))
            .unwrap()
            .replace(
                "issuer = \"issuing-ca\"",
                &format!("issuer = \"missing-{name}\""),
            );
        fs::write(policies.join(format!("{name}.toml")), text).unwrap();
    }
    let port = free_port().to_string();
    let r = crate::cli::with_pass(
        &dir,
        &[
            "--policies",
            policies.to_str().unwrap(),
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
    );
    crate::cli::fails_with(&r, "missing-tls-server");
    assert!(r.stderr.contains("missing-tls-client"), "{}", r.stderr);

    // A passphrase file others can read is refused (outside demo mode).
    let pass = tmp.path().join("pass");
    fs::write(&pass, crate::cli::PASS).unwrap();
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o644)).unwrap();
    let r = run(keyhold(&dir)
        .arg("--passphrase-file")
        .arg(&pass)
        .arg("--policies")
        .arg(shipped_policies())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")]));
    crate::cli::fails_with(&r, "readable by group or others");
}

#[test]
fn tokens_create_refuses_bad_roles_names_profiles_and_reused_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = crate::cli::init_embedded(&dir);
    assert!(r.ok, "{}", r.stderr);
    let tokens = |args: &[&str]| {
        run(keyhold(&dir)
            .arg("--policies")
            .arg(shipped_policies())
            .arg("tokens")
            .args(args))
    };
    crate::cli::fails_with(
        &tokens(&["create", "--name", "x", "--role", "root"]),
        "unknown role",
    );
    crate::cli::fails_with(
        &tokens(&["create", "--name", "a b", "--role", "admin"]),
        "invalid token name",
    );
    crate::cli::fails_with(
        &tokens(&[
            "create",
            "--name",
            "x",
            "--role",
            "requester",
            "--profiles",
            "nope",
        ]),
        "unknown profile",
    );
    crate::cli::fails_with(
        &tokens(&[
            "create",
            "--name",
            "x",
            "--role",
            "admin",
            "--expires",
            "soon",
        ]),
        "not a duration",
    );
    let r = tokens(&[
        "create",
        "--name",
        "x",
        "--role",
        "requester",
        "--profiles",
        "tls-server,tls-client",
        "--expires",
        "90d",
    ]);
    assert!(r.ok, "{}", r.stderr);
    crate::cli::fails_with(
        &tokens(&["create", "--name", "x", "--role", "admin"]),
        "exists already",
    );
    crate::cli::fails_with(&tokens(&["revoke", "nobody"]), "not found");
    let list = tokens(&["list"]);
    assert!(
        list.stdout.contains("tls-server,tls-client") && list.stdout.contains("active"),
        "{}",
        list.stdout
    );
}

#[test]
fn serve_issues_with_keys_in_a_pkcs11_token() {
    let Some((hsm_token, _)) = crate::cli::token() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    let r = crate::cli::init_pkcs11(&dir, hsm_token, "serve-", crate::cli::USER_PIN);
    assert!(r.ok, "{}", r.stderr);
    let server = Server::start_with(work, &dir, &[("KEYHOLD_PKCS11_PIN", crate::cli::USER_PIN)]);
    assert!(!server.logs().contains("DEMO ONLY"));
    let token = create_token(&dir, "ci", "requester");
    issue_and_verify(&server, work, &token);
    let ready = server.get("/readyz", None);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["key_store"], "ok");
    let logs = server.terminate();
    assert!(!logs.contains(crate::cli::USER_PIN), "the PIN was logged");
}

#[test]
fn the_server_makes_backups_on_its_schedule_and_keeps_the_newest() {
    // Issue 19: `[backup] every` makes `keyhold serve` back the CA up by itself, keeping the
    // newest `keep`, and says so on /metrics and /readyz.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = run(keyhold(&dir).args(["init", "--demo"]));
    assert!(r.ok, "{}", r.stderr);
    let identity = tmp.path().join("backup-identity.txt");
    let r = run(keyhold(&dir).args(["backup", "keygen", "--out", identity.to_str().unwrap()]));
    assert!(r.ok, "{}", r.stderr);
    let recipient = r.stdout.trim().to_owned();
    let config = dir.join("keyhold.toml");
    let text = fs::read_to_string(&config).unwrap();
    assert!(!text.contains("[backup]"), "{text}");
    fs::write(
        &config,
        format!("{text}\n[backup]\nrecipients = [\"{recipient}\"]\nevery = \"1s\"\nkeep = 2\n"),
    )
    .unwrap();
    let server = Server::start(tmp.path(), &dir);
    let backups = dir.join("backups");
    let made = |s: &Server| {
        String::from_utf8_lossy(
            &http(
                s.port,
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .unwrap()
            .body,
        )
        .lines()
        .find_map(|l| l.strip_prefix("keyhold_backup_last_success_timestamp_seconds "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while made(&server) == 0 {
        assert!(Instant::now() < deadline, "no backup:\n{}", server.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few more intervals: at least four backups made, two kept.
    std::thread::sleep(Duration::from_secs(4));
    let mut files: Vec<PathBuf> = fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}\n{}", server.logs());
    let ready = http(
        server.port,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let body: Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(body["backup"], "ok", "{body}");
    // What the schedule wrote is a whole, signed, readable backup.
    let r = run(keyhold(&dir).args([
        "backup",
        "verify",
        files[1].to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ]));
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    drop(server);
}
