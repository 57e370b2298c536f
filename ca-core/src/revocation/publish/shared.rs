//! What the nodes of a cluster share so that revocation status is published once for all of
//! them (issue 20, items 2 and 3): leases that say which node instance does a piece of work,
//! the current CRL of each issuer, and the notices that tell every node something changed.
//!
//! Every node serves the stored CRL; the holder of an issuer's `crl:` lease builds it, at
//! once after a revocation anywhere, and stores it. Every signed OCSP answer is stored; the
//! holder of the `ocsp` lease pre-signs what no node has. On PostgreSQL revocations and new
//! CRLs are notified (`LISTEN`/`NOTIFY`); everywhere a slow periodic read catches what a
//! lost notice would miss.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::issuer::IssuerId;
use crate::revocation::crl::SignedCrl;
use crate::store::{Serial, StoreError};

/// A lease is taken for this long and renewed well before it runs out; a node that dies
/// holding it is replaced this long after its last renewal at most.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often a lease holder renews its leases, and others try to take expired ones.
pub const LEASE_EVERY: Duration = Duration::from_secs(2);
/// How often the recent revocations are read even while notices come (for one lost, or a
/// revocation by a CLI process on SQLite).
pub const FALLBACK_EVERY: Duration = Duration::from_secs(5);

/// The name of the lease to build `issuer`'s CRL.
pub fn crl_lease(issuer: &str) -> String {
    format!("crl:{issuer}")
}

/// The name of the lease to pre-sign OCSP answers (one pre-signer for the cluster).
pub const OCSP_LEASE: &str = "ocsp";

/// The most answers about this CA's certificates a node holds in memory in a cluster, by
/// default (`[revocation] ocsp_cache`): about 1.5 KiB each, so about 75 MiB, whatever the
/// number of certificates; the rest are read from the database when asked for.
pub const CACHE_DEFAULT: usize = 50_000;

/// One signed OCSP answer as stored for the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The DER CertID it answers (its cache key).
    pub cert_id: Vec<u8>,
    /// The certificate.
    pub serial: Serial,
    /// Its issuer.
    pub issuer: IssuerId,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate.
    pub next_update: SystemTime,
    /// The DER OCSPResponse.
    pub der: Vec<u8>,
}

/// Something another node (or process) changed, as the database notifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A certificate of `issuer` was revoked (committed).
    Revoked {
        /// Its issuer's id.
        issuer: String,
        /// Its serial.
        serial: Serial,
    },
    /// `issuer`'s stored CRL is now number `number`.
    Crl {
        /// The issuer's id.
        issuer: String,
        /// Its number.
        number: u64,
    },
    /// Notices may have been lost (the listening connection was re-established): read
    /// everything again.
    Lost,
}

/// What publishing once for the cluster needs from storage.
pub trait Publication: Send + Sync + fmt::Debug {
    /// Takes or renews lease `name` for `holder` until `now + ttl`, if it is free, expired,
    /// or already `holder`'s.
    ///
    /// Returns whether `holder` holds it now; fails if the database fails.
    fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Stores `crl` as `issuer`'s current CRL unless one with the same or a higher number is
    /// stored already, and notifies the other nodes.
    ///
    /// Returns whether it was stored; fails if the database fails.
    fn put_crl(&self, issuer: &str, crl: &SignedCrl) -> Result<bool, StoreError>;

    /// The number of `issuer`'s stored CRL, if any: a cheap read to decide whether to read
    /// the CRL itself.
    fn stored_crl_number(&self, issuer: &str) -> Result<Option<u64>, StoreError>;

    /// `issuer`'s stored CRL, if any.
    fn stored_crl(&self, issuer: &str) -> Result<Option<SignedCrl>, StoreError>;

    /// Stores `answers`, each replacing the one stored for its CertID. (A revocation drops
    /// its certificate's stored answers in its own transaction.)
    ///
    /// Fails if the database fails.
    fn put_answers(&self, answers: &[StoredAnswer]) -> Result<(), StoreError>;

    /// The stored answer for the DER CertID `cert_id`, if any.
    fn stored_answer(&self, cert_id: &[u8]) -> Result<Option<StoredAnswer>, StoreError>;

    /// Which of `serials` have a stored answer (for any CertID).
    fn answered(&self, serials: &[Serial]) -> Result<Vec<Serial>, StoreError>;

    /// Up to `limit` certificates with a stored answer whose nextUpdate is before `before`,
    /// once each: those to sign again.
    fn answers_due(
        &self,
        before: SystemTime,
        limit: u32,
    ) -> Result<Vec<(IssuerId, Serial)>, StoreError>;

    /// Drops the stored answers past their nextUpdate at `now`; returns how many.
    fn drop_stale_answers(&self, now: SystemTime) -> Result<usize, StoreError>;
}
