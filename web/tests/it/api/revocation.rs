//! Revoking over the API, and what the CRL and OCSP then say and for how long.

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::Role;
use ca_core::audit::Action;
use serde_json::Value;

use super::*;

/// Issues a tls-server certificate to `$token` and returns its serial.
macro_rules! issue_for {
    ($app:expr, $fx:expr, $token:expr, $name:expr) => {{
        let name: &str = $name;
        let csr = $fx.csr(name, &format!("/CN={name}.internal"), &format!("DNS:{name}.internal"));
        let res = test::call_service(
            $app,
            submit_req($token, &serde_json::json!({"profile": "tls-server", "csr": csr}))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = test::read_body_json(res).await;
        body["serial"].as_str().unwrap().to_owned()
    }};
}

/// The serials the served CRL of the issuing CA lists, as canonical lowercase hex.
macro_rules! crl_serials {
    ($app:expr) => {{
        use der::Decode;
        let res = test::call_service(
            $app,
            test::TestRequest::get()
                .uri("/crl/issuing-ca.crl")
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let der = test::read_body(res).await;
        let crl =
            x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&der)
                .unwrap();
        crl.tbs_cert_list
            .revoked_certificates
            .unwrap_or_default()
            .iter()
            .map(|r| ca_core::store::Serial::from_bytes(r.serial_number.as_bytes()).to_string())
            .collect::<Vec<String>>()
    }};
}

#[actix_web::test]
async fn officers_revoke_any_certificate_and_requesters_only_their_own() {
    let fx = Fixture::new();
    let app = app!(fx);
    let alice = fx.token("alice", Role::Requester);
    let bob = fx.token("bob", Role::Requester);
    let officer = fx.token("olga", Role::Officer);
    let auditor = fx.token("audrey", Role::Auditor);
    let admin = fx.token("adam", Role::Admin);
    let first = issue_for!(&app, fx, &alice, "one");
    let second = issue_for!(&app, fx, &alice, "two");
    // The CRL is served (and cached) before any revocation.
    assert!(crl_serials!(&app).is_empty());

    let reason = serde_json::json!({"reason": "keyCompromise"});
    for (token, status) in [
        (&auditor, StatusCode::FORBIDDEN),
        (&admin, StatusCode::FORBIDDEN),
    ] {
        let res = test::call_service(&app, revoke_req(token, &first, &reason).to_request()).await;
        assert_eq!(res.status(), status);
    }
    // Someone else's certificate looks like no certificate at all.
    let res = test::call_service(&app, revoke_req(&bob, &first, &reason).to_request()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(
        &app,
        revoke_req(
            &alice,
            &first,
            &serde_json::json!({"reason": "cACompromise"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    for bad in [
        serde_json::json!({"reason": "certificateHold"}),
        serde_json::json!({"reason": "bored"}),
        serde_json::json!({"reason": "keyCompromise", "invalidity_date": "2999-01-01T00:00:00Z"}),
        serde_json::json!({"reason": "keyCompromise", "invalidity_date": "yesterday"}),
        serde_json::json!({"reason": "keyCompromise", "extra": 1}),
    ] {
        let res = test::call_service(&app, revoke_req(&alice, &first, &bad).to_request()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let res = test::call_service(&app, revoke_req(&officer, "zz", &reason).to_request()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res =
        test::call_service(&app, revoke_req(&officer, "0badc0de", &reason).to_request()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Nothing above revoked anything.
    assert!(crl_serials!(&app).is_empty());

    // The requester revokes its own; the officer revokes another (colons are fine).
    let res = test::call_service(
        &app,
        revoke_req(
            &alice,
            &first,
            &serde_json::json!({"reason": "keyCompromise", "invalidity_date": "2026-01-02T03:04:05Z"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = test::read_body_json(res).await;
    assert_eq!(body["status"], "revoked");
    assert_eq!(body["reason"], "keyCompromise");
    assert_eq!(body["invalidity_date"], "2026-01-02T03:04:05Z");
    let colons: Vec<String> = second
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let res = test::call_service(
        &app,
        revoke_req(
            &officer,
            &colons.join(":"),
            &serde_json::json!({"reason": "superseded"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Twice is a conflict, and says so.
    let res = test::call_service(&app, revoke_req(&officer, &first, &reason).to_request()).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);

    // The served CRL was dropped and regenerated: both are on it at once.
    let mut listed = crl_serials!(&app);
    listed.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    // And the audit log names who revoked, and why.
    let head = fx.state.ledger.audit_head().unwrap().unwrap().0;
    let entries = fx.state.ledger.audit_entries(1, head).unwrap();
    let revocations: Vec<_> = entries
        .iter()
        .filter(|e| e.action == Action::CertificateRevoked.as_str())
        .map(|e| (e.actor.as_str(), e.details.contains("reason=keyCompromise")))
        .collect();
    assert_eq!(revocations, [("alice", true), ("olga", false)]);
}

/// Seconds since 1970 of a time as `openssl ... -text` prints it: `Nov 23 19:30:00 2026 GMT`.
fn openssl_time(text: &str) -> i64 {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [month, day, hms, year, "GMT"] = parts[..] else {
        panic!("not an openssl time: {text:?}");
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| *x == month).unwrap() as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().unwrap(), year.parse().unwrap());
    let hms: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

/// thisUpdate to nextUpdate in seconds, from openssl's text with the two labels given.
fn validity_secs(text: &str, this: &str, next: &str) -> i64 {
    let find = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| openssl_time(v.trim()))
            .unwrap_or_else(|| panic!("no {label:?} in {text}"))
    };
    find(next) - find(this)
}

#[actix_web::test]
async fn crl_and_ocsp_validity_come_from_the_revocation_config() {
    let fx = Fixture::with_config("[revocation]\ncrl_validity = \"2d\"\nocsp_validity = \"36h\"");
    let app = app!(fx);
    let work = fx.tmp.path();
    let openssl = |args: &[&str]| crate::support::openssl_in(work, args);
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/crl/issuing-ca.crl")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    std::fs::write(work.join("served.crl"), test::read_body(res).await).unwrap();
    let text = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        "served.crl",
        "-noout",
        "-text",
    ]);
    assert_eq!(
        validity_secs(&text, "Last Update:", "Next Update:"),
        2 * 86_400,
        "{text}"
    );

    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/ca/issuing-ca.pem")
            .to_request(),
    )
    .await;
    std::fs::write(work.join("issuer.pem"), test::read_body(res).await).unwrap();
    openssl(&[
        "ocsp",
        "-issuer",
        "issuer.pem",
        "-serial",
        "0x0badc0de",
        "-no_nonce",
        "-reqout",
        "req.der",
    ]);
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/ocsp")
            .insert_header(("Content-Type", "application/ocsp-request"))
            .set_payload(std::fs::read(work.join("req.der")).unwrap())
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    std::fs::write(work.join("resp.der"), test::read_body(res).await).unwrap();
    let text = openssl(&["ocsp", "-respin", "resp.der", "-resp_text", "-noverify"]);
    assert_eq!(
        validity_secs(&text, "This Update:", "Next Update:"),
        36 * 3600,
        "{text}"
    );
}

#[actix_web::test]
async fn ocsp_answers_are_reused_until_a_revocation_through_the_api() {
    let fx = Fixture::new();
    let app = app!(fx);
    let alice = fx.token("alice", Role::Requester);
    let csr = fx.csr("svc", "/CN=svc.internal", "DNS:svc.internal");
    let res = test::call_service(
        &app,
        submit_req(
            &alice,
            &serde_json::json!({"profile": "tls-server", "csr": csr}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let issued: Value = test::read_body_json(res).await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let work = fx.tmp.path();
    std::fs::write(
        work.join("cert.pem"),
        issued["certificate"].as_str().unwrap(),
    )
    .unwrap();
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/ca/issuing-ca.pem")
            .to_request(),
    )
    .await;
    std::fs::write(work.join("issuer.pem"), test::read_body(res).await).unwrap();
    let openssl = |args: &[&str]| crate::support::openssl_in(work, args);
    let request = |name: &str, nonce: &str| {
        openssl(&[
            "ocsp",
            "-issuer",
            "issuer.pem",
            "-cert",
            "cert.pem",
            nonce,
            "-reqout",
            name,
        ]);
        std::fs::read(work.join(name)).unwrap()
    };
    let plain = request("plain.der", "-no_nonce");
    let with_nonce = request("nonce.der", "-nonce");
    let ask = |body: Vec<u8>| {
        test::TestRequest::post()
            .uri("/ocsp")
            .insert_header(("Content-Type", "application/ocsp-request"))
            .set_payload(body)
            .to_request()
    };
    let status_of = |der: &[u8], name: &str| {
        std::fs::write(work.join(name), der).unwrap();
        let text = openssl(&["ocsp", "-respin", name, "-resp_text", "-noverify"]);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("Cert Status: "))
            .unwrap()
            .to_owned()
    };

    let first = test::read_body(test::call_service(&app, ask(plain.clone())).await).await;
    let again = test::read_body(test::call_service(&app, ask(plain.clone())).await).await;
    assert_eq!(status_of(&first, "r1.der"), "good");
    // ECDSA signatures differ each time: equal bytes mean the answer came from the cache.
    assert_eq!(first, again);
    let n1 = test::read_body(test::call_service(&app, ask(with_nonce.clone())).await).await;
    let n2 = test::read_body(test::call_service(&app, ask(with_nonce)).await).await;
    assert_ne!(n1, n2, "an answer with a nonce is signed for each request");

    let res = test::call_service(
        &app,
        revoke_req(
            &alice,
            &serial,
            &serde_json::json!({"reason": "keyCompromise"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let after = test::read_body(test::call_service(&app, ask(plain)).await).await;
    assert_eq!(status_of(&after, "r2.der"), "revoked");
}
