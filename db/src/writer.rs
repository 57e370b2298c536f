//! Group commit: one writer thread per [`crate::Db`] runs every change.
//!
//! Callers hand their change to the writer as a [`Job`] and wait. The writer takes the
//! first waiting job, then every other job already queued (up to [`MAX_BATCH`]), and runs
//! them in one write transaction:
//!
//! 1. begin (SQLite `BEGIN IMMEDIATE`), lock and read the audit chain head;
//! 2. run each job. A job refused with `Conflict` or `NotFound` has written nothing (every
//!    change decides before it writes, see `changes.rs`), so the others go on. A job that
//!    fails any other way (a failed audit insert, a constraint) may have written part of its
//!    change: the whole transaction is rolled back and the batch runs again with each job in
//!    its own savepoint, so that only that job's change is undone;
//! 3. add the batch's certificates made valid to `issued_daily` (one statement per day and
//!    requester, not a trigger per certificate), store the new chain head, commit once (one
//!    fsync for the whole batch);
//! 4. answer every caller: its own result if the commit succeeded, the commit's error if not.
//!
//! Savepoints only on the second try: they cost two statements per job, a good part of a
//! job's time on SQLite.
//!
//! Fewer statements per batch, because on PostgreSQL each is a round trip to another
//! process on the path every caller waits on (issue 21):
//!
//! - an append-only job (a certificate's reservation or completion: see
//!   [`Job::appends_only`]) seals its audit entries into the chain at once but leaves the
//!   rows waiting ([`Tx::audit_later`]); they are inserted in one statement before the next
//!   job that is not append-only runs, and before the commit;
//! - on PostgreSQL the batch's reservations share one `INSERT` and its completions one
//!   `UPDATE` (`writer/merge.rs`);
//! - the chain head is locked and read in one statement, and an ordered commit's `BEGIN`
//!   carries its `SET LOCAL` (see `conn.rs`).
//!
//! So every call returns only once its change is durable, while many callers share the cost
//! of one commit. While the writer commits one batch, the next one queues up.
//!
//! The exception is [`Writer::write_ordered`]: a batch made only of such changes commits
//! without waiting for the disk ([`Commit::Ordered`]). Its changes are visible at once and
//! ordered before every later change, so the next durable commit makes them durable too,
//! and a crash before that loses them only together with everything after them.
//!
//! Between batches, at most every [`INDEX_EVERY`], the writer brings SQLite's trigram search
//! index up to date with every certificate inserted since (one statement, one ordered
//! commit): keeping it in step inside every batch cost FTS5 a segment and its merges per
//! commit, on the path every certificate waits on. Searches scan the rows not indexed yet
//! (see `read.rs`), so they find everything at once.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ca_core::audit::{AuditEvent, GENESIS, unix_micros};
use ca_core::cluster::NodeId;
use ca_core::store::StoreError;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::codesign::{Published, Tallies};
use crate::conn::{self, AnyConnection, Commit, Target};
use crate::error::OpError;
use crate::health::Health;
use crate::records::{AuditLogRecord, hash32};
use crate::schema::{audit_head, audit_log};
use crate::{Clock, error};

mod daily;
mod merge;

use daily::DailyCounts;

pub(crate) use merge::{Mergeable, Merged};

/// The most jobs one transaction holds. Large enough that 16 callers share every commit,
/// small enough that one batch's transaction stays short.
const MAX_BATCH: usize = 256;

/// How often, at most, the writer catches the SQLite search index up (and how long it waits
/// when idle before it does).
const INDEX_EVERY: Duration = Duration::from_millis(250);

/// Indexes the certificates inserted since the last catch-up, in rowid order.
const CATCH_UP_SEARCH: &str = "\
    INSERT INTO certificates_search (rowid, search) SELECT rowid, search FROM certificates \
        WHERE rowid > (SELECT upto FROM certificates_search_upto) ORDER BY rowid; \
    UPDATE certificates_search_upto SET upto = MAX(upto, \
        (SELECT COALESCE(MAX(rowid), 0) FROM certificates)) WHERE id = 1;";

