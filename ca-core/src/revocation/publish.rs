//! Publishing revocation status: OCSP answers signed ahead of time and served from memory,
//! the latest CRL of each issuer, and the one step that follows a revocation. Every
//! interface (API, UI) revokes through [`Publisher::revoke`], so none can forget to publish;
//! revocations made by other processes (the CLI, another node) are picked up by the
//! [`Presigner`] within [`presign::POLL`].
//!
//! Invariants:
//! - a request with one CertID and no nonce (what browsers, openssl `-no_nonce`, Go and
//!   Windows send) for an answer already signed touches neither the key store nor the
//!   database;
//! - answers are served until their nextUpdate, so OCSP keeps answering from what was signed
//!   before while the key store is away; after a revocation whose answer cannot be signed,
//!   the old answers are dropped, so nobody is told `good` (they get `tryLater`);
//! - answers about serials this CA never issued are held apart from its own certificates'
//!   answers, in a small store that replaces old entries, and signed on demand from a
//!   budget of their own: a flood of questions about random serials cannot displace this
//!   CA's answers or starve the signing of a certificate issued or revoked a second ago.

mod answers;
mod builder;
mod crls;
pub mod presign;
pub mod shared;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use self::answers::{AnswerStore, Budget, Held};
pub use self::builder::CrlBuilder;
pub use self::crls::CRL_REFRESH;
use self::crls::{CrlCache, Shared};
pub use self::presign::Presigner;
use self::shared::{Notice, Publication};
use crate::issuer::{Issuer, IssuerId};
use crate::revocation::crl::SignedCrl;
use crate::revocation::ocsp::{self, OcspResponder, ResponseStatus};
use crate::revocation::{Revocation, RevocationError, RevokeRequest, revoke};
use crate::store::{Serial, Store, StoreError};

/// The most answers about this CA's certificates held: two per certificate (its SHA-1 and
/// SHA-256 CertIDs), about 1 KiB each with the responder certificate.
pub const ANSWERS_HELD: usize = 250_000;
/// The most answers about serials this CA never issued held (about 10 MiB).
pub const STRANGERS_HELD: usize = 10_000;
/// Answers about this CA's certificates signed on demand (nonces, several CertIDs,
/// certificates not yet pre-signed) per second at most; beyond it, `tryLater`.
pub const LIVE_PER_SECOND: u32 = 500;
/// Answers about serials this CA never issued signed on demand per second at most.
pub const STRANGERS_PER_SECOND: u32 = 50;
/// After the key store fails, wait this long before trying again, doubling up to
/// [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// One OCSP answer, with what the HTTP layer needs for its caching headers.
#[derive(Debug, Clone)]
pub struct OcspReply {
    /// The DER OCSPResponse.
    pub der: Bytes,
    /// thisUpdate and nextUpdate of a successful response.
    pub validity: Option<(SystemTime, SystemTime)>,
    /// Whether it echoes a nonce (then it must not be cached).
    pub nonce: bool,
    /// Why an unsuccessful answer was given, for the log.
    pub problem: Option<String>,
    /// Its status.
    pub status: ResponseStatus,
}

impl OcspReply {
    fn held(held: Held) -> Self {
        OcspReply {
            der: held.der,
            validity: Some(held.validity),
            nonce: false,
            problem: None,
            status: ResponseStatus::Successful,
        }
    }

    fn try_later(why: &str) -> Self {
        OcspReply {
            der: Bytes::from(ocsp::error_response(ResponseStatus::TryLater)),
            validity: None,
            nonce: false,
            problem: Some(why.to_owned()),
            status: ResponseStatus::TryLater,
        }
    }
}

/// Revocation status, published: see the module docs.
#[derive(Debug)]
pub struct Publisher {
    responder: Arc<OcspResponder>,
    store: Arc<dyn Store>,
    issuers: Vec<Issuer>,
    answers: AnswerStore,
    strangers: AnswerStore,
    live: Budget,
    live_strangers: Budget,
    crls: CrlCache,
    crl_validity: Duration,
    /// Whether notices of revocations by this process come back from the database
    /// (PostgreSQL's `LISTEN` is connected): then they wake the CRL builder, not the
    /// revocation itself, so it is not woken twice.
    notices_live: std::sync::atomic::AtomicBool,
    /// Counts revocations seen by notice (or notices lost): an answer read from the
    /// database is kept only if no revocation came while it was read.
    generation: std::sync::atomic::AtomicU64,
    /// Revocations notified, for the pre-signer holding the lease to sign again (unless
    /// the revoking node already did), with when they were seen.
    revoked_queue: std::sync::Mutex<Vec<(IssuerId, Serial, std::time::Instant)>>,
}

