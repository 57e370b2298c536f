//! Keyhold's database: [`ca_core::store::Store`] on SQLite or PostgreSQL, one code path.
//!
//! Invariants:
//! - every change and its audit entries are written in one transaction, chained from the
//!   current head of the audit log; if an audit entry cannot be written the change is rolled
//!   back (fail closed);
//! - a call that changes state returns only once its transaction is durable (SQLite:
//!   `synchronous=FULL`; PostgreSQL: its default synchronous commit), except a serial's
//!   reservation, which returns once committed and ordered before every later change
//!   (see [`ca_core::store::IssuanceLedger::reserve`]);
//! - audit appends are serialised across every process sharing the database (SQLite: the
//!   file's write lock, `BEGIN IMMEDIATE`; PostgreSQL: the `audit_head` row lock).
//!
//! All changes go through one writer thread per [`Db`] that commits several callers' changes
//! together (group commit, see `writer.rs`); reads use a small connection pool.
//!
//! Times are stored as unix microseconds (`BIGINT`) on both backends, serials as lowercase
//! hex, DER as binary.

mod acme;
mod acme_state;
pub mod backup;
mod changes;
mod codesign;
mod conn;
mod error;
mod health;
mod listen;
mod nodes;
mod operations;
mod publication;
mod read;
mod records;
mod revocation;
mod schema;
mod tokens;
mod users;
mod writer;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

pub(crate) use ca_core::audit::unix_micros;
use ca_core::audit::{AuditEvent, AuditRecord, Checkpoint};
use ca_core::cluster::{Liveness, NodeId, Orphan};
use ca_core::issuer::IssuerId;
use ca_core::revocation::crl::SignedCrl;
use ca_core::revocation::publish::shared::{Publication, StoredAnswer};
use ca_core::store::{
    Approval, AuditLog, CaRevocation, CertFilter, CertificateQueries, CertificateRow, CrlList,
    IssuanceLedger, NewCertificate, NewRequest, RequestFilter, RequestRow, Revocation,
    RevocationLedger, Serial, SerialStatus, StoreError,
};
use diesel::RunQueryDsl;
use diesel::backend::Backend;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::conn::{AnyConnection, Commit, Manager, Target};
use crate::error::OpError;
use crate::health::{Health, Pass};
use crate::writer::{Mergeable, Writer};

pub use crate::listen::Listened;
pub use crate::read::MAX_PAGE;

/// The current time, as the store stamps rows and audit entries. Injected so tests can fix
/// it; [`Db::open`] uses the system clock.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Any number, the same in every Keyhold process: the key of the PostgreSQL advisory lock
/// that lets one process at a time migrate a shared database.
const MIGRATION_LOCK: i64 = 0x006b_6579_686f_6c64; // "keyhold"

/// Read connections per process.
const SQLITE_READERS: u32 = 4;
const POSTGRES_READERS: u32 = 8;
/// How long a read waits for a pooled connection (or a new one) before failing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a read waiting for a connection looks whether the database is known down.
const WATCH: Duration = Duration::from_millis(250);
/// How often [`Db::tidy_search_index`] empties PostgreSQL's pending search-index entries:
/// at 2,000 certificates a second about 1.5 MB of them, far under the 4 MB at which a write
/// would stop to do it.
const TIDY_EVERY: Duration = Duration::from_millis(250);

/// Keyhold's database.
pub struct Db {
    target: Target,
    reads: r2d2::Pool<Manager>,
    writer: Writer,
    clock: Clock,
    health: Arc<Health>,
    node: Arc<OnceLock<NodeId>>,
    /// The writer's code-signing window counts as of its last commit.
    tallies: codesign::Published,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens the database at `url`, migrates it to this build's schema, and starts its
    /// writer thread.
    ///
    /// `url` is `sqlite://PATH` (or a bare path: the file is created if missing, its
    /// directory is not) or `postgres://...` / `postgresql://...` (libpq's URL form; the
    /// database must exist). Any other scheme is refused, so a misspelt PostgreSQL URL never
    /// creates a SQLite file.
    ///
    /// Fails with [`StoreError::Database`] if the URL is not one of those or the database
    /// cannot be reached or set up (SQLite: WAL must be available), and with
    /// [`StoreError::Schema`] if the database holds a migration this build does not know (a
    /// newer Keyhold upgraded it) or a migration fails.
    pub fn open(url: &str) -> Result<Db, StoreError> {
        Self::open_with_clock(url, Arc::new(SystemTime::now))
    }

