//! The read-only screens: dashboard, audit log, CA and policy pages.

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use ca_core::audit::{Action, AuditEvent};
use ca_core::users::Role;

use crate::api::Fixture;

use super::*;

#[actix_web::test]
async fn the_dashboard_counts_and_the_audit_log_shows_sign_ins() {
    let fx = Fixture::new();
    user(&fx, "aude", &[Role::Auditor]);
    user(&fx, "rita", &[Role::Requester]);
    submit(
        &fx,
        "rita",
        &["requester"],
        "tls-server",
        "a.internal",
        "DNS:a.internal",
    );
    submit(
        &fx,
        "bob",
        &["requester"],
        "tls-server",
        "b.internal",
        "DNS:b.internal",
    );
    submit(&fx, "carl", &["requester"], "code-signing", "Nightly", "");
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let html = body(test::call_service(&app, get("/ui/", &aude).to_request()).await).await;
    assert!(html.contains("id=\"count-valid\">2<"), "{html}");
    assert!(html.contains("id=\"count-pending\">1<"), "{html}");
    assert!(html.contains("login.succeeded"), "recent events: {html}");
    assert!(html.contains("Database: <span class=\"status valid\">answers"));
    assert!(html.contains("Key store: <span class=\"status valid\">answers"));
    let (rita, _) = login(&app, "rita").await;
    let html = body(test::call_service(&app, get("/ui/", &rita).to_request()).await).await;
    assert!(html.contains("id=\"count-valid\">1<"), "own only: {html}");
    assert!(
        !html.contains("login.succeeded"),
        "no audit events for requesters"
    );
    let html = body(test::call_service(&app, get("/ui/audit", &aude).to_request()).await).await;
    assert!(html.contains("user.created") && html.contains("login.succeeded"));
}

#[actix_web::test]
async fn the_ca_and_policy_pages_show_the_hierarchy_and_the_profiles() {
    let fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    let app = app!(fx);
    let (rita, _) = login(&app, "rita").await;
    let html = body(test::call_service(&app, get("/ui/ca", &rita).to_request()).await).await;
    for issuer in fx.state.ca.issuers() {
        assert!(
            html.contains(&format!("id=\"issuer-{}\"", issuer.id)),
            "{}",
            issuer.id
        );
        assert!(
            html.contains(&issuer.ca.cert.fingerprint_sha256()),
            "{}",
            issuer.id
        );
        assert!(html.contains(&format!("href=\"/ca/{}.pem\"", issuer.id)));
    }
    assert!(html.contains("Root CA") && html.contains("OCSP responder"));
    let html = body(test::call_service(&app, get("/ui/policies", &rita).to_request()).await).await;
    assert!(html.contains("id=\"profile-tls-server\"") && html.contains("requester, officer"));
    assert!(html.contains("dns_suffixes"), "the file itself");
}

#[actix_web::test]
async fn the_audit_log_filters_by_actor_action_and_object_across_pages() {
    let fx = Fixture::new();
    user(&fx, "aude", &[Role::Auditor]);
    let events: Vec<AuditEvent> = (0..60)
        .map(|i| {
            AuditEvent::new(Action::LoginFailed, "anonymous", "10.0.0.9", "user:mallory")
                .with("try", i.to_string())
        })
        .collect();
    fx.state.ledger.audit(&events).unwrap();
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let count = |html: &str, action: &str| html.matches(&format!("<code>{action}</code>")).count();

    let html = body(
        test::call_service(
            &app,
            get("/ui/audit?action=login.failed", &aude).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(count(&html, "login.failed"), 50);
    assert_eq!(count(&html, "login.succeeded"), 0);
    let start = html
        .find("rel=\"next\"")
        .map(|i| html[..i].rfind("href=\"").unwrap() + 6)
        .unwrap();
    let older = html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let html = body(test::call_service(&app, get(&older, &aude).to_request()).await).await;
    assert_eq!(count(&html, "login.failed"), 10, "{older}");

    let html =
        body(test::call_service(&app, get("/ui/audit?action=login.", &aude).to_request()).await)
            .await;
    assert_eq!(
        count(&html, "login.succeeded"),
        1,
        "a prefix ending in a dot"
    );
    let html =
        body(test::call_service(&app, get("/ui/audit?actor=aude", &aude).to_request()).await).await;
    assert_eq!(count(&html, "login.succeeded"), 1);
    assert_eq!(count(&html, "login.failed"), 0);
    let html =
        body(test::call_service(&app, get("/ui/audit?object=aude", &aude).to_request()).await)
            .await;
    assert!(count(&html, "user.created") == 1 && count(&html, "login.failed") == 0);
    let html =
        body(test::call_service(&app, get("/ui/audit?actor=nobody", &aude).to_request()).await)
            .await;
    assert!(html.contains("No entries."));
}

#[actix_web::test]
async fn an_audit_page_below_the_first_entry_is_empty_not_an_error() {
    let fx = Fixture::new();
    user(&fx, "aude", &[Role::Auditor]);
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let res = test::call_service(
        &app,
        get("/ui/audit?before=-9223372036854775808", &aude).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn the_dashboard_shows_scheduled_backups() {
    // Issue 19: what `[backup] every` did last is on the dashboard, beside /metrics and
    // /readyz.
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("identity.txt");
    let r = crate::cli::run(crate::cli::keyhold(&keys.path().join("data")).args([
        "backup",
        "keygen",
        "--out",
        identity.to_str().unwrap(),
    ]));
    assert!(r.ok, "{}", r.stderr);
    let recipient = r.stdout.trim().to_owned();
    let mut fx = Fixture::with_config(&format!(
        "[backup]\nrecipients = [\"{recipient}\"]\nevery = \"1h\"\n"
    ));
    let dir = fx.tmp.path().join("data");
    let paths = ca_web::wiring::Paths {
        data_dir: dir.clone(),
        passphrase_file: None,
        pin_file: None,
        policies: Some(crate::cli::shipped_policies()),
    };
    let config = ca_web::config::Config::load(&dir).unwrap();
    let plan = ca_web::backups::schedule(&paths, &config).unwrap().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (status, handle) =
        ca_web::backups::spawn_schedule(paths, config, plan, stop.clone(), tracing::Span::none())
            .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status.last_success().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            status.last_failure()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    fx.state.backups = Some(status);
    user(&fx, "aude", &[Role::Auditor]);
    let app = app!(fx);
    let (aude, _) = login(&app, "aude").await;
    let html = body(test::call_service(&app, get("/ui/", &aude).to_request()).await).await;
    assert!(html.contains("id=\"backup-status\""), "{html}");
    assert!(
        html.contains("on schedule") && html.contains("last backup"),
        "{html}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    handle.join().unwrap();
}
