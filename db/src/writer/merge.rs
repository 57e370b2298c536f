//! On PostgreSQL, a batch's certificate reservations share one `INSERT` and its completions
//! one `UPDATE`.
//!
//! Every statement on PostgreSQL is a round trip to another process, on the path every
//! caller waits on: with one statement per reservation and per completion, a batch of 16
//! spent most of its time waking the server and being woken by it. So, before the jobs
//! run, the writer puts the batch's reservations first and its completions second (the
//! callers are concurrent, so any order is one they could have seen), writes each group in
//! one statement over arrays, and hands each job what its row did ([`Merged`]). The job
//! then decides and audits exactly as it would alone (see `changes::reserve` and
//! `changes::complete`).
//!
//! Only what cannot fail halfway is merged: a reservation for an approval request reads
//! and checks the request first, so it runs alone. A merged statement that fails (a
//! constraint, an unknown issuer) fails the attempt: the batch runs again with a savepoint
//! per job and nothing merged, so each job gets its own error.

use std::collections::{HashMap, HashSet};

use ca_core::audit::unix_micros;
use ca_core::store::{CertStatus, NewCertificate, Serial};
use diesel::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Binary, Nullable, Text};

use crate::records::search_text;

/// What a job offers to share with the batch's others of its kind.
pub(crate) enum Mergeable {
    /// A reservation without an approval request.
    Reserve(NewCertificate),
    /// A completion: the reserved serial becomes valid with this DER.
    Complete { serial: Serial, der: Vec<u8> },
}

/// What a merged statement did to one job's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Merged {
    /// The reservation's row was inserted; `false`: its serial was already in use.
    Reserved(bool),
    /// The completion's row was reserved and is now valid: its request, requester and
    /// `created_at`. `None`: it was not reserved (the job reads why).
    Completed(Option<(Option<i64>, String, i64)>),
}

/// The order the writer runs a merging batch in: reservations, completions, the rest.
pub(crate) fn rank(mergeable: Option<&Mergeable>) -> u8 {
    match mergeable {
        Some(Mergeable::Reserve(_)) => 0,
        Some(Mergeable::Complete { .. }) => 1,
        None => 2,
    }
}

/// Runs the merged statements over `jobs` (in batch order, `None` for a job that merges
/// nothing): what each job's row did, aligned with `jobs`.
pub(crate) fn run(
    conn: &mut PgConnection,
    jobs: &[Option<&Mergeable>],
    now: i64,
    node: Option<&str>,
) -> QueryResult<Vec<Option<Merged>>> {
    let mut merged = vec![None; jobs.len()];
    reserve(conn, jobs, now, node, &mut merged)?;
    complete(conn, jobs, &mut merged)?;
    Ok(merged)
}

/// Inserts the reserved rows; a serial already in use (or named twice) inserts nothing.
const RESERVE: &str = "\
    INSERT INTO certificates (serial, issuer, subject, sans, search, not_before, not_after, \
        profile, requester, status, created_at, reserved_by) \
    SELECT r.serial, r.issuer, r.subject, r.sans, r.search, r.not_before, r.not_after, \
        r.profile, r.requester, $10, $11, $12 \
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], \
        $7::int8[], $8::text[], $9::text[]) \
        AS r(serial, issuer, subject, sans, search, not_before, not_after, profile, requester) \
    ON CONFLICT (serial) DO NOTHING \
    RETURNING serial";

/// Makes the reserved rows valid with their DER.
const COMPLETE: &str = "\
    UPDATE certificates AS c SET status = $3, der = v.der \
    FROM unnest($1::text[], $2::bytea[]) AS v(serial, der) \
    WHERE c.serial = v.serial AND c.status = $4 \
    RETURNING c.serial, c.request_id, c.requester, c.created_at";

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = Text)]
    serial: String,
}

#[derive(QueryableByName)]
struct Completed {
    #[diesel(sql_type = Text)]
    serial: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    request_id: Option<i64>,
    #[diesel(sql_type = Text)]
    requester: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
}

