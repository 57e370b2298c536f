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

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change conflicts with the current state (already decided, duplicate approval...).
    #[error("{0}")]
    Conflict(String),
    /// The database schema is not the one this build expects.
    #[error("database schema: {0}")]
    Schema(String),
    /// The database failed or is unreachable. Nothing was written.
    #[error("database: {0}")]
    Database(String),
}

impl StoreError {
    /// The broad kind, for exit codes and HTTP statuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::Conflict(_) => ErrorKind::Conflict,
            StoreError::Schema(_) | StoreError::Database(_) => ErrorKind::Unavailable,
        }
    }
}
