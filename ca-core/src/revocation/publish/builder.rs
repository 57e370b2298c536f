//! The CRL builder of a cluster (issue 20, item 2): on the node holding an issuer's lease,
//! builds that issuer's CRL after every revocation anywhere (woken by a notice, or by
//! [`FALLBACK_EVERY`]'s read of recent revocations) and every [`CRL_REFRESH`], and stores it
//! for every node to serve. Each node runs one; those without the lease only try, every
//! [`LEASE_EVERY`], to take it once it has expired.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Publisher;
use super::crls::CRL_REFRESH;
use super::shared::{FALLBACK_EVERY, LEASE_EVERY, LEASE_TTL, crl_lease};
use crate::revocation::crl;
use crate::store::Serial;

/// The longest the builder waits for a revocation between two looks at its leases.
pub const TICK: Duration = Duration::from_secs(1);

/// The builder's state between ticks. The caller owns the thread and calls
/// [`CrlBuilder::tick`] until it stops.
#[derive(Debug)]
pub struct CrlBuilder {
    publisher: Arc<Publisher>,
    /// Issuers whose lease this process holds.
    holding: HashSet<String>,
    last_lease: Option<Instant>,
    last_fallback: Instant,
    /// Revocations the fallback read has seen, with when, so each counts once.
    seen: HashMap<Serial, Instant>,
    /// Issuers whose CRL failed to build, to try again.
    pending: HashSet<String>,
}

impl CrlBuilder {
    /// A builder for `publisher`'s CRLs, or `None` if it publishes alone (not
    /// [`Publisher::share`]d), where CRLs are made on demand.
    pub fn new(publisher: Arc<Publisher>) -> Option<Self> {
        publisher.crls.shared.get()?;
        Some(CrlBuilder {
            publisher,
            holding: HashSet::new(),
            last_lease: None,
            last_fallback: Instant::now(),
            seen: HashMap::new(),
            pending: HashSet::new(),
        })
    }

    /// One round: waits up to `TICK` (1 s) for a revocation, renews or takes leases (every
    /// [`LEASE_EVERY`]), reads recent revocations (every [`FALLBACK_EVERY`]), and builds the
    /// CRL of each issuer it holds the lease of that has a revocation not yet listed or is
    /// older than [`CRL_REFRESH`].
    pub fn tick(&mut self) {
        let mut due = HashSet::new();
        for (issuer, serials) in self.publisher.crls.wait_revoked(TICK) {
            for serial in serials {
                self.seen.insert(serial, Instant::now());
            }
            due.insert(issuer);
        }
        due.extend(self.pending.drain());
        if self.last_lease.is_none_or(|t| t.elapsed() >= LEASE_EVERY) {
            self.last_lease = Some(Instant::now());
            self.leases();
        }
        if self.last_fallback.elapsed() >= FALLBACK_EVERY {
            self.last_fallback = Instant::now();
            self.fallback(&mut due);
        }
        let now = SystemTime::now();
        for issuer in &self.publisher.issuers {
            let id = issuer.id.as_str();
            if !self.holding.contains(id) {
                continue;
            }
            let old = self
                .publisher
                .crls
                .status(id)
                .is_none_or(|(_, this_update, _)| this_update + CRL_REFRESH <= now);
            if !(old || due.contains(id)) {
                continue;
            }
            if let Err(e) = self.build(issuer, now) {
                tracing::warn!(issuer = id, error = %e, "cannot build the CRL; trying again");
                self.pending.insert(id.to_owned());
            }
        }
    }

    /// Builds, stores and serves `issuer`'s next CRL.
    fn build(&self, issuer: &crate::issuer::Issuer, now: SystemTime) -> Result<(), String> {
        let Some(shared) = self.publisher.crls.shared.get() else {
            return Ok(());
        };
        let id = issuer.id.as_str();
        let made = crl::generate(
            self.publisher.store.as_ref(),
            issuer,
            now,
            self.publisher.crl_validity,
        )
        .map_err(|e| e.to_string())?;
        let made = Arc::new(made);
        shared
            .publication
            .put_crl(id, &made)
            .map_err(|e| e.to_string())?;
        tracing::debug!(
            issuer = id,
            number = made.number,
            entries = made.entries,
            "CRL built"
        );
        self.publisher.crls.install(id, made);
        Ok(())
    }

    /// Renews the leases held and takes those expired. A failure to reach the database
    /// counts as holding none (another node may take them meanwhile).
    fn leases(&mut self) {
        let Some(shared) = self.publisher.crls.shared.get() else {
            return;
        };
        for issuer in &self.publisher.issuers {
            let id = issuer.id.as_str();
            let held = match shared.publication.take_lease(
                &crl_lease(id),
                &shared.holder,
                SystemTime::now(),
                LEASE_TTL,
            ) {
                Ok(held) => held,
                Err(e) => {
                    if self.holding.contains(id) {
                        tracing::warn!(issuer = id, error = %e,
                            "cannot renew the CRL lease; another node may take it");
                    }
                    false
                }
            };
            match (held, self.holding.contains(id)) {
                (true, false) => {
                    tracing::info!(issuer = id, "took the CRL lease: this node builds the CRL");
                    self.holding.insert(id.to_owned());
                }
                (false, true) => {
                    tracing::info!(issuer = id, "no longer holds the CRL lease");
                    self.holding.remove(id);
                }
                _ => {}
            }
        }
    }

    /// Revocations since a little before the last read, by anyone, not seen before: their
    /// issuers' CRLs are due (a notice lost, or none sent: SQLite, another process).
    fn fallback(&mut self, due: &mut HashSet<String>) {
        let since = SystemTime::now() - FALLBACK_EVERY * 3;
        match self.publisher.store.revoked_since(since) {
            Ok(revoked) => {
                for (issuer, serial) in revoked {
                    if self.seen.insert(serial, Instant::now()).is_none() {
                        due.insert(issuer.as_str().to_owned());
                    }
                }
                self.seen.retain(|_, at| at.elapsed() < FALLBACK_EVERY * 6);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read recent revocations"),
        }
    }
}
