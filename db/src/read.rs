//! Queries that read, on a pooled connection.

use std::collections::HashMap;
use std::time::SystemTime;

use ca_core::audit::{AuditRecord, Checkpoint};
use ca_core::store::{
    Approval, CertCounts, CertFilter, CertSort, CertStatus, CertificateRow, RequestFilter,
    RequestRow, RequestStatus, Serial, StoreError,
};
use diesel::prelude::*;

use crate::conn::AnyConnection;
use crate::error::{OpError, db_error};
use crate::records::{
    ApprovalRecord, AuditLogRecord, CertRecord, CheckpointRecord, RequestRecord, search_text,
};
use crate::schema::{approvals, audit_checkpoints, audit_log, certificates, requests};
use crate::unix_micros;

type Backend = <AnyConnection as diesel::Connection>::Backend;

/// The largest page a list returns.
pub const MAX_PAGE: u32 = 1_000;

/// A page size: as asked, at most [`MAX_PAGE`]; 0 asks for the largest page.
fn page(limit: u32) -> i64 {
    i64::from(if limit == 0 {
        MAX_PAGE
    } else {
        limit.min(MAX_PAGE)
    })
}

pub(crate) fn certificate(
    conn: &mut AnyConnection,
    serial: &Serial,
) -> Result<Option<CertificateRow>, StoreError> {
    certificates::table
        .find(serial.as_str())
        .select(CertRecord::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_error)?
        .map(CertificateRow::try_from)
        .transpose()
}

