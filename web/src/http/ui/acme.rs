//! `/ui/acme`: administrators see ACME accounts, recent orders and EAB keys, create EAB keys
//! (the HMAC key is shown once, in the response to the form that made it) and revoke them.

use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use ca_core::acme::eab_keys::EabRequest;
use ca_core::acme::identifier::Identifier;
use ca_core::acme::store::StatusText;
use ca_core::users::Role;
use serde::Deserialize;

use super::session::SignedIn;
use super::views::{AcmeAccountRow, AcmeOrderRow, AcmePage, EabRow, Hidden, Layout};
use super::{PREFIX, UiError, render_status, see_other};
use crate::http::state::AppState;
use crate::text::humantime;

/// Rows shown per table.
const SHOWN: i64 = 100;

fn identifiers(ids: &[Identifier]) -> String {
    ids.iter()
        .map(|i| match i {
            Identifier::Dns(n) => n.clone(),
            Identifier::Ip(ip) => ip.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn page(
    state: &AppState,
    s: &SignedIn,
    status: StatusCode,
    created: Option<(String, String, Hidden)>,
    notice: Option<String>,
    error: Option<String>,
) -> Result<HttpResponse, UiError> {
    let Some(acme) = state.acme.clone() else {
        return render_status(
            status,
            &AcmePage {
                layout: Layout::new(s, "acme"),
                enabled: false,
                accounts: Vec::new(),
                orders: Vec::new(),
                keys: Vec::new(),
                profiles: Vec::new(),
                created,
                notice,
                error,
            },
        );
    };
    let service = acme.service.clone();
    let (accounts, orders, keys) = web::block(move || {
        Ok::<_, ca_core::store::StoreError>((
            service.accounts(SHOWN)?,
            service.recent_orders(SHOWN)?,
            service.eab_keys()?,
        ))
    })
    .await??;
    render_status(
        status,
        &AcmePage {
            layout: Layout::new(s, "acme"),
            enabled: true,
            accounts: accounts
                .iter()
                .map(|a| AcmeAccountRow {
                    id: a.id.clone(),
                    status: a.status.as_str(),
                    contact: a.contact.join(", "),
                    eab_kid: a.eab_kid.clone().unwrap_or_default(),
                    created_at: humantime(a.created_at),
                })
                .collect(),
            orders: orders
                .iter()
                .map(|o| AcmeOrderRow {
                    id: o.id.clone(),
                    account_id: o.account_id.clone(),
                    status: o.status.as_str(),
                    identifiers: identifiers(&o.identifiers),
                    profile: o.profile.clone(),
                    serial: o.serial.clone().unwrap_or_default(),
                    created_at: humantime(o.created_at),
                })
                .collect(),
            keys: keys
                .iter()
                .map(|k| EabRow {
                    name: k.name.clone(),
                    kid: k.kid.clone(),
                    state: if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    profiles: k.profiles.join(", "),
                    names: if k.names.is_empty() {
                        "(the profile's)".into()
                    } else {
                        k.names.join(", ")
                    },
                    created_at: humantime(k.created_at),
                    created_by: k.created_by.clone(),
                })
                .collect(),
            profiles: acme
                .service
                .profiles()
                .iter()
                .map(|p| p.name.clone())
                .collect(),
            created,
            notice,
            error,
        },
    )
}

/// `GET /ui/acme` query.
#[derive(Debug, Deserialize)]
pub struct AcmeQuery {
    revoked: Option<String>,
}

/// `GET /ui/acme` (admins).
pub async fn acme(
    state: web::Data<AppState>,
    s: SignedIn,
    query: web::Query<AcmeQuery>,
) -> Result<HttpResponse, UiError> {
    s.require(&[Role::Admin])?;
    let notice = query
        .into_inner()
        .revoked
        .filter(|n| ca_core::users::valid_name(n))
        .map(|n| format!("EAB key {n} revoked."));
    page(&state, &s, StatusCode::OK, None, notice, None).await
}

/// The EAB create form.
#[derive(Debug, Deserialize)]
pub struct NewEabForm {
    #[serde(default)]
    csrf: Hidden,
    #[serde(default)]
    name: String,
    #[serde(default)]
    profiles: String,
    #[serde(default)]
    names: String,
}

fn split(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /ui/acme/eab` (admins): creates an EAB key and shows its HMAC key once.
pub async fn create_eab(
    state: web::Data<AppState>,
    s: SignedIn,
    form: web::Form<NewEabForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Admin])?;
    let Some(acme) = state.acme.clone() else {
        let why = "ACME is not enabled ([acme] enabled = true)".to_owned();
        return page(&state, &s, StatusCode::CONFLICT, None, None, Some(why)).await;
    };
    let f = form.into_inner();
    let name = f.name.trim().to_owned();
    let (profiles, names) = (split(&f.profiles), split(&f.names));
    let (actor, source, n) = (s.user.name.clone(), s.source.clone(), name.clone());
    let created = web::block(move || {
        acme.service.create_eab_key(
            &EabRequest {
                name: &n,
                profiles: &profiles,
                names: &names,
                actor: &actor,
                source: &source,
            },
            SystemTime::now(),
        )
    })
    .await?;
    match created {
        Ok(key) => {
            let shown = Some((name, key.kid, Hidden(key.hmac_b64.to_string())));
            page(&state, &s, StatusCode::OK, shown, None, None).await
        }
        Err(why) => page(&state, &s, StatusCode::BAD_REQUEST, None, None, Some(why)).await,
    }
}

/// A form that only carries the anti-CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: Hidden,
}

/// `POST /ui/acme/eab/{name}/revoke` (admins).
pub async fn revoke_eab(
    state: web::Data<AppState>,
    s: SignedIn,
    name: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Admin])?;
    let Some(acme) = state.acme.clone() else {
        return Err(UiError::NotFound("ACME is not enabled".into()));
    };
    let name = name.into_inner();
    let (n, actor, source) = (name.clone(), s.user.name.clone(), s.source.clone());
    web::block(move || acme.service.revoke_eab_key(&n, &actor, &source)).await??;
    Ok(see_other(&format!(
        "{PREFIX}/acme?revoked={}",
        super::views::query_value(&name)
    )))
}
