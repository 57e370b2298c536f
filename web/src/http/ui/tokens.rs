//! `/ui/tokens`: administrators list, create and revoke API tokens. A new token is shown
//! once, in the response to the form that made it; only its SHA-256 is stored.

use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use ca_core::apitoken::{self, ApiToken, TokenRequest};
use ca_core::error::ErrorKind;
use ca_core::users::{self, Role};
use serde::Deserialize;

use super::session::SignedIn;
use super::views::{Hidden, Layout, TokenRow, TokensPage};
use super::{PREFIX, UiError, render_status, see_other};
use crate::http::state::AppState;
use crate::text::humantime;

fn row(t: &ApiToken, now: SystemTime) -> TokenRow {
    TokenRow {
        name: t.name.clone(),
        role: t.role.as_str(),
        state: t.state(now),
        profiles: if t.profiles.is_empty() {
            "(all)".into()
        } else {
            t.profiles.join(", ")
        },
        created_at: humantime(t.created_at),
        expires_at: t.expires_at.map_or_else(|| "never".into(), humantime),
        created_by: t.created_by.clone(),
    }
}

fn known_profiles(state: &AppState) -> Vec<String> {
    let mut p: Vec<String> = state.ca.profiles().iter().map(|p| p.name.clone()).collect();
    p.sort();
    p
}

async fn page(
    state: &AppState,
    s: &SignedIn,
    status: StatusCode,
    created: Option<(String, Hidden)>,
    notice: Option<String>,
    error: Option<String>,
) -> Result<HttpResponse, UiError> {
    let store = state.tokens.clone();
    let all = web::block(move || store.tokens()).await??;
    let now = SystemTime::now();
    render_status(
        status,
        &TokensPage {
            layout: Layout::new(s, "tokens"),
            rows: all.iter().map(|t| row(t, now)).collect(),
            profiles: known_profiles(state),
            created,
            notice,
            error,
        },
    )
}

/// `GET /ui/tokens` query.
#[derive(Debug, Deserialize)]
pub struct TokensQuery {
    revoked: Option<String>,
}

/// `GET /ui/tokens` (admins).
pub async fn tokens(
    state: web::Data<AppState>,
    s: SignedIn,
    query: web::Query<TokensQuery>,
) -> Result<HttpResponse, UiError> {
    s.require(&[Role::Admin])?;
    let notice = query
        .into_inner()
        .revoked
        .filter(|n| users::valid_name(n))
        .map(|n| format!("Token {n} revoked."));
    page(&state, &s, StatusCode::OK, None, notice, None).await
}

/// The create form.
#[derive(Debug, Deserialize)]
pub struct NewTokenForm {
    #[serde(default)]
    csrf: Hidden,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    profiles: String,
    #[serde(default)]
    days: String,
}

/// `POST /ui/tokens` (admins): creates the token and shows it once.
pub async fn create(
    state: web::Data<AppState>,
    s: SignedIn,
    form: web::Form<NewTokenForm>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Admin])?;
    let f = form.into_inner();
    let name = f.name.trim().to_owned();
    let lifetime = match f.days.trim() {
        "" => None,
        d => match d.parse::<u64>() {
            Ok(days) if (1..=3650).contains(&days) => Some(Duration::from_secs(days * 86_400)),
            _ => {
                let why = format!("{d:?} is not a number of days from 1 to 3650");
                return page(&state, &s, StatusCode::BAD_REQUEST, None, None, Some(why)).await;
            }
        },
    };
    let profiles: Vec<String> = f.profiles.split(',').map(str::to_owned).collect();
    let known = known_profiles(&state);
    let store = state.tokens.clone();
    let (actor, source) = (s.user.name.clone(), s.source.clone());
    let n = name.clone();
    let created = web::block(move || {
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        apitoken::create_token(
            store.as_ref(),
            &TokenRequest {
                name: &n,
                role: &f.role,
                profiles: &profiles,
                lifetime,
                actor: &actor,
                source: &source,
            },
            &known,
            SystemTime::now(),
        )
    })
    .await?;
    match created {
        Ok(token) => {
            let created = Some((name.clone(), Hidden(token)));
            page(&state, &s, StatusCode::OK, created, None, None).await
        }
        Err(e) if e.kind() == ErrorKind::Invalid => {
            page(
                &state,
                &s,
                StatusCode::BAD_REQUEST,
                None,
                None,
                Some(e.to_string()),
            )
            .await
        }
        Err(e) if e.kind() == ErrorKind::Conflict => {
            page(
                &state,
                &s,
                StatusCode::CONFLICT,
                None,
                None,
                Some(e.to_string()),
            )
            .await
        }
        Err(e) => Err(UiError::server(e.kind(), &e)),
    }
}

/// A form that only carries the anti-CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: Hidden,
}

/// `POST /ui/tokens/{name}/revoke` (admins).
pub async fn revoke(
    state: web::Data<AppState>,
    s: SignedIn,
    name: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, UiError> {
    s.check_csrf(&form.csrf.0)?;
    s.require(&[Role::Admin])?;
    let name = name.into_inner();
    let store = state.tokens.clone();
    let (n, actor, source) = (name.clone(), s.user.name.clone(), s.source.clone());
    web::block(move || apitoken::revoke_token(store.as_ref(), &n, &actor, &source)).await??;
    Ok(see_other(&format!(
        "{PREFIX}/tokens?revoked={}",
        super::views::query_value(&name)
    )))
}
