//! Signed OCSP answers held in memory, and the budget for answers signed on demand.
//!
//! Invariant: answers about this CA's certificates and answers about serials it never issued
//! live in separate, separately bounded stores, and are signed on demand from separate
//! budgets, so a flood of questions about random serials can neither displace the first
//! nor starve their signing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::issuer::IssuerId;
use crate::revocation::ocsp::CacheKey;
use crate::store::Serial;

/// A signed OCSP answer kept in memory: its bytes, its validity, and which certificate.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) der: Bytes,
    pub(super) validity: (SystemTime, SystemTime),
    pub(super) issuer: IssuerId,
    pub(super) serial: Serial,
}

impl Held {
    /// Past half its validity: time to sign it again (RFC 5019 leaves the schedule to the
    /// responder; half keeps a relying party's cached copy comfortably fresh).
    pub(super) fn due(&self, now: SystemTime) -> bool {
        let (this_update, next_update) = self.validity;
        let half = next_update.duration_since(this_update).unwrap_or_default() / 2;
        now >= this_update + half
    }
}

/// Answers by the CertID they answer, at most `cap` of them. Reads take a shared lock; the
/// responder's hot path reads this map and nothing else.
#[derive(Debug)]
pub(super) struct AnswerStore {
    answers: RwLock<HashMap<CacheKey, Held>>,
    cap: AtomicUsize,
    /// When full, replace an old answer (`true`: strangers, where the newest question is as
    /// good as any) or refuse the new one (`false`: this CA's certificates, which the
    /// pre-signer keeps and the sweep makes room among; in a cluster they are stored in
    /// the database and this is a bounded cache in front of it, which evicts).
    evict: AtomicBool,
}

impl AnswerStore {
    pub(super) fn new(cap: usize, evict: bool) -> Self {
        AnswerStore {
            answers: RwLock::default(),
            cap: AtomicUsize::new(cap),
            evict: AtomicBool::new(evict),
        }
    }

    /// From now on holds at most `cap` answers, replacing old ones when full: a cache in
    /// front of the answers stored for a cluster.
    pub(super) fn bound(&self, cap: usize) {
        self.cap.store(cap.max(1), Ordering::Relaxed);
        self.evict.store(true, Ordering::Relaxed);
        if let Ok(mut answers) = self.answers.write() {
            while answers.len() > cap.max(1) {
                let Some(old) = answers.keys().next().cloned() else {
                    break;
                };
                answers.remove(&old);
            }
        }
    }

    /// Forgets every answer.
    pub(super) fn clear(&self) {
        if let Ok(mut answers) = self.answers.write() {
            answers.clear();
        }
    }

    pub(super) fn get(&self, key: &CacheKey, now: SystemTime) -> Option<Held> {
        let answers = self.answers.read().ok()?;
        answers.get(key).filter(|c| now < c.validity.1).cloned()
    }

    /// Keeps `held` under `key`. Constant time (this runs on the request path for answers
    /// signed on demand): when full, a store that evicts drops one arbitrary entry; one
    /// that does not keeps what it has.
    pub(super) fn put(&self, key: CacheKey, held: Held) {
        let Ok(mut answers) = self.answers.write() else {
            return;
        };
        if answers.len() >= self.cap.load(Ordering::Relaxed) && !answers.contains_key(&key) {
            if !self.evict.load(Ordering::Relaxed) {
                return;
            }
            if let Some(old) = answers.keys().next().cloned() {
                answers.remove(&old);
            }
        }
        answers.insert(key, held);
    }

    /// Drops answers past their nextUpdate.
    pub(super) fn sweep(&self, now: SystemTime) {
        if let Ok(mut answers) = self.answers.write() {
            answers.retain(|_, c| now < c.validity.1);
        }
    }

