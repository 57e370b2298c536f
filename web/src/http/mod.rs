//! Everything Keyhold says over HTTP: the shared state, errors, authentication and metrics,
//! the public routes (health, CA certificates), OCSP and CRLs, the REST API and the admin UI.
//! The route table that mounts them is [`crate::configure`].

pub mod acme;
pub mod api;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod public;
pub mod revocation;
pub mod state;
pub mod ui;

/// Marks a request that arrived as `HEAD`: `request_context` routes HEAD as GET (RFC 9110
/// 9.3.2), and the few handlers whose answer differs (ACME's newNonce: 200 for HEAD, 204
/// for GET) read this from the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct WasHead;
