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

    // Unauthorized: asking about a certificate of an issuer we do not serve (a CA openssl
    // just made).
    let stranger = ca.path("stranger.pem");
    let out = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &ca.path("stranger.key"),
        "-subj",
        "/CN=Stranger CA",
        "-out",
        &stranger,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let req = ca.path("stranger-req.der");
    let out = openssl(&[
        "ocsp",
        "-issuer",
        &stranger,
        "-serial",
        "0x01",
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

/// `openssl ocsp` asking the root's responder about the issuing CA's certificate (as NSS
/// does when it checks a whole chain); returns what openssl said.
fn ask_root_about_issuing(ca: &Ca, name: &str) -> String {
    let root = ca.ca_file("root.pem");
    let issuing = ca.ca_file("issuing-ca.pem");
    let req = ca.path(&format!("{name}.req"));
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
    let resp = ca.path(&format!("{name}.resp"));
    let r = ca.keyhold(&["ocsp", "respond", "--request", &req, "--out", &resp]);
    assert!(r.ok, "{}", r.stderr);
    let out = openssl(&[
        "ocsp",
        "-respin",
        &resp,
        "-CAfile",
        &root,
        "-issuer",
        &root,
        "-cert",
        &issuing,
        "-no_nonce",
    ]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Response verify OK"), "{said}");
    said
}

#[test]
fn the_roots_responder_answers_for_the_issuing_ca_good_then_revoked_after_revoke_ca() {
    let ca = Ca::new();
    let issuing = ca.ca_file("issuing-ca.pem");
    let said = ask_root_about_issuing(&ca, "before");
    assert!(said.contains(&format!("{issuing}: good")), "{said}");
    let r = ca.keyhold(&[
        "revoke-ca",
        "issuing-ca",
        "--reason",
        "cACompromise",
        "--yes",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let said = ask_root_about_issuing(&ca, "after");
    assert!(said.contains(&format!("{issuing}: revoked")), "{said}");
    assert!(said.contains("Reason: cACompromise"), "{said}");
}

#[test]
fn ocsp_renew_gives_an_old_data_directorys_root_a_responder_audited() {
    let ca = Ca::new();
    // A data directory from before roots had a responder: no [issuers.ocsp] for the root,
    // no root-ocsp.pem, no root-ca-ocsp key.
    let config_path = ca.dir.join("keyhold.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let start = text.find("[issuers.ocsp]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap() + 2;
    assert!(text[start..end].contains("root-ocsp.pem"), "{text}");
    let old = format!("{}{}", &text[..start], &text[end..]);
    std::fs::write(&config_path, &old).unwrap();
    std::fs::remove_file(ca.dir.join("ca/root-ocsp.pem")).unwrap();
    let r = ca.keyhold(&["keys", "destroy", "--label", "root-ca-ocsp", "--yes"]);
    assert!(r.ok, "{}", r.stderr);
    let req = ca.path("old.req");
    let out = openssl(&[
        "ocsp",
        "-issuer",
        &ca.ca_file("root.pem"),
        "-cert",
        &ca.ca_file("issuing-ca.pem"),
        "-no_nonce",
        "-reqout",
        &req,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let resp = ca.path("old.resp");
    let r = ca.keyhold(&["ocsp", "respond", "--request", &req, "--out", &resp]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("Unauthorized"), "{}", r.stderr);

    let r = ca.keyhold(&["ocsp", "renew", "--issuer", "root", "--days", "10"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("created an OCSP responder for root"),
        "{}",
        r.stdout
    );
    let new = std::fs::read_to_string(&config_path).unwrap();
    assert!(
        new.starts_with(&old[..old.find("[[issuers]]").unwrap()]),
        "{new}"
    );
    let said = ask_root_about_issuing(&ca, "renewed");
    assert!(said.contains(": good"), "{said}");
    let r = ca.keyhold(&["audit", "list", "--limit", "5"]);
    assert!(r.stdout.contains("OCSP responder of root"), "{}", r.stdout);
    // Renewing again renews the certificate; the key stays.
    let r = ca.keyhold(&["ocsp", "renew", "--issuer", "root"]);
    assert!(
        r.ok && r.stdout.contains("renewed"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}
