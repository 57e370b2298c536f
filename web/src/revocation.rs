//! Revocation status over HTTP, where issued certificates point: `POST /ocsp` and
//! `GET /ocsp/{request}` (RFC 6960 appendix A, RFC 5019) and `GET /crl/{issuer}.crl`.
//!
//! OCSP: a request with one CertID and no nonce (what browsers, openssl, Go and Windows send
//! by default) is answered from memory once signed, for up to [`OCSP_CACHE_TTL`]; any other
//! request (a nonce, several CertIDs) is signed for the caller. A revocation through this
//! server's API empties the cache at once, one made elsewhere shows within the TTL. A CRL is
//! generated at most once per [`CRL_REFRESH`] per issuer and served from memory in between,
//! so the public endpoints cannot be used to burn CRL numbers or keep the key store busy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::{self, CacheControl, CacheDirective, HttpDate};
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::error::ErrorKind;
use ca_core::issuer::Issuer;
use ca_core::revocation::crl::{self, SignedCrl};
use ca_core::revocation::ocsp::{self, Answer, CacheKey, ResponseStatus};
use ca_core::store::Store;

use crate::error::ApiError;
use crate::state::AppState;

/// OCSP response content type.
pub const OCSP_RESPONSE: &str = "application/ocsp-response";
/// CRL content type (RFC 2585).
pub const CRL: &str = "application/pkix-crl";
/// How long a served CRL is kept before it is regenerated. A revocation through this
/// server's API drops its issuer's CRL at once; one made elsewhere (the CLI, another
/// process sharing the database) shows within this. Far under half of the shortest CRL
/// validity the config accepts (`[revocation] crl_validity`, at least an hour), so a
/// served CRL is always republished before half its validity has passed.
pub const CRL_REFRESH: Duration = Duration::from_secs(60);

/// How long a signed OCSP answer is served from memory. Its own validity is `[revocation]
/// ocsp_validity` (at least an hour, so this is far under half of it); this bounds how
/// stale a cached `good` can be after a revocation made outside this process.
pub const OCSP_CACHE_TTL: Duration = Duration::from_secs(60);
/// The most answers kept (each about 1 KiB with the responder certificate).
const OCSP_CACHE_ENTRIES: usize = 100_000;

/// A cached OCSP answer: when it was signed, its bytes and its validity.
#[derive(Debug, Clone)]
struct Cached {
    at: Instant,
    der: web::Bytes,
    validity: (SystemTime, SystemTime),
}

/// Signed answers to cacheable OCSP requests, by the CertID they answer.
#[derive(Debug, Default)]
pub struct OcspCache {
    answers: RwLock<HashMap<CacheKey, Cached>>,
}

impl OcspCache {
    fn get(&self, key: &CacheKey) -> Option<Cached> {
        let answers = self.answers.read().ok()?;
        answers
            .get(key)
            .filter(|c| c.at.elapsed() < OCSP_CACHE_TTL)
            .cloned()
    }

    fn put(&self, key: CacheKey, cached: Cached) {
        if let Ok(mut answers) = self.answers.write() {
            if answers.len() >= OCSP_CACHE_ENTRIES {
                answers.retain(|_, c| c.at.elapsed() < OCSP_CACHE_TTL);
                if answers.len() >= OCSP_CACHE_ENTRIES {
                    return; // full of fresh answers: sign on demand until some age out
                }
            }
            answers.insert(key, cached);
        }
    }

    /// Forgets every answer (after a revocation: one `good` may now be wrong).
    pub fn clear(&self) {
        if let Ok(mut answers) = self.answers.write() {
            answers.clear();
        }
    }
}

/// The latest CRL of each issuer.
#[derive(Debug)]
pub struct CrlCache {
    crls: Mutex<HashMap<String, (Instant, Arc<SignedCrl>)>>,
    /// thisUpdate to nextUpdate of the CRLs it makes.
    validity: Duration,
}

impl CrlCache {
    /// An empty cache whose CRLs are valid for `validity`.
    pub fn new(validity: Duration) -> Self {
        CrlCache {
            crls: Mutex::default(),
            validity,
        }
    }

    /// Drops `issuer`'s CRL: the next fetch generates a new one.
    pub fn invalidate(&self, issuer: &str) {
        if let Ok(mut crls) = self.crls.lock() {
            crls.remove(issuer);
        }
    }

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
        let crl = crl::generate(store, issuer, SystemTime::now(), self.validity)
            .map_err(|e| ApiError::server(e.kind(), &e))?;
        let crl = Arc::new(crl);
        crls.insert(issuer.id.as_str().to_owned(), (Instant::now(), crl.clone()));
        Ok(crl)
    }
}

/// After a revocation through this server (API or UI): a cached OCSP `good` may now be
/// wrong, and `issuer`'s served CRL is out of date. Drops both, so OCSP answers `revoked`
/// at once and the next CRL fetch regenerates it.
pub fn revoked(state: &AppState, issuer: &str) {
    state.ocsp_cache.clear();
    state.crls.invalidate(issuer);
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
    let key = state.ocsp.cache_key(&request);
    if let Some(cached) = key.as_ref().and_then(|k| state.ocsp_cache.get(k)) {
        return Ok(respond(cached.der, Some(cached.validity), false));
    }
    let responder = state.ocsp.clone();
    let answer: Answer = web::block(move || responder.answer(&request, SystemTime::now())).await?;
    if let Some(problem) = &answer.problem {
        tracing::info!(request_id = %crate::error::request_id(), status = ?answer.status, %problem, "ocsp");
    }
    let der = web::Bytes::from(answer.der);
    if let (Some(key), Some(validity), ResponseStatus::Successful, false) =
        (key, answer.validity, answer.status, answer.nonce)
    {
        state.ocsp_cache.put(
            key,
            Cached {
                at: Instant::now(),
                der: der.clone(),
                validity,
            },
        );
    }
    Ok(respond(der, answer.validity, answer.nonce))
}

/// An OCSP answer with its caching headers.
fn respond(
    der: web::Bytes,
    validity: Option<(SystemTime, SystemTime)>,
    nonce: bool,
) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.content_type(OCSP_RESPONSE);
    // RFC 5019 6: a successful response without a nonce may be cached until nextUpdate.
    match validity {
        Some((this_update, next_update)) if !nonce => {
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
    res.body(der)
}
