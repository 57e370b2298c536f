//! The HTTPS listener and `--insecure-http-ui`: what is served where, with which cookies.

use std::fs::{self};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::cli::{keyhold, run, shipped_policies};
use crate::support::{free_port, openssl_in};

use super::*;

/// The value of the response header `name` (case-insensitive) in curl's `-i` output.
fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[test]
fn https_listener_serves_ui_and_api_with_a_self_issued_certificate_openssl_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    let server = Server::start_opts(work, &dir, &[], false, true);
    let out = server.logs();
    let https = format!("https://127.0.0.1:{}", server.tls_port);
    assert!(out.contains(&format!("UI and API: {https}/ui")), "{out}");
    assert!(
        out.contains(&format!(
            "OCSP, CRL, CA certificates: http://127.0.0.1:{}/",
            server.port
        )),
        "{out}"
    );
    assert!(!out.contains("without TLS"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("HTTPS server certificate: serial "))
        .unwrap_or_else(|| panic!("no server certificate line:\n{out}"));
    let serial = line.split(' ').nth(4).unwrap().to_owned();
    let fingerprint = line.rsplit_once("SHA-256 ").unwrap().1;
    let fingerprint = fingerprint.split(';').next().unwrap().to_owned();

    // The root comes over plain HTTP (no chicken-and-egg), then HTTPS verifies with it.
    let root = server.get("/ca/root.pem", None);
    assert_eq!(root.status, 200);
    fs::write(work.join("root.pem"), &root.body).unwrap();
    let status = |url: &str| {
        curl(
            &[
                "--cacert",
                "root.pem",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                url,
            ],
            work,
        )
    };
    assert_eq!(status(&format!("{https}/healthz")), "200");
    assert_eq!(
        status(&format!("https://localhost:{}/healthz", server.tls_port)),
        "200"
    );
    assert_eq!(status(&format!("{https}/ca/root.pem")), "200");
    let openapi = curl(
        &[
            "--cacert",
            "root.pem",
            "-f",
            &format!("{https}/api/v1/openapi.json"),
        ],
        work,
    );
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    assert!(openapi["paths"].is_object(), "{openapi}");

    // openssl checks the served chain (leaf + issuing CA) against the root alone.
    let sclient = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.tls_port),
            "-servername",
            "localhost",
            "-CAfile",
            "root.pem",
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-showcerts",
        ])
        .current_dir(work)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sclient.stdout);
    assert!(
        sclient.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&sclient.stderr)
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert_eq!(
        text.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "{text}"
    );
    let leaf_end = text.find("-----END CERTIFICATE-----").unwrap();
    let leaf_start = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    fs::write(
        work.join("leaf.pem"),
        format!("{}-----END CERTIFICATE-----\n", &text[leaf_start..leaf_end]),
    )
    .unwrap();
    let fp = openssl_in(
        work,
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    assert!(
        fp.trim()
            .eq_ignore_ascii_case(&format!("sha256 Fingerprint={fingerprint}")),
        "{fp} vs {fingerprint}"
    );
    let ext = openssl_in(
        work,
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
        ],
    );
    assert!(ext.contains("DNS:localhost"), "{ext}");
    assert!(ext.contains("IP Address:127.0.0.1"), "{ext}");
    assert!(ext.contains("TLS Web Server Authentication"), "{ext}");
    // TLS 1.1 and older are refused.
    let old = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.tls_port),
            "-tls1_1",
        ])
        .current_dir(work)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!old.status.success());

    // The certificate is recorded like any other, with the server as its requester.
    let token = create_token(&server.dir, "auditor", "auditor");
    let auth = format!("Authorization: Bearer {token}");
    let one = curl(
        &[
            "--cacert",
            "root.pem",
            "-f",
            "-H",
            &auth,
            &format!("{https}/api/v1/certificates/{serial}"),
        ],
        work,
    );
    let one: Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["requester"], "keyhold-server", "{one}");
    assert_eq!(one["profile"], "tls-server", "{one}");

    // The plain listener serves OCSP, CRLs and CA certificates, and refuses the UI and API.
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.get("/crl/issuing-ca.crl", None).status, 200);
    let ocsp = http(
        server.port,
        b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\nContent-Length: 2\r\nConnection: close\r\n\r\n\x30\x00",
    )
    .unwrap();
    assert!(![404, 421].contains(&ocsp.status), "{}", ocsp.head);
    let api = server.get("/api/v1/certificates", Some(&token));
    assert_eq!(api.status, 421, "{}", api.head);
    let detail = api.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains(&format!("{https}/api/v1/certificates")),
        "{detail}"
    );
    let ui = server.get("/ui/login?x=1", None);
    assert_eq!(ui.status, 308, "{}", ui.head);
    assert!(
        ui.head.contains(&format!("{https}/ui/login?x=1")),
        "{}",
        ui.head
    );
    let post = server.post_json("/ui/login", "x", "{}");
    assert_eq!(post.status, 421, "{}", post.head);
    assert!(!server.logs().contains(&token));

    // Over HTTPS both the sign-in form's cookie and the session cookie are Secure.
    let form = curl(
        &["--cacert", "root.pem", "-i", &format!("{https}/ui/login")],
        work,
    );
    let login = header_values(&form, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("kh_login="))
        .unwrap_or_else(|| panic!("{form}"))
        .to_owned();
    assert!(login.contains("; Secure"), "{login}");
    let csrf = login["kh_login=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let password = out
        .split_once("with the one-time password ")
        .unwrap()
        .1
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let signed_in = curl(
        &[
            "--cacert",
            "root.pem",
            "-i",
            "-b",
            &format!("kh_login={csrf}"),
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "--data-urlencode",
            "name=admin",
            "--data-urlencode",
            &format!("password={password}"),
            &format!("{https}/ui/login"),
        ],
        work,
    );
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let session = header_values(&signed_in, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("kh_session="))
        .unwrap_or_else(|| panic!("{signed_in}"))
        .to_owned();
    assert!(session.contains("; Secure"), "{session}");
    server.terminate();
}