    /// [`Db::open`] with the clock that stamps rows and audit entries.
    pub fn open_with_clock(url: &str, clock: Clock) -> Result<Db, StoreError> {
        let target = Target::parse(url)?;
        let mut first = target.connect()?;
        migrate(&mut first)?;
        let readers = match target {
            Target::Sqlite(_) => SQLITE_READERS,
            Target::Postgres(_) => POSTGRES_READERS,
        };
        let reads = r2d2::Pool::builder()
            .max_size(readers)
            .min_idle(Some(0))
            .connection_timeout(CONNECT_TIMEOUT)
            .build_unchecked(Manager {
                target: target.clone(),
            });
        let health = Arc::new(Health::default());
        let node = Arc::new(OnceLock::new());
        let tallies = codesign::Published::default();
        let writer = Writer::start(
            target.clone(),
            first,
            clock.clone(),
            health.clone(),
            node.clone(),
            tallies.clone(),
        )?;
        Ok(Db {
            target,
            reads,
            writer,
            clock,
            health,
            node,
            tallies,
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.target.backend()
    }

    /// A round trip to the database, for a readiness check.
    ///
    /// Fails with [`StoreError::Database`] if no connection can be had or the query fails.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.read(conn::ping)
    }

    /// Names this process as `node` (once; later calls fail): from now on its reservations
    /// record its instance and its audit entries its name. Records its first heartbeat and
    /// forgets the node's earlier instances, whose reservations become orphans at once.
    ///
    /// Fails if a node was already set or the database fails.
    pub fn join_cluster(&self, node: &NodeId) -> Result<(), StoreError> {
        self.node.set(node.clone()).map_err(|_| {
            StoreError::Conflict("this process has already joined as a node".into())
        })?;
        let node = node.clone();
        self.writer
            .write(move |tx| nodes::heartbeat(tx, &node, true))
    }

    /// This process's node, once [`Db::join_cluster`] has named it.
    pub fn node(&self) -> Option<&NodeId> {
        self.node.get()
    }

    /// Records this node's heartbeat: a durable write through the writer's connection,
    /// which is also the readiness probe (a full disk, a read-only standby or a stale
    /// connection fails it, where a `SELECT 1` would pass). Without a node, commits a write
    /// transaction that changes nothing but the audit head's lock.
    ///
    /// Fails if the database cannot be written.
    pub fn heartbeat(&self) -> Result<(), StoreError> {
        match self.node.get().cloned() {
            Some(node) => self
                .writer
                .write(move |tx| nodes::heartbeat(tx, &node, false)),
            None => self.writer.write(|_| Ok(())),
        }
    }

    /// Whether the database is known to be down (calls then fail at once; one a second
    /// tries it again).
    pub fn known_down(&self) -> bool {
        self.health.is_down()
    }

    /// On PostgreSQL, starts a thread that listens for the notices of revocations and new
    /// CRLs on a connection of its own and calls `on` with each (and when listening starts
    /// or stops), until `stop`. `None` on SQLite, which has no notices.
    ///
    /// Fails if the thread cannot be started.
    pub fn listen(
        &self,
        stop: Arc<std::sync::atomic::AtomicBool>,
        on: Box<dyn Fn(Listened) + Send + Sync>,
    ) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
        let Target::Postgres(url) = &self.target else {
            return Ok(None);
        };
        listen_to(url, stop, on).map(Some)
    }

