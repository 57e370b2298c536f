//! Issue 15, item 9: a flood of unauthenticated OCSP questions about serials this CA never
//! issued must not displace or starve the answers about its own certificates. Before the
//! fix, such questions used up the on-demand signing budget they shared with this CA's own
//! certificates, and the next question about a certificate issued a moment earlier got
//! `tryLater` (which soft-failing clients read as good).

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::Role;
use ca_core::revocation::publish::{STRANGERS_HELD, STRANGERS_PER_SECOND};
use serde_json::{Value, json};

use crate::api::Fixture;

/// What openssl makes of an OCSP response: its status line, or the certificate's status.
fn status_of(dir: &std::path::Path, der: &[u8]) -> String {
    let path = dir.join("answer.der");
    std::fs::write(&path, der).unwrap();
    let out = crate::support::openssl(&[
        "ocsp",
        "-respin",
        path.to_str().unwrap(),
        "-resp_text",
        "-noverify",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Cert Status: "))
        .or_else(|| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix("OCSP Response Status: "))
        })
        .unwrap_or("(no status)")
        .to_owned()
}

/// An OCSP request (no nonce) about `serial` of the issuing CA, made by openssl.
fn request_for(dir: &std::path::Path, serial: &str) -> Vec<u8> {
    let out = dir.join(format!("req-{serial}.der"));
    crate::support::openssl_in(
        dir,
        &[
            "ocsp",
            "-issuer",
            "issuer.pem",
            "-serial",
            &format!("0x{serial}"),
            "-no_nonce",
            "-reqout",
            out.to_str().unwrap(),
        ],
    );
    std::fs::read(out).unwrap()
}

#[actix_web::test]
async fn a_flood_about_random_serials_leaves_new_and_revoked_certificates_answered() {
    let fx = Fixture::new();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(fx.state.clone()))
            .configure(ca_web::configure),
    )
    .await;
    let dir = fx.tmp.path();
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/ca/issuing-ca.pem")
            .to_request(),
    )
    .await;
    std::fs::write(dir.join("issuer.pem"), test::read_body(res).await).unwrap();
    let ask = |body: Vec<u8>| {
        test::TestRequest::post()
            .uri("/ocsp")
            .insert_header(("Content-Type", "application/ocsp-request"))
            .set_payload(body)
            .to_request()
    };

    // A certificate issued just now: no pre-signer runs here, so its answer can only be
    // signed on demand.
    let alice = fx.token("alice", Role::Requester);
    let csr = fx.csr("svc", "/CN=svc.internal", "DNS:svc.internal");
    let res = test::call_service(
        &app,
        crate::api::submit_req(&alice, &json!({"profile": "tls-server", "csr": csr})).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let issued: Value = test::read_body_json(res).await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let ours = request_for(dir, &serial);

    // The flood: questions about serials never issued, each a new serial (the bytes of one
    // request's serial replaced, as an attacker would).
    let template_serial = "5eed5eed5eed5eed5eed5eed5eed5eed";
    let template = request_for(dir, template_serial);
    let at = template
        .windows(16)
        .position(|w| w == hex::decode(template_serial).unwrap().as_slice())
        .unwrap();
    // Flood until the responder starts answering `tryLater` (its budget for answers signed
    // on demand is used up), then ask about our certificate in that same second.
    let mut try_later = 0;
    let mut unknown = 0u32;
    let started = std::time::Instant::now();
    for n in 0u32..5_000 {
        let mut body = template.clone();
        body[at + 12..at + 16].copy_from_slice(&n.to_be_bytes());
        let res = test::call_service(&app, ask(body)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let der = test::read_body(res).await;
        // tryLater is a 5-octet unsuccessful response; anything longer is signed.
        if der.len() < 16 {
            try_later += 1;
            if try_later == 20 {
                break;
            }
        } else {
            unknown += 1;
        }
    }
    assert_eq!(try_later, 20, "the flood ran into its budget");
    let seconds = started.elapsed().as_secs() as u32 + 1;
    assert!(
        unknown <= STRANGERS_PER_SECOND * seconds,
        "at most the strangers' budget was signed: {unknown} in {seconds} s"
    );
    assert!(fx.state.publisher.strangers_held() <= STRANGERS_HELD);
    assert_eq!(
        fx.state.publisher.answers_held(),
        0,
        "the flood kept nothing of ours"
    );

    // The certificate issued a moment ago still gets a signed answer.
    let res = test::call_service(&app, ask(ours.clone())).await;
    let der = test::read_body(res).await;
    assert_eq!(status_of(dir, &der), "good");

    // And one revoked now is answered `revoked` at once, flood or not.
    let res = test::call_service(
        &app,
        crate::api::revoke_req(&alice, &serial, &json!({"reason": "keyCompromise"})).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    for n in 5_000u32..5_100 {
        let mut body = template.clone();
        body[at + 12..at + 16].copy_from_slice(&n.to_be_bytes());
        let _ = test::call_service(&app, ask(body)).await;
    }
    let res = test::call_service(&app, ask(ours)).await;
    let der = test::read_body(res).await;
    assert_eq!(status_of(dir, &der), "revoked");
}
