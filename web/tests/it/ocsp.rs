//! The OCSP responder end to end: requests made by `openssl ocsp`, answered by
//! `keyhold ocsp respond` (the function `POST /ocsp` and `GET /ocsp/...` call), and the
//! answers checked by `openssl ocsp -respin`. openssl is required.

use crate::revoke::{Ca, openssl, stderr, stdout};

/// `openssl ocsp` checking `resp` against the root, as a client would (the responder
/// certificate is in the response; the issuing CA is given as an intermediate).
fn check(ca: &Ca, resp: &str, extra: &[&str]) -> String {
    let issuing = ca.ca_file("issuing-ca.pem");
    let root = ca.ca_file("root.pem");
    let mut args = vec![
        "ocsp",
        "-respin",
        resp,
        "-CAfile",
        &root,
        "-verify_other",
        &issuing,
        "-issuer",
        &issuing,
    ];
    args.extend_from_slice(extra);
    let out = openssl(&args);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{said}");
    said
}

#[test]
fn openssl_accepts_good_revoked_and_unknown_answers_with_sha1_and_sha256_cert_ids() {
    let ca = Ca::new();
    let (good, _) = ca.issue("good");
    let (bad, bad_serial) = ca.issue("bad");
    let r = ca.keyhold(&["revoke", &bad_serial, "--reason", "keyCompromise"]);
    assert!(r.ok, "{}", r.stderr);

    // One request, three CertIDs (SHA-1 by default), with a nonce.
    let issuing = ca.ca_file("issuing-ca.pem");
    let req = ca.path("req.der");
    let out = openssl(&[
        "ocsp",
        "-issuer",
        &issuing,
        "-cert",
        &good,
        "-cert",
        &bad,
        "-serial",
        "0x0badc0de",
        "-reqout",
        &req,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let resp = ca.path("resp.der");
    let r = ca.keyhold(&["ocsp", "respond", "--request", &req, "--out", &resp]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("nonce echoed"), "{}", r.stdout);

    let said = check(
        &ca,
        &resp,
        &[
            "-cert",
            &good,
            "-cert",
            &bad,
            "-serial",
            "0x0badc0de",
            "-no_nonce",
        ],
    );
    assert!(said.contains("Response verify OK"), "{said}");
    assert!(said.contains(&format!("{good}: good")), "{said}");
    assert!(said.contains(&format!("{bad}: revoked")), "{said}");
    assert!(said.contains("Reason: keyCompromise"), "{said}");
    assert!(said.contains("Revocation Time:"), "{said}");
    assert!(said.contains("0x0badc0de: unknown"), "{said}");

    // The nonce: openssl compares it with the one in its request.
    let out = openssl(&[
        "ocsp",
        "-reqin",
        &req,
        "-respin",
        &resp,
        "-CAfile",
        &ca.ca_file("root.pem"),
        "-verify_other",
        &issuing,
        "-resp_text",
    ]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Response verify OK"), "{said}");
    assert!(said.contains("OCSP Nonce"), "{said}");
    assert!(!said.contains("nonce"), "nonce warning: {said}");
    assert!(said.contains("ecdsa-with-SHA384"), "{said}");

    // SHA-256 CertIDs, trusting the responder certificate directly (-VAfile).
    let req256 = ca.path("req256.der");
    let out = openssl(&[
        "ocsp",
        "-sha256",
        "-issuer",
        &issuing,
        "-cert",
        &bad,
        "-no_nonce",
        "-reqout",
        &req256,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let resp256 = ca.path("resp256.der");
    let r = ca.keyhold(&["ocsp", "respond", "--request", &req256, "--out", &resp256]);
    assert!(r.ok, "{}", r.stderr);
    let out = openssl(&[
        "ocsp",
        "-respin",
        &resp256,
        "-VAfile",
        &ca.ca_file("issuing-ca-ocsp.pem"),
        "-issuer",
        &issuing,
        "-sha256",
        "-cert",
        &bad,
        "-no_nonce",
    ]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Response verify OK"), "{said}");
    assert!(said.contains(&format!("{bad}: revoked")), "{said}");
}

#[test]
fn get_requests_decode_and_bad_requests_get_ocsp_errors_not_crashes() {
    let ca = Ca::new();
    let (good, _) = ca.issue("good");
    let issuing = ca.ca_file("issuing-ca.pem");
    let req = ca.path("req.der");
    let out = openssl(&[
        "ocsp",
        "-issuer",
        &issuing,
        "-cert",
        &good,
        "-no_nonce",
        "-reqout",
        &req,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let der = std::fs::read(&req).unwrap();

    // As a GET path: URL-safe base64, and standard base64 percent-encoded.
    let out = openssl(&["base64", "-A", "-in", &req]);
    let standard = stdout(&out).trim().to_owned();
    let url_safe = standard.replace('+', "-").replace('/', "_");
    let percent = standard
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    for path in [&url_safe, &percent, &standard] {
        let resp = ca.path("get.der");
        let r = ca.keyhold(&["ocsp", "respond", "--get", path, "--out", &resp]);
        assert!(r.ok, "{}", r.stderr);
        let said = check(&ca, &resp, &["-cert", &good, "-no_nonce"]);
        assert!(said.contains(&format!("{good}: good")), "{said}");
    }

    // Malformed: a truncated request.
    let bad = ca.path("bad.der");
    std::fs::write(&bad, &der[..der.len() / 2]).unwrap();
    let resp = ca.path("malformed.der");
    let r = ca.keyhold(&["ocsp", "respond", "--request", &bad, "--out", &resp]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("MalformedRequest"), "{}", r.stderr);
    let out = openssl(&["ocsp", "-respin", &resp, "-resp_text", "-noverify"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("malformedrequest"), "{said}");

    // Unauthorized: asking about a certificate of an issuer we do not serve (the root has no
    // delegated responder).
    let root = ca.ca_file("root.pem");
    let req = ca.path("root-req.der");
    let out = openssl(&[
        "ocsp",
        "-issuer",
        &root,
        "-cert",
        &issuing,
        "-no_nonce",
        "-reqout",
        &req,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let resp = ca.path("unauthorized.der");
    let r = ca.keyhold(&["ocsp", "respond", "--request", &req, "--out", &resp]);
    assert!(r.ok, "{}", r.stderr);
    let out = openssl(&["ocsp", "-respin", &resp, "-resp_text", "-noverify"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("unauthorized"), "{said}");
}