    /// On PostgreSQL, starts a thread that every 250 ms moves the search index's
    /// pending entries into the index ([`Db::tidy_search_index`]), until `stop`. `None` on SQLite, whose index the writer
    /// catches up between batches.
    ///
    /// PostgreSQL's trigram (GIN) index first appends each new entry to a pending list, and
    /// the insert that finds that list over `gin_pending_list_limit` (4 MB) merges it into
    /// the index itself, inside the write every caller waits on: at 1,800 certificates a
    /// second that was a 30 to 36 ms stall several times a second, most of HTTP issuance's
    /// p99. Merged here, on a read connection and off the writer's path, the writes never
    /// find the list full (issue 21).
    ///
    /// Fails if the thread cannot be started.
    pub fn spawn_search_index_upkeep(
        self: &Arc<Self>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
        if !matches!(self.target, Target::Postgres(_)) {
            return Ok(None);
        }
        let db = self.clone();
        std::thread::Builder::new()
            .name("db-search-index".into())
            .spawn(move || {
                let mut failing = false;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match db.tidy_search_index() {
                        Ok(_) if failing => {
                            failing = false;
                            tracing::info!("the search index is tidied again");
                        }
                        Ok(_) => {}
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!("tidying the search index: {e}");
                        }
                        Err(_) => {}
                    }
                    std::thread::sleep(TIDY_EVERY);
                }
            })
            .map(Some)
    }

    /// On PostgreSQL, moves the trigram search index's pending entries into the index, on a
    /// read connection; returns how many pages of them it emptied. SQLite: 0, nothing to do.
    ///
    /// Fails if the database cannot be reached.
    pub fn tidy_search_index(&self) -> Result<i64, StoreError> {
        self.read(read::tidy_search_index)
    }

    /// A pooled read connection, waiting up to [`CONNECT_TIMEOUT`] for one, but only until
    /// the database is known to be down: a read that was already waiting when it went down
    /// fails within [`WATCH`] of another call (the heartbeat, within a second) finding out,
    /// rather than after the whole timeout (which held SIGTERM under load for 10 s and more).
    fn pooled(&self) -> Result<r2d2::PooledConnection<Manager>, r2d2::Error> {
        let start = std::time::Instant::now();
        loop {
            match self.reads.get_timeout(WATCH) {
                Ok(conn) => return Ok(conn),
                Err(e) if start.elapsed() >= CONNECT_TIMEOUT || self.health.is_down() => {
                    return Err(e);
                }
                Err(_) => {}
            }
        }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // While the database is known to be down, fail at once, or (once a second) try with
        // a short wait instead of the pool's (issue 20, item 6).
        let got = match self.health.gate()? {
            Pass::Up => self.pooled(),
            Pass::Probe => self.reads.get_timeout(health::RETRY_EVERY),
        };
        let mut conn = got.map_err(|e| {
            let e = StoreError::Database(format!("no database connection: {e}"));
            self.health.down(&e);
            e
        })?;
        self.health.up();
        f(&mut conn)
    }
}

/// [`Db::listen`] on the PostgreSQL URL `url` itself, with no [`Db`]: a thread that calls
/// `on` with each notice, and when listening starts or stops (saying why), until `stop`.
///
/// Fails if the thread cannot be started.
pub fn listen_to(
    url: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
    on: Box<dyn Fn(Listened) + Send + Sync>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let url = url.to_owned();
    std::thread::Builder::new()
        .name("db-listen".into())
        .spawn(move || listen::run(&url, &stop, on.as_ref()))
}

/// Brings the schema up to this build's, holding the write lock so that two processes
/// starting together do not both migrate.
fn migrate(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let mut current = Commit::Durable;
    conn::write_transaction(
        conn,
        Commit::Durable,
        &mut current,
        |conn| -> Result<(), OpError> {
            match conn {
                AnyConnection::Postgres(c) => {
                    diesel::sql_query(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                        .execute(c)?;
                    migrate_with(c, POSTGRES_MIGRATIONS)?;
                }
                AnyConnection::Sqlite(c) => migrate_with(c, SQLITE_MIGRATIONS)?,
            }
            Ok(())
        },
    )
    .map_err(StoreError::from)
}

fn migrate_with<C, DB>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<(), StoreError>
where
    DB: Backend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
{
    let schema = |what: &str, e: &dyn fmt::Display| StoreError::Schema(format!("{what}: {e}"));
    let known: Vec<String> = diesel::migration::MigrationSource::<DB>::migrations(&migrations)
        .map_err(|e| schema("reading this build's migrations", &e))?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let applied = conn
        .applied_migrations()
        .map_err(|e| schema("reading the applied migrations", &e))?;
    if let Some(unknown) = applied
        .iter()
        .map(|v| v.to_string())
        .find(|v| !known.contains(v))
    {
        return Err(StoreError::Schema(format!(
            "the database has migration {unknown}, which this build does not know: \
             a newer Keyhold has upgraded it"
        )));
    }
    conn.run_pending_migrations(migrations)
        .map_err(|e| schema("migrating", &e))?;
    Ok(())
}
impl AuditLog for Db {
    fn audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        self.writer.write(move |tx| changes::audit(tx, &events))
    }

    fn audit_ordered(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        self.writer
            .write_ordered(move |tx| changes::audit(tx, &events))
    }

    fn audit_entries(&self, from: i64, to: i64) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(|conn| read::audit_entries(conn, from, to))
    }

    /// The head as recorded with every append, so entries deleted from the end of the log
    /// do not move it: a checkpoint signed afterwards still names the true head.
    fn audit_head(&self) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        self.read(writer::read_head)
    }

    fn add_checkpoint(
        &self,
        checkpoint: &Checkpoint,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (checkpoint, event) = (checkpoint.clone(), event.clone());
        self.writer
            .write(move |tx| changes::add_checkpoint(tx, &checkpoint, &event))
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.read(read::checkpoints)
    }

    // ---- Revocation (CRLs and OCSP), see `revocation.rs` ----
}

