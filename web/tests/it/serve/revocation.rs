//! OCSP and the CRL over HTTP: after a revocation, and with the key store gone.

use std::fs::{self};
use std::process::Command;
use std::time::Duration;

use crate::cli::{keyhold, run};
use crate::support::openssl_in;

use super::*;

#[test]
fn a_revoked_certificate_shows_in_ocsp_over_post_and_get_and_on_the_served_crl() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    let server = Server::start(work, &dir);
    let token = create_token(&dir, "ci", "requester");
    let issued = issue_and_verify(&server, work, &token);
    let serial = issued["serial"].as_str().unwrap();
    fs::write(
        work.join("issuing.pem"),
        server.get("/ca/issuing-ca.pem", None).body,
    )
    .unwrap();
    // Every CA certificate, to verify the responder's certificate and the CRL.
    let mut all = fs::read(work.join("chain.pem")).unwrap();
    all.extend(fs::read(work.join("root.pem")).unwrap());
    fs::write(work.join("all.pem"), all).unwrap();

    let ocsp_post = || {
        openssl_in(
            work,
            &[
                "ocsp",
                "-issuer",
                "issuing.pem",
                "-cert",
                "leaf.pem",
                "-CAfile",
                "all.pem",
                "-url",
                &format!("http://127.0.0.1:{}/ocsp", server.port),
            ],
        )
    };
    let before = ocsp_post();
    assert!(before.contains("leaf.pem: good"), "{before}");

    let r = run(keyhold(&dir).args(["revoke", serial, "--reason", "keyCompromise"]));
    assert!(r.ok, "{}", r.stderr);
    let after = ocsp_post();
    assert!(
        after.contains("leaf.pem: revoked") && after.contains("keyCompromise"),
        "{after}"
    );

    // GET: the same request, base64 in the path.
    let path = ocsp_get_path(work);
    // Without a nonce, the answer comes from those signed ahead of time: the pre-signer
    // picks up a revocation made by another process (the CLI) within its poll interval.
    let mut r = server.get(&path, None);
    for _ in 0..100 {
        fs::write(work.join("resp.der"), &r.body).unwrap();
        let text = openssl_in(
            work,
            &["ocsp", "-respin", "resp.der", "-noverify", "-resp_text"],
        );
        if text.contains("Cert Status: revoked") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        r = server.get(&path, None);
    }
    assert_eq!(r.status, 200);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/ocsp-response")
    );
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("cache-control: max-age="),
        "{}",
        r.head
    );
    fs::write(work.join("resp.der"), &r.body).unwrap();
    let text = openssl_in(
        work,
        &[
            "ocsp",
            "-respin",
            "resp.der",
            "-CAfile",
            "all.pem",
            "-resp_text",
        ],
    );
    assert!(text.contains("Cert Status: revoked"), "{text}");

    // The CRL at the certificate's CDP URL lists it, and openssl refuses the leaf with it.
    let r = server.get("/crl/issuing-ca.crl", None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/pkix-crl")
    );
    fs::write(work.join("crl.der"), &r.body).unwrap();
    openssl_in(
        work,
        &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
    );
    let crl = openssl_in(
        work,
        &[
            "crl", "-in", "crl.pem", "-noout", "-text", "-CAfile", "all.pem",
        ],
    );
    assert!(
        crl.to_ascii_lowercase()
            .contains(&serial.to_ascii_lowercase()),
        "{crl}"
    );
    let out = Command::new("openssl")
        .args([
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "-CRLfile",
            "crl.pem",
            "leaf.pem",
        ])
        .current_dir(work)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revoked")
            || String::from_utf8_lossy(&out.stderr).contains("revoked")
    );
    assert_eq!(server.get("/crl/nope.crl", None).status, 404);
    // A second fetch within the refresh interval is the same CRL (no new number burnt).
    assert_eq!(server.get("/crl/issuing-ca.crl", None).body, r.body);
    // Caches may keep it until its nextUpdate; its ETag names it, and asking with that ETag
    // gets 304 and no body.
    let head = r.head.to_ascii_lowercase();
    assert!(
        head.contains("expires: ") && head.contains("last-modified: "),
        "{head}"
    );
    let etag = r
        .head
        .lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .unwrap_or_else(|| panic!("no ETag: {}", r.head))
        .trim()
        .to_owned();
    let req = format!(
        "GET /crl/issuing-ca.crl HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    );
    let again = http(server.port, req.as_bytes()).unwrap();
    assert_eq!(again.status, 304, "{}", again.head);
    assert!(again.body.is_empty());
}

