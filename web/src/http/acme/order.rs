//! newOrder, orders, finalize, certificates, authorizations and challenges
//! (RFC 8555 7.4, 7.5).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::acme::identifier::Identifier;
use ca_core::acme::jws::KeyRule;
use ca_core::acme::order::{AuthzStatus, OrderStatus, retry_after};
use ca_core::acme::service::{AuthzView, NewOrder, OrderView};
use ca_core::acme::store::{Challenge, StatusText};
use ca_core::acme::{AcmeProblem, ProblemKind};
use ca_core::revocation::parse_rfc3339;
use serde_json::{Value, json};

use super::{Acme, Ctx, Reply, Signed, account_of, post, problem_json, time};
use crate::http::state::AppState;

fn identifier_json(id: &Identifier) -> Value {
    match id {
        Identifier::Dns(n) => json!({"type": "dns", "value": n}),
        Identifier::Ip(ip) => json!({"type": "ip", "value": ip.to_string()}),
    }
}

fn order_json(view: &OrderView, ctx: &Ctx) -> Value {
    let o = &view.order;
    let mut v = json!({
        "status": o.status.as_str(),
        "expires": time(o.expires_at),
        "identifiers": o.identifiers.iter().map(identifier_json).collect::<Vec<_>>(),
        "authorizations": view.authz_ids.iter().map(|a| format!("{}/authz/{a}", ctx.base)).collect::<Vec<_>>(),
        "finalize": format!("{}/order/{}/finalize", ctx.base, o.id),
        "profile": o.profile,
    });
    if let Some(t) = o.not_before {
        v["notBefore"] = json!(time(t));
    }
    if let Some(t) = o.not_after {
        v["notAfter"] = json!(time(t));
    }
    if let Some(r) = &o.replaces {
        v["replaces"] = json!(r);
    }
    if o.status == OrderStatus::Valid {
        v["certificate"] = json!(format!("{}/cert/{}", ctx.base, o.id));
    }
    if let (OrderStatus::Invalid, Some(e)) = (o.status, &o.error) {
        v["error"] = problem_json(&AcmeProblem::new(ProblemKind::BadCsr, e.clone()));
    }
    v
}

fn order_reply(status: StatusCode, view: &OrderView, ctx: &Ctx) -> Reply {
    Reply::json(status, order_json(view, ctx))
        .location(format!("{}/order/{}", ctx.base, view.order.id))
        .retry_after(retry_after(view.order.status).map(|d| d.as_secs()))
}

fn challenge_json(c: &Challenge, ctx: &Ctx) -> Value {
    let mut v = json!({
        "type": c.kind.name(),
        "url": format!("{}/chall/{}", ctx.base, c.id),
        "token": c.token,
        "status": c.status.as_str(),
    });
    if let Some(t) = c.validated_at {
        v["validated"] = json!(time(t));
    }
    if let Some(e) = &c.error {
        v["error"] = problem_json(&AcmeProblem::new(ProblemKind::Unauthorized, e.clone()));
    }
    v
}

fn authz_json(view: &AuthzView, ctx: &Ctx) -> Value {
    let a = &view.authz;
    let mut v = json!({
        "status": a.status.as_str(),
        "expires": time(a.expires_at),
        "identifier": identifier_json(&a.identifier),
        "challenges": view.challenges.iter().map(|c| challenge_json(c, ctx)).collect::<Vec<_>>(),
    });
    if a.wildcard {
        v["wildcard"] = json!(true);
    }
    v
}

fn time_member(payload: &Value, name: &str) -> Result<Option<std::time::SystemTime>, AcmeProblem> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_rfc3339(s)
            .map(Some)
            .map_err(|e| AcmeProblem::malformed(format!("{name}: {e}"))),
        Some(_) => Err(AcmeProblem::malformed(format!("{name} is not a string"))),
    }
}

/// `POST /acme/new-order`.
pub async fn new_order(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Kid, create).await
}

