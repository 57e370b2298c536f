//! The latest CRL of each issuer, served from memory.
//!
//! Alone (no [`Shared`] publication: tests, a process of its own), a node makes each CRL at
//! most once per [`CRL_REFRESH`] or after a revocation, at the next fetch. In a cluster
//! ([`super::Publisher::share`]), every node serves the CRL stored in the database, compared
//! by number with the stored one at every fetch (one primary-key read; the CRL itself only
//! when the number is higher), never replacing the one it serves by a lower number; only the holder of the issuer's
//! lease builds one ([`super::CrlBuilder`]). Either way the public endpoint cannot be used to
//! burn CRL numbers or keep the key store busy.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::shared::Publication;
use super::{RETRY_MAX, RETRY_MIN};
use crate::issuer::Issuer;
use crate::revocation::RevocationError;
use crate::revocation::crl::{self, SignedCrl};
use crate::store::{Serial, Store, StoreError};

/// How long a served CRL is kept before it is regenerated (or, in a cluster, before the
/// lease holder builds the next one). A revocation through this server drops its issuer's
/// CRL at once; one made elsewhere shows within this alone, within a second in a cluster.
/// Far under half of the shortest CRL validity the config accepts (`[revocation]
/// crl_validity`, at least an hour), so a served CRL is always republished before half its
/// validity has passed.
pub const CRL_REFRESH: Duration = Duration::from_secs(60);

/// The storage a cluster shares, and who this process is in the leases.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub(super) publication: Arc<dyn Publication>,
    /// This process's node instance, as lease holder.
    pub(super) holder: String,
}

/// The latest CRL of each issuer.
#[derive(Debug)]
pub(super) struct CrlCache {
    crls: Mutex<HashMap<String, CrlSlot>>,
    /// thisUpdate to nextUpdate of the CRLs it makes.
    validity: Duration,
    pub(super) shared: OnceLock<Shared>,
    /// Issuers with a revocation the builder has not yet put in a CRL, and the serials; the
    /// builder waits on `wake` for them.
    revoked: Mutex<HashMap<String, Vec<Serial>>>,
    wake: Condvar,
}

/// One issuer's CRL: the last one signed or read, and whether it must be made or read again.
#[derive(Debug)]
struct CrlSlot {
    /// When it was made (alone) or last compared with the stored one (in a cluster).
    made: Instant,
    crl: Arc<SignedCrl>,
    /// Alone: a revocation since, make a new one at the next fetch. In a cluster: a newer
    /// one was stored, read it at the next fetch.
    stale: bool,
    /// While generation fails: not before this, and the next wait.
    retry: Option<(Instant, Duration)>,
}

impl CrlCache {
    pub(super) fn new(validity: Duration) -> Self {
        CrlCache {
            crls: Mutex::default(),
            validity,
            shared: OnceLock::new(),
            revoked: Mutex::default(),
            wake: Condvar::new(),
        }
    }

    /// After a revocation of one of `issuer`'s certificates (here, or notified from
    /// elsewhere): alone, the next fetch generates a new CRL (and serves this one if that
    /// fails); in a cluster, the builder is woken to build one if it holds the lease.
    pub(super) fn invalidate(&self, issuer: &str, serial: Option<&Serial>) {
        if self.shared.get().is_some() {
            if let Ok(mut revoked) = self.revoked.lock() {
                let serials = revoked.entry(issuer.to_owned()).or_default();
                serials.extend(serial.cloned());
                self.wake.notify_all();
            }
            return;
        }
        self.mark_stale(issuer);
    }

    /// A newer CRL of `issuer` than `number` may be stored (notified, or `None`: notices may
    /// have been lost): the next fetch reads it.
    pub(super) fn newer_stored(&self, issuer: Option<&str>, number: Option<u64>) {
        let Ok(mut crls) = self.crls.lock() else {
            return;
        };
        for (id, slot) in crls.iter_mut() {
            if issuer.is_none_or(|i| i == id) && number.is_none_or(|n| n > slot.crl.number) {
                slot.stale = true;
            }
        }
    }

    fn mark_stale(&self, issuer: &str) {
        if let Ok(mut crls) = self.crls.lock()
            && let Some(slot) = crls.get_mut(issuer)
        {
            slot.stale = true;
            slot.retry = None;
        }
    }

    /// Waits up to `timeout` for a revocation to build a CRL for, and takes the issuers
    /// revoked from (those of the previous round included).
    pub(super) fn wait_revoked(&self, timeout: Duration) -> HashMap<String, Vec<Serial>> {
        let Ok(revoked) = self.revoked.lock() else {
            return HashMap::new();
        };
        let mut revoked = if revoked.is_empty() {
            match self.wake.wait_timeout(revoked, timeout) {
                Ok((guard, _)) => guard,
                Err(_) => return HashMap::new(),
            }
        } else {
            revoked
        };
        std::mem::take(&mut *revoked)
    }

    /// Serves `crl` from now on, unless a higher number is served already.
    pub(super) fn install(&self, issuer: &str, crl: Arc<SignedCrl>) {
        if let Ok(mut crls) = self.crls.lock() {
            Self::install_locked(&mut crls, issuer, crl);
        }
    }

    fn install_locked(crls: &mut HashMap<String, CrlSlot>, issuer: &str, crl: Arc<SignedCrl>) {
        match crls.get_mut(issuer) {
            Some(slot) if slot.crl.number >= crl.number => {
                slot.made = Instant::now();
                slot.stale = false;
            }
            _ => {
                crls.insert(
                    issuer.to_owned(),
                    CrlSlot {
                        made: Instant::now(),
                        crl,
                        stale: false,
                        retry: None,
                    },
                );
            }
        }
    }

