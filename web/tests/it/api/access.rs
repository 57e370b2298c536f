//! Who may call what over the API, what bad requests get, and what is public.

use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::Role;
use ca_core::apitoken::generate_token;
use ca_core::audit::{Action, AuditEvent};
use serde_json::Value;

use crate::support::bearer;

use super::*;

#[actix_web::test]
async fn api_routes_answer_401_without_a_usable_token() {
    let fx = Fixture::new();
    let app = app!(fx);
    let revoked = fx.token("gone", Role::Admin);
    fx.state
        .tokens
        .revoke_token(
            "gone",
            &AuditEvent::new(Action::TokenRevoked, "test", "test", "token:gone"),
        )
        .unwrap();
    let expired = fx.token_with(
        "old",
        Role::Admin,
        &[],
        Some(SystemTime::now() - Duration::from_secs(1)),
    );
    let unknown = generate_token().unwrap();
    for uri in [
        "/api/v1/certificates",
        "/api/v1/certificates/0a",
        "/api/v1/requests/1",
    ] {
        for auth in [
            None,
            Some("Basic abc".to_owned()),
            Some(format!("Bearer {unknown}")),
            Some(format!("Bearer {revoked}")),
            Some(format!("Bearer {expired}")),
        ] {
            let mut req = test::TestRequest::get().uri(uri);
            if let Some(a) = &auth {
                req = req.insert_header(("Authorization", a.as_str()));
            }
            let res = test::call_service(&app, req.to_request()).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{uri} {auth:?}");
            assert!(res.headers().contains_key("www-authenticate"));
            let body: Value = test::read_body_json(res).await;
            assert_eq!(body["type"], "unauthenticated");
            assert!(body["request_id"].as_str().is_some_and(|s| s.len() == 16));
        }
    }
    // Unauthenticated POSTs are refused before the body is read.
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/v1/certificates")
            .set_payload("junk")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn roles_and_profile_limits_are_enforced_with_403() {
    let fx = Fixture::new();
    let app = app!(fx);
    let csr = fx.csr("x", "/CN=x.internal", "DNS:x.internal");
    let auditor = fx.token("auditor", Role::Auditor);
    let admin = fx.token("adm", Role::Admin);
    let limited = fx.token_with("limited", Role::Requester, &["tls-client"], None);
    // An administrator makes tokens; issuing with one too would be doing both duties.
    for token in [&auditor, &admin, &limited] {
        let res = test::call_service(
            &app,
            submit_req(
                token,
                &serde_json::json!({"profile": "tls-server", "csr": csr}),
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let body: Value = test::read_body_json(res).await;
        assert_eq!(body["type"], "forbidden");
    }
    // A requester sees only its own certificates; an auditor sees them all.
    let alice = fx.token("alice", Role::Requester);
    let bob = fx.token("bob", Role::Requester);
    let res = test::call_service(
        &app,
        submit_req(
            &alice,
            &serde_json::json!({"profile": "tls-server", "csr": csr}),
        )
        .to_request(),
    )
    .await;
    let serial = test::read_body_json::<Value, _>(res).await["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    for (token, status) in [
        (&bob, StatusCode::NOT_FOUND),
        (&auditor, StatusCode::OK),
        (&alice, StatusCode::OK),
    ] {
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&format!("/api/v1/certificates/{serial}"))
                .insert_header(bearer(token))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), status);
    }
}