fn create(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let account = account_of(&s)?;
    let p = s
        .payload
        .as_ref()
        .ok_or_else(|| AcmeProblem::malformed("newOrder needs a payload"))?;
    let text = |name: &str| -> Result<Option<String>, AcmeProblem> {
        match p.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(AcmeProblem::malformed(format!("{name} is not a string"))),
        }
    };
    let request = NewOrder {
        identifiers: p.get("identifiers").cloned().unwrap_or(Value::Null),
        profile: text("profile")?,
        not_before: time_member(p, "notBefore")?,
        not_after: time_member(p, "notAfter")?,
        replaces: text("replaces")?,
    };
    let view = acme
        .service
        .new_order(account, &request, &ctx.source, ctx.now)?;
    Ok(order_reply(StatusCode::CREATED, &view, ctx))
}

/// `POST /acme/order/{id}` (POST-as-GET).
pub async fn order(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Kid, show).await
}

fn show(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let view = acme.service.order(account_of(&s)?, &ctx.id, ctx.now)?;
    Ok(order_reply(StatusCode::OK, &view, ctx))
}

/// `POST /acme/order/{id}/finalize`.
pub async fn finalize(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Kid, run_finalize).await
}

fn run_finalize(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let account = account_of(&s)?;
    let csr = s
        .payload
        .as_ref()
        .and_then(|p| p.get("csr"))
        .and_then(Value::as_str)
        .ok_or_else(|| AcmeProblem::malformed("finalize needs a csr"))?;
    let der = ca_core::acme::b64url_decode(csr, "csr")?;
    acme.service
        .finalize(account, &ctx.id, &der, &ctx.source, ctx.now)?;
    let view = acme.service.order(account, &ctx.id, ctx.now)?;
    Ok(order_reply(StatusCode::OK, &view, ctx))
}

/// `POST /acme/cert/{id}` (POST-as-GET): leaf then intermediates, no root.
pub async fn certificate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Kid, download).await
}

fn download(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let pem = acme.service.certificate_chain(account_of(&s)?, &ctx.id)?;
    Ok(Reply::pem(pem))
}

/// `POST /acme/authz/{id}`: POST-as-GET, or deactivation.
pub async fn authz(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Kid, show_authz).await
}

fn show_authz(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let account = account_of(&s)?;
    let deactivate = s
        .payload
        .as_ref()
        .and_then(|p| p.get("status"))
        .and_then(Value::as_str)
        == Some("deactivated");
    let view = if deactivate {
        acme.service
            .deactivate_authz(account, &ctx.id, &ctx.source, ctx.now)?
    } else {
        acme.service.authz(account, &ctx.id, ctx.now)?
    };
    let retry = (view.authz.status == AuthzStatus::Pending
        && view
            .challenges
            .iter()
            .any(|c| c.status.as_str() == "processing"))
    .then_some(1);
    Ok(Reply::json(StatusCode::OK, authz_json(&view, ctx))
        .location(format!("{}/authz/{}", ctx.base, ctx.id))
        .retry_after(retry))
}

/// `POST /acme/chall/{id}`: `{}` answers it; an empty payload reads it.
pub async fn challenge(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Kid, answer).await
}

fn answer(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let account = account_of(&s)?;
    let (challenge, authz_id) = if s.payload.is_some() {
        let (c, start) = acme
            .service
            .answer_challenge(account, &ctx.id, &ctx.source, ctx.now)?;
        if start {
            acme.queue.send(c.id.clone());
        }
        let authz_id = c.authz_id.clone();
        (c, authz_id)
    } else {
        let c = acme.service.challenge(account, &ctx.id, ctx.now)?;
        let authz_id = c.authz_id.clone();
        (c, authz_id)
    };
    let retry = (challenge.status.as_str() == "processing").then_some(1);
    Ok(Reply::json(StatusCode::OK, challenge_json(&challenge, ctx))
        .link(format!("<{}/authz/{authz_id}>;rel=\"up\"", ctx.base))
        .retry_after(retry))
}