impl IssuanceLedger for Db {
    fn ensure_issuer(&self, id: &IssuerId, der: &[u8]) -> Result<(), StoreError> {
        let (id, der) = (id.as_str().to_owned(), der.to_vec());
        self.writer
            .write(move |tx| changes::ensure_issuer(tx, &id, &der))
    }

    fn reserve(&self, cert: &NewCertificate, event: &AuditEvent) -> Result<(), StoreError> {
        let (cert, event) = (cert.clone(), event.clone());
        // A reservation for an approval request checks the request first: it runs alone.
        let merge = cert
            .request_id
            .is_none()
            .then(|| Mergeable::Reserve(cert.clone()));
        // Ordered, not durable: see `Store::reserve`. The completion's durable commit makes
        // the reservation durable before any certificate is handed out.
        self.writer.append(Commit::Ordered, merge, move |tx| {
            changes::reserve(tx, &cert, &event)
        })
    }

    fn complete(&self, serial: &Serial, der: &[u8], event: &AuditEvent) -> Result<(), StoreError> {
        let (serial, der, event) = (serial.clone(), der.to_vec(), event.clone());
        let merge = Mergeable::Complete {
            serial: serial.clone(),
            der: der.clone(),
        };
        self.writer.append(Commit::Durable, Some(merge), move |tx| {
            changes::complete(tx, &serial, &der, &event)
        })
    }

    fn fail(&self, serial: &Serial, reason: &str, event: &AuditEvent) -> Result<(), StoreError> {
        let (serial, reason, event) = (serial.clone(), reason.to_owned(), event.clone());
        self.writer
            .write(move |tx| changes::fail(tx, &serial, &reason, &event))
    }

    fn reserved(&self) -> Result<Vec<CertificateRow>, StoreError> {
        self.read(read::reserved)
    }

    fn create_request(&self, request: &NewRequest, event: &AuditEvent) -> Result<i64, StoreError> {
        let (request, event) = (request.clone(), event.clone());
        self.writer
            .write(move |tx| changes::create_request(tx, &request, &event))
    }

    fn approve(
        &self,
        id: i64,
        approval: &Approval,
        now: SystemTime,
        event: &AuditEvent,
    ) -> Result<RequestRow, StoreError> {
        let (approval, event) = (approval.clone(), event.clone());
        self.writer
            .write(move |tx| changes::approve(tx, id, &approval, now, &event))
    }

    fn account(&self, name: &str) -> Result<Option<ca_core::users::User>, StoreError> {
        ca_core::users::UserStore::user(self, name)
    }

    fn reject(
        &self,
        id: i64,
        officer: &str,
        reason: &str,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (officer, reason, event) = (officer.to_owned(), reason.to_owned(), event.clone());
        self.writer
            .write(move |tx| changes::reject(tx, id, &officer, &reason, &event))
    }

    fn fail_request(&self, id: i64, reason: &str, event: &AuditEvent) -> Result<(), StoreError> {
        let (reason, event) = (reason.to_owned(), event.clone());
        self.writer
            .write(move |tx| changes::fail_request(tx, id, &reason, &event))
    }
}

impl CertificateQueries for Db {
    fn certificate(&self, serial: &Serial) -> Result<Option<CertificateRow>, StoreError> {
        self.read(|conn| read::certificate(conn, serial))
    }

    /// Newest first; `filter.limit` 0 means the largest page ([`MAX_PAGE`]).
    fn certificates(&self, filter: &CertFilter) -> Result<Vec<CertificateRow>, StoreError> {
        let now = (self.clock)();
        self.read(|conn| read::certificates(conn, filter, now))
    }

    fn counts(
        &self,
        requester: Option<&str>,
        expiring_before: SystemTime,
    ) -> Result<ca_core::store::CertCounts, StoreError> {
        let now = (self.clock)();
        self.read(|conn| read::counts(conn, requester, expiring_before, now))
    }

    fn issued_per_day(
        &self,
        since: SystemTime,
        requester: Option<&str>,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        self.read(|conn| read::issued_per_day(conn, since, requester))
    }

    fn request(&self, id: i64) -> Result<Option<RequestRow>, StoreError> {
        self.read(|conn| read::request(conn, id))
    }

    /// Newest first; `filter.limit` 0 means the largest page ([`MAX_PAGE`]).
    fn requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError> {
        self.read(|conn| read::requests(conn, filter))
    }
}

