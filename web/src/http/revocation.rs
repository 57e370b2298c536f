//! Revocation status over HTTP, where issued certificates point: `POST /ocsp` and
//! `GET /ocsp/{request}` (RFC 6960 appendix A, RFC 5019) and `GET /crl/{issuer}.crl`. What is
//! answered, when answers are signed and when CRLs are made is ca-core's
//! [`Publisher`](ca_core::revocation::publish::Publisher); this module adds content types and
//! caching headers, and runs the pre-signer's thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use actix_web::http::header::{self, CacheControl, CacheDirective, HttpDate};
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::revocation::ocsp::{self, ResponseStatus};
use ca_core::revocation::publish::shared::Notice;
use ca_core::revocation::publish::{CrlBuilder, Presigner, presign};

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// OCSP response content type.
pub const OCSP_RESPONSE: &str = "application/ocsp-response";
/// CRL content type (RFC 2585).
pub const CRL: &str = "application/pkix-crl";

/// Starts the thread that signs OCSP answers ahead of time (see
/// [`Presigner`]); it ticks every [`presign::POLL`] until `stop` is set, logging in `span`
/// (which names the node).
pub fn spawn_presigner(
    state: &AppState,
    stop: Arc<AtomicBool>,
    span: tracing::Span,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut presigner = Presigner::new(state.publisher.clone());
    std::thread::Builder::new()
        .name("ocsp-presigner".into())
        .spawn(move || {
            let _span = span.entered();
            while !stop.load(Ordering::Relaxed) {
                presigner.tick();
                std::thread::sleep(presign::POLL);
            }
        })
}

/// In a cluster (issue 20): shares the publication through the database (OCSP answers held
/// in memory: at most `ocsp_cache`), starts the thread
/// that builds the CRLs of the issuers whose lease this node holds (see [`CrlBuilder`]), and,
/// on PostgreSQL, the thread that listens for revocation and CRL notices; both run until
/// `stop`. Their log lines name `node`.
pub fn spawn_shared_publication(
    state: &AppState,
    node: &ca_core::cluster::NodeId,
    ocsp_cache: usize,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let db = state.probes.db.clone();
    state
        .publisher
        .share(db.clone(), node.instance.clone(), ocsp_cache);
    let mut threads = Vec::new();
    let publisher = state.publisher.clone();
    let name = node.name.clone();
    let listening = db.listen(
        stop.clone(),
        Box::new(move |event| {
            let _span = tracing::info_span!("db-listen", node = %name).entered();
            match event {
                db::Listened::Up => {
                    publisher.set_notices_live(true);
                    publisher.notice(&Notice::Lost);
                }
                db::Listened::Down(_) => publisher.set_notices_live(false),
                db::Listened::Notice(notice) => publisher.notice(&notice),
            }
        }),
    )?;
    threads.extend(listening);
    if let Some(mut builder) = CrlBuilder::new(state.publisher.clone()) {
        let name = node.name.clone();
        threads.push(
            std::thread::Builder::new()
                .name("crl-builder".into())
                .spawn(move || {
                    let _span = tracing::info_span!("crl-builder", node = %name).entered();
                    while !stop.load(Ordering::Relaxed) {
                        builder.tick();
                    }
                })?,
        );
    }
    Ok(threads)
}

/// `GET /crl/{issuer}.crl`: DER.
pub async fn crl(
    state: web::Data<AppState>,
    req: HttpRequest,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = file
        .strip_suffix(".crl")
        .filter(|id| state.ca.issuers().iter().any(|i| i.id.as_str() == *id))
        .ok_or_else(|| ApiError::not_found(format!("no CRL {:?}", file.as_str())))?
        .to_owned();
    let (publisher, issuer) = (state.publisher.clone(), id.clone());
    let crl = web::block(move || publisher.crl(&issuer)).await??;
    // A CRL is named by its issuer and number: the ETag. Caches may keep it until its
    // nextUpdate (RFC 5280 5.1.2.5), as the headers say.
    let etag = header::EntityTag::new_strong(format!("{id}-{}", crl.number));
    let left = crl
        .next_update
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs();
    let cache_headers = |res: &mut actix_web::HttpResponseBuilder| {
        res.insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(u32::try_from(left).unwrap_or(u32::MAX)),
            CacheDirective::NoTransform,
        ]))
        .insert_header(header::ETag(etag.clone()))
        .insert_header(header::Expires(HttpDate::from(crl.next_update)))
        .insert_header(header::LastModified(HttpDate::from(crl.this_update)));
    };
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag.to_string() || t.trim() == "*")
        });
    if unchanged {
        let mut res = HttpResponse::NotModified();
        cache_headers(&mut res);
        return Ok(res.finish());
    }
    let mut res = HttpResponse::Ok();
    res.content_type(CRL);
    cache_headers(&mut res);
    Ok(res.body(crl.der.clone()))
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

/// `GET /ocsp/{base64 request}`, and HEAD (routed as GET); any other method: 405.
pub async fn ocsp_get(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if req.method() != actix_web::http::Method::GET {
        return Err(ApiError::method_not_allowed());
    }
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
    // Answers signed ahead of time are served here, on the worker, with no hop.
    if let Some(reply) = state.publisher.held(&request, SystemTime::now()) {
        return Ok(respond(reply.der, reply.validity, reply.nonce));
    }
    let publisher = state.publisher.clone();
    let reply = web::block(move || publisher.answer(&request, SystemTime::now())).await?;
    if let Some(problem) = &reply.problem {
        tracing::info!(request_id = %crate::http::error::request_id(), status = ?reply.status, %problem, "ocsp");
    }
    Ok(respond(reply.der, reply.validity, reply.nonce))
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