#[test]
fn with_the_key_store_gone_ocsp_and_the_crl_are_still_served_and_readyz_says_so() {
    if crate::cli::softhsm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    // A token directory of this test's own: taking it away disturbs no other test.
    let tokens = work.join("tokens");
    fs::create_dir(&tokens).unwrap();
    let conf = work.join("softhsm2.conf");
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_owned();
    let env = [
        ("SOFTHSM2_CONF", conf.as_str()),
        ("KEYHOLD_PKCS11_PIN", crate::cli::USER_PIN),
        ("KEYHOLD_PKCS11_SO_PIN", crate::cli::SO_PIN),
    ];
    let r = run(keyhold(&dir)
        .args(["hsm", "init-token", "--label", "going-away"])
        .envs(env));
    assert!(r.ok, "{}", r.stderr);
    let r = run(keyhold(&dir)
        .args([
            "init",
            "--keystore",
            "pkcs11",
            "--pkcs11-token",
            "going-away",
        ])
        .envs(env));
    assert!(r.ok, "{}", r.stderr);
    let server = Server::start_with(work, &dir, &env);
    let token = create_token(&dir, "ci", "requester");
    let officer = create_token(&dir, "officer", "officer");
    let issued = issue_and_verify(&server, work, &token);
    let serial = issued["serial"].as_str().unwrap();
    fs::write(
        work.join("issuing.pem"),
        server.get("/ca/issuing-ca.pem", None).body,
    )
    .unwrap();
    let path = ocsp_get_path(work);
    // The first question may be answered by a signature made on demand, which the
    // pre-signer replaces when it reaches the new certificate (ECDSA signatures differ):
    // take as the baseline an answer that stays the same for over a second.
    let mut good = server.get(&path, None);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(1200));
        let again = server.get(&path, None);
        let settled = again.body == good.body;
        good = again;
        if settled {
            break;
        }
    }
    assert_eq!(good.status, 200);
    assert!(ocsp_text(work, &good.body).contains("Cert Status: good"));
    let crl = server.get("/crl/issuing-ca.crl", None);
    assert_eq!(crl.status, 200);
    assert_eq!(server.get("/readyz", None).status, 200);

    // The token's files vanish from under the running server.
    fs::rename(&tokens, work.join("tokens.away")).unwrap();
    fs::create_dir(&tokens).unwrap();

    // Readiness says the key store is down and what still works (its probe result is
    // reused for 2 s, so wait for a fresh one).
    let mut ready = server.get("/readyz", None);
    for _ in 0..100 {
        if ready.status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        ready = server.get("/readyz", None);
    }
    assert_eq!(
        ready.status,
        503,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    let body = ready.json();
    assert_eq!(body["key_store"], "unavailable");
    assert_eq!(body["database"], "ok");
    assert!(
        body["degraded"].as_array().is_some_and(|d| d.len() == 3),
        "{body}"
    );
    // Issue 18: the one HSM member is listed as out, with its last error.
    assert_eq!(body["hsm_members"][0]["name"], "hsm", "{body}");
    assert_eq!(body["hsm_members"][0]["state"], "out", "{body}");
    assert!(body["hsm_members"][0]["last_error"].is_string(), "{body}");

    // OCSP answers from what was signed before; the CRL is still served.
    let r = server.get(&path, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, good.body, "the same pre-signed answer");
    let r = server.get("/crl/issuing-ca.crl", None);
    assert_eq!((r.status, &r.body), (200, &crl.body));

    // A revocation is recorded, but cannot be signed: OCSP stops saying `good` for that
    // certificate (tryLater), and the last CRL is served rather than an error.
    let r = server.post_json(
        &format!("/api/v1/certificates/{serial}/revoke"),
        &officer,
        r#"{"reason": "keyCompromise"}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = server.get(&path, None);
    assert_eq!(r.status, 200);
    let text = ocsp_text(work, &r.body);
    assert!(
        !text.contains("Cert Status: good") && text.to_ascii_lowercase().contains("trylater"),
        "{text}"
    );
    let r = server.get("/crl/issuing-ca.crl", None);
    assert_eq!((r.status, &r.body), (200, &crl.body));
    // Issuance fails with a clear server-side error, not a hang or a crash.
    let csr = fs::read_to_string(work.join("web.csr")).unwrap();
    let body = serde_json::json!({"profile": "tls-server", "csr": csr}).to_string();
    let r = server.post_json("/api/v1/certificates", &token, &body);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.head.to_ascii_lowercase().contains("retry-after: 2"),
        "{}",
        r.head
    );
    assert_eq!(server.get("/healthz", None).status, 200);

    // Issue 18: the token comes back; issuance recovers by itself within seconds (the
    // member's module is re-initialised in the background), without a restart.
    fs::remove_dir(&tokens).unwrap();
    fs::rename(work.join("tokens.away"), &tokens).unwrap();
    let back = std::time::Instant::now();
    let mut r = server.post_json("/api/v1/certificates", &token, &body);
    while r.status != 201 && r.status != 200 && back.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        r = server.post_json("/api/v1/certificates", &token, &body);
    }
    assert!(
        r.status == 201 || r.status == 200,
        "issuance did not recover: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    println!(
        "issuance recovered {:?} after the token came back",
        back.elapsed()
    );
    std::thread::sleep(Duration::from_millis(2100));
    let ready = server.get("/readyz", None);
    let body = ready.json();
    assert_eq!(ready.status, 200, "{body}");
    assert_eq!(body["hsm_members"][0]["state"], "in", "{body}");
    let metrics = String::from_utf8_lossy(&server.get("/metrics", None).body).into_owned();
    assert!(
        metrics.contains("keyhold_hsm_member_up{member=\"hsm\"} 1"),
        "{metrics}"
    );
    let logs = server.terminate();
    assert_eq!(
        logs.matches("hsm member taken out of service").count(),
        1,
        "out is logged once, not per failed call:\n{logs}"
    );
    assert!(logs.contains("hsm member back in service"), "{logs}");
    assert!(!logs.contains(crate::cli::USER_PIN), "the PIN was logged");
}
