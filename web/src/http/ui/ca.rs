//! `/ui/ca` and `/ui/policies`: the hierarchy and the loaded profiles, read-only, for every
//! signed-in user (the certificates are public anyway; the profiles say what may be asked).

use std::time::SystemTime;

use actix_web::{HttpResponse, web};
use ca_core::inspect;
use ca_core::x509::SignedCert;

use super::session::SignedIn;
use super::views::{CaCertView, CaPage, IssuerView, Layout, PoliciesPage, ProfileView};
use super::{UiError, render};
use crate::http::state::AppState;
use crate::text::humantime;

fn cert_view(kind: &'static str, cert: &SignedCert, now: SystemTime) -> CaCertView {
    let d = inspect::details(cert);
    let left = ca_core::status::expires_in(d.not_after, now);
    CaCertView {
        kind,
        fields: vec![
            ("Subject".into(), d.subject),
            ("Issuer".into(), d.issuer),
            ("Serial".into(), d.serial),
            ("Not before (UTC)".into(), humantime(d.not_before)),
            (
                "Not after (UTC)".into(),
                format!("{} ({left})", humantime(d.not_after)),
            ),
            ("Public key".into(), d.key),
            ("SHA-256 fingerprint".into(), d.sha256),
        ],
    }
}

/// `GET /ui/ca`: each issuer's certificate and OCSP responder certificate, roots first.
pub async fn ca(state: web::Data<AppState>, s: SignedIn) -> Result<HttpResponse, UiError> {
    let now = SystemTime::now();
    let crl_lines = super::dashboard::crl_lines(&state);
    let held = state.publisher.answers_held();
    let mut issuers: Vec<IssuerView> = state
        .ca
        .issuers()
        .iter()
        .map(|i| {
            let kind = if i.parent.is_none() {
                "Root CA"
            } else {
                "Issuing CA"
            };
            let mut certs = vec![cert_view(kind, &i.ca.cert, now)];
            if let Some(o) = &i.ocsp {
                certs.push(cert_view("OCSP responder", &o.cert, now));
            }
            let id = i.id.as_str();
            let crl = crl_lines
                .iter()
                .find(|(issuer, _)| issuer == id)
                .map(|(_, line)| line.clone())
                .unwrap_or_default();
            let ocsp = match &i.ocsp {
                Some(_) => format!(
                    "answered by the responder above at /ocsp; {} answers (all issuers) signed \
                     ahead of time and held in memory",
                    held
                ),
                None => "no responder: this issuer's certificates are checked by CRL".into(),
            };
            IssuerView {
                id: id.to_owned(),
                parent: i.parent.as_ref().map(|p| p.as_str().to_owned()),
                certs,
                revocation: vec![("CRL".into(), crl), ("OCSP".into(), ocsp)],
            }
        })
        .collect();
    issuers.sort_by_key(|i| i.parent.is_some());
    let members = state
        .probes
        .keys
        .members()
        .into_iter()
        .map(|m| super::views::MemberView {
            name: m.name,
            state: m.state.as_str(),
            last_error: m.last_error.unwrap_or_else(|| "-".into()),
            latency: m.last_latency.map_or_else(
                || "-".into(),
                |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
            ),
            load: format!("{} / {}", m.in_flight, m.max_in_flight),
        })
        .collect();
    render(&CaPage {
        layout: Layout::new(&s, "ca"),
        issuers,
        members,
    })
}

/// `GET /ui/policies`: every loaded profile, with its file.
pub async fn policies(state: web::Data<AppState>, s: SignedIn) -> Result<HttpResponse, UiError> {
    let profiles: Vec<(String, String, String, String, std::path::PathBuf)> = state
        .ca
        .profiles()
        .iter()
        .map(|p| {
            let who = if p.cli_only() {
                "only the ceremony CLI (keyhold issue)".to_owned()
            } else {
                p.requester_roles().join(", ")
            };
            (
                p.name.clone(),
                p.description().to_owned(),
                p.issuer().as_str().to_owned(),
                who,
                p.path.clone(),
            )
        })
        .collect();
    let views = web::block(move || {
        profiles
            .into_iter()
            .map(|(name, description, issuer, who, path)| ProfileView {
                text: std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| format!("({} cannot be read: {e})", path.display())),
                name,
                description,
                issuer,
                who,
            })
            .collect::<Vec<_>>()
    })
    .await?;
    render(&PoliciesPage {
        layout: Layout::new(&s, "policies"),
        profiles: views,
    })
}
