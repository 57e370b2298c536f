//! Consistent export and import of Keyhold's database, for backups.
//!
//! Invariants:
//! - an export is one instant of the database, never a copy of a file being written:
//!   SQLite through `VACUUM INTO` (SQLite's documented alternative to the backup API for a
//!   live database: it reads in one read transaction while writers carry on and writes a
//!   compact file), PostgreSQL through one `REPEATABLE READ READ ONLY` transaction that
//!   reads every Keyhold table as JSON lines;
//! - the schema version, audit head and time recorded with an export are read from that same
//!   instant;
//! - an import goes only into a database that holds no CA, in one transaction: after a
//!   failure nothing of it is left (PostgreSQL), or the file is never put in place
//!   (SQLite); a backup from a schema newer than this build is refused before anything is
//!   written.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ca_core::store::StoreError;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_migrations::MigrationHarness;

use crate::conn::{AnyConnection, Target};
use crate::{Db, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

/// Keyhold's tables, parents before the tables that refer to them (the migrations' order).
pub const TABLES: &[&str] = &[
    "issuers",
    "requests",
    "approvals",
    "certificates",
    "audit_log",
    "audit_checkpoints",
    "audit_head",
    "revocations",
    "crl_numbers",
    "api_tokens",
    "codesign_keys",
    "codesign_signatures",
    "users",
    "sessions",
    "codesign_bindings",
    "ca_revocations",
    "operations",
    "operation_approvals",
    "issued_daily",
    "acme_nonces",
    "acme_eab_keys",
    "acme_accounts",
    "acme_orders",
    "acme_authzs",
    "acme_challenges",
    "nodes",
    "leases",
    "published_crls",
    "ocsp_answers",
];

/// Rows per PostgreSQL FETCH on export and per INSERT on import.
const BATCH: usize = 2_000;

/// One consistent copy of the database, as files in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
    /// The newest migration applied in the snapshot.
    pub schema_version: String,
    /// The audit chain's head in the snapshot.
    pub audit_head: Option<(i64, [u8; 32])>,
    /// When the snapshot was taken.
    pub taken_at: SystemTime,
    /// Each file, as `(name relative to the snapshot directory, path)`: `keyhold.db` for
    /// SQLite, `TABLE.jsonl` per table for PostgreSQL.
    pub files: Vec<(String, PathBuf)>,
}

/// The newest schema version this build knows (its newest migration).
///
/// Fails only if this build's embedded migrations cannot be read.
pub fn schema_version() -> Result<String, StoreError> {
    Ok(known_versions()?.into_iter().max().unwrap_or_default())
}

fn known_versions() -> Result<Vec<String>, StoreError> {
    use diesel::migration::MigrationSource;
    let list = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
        .map_err(|e| StoreError::Schema(format!("reading this build's migrations: {e}")))?;
    Ok(list
        .iter()
        .map(|m| m.name().version().to_string())
        .collect())
}

/// Refuses a backup whose schema this build does not know (a newer Keyhold made it).
///
/// Fails with [`StoreError::Schema`] naming both versions.
pub fn check_schema(version: &str) -> Result<(), StoreError> {
    let known = known_versions()?;
    if known.iter().any(|v| v == version) {
        Ok(())
    } else {
        Err(StoreError::Schema(format!(
            "the backup's schema version {version} is not one this Keyhold knows (it knows up to {}): restore it with the Keyhold version that made it, or a newer one",
            known.into_iter().max().unwrap_or_default()
        )))
    }
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Nullable<Text>)]
    version: Option<String>,
}

#[derive(QueryableByName)]
struct JsonRow {
    #[diesel(sql_type = Text)]
    row: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn db_err(what: &str) -> impl Fn(diesel::result::Error) -> StoreError + '_ {
    move |e| StoreError::Database(format!("{what}: {e}"))
}

fn io_err(what: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Database(format!("{}: {e}", what.display()))
}

fn newest_applied(conn: &mut AnyConnection) -> Result<String, StoreError> {
    let v: Version =
        diesel::sql_query("SELECT MAX(version) AS version FROM __diesel_schema_migrations")
            .get_result(conn)
            .map_err(db_err("reading the schema version"))?;
    v.version
        .ok_or_else(|| StoreError::Schema("the database has no applied migration".into()))
}

impl Db {
    /// Writes a consistent snapshot of the database into `dir` (an existing, empty, private
    /// directory) and says what it holds.
    ///
    /// Fails with [`StoreError::Database`] if the database cannot be read or `dir` written.
    pub fn snapshot(&self, dir: &Path) -> Result<Snapshot, StoreError> {
        match &self.target {
            Target::Sqlite(_) => self.snapshot_sqlite(dir),
            Target::Postgres(_) => self.snapshot_postgres(dir),
        }
    }

