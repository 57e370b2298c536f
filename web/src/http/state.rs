//! What every handler shares: the CA, the token store, and the CA certificates as served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use ca_core::apitoken::TokenStore;
use ca_core::issuance::Ca;
use ca_core::keystore::KeyStore;
use ca_core::quorum::OperationStore;
use ca_core::revocation::publish::Publisher;
use ca_core::store::{AuditLog, CertCounts, CertificateQueries, StatusReader, Store};
use ca_core::users::UserStore;

/// One CA certificate in the forms `/ca/...` serves.
#[derive(Debug, Clone)]
pub struct CaFile {
    /// DER.
    pub der: Vec<u8>,
    /// PEM.
    pub pem: String,
    /// This certificate followed by its issuers up to the root, PEM.
    pub chain_pem: String,
}

/// Shared by every worker.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The CA.
    pub ca: Arc<Ca>,
    /// API tokens.
    pub tokens: Arc<dyn TokenStore>,
    /// Readiness probes: the database and the key store.
    pub probes: Arc<Probes>,
    /// CA certificates by issuer id, plus `root`.
    pub ca_files: Arc<HashMap<String, CaFile>>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::http::metrics::Metrics>,
    /// Revocation status, published: OCSP answers, CRLs, and revoking.
    pub publisher: Arc<Publisher>,
    /// The dashboard's counts, computed at most every few seconds.
    pub dashboard_counts: Arc<CountsCache>,
    /// When each API token's use was last audited.
    pub token_uses: Arc<TokenUses>,
    /// Sign-in password checks: their fixed memory, and who is being checked now.
    pub sign_ins: Arc<SignIns>,
    /// Code signing with keys held in the key store.
    pub codesign: Arc<ca_core::codesign::Codesign>,
    /// Approvals sensitive operations need (`[quorum]` in keyhold.toml).
    pub quorum: ca_core::quorum::QuorumPolicy,
    /// Read-only certificate and request queries (lists, pages, the API).
    pub certs: Arc<dyn CertificateQueries>,
    /// The audit log.
    pub audit_log: Arc<dyn AuditLog>,
    /// Revocation statuses.
    pub statuses: Arc<dyn StatusReader>,
    /// People who sign in to the UI, and their sessions.
    pub users: Arc<dyn UserStore>,
    /// Operations under quorum.
    pub operations: Arc<dyn OperationStore>,
    /// The whole database, only where one act spans ports: approving an operation counts
    /// the officers' accounts again, and carrying one out revokes and audits.
    pub ledger: Arc<dyn Store>,
    /// Signs audit checkpoints on a schedule (`[audit]` in keyhold.toml), if configured.
    pub checkpointer: Option<ca_core::audit::Checkpointer>,
    /// What scheduled backups did last (`[backup] every`), if they are scheduled.
    pub backups: Option<Arc<crate::backups::Status>>,
    /// ACME (`[acme] enabled = true`), if enabled.
    pub acme: Option<Arc<crate::http::acme::Acme>>,
}

