//! Revocation status over HTTP, where issued certificates point: `POST /ocsp` and
//! `GET /ocsp/{request}` (RFC 6960 appendix A, RFC 5019) and `GET /crl/{issuer}.crl`.
//!
//! OCSP responses are signed on demand for now (pre-signing is a later step). A CRL is
//! generated at most once per [`CRL_REFRESH`] per issuer and served from memory in between,
//! so the public endpoint cannot be used to burn CRL numbers or keep the key store busy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::{self, CacheControl, CacheDirective, HttpDate};
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::error::ErrorKind;
use ca_core::issuer::Issuer;
use ca_core::revocation::crl::{self, SignedCrl};
use ca_core::revocation::ocsp::{self, Answer, ResponseStatus};
use ca_core::store::Store;

use crate::error::ApiError;
use crate::state::AppState;

/// OCSP response content type.
pub const OCSP_RESPONSE: &str = "application/ocsp-response";
/// CRL content type (RFC 2585).
pub const CRL: &str = "application/pkix-crl";
/// How long OCSP responses are valid (the CLI's default).
pub const OCSP_VALIDITY: Duration = Duration::from_secs(4 * 86_400);
/// thisUpdate to nextUpdate of served CRLs (the CLI's default).
pub const CRL_VALIDITY: Duration = Duration::from_secs(7 * 86_400);
/// How often a served CRL is regenerated at most: a revocation shows on it within this.
pub const CRL_REFRESH: Duration = Duration::from_secs(300);

/// The latest CRL of each issuer.
#[derive(Debug, Default)]
pub struct CrlCache {
    crls: Mutex<HashMap<String, (Instant, Arc<SignedCrl>)>>,
}

impl CrlCache {
    /// `issuer`'s CRL, regenerated if the cached one is older than [`CRL_REFRESH`].
    /// Generation holds the lock, so concurrent requests wait for one CRL, not sign many.
    ///
    /// Fails if generation fails (database, key store, or the CRL's self-check).
    fn get(&self, store: &dyn Store, issuer: &Issuer) -> Result<Arc<SignedCrl>, ApiError> {
        let mut crls = self.crls.lock().map_err(|_| {
            ApiError::server(ErrorKind::Internal, &"the CRL cache lock is poisoned")
        })?;
        if let Some((made, crl)) = crls.get(issuer.id.as_str())
            && made.elapsed() < CRL_REFRESH
        {
            return Ok(crl.clone());
        }
        let crl = crl::generate(store, issuer, SystemTime::now(), CRL_VALIDITY)
            .map_err(|e| ApiError::server(e.kind(), &e))?;
        let crl = Arc::new(crl);
        crls.insert(issuer.id.as_str().to_owned(), (Instant::now(), crl.clone()));
        Ok(crl)
    }
}

/// `GET /crl/{issuer}.crl`: DER.
pub async fn crl(
    state: web::Data<AppState>,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let issuer = file
        .strip_suffix(".crl")
        .and_then(|id| state.ca.issuers().iter().find(|i| i.id.as_str() == id))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no CRL {:?}", file.as_str())))?;
    let (ca, cache) = (state.ca.clone(), state.crls.clone());
    let crl = web::block(move || cache.get(ca.store().as_ref(), &issuer)).await??;
    Ok(HttpResponse::Ok()
        .content_type(CRL)
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(CRL_REFRESH.as_secs() as u32),
        ]))
        .insert_header(header::LastModified(HttpDate::from(crl.this_update)))
        .body(crl.der.clone()))
}

/// `POST /ocsp` with an `application/ocsp-request` body.
pub async fn ocsp_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.eq_ignore_ascii_case("application/ocsp-request") {
        return Err(ApiError::unsupported_media_type(
            "send the OCSP request as Content-Type: application/ocsp-request",
        ));
    }
    answer(state, body.to_vec()).await
}

/// `GET /ocsp/{base64 request}`.
pub async fn ocsp_get(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // The raw path: the request's base64 may hold `/` and `+`, and may be percent-encoded.
    let tail = req.path().strip_prefix("/ocsp/").unwrap_or("");
    match ocsp::decode_get_path(tail) {
        Ok(request) => answer(state, request).await,
        // RFC 6960 2.3: a request that does not parse gets malformedRequest.
        Err(_) => Ok(HttpResponse::Ok()
            .content_type(OCSP_RESPONSE)
            .body(ocsp::error_response(ResponseStatus::MalformedRequest))),
    }
}

async fn answer(state: web::Data<AppState>, request: Vec<u8>) -> Result<HttpResponse, ApiError> {
    let responder = state.ocsp.clone();
    let answer: Answer = web::block(move || responder.answer(&request, SystemTime::now())).await?;
    if let Some(problem) = &answer.problem {
        tracing::info!(request_id = %crate::error::request_id(), status = ?answer.status, %problem, "ocsp");
    }
    let mut res = HttpResponse::Ok();
    res.content_type(OCSP_RESPONSE);
    // RFC 5019 6: a successful response without a nonce may be cached until nextUpdate.
    match answer.validity {
        Some((this_update, next_update)) if !answer.nonce => {
            let left = next_update
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .as_secs();
            res.insert_header(CacheControl(vec![
                CacheDirective::MaxAge(u32::try_from(left).unwrap_or(u32::MAX)),
                CacheDirective::Public,
                CacheDirective::NoTransform,
                CacheDirective::MustRevalidate,
            ]))
            .insert_header(header::LastModified(HttpDate::from(this_update)))
            .insert_header(header::Expires(HttpDate::from(next_update)));
        }
        _ => {
            res.insert_header(CacheControl(vec![CacheDirective::NoStore]));
        }
    }
    Ok(res.body(answer.der))
}
