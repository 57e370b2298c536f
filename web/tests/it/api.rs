//! Handler tests: the real route table ([`ca_web::configure`]) and state, no sockets.

use std::process::Command;
use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::{NewApiToken, Role};
use ca_core::apitoken::{generate_token, token_hash};
use ca_core::audit::{Action, AuditEvent};
use ca_web::http::state::AppState;
use clap::Parser;
use serde_json::Value;

use crate::cli::{run, shipped_policies};
use crate::support::bearer;

pub(crate) struct Fixture {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) state: AppState,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        Self::with_config("")
    }

    /// A fixture whose keyhold.toml ends with `extra` (TOML, e.g. a `[revocation]` table).
    pub(crate) fn with_config(extra: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let r = run(crate::cli::keyhold(&dir).args(["init", "--demo"]));
        assert!(r.ok, "{}", r.stderr);
        if !extra.is_empty() {
            let path = dir.join("keyhold.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{text}\n{extra}\n")).unwrap();
        }
        let cli = ca_web::cli::Cli::try_parse_from([
            "keyhold",
            "--data-dir",
            dir.to_str().unwrap(),
            "--policies",
            shipped_policies().to_str().unwrap(),
            "serve",
        ])
        .unwrap();
        let state = ca_web::serve::load_state(&cli.paths, None).unwrap();
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
        crate::support::csr_pem(self.tmp.path(), name, subj, sans)
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

pub(crate) fn submit_req(token: &str, body: &Value) -> test::TestRequest {
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
        .ledger
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
    // One certificate signed by the embedded token; the token looked up for each call.
    assert!(
        metrics.contains(r#"keyhold_signing_duration_seconds_count{keystore="embedded"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"keyhold_database_duration_seconds_count{op="token_lookup"}"#)
            && metrics.contains(r#"keyhold_database_duration_seconds_count{op="certificate_get"}"#),
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
    let mut orders = Vec::new();
    for sort in ["newest", "oldest", "expiry", "expiry-desc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let uri = match &cursor {
                Some(c) => format!("/api/v1/certificates?limit=2&sort={sort}&cursor={c}"),
                None => format!("/api/v1/certificates?limit=2&sort={sort}"),
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
        assert_eq!((seen.len(), unique.len()), (5, 5), "{sort}");
        orders.push(seen);
    }
    let mut newest = orders[0].clone();
    newest.reverse();
    assert_eq!(orders[1], newest, "oldest first is newest first reversed");
    let mut expiry = orders[2].clone();
    expiry.reverse();
    assert_eq!(orders[3], expiry, "expiry-desc is expiry reversed");
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

pub(crate) fn revoke_req(token: &str, serial: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri(&format!("/api/v1/certificates/{serial}/revoke"))
        .insert_header(bearer(token))
        .set_json(body)
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
