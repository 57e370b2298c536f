//! Threads that run signing calls for callers who stop waiting at their deadline.
//!
//! Invariant: a job never waits for a thread. Submitting claims an idle thread or starts a
//! new one; a thread stuck in a hung module call is never idle again and is simply not
//! counted. Threads are reused, so a signature costs a hand-off, not a thread start (which
//! would cost SoftHSM2's P-256 signing about a fifth of its throughput).
//!
//! The hand-off is most of what a signature costs beyond the module's own C_Sign on a fast
//! token (SoftHSM2 signs P-256 in about 40 µs): waking a parked thread on a virtual machine
//! costs tens of µs each way. So both sides spin briefly before they park: a worker that
//! finished a job looks for the next one for [`WORKER_SPIN`], and a caller looks for its
//! answer for about as long as the member's signatures take ([`Reply::wait_until`]), then
//! both park as before. A caller's answer goes into a [`Reply`] slot the caller's thread
//! reuses from call to call; a caller that gave up at its deadline leaves its slot to the
//! hung worker and takes a new one.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// How long an idle worker looks for the next job before it parks.
const WORKER_SPIN: Duration = Duration::from_micros(50);
/// The longest a caller spins for its answer before it parks (a network HSM's signatures
/// take milliseconds: its callers park at once).
pub(super) const MAX_CALLER_SPIN: Duration = Duration::from_millis(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A growing pool of worker threads.
pub(super) struct Workers {
    tx: Mutex<Sender<Job>>,
    rx: Arc<Mutex<Receiver<Job>>>,
    idle: Arc<AtomicUsize>,
}

impl Workers {
    pub(super) fn new() -> Self {
        let (tx, rx) = channel();
        Workers {
            tx: Mutex::new(tx),
            rx: Arc::new(Mutex::new(rx)),
            idle: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `job` on an idle worker, or on a new one if none is idle.
    ///
    /// Fails only if a thread cannot be started.
    pub(super) fn run(&self, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let claimed = self
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !claimed {
            let rx = Arc::clone(&self.rx);
            let idle = Arc::clone(&self.idle);
            std::thread::Builder::new()
                .name("keyhold-hsm-sign".into())
                .spawn(move || work(&rx, &idle))?;
        }
        // The receiver lives as long as any worker; a send fails only when none does, and
        // then the job is dropped and its caller sees its reply slot abandoned.
        let _ = lock(&self.tx).send(Box::new(job));
        Ok(())
    }
}

fn work(rx: &Mutex<Receiver<Job>>, idle: &AtomicUsize) {
    loop {
        let job = {
            let rx = lock(rx);
            next_job(&rx)
        };
        match job {
            Some(job) => job(),
            // The key store is gone.
            None => return,
        }
        idle.fetch_add(1, Ordering::SeqCst);
    }
}

/// The next job: looked for during [`WORKER_SPIN`], then waited for; `None` once the pool
/// is gone.
fn next_job(rx: &Receiver<Job>) -> Option<Job> {
    let until = Instant::now() + WORKER_SPIN;
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() < until => std::hint::spin_loop(),
            Err(TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// One call's answer, left by the worker for the caller.
pub(super) struct Reply<T> {
    /// Set once `value` holds the answer (or the worker dropped the job without one).
    ready: AtomicBool,
    inner: Mutex<Slot<T>>,
    woken: Condvar,
}

struct Slot<T> {
    value: Option<T>,
    /// The worker ran (or dropped) the job: no answer will come after `value`.
    done: bool,
    /// The caller is parked: the worker must wake it.
    parked: bool,
}

/// How a wait for a [`Reply`] ended.
pub(super) enum Waited<T> {
    Answer(T),
    /// The deadline passed first.
    Late,
    /// The job ended without an answer.
    Dropped,
}

impl<T> Reply<T> {
    fn new() -> Self {
        Reply {
            ready: AtomicBool::new(false),
            inner: Mutex::new(Slot {
                value: None,
                done: false,
                parked: false,
            }),
            woken: Condvar::new(),
        }
    }

    /// Hands `value` to the caller.
    pub(super) fn put(&self, value: T) {
        self.finish(Some(value));
    }

    fn finish(&self, value: Option<T>) {
        let mut slot = lock(&self.inner);
        if slot.done {
            return;
        }
        slot.value = value;
        slot.done = true;
        self.ready.store(true, Ordering::Release);
        if slot.parked {
            self.woken.notify_one();
        }
    }

    /// Waits for the answer: spins for `spin` (never past `deadline`), then parks until
    /// `deadline`.
    pub(super) fn wait_until(&self, spin: Duration, deadline: Instant) -> Waited<T> {
        if !spin.is_zero()
            && let Some(_place) = SpinPlace::claim()
        {
            let spin_until = (Instant::now() + spin).min(deadline);
            let mut turns = 0u32;
            while !self.ready.load(Ordering::Acquire) {
                turns = turns.wrapping_add(1);
                if turns.is_multiple_of(32) && Instant::now() >= spin_until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let mut slot = lock(&self.inner);
        loop {
            if slot.done {
                slot.parked = false;
                return match slot.value.take() {
                    Some(value) => Waited::Answer(value),
                    None => Waited::Dropped,
                };
            }
            let now = Instant::now();
            if now >= deadline {
                slot.parked = false;
                return Waited::Late;
            }
            slot.parked = true;
            slot = self
                .woken
                .wait_timeout(slot, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn reset(&self) {
        let mut slot = lock(&self.inner);
        slot.value = None;
        slot.done = false;
        slot.parked = false;
        self.ready.store(false, Ordering::Release);
    }
}

/// The worker's end of a [`Reply`]: answers it, or, if the job is dropped unanswered (the
/// pool is gone), tells the caller so instead of leaving it to its deadline.
pub(super) struct Answer<T>(Arc<Reply<T>>);

impl<T> Answer<T> {
    pub(super) fn put(self, value: T) {
        self.0.put(value);
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        self.0.finish(None);
    }
}

/// Callers spinning right now, in the whole process.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// A caller's right to spin: at most one caller per two CPUs spins at a time, so that
/// spinning callers never take the CPUs the workers sign on (the rest park at once).
struct SpinPlace;

impl SpinPlace {
    fn claim() -> Option<SpinPlace> {
        static LIMIT: OnceLock<usize> = OnceLock::new();
        let limit = *LIMIT.get_or_init(|| {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        });
        SPINNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SpinPlace)
    }
}

impl Drop for SpinPlace {
    fn drop(&mut self) {
        SPINNING.fetch_sub(1, Ordering::AcqRel);
    }
}

thread_local! {
    static SLOT: RefCell<Option<Arc<dyn std::any::Any + Send + Sync>>> = const { RefCell::new(None) };
}

/// A reply slot for one call from this thread: the one this thread used last if nobody
/// else holds it any more, else a new one. Returns the caller's end and the worker's.
pub(super) fn reply_slot<T: Send + 'static>() -> (Arc<Reply<T>>, Answer<T>) {
    let reused = SLOT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let any = cell.take()?;
        let reply = any.downcast::<Reply<T>>().ok()?;
        // Our clone in `cell` was taken: 1 means no worker still holds it.
        (Arc::strong_count(&reply) == 1).then_some(reply)
    });
    let reply = match reused {
        Some(reply) => {
            reply.reset();
            reply
        }
        None => Arc::new(Reply::new()),
    };
    SLOT.with(|cell| {
        *cell.borrow_mut() = Some(Arc::clone(&reply) as Arc<dyn std::any::Any + Send + Sync>);
    });
    let answer = Answer(Arc::clone(&reply));
    (reply, answer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_hung_job_does_not_hold_up_the_next() {
        let workers = Workers::new();
        let (hang_tx, hang_rx) = channel::<()>();
        workers
            .run(move || {
                let _ = hang_rx.recv();
            })
            .unwrap();
        let (tx, rx) = channel();
        for i in 0..3 {
            let tx = tx.clone();
            workers.run(move || tx.send(i).unwrap()).unwrap();
        }
        let mut got: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        drop(hang_tx);
    }

    fn answer_of(waited: Waited<u32>) -> Option<u32> {
        match waited {
            Waited::Answer(v) => Some(v),
            Waited::Late | Waited::Dropped => None,
        }
    }

    #[test]
    fn answers_arrive_spinning_or_parked_and_the_slot_is_reused() {
        let workers = Workers::new();
        let mut slots = Vec::new();
        for i in 0..200u32 {
            let (reply, answer) = reply_slot::<u32>();
            slots.push(Arc::as_ptr(&reply) as usize);
            // Every other job answers after the caller has stopped spinning and parked.
            let slow = i % 2 == 1;
            workers
                .run(move || {
                    if slow {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    answer.put(i);
                })
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let spin = Duration::from_micros(100);
            assert_eq!(answer_of(reply.wait_until(spin, deadline)), Some(i));
        }
        slots.sort_unstable();
        slots.dedup();
        assert!(slots.len() < 150, "{} slots for 200 calls", slots.len());
    }

    #[test]
    fn a_late_answer_goes_to_an_abandoned_slot_and_a_dropped_job_is_reported() {
        let workers = Workers::new();
        let (hang_tx, hang_rx) = channel::<()>();
        let (reply, answer) = reply_slot::<u32>();
        workers
            .run(move || {
                let _ = hang_rx.recv();
                answer.put(1);
            })
            .unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(50);
        assert!(matches!(
            reply.wait_until(Duration::from_micros(100), deadline),
            Waited::Late
        ));
        assert!(started.elapsed() >= Duration::from_millis(50));
        // The next call from this thread must not share the hung call's slot.
        let (next, next_answer) = reply_slot::<u32>();
        assert!(!Arc::ptr_eq(&reply, &next));
        workers.run(move || next_answer.put(2)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            answer_of(next.wait_until(Duration::ZERO, deadline)),
            Some(2)
        );
        drop(hang_tx);
        // A job dropped without running tells its caller at once.
        let (dropped, dropped_answer) = reply_slot::<u32>();
        drop(dropped_answer);
        assert!(matches!(
            dropped.wait_until(Duration::ZERO, Instant::now() + Duration::from_secs(5)),
            Waited::Dropped
        ));
    }
}
