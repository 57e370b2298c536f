//! Issuing, listing and fetching certificates over the API, with and without approval.

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::apitoken::Role;
use serde_json::Value;

use crate::support::bearer;

use super::*;

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
