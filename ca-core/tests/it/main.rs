//! ca-core's integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ceremony;
mod cms;
mod csr;
mod keystore;
mod pkcs11;
mod support;