pub(crate) fn reserved(conn: &mut AnyConnection) -> Result<Vec<CertificateRow>, StoreError> {
    certificates::table
        .filter(certificates::status.eq(CertStatus::Reserved.as_str()))
        .order((certificates::created_at.asc(), certificates::serial.asc()))
        .select(CertRecord::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(CertificateRow::try_from)
        .collect()
}

pub(crate) fn certificates(
    conn: &mut AnyConnection,
    filter: &CertFilter,
    now: SystemTime,
) -> Result<Vec<CertificateRow>, StoreError> {
    use certificates::dsl as c;
    let narrow = match filter.search.as_deref() {
        Some(text) if !text.is_empty() => narrow_matches(conn, text)?,
        _ => None,
    };
    let mut query = c::certificates
        .select(CertRecord::as_select())
        .into_boxed::<Backend>();
    if let Some(profile) = &filter.profile {
        query = query.filter(c::profile.eq(profile.clone()));
    }
    if let Some(status) = filter.status {
        query = query.filter(c::status.eq(status.as_str()));
    }
    if let Some(before) = filter.expiring_before {
        query = query
            .filter(c::status.eq(CertStatus::Valid.as_str()))
            .filter(c::not_after.lt(unix_micros(before)))
            .filter(c::not_after.gt(unix_micros(now)));
    }
    if let Some(expired) = filter.expired {
        let past = c::not_after.lt(unix_micros(now));
        query = query.filter(c::status.eq(CertStatus::Valid.as_str()));
        query = if expired {
            query.filter(past)
        } else {
            query.filter(c::not_after.ge(unix_micros(now)))
        };
    }
    if let Some(serials) = narrow {
        // Few rows match: those, fetched by primary key, sorted and paged.
        query = query.filter(c::serial.eq_any(serials));
    } else if let Some(text) = filter.search.as_deref().filter(|t| !t.is_empty()) {
        // Many match: walking the list's own index fills a page within its first rows.
        query = query.filter(c::search.like(like_pattern(text)).escape('\\'));
    }
    if let Some(requester) = &filter.requester {
        query = query.filter(c::requester.eq(requester.clone()));
    }
    let sort = filter.sort;
    if let Some((key, serial)) = &filter.after {
        // `key <= k AND (key < k OR serial < s)` rather than the plain OR: the first
        // conjunct is what lets both planners start the index scan at the cursor instead of
        // at the top of the list (a deep page at 1M rows: 100-500 ms before).
        let key = unix_micros(*key);
        let serial = serial.as_str().to_owned();
        query = match sort {
            CertSort::Newest => query
                .filter(c::created_at.le(key))
                .filter(c::created_at.lt(key).or(c::serial.lt(serial))),
            CertSort::Oldest => query
                .filter(c::created_at.ge(key))
                .filter(c::created_at.gt(key).or(c::serial.gt(serial))),
            CertSort::ExpiresFirst => query
                .filter(c::not_after.ge(key))
                .filter(c::not_after.gt(key).or(c::serial.gt(serial))),
            CertSort::ExpiresLast => query
                .filter(c::not_after.le(key))
                .filter(c::not_after.lt(key).or(c::serial.lt(serial))),
        };
    }
    query = match sort {
        CertSort::Newest => query.order((c::created_at.desc(), c::serial.desc())),
        CertSort::Oldest => query.order((c::created_at.asc(), c::serial.asc())),
        CertSort::ExpiresFirst => query.order((c::not_after.asc(), c::serial.asc())),
        CertSort::ExpiresLast => query.order((c::not_after.desc(), c::serial.desc())),
    };
    query
        .limit(page(filter.limit))
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(CertificateRow::try_from)
        .collect()
}

/// Above this many matches, a search walks the list's index instead of the trigram index:
/// a common substring fills a page within the first rows it reads.
const NARROW_MATCHES: usize = 2_000;

/// The serials of every certificate whose search text contains `text`, if the trigram
/// index can answer (three characters or more) and at most [`NARROW_MATCHES`] do.
///
/// Asking the planner for "matches, newest first, 50" lets it guess: PostgreSQL guesses
/// that a substring is common and walks the list's index, reading all 1M rows when only one
/// matches (100-200 ms); this asks the trigram index first, with no order to tempt it.
fn narrow_matches(conn: &mut AnyConnection, text: &str) -> Result<Option<Vec<String>>, StoreError> {
    use diesel::sql_types::Text;
    let needle = search_text_of(text);
    if needle.chars().count() < 3 {
        return Ok(None);
    }
    let limit = NARROW_MATCHES + 1;
    let rows: Vec<SerialOnly> = match conn {
        AnyConnection::Sqlite(c) => {
            // A phrase is a substring match under the trigram tokenizer; `"` is escaped by
            // doubling, and everything else inside quotes is text, FTS operators included.
            let phrase = format!("\"{}\"", needle.replace('"', "\"\""));
            // The index holds the rows up to `upto`; the writer indexes the rows past it
            // within a quarter of a second (see writer.rs), and until then they are scanned.
            diesel::sql_query(format!(
                "SELECT serial FROM certificates WHERE rowid IN (SELECT rowid FROM \
                 certificates_search WHERE certificates_search MATCH $1 LIMIT {limit}) \
                 UNION ALL SELECT serial FROM certificates WHERE rowid > (SELECT upto FROM \
                 certificates_search_upto) AND search LIKE $2 ESCAPE '\\' LIMIT {limit}"
            ))
            .bind::<Text, _>(phrase)
            .bind::<Text, _>(like_pattern(text))
            .load(c)
        }
        AnyConnection::Postgres(c) => diesel::sql_query(format!(
            "SELECT serial FROM certificates WHERE search LIKE $1 ESCAPE '\\' LIMIT {limit}"
        ))
        .bind::<Text, _>(like_pattern(text))
        .load(c),
    }
    .map_err(db_error)?;
    Ok((rows.len() <= NARROW_MATCHES).then(|| rows.into_iter().map(|r| r.serial).collect()))
}

#[derive(QueryableByName)]
struct SerialOnly {
    #[diesel(sql_type = diesel::sql_types::Text)]
    serial: String,
}

/// See [`ca_core::store::Store::counts`]: range counts over the `(status, not_after,
/// serial)` and `(status, created_at, serial)` indexes, reading no rows unless a requester
/// is given.
pub(crate) fn counts(
    conn: &mut AnyConnection,
    requester: Option<&str>,
    expiring_before: SystemTime,
    now: SystemTime,
) -> Result<CertCounts, StoreError> {
    use certificates::dsl as c;
    use requests::dsl as r;
    let now_micros = unix_micros(now);
    let base = || {
        let mut q = c::certificates.into_boxed::<Backend>();
        if let Some(who) = requester {
            q = q.filter(c::requester.eq(who.to_owned()));
        }
        q
    };
    let valid = base()
        .filter(c::status.eq(CertStatus::Valid.as_str()))
        .filter(c::not_after.gt(now_micros))
        .count()
        .get_result::<i64>(conn)
        .map_err(db_error)?;
    let expiring = base()
        .filter(c::status.eq(CertStatus::Valid.as_str()))
        .filter(c::not_after.gt(now_micros))
        .filter(c::not_after.lt(unix_micros(expiring_before)))
        .count()
        .get_result::<i64>(conn)
        .map_err(db_error)?;
    let revoked = base()
        .filter(c::status.eq(CertStatus::Revoked.as_str()))
        .count()
        .get_result::<i64>(conn)
        .map_err(db_error)?;
    let mut pending = r::requests
        .filter(r::status.eq(RequestStatus::Pending.as_str()))
        .filter(r::expires_at.ge(now_micros))
        .into_boxed::<Backend>();
    if let Some(who) = requester {
        pending = pending.filter(r::requester.eq(who.to_owned()));
    }
    let pending = pending.count().get_result::<i64>(conn).map_err(db_error)?;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(CertCounts {
        valid: n(valid),
        expiring: n(expiring),
        revoked: n(revoked),
        pending: n(pending),
    })
}

/// `%text%` over the lowercased search column, with LIKE's wildcards in `text` taken
/// literally.
fn like_pattern(text: &str) -> String {
    let needle = search_text_of(text);
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for ch in needle.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    pattern
}

/// The needle lowercased exactly as the stored column is.
fn search_text_of(text: &str) -> String {
    let lowered = search_text("", "", text);
    lowered.trim_start_matches('\n').to_owned()
}

pub(crate) fn request_record(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<RequestRecord>, StoreError> {
    requests::table
        .find(id)
        .select(RequestRecord::as_select())
        .get_result(conn)
        .optional()
        .map_err(db_error)
}

pub(crate) fn approvals_of(conn: &mut AnyConnection, id: i64) -> Result<Vec<Approval>, StoreError> {
    Ok(approvals::table
        .filter(approvals::request_id.eq(id))
        .order((approvals::at.asc(), approvals::officer.asc()))
        .select(ApprovalRecord::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(Approval::from)
        .collect())
}

pub(crate) fn request(conn: &mut AnyConnection, id: i64) -> Result<Option<RequestRow>, StoreError> {
    conn.transaction::<_, OpError, _>(|conn| {
        let Some(record) = request_record(conn, id)? else {
            return Ok(None);
        };
        let approvals = approvals_of(conn, id)?;
        Ok(Some(record.into_row(approvals)?))
    })
    .map_err(StoreError::from)
}

pub(crate) fn requests(
    conn: &mut AnyConnection,
    filter: &RequestFilter,
) -> Result<Vec<RequestRow>, StoreError> {
    use requests::dsl as r;
    conn.transaction::<_, OpError, _>(|conn| {
        let mut query = r::requests
            .select(RequestRecord::as_select())
            .into_boxed::<Backend>();
        if let Some(status) = filter.status {
            query = query.filter(r::status.eq(status.as_str()));
        }
        if let Some(requester) = &filter.requester {
            query = query.filter(r::requester.eq(requester.clone()));
        }
        if let Some(before) = filter.before_id {
            query = query.filter(r::id.lt(before));
        }
        let records: Vec<RequestRecord> = query
            .order(r::id.desc())
            .limit(page(filter.limit))
            .load(conn)
            .map_err(db_error)?;
        let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
        let mut by_request: HashMap<i64, Vec<Approval>> = HashMap::new();
        if !ids.is_empty() {
            let approvals: Vec<ApprovalRecord> = approvals::table
                .filter(approvals::request_id.eq_any(ids))
                .order((approvals::at.asc(), approvals::officer.asc()))
                .select(ApprovalRecord::as_select())
                .load(conn)
                .map_err(db_error)?;
            for a in approvals {
                by_request.entry(a.request_id).or_default().push(a.into());
            }
        }
        let rows = records
            .into_iter()
            .map(|r| {
                let approvals = by_request.remove(&r.id).unwrap_or_default();
                r.into_row(approvals)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(rows)
    })
    .map_err(StoreError::from)
}

pub(crate) fn audit_entries(
    conn: &mut AnyConnection,
    from: i64,
    to: i64,
) -> Result<Vec<AuditRecord>, StoreError> {
    audit_log::table
        .filter(audit_log::seq.ge(from))
        .filter(audit_log::seq.le(to))
        .order(audit_log::seq.asc())
        .select(AuditLogRecord::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(AuditRecord::try_from)
        .collect()
}

pub(crate) fn checkpoints(conn: &mut AnyConnection) -> Result<Vec<Checkpoint>, StoreError> {
    audit_checkpoints::table
        .order(audit_checkpoints::seq.asc())
        .select(CheckpointRecord::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(Checkpoint::try_from)
        .collect()
}

#[derive(diesel::QueryableByName)]
struct DayCount {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    day: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Microseconds in a day: `created_at` is unix microseconds.
const DAY_MICROS: i64 = 86_400_000_000;

/// See [`ca_core::store::Store::issued_per_day`]. Reads `issued_daily`, which the writer
/// keeps in step with `certificates` in the same transactions (one row per day and
/// requester; a trigger counts rows inserted already valid), so the 90-day chart reads
/// a few hundred rows however many certificates there are. `since` is rounded down to its
/// UTC day.
pub(crate) fn issued_per_day(
    conn: &mut AnyConnection,
    since: SystemTime,
    requester: Option<&str>,
) -> Result<Vec<(i64, u64)>, StoreError> {
    use diesel::sql_types::{BigInt, Text};
    // `$1`, `$2`: PostgreSQL's placeholders, and SQLite's numbered ones too. SUM's type
    // differs between the backends: cast it.
    let head = "SELECT day, CAST(SUM(n) AS BIGINT) AS n FROM issued_daily WHERE day >= $1";
    let tail = " GROUP BY day ORDER BY day";
    let since = unix_micros(since).div_euclid(DAY_MICROS);
    let rows: Vec<DayCount> = match (conn, requester) {
        (AnyConnection::Sqlite(c), None) => diesel::sql_query(format!("{head}{tail}"))
            .bind::<BigInt, _>(since)
            .load(c),
        (AnyConnection::Postgres(c), None) => diesel::sql_query(format!("{head}{tail}"))
            .bind::<BigInt, _>(since)
            .load(c),
        (AnyConnection::Sqlite(c), Some(r)) => {
            diesel::sql_query(format!("{head} AND requester = $2{tail}"))
                .bind::<BigInt, _>(since)
                .bind::<Text, _>(r)
                .load(c)
        }
        (AnyConnection::Postgres(c), Some(r)) => {
            diesel::sql_query(format!("{head} AND requester = $2{tail}"))
                .bind::<BigInt, _>(since)
                .bind::<Text, _>(r)
                .load(c)
        }
    }
    .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|r| (r.day, u64::try_from(r.n).unwrap_or(0)))
        .collect())
}

#[derive(QueryableByName)]
struct Tidied {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pages: i64,
}

/// PostgreSQL: moves the trigram index's pending entries into the index (see
/// [`crate::Db::tidy_search_index`]); the pages it emptied. It changes no row, so a
/// read-only connection may run it. SQLite: nothing (0).
pub(crate) fn tidy_search_index(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    match conn {
        AnyConnection::Postgres(c) => diesel::sql_query(
            "SELECT gin_clean_pending_list('certificates_search_trgm'::regclass) AS pages",
        )
        .get_result::<Tidied>(c)
        .map(|t| t.pages)
        .map_err(db_error),
        AnyConnection::Sqlite(_) => Ok(0),
    }
}