    /// `number, thisUpdate, nextUpdate` of the CRL of `issuer` served here, if any.
    pub(super) fn status(&self, issuer: &str) -> Option<(u64, SystemTime, SystemTime)> {
        let crls = self.crls.lock().ok()?;
        crls.get(issuer)
            .map(|slot| (slot.crl.number, slot.crl.this_update, slot.crl.next_update))
    }

    /// `issuer`'s CRL. Alone: regenerated if the held one is older than [`CRL_REFRESH`] or a
    /// revocation made it stale; in a cluster: the stored one (see [`Self::get_shared`]).
    /// Generation holds the lock, so concurrent requests wait for one CRL, not sign many.
    /// If generation fails (the key store is away, say), the last CRL is served while its
    /// nextUpdate has not passed, and generation is tried again after a back-off (1 s
    /// doubling to 5 min) rather than at every fetch.
    ///
    /// Fails if generation fails with no CRL to fall back on.
    pub(super) fn get(
        &self,
        store: &dyn Store,
        issuer: &Issuer,
    ) -> Result<Arc<SignedCrl>, RevocationError> {
        let mut crls = self
            .crls
            .lock()
            .map_err(|_| StoreError::Database("the CRL cache lock is poisoned".into()))?;
        let now = SystemTime::now();
        let id = issuer.id.as_str();
        if let Some(shared) = self.shared.get() {
            return self.get_shared(&mut crls, shared, store, issuer, now);
        }
        if let Some(slot) = crls.get(id) {
            let fresh = !slot.stale && slot.made.elapsed() < CRL_REFRESH;
            let waiting = slot.retry.is_some_and(|(at, _)| Instant::now() < at);
            if (fresh || waiting) && now < slot.crl.next_update {
                return Ok(slot.crl.clone());
            }
        }
        match crl::generate(store, issuer, now, self.validity) {
            Ok(crl) => {
                let crl = Arc::new(crl);
                Self::install_locked(&mut crls, id, crl.clone());
                Ok(crl)
            }
            Err(e) => Self::fall_back(&mut crls, id, now, e),
        }
    }

    /// In a cluster: the CRL served here, unless the stored one's number (read at every
    /// fetch: one primary-key read) is higher; then the stored one replaces it. So once any
    /// node has served a number, no node serves a lower one: a client fetching from several
    /// nodes behind a load balancer never sees the number go back. Only
    /// without any CRL (a new cluster, before the builder's first), or with one past its
    /// nextUpdate (no builder for that long), does this node make one itself, and store it.
    fn get_shared(
        &self,
        crls: &mut HashMap<String, CrlSlot>,
        shared: &Shared,
        store: &dyn Store,
        issuer: &Issuer,
        now: SystemTime,
    ) -> Result<Arc<SignedCrl>, RevocationError> {
        let id = issuer.id.as_str();
        let held = crls.get(id).map(|s| s.crl.number);
        let read = shared
            .publication
            .stored_crl_number(id)
            .and_then(|number| match number {
                Some(n) if held.is_none_or(|h| n > h) => shared.publication.stored_crl(id),
                _ => Ok(None),
            });
        match read {
            Ok(Some(stored)) => Self::install_locked(crls, id, Arc::new(stored)),
            Ok(None) => {
                if let Some(slot) = crls.get_mut(id) {
                    slot.made = Instant::now();
                    slot.stale = false;
                }
            }
            // At every fetch while the database is down: not worth a warning each time.
            Err(e) => tracing::debug!(issuer = id, error = %e,
                "cannot read the stored CRL; serving the one held"),
        }
        if let Some(slot) = crls.get(id)
            && now < slot.crl.next_update
        {
            return Ok(slot.crl.clone());
        }
        let waiting = crls
            .get(id)
            .and_then(|s| s.retry)
            .is_some_and(|(at, _)| Instant::now() < at);
        if waiting {
            return Err(StoreError::Database(format!("no current CRL of {id} yet")).into());
        }
        match crl::generate(store, issuer, now, self.validity) {
            Ok(crl) => {
                let crl = Arc::new(crl);
                if let Err(e) = shared.publication.put_crl(id, &crl) {
                    tracing::warn!(issuer = id, error = %e, "cannot store the CRL made here");
                }
                Self::install_locked(crls, id, crl.clone());
                Ok(crl)
            }
            Err(e) => Self::fall_back(crls, id, now, e),
        }
    }

    /// After generation failed with `e`: the held CRL while its nextUpdate has not passed,
    /// with a back-off before the next try.
    fn fall_back(
        crls: &mut HashMap<String, CrlSlot>,
        id: &str,
        now: SystemTime,
        e: RevocationError,
    ) -> Result<Arc<SignedCrl>, RevocationError> {
        match crls.get_mut(id) {
            Some(slot) if now < slot.crl.next_update => {
                let wait = slot
                    .retry
                    .map_or(RETRY_MIN, |(_, w)| (w * 2).min(RETRY_MAX));
                tracing::warn!(issuer = id, error = %e, retry_in = ?wait,
                    "cannot make a new CRL; serving the last one");
                slot.retry = Some((Instant::now() + wait, wait));
                Ok(slot.crl.clone())
            }
            _ => Err(e),
        }
    }
}
