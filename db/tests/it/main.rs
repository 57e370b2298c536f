//! db's integration tests: one binary, one module per area. Every test runs on SQLite (a
//! file in a temporary directory) and on PostgreSQL (a fresh schema in the database named by
//! `KEYHOLD_TEST_DATABASE_URL`; `.ci/test` starts a throwaway server).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

mod acme;
mod acme_state;
mod acme_upkeep;
mod approvals;
mod audit;
mod backup;
mod codesign;
mod concurrency;
mod listen_tls;
mod nodes;
mod open;
mod operations;
mod paging;
mod publication;
mod requests;
mod revocation;
mod store;
mod tokens;
mod users;
