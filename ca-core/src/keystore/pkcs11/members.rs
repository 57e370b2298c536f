//! Several PKCS#11 members (HSMs) holding the same keys: choosing one per signature, taking
//! a failing one out, and taking it back after a probe signature verifies (issue 18).
//!
//! Invariants:
//! - a member signs requests only while it is in; it comes back only after a signature it
//!   made verifies with the public key every member was checked against at start;
//! - a signing call is retried on another member only after the first answered with a
//!   failure, never after a missed deadline: a reserved serial is signed at most once into
//!   a certificate that is kept;
//! - no caller waits longer than the signing deadline: each call runs on its own thread, and
//!   a call that misses the deadline is abandoned, never joined (its member goes out);
//! - every member going out or coming back is reported once to the observer.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;

use super::config::{MemberConfig, Pkcs11Config};
use super::module::{self, Module};
use super::pool::{Connection, Failure};
use super::rv::Fault;
use super::workers::Workers;
use super::{FoundKey, find_key};
use crate::keystore::{KeySpec, KeyStoreError, MemberObserver, MemberState, MemberStatus, SpkiDer};
use crate::secret::Secret;

mod probe;

/// Upper bounds of the signing latency histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// First wait before probing a member that went out; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How many signing deadlines calls abandoned on a member that is out get to return before
/// its module is re-initialised under them (see [`Module::reinitialize`]).
const STUCK_GRACE: u32 = 5;
/// How often the monitor thread looks at the members.
const TICK: Duration = Duration::from_millis(50);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Health {
    state: MemberState,
    last_error: Option<String>,
    last_latency: Option<Duration>,
    out_since: Instant,
    last_fault: Fault,
    backoff: Duration,
    next_probe: Instant,
    last_used: Instant,
}

/// One member: its connection (none while it could not be opened) and its health.
pub(super) struct Member {
    pub(super) config: MemberConfig,
    connection: Mutex<Option<Arc<Connection>>>,
    module: Mutex<Option<Arc<Module>>>,
    health: Mutex<Health>,
    in_flight: AtomicUsize,
    /// A recovery or keepalive probe is running (possibly hung), started at `probe_started`;
    /// `keepalive_probe` says which.
    probing: AtomicBool,
    probe_started: Mutex<Instant>,
    keepalive_probe: AtomicBool,
    signatures: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

/// A key every member must hold: its label, type and public key, and the CKA_ID it has on
/// each member (`None` until found there).
pub(super) struct KnownKey {
    pub(super) label: String,
    pub(super) spec: KeySpec,
    pub(super) public: SpkiDer,
    ids: Vec<Mutex<Option<Vec<u8>>>>,
}

enum Event {
    Out(String, String),
    Back(String, Duration),
}

/// The members of one key store, shared by the store, its signers and the monitor thread.
pub(super) struct Members {
    pub(super) token: String,
    pin: Secret,
    sessions: usize,
    pub(super) sign_timeout: Duration,
    keepalive: Duration,
    pub(super) members: Vec<Member>,
    keys: Mutex<Vec<Arc<KnownKey>>>,
    /// Woken whenever a call ends, for callers waiting for a member under its cap.
    slots: (Mutex<()>, Condvar),
    observer: Mutex<Option<Arc<dyn MemberObserver>>>,
    /// Events from before an observer was set.
    pending: Mutex<Vec<Event>>,
    /// Threads signing calls run on.
    workers: Workers,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .members
            .iter()
            .map(|m| m.config.name.as_str())
            .collect();
        f.debug_struct("Members")
            .field("token", &self.token)
            .field("members", &names)
            .finish_non_exhaustive()
    }
}

