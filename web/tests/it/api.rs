//! Handler tests: the real route table ([`ca_web::configure`]) and state, no sockets.

use std::time::SystemTime;

use actix_web::test;
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

// Declared after the macros above, so that these modules can use them.
mod access;
mod certificates;
mod codesign;
mod revocation;

pub(crate) fn submit_req(token: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/api/v1/certificates")
        .insert_header(bearer(token))
        .set_json(body)
}

pub(crate) fn revoke_req(token: &str, serial: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri(&format!("/api/v1/certificates/{serial}/revoke"))
        .insert_header(bearer(token))
        .set_json(body)
}
