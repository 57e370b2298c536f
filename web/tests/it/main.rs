//! The `keyhold` command end to end: every bad input gets a one-line error, a non-zero exit
//! and leaves nothing half-made; what `init` makes passes `openssl verify -x509_strict`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod backup;
mod bindings;
mod browser;
mod cli;
mod codesign;
mod cycle;
mod dbs;
mod firstrun;
mod flood;
mod harden;
mod hsm_cluster;
mod issue;
mod ocsp;
mod officers;
mod owners;
mod presign;
mod quorum;
mod revoke;
mod serve;
mod support;
mod ui;
mod ui_members;
mod wrapped;