/// The columns of the reservations, one array each.
#[derive(Default)]
struct Columns {
    serial: Vec<String>,
    issuer: Vec<String>,
    subject: Vec<String>,
    sans: Vec<String>,
    search: Vec<String>,
    not_before: Vec<i64>,
    not_after: Vec<i64>,
    profile: Vec<String>,
    requester: Vec<String>,
}

impl Columns {
    fn push(&mut self, cert: &NewCertificate) {
        let serial = cert.serial.as_str();
        self.search
            .push(search_text(serial, &cert.subject, &cert.sans));
        self.serial.push(serial.to_owned());
        self.issuer.push(cert.issuer.as_str().to_owned());
        self.subject.push(cert.subject.clone());
        self.sans.push(cert.sans.clone());
        self.not_before.push(unix_micros(cert.not_before));
        self.not_after.push(unix_micros(cert.not_after));
        self.profile.push(cert.profile.clone());
        self.requester.push(cert.requester.clone());
    }
}

fn reserve(
    conn: &mut PgConnection,
    jobs: &[Option<&Mergeable>],
    now: i64,
    node: Option<&str>,
    merged: &mut [Option<Merged>],
) -> QueryResult<()> {
    let mut columns = Columns::default();
    let mut named = HashSet::new();
    let mut rows = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let Some(Mergeable::Reserve(cert)) = job else {
            continue;
        };
        if named.insert(cert.serial.as_str()) {
            columns.push(cert);
            rows.push(i);
        } else {
            // Named twice in one batch: the first takes it.
            merged[i] = Some(Merged::Reserved(false));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let inserted: Vec<Inserted> = diesel::sql_query(RESERVE)
        .bind::<Array<Text>, _>(&columns.serial)
        .bind::<Array<Text>, _>(&columns.issuer)
        .bind::<Array<Text>, _>(&columns.subject)
        .bind::<Array<Text>, _>(&columns.sans)
        .bind::<Array<Text>, _>(&columns.search)
        .bind::<Array<BigInt>, _>(&columns.not_before)
        .bind::<Array<BigInt>, _>(&columns.not_after)
        .bind::<Array<Text>, _>(&columns.profile)
        .bind::<Array<Text>, _>(&columns.requester)
        .bind::<Text, _>(CertStatus::Reserved.as_str())
        .bind::<BigInt, _>(now)
        .bind::<Nullable<Text>, _>(node)
        .load(conn)?;
    let inserted: HashSet<String> = inserted.into_iter().map(|r| r.serial).collect();
    for (row, i) in rows.into_iter().enumerate() {
        merged[i] = Some(Merged::Reserved(inserted.contains(&columns.serial[row])));
    }
    Ok(())
}

fn complete(
    conn: &mut PgConnection,
    jobs: &[Option<&Mergeable>],
    merged: &mut [Option<Merged>],
) -> QueryResult<()> {
    let mut serials = Vec::new();
    let mut ders: Vec<&[u8]> = Vec::new();
    let mut rows = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let Some(Mergeable::Complete { serial, der }) = job else {
            continue;
        };
        if rows.contains_key(serial.as_str()) {
            // Named twice: the first makes it valid, the second finds it valid.
            merged[i] = Some(Merged::Completed(None));
            continue;
        }
        rows.insert(serial.as_str(), i);
        serials.push(serial.as_str());
        ders.push(der);
    }
    if serials.is_empty() {
        return Ok(());
    }
    let completed: Vec<Completed> = diesel::sql_query(COMPLETE)
        .bind::<Array<Text>, _>(&serials)
        .bind::<Array<Binary>, _>(&ders)
        .bind::<Text, _>(CertStatus::Valid.as_str())
        .bind::<Text, _>(CertStatus::Reserved.as_str())
        .load(conn)?;
    for &i in rows.values() {
        merged[i] = Some(Merged::Completed(None));
    }
    for row in completed {
        if let Some(&i) = rows.get(row.serial.as_str()) {
            merged[i] = Some(Merged::Completed(Some((
                row.request_id,
                row.requester,
                row.created_at,
            ))));
        }
    }
    Ok(())
}
