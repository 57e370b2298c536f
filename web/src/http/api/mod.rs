//! The REST API, by version.

pub mod v1;
