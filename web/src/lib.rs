//! Keyhold's outer layer: the `keyhold` command line, its config file and (in later
//! versions) the HTTP server and admin UI.

pub mod cli;
pub mod config;
pub mod init;
pub mod ops;
pub mod revoke;
pub mod secrets;