/// How long a database write probe's result is reused.
const WRITE_PROBE_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a signing probe's result is reused.
const SIGN_PROBE_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks for `/readyz`.
#[derive(Debug)]
pub struct Probes {
    /// The database.
    pub db: Arc<db::Db>,
    /// The key store.
    pub keys: Arc<dyn KeyStore>,
    /// A key the probe signs with (an OCSP responder's, else a CA's): listing keys can
    /// succeed from a module's cache while signing fails.
    pub signer: Option<Arc<dyn ca_core::keystore::Signer>>,
    /// The last signing probe, reused for [`SIGN_PROBE_FOR`] so that `/readyz`, which anyone
    /// may call, cannot keep the key store busy.
    pub last_sign: std::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// The last database write probe, reused for [`WRITE_PROBE_FOR`], for the same reason.
    pub last_write: std::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl Probes {
    /// A write to the database: this node's heartbeat, committed through the connection
    /// every change uses (issue 20: a `SELECT 1` passes on a full disk or a read-only
    /// standby, where every write fails). Fails at once while the database is known down.
    ///
    /// Fails if the database cannot be written.
    pub fn database(&self) -> Result<(), String> {
        if let Ok(last) = self.last_write.lock()
            && let Some((at, result)) = last.as_ref()
            && at.elapsed() < WRITE_PROBE_FOR
        {
            return result.clone();
        }
        let result = self.db.heartbeat().map_err(|e| e.to_string());
        if let Ok(mut last) = self.last_write.lock() {
            *last = Some((std::time::Instant::now(), result.clone()));
        }
        result
    }

    /// Asks the key store for its keys.
    ///
    /// Fails if the key store cannot be reached.
    pub fn key_store(&self) -> Result<(), String> {
        self.keys.list().map_err(|e| e.to_string())?;
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        if let Ok(last) = self.last_sign.lock()
            && let Some((at, result)) = last.as_ref()
            && at.elapsed() < SIGN_PROBE_FOR
        {
            return result.clone();
        }
        let result = signer
            .sign(b"keyhold readiness probe")
            .map(|_| ())
            .map_err(|e| format!("the key store cannot sign: {e}"));
        if let Ok(mut last) = self.last_sign.lock() {
            *last = Some((std::time::Instant::now(), result.clone()));
        }
        result
    }
}

impl AppState {
    /// Assembles the state; precomputes every CA certificate's PEM and chain.
    ///
    /// Fails if a CA certificate cannot be encoded as PEM or the OCSP responder cannot be
    /// set up.
    pub fn new(
        ca: Arc<Ca>,
        db: Arc<db::Db>,
        keys: Arc<dyn KeyStore>,
        metrics: Arc<crate::http::metrics::Metrics>,
        times: crate::config::RevocationTimes,
    ) -> Result<Self> {
        let mut files = HashMap::new();
        let issuers = ca.issuers();
        for issuer in issuers {
            let mut chain_pem = String::new();
            for i in ca_core::issuer::ancestry(issuers, issuer) {
                chain_pem.push_str(&i.ca.cert.to_pem()?);
            }
            let file = CaFile {
                der: issuer.ca.cert.der.clone(),
                pem: issuer.ca.cert.to_pem()?,
                chain_pem,
            };
            if issuer.parent.is_none() && !files.contains_key("root") {
                files.insert("root".to_owned(), file.clone());
            }
            files.insert(issuer.id.as_str().to_owned(), file);
        }
        let ocsp = ca_core::revocation::ocsp::OcspResponder::new(
            issuers,
            db.clone(),
            times.ocsp_validity,
        )?;
        let codesign = ca_core::codesign::Codesign::new(
            keys.clone(),
            db.clone(),
            ca.profiles().to_vec(),
            issuers.to_vec(),
        );
        let probe_signer = issuers
            .iter()
            .find_map(|i| i.ocsp.as_ref())
            .map(|o| o.signer.clone())
            .or_else(|| issuers.first().map(|i| i.ca.signer.clone()));
        Ok(AppState {
            codesign: Arc::new(codesign),
            publisher: Arc::new(Publisher::new(
                Arc::new(ocsp),
                db.clone(),
                issuers.to_vec(),
                times.crl_validity,
            )),
            dashboard_counts: Arc::default(),
            token_uses: Arc::default(),
            sign_ins: Arc::new(SignIns::new(SIGN_IN_SLOTS)),
            ca,
            quorum: ca_core::quorum::QuorumPolicy::default(),
            certs: db.clone(),
            audit_log: db.clone(),
            statuses: db.clone(),
            users: db.clone(),
            operations: db.clone(),
            ledger: db.clone(),
            checkpointer: None,
            backups: None,
            acme: None,
            tokens: db.clone(),
            probes: Arc::new(Probes {
                db,
                keys,
                signer: probe_signer,
                last_sign: std::sync::Mutex::new(None),
                last_write: std::sync::Mutex::new(None),
            }),
            ca_files: Arc::new(files),
            metrics,
        })
    }
}

/// When each token was last audited as used, from each address: `token.used` is written for
/// the first request of a minute, not for every request (reads would each cost a write;
/// every change a token makes has its own audit entry naming it).
#[derive(Debug, Default)]
pub struct TokenUses {
    last: Mutex<HashMap<(String, String), Instant>>,
}

/// How often a token's use from one address is audited at most.
const TOKEN_USE_WINDOW: Duration = Duration::from_secs(60);
/// Pairs remembered at most; older ones are forgotten first when full.
const TOKEN_USE_PAIRS: usize = 10_000;

impl TokenUses {
    /// Whether this is the first use of `token` from `source` in [`TOKEN_USE_WINDOW`] (and
    /// so must be audited); records it.
    pub fn first_this_minute(&self, token: &str, source: &str) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return true; // a poisoned lock: audit rather than skip
        };
        let key = (token.to_owned(), source.to_owned());
        if last
            .get(&key)
            .is_some_and(|at| at.elapsed() < TOKEN_USE_WINDOW)
        {
            return false;
        }
        if last.len() >= TOKEN_USE_PAIRS {
            last.retain(|_, at| at.elapsed() < TOKEN_USE_WINDOW);
        }
        // Still full of fresh pairs: audit this use without remembering it.
        if last.len() < TOKEN_USE_PAIRS {
            last.insert(key, Instant::now());
        }
        true
    }
}

