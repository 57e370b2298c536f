//! What each cell runs on: the issuing CA's key in its store, and a fresh, checked database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{Context, Result, ensure};
use ca_core::ceremony::{self, CaMaterial, CeremonySpec};
use ca_core::issuer::{Issuer, IssuerId, KeyedCert};
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, init_token};
use ca_core::keystore::{KeyStore, Signer};
use ca_core::secret::Secret;
use ca_core::store::{AuditLog, CertFilter, CertStatus, CertificateQueries};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::{Database, Keys, Options};

/// Passphrase of the throwaway embedded token (at least 12 characters).
const EMBEDDED_PASSPHRASE: &str = "keyhold-bench-passphrase";
const SO_PIN: &str = "bench-so-pin";
const USER_PIN: &str = "bench-user-pin";

/// A key store holding a fresh CA hierarchy, and the issuers the CA loads from it.
/// Fields drop in order: signers first, the embedded token's directory last.
pub(crate) struct KeySetup {
    pub(crate) keys: Keys,
    /// Root and issuing CA, as `Ca::new` takes them.
    pub(crate) issuers: Vec<Issuer>,
    /// The issuing CA's id and certificate (DER), for the database-alone writes.
    pub(crate) issuing_id: IssuerId,
    pub(crate) issuing_der: Vec<u8>,
    /// The issuing CA's signer: it signs every certificate, and the raw rate measures it.
    pub(crate) signer: Arc<dyn Signer>,
    _store: Arc<dyn KeyStore>,
    _dir: Option<tempfile::TempDir>,
}

impl KeySetup {
    /// Creates the key store, runs the default key ceremony in it (P-384 root and issuing
    /// CA) and loads the issuers.
    pub(crate) fn new(keys: Keys, options: &Options) -> Result<Self> {
        let (store, dir): (Arc<dyn KeyStore>, _) = match keys {
            Keys::Embedded => {
                let dir = tempfile::Builder::new()
                    .prefix("keyhold-issue-bench-")
                    .tempdir()
                    .context("creating a temporary directory for the embedded token")?;
                let store = EmbeddedKeyStore::create(
                    &dir.path().join("token"),
                    &Secret::new(EMBEDDED_PASSPHRASE.into()),
                    KdfParams::insecure_for_tests(),
                )
                .context("creating the embedded token")?;
                (Arc::new(store), Some(dir))
            }
            Keys::Pkcs11 => {
                ensure!(
                    std::env::var_os("SOFTHSM2_CONF").is_some(),
                    "SOFTHSM2_CONF is not set: run the benchmark through tests/bench/issue, \
                     which creates a throwaway SoftHSM2 token directory (or pass --keys \
                     embedded)"
                );
                let token = format!("keyhold-issue-{}", std::process::id());
                init_token(
                    &options.module,
                    &token,
                    &Secret::new(SO_PIN.into()),
                    &Secret::new(USER_PIN.into()),
                )
                .with_context(|| format!("initialising SoftHSM2 token {token:?}"))?;
                let mut config = Pkcs11Config::new(options.module.clone(), token);
                // A logged-in session per requester, so none waits for one to be opened.
                config.sessions = options.max_threads();
                let store = Pkcs11KeyStore::open(&config, &Secret::new(USER_PIN.into()))
                    .context("opening the pkcs11 key store")?;
                (Arc::new(store), None)
            }
        };
        let hierarchy = ceremony::run(&CeremonySpec::default(), store.as_ref(), SystemTime::now())
            .with_context(|| format!("the key ceremony in the {} key store", keys.id()))?;
        let keyed = |m: &CaMaterial| -> Result<KeyedCert> {
            Ok(KeyedCert {
                cert: m.cert.clone(),
                signer: store.signer(&m.key)?,
            })
        };
        let root = IssuerId::new("root").map_err(anyhow::Error::msg)?;
        let mut issuers = vec![Issuer {
            id: root.clone(),
            parent: None,
            ca: keyed(&hierarchy.root)?,
            ocsp: None,
        }];
        for issuing in &hierarchy.issuing {
            issuers.push(Issuer {
                id: issuing.id.clone(),
                parent: Some(root.clone()),
                ca: keyed(&issuing.ca)?,
                ocsp: Some(keyed(&issuing.ocsp)?),
            });
        }
        let issuing = hierarchy
            .issuing
            .first()
            .context("the default ceremony made no issuing CA")?;
        let signer = store.signer(&issuing.ca.key)?;
        Ok(KeySetup {
            keys,
            issuing_id: issuing.id.clone(),
            issuing_der: issuing.ca.cert.der.clone(),
            issuers,
            signer,
            _store: store,
            _dir: dir,
        })
    }
}

