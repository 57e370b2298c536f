//! The directory, newNonce and renewalInfo (RFC 8555 7.1.1, 7.2; RFC 9773).

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use ca_core::acme::AcmeProblem;
use serde_json::{Map, Value, json};

use super::{Reply, base_url, respond, time};
use crate::http::state::AppState;

/// `GET /acme/directory`.
pub async fn directory(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(acme) = state.acme.clone() else {
        return HttpResponse::NotFound().finish();
    };
    let base = base_url(&req);
    let mut profiles = Map::new();
    for p in acme.service.profiles() {
        profiles.insert(p.name.clone(), Value::String(p.description().to_owned()));
    }
    let body = json!({
        "newNonce": format!("{base}/new-nonce"),
        "newAccount": format!("{base}/new-account"),
        "newOrder": format!("{base}/new-order"),
        "revokeCert": format!("{base}/revoke-cert"),
        "keyChange": format!("{base}/key-change"),
        "renewalInfo": format!("{base}/renewal-info"),
        "meta": {
            "externalAccountRequired": acme.service.require_eab(),
            "profiles": profiles,
        },
    });
    respond(&req, &state, Ok(Reply::json(StatusCode::OK, body)))
}

/// `HEAD` (200) and `GET` (204) `/acme/new-nonce` (RFC 8555 7.2): the nonce is in the
/// header every ACME response carries. HEAD reaches here as GET, marked
/// [`WasHead`](crate::http::WasHead) by `request_context`.
pub async fn new_nonce(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if state.acme.is_none() {
        return HttpResponse::NotFound().finish();
    }
    let status = if req.extensions().get::<crate::http::WasHead>().is_some() {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    respond(&req, &state, Ok(Reply::empty(status)))
}

/// `GET /acme/renewal-info/{id}` (RFC 9773 4.2).
pub async fn renewal_info(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let Some(acme) = state.acme.clone() else {
        return HttpResponse::NotFound().finish();
    };
    let id = id.into_inner();
    let retry_after = acme.service.ari_retry_after().as_secs();
    let asked = id.clone();
    let result = web::block(move || acme.service.renewal_info(&id, std::time::SystemTime::now()))
        .await
        .unwrap_or_else(|_| Err(AcmeProblem::malformed("no such certificate")))
        .map(|w| {
            tracing::debug!(id = %asked, start = %time(w.start), end = %time(w.end), retry_after,
                "acme: renewalInfo answered");
            Reply::json(
                StatusCode::OK,
                json!({"suggestedWindow": {"start": time(w.start), "end": time(w.end)}}),
            )
            // RFC 9773 4.2: clients poll again after this many seconds.
            .retry_after(Some(retry_after))
        });
    respond(&req, &state, result)
}
