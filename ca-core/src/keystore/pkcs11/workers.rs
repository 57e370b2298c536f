//! Threads that run signing calls for callers who stop waiting at their deadline.
//!
//! Invariant: a job never waits for a thread. Submitting claims an idle thread or starts a
//! new one; a thread stuck in a hung module call is never idle again and is simply not
//! counted. Threads are reused, so a signature costs a channel hand-off, not a thread start
//! (which would cost SoftHSM2's P-256 signing about a fifth of its throughput).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

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
        // then the job is dropped and its caller sees the channel close.
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(Box::new(job));
        Ok(())
    }
}

fn work(rx: &Mutex<Receiver<Job>>, idle: &AtomicUsize) {
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(),
            // The key store is gone.
            Err(_) => return,
        }
        idle.fetch_add(1, Ordering::SeqCst);
    }
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
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        drop(hang_tx);
    }
}
