//! `/api/v1/sign` and `/api/v1/codesign/keys/{label}/bindings`: signatures with keys held in
//! the key store, and which tokens may make them.

use std::time::SystemTime;

use actix_web::{HttpResponse, web};
use ca_core::apitoken::Role;
use ca_core::cms::{Digest, DigestAlg};
use ca_core::codesign::{Principal, SignRequest};
use ca_core::error::ErrorKind;
use serde::Deserialize;
use serde_json::json;

use crate::http::auth::{Auth, Presented};
use crate::http::error::ApiError;
use crate::http::public::PEM;
use crate::http::state::AppState;

/// `POST /sign` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    /// The code-signing key's label.
    pub key: String,
    /// The artifact's digest, hex.
    pub digest: String,
    /// `sha256` or `sha384`: the key's own hash (P-256 signs SHA-256 digests, P-384 SHA-384).
    pub digest_algorithm: String,
    /// `der` (the default) or `pem`.
    #[serde(default)]
    pub format: Option<String>,
}

/// Content type of a detached CMS signature (RFC 5751).
const PKCS7_SIGNATURE: &str = "application/pkcs7-signature";

/// `POST /api/v1/sign`: a detached CMS SignedData over the digest, made by a code-signing key
/// that never leaves the key store. Only the key's owner may sign (the token's name is the
/// caller; never an admin token); the artifact itself is never sent. 404 unknown key, 403 not the owner, 409 a key
/// whose certificate is not issued, revoked or expired, 429 over the profile's rate limit or
/// daily quota. Every signature is audited before it is returned.
pub async fn sign(
    presented: Presented,
    state: web::Data<AppState>,
    body: web::Json<SignBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    // The token is looked up on the blocking thread the signature is made on (one hop
    // between threads fewer, see `Presented`), and checked before the body is.
    let (pem, signature) = web::block(move || -> Result<_, ApiError> {
        let auth = presented.authenticate(&state)?;
        auth.require(&[Role::Requester, Role::Officer])?;
        let pem = match body.format.as_deref() {
            None | Some("der") => false,
            Some("pem") => true,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "format {other:?}: use der or pem"
                )));
            }
        };
        let alg = DigestAlg::parse(&body.digest_algorithm)
            .map_err(|e| ApiError::invalid(format!("digest_algorithm: {e}")))?;
        let digest = Digest::from_hex(alg, body.digest.trim())
            .map_err(|e| ApiError::invalid(format!("digest: {e}")))?;
        let signature = state.codesign.sign(
            &SignRequest {
                caller: Principal::token(&auth.token.name),
                key: &body.key,
                digest: &digest,
                source: &auth.source,
            },
            SystemTime::now(),
        )?;
        Ok((pem, signature))
    })
    .await??;
    if pem {
        let text = signature
            .cms
            .to_pem()
            .map_err(|e| ApiError::server(ErrorKind::Internal, &e))?;
        Ok(HttpResponse::Ok().content_type(PEM).body(text))
    } else {
        Ok(HttpResponse::Ok()
            .content_type(PKCS7_SIGNATURE)
            .body(signature.cms.into_der()))
    }
}

/// `POST /codesign/keys/{label}/bindings` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindBody {
    /// The API token's name.
    pub token: String,
}

/// `GET /api/v1/codesign/keys/{label}/bindings`: the tokens bound to a key (readers).
pub async fn bindings(
    auth: Auth,
    state: web::Data<AppState>,
    label: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(&[Role::Admin, Role::Officer, Role::Auditor])?;
    let label = label.into_inner();
    let codesign = state.codesign.clone();
    let key = label.clone();
    let tokens = web::block(move || codesign.bindings(&key))
        .await?
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(json!({"key": label, "tokens": tokens})))
}

/// `POST /api/v1/codesign/keys/{label}/bindings`: lets a token sign with the key, with its
/// owner's consent: only the token that owns the key may (403 for anyone else, an
/// administrator's token included).
pub async fn bind(
    auth: Auth,
    state: web::Data<AppState>,
    label: web::Path<String>,
    body: web::Json<BindBody>,
) -> Result<HttpResponse, ApiError> {
    auth.require(&[Role::Requester, Role::Officer, Role::Admin])?;
    let (label, token) = (label.into_inner(), body.into_inner().token);
    let codesign = state.codesign.clone();
    let (key, name, actor, source) = (
        label.clone(),
        token.clone(),
        auth.token.name.clone(),
        auth.source,
    );
    web::block(move || {
        codesign.bind_token(
            &key,
            &name,
            Principal::token(&actor),
            &source,
            SystemTime::now(),
        )
    })
    .await?
    .map_err(ApiError::from)?;
    Ok(HttpResponse::Created().json(json!({"key": label, "token": token})))
}

/// `DELETE /api/v1/codesign/keys/{label}/bindings/{token}`: takes a binding back (the
/// owning token, or admins).
pub async fn unbind(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    auth.require(&[Role::Requester, Role::Officer, Role::Admin])?;
    let (label, token) = path.into_inner();
    let codesign = state.codesign.clone();
    let admin = auth.token.role == Role::Admin;
    let (actor, source) = (auth.token.name.clone(), auth.source);
    web::block(move || {
        codesign.unbind_token(&label, &token, Principal::token(&actor), admin, &source)
    })
    .await?
    .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}
