//! revokeCert (RFC 8555 7.6): signed by an account (`kid`: the one that ordered the
//! certificate, or one holding valid authorizations for every name in it) or by the
//! certificate's own key (`jwk`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::acme::issue::RevokeSigner;
use ca_core::acme::jws::KeyRule;
use ca_core::acme::{AcmeProblem, ProblemKind};
use serde_json::Value;

use super::{Acme, Ctx, Reply, Signed, post};
use crate::http::state::AppState;

/// `POST /acme/revoke-cert`.
pub async fn revoke_cert(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    post(req, payload, state, KeyRule::Either, revoke).await
}

fn revoke(acme: &Acme, s: Signed, ctx: &Ctx) -> Result<Reply, AcmeProblem> {
    let p = s
        .payload
        .as_ref()
        .ok_or_else(|| AcmeProblem::malformed("revokeCert needs a payload"))?;
    let cert = p
        .get("certificate")
        .and_then(Value::as_str)
        .ok_or_else(|| AcmeProblem::malformed("revokeCert needs a certificate"))?;
    let der = ca_core::acme::b64url_decode(cert, "certificate")?;
    let reason = match p.get("reason") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|r| u8::try_from(r).ok())
                .ok_or_else(|| {
                    AcmeProblem::new(
                        ProblemKind::BadRevocationReason,
                        "reason is not a reason code",
                    )
                })?,
        ),
    };
    let signer = match (&s.account, &s.jwk) {
        (Some(account), _) => RevokeSigner::Account(account),
        (None, Some(jwk)) => RevokeSigner::CertificateKey(jwk),
        (None, None) => return Err(AcmeProblem::malformed("revokeCert takes a kid or a jwk")),
    };
    acme.service
        .revoke(signer, &der, reason, &ctx.source, ctx.now)?;
    Ok(Reply::empty(StatusCode::OK))
}
