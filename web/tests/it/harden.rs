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
            r.stdout.contains("Release\\u{1b}[2K"),
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

/// A `keyhold serve` on a fresh CA, killed when dropped.
struct Served {
    child: std::process::Child,
    port: u16,
    tls_port: u16,
    dir: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(extra: &[&str]) -> Served {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(crate::cli::init_embedded(&dir).ok);
    let (port, tls_port) = (free_port(), free_port());
    let child = crate::cli::keyhold(&dir)
        .env("KEYHOLD_PASSPHRASE", crate::cli::PASS)
        .arg("--policies")
        .arg(crate::cli::shipped_policies())
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra.iter().map(|a| {
            if *a == "TLS" {
                format!("127.0.0.1:{tls_port}")
            } else {
                (*a).to_owned()
            }
        }))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Served {
        child,
        port,
        tls_port,
        dir,
        _tmp: tmp,
    }
}

/// One keep-alive HTTP/1.1 connection from source address `from`.
struct Conn(std::io::BufReader<std::net::TcpStream>);

impl Conn {
    fn open(from: [u8; 4], port: u16) -> Option<Conn> {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
        s.bind(&std::net::SocketAddr::from((from, 0)).into()).ok()?;
        s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
            .ok()?;
        let stream: std::net::TcpStream = s.into();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .ok()?;
        Some(Conn(std::io::BufReader::new(stream)))
    }

    /// The status, and the headers and body as text.
    fn send(&mut self, request: &str) -> Option<(u16, String)> {
        use std::io::{BufRead, Read, Write};
        self.0.get_mut().write_all(request.as_bytes()).ok()?;
        let mut line = String::new();
        self.0.read_line(&mut line).ok()?;
        let status = line.split_whitespace().nth(1)?.parse().ok()?;
        let (mut text, mut length) = (String::new(), 0usize);
        loop {
            line.clear();
            self.0.read_line(&mut line).ok()?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().ok()?;
            }
            text.push_str(&line);
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).ok()?;
        text.push_str(&String::from_utf8_lossy(&body));
        Some((status, text))
    }

    /// A browser's sign-in: GET the form, POST it. The POST's status and response.
    fn sign_in(&mut self, path: &str, name: &str, password: &str) -> Option<(u16, String)> {
        let (_, page) = self.send(&format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))?;
        let cookie = page.lines().find_map(|l| {
            let l = l
                .strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))?;
            Some(l.split(';').next()?.to_owned()).filter(|c| c.starts_with("kh_login="))
        })?;
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)?
            .split('"')
            .next()?;
        let body = format!(
            "csrf={csrf}&name={name}&password={}",
            ca_web::http::ui::views::query_value(password)
        );
        self.send(&format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }
}

fn rss_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap()
        / 1024
}

/// `threads` connections from `from` sign in under random names until `stop`.
fn flood(
    port: u16,
    from: impl Fn(usize) -> [u8; 4],
    threads: usize,
    budget: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    use std::sync::atomic::Ordering;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    (0..threads)
        .map(|i| {
            let (stop, sent, addr) = (stop.clone(), sent.clone(), from(i));
            std::thread::spawn(move || {
                let mut conn = None;
                let mut mine = 0;
                while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < budget
                {
                    if conn.is_none() {
                        conn = Conn::open(addr, port);
                    }
                    let name = format!("flood{i}x{mine}");
                    if conn
                        .as_mut()
                        .and_then(|c| c.sign_in("/ui/login", &name, "not the password"))
                        .is_none()
                    {
                        conn = None;
                    }
                    mine += 1;
                }
                mine
            })
        })
        .collect()
}

