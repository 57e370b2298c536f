//! Revoking certificates in the UI, and OCSP seeing it at once.

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::users::Role;

use crate::api::Fixture;

use super::*;

#[actix_web::test]
async fn officers_revoke_any_certificate_requesters_their_own() {
    let fx = Fixture::new();
    user(&fx, "olga", &[Role::Officer]);
    user(&fx, "rita", &[Role::Requester]);
    user(&fx, "aude", &[Role::Auditor]);
    let ritas = serial(&submit(
        &fx,
        "rita",
        &["requester"],
        "tls-server",
        "r.internal",
        "DNS:r.internal",
    ));
    let bobs = serial(&submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "b.internal",
        "DNS:b.internal",
    ));
    let app = app!(fx);
    let revoke = |serial: &str, cookie: &str, fields: &[(&str, &str)]| {
        post(&format!("/ui/certs/{serial}/revoke"), cookie, form(fields)).to_request()
    };

    let (aude, aude_csrf) = login(&app, "aude").await;
    let html =
        body(test::call_service(&app, get(&format!("/ui/certs/{bobs}"), &aude).to_request()).await)
            .await;
    assert!(!html.contains("/revoke\""), "auditors get no revoke form");
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &aude,
            &[
                ("csrf", &aude_csrf),
                ("reason", "superseded"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A requester: her own, not for cACompromise, never someone else's.
    let (rita, rita_csrf) = login(&app, "rita").await;
    let html = body(
        test::call_service(&app, get(&format!("/ui/certs/{ritas}"), &rita).to_request()).await,
    )
    .await;
    assert!(html.contains("value=\"superseded\"") && !html.contains("value=\"cACompromise\""));
    let res = test::call_service(
        &app,
        revoke(
            &ritas,
            &rita,
            &[
                ("csrf", &rita_csrf),
                ("reason", "cACompromise"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &rita,
            &[
                ("csrf", &rita_csrf),
                ("reason", "superseded"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(
        &app,
        revoke(
            &ritas,
            &rita,
            &[
                ("csrf", &rita_csrf),
                ("reason", "superseded"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("/ui/certs/{ritas}?done=revoked"));

    // An officer: anyone's, once, and only after confirming.
    let (olga, csrf) = login(&app, "olga").await;
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &olga,
            &[("csrf", &csrf), ("reason", "keyCompromise")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "no confirmation");
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &olga,
            &[("csrf", &csrf), ("reason", "stolen"), ("confirm", "on")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "unknown reason");
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &olga,
            &[
                ("csrf", &csrf),
                ("reason", "keyCompromise"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = body(test::call_service(&app, get(&location(&res), &olga).to_request()).await).await;
    assert!(
        html.contains("id=\"revoked\"") && html.contains("(keyCompromise)"),
        "{html}"
    );
    assert!(!html.contains("Revoke this certificate"));
    let res = test::call_service(
        &app,
        revoke(
            &bobs,
            &olga,
            &[
                ("csrf", &csrf),
                ("reason", "keyCompromise"),
                ("confirm", "on"),
            ],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "already revoked");
    let html = body(test::call_service(&app, get("/ui/", &olga).to_request()).await).await;
    assert!(html.contains("id=\"count-revoked\">2<"), "{html}");

    let actions = audit_actions(&fx);
    assert!(actions.contains(&(
        "certificate.revoked".into(),
        "rita".into(),
        format!("certificate:{ritas}")
    )));
    assert!(actions.contains(&(
        "certificate.revoked".into(),
        "olga".into(),
        format!("certificate:{bobs}")
    )));
}

#[actix_web::test]
async fn revoking_in_the_ui_makes_ocsp_answer_revoked_at_once() {
    use std::process::Command;
    let fx = Fixture::new();
    user(&fx, "olga", &[Role::Officer]);
    let s = serial(&submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "b.internal",
        "DNS:b.internal",
    ));
    let app = app!(fx);
    let work = fx.tmp.path().to_owned();
    let row = fx
        .state
        .ledger
        .certificate(&ca_core::store::Serial::parse(&s).unwrap())
        .unwrap()
        .unwrap();
    let cert = ca_core::x509::SignedCert::from_der(row.der.as_deref().unwrap()).unwrap();
    std::fs::write(work.join("cert.pem"), cert.to_pem().unwrap()).unwrap();
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/ca/issuing-ca.pem")
            .to_request(),
    )
    .await;
    std::fs::write(work.join("issuer.pem"), test::read_body(res).await).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&work)
            .output()
            .expect("openssl must be installed (.ci/setup installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    openssl(&[
        "ocsp",
        "-issuer",
        "issuer.pem",
        "-cert",
        "cert.pem",
        "-no_nonce",
        "-reqout",
        "plain.der",
    ]);
    let plain = std::fs::read(work.join("plain.der")).unwrap();
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
    // Asked once, the `good` answer is now cached.
    let first = test::read_body(test::call_service(&app, ask(plain.clone())).await).await;
    assert_eq!(status_of(&first, "r1.der"), "good");
    let (olga, csrf) = login(&app, "olga").await;
    let res = test::call_service(
        &app,
        post(
            &format!("/ui/certs/{s}/revoke"),
            &olga,
            form(&[
                ("csrf", &csrf),
                ("reason", "keyCompromise"),
                ("confirm", "on"),
            ]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let after = test::read_body(test::call_service(&app, ask(plain)).await).await;
    assert_eq!(status_of(&after, "r2.der"), "revoked");
}
