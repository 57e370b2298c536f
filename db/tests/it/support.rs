//! The two backends every test runs on, and helpers to build rows and events.
//!
//! PostgreSQL: each test gets its own schema (dropped afterwards) in the database named by
//! `KEYHOLD_TEST_DATABASE_URL`. Without that variable the PostgreSQL half is skipped with a
//! message, unless `KEYHOLD_REQUIRE_ALL_BACKENDS=1`: then it fails, so CI cannot pass without
//! testing PostgreSQL.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ca_core::audit::{Action, AuditEvent};
use ca_core::issuer::IssuerId;
use ca_core::store::{IssuanceLedger, NewCertificate, NewRequest, Serial};
use db::Db;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};

/// Runs each named test function (taking `&Backend`) on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&crate::support::sqlite()); } )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(backend) = crate::support::postgres() {
                        super::$name(&backend);
                    }
                }
            )*
        }
    };
}

/// The time every test starts at: 2025-01-01T00:00:00Z.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_689_600)
}

/// A clock the test sets.
#[derive(Clone)]
pub struct TestClock(Arc<Mutex<SystemTime>>);

impl TestClock {
    pub fn set(&self, t: SystemTime) {
        *self.0.lock().unwrap() = t;
    }
    pub fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// A test's database: the store, its clock, and raw SQL access for tampering.
pub struct Backend {
    pub name: &'static str,
    pub db: Db,
    pub clock: TestClock,
    pub url: String,
    // Dropped after `db`: removes the schema or directory.
    _place: Place,
}

enum Place {
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

impl Backend {
    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        self.name == "postgres"
    }

    /// Runs raw SQL on a connection of its own, outside Keyhold.
    pub fn exec(&self, sql: &str) {
        let result = if self.is_postgres() {
            PgConnection::establish(&self.url)
                .unwrap()
                .batch_execute(sql)
        } else {
            SqliteConnection::establish(self.url.trim_start_matches("sqlite://"))
                .unwrap()
                .batch_execute(sql)
        };
        result.unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.name));
    }

    /// A binary literal in this backend's SQL.
    pub fn blob(&self, bytes: &[u8]) -> String {
        if self.is_postgres() {
            format!("'\\x{}'::bytea", hex::encode(bytes))
        } else {
            format!("X'{}'", hex::encode(bytes))
        }
    }

    /// Opens another handle on the same database, as a second process would.
    pub fn reopen(&self) -> Db {
        Db::open(&self.url).unwrap()
    }
}

/// A string literal in SQL.
pub fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn clock() -> (TestClock, db::Clock) {
    let clock = TestClock(Arc::new(Mutex::new(t0())));
    let reader = clock.clone();
    (clock, Arc::new(move || reader.now()))
}

pub fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("keyhold.db");
    let url = format!("sqlite://{}", path.display());
    let (clock, clock_fn) = clock();
    let db = Db::open_with_clock(&url, clock_fn).unwrap();
    Backend {
        name: "sqlite",
        db,
        clock,
        url,
        _place: Place::Sqlite(dir),
    }
}

fn required() -> bool {
    std::env::var("KEYHOLD_REQUIRE_ALL_BACKENDS").is_ok_and(|v| v == "1")
}

/// A fresh schema in the test database; `None` (after a loud message) means skip.
pub fn postgres() -> Option<Backend> {
    let Some(base) = std::env::var("KEYHOLD_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            !required(),
            "KEYHOLD_TEST_DATABASE_URL is not set but KEYHOLD_REQUIRE_ALL_BACKENDS=1 requires \
             the PostgreSQL backend: run .ci/test, which starts a throwaway server"
        );
        eprintln!(
            "\n*** SKIPPING the PostgreSQL half of this test: KEYHOLD_TEST_DATABASE_URL is not \
             set (run .ci/test, or point it at a database you can create schemas in) ***\n"
        );
        return None;
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 4];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    let schema = format!(
        "kh_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        hex::encode(random)
    );
    PgConnection::establish(&base)
        .unwrap_or_else(|e| panic!("cannot reach KEYHOLD_TEST_DATABASE_URL: {e}"))
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let place = Place::Postgres {
        base: base.clone(),
        schema: schema.clone(),
    };
    // libpq's `options` runs `SET search_path` for every connection of this test.
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let (clock, clock_fn) = clock();
    let db = Db::open_with_clock(&url, clock_fn).unwrap();
    Some(Backend {
        name: "postgres",
        db,
        clock,
        url,
        _place: place,
    })
}

pub const ISSUER: &str = "test-ca";

pub fn issuer_id() -> IssuerId {
    IssuerId::new(ISSUER).unwrap()
}

/// Records the test issuer.
pub fn with_issuer(b: &Backend) {
    b.db.ensure_issuer(&issuer_id(), b"issuer certificate DER")
        .unwrap();
}

pub fn serial(n: u64) -> Serial {
    Serial::from_bytes(&(0x4000_0000_0000_0000 | n).to_be_bytes())
}

pub fn new_cert(serial: &Serial) -> NewCertificate {
    NewCertificate {
        serial: serial.clone(),
        issuer: issuer_id(),
        profile: "tls-server".into(),
        requester: "alice".into(),
        subject: format!("CN=host-{serial}.internal"),
        sans: format!("DNS:host-{serial}.internal"),
        not_before: t0(),
        not_after: t0() + Duration::from_secs(90 * 86_400),
        request_id: None,
    }
}

pub fn event(action: Action, object: &str) -> AuditEvent {
    AuditEvent::new(action, "alice", "cli", object)
}

pub fn cert_event(action: Action, serial: &Serial) -> AuditEvent {
    event(action, &format!("certificate:{serial}"))
}

/// Reserves and completes `serial`.
pub fn issue(b: &Backend, serial: &Serial) {
    b.db.reserve(
        &new_cert(serial),
        &cert_event(Action::IssuanceStarted, serial),
    )
    .unwrap();
    b.db.complete(
        serial,
        format!("DER of {serial}").as_bytes(),
        &cert_event(Action::CertificateIssued, serial),
    )
    .unwrap();
}

pub fn new_request(requester: &str) -> NewRequest {
    NewRequest {
        profile: "code-signing".into(),
        requester: requester.into(),
        csr_der: b"CSR DER".to_vec(),
        subject: "CN=Release signing".into(),
        sans: String::new(),
        approvals_needed: 2,
        expires_at: t0() + Duration::from_secs(86_400),
    }
}

/// Records a request by `requester` needing two approvals; returns its id.
pub fn request(b: &Backend, requester: &str) -> i64 {
    b.db.create_request(&new_request(requester), &event(Action::RequestReceived, ""))
        .unwrap()
}
