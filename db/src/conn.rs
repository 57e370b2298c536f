//! Connections: one diesel connection type for both backends, opened from an explicit URL.

use std::path::PathBuf;
use std::time::Duration;

use ca_core::store::StoreError;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};

/// Both backends behind one type, so every query is written once. SQLite comes last, as
/// diesel's docs advise: its `establish` accepts any string as a file name.
#[derive(diesel::MultiConnection)]
pub(crate) enum AnyConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// How long a SQLite connection waits for another process's write lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the database is, parsed from the URL given to [`crate::Db::open`].
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            // The URL may carry a password.
            Target::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

impl Target {
    /// `sqlite://PATH`, a bare path, or `postgres://` / `postgresql://`. Any other scheme is
    /// refused, so a typo in a PostgreSQL URL never creates a new SQLite file.
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres(url.to_owned()));
        }
        let path = match url.strip_prefix("sqlite://") {
            Some(path) => path,
            None if url.contains("://") => {
                let scheme = url.split("://").next().unwrap_or_default();
                return Err(StoreError::Database(format!(
                    "unsupported database URL scheme {scheme:?}: use sqlite://PATH or postgres://..."
                )));
            }
            None => url,
        };
        // One file shared by every connection: an in-memory or URI-named database is not.
        if path.is_empty() || path.starts_with(':') || path.starts_with("file:") {
            return Err(StoreError::Database(format!(
                "{url:?} names no SQLite file: use sqlite://PATH"
            )));
        }
        Ok(Target::Sqlite(PathBuf::from(path)))
    }

    /// "sqlite" or "postgres".
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
        }
    }

    /// Opens a connection set up for Keyhold: on SQLite, WAL, foreign keys, full sync and a
    /// busy timeout.
    pub(crate) fn connect(&self) -> Result<AnyConnection, StoreError> {
        match self {
            Target::Postgres(url) => PgConnection::establish(url)
                .map(AnyConnection::Postgres)
                .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}"))),
            Target::Sqlite(path) => {
                let name = path.to_str().ok_or_else(|| {
                    StoreError::Database(format!("{} is not a UTF-8 path", path.display()))
                })?;
                let mut conn = SqliteConnection::establish(name).map_err(|e| {
                    StoreError::Database(format!("cannot open {}: {e}", path.display()))
                })?;
                // synchronous=FULL: WAL is synced at every commit, so a call that returned
                // survives power loss, not only a crash of the process.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {};
                     PRAGMA foreign_keys = ON;
                     PRAGMA synchronous = FULL;",
                    SQLITE_BUSY_TIMEOUT.as_millis()
                ))
                .map_err(|e| StoreError::Database(format!("setting up {}: {e}", path.display())))?;
                let mode = journal_mode_wal(&mut conn)
                    .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(StoreError::Database(format!(
                        "{} cannot use write-ahead logging (journal mode stays {mode:?})",
                        path.display()
                    )));
                }
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

#[derive(diesel::QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = diesel::sql_types::Text)]
    journal_mode: String,
}

/// Switches the file to WAL (a property of the file, kept across connections) and returns
/// the mode now in force.
fn journal_mode_wal(conn: &mut SqliteConnection) -> diesel::QueryResult<String> {
    let rows: Vec<JournalMode> = diesel::sql_query("PRAGMA journal_mode = WAL").load(conn)?;
    Ok(rows
        .into_iter()
        .next()
        .map(|r| r.journal_mode)
        .unwrap_or_default())
}

/// Begins a write transaction. SQLite: `BEGIN IMMEDIATE`, which takes the file's write lock
/// at once (a deferred transaction that reads and then writes can fail with SQLITE_BUSY
/// instead of waiting). PostgreSQL: `BEGIN`, with `SET LOCAL synchronous_commit = off` in
/// the same message for an ordered commit (one round trip, not two); callers then lock
/// `audit_head`.
fn begin_write(conn: &mut AnyConnection, commit: Commit) -> diesel::QueryResult<()> {
    match (conn, commit) {
        (AnyConnection::Sqlite(c), _) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        (AnyConnection::Postgres(c), Commit::Durable) => {
            AnsiTransactionManager::begin_transaction(c)
        }
        (AnyConnection::Postgres(c), Commit::Ordered) => {
            let begun = AnsiTransactionManager::begin_transaction_sql(
                c,
                "BEGIN; SET LOCAL synchronous_commit = off",
            );
            if begun.is_err() {
                // The BEGIN may have run and the SET failed: diesel counts no transaction,
                // so end the server's, or the connection stays in a failed one.
                let _ = c.batch_execute("ROLLBACK");
            }
            begun
        }
    }
}

