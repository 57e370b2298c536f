//! The timed runs: threads started together, solo measurements and paired 10 ms slices.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};

use crate::WARM_UP;
use crate::noise::{CpuTimes, Disturbance};
use crate::subjects::{SignFn, Subject};

/// What one thread does in a measurement. It is made on its own thread (a PKCS#11 session
/// is not `Sync`), so it need not be `Send`; only its output crosses threads.
trait Job {
    type Output: Send;

    /// One unit of warm-up work.
    fn warm_up(&mut self) -> Result<()>;

    /// The timed work, until `stop` is set.
    fn run(&mut self, stop: &AtomicBool) -> Result<Self::Output>;
}

/// Runs `threads` jobs made by `make` side by side and returns their outputs.
///
/// All threads make their jobs, pass a barrier together and warm up until the main thread
/// ends the warm-up ([`WARM_UP`]); they pass a second barrier together, then run until the
/// main thread stops them after `duration`. Every thread reaches both barriers even if it
/// fails, so a failure ends the measurement instead of hanging it.
fn run_threads<J: Job>(
    threads: usize,
    duration: Duration,
    make: &(dyn Fn() -> Result<J> + Sync),
) -> Result<(Vec<J::Output>, Disturbance)> {
    let ready = Barrier::new(threads + 1);
    let go = Barrier::new(threads + 1);
    let warm = AtomicBool::new(false);
    let stop = AtomicBool::new(false);

    let (results, disturbance) = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let job = make();
                    ready.wait();
                    let warmed = job.and_then(|mut job| {
                        while !warm.load(Ordering::Acquire) {
                            job.warm_up()?;
                        }
                        Ok(job)
                    });
                    go.wait();
                    warmed?.run(&stop)
                })
            })
            .collect();
        ready.wait();
        thread::sleep(WARM_UP);
        warm.store(true, Ordering::Release);
        go.wait();
        let before = CpuTimes::now();
        thread::sleep(duration);
        stop.store(true, Ordering::Release);
        let after = CpuTimes::now();
        let results: Vec<Result<J::Output>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow!("a benchmark thread panicked"))?
            })
            .collect();
        (results, Disturbance::between(before, after))
    });
    Ok((results.into_iter().collect::<Result<_>>()?, disturbance))
}

/// One subject signing as fast as it can.
struct SoloJob<'a> {
    sign: SignFn<'a>,
    last: Vec<u8>,
}

/// A [`SoloJob`]'s result: signatures in the timed window, the time they took, and the last
/// signature, for verification.
struct SoloResult {
    count: u64,
    elapsed: Duration,
    last: Vec<u8>,
}

impl Job for SoloJob<'_> {
    type Output = SoloResult;

    fn warm_up(&mut self) -> Result<()> {
        self.last = (self.sign)()?;
        Ok(())
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<SoloResult> {
        let start = Instant::now();
        let mut count = 0u64;
        while !stop.load(Ordering::Acquire) {
            self.last = (self.sign)()?;
            count += 1;
        }
        Ok(SoloResult {
            count,
            elapsed: start.elapsed(),
            last: std::mem::take(&mut self.last),
        })
    }
}

/// One run of one cell.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Signatures per second, all threads together.
    pub(crate) rate: f64,
    pub(crate) disturbance: Disturbance,
}

/// Signatures per second of `subject` with `threads` threads (the sum over threads of
/// signatures / elapsed), and how disturbed the machine was meanwhile. Verifies each thread's
/// last signature.
pub(crate) fn measure(subject: &dyn Subject, threads: usize, duration: Duration) -> Result<Sample> {
    let make = || {
        Ok(SoloJob {
            sign: subject.worker()?,
            last: Vec::new(),
        })
    };
    let (results, disturbance) = run_threads(threads, duration, &make)?;
    let mut rate = 0.0;
    for result in results {
        ensure!(result.count > 0, "a thread made no signature in the window");
        subject
            .verify(&result.last)
            .context("verifying a sample signature")?;
        rate += result.count as f64 / result.elapsed.as_secs_f64();
    }
    Ok(Sample { rate, disturbance })
}

/// How long each side of a [`PairedJob`] signs before handing over to the other.
pub(crate) const SLICE: Duration = Duration::from_millis(10);

/// A Keyhold backend and its reference taking turns on one thread, in slices of [`SLICE`].
///
/// Both sides see the same moment-to-moment machine (clock speed, neighbours, SoftHSM2's
/// own jitter), so the ratio of their rates is far steadier than the ratio of two medians
/// measured seconds apart.
struct PairedJob<'a> {
    keyhold: SignFn<'a>,
    reference: SignFn<'a>,
    last: [Vec<u8>; 2],
}

/// A [`PairedJob`]'s result: per side, signatures and the time they took, and the last
/// signature.
struct PairedResult {
    count: [u64; 2],
    elapsed: [Duration; 2],
    last: [Vec<u8>; 2],
}

impl Job for PairedJob<'_> {
    type Output = PairedResult;

    fn warm_up(&mut self) -> Result<()> {
        self.last = [(self.keyhold)()?, (self.reference)()?];
        Ok(())
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<PairedResult> {
        let mut count = [0u64; 2];
        let mut elapsed = [Duration::ZERO; 2];
        while !stop.load(Ordering::Acquire) {
            for (side, sign) in [&mut self.keyhold, &mut self.reference]
                .into_iter()
                .enumerate()
            {
                let start = Instant::now();
                loop {
                    self.last[side] = sign()?;
                    count[side] += 1;
                    if start.elapsed() >= SLICE {
                        break;
                    }
                }
                elapsed[side] += start.elapsed();
            }
        }
        Ok(PairedResult {
            count,
            elapsed,
            last: std::mem::take(&mut self.last),
        })
    }
}

/// One run of a paired comparison.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairedSample {
    /// The Keyhold backend's rate over its reference's, from the same threads.
    pub(crate) ratio: f64,
    pub(crate) disturbance: Disturbance,
}

/// The rate of `keyhold` relative to `reference`, both signing on the same `threads`
/// threads in alternating slices. Verifies the last signature of each side on each thread.
pub(crate) fn measure_paired(
    keyhold: &dyn Subject,
    reference: &dyn Subject,
    threads: usize,
    duration: Duration,
) -> Result<PairedSample> {
    let make = || {
        Ok(PairedJob {
            keyhold: keyhold.worker()?,
            reference: reference.worker()?,
            last: [Vec::new(), Vec::new()],
        })
    };
    let (results, disturbance) = run_threads(threads, duration, &make)?;
    let mut rates = [0.0f64; 2];
    for result in results {
        for (side, subject) in [keyhold, reference].into_iter().enumerate() {
            ensure!(
                result.count[side] > 0,
                "a thread made no signature in the window"
            );
            subject
                .verify(&result.last[side])
                .context("verifying a sample signature")?;
            rates[side] += result.count[side] as f64 / result.elapsed[side].as_secs_f64();
        }
    }
    Ok(PairedSample {
        ratio: rates[0] / rates[1],
        disturbance,
    })
}
