//! Keyhold's domain: key stores, certificate building, issuers and the CA key ceremony.
//!
//! This crate knows no HTTP, SQL or templates (CI proves it with `cargo tree`). It is
//! synchronous; the server runs its calls on a blocking thread pool.

pub mod acme;
pub mod apitoken;
pub mod approval;
pub mod audit;
pub mod backup;
pub mod ceremony;
pub mod cluster;
pub mod cms;
pub mod codesign;
pub mod csr;
pub mod error;
pub mod inspect;
pub mod issuance;
pub mod issuer;
pub mod keystore;
pub mod policy;
pub mod quorum;
pub mod revocation;
pub mod secret;
pub mod status;
pub mod store;
pub mod users;
pub mod x509;
