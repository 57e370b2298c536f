//! `/api/v1`: JSON over HTTP. Handlers parse, check the token's rights, call one core
//! service on the blocking pool, and map the result; the policy lives in ca-core.

pub mod certificates;
pub mod codesign;
pub mod requests;

use actix_web::HttpResponse;

/// The OpenAPI 3 description of this API (hand-written; a test checks it against the
/// routes).
pub const OPENAPI: &str = include_str!("../../../../openapi.json");

/// `GET /api/v1/openapi.json`: public, like any API description.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}
