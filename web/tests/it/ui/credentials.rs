//! Machine credentials made in the UI: API tokens and ACME EAB keys.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{App, test, web};
use ca_core::users::Role;

use crate::api::Fixture;

use super::*;

#[actix_web::test]
async fn administrators_create_and_revoke_api_tokens_in_the_ui() {
    let fx = Fixture::new();
    user(&fx, "adam", &[Role::Admin]);
    let app = app!(fx);
    let (adam, csrf) = login(&app, "adam").await;
    let create = |fields: &[(&str, &str)]| {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        post("/ui/tokens", &adam, form(&all)).to_request()
    };
    let res = test::call_service(
        &app,
        create(&[
            ("name", "deployer"),
            ("role", "requester"),
            ("profiles", "tls-server"),
            ("days", "30"),
        ]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body(res).await;
    let start = html.find("id=\"new-token\">").unwrap() + "id=\"new-token\">".len();
    let token = html[start..].split('<').next().unwrap().to_owned();
    assert!(token.starts_with("kh_"));
    let api = |token: &str| {
        test::TestRequest::get()
            .uri("/api/v1/certificates")
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
            .to_request()
    };
    assert_eq!(
        test::call_service(&app, api(&token)).await.status(),
        StatusCode::OK
    );
    let html = body(test::call_service(&app, get("/ui/tokens", &adam).to_request()).await).await;
    assert!(
        html.contains("id=\"token-deployer\"") && !html.contains(&token),
        "shown once"
    );

    for (fields, status) in [
        (
            vec![("name", "deployer"), ("role", "requester")],
            StatusCode::CONFLICT,
        ),
        (
            vec![("name", "x y"), ("role", "requester")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("name", "z"), ("role", "root")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("name", "z"), ("role", "admin"), ("profiles", "nope")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("name", "z"), ("role", "admin"), ("days", "0")],
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let res = test::call_service(&app, create(&fields)).await;
        assert_eq!(res.status(), status, "{fields:?}");
    }

    let res = test::call_service(
        &app,
        post(
            "/ui/tokens/deployer/revoke",
            &adam,
            form(&[("csrf", &csrf)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        test::call_service(&app, api(&token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let res = test::call_service(
        &app,
        post(
            "/ui/tokens/deployer/revoke",
            &adam,
            form(&[("csrf", &csrf)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "already revoked");
    let actions = audit_actions(&fx);
    assert!(actions.contains(&(
        "token.created".into(),
        "adam".into(),
        "token:deployer".into()
    )));
    assert!(actions.contains(&(
        "token.revoked".into(),
        "adam".into(),
        "token:deployer".into()
    )));
}

#[actix_web::test]
async fn administrators_create_and_revoke_acme_eab_keys_in_the_ui() {
    let fx = Fixture::new();
    user(&fx, "adam", &[Role::Admin]);
    let dir = tempfile::tempdir().unwrap();
    let config = ca_web::config::AcmeConfig {
        enabled: true,
        require_eab: true,
        http01_port: 80,
        tls_alpn01_port: 443,
        dns_resolver: Some("127.0.0.1:53".into()),
        secret_file: None,
        default_profile: None,
        orders_per_hour: 0,
        orders_per_identifier_per_hour: 0,
        order_lifetime: "1h".into(),
        ari_retry_after_seconds: 21_600,
    };
    let mut state = fx.state.clone();
    state.acme = Some(ca_web::http::acme::start(&state, dir.path(), &config).unwrap());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(ca_web::configure),
    )
    .await;
    let (adam, csrf) = login(&app, "adam").await;
    let res = test::call_service(
        &app,
        post(
            "/ui/acme/eab",
            &adam,
            form(&[
                ("csrf", &csrf),
                ("name", "team-a"),
                ("profiles", "tls-server"),
            ]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body(res).await;
    let shown = |id: &str| {
        let start = html.find(&format!("id=\"{id}\">")).unwrap() + id.len() + 6;
        html[start..].split('<').next().unwrap().to_owned()
    };
    let (kid, hmac) = (shown("new-eab-kid"), shown("new-eab-hmac"));
    assert!(kid.len() >= 22 && hmac.len() >= 43, "{kid} {hmac}");
    let html = body(test::call_service(&app, get("/ui/acme", &adam).to_request()).await).await;
    assert!(
        html.contains("id=\"eab-team-a\"") && html.contains(&kid) && !html.contains(&hmac),
        "listed, the HMAC key shown once"
    );
    let res = test::call_service(
        &app,
        post(
            "/ui/acme/eab",
            &adam,
            form(&[("csrf", &csrf), ("name", "team-b"), ("profiles", "sub-ca")]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "a profile closed to ACME"
    );
    let res = test::call_service(
        &app,
        post(
            "/ui/acme/eab/team-a/revoke",
            &adam,
            form(&[("csrf", &csrf)]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(location(&res), "/ui/acme?revoked=team-a");
    let html =
        body(test::call_service(&app, get("/ui/acme?revoked=team-a", &adam).to_request()).await)
            .await;
    assert!(html.contains("EAB key team-a revoked.") && html.contains(">revoked<"));
    let dashboard = body(test::call_service(&app, get("/ui/", &adam).to_request()).await).await;
    assert!(
        dashboard.contains("id=\"count-acme\""),
        "the dashboard counts ACME issuance"
    );
}