/// The audit chain's head as the running transaction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chain {
    seq: i64,
    hash: [u8; 32],
}

/// What a job's change sees: the connection inside its savepoint, the chain to append to,
/// the time, and which node writes (if this process said: its name goes into every audit
/// entry it writes, its instance into every reservation it makes; issue 20).
pub(crate) struct Tx<'a> {
    pub conn: &'a mut AnyConnection,
    chain: &'a mut Chain,
    /// Audit rows sealed into the chain but not inserted yet (see [`Tx::audit_later`]).
    pending: &'a mut Vec<AuditLogRecord>,
    /// Whether [`Tx::audit_later`] may leave its row in `pending`: only in an append-only
    /// job (see [`Job::appends_only`]) and never in a batch retried with savepoints.
    defer: bool,
    /// What the batch's merged statement did to this job's row, if it had one (`merge.rs`).
    merged: Option<Merged>,
    pub now: SystemTime,
    pub node: Option<&'a NodeId>,
    /// Certificates this change made valid, by (`created_at`, requester), for `issued_daily`.
    issued: &'a mut Vec<(i64, String)>,
    /// Code-signing keys' window counts, kept between batches.
    pub tallies: &'a mut Tallies,
}

impl Tx<'_> {
    /// Counts a certificate made valid in `issued_daily` (its day is that of `created_at`,
    /// unix microseconds), when the batch ends, with the batch's other counts.
    pub(crate) fn count_issued(&mut self, created_at: i64, requester: String) {
        self.issued.push((created_at, requester));
    }

    /// What the batch's merged statement did to this job's row: `None` if nothing was
    /// merged, and the job writes its row itself.
    pub(crate) fn take_merged(&mut self) -> Option<Merged> {
        self.merged.take()
    }

    /// Appends `event` to the audit chain (the caller's savepoint rolls it back with the
    /// change if anything later fails).
    pub(crate) fn audit(&mut self, event: &AuditEvent) -> Result<(), OpError> {
        let record = self.seal(event);
        flush_audit(self.conn, self.pending)?;
        diesel::insert_into(audit_log::table)
            .values(&record)
            .execute(self.conn)?;
        Ok(())
    }

    /// Like [`Tx::audit`], but in an append-only job the row may be inserted later, with the
    /// batch's other such rows in one statement, before the next job that is not append-only
    /// runs and before the batch commits (on PostgreSQL every statement is a round trip on the
    /// path every caller waits on). The chain advances now either way.
    pub(crate) fn audit_later(&mut self, event: &AuditEvent) -> Result<(), OpError> {
        if !self.defer {
            return self.audit(event);
        }
        let record = self.seal(event);
        self.pending.push(record);
        Ok(())
    }

    /// Seals `event` as the chain's next entry and advances the chain.
    fn seal(&mut self, event: &AuditEvent) -> AuditLogRecord {
        let record = match self.node {
            Some(node) => event.clone().with("node", node.name.as_str()),
            None => event.clone(),
        }
        .seal(self.chain.seq + 1, self.now, self.chain.hash);
        *self.chain = Chain {
            seq: record.seq,
            hash: record.hash,
        };
        AuditLogRecord::from(&record)
    }
}

/// The most audit rows one insert statement carries (9 values each: far inside both
/// databases' limits on bound parameters).
const AUDIT_ROWS_PER_INSERT: usize = 500;

/// Inserts the audit rows [`Tx::audit_later`] left waiting, in chain order.
fn flush_audit(
    conn: &mut AnyConnection,
    pending: &mut Vec<AuditLogRecord>,
) -> Result<(), diesel::result::Error> {
    for rows in pending.chunks(AUDIT_ROWS_PER_INSERT) {
        match conn {
            AnyConnection::Sqlite(c) => diesel::insert_into(audit_log::table)
                .values(rows)
                .execute(c)?,
            AnyConnection::Postgres(c) => diesel::insert_into(audit_log::table)
                .values(rows)
                .execute(c)?,
        };
    }
    pending.clear();
    Ok(())
}