#[actix_web::test]
async fn client_mistakes_get_4xx_problems_and_nothing_is_written() {
    let fx = Fixture::new();
    let app = app!(fx);
    let token = fx.token("t", Role::Requester);
    // The token's first use this minute is audited (token.used); after that, a mistake
    // writes nothing at all.
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/certificates")
            .insert_header(bearer(&token))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let head = fx.state.ledger.audit_head().unwrap();
    for uri in [
        "/api/v1/certificates?expiring_within=18446744073709551615s",
        "/api/v1/certificates?expiring_within=soon",
    ] {
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(uri)
                .insert_header(bearer(&token))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{uri}");
    }
    let post = |body: Vec<u8>, ct: &str| {
        test::TestRequest::post()
            .uri("/api/v1/certificates")
            .insert_header(bearer(&token))
            .insert_header(("content-type", ct.to_owned()))
            .set_payload(body)
            .to_request()
    };
    let cases: Vec<(Vec<u8>, &str, StatusCode, &str)> = vec![
        (
            vec![b' '; 70 * 1024],
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "64",
        ),
        (
            b"{}".to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            b"{\"profile\": \"tls-server\",\n \"csr\": ".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "line 2",
        ),
        (
            br#"{"profile":"tls-server","csr":"x","admin":true}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "unknown field `admin`",
        ),
        (
            br#"{"profile":"tls-server","csr":"not a csr"}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "certificate request",
        ),
        (
            br#"{"profile":"nope","csr":"x"}"#.to_vec(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown profile",
        ),
    ];
    for (body, ct, status, needle) in cases {
        let res = test::call_service(&app, post(body, ct)).await;
        assert_eq!(res.status(), status, "{needle}");
        let problem: Value = test::read_body_json(res).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{problem}"
        );
    }
    assert_eq!(
        fx.state.ledger.audit_head().unwrap(),
        head,
        "nothing was written"
    );

    // A policy refusal lists every violation (and is audited, as refusals are).
    let csr = fx.csr(
        "bad",
        "/CN=www.example.com",
        "DNS:www.example.com,DNS:*.corp",
    );
    let res = test::call_service(
        &app,
        submit_req(
            &token,
            &serde_json::json!({"profile": "tls-server", "csr": csr}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = test::read_body_json(res).await;
    assert_eq!(problem["type"], "rejected");
    assert!(
        problem["violations"].as_array().unwrap().len() >= 2,
        "{problem}"
    );

    for (uri, status) in [
        ("/api/v1/certificates?limit=0", StatusCode::BAD_REQUEST),
        ("/api/v1/certificates?bogus=1", StatusCode::BAD_REQUEST),
        ("/api/v1/certificates?status=weird", StatusCode::BAD_REQUEST),
        ("/api/v1/certificates?cursor=zz", StatusCode::BAD_REQUEST),
        (
            "/api/v1/certificates?sort=sideways",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/certificates?expiring_within=soon",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/certificates/nothex", StatusCode::BAD_REQUEST),
        ("/api/v1/certificates/0a0b", StatusCode::NOT_FOUND),
        (
            "/api/v1/certificates/0a0b?format=xml",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/requests/x", StatusCode::BAD_REQUEST),
        ("/api/v1/requests/999", StatusCode::NOT_FOUND),
        ("/api/v2/anything", StatusCode::NOT_FOUND),
    ] {
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(uri)
                .insert_header(bearer(&token))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), status, "{uri}");
    }
}

#[actix_web::test]
async fn ca_certificates_health_and_readiness_are_public() {
    let fx = Fixture::new();
    let app = app!(fx);
    for (uri, ct) in [
        ("/ca/root.pem", "application/x-pem-file"),
        ("/ca/issuing-ca.pem", "application/x-pem-file"),
        ("/ca/issuing-ca.der", "application/pkix-cert"),
        ("/ca/issuing-ca.crt", "application/pkix-cert"),
        ("/ca/issuing-ca/chain.pem", "application/x-pem-file"),
    ] {
        let res = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        assert_eq!(res.headers().get("content-type").unwrap(), ct, "{uri}");
    }
    let chain = test::call_and_read_body(
        &app,
        test::TestRequest::get()
            .uri("/ca/issuing-ca/chain.pem")
            .to_request(),
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&chain)
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    for uri in [
        "/ca/nope.pem",
        "/ca/root.txt",
        "/ca/root",
        "/ca/nope/chain.pem",
    ] {
        let res = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{uri}");
    }
    let res = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = test::read_body_json(res).await;
    assert_eq!(body["database"], "ok");
    assert_eq!(body["key_store"], "ok");
}

#[actix_web::test]
async fn the_openapi_document_and_the_routes_match_both_ways() {
    let fx = Fixture::new();
    let app = app!(fx);
    let doc: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/openapi.json")
            .to_request(),
    )
    .await;
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut routed: Vec<(String, String)> = ca_web::api_routes()
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed, "documented vs routed");

    // And each documented operation reaches a handler (not the 404/405 fallbacks).
    let token = fx.token("doc", Role::Admin);
    for (method, path) in &documented {
        let uri = path.replace("{serial}", "0a").replace("{id}", "1");
        let req = match method.as_str() {
            "GET" => test::TestRequest::get(),
            "POST" => test::TestRequest::post(),
            "DELETE" => test::TestRequest::delete(),
            m => panic!("undocumented method {m}"),
        };
        let res = test::call_service(
            &app,
            req.uri(&uri).insert_header(bearer(&token)).to_request(),
        )
        .await;
        let status = res.status();
        let body = test::read_body(res).await;
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("\"no such resource\"") && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: {status} {text}"
        );
    }
}

#[actix_web::test]
async fn a_token_s_use_is_audited_once_a_minute_per_address() {
    let fx = Fixture::new();
    let app = app!(fx);
    let reader = fx.token("reader", Role::Auditor);
    let other = fx.token("other", Role::Auditor);
    let get = |token: &str, uri: &str| {
        test::TestRequest::get()
            .uri(uri)
            .insert_header(bearer(token))
            .to_request()
    };
    for uri in [
        "/api/v1/certificates?q=secret-search",
        "/api/v1/requests/1",
        "/api/v1/certificates",
    ] {
        let res = test::call_service(&app, get(&reader, uri)).await;
        assert!(res.status().is_success() || res.status() == StatusCode::NOT_FOUND);
    }
    let res = test::call_service(&app, get(&other, "/api/v1/certificates")).await;
    assert_eq!(res.status(), StatusCode::OK);
    // An unknown token is not a use of any token.
    let res = test::call_service(&app, get("kh_0000", "/api/v1/certificates")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let head = fx.state.ledger.audit_head().unwrap().unwrap().0;
    let used: Vec<_> = fx
        .state
        .ledger
        .audit_entries(1, head)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::TokenUsed.as_str())
        .map(|e| (e.actor, e.details))
        .collect();
    assert_eq!(used.len(), 2, "{used:?}");
    assert_eq!(used[0].0, "reader");
    // The route is recorded, never the query string.
    assert!(used[0].1.contains("GET /api/v1/certificates"), "{used:?}");
    assert!(!used[0].1.contains("secret"), "{used:?}");
    assert_eq!(used[1].0, "other");
}
