//! The timed loop and its three workers: raw signing, the whole issuance, the database alone.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use ca_core::audit::{Action, AuditEvent};
use ca_core::issuance::{Ca, Channel, Issued, Outcome, Submission};
use ca_core::issuer::IssuerId;
use ca_core::keystore::Signer;
use ca_core::policy::Requester;
use ca_core::store::{NewCertificate, Serial, Store};

use crate::{PROFILE, WARM_UP};

/// Every this many certificates a requester keeps one, to verify after the run.
const SAMPLE_EVERY: u64 = 50;
/// At most this many kept per requester and measurement.
const SAMPLES_PER_THREAD: usize = 8;

/// One thread's work in a measurement.
pub(crate) trait Worker: Send {
    /// One operation: a signature, an issuance, or an issuance's two database writes.
    fn step(&mut self) -> Result<()>;
}

/// What one measurement counted.
pub(crate) struct Window {
    /// Operations per second: the sum over threads of operations / elapsed.
    pub(crate) rate: f64,
    /// Every timed operation's duration, in microseconds.
    pub(crate) latencies: Vec<u32>,
}

const WARMING: u8 = 0;
const TIMED: u8 = 1;
const STOPPED: u8 = 2;

/// Runs every worker on its own thread: warm-up until [`WARM_UP`] has passed, then all
/// threads start the timed window together and run until `duration` is over. Returns the
/// workers (with whatever they kept) and the counts. Every thread reaches the barrier even if
/// it fails, so one failure ends the measurement instead of hanging it.
pub(crate) fn measure<W: Worker>(workers: Vec<W>, duration: Duration) -> Result<(Vec<W>, Window)> {
    let go = Barrier::new(workers.len() + 1);
    let phase = AtomicU8::new(WARMING);
    let finished: Vec<Result<(W, Duration, Vec<u32>)>> = thread::scope(|scope| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut worker| {
                let (go, phase) = (&go, &phase);
                scope.spawn(move || {
                    let mut warm = Ok(());
                    while phase.load(Ordering::Acquire) == WARMING {
                        if let Err(e) = worker.step() {
                            warm = Err(e);
                            break;
                        }
                    }
                    go.wait();
                    warm?;
                    let mut latencies = Vec::new();
                    let start = Instant::now();
                    while phase.load(Ordering::Acquire) == TIMED {
                        let call = Instant::now();
                        worker.step()?;
                        let micros = call.elapsed().as_micros();
                        latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    Ok((worker, start.elapsed(), latencies))
                })
            })
            .collect();
        thread::sleep(WARM_UP);
        phase.store(TIMED, Ordering::Release);
        go.wait();
        thread::sleep(duration);
        phase.store(STOPPED, Ordering::Release);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow!("a benchmark thread panicked"))?
            })
            .collect()
    });
    let mut workers = Vec::new();
    let mut window = Window {
        rate: 0.0,
        latencies: Vec::new(),
    };
    for result in finished {
        let (worker, elapsed, latencies) = result?;
        window.rate += latencies.len() as f64 / elapsed.as_secs_f64();
        window.latencies.extend(latencies);
        workers.push(worker);
    }
    Ok((workers, window))
}

/// The issuing CA's signer, called as the CA calls it, on a fixed message.
pub(crate) struct SignWorker<'a> {
    pub(crate) signer: &'a dyn Signer,
    pub(crate) message: &'a [u8],
    pub(crate) last: Vec<u8>,
}

impl Worker for SignWorker<'_> {
    fn step(&mut self) -> Result<()> {
        self.last = self.signer.sign(self.message)?;
        Ok(())
    }
}

/// A requester submitting CSRs, round robin through the pool, to the CA.
pub(crate) struct IssueWorker<'a> {
    pub(crate) ca: &'a Ca,
    pub(crate) csrs: &'a [Vec<u8>],
    pub(crate) requester: &'a Requester,
    pub(crate) next: usize,
    pub(crate) stride: usize,
    /// Certificates returned, warm-up included.
    pub(crate) issued: u64,
    /// Some of them, to check after the run.
    pub(crate) samples: Vec<Issued>,
}

impl Worker for IssueWorker<'_> {
    fn step(&mut self) -> Result<()> {
        let csr = self
            .csrs
            .get(self.next % self.csrs.len().max(1))
            .context("the CSR pool is empty")?;
        self.next = self.next.wrapping_add(self.stride);
        let submission = Submission {
            profile: PROFILE,
            csr,
            requester: self.requester,
            source: "issue-bench",
            channel: Channel::Api,
        };
        match self.ca.submit(&submission, SystemTime::now())? {
            Outcome::Issued(issued) => {
                if self.issued.is_multiple_of(SAMPLE_EVERY)
                    && self.samples.len() < SAMPLES_PER_THREAD
                {
                    self.samples.push(*issued);
                }
                self.issued += 1;
                Ok(())
            }
            other => bail!("the CA did not issue: {other:?}"),
        }
    }
}

/// An issuance's two writes with their audit events, nothing else.
pub(crate) struct DbWorker<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) issuer: &'a IssuerId,
    /// Stands in for the certificate's DER (a CA certificate: about the same size).
    pub(crate) der: &'a [u8],
    pub(crate) written: u64,
}

impl Worker for DbWorker<'_> {
    fn step(&mut self) -> Result<()> {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow!("the system rng failed"))?;
        // RFC 5280 4.1.2.2: positive, as `x509::random_serial` makes them.
        bytes[0] &= 0x7f;
        let serial = Serial::from_bytes(&bytes);
        let now = SystemTime::now();
        let name = format!("db{}.internal", self.written);
        let reservation = NewCertificate {
            serial: serial.clone(),
            issuer: self.issuer.clone(),
            profile: PROFILE.into(),
            requester: "bench".into(),
            subject: format!("CN={name},O=Keyhold"),
            sans: format!("dns:{name}"),
            not_before: now,
            not_after: now + Duration::from_secs(90 * 86_400),
            request_id: None,
        };
        let object = format!("certificate:{serial}");
        let started = AuditEvent::new(Action::IssuanceStarted, "bench", "issue-bench", &*object)
            .with("profile", PROFILE)
            .with("issuer", self.issuer.as_str())
            .with("subject", reservation.subject.as_str())
            .with("sans", reservation.sans.as_str());
        self.store.reserve(&reservation, &started)?;
        let issued = AuditEvent::new(Action::CertificateIssued, "bench", "issue-bench", object)
            .with("sha256", "0".repeat(64));
        self.store.complete(&serial, self.der, &issued)?;
        self.written += 1;
        Ok(())
    }
}