impl Liveness for Db {
    fn orphans(&self, now: SystemTime) -> Result<Vec<Orphan>, StoreError> {
        let own = self.node.get().map(|n| n.instance.clone());
        self.read(|conn| {
            nodes::orphans(
                conn,
                own.as_deref(),
                now,
                ca_core::cluster::DEAD_AFTER,
                ca_core::issuance::ABANDONED_AFTER,
            )
        })
    }
}

impl Publication for Db {
    fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.writer
            .write(move |tx| publication::take_lease(tx, &name, &holder, now, ttl))
    }

    fn put_crl(&self, issuer: &str, crl: &SignedCrl) -> Result<bool, StoreError> {
        let (issuer, crl) = (issuer.to_owned(), crl.clone());
        self.writer
            .write(move |tx| publication::put_crl(tx, &issuer, &crl))
    }

    fn stored_crl_number(&self, issuer: &str) -> Result<Option<u64>, StoreError> {
        self.read(|conn| publication::stored_crl_number(conn, issuer).map_err(StoreError::from))
    }

    fn stored_crl(&self, issuer: &str) -> Result<Option<SignedCrl>, StoreError> {
        self.read(|conn| publication::stored_crl(conn, issuer).map_err(StoreError::from))
    }

    fn put_answers(&self, answers: &[StoredAnswer]) -> Result<(), StoreError> {
        let answers = answers.to_vec();
        self.writer
            .write(move |tx| publication::put_answers(tx, &answers))
    }

    fn stored_answer(&self, cert_id: &[u8]) -> Result<Option<StoredAnswer>, StoreError> {
        self.read(|conn| publication::stored_answer(conn, cert_id).map_err(StoreError::from))
    }

    fn answered(&self, serials: &[Serial]) -> Result<Vec<Serial>, StoreError> {
        self.read(|conn| publication::answered(conn, serials).map_err(StoreError::from))
    }

    fn answers_due(
        &self,
        before: SystemTime,
        limit: u32,
    ) -> Result<Vec<(IssuerId, Serial)>, StoreError> {
        self.read(|conn| publication::answers_due(conn, before, limit).map_err(StoreError::from))
    }

    fn drop_stale_answers(&self, now: SystemTime) -> Result<usize, StoreError> {
        self.writer
            .write(move |tx| publication::drop_stale_answers(tx, now))
    }
}

impl RevocationLedger for Db {
    fn revoke(&self, revocation: &Revocation, event: &AuditEvent) -> Result<(), StoreError> {
        let (revocation, event) = (revocation.clone(), event.clone());
        self.writer
            .write(move |tx| revocation::revoke(tx, &revocation, &event))
    }

    fn crl_entries(&self, issuer: &IssuerId, now: SystemTime) -> Result<CrlList, StoreError> {
        self.read(|conn| revocation::crl_entries(conn, issuer.as_str(), now))
    }

    fn revoke_ca(&self, revocation: &CaRevocation, event: &AuditEvent) -> Result<(), StoreError> {
        let (revocation, event) = (revocation.clone(), event.clone());
        self.writer
            .write(move |tx| revocation::revoke_ca(tx, &revocation, &event))
    }

    fn ca_revocations(&self) -> Result<Vec<CaRevocation>, StoreError> {
        self.read(revocation::ca_revocations)
    }

    fn revoked_since(&self, since: SystemTime) -> Result<Vec<(IssuerId, Serial)>, StoreError> {
        self.read(|conn| revocation::revoked_since(conn, since))
    }

    fn revocation_status(
        &self,
        issuer: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<SerialStatus>, StoreError> {
        self.read(|conn| revocation::status(conn, issuer.as_str(), serial))
    }

    fn ca_revocation(
        &self,
        parent: &IssuerId,
        serial: &Serial,
    ) -> Result<Option<CaRevocation>, StoreError> {
        self.read(|conn| revocation::ca_revocation(conn, parent.as_str(), serial))
    }

    fn next_crl_number(
        &self,
        issuer: &IssuerId,
        this_update: SystemTime,
    ) -> Result<u64, StoreError> {
        let issuer = issuer.as_str().to_owned();
        let floor = unix_micros(this_update);
        self.writer
            .write(move |tx| revocation::next_crl_number(tx, &issuer, floor))
    }

    fn numbered_crl_entries(
        &self,
        issuer: &IssuerId,
        this_update: SystemTime,
    ) -> Result<(u64, CrlList), StoreError> {
        let issuer = issuer.as_str().to_owned();
        let floor = unix_micros(this_update);
        self.writer
            .write(move |tx| revocation::numbered_crl_entries(tx, &issuer, floor, this_update))
    }
}