#[test]
fn insecure_http_ui_serves_the_ui_on_loopback_without_secure_cookies() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let server = Server::start_opts(work, &work.join("data"), &[], true, true);
    let out = server.logs();
    assert!(
        out.contains(&format!(
            "UI and API without TLS (--insecure-http-ui): http://127.0.0.1:{}/ui",
            server.port
        )),
        "{out}"
    );
    let form = server.get("/ui/login", None);
    assert_eq!(form.status, 200, "{}", form.head);
    let cookie = header_values(&form.head, "set-cookie").join("\n");
    assert!(cookie.contains("kh_login="), "{}", form.head);
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert_eq!(server.get("/api/v1/certificates", None).status, 401);
}

#[test]
fn without_https_or_insecure_http_ui_the_ui_and_api_are_not_served_and_a_warning_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let server = Server::start_opts(work, &work.join("data"), &[], false, false);
    let out = server.logs();
    assert!(out.contains("WARNING: HTTPS is off"), "{out}");
    assert!(!out.contains("UI and API:"), "{out}");
    assert!(!out.contains("HTTPS server certificate"), "{out}");
    assert_eq!(server.get("/ca/root.pem", None).status, 200);
    for path in ["/ui/login", "/api/v1/certificates", "/api", "/ui"] {
        let r = server.get(path, None);
        assert_eq!(r.status, 421, "{path}: {}", r.head);
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("--tls-listen ADDR"), "{detail}");
    }
    // Only those prefixes: other unknown paths are still 404.
    assert_eq!(server.get("/uix", None).status, 404);
}

#[test]
fn serve_refuses_insecure_http_ui_off_loopback_and_bad_tls_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let port = free_port().to_string();
    let serve = |args: &[&str]| {
        run(keyhold(&dir)
            .env("KEYHOLD_LOG", "off")
            .arg("--policies")
            .arg(shipped_policies())
            .arg("serve")
            .args(args))
    };
    // Refused before anything is made.
    let r = serve(&["--listen", &format!("0.0.0.0:{port}"), "--insecure-http-ui"]);
    crate::cli::fails_with(&r, "needs a loopback --listen address");
    assert!(!dir.exists());
    let r = serve(&["--tls-listen", "localhost"]);
    crate::cli::fails_with(&r, "nor `none`");
    let same = format!("127.0.0.1:{port}");
    let r = serve(&["--listen", &same, "--tls-listen", &same]);
    crate::cli::fails_with(&r, "give them different ports");
    assert!(!dir.exists());
    // A profile that does not make server certificates cannot serve HTTPS.
    let r = serve(&[
        "--listen",
        &same,
        "--tls-listen",
        &format!("127.0.0.1:{}", free_port()),
        "--tls-profile",
        "tls-client",
    ]);
    crate::cli::fails_with(&r, "does not issue TLS server certificates");
}