impl Publisher {
    /// A publisher for `issuers`, answering OCSP through `responder`, reading statuses and
    /// revocations from `store`, making CRLs valid for `crl_validity`.
    pub fn new(
        responder: Arc<OcspResponder>,
        store: Arc<dyn Store>,
        issuers: Vec<Issuer>,
        crl_validity: Duration,
    ) -> Self {
        Publisher {
            responder,
            store,
            issuers,
            answers: AnswerStore::new(ANSWERS_HELD, false),
            strangers: AnswerStore::new(STRANGERS_HELD, true),
            live: Budget::new(LIVE_PER_SECOND),
            live_strangers: Budget::new(STRANGERS_PER_SECOND),
            crls: CrlCache::new(crl_validity),
            crl_validity,
            notices_live: std::sync::atomic::AtomicBool::new(false),
            generation: std::sync::atomic::AtomicU64::new(0),
            revoked_queue: std::sync::Mutex::default(),
        }
    }

    /// Publishes for a cluster sharing `publication` (issue 20), this process being
    /// `holder` (its node instance) in leases: the CRL served is the stored one, built by
    /// the holder of its issuer's lease (a [`CrlBuilder`] must run); OCSP answers are
    /// stored there once signed, pre-signed only by the holder of the [`shared::OCSP_LEASE`],
    /// and held in memory in a cache of at most `cache` answers in front of the database.
    /// Once: returns `false` (and changes nothing) if it was shared already.
    pub fn share(&self, publication: Arc<dyn Publication>, holder: String, cache: usize) -> bool {
        let shared = self
            .crls
            .shared
            .set(Shared {
                publication,
                holder,
            })
            .is_ok();
        if shared {
            self.answers.bound(cache);
        }
        shared
    }

    /// The storage shared with the other nodes, once [`Publisher::share`]d.
    fn publication(&self) -> Option<&Arc<dyn Publication>> {
        self.crls.shared.get().map(|s| &s.publication)
    }

