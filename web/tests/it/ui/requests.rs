//! Certificate requests in the UI: submitting, listing, approving and rejecting.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{App, test, web};
use ca_core::issuance::Outcome;
use ca_core::users::Role;

use crate::api::Fixture;

use super::*;

#[actix_web::test]
async fn requesters_see_only_their_own_certificates() {
    let fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    user(&fx, "aude", &[Role::Auditor]);
    let mine = serial(&submit(
        &fx,
        "rita",
        &["requester"],
        "tls-server",
        "rita.internal",
        "DNS:rita.internal",
    ));
    let theirs = serial(&submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "bob.internal",
        "DNS:bob.internal",
    ));
    let app = app!(fx);
    let (rita, _) = login(&app, "rita").await;
    let html = body(test::call_service(&app, get("/ui/certs", &rita).to_request()).await).await;
    assert!(html.contains(&mine) && !html.contains(&theirs), "{html}");
    let res = test::call_service(
        &app,
        get(&format!("/ui/certs/{theirs}"), &rita).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(
        &app,
        get(&format!("/ui/certs/{theirs}/download/pem"), &rita).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = test::call_service(&app, get(&format!("/ui/certs/{mine}"), &rita).to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body(res).await;
    assert!(html.contains("DNS:rita.internal") && html.contains("SHA-256 fingerprint"));
    let pem = test::call_service(
        &app,
        get(&format!("/ui/certs/{mine}/download/pem"), &rita).to_request(),
    )
    .await;
    assert_eq!(pem.status(), StatusCode::OK);
    assert!(body(pem).await.starts_with("-----BEGIN CERTIFICATE-----"));

    // A requester naming someone else still sees only their own.
    let html =
        body(test::call_service(&app, get("/ui/certs?requester=bob", &rita).to_request()).await)
            .await;
    assert!(html.contains(&mine) && !html.contains(&theirs), "{html}");

    let (aude, _) = login(&app, "aude").await;
    let html = body(test::call_service(&app, get("/ui/certs", &aude).to_request()).await).await;
    assert!(html.contains(&mine) && html.contains(&theirs));
    // Search by SAN, and by serial with colons.
    let html =
        body(test::call_service(&app, get("/ui/certs?q=bob.intern", &aude).to_request()).await)
            .await;
    assert!(html.contains(&theirs) && !html.contains(&mine));
    let colons: Vec<String> = theirs
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
        .collect();
    let uri = format!("/ui/certs?q={}", colons.join("%3A"));
    let html = body(test::call_service(&app, get(&uri, &aude).to_request()).await).await;
    assert!(html.contains(&theirs) && !html.contains(&mine), "{uri}");
    let res = test::call_service(&app, get("/ui/certs?status=bogus", &aude).to_request()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Every order lists both; an unknown one is refused.
    for sort in ["newest", "oldest", "expiry", "expiry-desc"] {
        let uri = format!("/ui/certs?sort={sort}");
        let html = body(test::call_service(&app, get(&uri, &aude).to_request()).await).await;
        assert!(html.contains(&theirs) && html.contains(&mine), "{uri}");
    }
    let res = test::call_service(&app, get("/ui/certs?sort=sideways", &aude).to_request()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // By requester.
    let html =
        body(test::call_service(&app, get("/ui/certs?requester=bob", &aude).to_request()).await)
            .await;
    assert!(html.contains(&theirs) && !html.contains(&mine), "{html}");
}

#[actix_web::test]
async fn officers_approve_others_requests_never_their_own() {
    let fx = Fixture::new();
    user(&fx, "otto", &[Role::Officer, Role::Requester]);
    user(&fx, "olga", &[Role::Officer]);
    user(&fx, "oscar", &[Role::Officer]);
    let Outcome::Pending { request_id, .. } = submit(
        &fx,
        "otto",
        &["officer", "requester"],
        "code-signing",
        "Release signing",
        "",
    ) else {
        panic!("code-signing needs approval");
    };
    let app = app!(fx);
    let (otto, otto_csrf) = login(&app, "otto").await;
    let html = body(test::call_service(&app, get("/ui/requests", &otto).to_request()).await).await;
    assert!(html.contains(&format!("request-{request_id}")));
    assert!(html.contains("another officer decides"));
    assert!(!html.contains(&format!("/ui/requests/{request_id}/approve")));
    // Posting anyway: ca-core refuses.
    let res = test::call_service(
        &app,
        post(
            &format!("/ui/requests/{request_id}/approve"),
            &otto,
            form(&[("csrf", &otto_csrf), ("comment", "mine")]),
        )
        .to_request(),
    )
    .await;
    assert!(res.status().is_client_error(), "{}", res.status());

    for officer in ["olga", "oscar"] {
        let (cookie, csrf) = login(&app, officer).await;
        let html =
            body(test::call_service(&app, get("/ui/requests", &cookie).to_request()).await).await;
        assert!(
            html.contains(&format!("/ui/requests/{request_id}/approve")),
            "{officer}"
        );
        let res = test::call_service(
            &app,
            post(
                &format!("/ui/requests/{request_id}/approve"),
                &cookie,
                form(&[("csrf", &csrf), ("comment", "looks right")]),
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{officer}");
        let done = if officer == "olga" {
            "approved"
        } else {
            "issued"
        };
        assert_eq!(
            location(&res),
            format!("/ui/requests?done={done}&id={request_id}")
        );
        let res = test::call_service(&app, get(&location(&res), &cookie).to_request()).await;
        assert!(
            body(res)
                .await
                .contains(&format!("Request {request_id} approved"))
        );
    }
    let row = fx.state.ledger.request(request_id).unwrap().unwrap();
    assert!(row.serial.is_some(), "issued after two approvals");
}

#[actix_web::test]
async fn officers_reject_with_a_reason() {
    let fx = Fixture::new();
    user(&fx, "olga", &[Role::Officer]);
    let Outcome::Pending { request_id, .. } =
        submit(&fx, "carl", &["requester"], "code-signing", "Nightly", "")
    else {
        panic!("code-signing needs approval");
    };
    let app = app!(fx);
    let (cookie, csrf) = login(&app, "olga").await;
    let uri = format!("/ui/requests/{request_id}/reject");
    let res = test::call_service(
        &app,
        post(&uri, &cookie, form(&[("csrf", &csrf), ("reason", " ")])).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = test::call_service(
        &app,
        post(
            &uri,
            &cookie,
            form(&[("csrf", &csrf), ("reason", "not ours")]),
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = test::call_service(
        &app,
        post(&uri, &cookie, form(&[("csrf", &csrf), ("reason", "again")])).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "already decided");
}

#[actix_web::test]
async fn requesters_submit_csrs_under_the_profiles_open_to_them() {
    let fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    user(&fx, "aude", &[Role::Auditor]);
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let res = test::call_service(&app, get("/ui/requests/new", &aude).to_request()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let (rita, csrf) = login(&app, "rita").await;
    let html =
        body(test::call_service(&app, get("/ui/requests/new", &rita).to_request()).await).await;
    assert!(html.contains("value=\"tls-server\"") && html.contains("value=\"code-signing\""));
    assert!(!html.contains("value=\"sub-ca\""), "officers only");

    // Issued at once: to the certificate.
    let csr = fx.csr("svc", "/CN=svc.internal", "DNS:svc.internal");
    let submit = |profile: &str, csr: &str, token: &str| {
        post(
            "/ui/requests/new",
            &rita,
            form(&[("csrf", token), ("profile", profile), ("csr", csr)]),
        )
        .to_request()
    };
    let res = test::call_service(&app, submit("tls-server", &csr, &csrf)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&res).starts_with("/ui/certs/"),
        "{}",
        location(&res)
    );
    let res = test::call_service(&app, get(&location(&res), &rita).to_request()).await;
    assert!(body(res).await.contains("DNS:svc.internal"));

    // Needs approval: to the queue, where rita sees her own request.
    let csr = fx.csr("sign", "/CN=Rita signing", "");
    let res = test::call_service(&app, submit("code-signing", &csr, &csrf)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/ui/requests?done=submitted&id="));
    let html = body(test::call_service(&app, get(&location(&res), &rita).to_request()).await).await;
    assert!(html.contains("waits for an officer") && html.contains("CN=Rita signing"));

    // Refused by policy, with the reasons; a bad CSR; a profile not open to her; no token.
    let outside = fx.csr("out", "/CN=www.example.com", "DNS:www.example.com");
    let res = test::call_service(&app, submit("tls-server", &outside, &csrf)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body(res).await.contains("www.example.com"));
    let res = test::call_service(&app, submit("tls-server", "not a csr", &csrf)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = test::call_service(&app, submit("sub-ca", &csr, &csrf)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = test::call_service(&app, submit("tls-server", &csr, "")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn the_certificate_list_exports_its_filter_as_csv() {
    let fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    user(&fx, "aude", &[Role::Auditor]);
    let mine = serial(&submit(
        &fx,
        "rita",
        &["requester"],
        "tls-server",
        "c1.internal",
        "DNS:c1.internal",
    ));
    let theirs = serial(&submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "c2.internal",
        "DNS:c2.internal",
    ));
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let html =
        body(test::call_service(&app, get("/ui/certs?q=c2.internal", &aude).to_request()).await)
            .await;
    assert!(
        html.contains("href=\"/ui/certs.csv?q=c2.internal&amp;profile=&amp;status=\"")
            || html.contains("/ui/certs.csv?q=c2.internal&#38;"),
        "{html}"
    );
    let res = test::call_service(&app, get("/ui/certs.csv", &aude).to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = body(res).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "serial,status,subject,sans,profile,requester,not_before,not_after,issued_at"
    );
    assert_eq!(lines.len(), 3);
    assert!(csv.contains(&mine) && csv.contains(&theirs));
    assert!(csv.contains("\"CN=c2.internal,O=Keyhold\""));
    let csv = body(
        test::call_service(&app, get("/ui/certs.csv?q=c2.internal", &aude).to_request()).await,
    )
    .await;
    assert_eq!(csv.lines().count(), 2);
    let (rita, _) = login(&app, "rita").await;
    let csv = body(test::call_service(&app, get("/ui/certs.csv", &rita).to_request()).await).await;
    assert!(
        csv.contains(&mine) && !csv.contains(&theirs),
        "requesters export their own only"
    );
}
