//! The databases the issuance tests run on: SQLite always, PostgreSQL when
//! `KEYHOLD_TEST_DATABASE_URL` names one (`.ci/test` starts a throwaway server and sets it).
//! Without it the PostgreSQL half is skipped with a loud message, unless
//! `KEYHOLD_REQUIRE_ALL_BACKENDS=1`: then it fails, so CI cannot pass without PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ca_core::store::Store;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

pub struct Database {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    _place: Place,
}

pub enum Place {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { base: String, schema: String },
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Place::Postgres { base, schema } = self
            && let Ok(mut conn) = PgConnection::establish(base)
        {
            let _ = conn.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
        }
    }
}

pub fn sqlite() -> Database {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyhold.db").display());
    Database {
        name: "sqlite",
        store: Arc::new(db::Db::open(&url).unwrap()),
        _place: Place::Sqlite(dir),
    }
}

/// A fresh, empty PostgreSQL schema and its URL (nothing opened yet).
pub fn postgres_url() -> Option<(String, Place)> {
    let Some(base) = std::env::var("KEYHOLD_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("KEYHOLD_REQUIRE_ALL_BACKENDS").map_or(true, |v| v != "1"),
            "KEYHOLD_TEST_DATABASE_URL is not set but KEYHOLD_REQUIRE_ALL_BACKENDS=1 requires \
             PostgreSQL: run .ci/test, which starts a throwaway server"
        );
        eprintln!(
            "\n*** SKIPPING PostgreSQL: KEYHOLD_TEST_DATABASE_URL is not set (run .ci/test) ***\n"
        );
        return None;
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 4];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    let schema = format!(
        "kh_web_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        hex::encode(random)
    );
    PgConnection::establish(&base)
        .unwrap_or_else(|e| panic!("cannot reach KEYHOLD_TEST_DATABASE_URL: {e}"))
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    Some((url, Place::Postgres { base, schema }))
}

pub fn postgres() -> Option<Database> {
    let (url, place) = postgres_url()?;
    let store: Arc<dyn Store> = Arc::new(db::Db::open(&url).unwrap());
    // Keep the schema until the store is gone: `_place` drops after `store`.
    Some(Database {
        name: "postgres",
        store,
        _place: place,
    })
}

/// Every database to run on.
pub fn databases() -> Vec<Database> {
    let mut all = vec![sqlite()];
    all.extend(postgres());
    all
}