    /// Forgets every answer about `serial`.
    pub(super) fn forget(&self, serial: &Serial) {
        if let Ok(mut answers) = self.answers.write() {
            answers.retain(|_, c| &c.serial != serial);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.answers.read().map(|a| a.len()).unwrap_or(0)
    }

    /// Certificates with an answer past half its validity, once each, in a stable order.
    pub(super) fn due(&self, now: SystemTime) -> Vec<(IssuerId, Serial)> {
        let Ok(answers) = self.answers.read() else {
            return Vec::new();
        };
        let mut due: Vec<(IssuerId, Serial)> = answers
            .values()
            .filter(|c| c.due(now))
            .map(|c| (c.issuer.clone(), c.serial.clone()))
            .collect();
        due.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
        due.dedup();
        due
    }
}

/// How many answers may be signed on demand per second.
#[derive(Debug)]
pub(super) struct Budget {
    per_second: u32,
    /// Signatures in the current second: (its start, how many).
    used: Mutex<Option<(Instant, u32)>>,
}

impl Budget {
    pub(super) fn new(per_second: u32) -> Self {
        Budget {
            per_second,
            used: Mutex::new(None),
        }
    }

    /// Whether one more signature fits in this second; counts it if so.
    pub(super) fn take(&self) -> bool {
        let Ok(mut used) = self.used.lock() else {
            return false;
        };
        match used.as_mut() {
            Some((start, n)) if start.elapsed() < Duration::from_secs(1) => {
                if *n >= self.per_second {
                    return false;
                }
                *n += 1;
                true
            }
            _ => {
                *used = Some((Instant::now(), 1));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(n: u8, serial: &str, now: SystemTime) -> Held {
        Held {
            der: Bytes::from(vec![n]),
            validity: (now, now + Duration::from_secs(60)),
            issuer: IssuerId::new("issuing-ca").unwrap(),
            serial: Serial::parse(serial).unwrap(),
        }
    }

    #[test]
    fn live_signing_is_bounded_per_second() {
        let budget = Budget::new(500);
        for _ in 0..500 {
            assert!(budget.take());
        }
        assert!(!budget.take(), "one over the bound");
    }

    #[test]
    fn an_answer_is_signed_again_past_half_its_validity() {
        let this_update = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let held = Held {
            der: Bytes::new(),
            validity: (this_update, this_update + Duration::from_secs(4 * 86_400)),
            issuer: IssuerId::new("issuing-ca").unwrap(),
            serial: Serial::parse("01").unwrap(),
        };
        assert!(!held.due(this_update));
        assert!(!held.due(this_update + Duration::from_secs(2 * 86_400 - 1)));
        assert!(held.due(this_update + Duration::from_secs(2 * 86_400)));
    }

    #[test]
    fn held_answers_are_served_until_their_next_update_and_forgotten_by_serial() {
        let store = AnswerStore::new(10, false);
        let now = SystemTime::now();
        let key = |n: u8| CacheKey::from_cert_id_der(vec![n]);
        for (n, serial) in [(1, "01"), (2, "01"), (3, "02")] {
            store.put(key(n), held(n, serial, now));
        }
        assert!(store.get(&key(1), now).is_some());
        assert!(store.get(&key(1), now + Duration::from_secs(61)).is_none());
        store.forget(&Serial::parse("01").unwrap());
        assert!(store.get(&key(1), now).is_none() && store.get(&key(2), now).is_none());
        assert!(store.get(&key(3), now).is_some());
        assert_eq!(store.len(), 1);
        store.sweep(now);
        assert_eq!(store.len(), 1, "still valid");
        store.sweep(now + Duration::from_secs(61));
        assert_eq!(store.len(), 0, "past its nextUpdate");
    }

    #[test]
    fn a_full_store_of_strangers_replaces_and_a_full_store_of_our_own_refuses() {
        let now = SystemTime::now();
        let key = |n: u8| CacheKey::from_cert_id_der(vec![n]);
        let strangers = AnswerStore::new(2, true);
        let ours = AnswerStore::new(2, false);
        for n in 1..=5 {
            strangers.put(key(n), held(n, "0a", now));
            ours.put(key(n), held(n, "0b", now));
        }
        assert_eq!(strangers.len(), 2);
        assert!(strangers.get(&key(5), now).is_some(), "the newest is kept");
        assert_eq!(ours.len(), 2);
        assert!(ours.get(&key(1), now).is_some() && ours.get(&key(5), now).is_none());
    }
}
