//! A first run as a new user makes it: a data directory made anywhere, commands run from any
//! other directory, output piped into `head`.

use std::fs;
use std::io::Read;
use std::process::Stdio;

use crate::cli::{PASS, init_embedded, keyhold, run};

#[test]
fn init_writes_the_shipped_profiles_and_commands_find_them_from_any_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = init_embedded(&dir);
    assert!(r.ok, "{}", r.stderr);
    for name in ["tls-server", "tls-client", "code-signing", "sub-ca"] {
        let shipped = crate::cli::shipped_policies().join(format!("{name}.toml"));
        let written = dir.join("policies").join(format!("{name}.toml"));
        assert_eq!(
            fs::read_to_string(written).unwrap(),
            fs::read_to_string(shipped).unwrap(),
            "{name}"
        );
    }
    // From an empty directory (no ./policies), without --policies.
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let r = run(keyhold(&dir)
        .current_dir(&elsewhere)
        .env("KEYHOLD_PASSPHRASE", PASS)
        .args(["policy", "check"]));
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("4 profile(s)"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&dir.join("policies").display().to_string())
    );
    // --policies still overrides: an empty directory has no profiles to offer.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let r = run(keyhold(&dir)
        .current_dir(&elsewhere)
        .env("KEYHOLD_PASSPHRASE", PASS)
        .arg("--policies")
        .arg(&empty)
        .args(["policy", "check"]));
    assert!(
        !r.ok,
        "an empty --policies directory was accepted: {}",
        r.stdout
    );
}

#[test]
fn listing_commands_end_quietly_when_their_reader_goes_away() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = init_embedded(&dir);
    assert!(r.ok, "{}", r.stderr);
    for args in [["certs", "list"], ["audit", "verify"]] {
        let mut child = keyhold(&dir)
            .env("KEYHOLD_PASSPHRASE", PASS)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command prints anything, as `| head -0` would.
        drop(child.stdout.take());
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert_ne!(status.code(), Some(101), "{args:?} panicked: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

fn request(port: u16, method: &str, path: &str) -> crate::serve::Response {
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    crate::serve::http(port, req.as_bytes()).expect("no response")
}

#[test]
fn the_front_pages_lead_to_the_ui_and_name_what_the_plain_listener_publishes_and_head_works() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let server = crate::serve::Server::start_opts(work, &work.join("data"), &[], false, true);
    let (port, tls_port) = (server.port, server.tls_port);

    // The plain listener: a short page naming the CA certificates, CRLs, OCSP and the UI.
    let home = request(port, "GET", "/");
    assert_eq!(home.status, 200, "{}", home.head);
    assert!(
        home.head
            .to_ascii_lowercase()
            .contains("content-type: text/html")
    );
    let page = String::from_utf8_lossy(&home.body);
    let base = format!("http://127.0.0.1:{port}");
    for needle in [
        format!("{base}/ca/root.pem"),
        format!("{base}/ca/issuing-ca.pem"),
        format!("{base}/crl/root.crl"),
        format!("{base}/crl/issuing-ca.crl"),
        format!("{base}/ocsp"),
        format!("https://127.0.0.1:{tls_port}/ui/"),
    ] {
        assert!(page.contains(&needle), "{needle} missing from:\n{page}");
    }
    // HEAD wherever GET is served: the same status and headers, no body.
    for path in [
        "/",
        "/ca/root.pem",
        "/crl/issuing-ca.crl",
        "/ocsp/MAMCAQA%3D",
        "/healthz",
    ] {
        let get = request(port, "GET", path);
        let head = request(port, "HEAD", path);
        assert_eq!(get.status, 200, "GET {path}: {}", get.head);
        assert_eq!(head.status, 200, "HEAD {path}: {}", head.head);
        assert!(!get.body.is_empty(), "GET {path}");
        assert!(head.body.is_empty(), "HEAD {path} sent a body");
        let content_type = |r: &crate::serve::Response| {
            r.head
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
                .map(str::to_owned)
        };
        assert_eq!(content_type(&get), content_type(&head), "{path}");
    }
    // Still 405 for what GET does not serve.
    assert_eq!(request(port, "PUT", "/ocsp/MAMCAQA%3D").status, 405);

    // The HTTPS listener: `/` leads to the UI.
    fs::write(
        work.join("root.pem"),
        request(port, "GET", "/ca/root.pem").body,
    )
    .unwrap();
    let head = crate::serve::curl(
        &[
            "--cacert",
            "root.pem",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            &format!("https://127.0.0.1:{tls_port}/"),
        ],
        work,
    );
    assert_eq!(head, format!("302 https://127.0.0.1:{tls_port}/ui/"));
}