/// How long the dashboard's counts are reused. Counting a million certificates takes tens of
/// milliseconds per count: a dashboard left open by many operators should not do it on
/// every load.
const COUNTS_FOR: Duration = Duration::from_secs(10);
/// The most requesters whose own counts are kept.
const COUNTS_KEPT: usize = 1_000;

/// The dashboard's counts, by requester (`None`: everyone's), each reused for
/// [`COUNTS_FOR`].
#[derive(Debug, Default)]
pub struct CountsCache {
    counts: std::sync::Mutex<std::collections::HashMap<Option<String>, (Instant, CertCounts)>>,
}

impl CountsCache {
    /// `requester`'s counts, from `count` if those kept are older than [`COUNTS_FOR`].
    ///
    /// Fails if `count` does.
    pub fn get<E>(
        &self,
        requester: Option<&str>,
        count: impl FnOnce() -> Result<CertCounts, E>,
    ) -> Result<CertCounts, E> {
        let key = requester.map(str::to_owned);
        if let Ok(counts) = self.counts.lock()
            && let Some((at, c)) = counts.get(&key)
            && at.elapsed() < COUNTS_FOR
        {
            return Ok(*c);
        }
        let fresh = count()?;
        if let Ok(mut counts) = self.counts.lock() {
            if counts.len() >= COUNTS_KEPT {
                counts.retain(|_, (at, _)| at.elapsed() < COUNTS_FOR);
            }
            if counts.len() < COUNTS_KEPT {
                counts.insert(key, (Instant::now(), fresh));
            }
        }
        Ok(fresh)
    }
}

/// How many sign-in password checks may run at once (each holds 19 MiB for Argon2id, from
/// a pool allocated once).
pub const SIGN_IN_SLOTS: usize = 4;

/// Sign-in checks: at most [`SIGN_IN_SLOTS`] at once, each in a work buffer from a fixed
/// pool, and at most one at a time per source address (IPv6: per /64) and per account name,
/// so a flood from one place holds one slot and never denies sign-in to others.
#[derive(Debug)]
pub struct SignIns {
    /// Argon2id's work buffers.
    pub memory: Arc<ca_core::users::PasswordMemory>,
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Why a sign-in was not checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInBusy {
    /// A sign-in from the same address, or for the same name, is being checked.
    Same,
    /// Every slot is in use.
    Full,
}

/// A sign-in being checked: its keys and its buffer, given back when dropped.
#[derive(Debug)]
pub struct SignInTicket {
    owner: Arc<SignIns>,
    keys: [String; 2],
    /// The buffer Argon2id computes in.
    pub buffer: ca_core::users::Buffer,
}

impl SignIns {
    /// A pool of `slots` buffers.
    pub fn new(slots: usize) -> Self {
        SignIns {
            memory: ca_core::users::PasswordMemory::new(slots),
            in_flight: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// A ticket to check a sign-in for `name` from `ip`, or why not now.
    pub fn try_start(
        self: &Arc<Self>,
        ip: Option<std::net::IpAddr>,
        name: &str,
    ) -> Result<SignInTicket, SignInBusy> {
        let source = match ip {
            Some(std::net::IpAddr::V6(v6)) => {
                let s = v6.segments();
                format!("src:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Some(ip) => format!("src:{ip}"),
            None => "src:unknown".to_owned(),
        };
        let name: String = name.chars().take(64).collect::<String>().to_lowercase();
        let keys = [source, format!("name:{name}")];
        let mut in_flight = self.in_flight.lock().map_err(|_| SignInBusy::Full)?;
        if keys.iter().any(|k| in_flight.contains(k)) {
            return Err(SignInBusy::Same);
        }
        let buffer = self.memory.try_take().ok_or(SignInBusy::Full)?;
        for k in &keys {
            in_flight.insert(k.clone());
        }
        Ok(SignInTicket {
            owner: self.clone(),
            keys,
            buffer,
        })
    }
}

impl Drop for SignInTicket {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.owner.in_flight.lock() {
            for k in &self.keys {
                in_flight.remove(k);
            }
        }
    }
}