/// One caller's change, waiting for the writer.
pub(crate) trait Job: Send {
    /// Runs the change inside the batch transaction (again, if the batch is retried).
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), OpError>;
    /// The change failed: the caller gets `error` if the batch commits.
    fn failed(&mut self, error: StoreError);
    /// Answers the caller once the batch has committed (`Ok`) or failed.
    fn answer(self: Box<Self>, committed: Result<(), &StoreError>);
    /// What the caller waits for; a batch commits durably if any of its jobs asks for it.
    fn commit(&self) -> Commit;
    /// Whether the change only adds and updates rows of its own and reads nothing that an
    /// earlier job's audit rows could change: its [`Tx::audit_later`] rows may then wait, and
    /// it may run while earlier jobs' rows wait. Any other job first sees them inserted.
    fn appends_only(&self) -> bool;
    /// The row this job may write in one statement with others of its kind (`merge.rs`).
    fn mergeable(&self) -> Option<&Mergeable>;
}

/// A [`Job`] from a closure, answering its caller through a channel.
struct Call<T, F> {
    change: F,
    commit: Commit,
    appends_only: bool,
    merge: Option<Mergeable>,
    outcome: Option<Result<T, StoreError>>,
    reply: SyncSender<Result<T, StoreError>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnMut(&mut Tx<'_>) -> Result<T, OpError> + Send,
{
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), OpError> {
        self.outcome = None;
        let value = (self.change)(tx)?;
        self.outcome = Some(Ok(value));
        Ok(())
    }

    fn failed(&mut self, error: StoreError) {
        self.outcome = Some(Err(error));
    }

    fn answer(self: Box<Self>, committed: Result<(), &StoreError>) {
        let result = match committed {
            Ok(()) => self
                .outcome
                .unwrap_or_else(|| Err(StoreError::Database("internal: a write never ran".into()))),
            Err(e) => Err(StoreError::Database(format!(
                "commit failed, nothing written: {e}"
            ))),
        };
        // The caller may have gone; nothing to do then.
        let _ = self.reply.send(result);
    }

    fn commit(&self) -> Commit {
        self.commit
    }

    fn appends_only(&self) -> bool {
        self.appends_only
    }

    fn mergeable(&self) -> Option<&Mergeable> {
        self.merge.as_ref()
    }
}

/// The handle to a running writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    jobs: Option<Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    health: Arc<Health>,
}

