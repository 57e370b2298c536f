//! How diesel's errors become ca-core's [`StoreError`].

use ca_core::store::StoreError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Why one write operation failed: a decision (conflict, missing row) or the database.
#[derive(Debug)]
pub(crate) enum OpError {
    Store(StoreError),
    Diesel(DieselError),
}

impl From<DieselError> for OpError {
    fn from(e: DieselError) -> Self {
        OpError::Diesel(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

impl From<OpError> for StoreError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Store(e) => e,
            OpError::Diesel(e) => db_error(e),
        }
    }
}

/// A failed query. A unique violation is a conflict with the current state; everything else
/// means the database failed.
pub(crate) fn db_error(e: DieselError) -> StoreError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            StoreError::Conflict(info.message().to_owned())
        }
        e => StoreError::Database(e.to_string()),
    }
}

/// A stored value this build cannot read.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("corrupt {what}: {detail}"))
}