/// Items 7 and 8: thousands of sign-ins with random names from eight addresses leave the
/// server's resident memory bounded; then six connections flooding from one address do
/// not keep a legitimate user (another address) from signing in.
#[std::prelude::v1::test]
fn a_sign_in_flood_neither_grows_memory_nor_locks_others_out() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = serve(&["--tls-listen", "none", "--insecure-http-ui"]);
    let made = crate::cli::with_pass(&s.dir, &["users", "add", "legit", "--role", "auditor"]);
    assert!(made.ok, "{}", made.stderr);
    let password = made.stdout.trim().to_owned();
    let pid = s.child.id();

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let sent: u64 = flood(s.port, |i| [127, 0, 0, 10 + i as u8], 8, 3_000, stop)
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    let rss = rss_mb(pid);
    assert!(sent >= 2_900, "{sent} attempts");
    assert!(rss < 150, "resident {rss} MB after {sent} sign-in attempts");

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flooders = flood(s.port, |_| [127, 0, 0, 2], 6, u64::MAX, stop.clone());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut ok = 0;
    for _ in 0..10 {
        let r = Conn::open([127, 0, 0, 1], s.port)
            .and_then(|mut c| c.sign_in("/ui/login", "legit", &password));
        if r.as_ref().is_some_and(|(status, _)| *status == 303) {
            ok += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let flooded: u64 = flooders.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(flooded > 20, "the flood ran: {flooded}");
    assert!(
        ok >= 9,
        "only {ok} of 10 legitimate sign-ins got through the flood"
    );
}

/// Item 10: percent-encoding `/ui` or `/api` does not get past the plain-HTTP gate: the
/// login page is not served (nor a sign-in accepted) over plain HTTP, and the API answers
/// 421; the redirect names the configured host, never the `Host` header (item 11).
#[std::prelude::v1::test]
fn percent_encoded_paths_do_not_pass_the_plain_http_gate() {
    let s = serve(&["--tls-listen", "TLS"]);
    let mut c = Conn::open([127, 0, 0, 1], s.port).unwrap();
    let (status, text) = c
        .send("GET /%75i/login HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        .unwrap();
    assert_eq!(status, 308, "{text}");
    assert!(!text.contains("name=\"password\""), "{text}");
    let location = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("location: ")
                .map(str::to_owned)
        })
        .unwrap();
    assert!(
        location.starts_with(&format!("https://127.0.0.1:{}/", s.tls_port)),
        "{location}"
    );
    let (status, text) = c
        .send("GET /%61pi/v1/certificates HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer x\r\n\r\n")
        .unwrap();
    assert_eq!(status, 421, "{text}");
    let body = "csrf=a&name=admin&password=b";
    let (status, text) = c
        .send(&format!(
            "POST /%75i/login HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: kh_login=a\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .unwrap();
    assert_eq!(status, 421, "{text}");
    assert!(!text.to_ascii_lowercase().contains("set-cookie"), "{text}");
}

/// Item 11: a password typed into the name field is not kept in the audit log.
#[actix_web::test]
async fn a_password_typed_as_the_name_is_not_audited() {
    let fx = Fixture::new();
    let app = app!(fx);
    let secret = "Correct-Horse-Battery-9";
    let res = crate::ui::try_login(&app, secret, "whatever").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let store = &fx.state.ledger;
    let head = store.audit_head().unwrap().unwrap().0;
    let entries = store.audit_entries(1, head).unwrap();
    let failed: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "login.failed")
        .collect();
    assert_eq!(failed.len(), 1);
    for e in &entries {
        assert!(
            !format!("{}{}{}", e.object, e.details, e.actor).contains(secret),
            "{e:?}"
        );
    }
    assert_eq!(failed[0].object, users::UNKNOWN_USER_OBJECT);
}

/// Item 4: a CSR with two CNs (`/CN=web.internal/CN=admin`, `DNS:web.internal`) is refused
/// under `tls-server` and `tls-client`, naming the repeated attribute; nothing is issued.
#[std::prelude::v1::test]
fn a_request_with_two_common_names_is_refused() {
    let fx = Fixture::new();
    fx.csr("two", "/CN=web.internal/CN=admin", "DNS:web.internal");
    for profile in ["tls-server", "tls-client"] {
        let r = crate::cli::run(
            crate::cli::keyhold(&fx.tmp.path().join("data"))
                .arg("--policies")
                .arg(crate::cli::shipped_policies())
                .args([
                    "issue",
                    "--profile",
                    profile,
                    "--requester",
                    "carol",
                    "--csr",
                ])
                .arg(fx.tmp.path().join("two.csr")),
        );
        assert!(!r.ok, "{profile}: issued {}", r.stdout);
        assert!(
            format!("{}{}", r.stdout, r.stderr).contains("subject attribute CN appears 2 times"),
            "{profile}: {}{}",
            r.stdout,
            r.stderr
        );
    }
    let r = cli(&fx, &["certs", "list"]);
    assert!(!r.stdout.contains("admin"), "{}", r.stdout);
}

/// Item 11: HTTPS responses carry Strict-Transport-Security; plain HTTP ones do not.
#[std::prelude::v1::test]
fn https_responses_carry_strict_transport_security() {
    let s = serve(&["--tls-listen", "TLS"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", s.tls_port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no HTTPS listener");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-D", "-"])
        .arg(format!("https://127.0.0.1:{}/ui/login", s.tls_port))
        .output()
        .expect("curl must be installed (.ci/setup installs it)");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        head.contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    let mut c = Conn::open([127, 0, 0, 1], s.port).unwrap();
    let (_, text) = c
        .send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert!(
        !text.to_ascii_lowercase().contains("strict-transport"),
        "{text}"
    );
}

/// Item 3 (in part): a token named like Keyhold's own server requester, which would see the
/// server's own certificates, or like the audit log's `system`, cannot be made.
#[std::prelude::v1::test]
fn tokens_cannot_take_reserved_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(crate::cli::init_embedded(&dir).ok);
    for name in ["keyhold-server", "Keyhold-Server", "system", "anonymous"] {
        let r = keyhold(
            &dir,
            &["tokens", "create", "--name", name, "--role", "requester"],
        );
        assert!(!r.ok, "{name}: {}", r.stdout);
        assert!(r.stderr.contains("is reserved"), "{name}: {}", r.stderr);
    }
}

#[actix_web::test]
async fn a_sign_in_form_posted_from_another_site_is_refused() {
    // Item 11: the sign-in form's anti-CSRF token was a plain double submit (cookie equals
    // form field), which a page able to plant a cookie for this host could satisfy. The
    // browser's Origin and Sec-Fetch-Site headers, which no page can set, now decide too.
    let fx = Fixture::new();
    let app = app!(fx);
    user(&fx, "alice", &[Role::Auditor]);
    let page =
        test::call_service(&app, test::TestRequest::get().uri("/ui/login").to_request()).await;
    let csrf = crate::ui::cookie_value(&page, "kh_login").unwrap();
    let attempt = |extra: Option<(&'static str, &'static str)>| {
        let mut req = post(
            "/ui/login",
            &format!("kh_login={csrf}"),
            form(&[
                ("csrf", &csrf),
                ("name", "alice"),
                ("password", crate::ui::PASSWORD),
            ]),
        )
        .insert_header(("Host", "keyhold.internal"));
        if let Some(h) = extra {
            req = req.insert_header(h);
        }
        req.to_request()
    };
    for forged in [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
        // A sibling subdomain: the very page that can plant cookies for this host.
        ("Sec-Fetch-Site", "same-site"),
    ] {
        let res = test::call_service(&app, attempt(Some(forged))).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{forged:?}");
        assert!(
            crate::ui::cookie_value(&res, "kh_session").is_none(),
            "{forged:?}"
        );
    }
    // From Keyhold's own page the same form signs in (browsers send `Origin: null` under
    // Keyhold's no-referrer policy; Sec-Fetch-Site says same-origin then).
    let res = test::call_service(&app, attempt(Some(("Sec-Fetch-Site", "same-origin")))).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = test::call_service(&app, attempt(Some(("Origin", "https://keyhold.internal")))).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(crate::ui::cookie_value(&res, "kh_session").is_some());
}
