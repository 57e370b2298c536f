//! What every handler shares: the CA, the token store, and the CA certificates as served.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use ca_core::apitoken::TokenStore;
use ca_core::issuance::Ca;
use ca_core::keystore::KeyStore;
use ca_core::store::StoreError;

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
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Answers OCSP requests.
    pub ocsp: Arc<ca_core::revocation::ocsp::OcspResponder>,
    /// The latest CRL of each issuer.
    pub crls: Arc<crate::revocation::CrlCache>,
    /// Signed OCSP answers, reused for a short while.
    pub ocsp_cache: Arc<crate::revocation::OcspCache>,
    /// When each API token's use was last audited.
    pub token_uses: Arc<crate::auth::TokenUses>,
    /// Sign-in password checks running now, bounded.
    pub sign_ins: Arc<Slots>,
    /// Code signing with keys held in the key store.
    pub codesign: Arc<ca_core::codesign::Codesign>,
}

/// Checks for `/readyz`.
#[derive(Debug)]
pub struct Probes {
    /// The database.
    pub db: Arc<db::Db>,
    /// The key store.
    pub keys: Arc<dyn KeyStore>,
}

impl Probes {
    /// A database round trip.
    ///
    /// Fails if the database cannot be reached.
    pub fn database(&self) -> Result<(), StoreError> {
        self.db.ping()
    }

    /// Asks the key store for its keys.
    ///
    /// Fails if the key store cannot be reached.
    pub fn key_store(&self) -> Result<(), ca_core::keystore::KeyStoreError> {
        self.keys.list().map(|_| ())
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
        metrics: Arc<crate::metrics::Metrics>,
        times: crate::config::RevocationTimes,
    ) -> Result<Self> {
        let mut files = HashMap::new();
        let issuers = ca.issuers();
        for issuer in issuers {
            let mut chain_pem = String::new();
            let mut at = Some(issuer);
            // Walk up through the parents; bounded by the issuer count against a cycle.
            for _ in 0..=issuers.len() {
                let Some(i) = at else { break };
                chain_pem.push_str(&i.ca.cert.to_pem()?);
                at = i
                    .parent
                    .as_ref()
                    .and_then(|p| issuers.iter().find(|x| &x.id == p));
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
        Ok(AppState {
            codesign: Arc::new(codesign),
            ocsp: Arc::new(ocsp),
            crls: Arc::new(crate::revocation::CrlCache::new(times.crl_validity)),
            ocsp_cache: Arc::default(),
            token_uses: Arc::default(),
            sign_ins: Arc::new(Slots::new(SIGN_IN_SLOTS)),
            ca,
            tokens: db.clone(),
            probes: Arc::new(Probes { db, keys }),
            ca_files: Arc::new(files),
            metrics,
        })
    }
}

/// How many sign-in password checks may run at once (each holds 19 MiB for Argon2id).
pub const SIGN_IN_SLOTS: usize = 4;

/// A counter of things running at once, with a ceiling.
#[derive(Debug)]
pub struct Slots {
    in_use: std::sync::atomic::AtomicUsize,
    max: usize,
}

/// One taken slot; given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Slots {
    /// At most `max` at once.
    pub fn new(max: usize) -> Self {
        Slots {
            in_use: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    /// A slot, or `None` when all are taken.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0
            .in_use
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let slots = Arc::new(Slots::new(2));
        let a = slots.try_acquire().unwrap();
        let _b = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        drop(a);
        assert!(slots.try_acquire().is_some());
    }
}