impl Members {
    /// Opens every member it can. A member that cannot be reached starts out (and is
    /// probed); a refused PIN, a missing module file or a token without ECDSA fails the
    /// open, as does no member at all being reachable.
    pub(super) fn open(config: &Pkcs11Config, pin: &Secret) -> Result<Arc<Self>, KeyStoreError> {
        if config.members.is_empty() {
            return Err(KeyStoreError::Unsupported(
                "a pkcs#11 key store needs at least one member".into(),
            ));
        }
        let now = Instant::now();
        let members = config
            .members
            .iter()
            .map(|c| Member {
                config: c.clone(),
                connection: Mutex::new(None),
                module: Mutex::new(None),
                health: Mutex::new(Health {
                    state: MemberState::Out,
                    last_error: None,
                    last_latency: None,
                    out_since: now,
                    last_fault: Fault::Module,
                    backoff: FIRST_BACKOFF,
                    next_probe: now + FIRST_BACKOFF,
                    last_used: now,
                }),
                in_flight: AtomicUsize::new(0),
                probing: AtomicBool::new(false),
                probe_started: Mutex::new(now),
                keepalive_probe: AtomicBool::new(false),
                signatures: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                buckets: Default::default(),
                latency_sum_us: AtomicU64::new(0),
            })
            .collect();
        let set = Arc::new(Members {
            token: config.token.clone(),
            pin: pin.clone(),
            sessions: config.sessions,
            sign_timeout: config.sign_timeout,
            keepalive: config.keepalive,
            members,
            keys: Mutex::new(Vec::new()),
            slots: (Mutex::new(()), Condvar::new()),
            observer: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
            workers: Workers::new(),
        });
        let mut unreachable = Vec::new();
        for (i, member) in set.members.iter().enumerate() {
            match set.connect(i, false, false) {
                Ok(connection) => {
                    *lock(&member.connection) = Some(connection);
                    lock(&member.health).state = MemberState::In;
                }
                Err(e @ (KeyStoreError::WrongSecret(_) | KeyStoreError::Unsupported(_))) => {
                    return Err(set.named(i, e));
                }
                Err(e) => {
                    let e = set.named(i, e);
                    lock(&member.health).last_error = Some(e.to_string());
                    set.emit(Event::Out(member.config.name.clone(), e.to_string()));
                    unreachable.push(e.to_string());
                }
            }
        }
        if unreachable.len() == set.members.len() {
            return Err(KeyStoreError::Unavailable(unreachable.join("; ")));
        }
        let weak = Arc::downgrade(&set);
        std::thread::Builder::new()
            .name("keyhold-hsm-monitor".into())
            .spawn(move || probe::monitor(weak))
            .map_err(|e| KeyStoreError::io("cannot start the hsm member monitor thread", e))?;
        Ok(set)
    }

    /// Prefixes an error with the member's name and module, so operators know which HSM.
    /// A store with one member keeps the messages it always had.
    fn named(&self, i: usize, e: KeyStoreError) -> KeyStoreError {
        if self.members.len() == 1 {
            return e;
        }
        let m = &self.members[i].config;
        let prefix = format!("hsm member {:?} ({})", m.name, m.module.display());
        match e {
            KeyStoreError::WrongSecret(s) => KeyStoreError::WrongSecret(format!("{prefix}: {s}")),
            KeyStoreError::Unsupported(s) => KeyStoreError::Unsupported(format!("{prefix}: {s}")),
            KeyStoreError::Corrupt(s) => KeyStoreError::Corrupt(format!("{prefix}: {s}")),
            KeyStoreError::Pkcs11(s) => KeyStoreError::Pkcs11(format!("{prefix}: {s}")),
            other => KeyStoreError::Unavailable(format!("{prefix}: {other}")),
        }
    }

    /// Loads (or, with `reinit`, finalizes and initialises again) member `i`'s module and
    /// opens a new connection to its token.
    /// With `force`, the module is re-initialised even under calls still inside it (see
    /// [`Module::reinitialize`]).
    fn connect(
        &self,
        i: usize,
        reinit: bool,
        force: bool,
    ) -> Result<Arc<Connection>, KeyStoreError> {
        let m = &self.members[i];
        let known = lock(&m.module).clone();
        let module = match known {
            Some(module) if reinit => {
                module
                    .reinitialize(self.sign_timeout, force)
                    .map_err(KeyStoreError::Unavailable)?;
                module
            }
            _ => {
                let module = module::load(&m.config.module)?;
                *lock(&m.module) = Some(Arc::clone(&module));
                module
            }
        };
        let pin = m.config.pin.as_ref().unwrap_or(&self.pin).clone();
        Ok(Arc::new(Connection::open(
            module,
            m.config.module.clone(),
            self.token.clone(),
            m.config.token_serial.clone(),
            pin,
            self.sessions,
        )?))
    }

