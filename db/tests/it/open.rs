//! Opening a database: URLs, migrations, the schema version, readiness.

use ca_core::audit::Action;
use ca_core::store::{AuditLog, CertificateQueries, StoreError};
use db::Db;
use diesel::{Connection, RunQueryDsl, SqliteConnection};

use crate::support::*;

on_both_backends!(
    reopening_keeps_the_data_and_migrates_nothing_twice,
    a_database_upgraded_by_a_newer_build_is_refused,
    ping_answers_and_backend_names_the_backend,
);

fn reopening_keeps_the_data_and_migrates_nothing_twice(b: &Backend) {
    with_issuer(b);
    issue(b, &serial(1));
    let again = b.reopen();
    assert!(again.certificate(&serial(1)).unwrap().is_some());
    assert_eq!(again.audit_head().unwrap(), b.db.audit_head().unwrap());
}

fn a_database_upgraded_by_a_newer_build_is_refused(b: &Backend) {
    b.exec("INSERT INTO __diesel_schema_migrations (version) VALUES ('99991231000000')");
    let err = Db::open(&b.url).unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    assert!(err.to_string().contains("99991231000000"), "{err}");
}

fn ping_answers_and_backend_names_the_backend(b: &Backend) {
    b.db.ping().unwrap();
    assert_eq!(b.db.backend(), b.name);
}

#[derive(diesel::QueryableByName)]
struct Mode {
    #[diesel(sql_type = diesel::sql_types::Text)]
    journal_mode: String,
}

#[test]
fn a_sqlite_file_is_created_in_wal_mode_from_a_bare_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bare.db");
    let db = Db::open(path.to_str().unwrap()).unwrap();
    assert_eq!(db.backend(), "sqlite");
    db.audit(&[event(Action::CaInitialised, "x")]).unwrap();
    let mut raw = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    let mode: Vec<Mode> = diesel::sql_query("PRAGMA journal_mode")
        .load(&mut raw)
        .unwrap();
    assert_eq!(mode[0].journal_mode, "wal");
}

#[test]
fn a_sqlite_file_in_a_missing_directory_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/missing/keyhold.db", dir.path().display());
    let err = Db::open(&url).unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn an_unknown_scheme_is_refused() {
    let err = Db::open("postgress://keyhold@localhost/keyhold").unwrap_err();
    assert!(err.to_string().contains("scheme"), "{err}");
}

#[test]
fn an_unreachable_postgres_fails_with_a_database_error() {
    // Port 1 on the loopback address: nothing listens there.
    let err = Db::open("postgres://keyhold@127.0.0.1:1/keyhold?connect_timeout=2").unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
}
