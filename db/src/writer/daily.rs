//! The dashboard's per-day count of certificates made valid (`issued_daily`), added up over
//! a batch and written once per day and requester at its end.

use diesel::prelude::*;

use crate::conn::AnyConnection;

/// Microseconds in a day: `created_at` is unix microseconds.
const DAY_MICROS: i64 = 86_400_000_000;

/// Adds a batch's certificates made valid to `issued_daily`, one statement per day and
/// requester (a trigger used to run one per certificate, inside the write every caller
/// waits on; on PostgreSQL each of those was a new version of the same counter row).
const COUNT_ISSUED: &str = "\
    INSERT INTO issued_daily (day, requester, n) VALUES ($1, $2, $3) \
        ON CONFLICT (day, requester) DO UPDATE SET n = issued_daily.n + excluded.n";

/// A batch's certificates made valid, per (day, requester), in the order first seen.
#[derive(Default)]
pub(super) struct DailyCounts(Vec<(i64, String, i64)>);

impl DailyCounts {
    /// Adds a job's certificates, once the job has succeeded.
    pub(super) fn add(&mut self, issued: Vec<(i64, String)>) {
        for (created_at, requester) in issued {
            let day = created_at.div_euclid(DAY_MICROS);
            match self
                .0
                .iter_mut()
                .find(|(d, r, _)| *d == day && *r == requester)
            {
                Some((_, _, n)) => *n += 1,
                None => self.0.push((day, requester, 1)),
            }
        }
    }

    pub(super) fn write(&self, conn: &mut AnyConnection) -> Result<(), diesel::result::Error> {
        use diesel::sql_types::{BigInt, Text};
        for (day, requester, n) in &self.0 {
            match conn {
                AnyConnection::Sqlite(c) => diesel::sql_query(COUNT_ISSUED)
                    .bind::<BigInt, _>(day)
                    .bind::<Text, _>(requester)
                    .bind::<BigInt, _>(n)
                    .execute(c)?,
                AnyConnection::Postgres(c) => diesel::sql_query(COUNT_ISSUED)
                    .bind::<BigInt, _>(day)
                    .bind::<Text, _>(requester)
                    .bind::<BigInt, _>(n)
                    .execute(c)?,
            };
        }
        Ok(())
    }
}