    /// The connection of the first member that is in, for key ceremony calls (generating,
    /// listing, destroying keys: replication to the other members is the HSM's job).
    pub(super) fn first(&self) -> Result<Arc<Connection>, KeyStoreError> {
        for m in &self.members {
            if lock(&m.health).state == MemberState::In
                && let Some(c) = lock(&m.connection).clone()
            {
                return Ok(c);
            }
        }
        Err(self.none_in())
    }

    fn none_in(&self) -> KeyStoreError {
        let why: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                let h = lock(&m.health);
                format!(
                    "{}: {}",
                    m.config.name,
                    h.last_error.as_deref().unwrap_or("out")
                )
            })
            .collect();
        KeyStoreError::Unavailable(format!(
            "no hsm member of token {:?} is in service ({})",
            self.token,
            why.join("; ")
        ))
    }

    /// Finds `label` on every member that is in and checks that all hold the same key.
    ///
    /// Fails with [`KeyStoreError::NotFound`] if no member has it, and
    /// [`KeyStoreError::Corrupt`] naming the member that lacks it or holds a different key.
    pub(super) fn key(&self, label: &str) -> Result<Arc<KnownKey>, KeyStoreError> {
        if let Some(k) = lock(&self.keys).iter().find(|k| k.label == label) {
            return Ok(Arc::clone(k));
        }
        let mut found: Vec<(usize, Result<FoundKey, KeyStoreError>)> = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let Some(c) = lock(&m.connection).clone() else {
                continue;
            };
            if lock(&m.health).state != MemberState::In {
                continue;
            }
            found.push((i, find_key(&c, label)));
        }
        let reference = found
            .iter()
            .find_map(|(i, r)| r.as_ref().ok().map(|k| (*i, k)));
        let Some((first, (spec, _, public))) = reference else {
            return match found.into_iter().next() {
                Some((_, Err(e))) => Err(e),
                _ => Err(self.none_in()),
            };
        };
        let key = KnownKey {
            label: label.to_owned(),
            spec: *spec,
            public: public.clone(),
            ids: self.members.iter().map(|_| Mutex::new(None)).collect(),
        };
        for (i, result) in &found {
            let name = &self.members[*i].config.name;
            let first_name = &self.members[first].config.name;
            match result {
                Ok((_, id, p)) if *p == key.public => *lock(&key.ids[*i]) = Some(id.clone()),
                Ok((_, _, p)) => {
                    return Err(KeyStoreError::Corrupt(format!(
                        "hsm member {name:?} holds a different key labelled {label:?} \
                         (sha256 {}) than member {first_name:?} (sha256 {}): the members are \
                         out of step; fix the replication or remove the member",
                        &p.fingerprint()[..16],
                        &key.public.fingerprint()[..16]
                    )));
                }
                Err(KeyStoreError::NotFound(_)) => {
                    return Err(KeyStoreError::Corrupt(format!(
                        "hsm member {name:?} has no key labelled {label:?}, which member \
                         {first_name:?} holds: the members are out of step; fix the \
                         replication or remove the member"
                    )));
                }
                Err(e) => return Err(self.named(*i, KeyStoreError::Pkcs11(e.to_string()))),
            }
        }
        let key = Arc::new(key);
        let mut keys = lock(&self.keys);
        if let Some(k) = keys.iter().find(|k| k.label == label) {
            return Ok(Arc::clone(k));
        }
        keys.push(Arc::clone(&key));
        Ok(key)
    }

    /// Whether `key` is still known, i.e. was not destroyed through this store.
    fn is_current(&self, key: &Arc<KnownKey>) -> bool {
        lock(&self.keys).iter().any(|k| Arc::ptr_eq(k, key))
    }

    /// Forgets a key after it was destroyed.
    pub(super) fn forget(&self, label: &str) {
        lock(&self.keys).retain(|k| k.label != label);
    }

    /// Signs `digest` with `key` on the least busy member that is in; after a failure with
    /// an answer, once more on another member.
    ///
    /// Fails with [`KeyStoreError::Unavailable`] when no member is in, when every member
    /// stays at its cap until the deadline, or when the member misses the deadline.
    pub(super) fn sign(
        self: &Arc<Self>,
        key: &Arc<KnownKey>,
        digest: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError> {
        let deadline = Instant::now() + self.sign_timeout;
        let mut tried = None;
        let mut last = None;
        for _ in 0..2 {
            let Some(i) = self.pick(tried, deadline)? else {
                break;
            };
            match self.call(i, key, digest, deadline) {
                Ok(signature) => return Ok(signature),
                Err(Outcome::Late(e)) => return Err(e),
                Err(Outcome::Failed(Failure { fault, error })) => {
                    // A key the member held at start and no longer finds, though nobody
                    // destroyed it through this store: SoftHSM2 behind a moved token
                    // directory, or a member that lost its replica.
                    let fault = match error {
                        KeyStoreError::NotFound(_) if self.is_current(key) => Fault::Module,
                        _ => fault,
                    };
                    if fault == Fault::Call {
                        return Err(error);
                    }
                    self.take_out(i, fault, &error.to_string());
                    tried = Some(i);
                    last = Some(error);
                }
            }
        }
        Err(match last {
            Some(e) if self.first().is_ok() => e,
            Some(e) => KeyStoreError::Unavailable(format!("{e}; {}", self.none_in())),
            None => self.none_in(),
        })
    }

    /// The member that is in, under its cap, with the fewest calls in flight (not `skip`);
    /// counts the call in. Waits for a free place until `deadline`; `None` if no member
    /// is in.
    fn pick(&self, skip: Option<usize>, deadline: Instant) -> Result<Option<usize>, KeyStoreError> {
        let (mutex, condvar) = &self.slots;
        let mut guard = lock(mutex);
        loop {
            let mut any_in = false;
            let mut best: Option<(usize, usize)> = None;
            for (i, m) in self.members.iter().enumerate() {
                if Some(i) == skip || lock(&m.health).state != MemberState::In {
                    continue;
                }
                any_in = true;
                let n = m.in_flight.load(Ordering::SeqCst);
                if n < m.config.max_in_flight && best.is_none_or(|(_, b)| n < b) {
                    best = Some((i, n));
                }
            }
            if let Some((i, _)) = best {
                self.members[i].in_flight.fetch_add(1, Ordering::SeqCst);
                return Ok(Some(i));
            }
            if !any_in {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(KeyStoreError::Unavailable(format!(
                    "every hsm member of token {:?} stayed at its max_in_flight until the \
                     {:?} signing deadline",
                    self.token, self.sign_timeout
                )));
            }
            guard = condvar
                .wait_timeout(guard, (deadline - now).min(TICK))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Runs one signature on member `i` on its own thread, waiting until `deadline`.
    fn call(
        self: &Arc<Self>,
        i: usize,
        key: &Arc<KnownKey>,
        digest: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, Outcome> {
        let started = Instant::now();
        let result = self.on_thread(i, key, digest, deadline);
        let m = &self.members[i];
        match &result {
            Ok(_) => self.record(i, started.elapsed()),
            Err(Outcome::Late(e)) => {
                m.errors.fetch_add(1, Ordering::Relaxed);
                self.take_out(i, Fault::Module, &e.to_string());
            }
            Err(Outcome::Failed(_)) => {
                m.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn on_thread(
        self: &Arc<Self>,
        i: usize,
        key: &Arc<KnownKey>,
        digest: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, Outcome> {
        let set = Arc::clone(self);
        let done = move |set: &Members| {
            set.members[i].in_flight.fetch_sub(1, Ordering::SeqCst);
            let _g = lock(&set.slots.0);
            set.slots.1.notify_all();
        };
        let connection = lock(&self.members[i].connection).clone();
        let id = lock(&key.ids[i]).clone();
        let (Some(connection), Some(id)) = (connection, id) else {
            done(self);
            return Err(Outcome::Failed(Failure {
                fault: Fault::Module,
                error: KeyStoreError::Unavailable("the member has no open connection".into()),
            }));
        };
        let (tx, rx) = sync_channel(1);
        let label = key.label.clone();
        let digest = digest.to_vec();
        let spawned = self.workers.run(move || {
            let result = sign_raw(&connection, &label, &id, &digest);
            done(&set);
            // Let go of the store before answering: a caller that drops it next must
            // find its sessions closed (the token logs the application out).
            drop(connection);
            drop(set);
            // The caller may have given up (deadline): then nobody listens.
            let _ = tx.send(result);
        });
        if let Err(e) = spawned {
            self.members[i].in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Outcome::Failed(Failure {
                fault: Fault::Call,
                error: KeyStoreError::io("cannot start a signing thread", e),
            }));
        }
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(signature)) => Ok(signature),
            Ok(Err(failure)) => Err(Outcome::Failed(failure)),
            Err(RecvTimeoutError::Timeout) => {
                Err(Outcome::Late(KeyStoreError::Unavailable(format!(
                    "hsm member {:?} did not sign within the {:?} deadline; the call was \
                     abandoned and the member taken out",
                    self.members[i].config.name, self.sign_timeout
                ))))
            }
            Err(RecvTimeoutError::Disconnected) => Err(Outcome::Failed(Failure {
                fault: Fault::Module,
                error: KeyStoreError::Unavailable(
                    "the signing thread ended without an answer".into(),
                ),
            })),
        }
    }

    fn record(&self, i: usize, latency: Duration) {
        let m = &self.members[i];
        m.signatures.fetch_add(1, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        m.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        m.latency_sum_us.fetch_add(
            latency.as_micros().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let mut h = lock(&m.health);
        h.last_latency = Some(latency);
        h.last_used = Instant::now();
    }

    /// Takes member `i` out (reported once), or notes a newer error if it is out already.
    fn take_out(&self, i: usize, fault: Fault, reason: &str) {
        let m = &self.members[i];
        let now = Instant::now();
        let went_out = {
            let mut h = lock(&m.health);
            h.last_error = Some(reason.to_owned());
            if h.last_fault != Fault::Module {
                h.last_fault = fault;
            }
            if h.state == MemberState::In {
                h.state = MemberState::Out;
                h.last_fault = fault;
                h.out_since = now;
                h.backoff = FIRST_BACKOFF;
                h.next_probe = now + FIRST_BACKOFF;
                true
            } else {
                false
            }
        };
        if went_out {
            self.emit(Event::Out(m.config.name.clone(), reason.to_owned()));
        }
    }

    fn emit(&self, event: Event) {
        let observer = lock(&self.observer).clone();
        match observer {
            Some(o) => deliver(o.as_ref(), &event),
            None => lock(&self.pending).push(event),
        }
    }

    pub(super) fn watch(&self, observer: Arc<dyn MemberObserver>) {
        let pending = std::mem::take(&mut *lock(&self.pending));
        *lock(&self.observer) = Some(Arc::clone(&observer));
        for event in &pending {
            deliver(observer.as_ref(), event);
        }
    }

    pub(super) fn status(&self) -> Vec<MemberStatus> {
        self.members
            .iter()
            .map(|m| {
                let h = lock(&m.health);
                let mut cumulative = 0;
                let mut latency_buckets = Vec::new();
                for (i, count) in m.buckets.iter().enumerate() {
                    cumulative += count.load(Ordering::Relaxed);
                    latency_buckets
                        .push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
                }
                MemberStatus {
                    name: m.config.name.clone(),
                    state: h.state,
                    last_error: h.last_error.clone(),
                    last_latency: h.last_latency,
                    in_flight: m.in_flight.load(Ordering::SeqCst),
                    max_in_flight: m.config.max_in_flight,
                    signatures: m.signatures.load(Ordering::Relaxed),
                    errors: m.errors.load(Ordering::Relaxed),
                    latency_buckets,
                    latency_sum: m.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
                }
            })
            .collect()
    }
}

enum Outcome {
    /// The member answered with a failure.
    Failed(Failure),
    /// The member did not answer within the deadline.
    Late(KeyStoreError),
}

fn deliver(observer: &dyn MemberObserver, event: &Event) {
    match event {
        Event::Out(name, reason) => observer.member_out(name, reason),
        Event::Back(name, after) => observer.member_back(name, *after),
    }
}

/// C_Sign with CKM_ECDSA on a pooled session; the raw r||s.
fn sign_raw(c: &Connection, label: &str, id: &[u8], digest: &[u8]) -> Result<Vec<u8>, Failure> {
    c.run_sorted(|lease| {
        let handle = c.private_key(lease, label, id)?;
        Ok(lease.session.sign(&Mechanism::Ecdsa, handle, digest)?)
    })
}