/// Where a fresh database lives; dropping it removes it.
enum Place {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { base: String, schema: String },
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Place::Postgres { base, schema } = self {
            let dropped = PgConnection::establish(base)
                .map_err(|e| e.to_string())
                .and_then(|mut conn| {
                    conn.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = dropped {
                eprintln!("issue-bench: could not drop schema {schema}: {e}");
            }
        }
    }
}

/// A fresh, empty, migrated database. `store` drops before `_place` removes the database.
pub(crate) struct FreshDb {
    pub(crate) store: Arc<db::Db>,
    _place: Place,
}

impl FreshDb {
    pub(crate) fn open(database: Database, options: &Options) -> Result<Self> {
        let (url, place) = match database {
            Database::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("keyhold-issue-bench-db-")
                    .tempdir()
                    .context("creating a temporary directory for the SQLite database")?;
                let url = format!("sqlite://{}", dir.path().join("keyhold.db").display());
                (url, Place::Sqlite(dir))
            }
            Database::Postgres => {
                let base = options.postgres.clone().context(
                    "no PostgreSQL database: run the benchmark through tests/bench/issue, which \
                     starts a throwaway server, pass --postgres URL, or pass --databases sqlite",
                )?;
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let schema = format!(
                    "kh_issue_bench_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                PgConnection::establish(&base)
                    .context("connecting to the PostgreSQL database")?
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .with_context(|| format!("creating schema {schema}"))?;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
                (url, Place::Postgres { base, schema })
            }
        };
        let store = db::Db::open(&url)
            .with_context(|| format!("opening a fresh {} database", database.label()))?;
        Ok(FreshDb {
            store: Arc::new(store),
            _place: place,
        })
    }

    /// The last audit entry's sequence number (0 for an empty log).
    pub(crate) fn audit_seq(&self) -> Result<i64> {
        Ok(self.store.audit_head()?.map_or(0, |(seq, _)| seq))
    }

    /// Checks that the database holds exactly `expected` certificates, every one `valid`
    /// with its DER, and that the audit log grew by two entries per certificate since
    /// `audit_before`.
    pub(crate) fn check(&self, expected: u64, audit_before: i64) -> Result<()> {
        let mut rows = 0u64;
        let mut filter = CertFilter {
            limit: db::MAX_PAGE,
            ..CertFilter::default()
        };
        loop {
            let page = self.store.certificates(&filter)?;
            for row in &page {
                ensure!(
                    row.status == CertStatus::Valid && row.der.is_some(),
                    "certificate {} is {} in the database, not valid with its DER",
                    row.serial,
                    row.status.as_str()
                );
            }
            rows += page.len() as u64;
            match page.last() {
                Some(last) if page.len() as u32 == db::MAX_PAGE => {
                    filter.after = Some((last.created_at, last.serial.clone()));
                }
                _ => break,
            }
        }
        ensure!(
            rows == expected,
            "the database holds {rows} certificates, but {expected} were returned as issued"
        );
        let entries = self.audit_seq()? - audit_before;
        ensure!(
            u64::try_from(entries).ok() == Some(2 * expected),
            "the audit log grew by {entries} entries for {expected} certificates (expected two \
             each: issuance started, certificate issued)"
        );
        Ok(())
    }
}