    /// In a cluster: the answer stored under `key`, kept in memory (unless a revocation was
    /// notified while it was read: it may predate it).
    fn stored(&self, key: &ocsp::CacheKey, now: SystemTime) -> Option<OcspReply> {
        use std::sync::atomic::Ordering;
        let publication = self.publication()?;
        let before = self.generation.load(Ordering::Acquire);
        let stored = match publication.stored_answer(key.as_bytes()) {
            Ok(Some(stored)) if now < stored.next_update => stored,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read stored OCSP answers");
                return None;
            }
        };
        let held = Held {
            der: Bytes::from(stored.der),
            validity: (stored.this_update, stored.next_update),
            issuer: stored.issuer,
            serial: stored.serial,
        };
        if self.generation.load(Ordering::Acquire) == before {
            self.answers.put(key.clone(), held.clone());
        }
        Some(OcspReply::held(held))
    }

    /// In a cluster: stores answers just signed, so no node signs them again.
    fn store_answers(&self, answers: &[shared::StoredAnswer]) -> Result<(), StoreError> {
        match self.publication() {
            Some(publication) if !answers.is_empty() => publication.put_answers(answers),
            _ => Ok(()),
        }
    }

    /// Acts on what the database notified: a revocation (its issuer's CRL is due), a new
    /// stored CRL (read it at the next fetch), or notices lost (everything is read again).
    pub fn notice(&self, notice: &Notice) {
        use std::sync::atomic::Ordering;
        match notice {
            Notice::Revoked { issuer, serial } => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.answers.forget(serial);
                if let (Ok(id), Ok(mut queue)) = (IssuerId::new(issuer), self.revoked_queue.lock())
                {
                    queue.push((id, serial.clone(), std::time::Instant::now()));
                }
                self.crls.invalidate(issuer, Some(serial));
            }
            Notice::Crl { issuer, number } => self.crls.newer_stored(Some(issuer), Some(*number)),
            Notice::Lost => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.answers.clear();
                for issuer in &self.issuers {
                    self.crls.invalidate(issuer.id.as_str(), None);
                }
                self.crls.newer_stored(None, None);
            }
        }
    }

    /// In a cluster, after a revocation seen by a read rather than a notice: forgets the
    /// answers held about `serial` (and queues it as a notice would).
    fn seen_revoked(&self, issuer: &IssuerId, serial: &Serial) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.answers.forget(serial);
        if let Ok(mut queue) = self.revoked_queue.lock() {
            queue.push((issuer.clone(), serial.clone(), std::time::Instant::now()));
        }
    }

    /// Whether notices come back from the database.
    fn notices_live(&self) -> bool {
        self.notices_live.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Says whether notices come back from the database (see [`Publisher::notice`]).
    pub fn set_notices_live(&self, live: bool) {
        self.notices_live
            .store(live, std::sync::atomic::Ordering::Relaxed);
    }

    /// The answer to a DER OCSPRequest at `now`: from memory when it was signed ahead of
    /// time, else signed now within the per-second budget of its kind (this CA's
    /// certificates or strangers), else `tryLater`. Blocks on the database and the key store
    /// when it signs: call it off an async executor. Never fails: problems become
    /// unsuccessful OCSP responses.
    pub fn answer(&self, request: &[u8], now: SystemTime) -> OcspReply {
        // The request is parsed for its key once: this path also serves floods.
        let key = self.responder.cache_key(request);
        if let Some(reply) = key.as_ref().and_then(|k| self.lookup(k, now)) {
            return reply;
        }
        if let Some(reply) = key.as_ref().and_then(|k| self.stored(k, now)) {
            return reply;
        }
        let ours = match self.asks_about_ours(request) {
            Ok(ours) => ours,
            Err(e) => return OcspReply::try_later(&format!("cannot read statuses: {e}")),
        };
        let budget = if ours {
            &self.live
        } else {
            &self.live_strangers
        };
        if !budget.take() {
            return OcspReply::try_later("over the per-second budget for answers signed on demand");
        }
        let answer = self.responder.answer(request, now);
        let der = Bytes::from(answer.der);
        // Kept like a pre-signed answer, so the next request is served from memory (and,
        // for ours, the pre-signer refreshes it).
        if let (Some(key), Some(validity), ResponseStatus::Successful, false) =
            (key, answer.validity, answer.status, answer.nonce)
            && let Some((issuer, serial)) = self.responder.subject_of(&key)
        {
            let held = Held {
                der: der.clone(),
                validity,
                issuer,
                serial,
            };
            if ours {
                // Stored for the cluster, so the pre-signer does not sign it again.
                let stored = shared::StoredAnswer {
                    cert_id: key.as_bytes().to_vec(),
                    serial: held.serial.clone(),
                    issuer: held.issuer.clone(),
                    this_update: validity.0,
                    next_update: validity.1,
                    der: der.to_vec(),
                };
                if let Err(e) = self.store_answers(&[stored]) {
                    tracing::warn!(error = %e, "cannot store an OCSP answer signed on demand");
                }
                self.answers.put(key, held);
            } else {
                self.strangers.put(key, held);
            }
        }
        OcspReply {
            der,
            validity: answer.validity,
            nonce: answer.nonce,
            problem: answer.problem,
            status: answer.status,
        }
    }

    /// The answer to a DER OCSPRequest if one signed earlier is held: memory only, never
    /// the database or the key store, so it may run on an async executor.
    pub fn held(&self, request: &[u8], now: SystemTime) -> Option<OcspReply> {
        self.lookup(&self.responder.cache_key(request)?, now)
    }

    /// The held answer under `key`: this CA's first, then strangers'.
    fn lookup(&self, key: &ocsp::CacheKey, now: SystemTime) -> Option<OcspReply> {
        self.answers
            .get(key, now)
            .or_else(|| self.strangers.get(key, now))
            .map(OcspReply::held)
    }

    /// Whether any certificate the request asks about was issued (or reserved) here, or is
    /// a configured CA's certificate.
    fn asks_about_ours(&self, request: &[u8]) -> Result<bool, StoreError> {
        for (issuer, serial) in self.responder.subjects(request) {
            if self.responder.is_ca(&issuer, &serial)
                || self.store.revocation_status(&issuer, &serial)?.is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Revokes a certificate ([`crate::revocation::revoke`]) and publishes it: its OCSP
    /// answers are signed again before this returns (or dropped if the key store cannot
    /// sign, so nobody is told `good`), and its issuer's CRL is made again at the next
    /// fetch. Blocks on the database and the key store.
    ///
    /// Fails as [`crate::revocation::revoke`] does; nothing is published then.
    pub fn revoke(
        &self,
        request: &RevokeRequest<'_>,
        now: SystemTime,
    ) -> Result<Revocation, RevocationError> {
        let revocation = revoke(self.store.as_ref(), request, now)?;
        match self.store.certificate(request.serial) {
            Ok(Some(row)) => self.revoked(row.issuer.as_str(), request.serial),
            Ok(None) => {}
            Err(e) => tracing::warn!(serial = %request.serial, error = %e,
                "cannot read the revoked certificate's issuer; the pre-signer publishes it"),
        }
        Ok(revocation)
    }

    /// After a revocation: signs `serial`'s answers again and drops `issuer`'s CRL (in a
    /// cluster: wakes the builder, unless the database's notice will).
    fn revoked(&self, issuer: &str, serial: &Serial) {
        if let Ok(id) = IssuerId::new(issuer)
            && let Err(why) = self.sign(&id, serial, SystemTime::now(), true)
        {
            tracing::warn!(%serial, error = %why,
                "cannot sign the revoked answer; OCSP signs it on demand");
        }
        if !self.notices_live.load(std::sync::atomic::Ordering::Relaxed) {
            self.crls.invalidate(issuer, Some(serial));
        }
    }

    /// Signs `serial`'s answers now and keeps them, replacing any older ones. If signing
    /// fails after a revocation (`revoked`), the old answers are forgotten (they may say
    /// `good`), so requests fall through to signing on demand, which answers `tryLater`;
    /// otherwise they are kept and served until their nextUpdate.
    ///
    /// Fails with why signing failed.
    fn sign(
        &self,
        issuer: &IssuerId,
        serial: &Serial,
        now: SystemTime,
        revoked: bool,
    ) -> Result<(), String> {
        match self.responder.presign(issuer, serial, now) {
            Ok(answers) => {
                self.strangers.forget(serial);
                let stored: Vec<shared::StoredAnswer> = answers
                    .iter()
                    .filter_map(|(key, answer)| {
                        let (this_update, next_update) = answer.validity?;
                        Some(shared::StoredAnswer {
                            cert_id: key.as_bytes().to_vec(),
                            serial: serial.clone(),
                            issuer: issuer.clone(),
                            this_update,
                            next_update,
                            der: answer.der.clone(),
                        })
                    })
                    .collect();
                self.store_answers(&stored)
                    .map_err(|e| format!("cannot store the answers signed: {e}"))?;
                for (key, answer) in answers {
                    if let Some(validity) = answer.validity {
                        self.answers.put(
                            key,
                            Held {
                                der: Bytes::from(answer.der),
                                validity,
                                issuer: issuer.clone(),
                                serial: serial.clone(),
                            },
                        );
                    }
                }
                Ok(())
            }
            // An issuer without a responder here: nothing to sign, nothing to fail.
            Err((ResponseStatus::Unauthorized, _)) => Ok(()),
            Err((_, why)) => {
                if revoked {
                    self.answers.forget(serial);
                }
                Err(why)
            }
        }
    }

    /// `issuer`'s current CRL (see [`CRL_REFRESH`]). Blocks on the database and the key store
    /// when it makes one.
    ///
    /// Fails with `NotFound` for an issuer not configured here, or if a CRL cannot be made
    /// and none is held.
    pub fn crl(&self, issuer: &str) -> Result<Arc<SignedCrl>, RevocationError> {
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.id.as_str() == issuer)
            .ok_or_else(|| StoreError::NotFound(format!("CRL {issuer:?}")))?;
        self.crls.get(self.store.as_ref(), issuer)
    }

    /// `number, thisUpdate, nextUpdate` of the last CRL of `issuer` made here, if any.
    pub fn crl_status(&self, issuer: &str) -> Option<(u64, SystemTime, SystemTime)> {
        self.crls.status(issuer)
    }

    /// How many answers about this CA's certificates are held.
    pub fn answers_held(&self) -> usize {
        self.answers.len()
    }

    /// How many answers about serials this CA never issued are held.
    pub fn strangers_held(&self) -> usize {
        self.strangers.len()
    }
}
