//! The latest CRL of each issuer, made at most once per [`CRL_REFRESH`] (or after a
//! revocation), and served from memory in between, so the public endpoint cannot be used to
//! burn CRL numbers or keep the key store busy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::{RETRY_MAX, RETRY_MIN};
use crate::issuer::Issuer;
use crate::revocation::RevocationError;
use crate::revocation::crl::{self, SignedCrl};
use crate::store::{Store, StoreError};

/// How long a served CRL is kept before it is regenerated. A revocation through this
/// server drops its issuer's CRL at once; one made elsewhere (the CLI, another process
/// sharing the database) shows within this. Far under half of the shortest CRL validity the
/// config accepts (`[revocation] crl_validity`, at least an hour), so a served CRL is always
/// republished before half its validity has passed.
pub const CRL_REFRESH: Duration = Duration::from_secs(60);

/// The latest CRL of each issuer.
#[derive(Debug)]
pub(super) struct CrlCache {
    crls: Mutex<HashMap<String, CrlSlot>>,
    /// thisUpdate to nextUpdate of the CRLs it makes.
    validity: Duration,
}

/// One issuer's CRL: the last one signed, and whether it must be made again.
#[derive(Debug)]
struct CrlSlot {
    /// When it was made.
    made: Instant,
    crl: Arc<SignedCrl>,
    /// A revocation since: make a new one at the next fetch.
    stale: bool,
    /// While generation fails: not before this, and the next wait.
    retry: Option<(Instant, Duration)>,
}

impl CrlCache {
    pub(super) fn new(validity: Duration) -> Self {
        CrlCache {
            crls: Mutex::default(),
            validity,
        }
    }

    /// Marks `issuer`'s CRL out of date: the next fetch generates a new one (and serves this
    /// one if that fails).
    pub(super) fn invalidate(&self, issuer: &str) {
        if let Ok(mut crls) = self.crls.lock()
            && let Some(slot) = crls.get_mut(issuer)
        {
            slot.stale = true;
            slot.retry = None;
        }
    }

    /// `number, thisUpdate, nextUpdate` of the last CRL of `issuer` made here, if any.
    pub(super) fn status(&self, issuer: &str) -> Option<(u64, SystemTime, SystemTime)> {
        let crls = self.crls.lock().ok()?;
        crls.get(issuer)
            .map(|slot| (slot.crl.number, slot.crl.this_update, slot.crl.next_update))
    }

    /// `issuer`'s CRL, regenerated if the held one is older than [`CRL_REFRESH`] or a
    /// revocation made it stale. Generation holds the lock, so concurrent requests wait for
    /// one CRL, not sign many. If generation fails (the key store is away, say), the last
    /// CRL is served while its nextUpdate has not passed, and generation is tried again
    /// after a back-off (1 s doubling to 5 min) rather than at every fetch.
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
                crls.insert(
                    id.to_owned(),
                    CrlSlot {
                        made: Instant::now(),
                        crl: crl.clone(),
                        stale: false,
                        retry: None,
                    },
                );
                Ok(crl)
            }
            Err(e) => match crls.get_mut(id) {
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
            },
        }
    }
}
