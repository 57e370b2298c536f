//! Code signing over the API: only a key's owner signs, and openssl verifies it.

use std::process::Command;
use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::Role;
use ca_core::audit::Action;
use serde_json::Value;

use crate::support::bearer;

use super::*;

fn sign_req(token: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/api/v1/sign")
        .insert_header(bearer(token))
        .set_json(body)
}

#[actix_web::test]
async fn a_code_signing_key_signs_only_for_its_owner_over_the_api_and_openssl_verifies_it() {
    use ca_core::codesign::KeyRequest;
    use ca_core::issuance::{Channel, Outcome};
    use ca_core::keystore::KeySpec;
    use ca_core::policy::Requester;

    let fx = Fixture::new();
    let app = app!(fx);
    let now = SystemTime::now();
    let person = |name: &str, role: &str| Requester {
        name: name.into(),
        roles: vec![role.into()],
    };
    // Approvals count only from officer accounts that held the role before the request.
    for officer in ["olga", "oscar"] {
        crate::quorum::add_user(&fx, officer, &[Role::Officer]);
    }
    let requested = fx
        .state
        .codesign
        .request_key(
            &fx.state.ca,
            &KeyRequest {
                owner: &person("carol", "requester"),
                profile: "code-signing",
                subject: "CN=Carol release signing",
                spec: KeySpec::EcP256,
                source: "test",
                channel: Channel::Api,
            },
            now,
        )
        .unwrap();
    let Outcome::Pending { request_id, .. } = requested.outcome else {
        panic!("{:?}", requested.outcome)
    };
    let label = requested.key.label().to_owned();
    let carol = fx.token("carol", Role::Requester);
    let mallory = fx.token("mallory", Role::Requester);
    let auditor = fx.token("audrey", Role::Auditor);

    let work = fx.tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let data: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(work.join("app.bin"), &data).unwrap();
    let digest = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data));
    let body = serde_json::json!({"key": label, "digest": digest, "digest_algorithm": "sha256"});

    // Before the quorum the key has no certificate: 409, nothing signed.
    let res = test::call_service(&app, sign_req(&carol, &body).to_request()).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    for officer in ["olga", "oscar"] {
        fx.state
            .ca
            .approve(
                request_id,
                &person(officer, "officer"),
                "release",
                "test",
                now,
            )
            .unwrap();
    }

    // Someone else's token, an auditor, an unknown key, a malformed digest or algorithm.
    let res = test::call_service(&app, sign_req(&mallory, &body).to_request()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = test::call_service(&app, sign_req(&auditor, &body).to_request()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let unknown =
        serde_json::json!({"key": "nope", "digest": digest, "digest_algorithm": "sha256"});
    let res = test::call_service(&app, sign_req(&carol, &unknown).to_request()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    for bad in [
        serde_json::json!({"key": label, "digest": "abcd", "digest_algorithm": "sha256"}),
        serde_json::json!({"key": label, "digest": "zz", "digest_algorithm": "sha256"}),
        serde_json::json!({"key": label, "digest": digest, "digest_algorithm": "md5"}),
        serde_json::json!({"key": label, "digest": digest, "digest_algorithm": "sha256", "format": "xml"}),
        serde_json::json!({"key": label, "digest": digest}),
    ] {
        let res = test::call_service(&app, sign_req(&carol, &bad).to_request()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    // The owner gets a detached CMS signature that openssl accepts for the file only.
    let res = test::call_service(&app, sign_req(&carol, &body).to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/pkcs7-signature"
    );
    std::fs::write(work.join("app.p7s"), test::read_body(res).await).unwrap();
    let res = test::call_service(
        &app,
        test::TestRequest::get().uri("/ca/root.pem").to_request(),
    )
    .await;
    std::fs::write(work.join("root.pem"), test::read_body(res).await).unwrap();
    let verify = |content: &str| {
        Command::new("openssl")
            .args([
                "cms", "-verify", "-binary", "-inform", "DER", "-in", "app.p7s",
            ])
            .args([
                "-content", content, "-CAfile", "root.pem", "-purpose", "any",
            ])
            .args(["-out", "/dev/null"])
            .current_dir(&work)
            .output()
            .expect("openssl must be installed (.ci/setup installs it)")
    };
    let out = verify("app.bin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut changed = data.clone();
    changed[1_000_000] ^= 1;
    std::fs::write(work.join("changed.bin"), &changed).unwrap();
    assert!(!verify("changed.bin").status.success());

    let pem = serde_json::json!({"key": label, "digest": digest, "digest_algorithm": "sha256", "format": "pem"});
    let res = test::call_service(&app, sign_req(&carol, &pem).to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(text.starts_with("-----BEGIN CMS-----"), "{text}");

    // Two signatures, each audited with the caller and the digest.
    let head = fx.state.ledger.audit_head().unwrap().unwrap().0;
    let signed: Vec<_> = fx
        .state
        .ledger
        .audit_entries(1, head)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::CodesignSigned.as_str())
        .map(|e| (e.actor, e.details.contains(&digest)))
        .collect();
    assert_eq!(
        signed,
        [("carol".to_owned(), true), ("carol".to_owned(), true)]
    );
}
