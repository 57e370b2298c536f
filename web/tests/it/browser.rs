//! The admin UI in a real headless Chromium, driven over WebDriver (chromedriver) with
//! fantoccini, against `keyhold serve` running as its own process: the first administrator
//! signs in with the one-time password `serve` printed, must change it, browses and searches
//! the certificates, opens one, reads the audit log and adds users; a requester submits a
//! CSR that needs two approvals and cannot approve it herself; two officers approve it, the
//! second revokes the certificate; the audit log shows it all; sign-out ends the session.
//! Screenshots of each
//! screen go to `$KEYHOLD_SCREENSHOT_DIR` (default: `ui-screenshots` in Cargo's target
//! temporary directory).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/setup` installs them). Without them
//! the test is skipped with a message, unless `KEYHOLD_REQUIRE_ALL_BACKENDS=1`: then it
//! fails, so CI cannot pass without a browser.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use ca_core::issuance::{Channel, Outcome, Submission};
use ca_core::policy::Requester;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::api::Fixture;
use crate::cli::{keyhold, shipped_policies};
use crate::support::{free_port, wait_for_port};

const NEW_PASSWORD: &str = "the administrator's own password";

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Chromium and chromedriver, or `None` (skip) when they are missing and not required.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chrome = first_existing(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
    let driver = first_existing(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    match (chrome, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if std::env::var("KEYHOLD_REQUIRE_ALL_BACKENDS").as_deref() == Ok("1") => {
            panic!(
                "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
            )
        }
        _ => {
            eprintln!(
                "skipped: chromium or chromedriver missing (apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("KEYHOLD_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Waits until the browser's URL path is `path` (after a form post and its redirect).
async fn wait_path(c: &Client, path: &str) {
    let start = Instant::now();
    loop {
        let url = c.current_url().await.unwrap();
        if url.path() == path {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "at {url}, expected {path}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the URL's query contains `part` (a GET form submitted to the same page).
async fn wait_query(c: &Client, part: &str) {
    let start = Instant::now();
    loop {
        let url = c.current_url().await.unwrap();
        if url.query().is_some_and(|q| q.contains(part)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "at {url}, expected {part}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until an element matching `css` is on the page.
async fn wait_for(c: &Client, css: &str) {
    let start = Instant::now();
    while c.find(Locator::Css(css)).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no {css} on the page"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Adds a user on the Users screen; returns the one-time password it shows.
async fn add_user(c: &Client, name: &str, roles: &[&str]) -> String {
    fill(c, "#new-name", name).await;
    for r in roles {
        click(c, &format!("input[name={r}]")).await;
    }
    click(c, "form[action='/ui/users'] button[type=submit]").await;
    let start = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css("#otp-title")).await
            && e.text().await.is_ok_and(|t| t.contains(name))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name} was not created"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    text(c, "#one-time-password").await
}

/// Signs in with a one-time password and replaces it; ends on the dashboard.
async fn first_sign_in(c: &Client, base: &str, name: &str, otp: &str) {
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    fill(c, "#name", name).await;
    fill(c, "#password", otp).await;
    click(c, "form[action='/ui/login'] button[type=submit]").await;
    wait_path(c, "/ui/password").await;
    let own = format!("{name}'s own long password");
    fill(c, "#current", otp).await;
    fill(c, "#new", &own).await;
    fill(c, "#confirm", &own).await;
    click(c, "form[action='/ui/password'] button[type=submit]").await;
    wait_path(c, "/ui/").await;
    assert_eq!(text(c, "#current-user").await, name);
}

async fn sign_in(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    fill(c, "#name", name).await;
    fill(c, "#password", password).await;
    click(c, "form[action='/ui/login'] button[type=submit]").await;
    wait_path(c, "/ui/").await;
}

async fn sign_out(c: &Client) {
    click(c, "form[action='/ui/logout'] button[type=submit]").await;
    wait_path(c, "/ui/login").await;
}

fn issue(fx: &Fixture, host: &str) -> String {
    let csr = fx.csr(host, &format!("/CN={host}"), &format!("DNS:{host}"));
    let outcome = fx
        .state
        .ca
        .submit(
            &Submission {
                profile: "tls-server",
                csr: csr.as_bytes(),
                requester: &Requester {
                    name: "deployer".into(),
                    roles: vec!["requester".into()],
                },
                source: "test",
                channel: Channel::Cli,
            },
            SystemTime::now(),
        )
        .unwrap();
    match outcome {
        Outcome::Issued(i) => i.serial.to_string(),
        other => panic!("not issued: {other:?}"),
    }
}

/// Starts `keyhold serve` on `port`; returns it and the first administrator's one-time
/// password from its output.
fn serve(dir: &Path, port: u16) -> (Proc, String) {
    let mut child = keyhold(dir)
        .arg("--policies")
        .arg(shipped_policies())
        .args([
            "serve",
            "--workers",
            "2",
            "--listen",
            &format!("127.0.0.1:{port}"),
            // The browser drives the UI over plain HTTP on loopback.
            "--insecure-http-ui",
            "--tls-listen",
            "none",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut password = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("keyhold serve printed no 'OCSP, CRL, CA certificates:' line");
        if let Some((_, rest)) = line.split_once("with the one-time password ") {
            password = Some(rest.trim().to_owned());
        }
        // Printed once both listeners are bound.
        if line.starts_with("OCSP, CRL, CA certificates: ") {
            break;
        }
    }
    (
        proc,
        password.expect("serve created no first administrator"),
    )
}

#[actix_web::test]
async fn a_browser_signs_in_changes_the_password_browses_and_signs_out() {
    let Some((chrome, driver)) = browser() else {
        return;
    };
    // This walk-through has the administrator make officers in the UI, as a CA that opted
    // out of the quorum on officers does; the quorum itself is tested in officers.rs.
    let fx = Fixture::with_config("[quorum]\ngrant_officer = 0");
    let serials: Vec<String> = ["web1.internal", "web2.internal", "db.corp"]
        .iter()
        .map(|h| issue(&fx, h))
        .collect();
    let port = free_port();
    let (_server, otp) = serve(&fx.tmp.path().join("data"), port);
    wait_for_port(port);

    let driver_port = free_port();
    let _driver = Proc(
        Command::new(driver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(driver_port);
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chrome,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }
    });
    let caps = caps.as_object().unwrap().clone();
    let c = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("chromedriver starts a session");
    let dir = screenshot_dir();
    let base = format!("http://127.0.0.1:{port}");

    // 1. No session: the UI sends the browser to the sign-in page.
    c.goto(&format!("{base}/ui/")).await.unwrap();
    wait_path(&c, "/ui/login").await;
    shot(&c, &dir, "01-sign-in").await;

    // 2. A wrong password is refused, without saying why.
    fill(&c, "#name", "admin").await;
    fill(&c, "#password", "not the password").await;
    click(&c, "form[action='/ui/login'] button[type=submit]").await;
    wait_for(&c, ".error").await;
    assert!(text(&c, ".error").await.contains("Sign-in failed"));

    // 3. The one-time password works once and must be replaced at once.
    fill(&c, "#password", &otp).await;
    click(&c, "form[action='/ui/login'] button[type=submit]").await;
    wait_path(&c, "/ui/password").await;
    shot(&c, &dir, "02-change-password").await;
    fill(&c, "#current", &otp).await;
    fill(&c, "#new", NEW_PASSWORD).await;
    fill(&c, "#confirm", NEW_PASSWORD).await;
    click(&c, "form[action='/ui/password'] button[type=submit]").await;
    wait_path(&c, "/ui/").await;
    assert_eq!(text(&c, "#current-user").await, "admin");
    assert_eq!(text(&c, "#current-roles").await, "admin");
    assert_eq!(text(&c, "#count-valid").await, "3");
    shot(&c, &dir, "03-dashboard").await;

    // 4. The certificate list, then a search by SAN.
    click(&c, "nav a[href='/ui/certs']").await;
    wait_path(&c, "/ui/certs").await;
    let rows = c.find_all(Locator::Css("#certs tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 3);
    shot(&c, &dir, "04-certificates").await;
    fill(&c, "#q", "web2").await;
    click(&c, "form[role=search] button[type=submit]").await;
    wait_query(&c, "q=web2").await;
    let rows = c.find_all(Locator::Css("#certs tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(text(&c, "#certs tbody").await.contains(&serials[1]));
    shot(&c, &dir, "05-certificates-search").await;

    // 5. One certificate, decoded.
    click(&c, "#certs tbody a").await;
    wait_path(&c, &format!("/ui/certs/{}", serials[1])).await;
    let page = c.source().await.unwrap();
    assert!(page.contains("SHA-256 fingerprint") && page.contains("DNS:web2.internal"));
    shot(&c, &dir, "06-certificate").await;

    // 6. The audit log shows the sign-ins, the failure and the password change.
    click(&c, "nav a[href='/ui/audit']").await;
    wait_path(&c, "/ui/audit").await;
    let page = c.source().await.unwrap();
    for action in [
        "login.failed",
        "login.succeeded",
        "user.password_changed",
        "user.created",
    ] {
        assert!(page.contains(action), "{action}");
    }
    shot(&c, &dir, "07-audit-log").await;

    // 7. The users, where an administrator adds an officer and sees the one-time password.
    click(&c, "nav a[href='/ui/users']").await;
    wait_path(&c, "/ui/users").await;
    let olga = add_user(&c, "olga", &["officer"]).await;
    assert_eq!(olga.len(), 20);
    shot(&c, &dir, "08-users").await;
    let rita = add_user(&c, "rita", &["requester", "officer"]).await;
    let oscar = add_user(&c, "oscar", &["officer"]).await;
    sign_out(&c).await;

    // 8. A requester (also an officer) submits a CSR needing two approvals, and may not
    //    approve her own request.
    let csr = fx.csr("rita-sign", "/CN=Rita signing", "");
    first_sign_in(&c, &base, "rita", &rita).await;
    c.goto(&format!("{base}/ui/requests/new")).await.unwrap();
    click(&c, "input[value='code-signing']").await;
    fill(&c, "#csr", &csr).await;
    shot(&c, &dir, "10-submit-csr").await;
    click(&c, "form[action='/ui/requests/new'] button[type=submit]").await;
    wait_for(&c, ".notice").await;
    assert!(text(&c, ".notice").await.contains("waits for an officer"));
    let page = c.source().await.unwrap();
    assert!(page.contains("another officer decides") && !page.contains("/approve\""));
    shot(&c, &dir, "11-request-pending").await;
    sign_out(&c).await;

    // 9. Two other officers approve; the second approval issues it.
    for (name, otp) in [("olga", &olga), ("oscar", &oscar)] {
        first_sign_in(&c, &base, name, otp).await;
        c.goto(&format!("{base}/ui/requests")).await.unwrap();
        fill(&c, "input[name=comment]", "checked with Rita").await;
        click(&c, "form[action$='/approve'] button[type=submit]").await;
        wait_for(&c, ".notice").await;
        let notice = text(&c, ".notice").await;
        if name == "olga" {
            assert!(notice.contains("further approvals"), "{notice}");
            sign_out(&c).await;
        } else {
            assert!(notice.contains("certificate issued"), "{notice}");
        }
    }

    // 10. The officer revokes it, with a reason and a confirmation.
    c.goto(&format!("{base}/ui/certs?q=Rita")).await.unwrap();
    click(&c, "#certs tbody a").await;
    wait_for(&c, "#revoke-title").await;
    c.find(Locator::Css("#reason"))
        .await
        .unwrap()
        .select_by_value("keyCompromise")
        .await
        .unwrap();
    click(&c, "input[name=confirm]").await;
    click(&c, "form[action$='/revoke'] button[type=submit]").await;
    wait_for(&c, "#revoked").await;
    assert!(text(&c, "#revoked").await.contains("keyCompromise"));
    shot(&c, &dir, "12-revoked").await;
    sign_out(&c).await;

    // 11. The administrator sees it all in the audit log.
    sign_in(&c, &base, "admin", NEW_PASSWORD).await;
    c.goto(&format!("{base}/ui/audit")).await.unwrap();
    let page = c.source().await.unwrap();
    for action in [
        "request.received",
        "request.approved",
        "certificate.issued",
        "certificate.revoked",
    ] {
        assert!(page.contains(action), "{action}");
    }

    // 12. The hierarchy, read-only.
    click(&c, "nav a[href='/ui/ca']").await;
    wait_path(&c, "/ui/ca").await;
    assert!(c.source().await.unwrap().contains("Root CA"));
    shot(&c, &dir, "14-ca").await;

    // 13. At a phone's width.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/ui/")).await.unwrap();
    shot(&c, &dir, "13-dashboard-phone").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // 14. Signing out ends the session.
    click(&c, "form[action='/ui/logout'] button[type=submit]").await;
    wait_path(&c, "/ui/login").await;
    c.goto(&format!("{base}/ui/certs")).await.unwrap();
    wait_path(&c, "/ui/login").await;

    c.close().await.unwrap();
    eprintln!("screenshots in {}", dir.display());
}
