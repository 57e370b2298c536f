//! Handler tests: the real route table ([`ca_web::configure`]) and state, no sockets.

use std::process::Command;
use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::{NewApiToken, Role};
use ca_core::audit::{Action, AuditEvent};
use ca_web::auth::{generate_token, token_hash};
use ca_web::state::AppState;
use clap::Parser;
use serde_json::Value;

use crate::cli::{run, shipped_policies};

pub(crate) struct Fixture {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) state: AppState,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let r = run(crate::cli::keyhold(&dir).args(["init", "--demo"]));
        assert!(r.ok, "{}", r.stderr);
        let cli = ca_web::cli::Cli::try_parse_from([
            "keyhold",
            "--data-dir",
            dir.to_str().unwrap(),
            "--policies",
            shipped_policies().to_str().unwrap(),
            "serve",
        ])
        .unwrap();
        let state = ca_web::serve::load_state(&cli, None).unwrap();
        Fixture { tmp, state }
    }

    /// A token with `role`, limited to `profiles`, expiring at `expires_at`.
    pub(crate) fn token_with(
        &self,
        name: &str,
        role: Role,
        profiles: &[&str],
        expires_at: Option<SystemTime>,
    ) -> String {
        let token = generate_token().unwrap();
        self.state
            .tokens
            .create_token(
                &NewApiToken {
                    name: name.into(),
                    hash: token_hash(&token),
                    role,
                    profiles: profiles.iter().map(|p| p.to_string()).collect(),
                    expires_at,
                    created_by: "test".into(),
                },
                &AuditEvent::new(
                    Action::TokenCreated,
                    "test",
                    "test",
                    format!("token:{name}"),
                ),
            )
            .unwrap();
        token
    }

    pub(crate) fn token(&self, name: &str, role: Role) -> String {
        self.token_with(name, role, &[], None)
    }

    pub(crate) fn csr(&self, name: &str, subj: &str, sans: &str) -> String {
        let path = self.tmp.path().join(format!("{name}.csr"));
        let mut cmd = Command::new("openssl");
        cmd.args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-keyout"])
        .arg(self.tmp.path().join(format!("{name}.key")))
        .args(["-subj", subj, "-out"])
        .arg(&path);
        if !sans.is_empty() {
            cmd.arg("-addext").arg(format!("subjectAltName={sans}"));
        }
        let out = cmd
            .output()
            .expect("openssl must be installed (.ci/setup installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(path).unwrap()
    }
}

macro_rules! app {
    ($fx:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($fx.state.clone()))
                .configure(ca_web::configure),
        )
        .await
    };
}

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

fn submit_req(token: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/api/v1/certificates")
        .insert_header(bearer(token))
        .set_json(body)
}

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
async fn a_tls_server_certificate_is_issued_listed_and_fetched_over_the_api() {
    let fx = Fixture::new();
    let app = app!(fx);
    let token = fx.token_with("deployer", Role::Requester, &["tls-server"], None);
    let csr = fx.csr("web", "/CN=web.internal", "DNS:web.internal");
    let res = test::call_service(
        &app,
        submit_req(
            &token,
            &serde_json::json!({"profile": "tls-server", "csr": csr}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = test::read_body_json(res).await;
    let serial = body["serial"].as_str().unwrap().to_owned();
    assert!(
        body["certificate"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(
        body["chain"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(body["not_after"].as_str().unwrap().ends_with('Z'));

    // The requester is the token's name, recorded in the database.
    let row = fx
        .state
        .ca
        .store()
        .certificate(&ca_core::store::Serial::parse(&serial).unwrap());
    assert_eq!(row.unwrap().unwrap().requester, "deployer");

    let get = |uri: String| {
        test::TestRequest::get()
            .uri(&uri)
            .insert_header(bearer(&token))
            .to_request()
    };
    let res = test::call_service(
        &app,
        get("/api/v1/certificates?profile=tls-server&status=valid&q=web&limit=10".into()),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let list: Value = test::read_body_json(res).await;
    assert_eq!(list["items"][0]["serial"], serial.as_str());
    assert_eq!(list["items"][0]["requester"], "deployer");

    let res = test::call_service(&app, get(format!("/api/v1/certificates/{serial}"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let one: Value = test::read_body_json(res).await;
    assert_eq!(one["status"], "valid");
    assert!(
        one["certificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    let res = test::call_service(
        &app,
        get(format!("/api/v1/certificates/{serial}?format=der")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/pkix-cert"
    );
    let der = test::read_body(res).await;
    assert_eq!(der[0], 0x30);

    let metrics =
        test::call_and_read_body(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        metrics.contains(
            r#"keyhold_issuance_duration_seconds_count{profile="tls-server",outcome="issued"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"keyhold_http_responses_total{code="201"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("web.internal") && !metrics.contains("deployer"),
        "{metrics}"
    );

    let res = test::call_service(
        &app,
        get(format!("/api/v1/certificates/{serial}?format=pem")),
    )
    .await;
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/x-pem-file"
    );
}

#[actix_web::test]
async fn keyset_pagination_walks_every_certificate_once() {
    let fx = Fixture::new();
    let app = app!(fx);
    let token = fx.token("pager", Role::Requester);
    let csr = fx.csr("p", "/CN=page.internal", "DNS:page.internal");
    for _ in 0..5 {
        let res = test::call_service(
            &app,
            submit_req(
                &token,
                &serde_json::json!({"profile": "tls-server", "csr": csr}),
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/api/v1/certificates?limit=2&cursor={c}"),
            None => "/api/v1/certificates?limit=2".into(),
        };
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&uri)
                .insert_header(bearer(&token))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let page: Value = test::read_body_json(res).await;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["serial"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (5, 5));
}

#[actix_web::test]
async fn roles_and_profile_limits_are_enforced_with_403() {
    let fx = Fixture::new();
    let app = app!(fx);
    let csr = fx.csr("x", "/CN=x.internal", "DNS:x.internal");
    let auditor = fx.token("auditor", Role::Auditor);
    let limited = fx.token_with("limited", Role::Requester, &["tls-client"], None);
    for token in [&auditor, &limited] {
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
    let head = fx.state.ca.store().audit_head().unwrap();
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
        fx.state.ca.store().audit_head().unwrap(),
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
async fn a_profile_needing_approval_answers_202_and_the_request_can_be_followed() {
    let fx = Fixture::new();
    let app = app!(fx);
    let token = fx.token("signer", Role::Requester);
    let csr = fx.csr("sign", "/CN=release signing", "");
    let res = test::call_service(
        &app,
        submit_req(
            &token,
            &serde_json::json!({"profile": "code-signing", "csr": csr}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = test::read_body_json(res).await;
    assert_eq!(body["status"], "pending_approval");
    assert_eq!(body["approvals_needed"], 2);
    let id = body["request_id"].as_i64().unwrap();

    let get = |token: &str| {
        test::TestRequest::get()
            .uri(&format!("/api/v1/requests/{id}"))
            .insert_header(bearer(token))
            .to_request()
    };
    let res = test::call_service(&app, get(&token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let req: Value = test::read_body_json(res).await;
    assert_eq!(req["status"], "pending");
    assert_eq!(req["requester"], "signer");
    assert!(req.get("certificate").is_none());
    // Another requester cannot see it.
    let other = fx.token("other", Role::Requester);
    let res = test::call_service(&app, get(&other)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
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
