//! Keyhold's outer layer: the `keyhold` command line, its config file, and the HTTP server
//! ([`configure`] is the one route table, used by `keyhold serve` and by the tests).

pub mod backups;
pub mod cli;
pub mod config;
pub mod http;
pub mod init;
pub mod secrets;
pub mod serve;
pub mod text;
pub mod tls;
pub mod wiring;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::header::HeaderValue;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpMessage, web};
use tracing::Instrument;

use crate::http::error::{ApiError, REQUEST_ID};

/// The largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// Every route, the body and query limits, and the request-id middleware. The caller adds
/// the [`http::state::AppState`] as `web::Data`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY)
            .content_type_required(true)
            .error_handler(|e, _| json_error(e).into()),
    )
    .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(e).into()))
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::not_found(format!("no such resource: {e}")).into()),
    )
    .app_data(web::PayloadConfig::default().limit(MAX_BODY))
    .service(
        web::scope("")
            .wrap(from_fn(request_context))
            .service(get("/", http::public::home))
            .service(get("/healthz", http::public::healthz))
            .service(get("/readyz", http::public::readyz))
            .service(get("/metrics", http::public::metrics))
            .service(get("/ca/{file}", http::public::ca_cert))
            .service(get("/ca/{issuer}/chain.pem", http::public::ca_chain))
            .service(get("/crl/{file}", http::revocation::crl))
            .service(
                web::scope("/ocsp")
                    .service(
                        web::resource("")
                            .route(web::post().to(http::revocation::ocsp_post))
                            .default_service(web::to(method_not_allowed)),
                    )
                    // `GET /ocsp/{base64}`, matched by prefix: a `{request:.*}` pattern's
                    // regex took a fifth of the CPU of answering a GET.
                    .default_service(web::to(http::revocation::ocsp_get)),
            )
            .service(http::acme::scope())
            .service(api_v1(&mut Vec::new()))
            .configure(http::ui::configure)
            .default_service(web::to(not_found)),
    );
}

/// The `/api/v1` scope. Each route is declared through `doc`, which records its method and
/// path: [`api_routes`] returns that record, and a test holds it against the OpenAPI
/// document in both directions.
fn api_v1(routes: &mut Vec<(&'static str, String)>) -> actix_web::Scope {
    let mut doc = |method: &'static str, path: &'static str| {
        routes.push((method, format!("/api/v1{path}")));
        path
    };
    doc("POST", "/certificates");
    web::scope("/api/v1")
        .service(
            web::resource(doc("GET", "/certificates"))
                .route(web::post().to(http::api::v1::certificates::submit))
                .route(web::get().to(http::api::v1::certificates::list))
                .default_service(web::to(method_not_allowed)),
        )
        .service(get(
            doc("GET", "/certificates/{serial}"),
            http::api::v1::certificates::show,
        ))
        .service(
            web::resource(doc("POST", "/certificates/{serial}/revoke"))
                .route(web::post().to(http::api::v1::certificates::revoke))
                .default_service(web::to(method_not_allowed)),
        )
        .service(get(
            doc("GET", "/requests/{id}"),
            http::api::v1::requests::request,
        ))
        .service(
            web::resource(doc("POST", "/sign"))
                .route(web::post().to(http::api::v1::codesign::sign))
                .default_service(web::to(method_not_allowed)),
        )
        .service({
            doc("POST", "/codesign/keys/{label}/bindings");
            web::resource(doc("GET", "/codesign/keys/{label}/bindings"))
                .route(web::get().to(http::api::v1::codesign::bindings))
                .route(web::post().to(http::api::v1::codesign::bind))
                .default_service(web::to(method_not_allowed))
        })
        .service(
            web::resource(doc("DELETE", "/codesign/keys/{label}/bindings/{token}"))
                .route(web::delete().to(http::api::v1::codesign::unbind))
                .default_service(web::to(method_not_allowed)),
        )
        .service(get(doc("GET", "/openapi.json"), http::api::v1::openapi))
        .default_service(web::to(not_found))
}

/// Every `/api/v1` route as `(method, path)`, as [`configure`] registers them.
pub fn api_routes() -> Vec<(&'static str, String)> {
    let mut routes = Vec::new();
    let _ = api_v1(&mut routes);
    routes
}

/// A resource answering GET and HEAD, with a problem-JSON 405 for other methods.
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        // Load balancers and caches probe with HEAD; actix sends the headers only.
        .route(web::head().to(handler))
        .default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("no such resource"))
}

fn json_error(e: JsonPayloadError) -> ApiError {
    match e {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::too_large(format!("the body exceeds {} KiB", MAX_BODY / 1024))
        }
        JsonPayloadError::ContentType => {
            ApiError::unsupported_media_type("send the body as Content-Type: application/json")
        }
        JsonPayloadError::Deserialize(e) => ApiError::invalid(format!("invalid JSON body: {e}")),
        e => ApiError::invalid(format!("cannot read the body: {e}")),
    }
}

fn query_error(e: QueryPayloadError) -> ApiError {
    ApiError::invalid(format!("invalid query string: {e}"))
}

/// Gives each request an id (in every log line, the `x-request-id` header and problem
/// bodies), names the node in every log line, and logs one line per request: method, path, status, time. Never headers or
/// bodies, which may carry tokens.
async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut req = req;
    let id = new_request_id();
    // Which node answered, when several share a database (issue 20).
    let node = req
        .app_data::<web::Data<http::state::AppState>>()
        .and_then(|s| s.probes.db.node().map(|n| n.name.clone()));
    let span = tracing::info_span!("request", id = %id, node = node.as_deref().unwrap_or("-"));
    let (method, path) = (req.method().clone(), req.path().to_owned());
    // HEAD is GET without the body (RFC 9110 9.3.2), wherever GET is served: route it as
    // GET. actix-http saw the HEAD before this point and sends the headers only.
    if method == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
        req.extensions_mut().insert(http::WasHead);
    }
    let metrics = req
        .app_data::<web::Data<http::state::AppState>>()
        .map(|s| s.metrics.clone());
    let start = Instant::now();
    let res = REQUEST_ID
        .scope(id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let micros = start.elapsed().as_micros();
    match res {
        Ok(mut res) => {
            if let Some(m) = &metrics {
                m.response(res.status().as_u16());
            }
            tracing::info!(parent: &span, %method, %path, status = res.status().as_u16(), micros, "served");
            if let Ok(v) = HeaderValue::from_str(&id) {
                res.headers_mut().insert(
                    actix_web::http::header::HeaderName::from_static("x-request-id"),
                    v,
                );
            }
            Ok(res)
        }
        Err(e) => {
            tracing::warn!(parent: &span, %method, %path, error = %e, micros, "failed");
            Err(e)
        }
    }
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Ids only correlate log lines; a clock-based one will do if randomness fails.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = nanos.to_be_bytes();
    }
    hex::encode(bytes)
}