impl Writer {
    /// Starts the writer thread for `target`; it opens its own connection (`first`, already
    /// connected, if given) and reconnects after a failure.
    pub(crate) fn start(
        target: Target,
        first: AnyConnection,
        clock: Clock,
        health: Arc<Health>,
        node: Arc<OnceLock<NodeId>>,
        tallies: Published,
    ) -> Result<Writer, StoreError> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let shared = health.clone();
        let thread = std::thread::Builder::new()
            .name("keyhold-db-writer".into())
            .spawn(move || {
                let mut state = WriterState {
                    target,
                    conn: Some(first),
                    sqlite_commit: Commit::Durable,
                    clock,
                    // Rows another process inserted may wait: catch up once at start.
                    search_behind: true,
                    search_caught_up: Instant::now(),
                    health: shared,
                    node,
                    tallies: Tallies::new(tallies),
                };
                state.serve(queue);
            })
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
            health,
        })
    }

    /// Runs `change` in the writer's next transaction and returns its result once that
    /// transaction is durable.
    pub(crate) fn write<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, OpError> + Send + 'static,
    {
        self.submit(Commit::Durable, false, None, change)
    }

    /// Like [`Writer::write`], but returns once the transaction has committed, visible and
    /// ordered before every later write, perhaps before it is on disk (see the module
    /// documentation).
    pub(crate) fn write_ordered<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, OpError> + Send + 'static,
    {
        self.submit(Commit::Ordered, false, None, change)
    }

    /// Runs an append-only `change` (see [`Job::appends_only`]): it must read nothing that
    /// an audit row could change, and record its audit entries with [`Tx::audit_later`].
    /// With `merge`, the writer may write its row together with others of its kind, and
    /// `change` finds what that did in [`Tx::take_merged`].
    pub(crate) fn append<T: Send + 'static>(
        &self,
        commit: Commit,
        merge: Option<Mergeable>,
        change: impl FnMut(&mut Tx<'_>) -> Result<T, OpError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(commit, true, merge, change)
    }

    fn submit<T, F>(
        &self,
        commit: Commit,
        appends_only: bool,
        merge: Option<Mergeable>,
        change: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, OpError> + Send + 'static,
    {
        let stopped = || StoreError::Database("the database writer has stopped".into());
        // While the database is known to be down, fail now rather than queue (issue 20).
        self.health.gate()?;
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Box::new(Call {
            change,
            commit,
            appends_only,
            merge,
            outcome: None,
            reply,
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has answered every queued job.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct WriterState {
    target: Target,
    conn: Option<AnyConnection>,
    /// The SQLite connection's `synchronous` setting, as [`conn::write_transaction`] left it.
    sqlite_commit: Commit,
    clock: Clock,
    /// A batch has committed since the search index last caught up.
    search_behind: bool,
    search_caught_up: Instant,
    health: Arc<Health>,
    node: Arc<OnceLock<NodeId>>,
    tallies: Tallies,
}

impl WriterState {
    fn serve(&mut self, queue: Receiver<Box<dyn Job>>) {
        loop {
            let wait = if self.search_behind {
                INDEX_EVERY.saturating_sub(self.search_caught_up.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            let first = match queue.recv_timeout(wait) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if self.search_behind {
                        self.catch_up_search();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let committed = self.run_batch(&mut batch);
            match &committed {
                Ok(()) => self.health.up(),
                Err(e) => self.health.down(e),
            }
            for job in batch {
                job.answer(committed.as_ref().map(|_| ()));
            }
            self.search_behind |= committed.is_ok();
            if self.search_behind && self.search_caught_up.elapsed() >= INDEX_EVERY {
                self.catch_up_search();
            }
        }
        if self.search_behind {
            self.catch_up_search();
        }
    }

    /// Indexes SQLite's certificates inserted since the last time, in one ordered commit (a
    /// crash loses the index entries together with `upto`, so the next catch-up redoes them).
    /// A failure leaves the rows to the next catch-up; searches scan them meanwhile.
    fn catch_up_search(&mut self) {
        self.search_caught_up = Instant::now();
        let Some(conn) = &mut self.conn else {
            return;
        };
        if !matches!(conn, AnyConnection::Sqlite(_)) {
            self.search_behind = false;
            return;
        }
        let done = conn::write_transaction(
            conn,
            Commit::Ordered,
            &mut self.sqlite_commit,
            |conn| -> Result<(), diesel::result::Error> {
                match conn {
                    AnyConnection::Sqlite(c) => c.batch_execute(CATCH_UP_SEARCH),
                    AnyConnection::Postgres(_) => Ok(()),
                }
            },
        );
        match done {
            Ok(()) => self.search_behind = false,
            Err(_) if conn::is_broken(conn) => self.conn = None,
            Err(_) => {}
        }
    }

    /// Runs the jobs in one transaction; `Err` if it could not commit.
    fn run_batch(&mut self, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
        match self.try_batch(batch, false) {
            Err(Attempt::Retry) => match self.try_batch(batch, true) {
                Err(Attempt::Retry) => Err(StoreError::Database(
                    "internal: a batch failed in savepoint mode".into(),
                )),
                Err(Attempt::Failed(e)) => Err(e),
                Ok(()) => Ok(()),
            },
            Err(Attempt::Failed(e)) => Err(e),
            Ok(()) => Ok(()),
        }
    }

    /// One attempt at a batch, with a savepoint per job or without.
    fn try_batch(&mut self, batch: &mut [Box<dyn Job>], savepoints: bool) -> Result<(), Attempt> {
        let reused = self.conn.is_some();
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let fresh = self.target.connect().map_err(Attempt::Failed)?;
                self.sqlite_commit = Commit::Durable;
                self.conn.insert(fresh)
            }
        };
        let mut started = false;
        let node = self.node.get();
        // Merging pays on PostgreSQL only, where every statement is a round trip.
        let merging = !savepoints
            && matches!(conn, AnyConnection::Postgres(_))
            && batch.iter().any(|job| job.mergeable().is_some());
        if merging {
            batch.sort_by_key(|job| merge::rank(job.mergeable()));
        }
        let commit = if batch.iter().any(|job| job.commit() == Commit::Durable) {
            Commit::Durable
        } else {
            Commit::Ordered
        };
        let clock = &self.clock;
        let current = &mut self.sqlite_commit;
        let tallies = &mut self.tallies;
        let mut end = None;
        let result =
            conn::write_transaction(conn, commit, current, |conn| -> Result<(), BatchError> {
                let start = lock_chain(conn)?;
                let mut chain = start;
                started = true;
                tallies.begin(start);
                let mut daily = DailyCounts::default();
                let mut pending = Vec::new();
                let mut merged = match conn {
                    AnyConnection::Postgres(c) if merging => {
                        let jobs: Vec<_> = batch.iter().map(|job| job.mergeable()).collect();
                        let at = unix_micros(clock());
                        let by = node.map(|n| n.instance.as_str());
                        // A failure here is one job's (say, an unknown issuer): find which
                        // with a savepoint per job and nothing merged.
                        merge::run(c, &jobs, at, by).map_err(|e| retry("merged write", &e))?
                    }
                    _ => Vec::new(),
                }
                .into_iter();
                for job in batch.iter_mut() {
                    let merged = merged.next().flatten();
                    let defer = !savepoints && job.appends_only();
                    if !defer && let Err(e) = flush_audit(conn, &mut pending) {
                        // Without savepoints only (with them nothing waits).
                        return Err(retry("audit rows", &e));
                    }
                    let waiting = pending.len();
                    let mut tentative = chain;
                    let mut issued = Vec::new();
                    let now = clock();
                    let mut run = |conn: &mut AnyConnection| {
                        job.run(&mut Tx {
                            conn,
                            chain: &mut tentative,
                            pending: &mut pending,
                            defer,
                            merged: merged.clone(),
                            now,
                            node,
                            issued: &mut issued,
                            tallies,
                        })
                    };
                    let ran = if savepoints {
                        conn.transaction(run)
                    } else {
                        run(conn)
                    };
                    match ran {
                        Ok(()) => {
                            chain = tentative;
                            daily.add(issued);
                        }
                        // Decided before writing anything (see `changes.rs`).
                        Err(OpError::Store(
                            e @ (StoreError::Conflict(_) | StoreError::NotFound(_)),
                        )) => {
                            pending.truncate(waiting);
                            job.failed(e);
                        }
                        Err(_) if !savepoints => return Err(BatchError::Retry),
                        Err(e) => job.failed(e.into()),
                    }
                    if conn::transaction_failed(conn) {
                        return Err(
                            StoreError::Database("the connection broke mid-batch".into()).into(),
                        );
                    }
                }
                if let Err(e) = flush_audit(conn, &mut pending) {
                    return Err(retry("audit rows", &e));
                }
                daily.write(conn)?;
                if chain != start {
                    diesel::update(audit_head::table.filter(audit_head::id.eq(1)))
                        .set((
                            audit_head::seq.eq(chain.seq),
                            audit_head::hash.eq(chain.hash.to_vec()),
                        ))
                        .execute(conn)?;
                }
                end = Some(chain);
                Ok(())
            });
        match result {
            Ok(()) => {
                // After a retry with savepoints, counts may include a job's undone row.
                if let (Some(end), false) = (end, savepoints) {
                    self.tallies.committed(end);
                }
                Ok(())
            }
            Err(BatchError::Retry) => Err(Attempt::Retry),
            Err(BatchError::Failed(e)) => {
                // The connection may be dead or in an unknown state: open a new one next time.
                self.conn = None;
                if reused && !started {
                    // It failed before any job ran (BEGIN, or locking the chain): most
                    // likely a connection the database closed while it sat idle (the
                    // database restarted, or failed over). Nothing was written: try once
                    // more on a fresh connection, so the first write after a recovery
                    // does not fail (issue 20, item 6).
                    tracing::info!(error = %StoreError::from(e), "the database connection was stale: reconnecting");
                    return self.try_batch(batch, savepoints);
                }
                Err(Attempt::Failed(e.into()))
            }
        }
    }
}

/// A statement shared by the batch failed: the batch runs again with a savepoint per job,
/// which finds the job at fault. Logged, because a shared statement that always fails (say,
/// one left behind by a schema change) would otherwise only show as every batch running
/// twice.
fn retry(what: &str, error: &diesel::result::Error) -> BatchError {
    tracing::warn!(%error, "the batch's {what} failed: running each change in its own savepoint");
    BatchError::Retry
}

/// Why a batch attempt ended without committing.
enum Attempt {
    /// A job failed in a way that may have left part of its change: retry with savepoints.
    Retry,
    /// The transaction failed: every job gets this error.
    Failed(StoreError),
}

/// Inside the batch transaction: roll back, then retry or fail.
enum BatchError {
    Retry,
    Failed(OpError),
}

impl From<diesel::result::Error> for BatchError {
    fn from(e: diesel::result::Error) -> Self {
        BatchError::Failed(e.into())
    }
}

impl From<OpError> for BatchError {
    fn from(e: OpError) -> Self {
        BatchError::Failed(e)
    }
}

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        BatchError::Failed(e.into())
    }
}

/// Locks the chain head for this transaction and reads it. On PostgreSQL the update takes
/// the head row's lock, so appends from every process sharing the database queue here.
fn lock_chain(conn: &mut AnyConnection) -> Result<Chain, OpError> {
    // One statement, not an update and a read: on PostgreSQL each is a round trip.
    let lock = diesel::update(audit_head::table.filter(audit_head::id.eq(1)))
        .set(audit_head::seq.eq(audit_head::seq))
        .returning((audit_head::seq, audit_head::hash));
    let head: Option<(i64, Vec<u8>)> = match conn {
        AnyConnection::Sqlite(c) => lock.get_result(c).optional()?,
        AnyConnection::Postgres(c) => lock.get_result(c).optional()?,
    };
    let Some((seq, hash)) = head else {
        return Err(StoreError::Schema("the audit_head row is missing".into()).into());
    };
    Ok(Chain {
        seq,
        hash: hash32(&hash)?,
    })
}

/// The head as [`ca_core::store::Store::audit_head`] reports it.
pub(crate) fn read_head(conn: &mut AnyConnection) -> Result<Option<(i64, [u8; 32])>, StoreError> {
    let (seq, hash): (i64, Vec<u8>) = audit_head::table
        .select((audit_head::seq, audit_head::hash))
        .filter(audit_head::id.eq(1))
        .get_result(conn)
        .map_err(error::db_error)?;
    let hash = hash32(&hash)?;
    Ok((seq > 0 || hash != GENESIS).then_some((seq, hash)))
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::Integer;

    use super::*;

    #[derive(QueryableByName)]
    struct Synchronous {
        #[diesel(sql_type = Integer)]
        synchronous: i32,
    }

    /// SQLite's `synchronous` as the job's transaction runs: 2 is FULL, 1 is NORMAL.
    fn synchronous(tx: &mut Tx<'_>) -> Result<i32, OpError> {
        match tx.conn {
            AnyConnection::Sqlite(c) => Ok(diesel::sql_query("PRAGMA synchronous")
                .get_result::<Synchronous>(c)?
                .synchronous),
            AnyConnection::Postgres(_) => unreachable!("a SQLite test"),
        }
    }

    #[test]
    fn only_batches_of_ordered_writes_skip_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keyhold.db").display());
        let db = crate::Db::open(&url).unwrap();
        assert_eq!(
            db.writer.write(synchronous).unwrap(),
            2,
            "a fresh connection"
        );
        assert_eq!(db.writer.write_ordered(synchronous).unwrap(), 1);
        assert_eq!(db.writer.write_ordered(synchronous).unwrap(), 1);
        assert_eq!(db.writer.write(synchronous).unwrap(), 2, "back to FULL");
    }
}
