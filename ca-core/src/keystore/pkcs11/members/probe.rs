//! Bringing members back and keeping idle ones alive: the monitor thread, recovery probes
//! and keepalive probes of [`Members`] (issue 18).
//!
//! Invariant: a member comes back only after every known key was found on it with the
//! public key it had at start and a probe signature it made verifies; only keepalive probes
//! are timed against the deadline (a recovery sets the state itself).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::super::ec;
use super::super::pool::Connection;
use super::super::rv::Fault;
use super::{
    Event, FIRST_BACKOFF, KnownKey, MAX_BACKOFF, Members, STUCK_GRACE, TICK, find_key, lock,
    sign_raw,
};
use crate::keystore::{KeyStoreError, MemberState, verify};

/// What a probe signs.
const PROBE: &[u8] = b"keyhold hsm member probe";

impl Members {
    /// Brings member `i` back if it can: re-initialises its module after a module fault,
    /// opens a new connection, finds every known key on it with the same public key, and
    /// signs a probe that must verify. Runs on a probe thread.
    fn recover(&self, i: usize) {
        let m = &self.members[i];
        let (reinit, force) = {
            let h = lock(&m.health);
            (
                h.last_fault == Fault::Module && lock(&m.module).is_some(),
                h.out_since.elapsed() > self.sign_timeout * STUCK_GRACE,
            )
        };
        let started = Instant::now();
        let outcome = self
            .connect(i, reinit, force)
            .map_err(|e| self.named(i, e))
            .and_then(|c| self.check_keys(i, &c).map(|()| c));
        let mut h = lock(&m.health);
        match outcome {
            Ok(connection) => {
                *lock(&m.connection) = Some(connection);
                h.state = MemberState::In;
                h.last_used = Instant::now();
                h.last_latency = Some(started.elapsed());
                h.backoff = FIRST_BACKOFF;
                let after = h.out_since.elapsed();
                drop(h);
                self.emit(Event::Back(m.config.name.clone(), after));
            }
            Err(e) => {
                h.last_error = Some(e.to_string());
                h.last_fault = Fault::Module;
                h.backoff = (h.backoff * 2).min(MAX_BACKOFF);
                h.next_probe = Instant::now() + h.backoff;
            }
        }
    }

    /// Finds every known key on member `i` through `c`, checks its public key, and signs a
    /// probe with the first that must verify.
    fn check_keys(&self, i: usize, c: &Connection) -> Result<(), KeyStoreError> {
        let keys = lock(&self.keys).clone();
        let name = &self.members[i].config.name;
        for key in &keys {
            let (_, id, public) = find_key(c, &key.label).map_err(|e| self.named(i, e))?;
            if public != key.public {
                return Err(KeyStoreError::Corrupt(format!(
                    "hsm member {name:?} now holds a different key labelled {:?}; it stays out",
                    key.label
                )));
            }
            *lock(&key.ids[i]) = Some(id);
        }
        if let Some(key) = keys.first() {
            probe(c, key, i).map_err(|e| self.named(i, e))?;
        }
        Ok(())
    }

    /// A keepalive: signs a probe on member `i`, which is in; takes it out if that fails.
    fn keepalive(&self, i: usize) {
        let m = &self.members[i];
        let connection = lock(&m.connection).clone();
        let key = lock(&self.keys).first().cloned();
        let started = Instant::now();
        let result = match (connection, key) {
            (Some(c), Some(key)) => probe(&c, &key, i),
            (Some(c), None) => c
                .run(|lease| Ok(lease.session.get_session_info()?))
                .map(|_| ()),
            (None, _) => Err(KeyStoreError::Unavailable("no open connection".into())),
        };
        match result {
            Ok(()) => {
                let mut h = lock(&m.health);
                h.last_used = Instant::now();
                h.last_latency = Some(started.elapsed());
            }
            Err(e) => self.take_out(i, Fault::Module, &format!("keepalive probe failed: {e}")),
        }
    }
}

/// Signs [`PROBE`] with `key` on member `i` and verifies the signature.
fn probe(c: &Connection, key: &KnownKey, i: usize) -> Result<(), KeyStoreError> {
    let id = lock(&key.ids[i])
        .clone()
        .ok_or_else(|| KeyStoreError::NotFound(key.label.clone()))?;
    let raw = sign_raw(c, &key.label, &id, &ec::digest(key.spec, PROBE)).map_err(|f| f.error)?;
    let der = ec::raw_signature_to_der(&raw, key.spec)?;
    verify(key.spec.signature_algorithm(), &key.public, PROBE, &der)
        .map_err(|_| KeyStoreError::Corrupt("its probe signature does not verify".into()))
}

/// The monitor: probes members that are out (with back-off) and members idle longer than
/// the keepalive, each on its own thread so that a hung member never stalls the others; a
/// keepalive probe that misses the deadline takes its member out. Ends with the key store.
pub(super) fn monitor(set: Weak<Members>) {
    loop {
        std::thread::sleep(TICK);
        let Some(set) = set.upgrade() else {
            return;
        };
        let now = Instant::now();
        for (i, m) in set.members.iter().enumerate() {
            if m.probing.load(Ordering::SeqCst) {
                // Only a keepalive can be late: a recovery may take longer (it waits for
                // abandoned calls before re-initialising) and sets the state itself.
                let late = m.keepalive_probe.load(Ordering::SeqCst)
                    && lock(&m.probe_started).elapsed() > set.sign_timeout;
                if late && lock(&m.health).state == MemberState::In {
                    set.take_out(
                        i,
                        Fault::Module,
                        &format!(
                            "keepalive probe did not answer within {:?}",
                            set.sign_timeout
                        ),
                    );
                }
                continue;
            }
            let (state, due_recovery, idle) = {
                let h = lock(&m.health);
                (
                    h.state,
                    now >= h.next_probe,
                    now.duration_since(h.last_used),
                )
            };
            let job: Option<fn(&Members, usize)> = match state {
                MemberState::Out if due_recovery => Some(Members::recover),
                MemberState::In
                    if idle >= set.keepalive && m.in_flight.load(Ordering::SeqCst) == 0 =>
                {
                    Some(Members::keepalive)
                }
                _ => None,
            };
            let Some(job) = job else {
                continue;
            };
            m.probing.store(true, Ordering::SeqCst);
            *lock(&m.probe_started) = now;
            m.keepalive_probe
                .store(state == MemberState::In, Ordering::SeqCst);
            let worker = Arc::clone(&set);
            let spawned = std::thread::Builder::new()
                .name("keyhold-hsm-probe".into())
                .spawn(move || {
                    job(&worker, i);
                    worker.members[i].probing.store(false, Ordering::SeqCst);
                });
            if spawned.is_err() {
                m.probing.store(false, Ordering::SeqCst);
            }
        }
    }
}