/// When a commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Once the change is on disk: it survives a crash of the process or the machine.
    Durable,
    /// Once the change is visible and ordered in the log, before it is on disk. A crash may
    /// lose it, but only together with every change committed after it: both databases
    /// replay their log as a prefix (SQLite's WAL, PostgreSQL's WAL with
    /// `synchronous_commit = off`), and the next durable commit makes it durable too.
    Ordered,
}

/// Makes the next transaction's commit `commit`. SQLite: `synchronous` is a setting of the
/// connection, switched outside a transaction (`current` remembers it, to switch only when
/// it changes). PostgreSQL: nothing here; an ordered commit's `BEGIN` carries a `SET LOCAL`
/// (see `begin_write`).
fn set_commit(
    conn: &mut AnyConnection,
    commit: Commit,
    current: &mut Commit,
) -> diesel::QueryResult<()> {
    if let AnyConnection::Sqlite(c) = conn
        && *current != commit
    {
        c.batch_execute(match commit {
            Commit::Durable => "PRAGMA synchronous = FULL",
            Commit::Ordered => "PRAGMA synchronous = NORMAL",
        })?;
        *current = commit;
    }
    Ok(())
}

/// Runs `f` in a write transaction: commits if it returns `Ok`, rolls back otherwise.
/// Nested `conn.transaction` calls inside `f` become savepoints. `commit` says whether the
/// commit waits for the disk; `current` is the connection's SQLite setting (a fresh
/// connection is [`Commit::Durable`]).
pub(crate) fn write_transaction<T, E>(
    conn: &mut AnyConnection,
    commit: Commit,
    current: &mut Commit,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    type Manager = <AnyConnection as Connection>::TransactionManager;
    set_commit(conn, commit, current)?;
    begin_write(conn, commit)?;
    match f(conn) {
        Ok(value) => {
            if let Err(e) = Manager::commit_transaction(conn) {
                // A failed commit may leave the transaction open; the caller drops this
                // connection anyway, but try to leave it clean.
                let _ = Manager::rollback_transaction(conn);
                return Err(e.into());
            }
            Ok(value)
        }
        Err(e) => {
            Manager::rollback_transaction(conn)?;
            Err(e)
        }
    }
}

/// Whether the connection can no longer be used (a transaction it could not end), when it
/// should be in none.
pub(crate) fn is_broken(conn: &mut AnyConnection) -> bool {
    <AnyConnection as Connection>::TransactionManager::is_broken_transaction_manager(conn)
}

/// Whether diesel gave up on the open transaction (a savepoint it could not end).
pub(crate) fn transaction_failed(conn: &mut AnyConnection) -> bool {
    <AnyConnection as Connection>::TransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .is_err()
}

/// Hands out read-only connections for reads.
#[derive(Debug)]
pub(crate) struct Manager {
    pub(crate) target: Target,
}

impl r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = StoreError;

    fn connect(&self) -> Result<AnyConnection, StoreError> {
        let mut conn = self.target.connect()?;
        // Every change goes through the writer with its audit entry: a read connection that
        // could write would be a way around that.
        let read_only = match &mut conn {
            AnyConnection::Sqlite(c) => c.batch_execute("PRAGMA query_only = ON"),
            AnyConnection::Postgres(c) => {
                c.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            }
        };
        read_only.map_err(|e| StoreError::Database(format!("making a reader read-only: {e}")))?;
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        ping(conn)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        is_broken(conn)
    }
}

/// A round trip to the database.
pub(crate) fn ping(conn: &mut AnyConnection) -> Result<(), StoreError> {
    conn.batch_execute("SELECT 1")
        .map_err(|e| StoreError::Database(format!("ping: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend_explicitly() {
        assert_eq!(
            Target::parse("sqlite:///var/lib/keyhold/db.sqlite").unwrap(),
            Target::Sqlite(PathBuf::from("/var/lib/keyhold/db.sqlite"))
        );
        assert_eq!(
            Target::parse("sqlite://keyhold.db").unwrap(),
            Target::Sqlite(PathBuf::from("keyhold.db"))
        );
        assert_eq!(
            Target::parse("data/keyhold.db").unwrap(),
            Target::Sqlite(PathBuf::from("data/keyhold.db"))
        );
        assert_eq!(
            Target::parse("postgres://u@localhost/k").unwrap().backend(),
            "postgres"
        );
        assert_eq!(
            Target::parse("postgresql://u@localhost/k")
                .unwrap()
                .backend(),
            "postgres"
        );
    }

    #[test]
    fn refuses_a_misspelt_scheme_instead_of_creating_a_file() {
        for url in [
            "postgress://u@h/db",
            "mysql://h/db",
            "sqlite://",
            ":memory:",
            "sqlite://:memory:",
            "file:x.db",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn debug_hides_the_postgres_url() {
        let t = Target::parse("postgres://u:secret@h/db").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
    }
}
