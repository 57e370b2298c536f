//! The small set of failure kinds every error in Keyhold maps to.
//!
//! A kind says what failed, not how to show it: the web layer maps kinds to HTTP statuses,
//! the CLI to exit codes.

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input or a credential is wrong.
    Invalid,
    /// A policy refused the request.
    Rejected,
    /// The thing asked for does not exist.
    NotFound,
    /// It exists already, or conflicts with the current state.
    Conflict,
    /// A dependency (key store, database, file system) cannot be reached.
    Unavailable,
    /// A bug or corrupted state.
    Internal,
}