    fn snapshot_sqlite(&self, dir: &Path) -> Result<Snapshot, StoreError> {
        let file = dir.join("keyhold.db");
        let name = file
            .to_str()
            .ok_or_else(|| StoreError::Database(format!("{} is not UTF-8", file.display())))?;
        let taken_at = (self.clock)();
        // A connection of its own: the pool's readers are query-only, and VACUUM INTO
        // counts as a write even though it changes nothing in the live database.
        let mut live = self.target.connect()?;
        diesel::sql_query(format!("VACUUM INTO '{}'", name.replace('\'', "''")))
            .execute(&mut live)
            .map_err(db_err("VACUUM INTO the snapshot"))?;
        // Everything recorded with the snapshot is read from the snapshot itself.
        let mut copy = AnyConnection::Sqlite(
            SqliteConnection::establish(name).map_err(|e| StoreError::Database(e.to_string()))?,
        );
        let schema_version = newest_applied(&mut copy)?;
        let audit_head = crate::writer::read_head(&mut copy)?;
        Ok(Snapshot {
            backend: "sqlite",
            schema_version,
            audit_head,
            taken_at,
            files: vec![("keyhold.db".into(), file)],
        })
    }

    fn snapshot_postgres(&self, dir: &Path) -> Result<Snapshot, StoreError> {
        self.read(|conn| {
            conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .map_err(db_err("starting the snapshot transaction"))?;
            let result = export_postgres(conn, dir, (self.clock)());
            // Read-only: ending it either way changes nothing.
            let _ = conn.batch_execute("ROLLBACK");
            result
        })
    }
}

fn export_postgres(
    conn: &mut AnyConnection,
    dir: &Path,
    taken_at: SystemTime,
) -> Result<Snapshot, StoreError> {
    // The first query fixes the snapshot: everything after reads the same instant.
    let schema_version = newest_applied(conn)?;
    let audit_head = crate::writer::read_head(conn)?;
    let mut files = Vec::new();
    for table in TABLES {
        let name = format!("{table}.jsonl");
        let path = dir.join(&name);
        let file = std::fs::File::create_new(&path).map_err(io_err(&path))?;
        let mut out = BufWriter::new(file);
        conn.batch_execute(&format!(
            "DECLARE keyhold_backup NO SCROLL CURSOR FOR SELECT row_to_json(t)::text AS row FROM {table} t"
        ))
        .map_err(db_err(table))?;
        loop {
            let rows: Vec<JsonRow> =
                diesel::sql_query(format!("FETCH {BATCH} FROM keyhold_backup"))
                    .load(conn)
                    .map_err(db_err(table))?;
            for r in &rows {
                out.write_all(r.row.as_bytes()).map_err(io_err(&path))?;
                out.write_all(b"\n").map_err(io_err(&path))?;
            }
            if rows.len() < BATCH {
                break;
            }
        }
        conn.batch_execute("CLOSE keyhold_backup")
            .map_err(db_err(table))?;
        let file = out
            .into_inner()
            .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        file.sync_all().map_err(io_err(&path))?;
        files.push((name, path));
    }
    Ok(Snapshot {
        backend: "postgres",
        schema_version,
        audit_head,
        taken_at,
        files,
    })
}

/// Puts a snapshot back: `dir` holds the files [`Db::snapshot`] wrote (from an archive),
/// `backend` and `schema_version` are what the backup's manifest says, `url` is the new
/// database (for SQLite, a file that must not exist; for PostgreSQL, a database or schema
/// with no Keyhold data). Afterwards [`Db::open`] migrates it to this build's schema.
///
/// Fails with [`StoreError::Schema`] for a newer schema, [`StoreError::Conflict`] if the
/// target already holds a CA or is of the other backend, [`StoreError::Database`] if it
/// cannot be written; nothing is left half-imported.
pub fn restore(
    dir: &Path,
    backend: &str,
    schema_version: &str,
    url: &str,
) -> Result<(), StoreError> {
    check_schema(schema_version)?;
    let target = Target::parse(url)?;
    if target.backend() != backend {
        return Err(StoreError::Conflict(format!(
            "the backup holds a {backend} database; restore it into a {backend} database, not {}",
            target.backend()
        )));
    }
    match target {
        Target::Sqlite(path) => restore_sqlite(&dir.join("keyhold.db"), &path),
        Target::Postgres(url) => restore_postgres(dir, schema_version, &url),
    }
}

