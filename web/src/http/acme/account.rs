//! newAccount, account update and deactivation, the account's orders, keyChange
//! (RFC 8555 7.3).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::acme::jws::KeyRule;
use ca_core::acme::keychange::check_key_change;
use ca_core::acme::store::{Account, StatusText};
use ca_core::acme::{AcmeProblem, ProblemKind};
use serde_json::{Value, json};

use super::{Acme, Ctx, Reply, Signed, account_of, post};
use crate::http::state::AppState;

fn account_json(a: &Account, ctx: &Ctx) -> Value {
    json!({
        "status": a.status.as_str(),
        "contact": a.contact,
        "orders": format!("{}/account/{}/orders", ctx.base, a.id),
    })
}

fn account_url(a: &Account, ctx: &Ctx) -> String {
    format!("{}/account/{}", ctx.base, a.id)
}

/// `POST /acme/new-account`.
pub async fn new_account(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Jwk, create).await
}

fn create(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let jwk = s
        .jwk
        .as_ref()
        .ok_or_else(|| AcmeProblem::malformed("newAccount takes a jwk"))?;
    let payload = s
        .payload
        .ok_or_else(|| AcmeProblem::malformed("newAccount needs a payload"))?;
    let (account, created) =
        acme.service
            .new_account(jwk, &payload, &s.url, &ctx.source, ctx.now)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(Reply::json(status, account_json(&account, ctx)).location(account_url(&account, ctx)))
}

/// `POST /acme/account/{id}`: POST-as-GET, update or deactivation.
pub async fn account(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Kid, update).await
}

fn update(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let account = account_of(&s)?;
    if account.id != ctx.id {
        return Err(AcmeProblem::new(
            ProblemKind::Unauthorized,
            "the request is signed by another account",
        ));
    }
    let account = match &s.payload {
        None => account.clone(),
        Some(p) => acme.service.update_account(account, p, &ctx.source)?,
    };
    Ok(Reply::json(StatusCode::OK, account_json(&account, ctx))
        .location(account_url(&account, ctx)))
}

/// `POST /acme/account/{id}/orders` (RFC 8555 7.1.2.1), newest first.
pub async fn orders(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Kid, list_orders).await
}

fn list_orders(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let account = account_of(&s)?;
    if account.id != ctx.id {
        return Err(AcmeProblem::new(
            ProblemKind::Unauthorized,
            "the request is signed by another account",
        ));
    }
    let urls: Vec<String> = acme
        .service
        .orders_of(account, 1000)?
        .into_iter()
        .map(|o| format!("{}/order/{}", ctx.base, o.id))
        .collect();
    Ok(Reply::json(StatusCode::OK, json!({ "orders": urls })))
}

/// `POST /acme/key-change` (RFC 8555 7.3.5).
pub async fn key_change(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Kid, change).await
}

fn change(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let account = account_of(&s)?;
    let payload = s
        .payload
        .as_ref()
        .ok_or_else(|| AcmeProblem::malformed("keyChange needs a payload"))?;
    let current = acme.service.account_key(account)?;
    let new_key = check_key_change(&s.jws, payload, &account_url(account, ctx), &current)?;
    acme.service.change_key(account, &new_key, &ctx.source)?;
    Ok(Reply::json(StatusCode::OK, account_json(account, ctx)).location(account_url(account, ctx)))
}