fn restore_sqlite(from: &Path, to: &Path) -> Result<(), StoreError> {
    if to.exists() {
        return Err(StoreError::Conflict(format!(
            "{} exists already: a restore never writes over a database",
            to.display()
        )));
    }
    // Copy beside the target, then rename: the database appears whole or not at all.
    let tmp = to.with_extension("db.restoring");
    std::fs::copy(from, &tmp).map_err(io_err(&tmp))?;
    let done = std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, to));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(to)(e));
    }
    Ok(())
}

fn restore_postgres(dir: &Path, schema_version: &str, url: &str) -> Result<(), StoreError> {
    let mut conn = PgConnection::establish(url)
        .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
    // Bring an empty database to exactly the backup's schema, so its rows fit; Db::open
    // runs the migrations after that one.
    {
        let applied: Vec<String> = conn
            .applied_migrations()
            .map_err(|e| StoreError::Schema(format!("reading the applied migrations: {e}")))?
            .iter()
            .map(|v| v.to_string())
            .collect();
        if applied.iter().any(|v| v.as_str() > schema_version) {
            return Err(StoreError::Conflict(
                "the target database has a newer schema than the backup: restore into an empty database".into(),
            ));
        }
        loop {
            let pending = conn
                .pending_migrations(POSTGRES_MIGRATIONS)
                .map_err(|e| StoreError::Schema(format!("reading migrations: {e}")))?;
            let Some(next) = pending.first() else { break };
            if next.name().version().to_string().as_str() > schema_version {
                break;
            }
            conn.run_migration(next.as_ref())
                .map_err(|e| StoreError::Schema(format!("migrating: {e}")))?;
        }
    }
    conn.transaction::<_, crate::error::OpError, _>(|conn| {
        for table in ["certificates", "audit_log", "requests"] {
            let c: Count = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
                .get_result(conn)
                .map_err(db_err(table))?;
            if c.n > 0 {
                return Err(crate::error::OpError::Store(StoreError::Conflict(format!(
                    "the target database already holds a CA ({} rows in {table}): restore into an empty database",
                    c.n
                ))));
            }
        }
        for table in TABLES {
            import_table(conn, table, &dir.join(format!("{table}.jsonl")))?;
        }
        Ok(reset_sequences(conn)?)
    })
    .map_err(StoreError::from)
}

/// Replaces `table`'s rows with the file's, in batches. A trigger may have filled a table
/// from an earlier one (issued_daily from certificates): the backup's rows are the truth.
fn import_table(conn: &mut PgConnection, table: &str, path: &Path) -> Result<(), StoreError> {
    diesel::sql_query(format!("DELETE FROM {table}"))
        .execute(conn)
        .map_err(db_err(table))?;
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    let flush = |conn: &mut PgConnection, batch: &mut Vec<String>| -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let json = format!("[{}]", batch.join(","));
        diesel::sql_query(format!(
            "INSERT INTO {table} SELECT * FROM json_populate_recordset(NULL::{table}, $1::json)"
        ))
        .bind::<Text, _>(json)
        .execute(conn)
        .map_err(db_err(table))?;
        batch.clear();
        Ok(())
    };
    for line in BufReader::new(file).lines() {
        let line = line.map_err(io_err(path))?;
        if line.is_empty() {
            continue;
        }
        batch.push(line);
        if batch.len() == BATCH {
            flush(conn, &mut batch)?;
        }
    }
    flush(conn, &mut batch)
}

#[derive(QueryableByName)]
struct SerialColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

/// Sets every id sequence past the largest restored id, so new rows never collide.
fn reset_sequences(conn: &mut PgConnection) -> Result<(), StoreError> {
    let columns: Vec<SerialColumn> = diesel::sql_query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'",
    )
    .load(conn)
    .map_err(db_err("listing id sequences"))?;
    for c in columns {
        if !TABLES.contains(&c.table_name.as_str()) {
            continue;
        }
        diesel::sql_query(format!(
            "SELECT setval(pg_get_serial_sequence('{t}', '{col}'), COALESCE(MAX({col}), 1), MAX({col}) IS NOT NULL) FROM {t}",
            t = c.table_name,
            col = c.column_name
        ))
        .execute(conn)
        .map_err(db_err("resetting an id sequence"))?;
    }
    Ok(())
}

impl ca_core::backup::Exporter for Db {
    fn export(&self, dir: &Path) -> Result<ca_core::backup::DbExport, StoreError> {
        let s = self.snapshot(dir)?;
        Ok(ca_core::backup::DbExport {
            backend: s.backend.to_owned(),
            schema_version: s.schema_version,
            audit_head: s.audit_head,
            taken_at: s.taken_at,
            files: s.files,
        })
    }
}
