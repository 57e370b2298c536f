//! How many issuances per second the database sustains, next to the signing rate.
//!
//! ```text
//! cargo run --release -p db --example write_rate -- [--seconds N] [--db-only] URL...
//! ```
//!
//! For each database URL (a `sqlite://` file is best put in an empty temporary directory;
//! a `postgres://` database should be empty, this program creates its tables) it measures,
//! with 1 and 16 threads, for `--seconds` each (default 3):
//!
//! - `db`: reserve + complete pairs per second, no signing: the two write transactions an
//!   issuance makes, each durable on return;
//! - `sign`: P-384 signatures per second from an embedded token (the raw rate);
//! - `issue`: reserve, sign, complete per second: what issuance reaches, and its share of
//!   `sign` at the same thread count.
//!
//! `db` also shows the CPU time one pair costs the whole process (writer thread and
//! callers), which moves less than the rates when other work shares the machine.
//!
//! Not a test: the numbers depend on the machine and its disk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ca_core::audit::{Action, AuditEvent};
use ca_core::issuer::IssuerId;
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::{KeyRef, KeySpec, KeyStore, Signer};
use ca_core::secret::Secret;
use ca_core::store::{IssuanceLedger, NewCertificate, Serial};
use db::Db;

type Error = Box<dyn std::error::Error>;

const THREADS: [usize; 2] = [1, 16];

fn main() -> Result<(), Error> {
    let mut seconds = 3.0;
    let mut only_db = false;
    let mut urls = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            seconds = args.next().ok_or("--seconds needs a value")?.parse()?;
        } else if arg == "--db-only" {
            only_db = true;
        } else {
            urls.push(arg);
        }
    }
    if urls.is_empty() {
        return Err("usage: write_rate [--seconds N] [--db-only] URL...".into());
    }
    let window = Duration::from_secs_f64(seconds);

    let token = tempfile::tempdir()?;
    let keys = EmbeddedKeyStore::create(
        &token.path().join("token"),
        &Secret::new("write rate passphrase".into()),
        KdfParams::insecure_for_tests(),
    )?;
    let key = KeyRef::new("ca")?;
    keys.generate(&key, KeySpec::EcP384)?;
    let signer = keys.signer(&key)?;

    let next = AtomicU64::new(1);
    for url in &urls {
        let db = Db::open(url)?;
        let issuer = IssuerId::new("bench-ca")?;
        db.ensure_issuer(&issuer, b"bench issuer")?;
        println!("{} ({url})", db.backend());
        for threads in THREADS {
            let (pairs, pair_cpu) = rate(threads, window, || pair(&db, &issuer, &next, None))?;
            let db_line = format!(
                "  {threads:>2} threads: db {pairs:>6.0} pairs/s ({:>3} µs CPU each)",
                pair_cpu.as_micros()
            );
            if only_db {
                println!("{db_line}");
                continue;
            }
            let (signs, _) = rate(threads, window, || sign(signer.as_ref()).map(|_| ()))?;
            let (issues, _) = rate(threads, window, || {
                pair(&db, &issuer, &next, Some(signer.as_ref()))
            })?;
            println!(
                "{db_line}   sign {signs:>6.0}/s   issue {issues:>6.0}/s = {:.0}% of sign",
                100.0 * issues / signs
            );
        }
    }
    Ok(())
}

/// This process's CPU time so far (user + system), from /proc/self/stat.
fn cpu_time() -> Result<Duration, Error> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').ok_or("odd /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
        + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
    // Linux reports them in USER_HZ, 100 per second on every architecture Keyhold runs on.
    Ok(Duration::from_millis(ticks * 10))
}

/// Runs `op` on `threads` threads for `window`; returns completed operations per second
/// and the CPU time each took (for all threads together).
fn rate(
    threads: usize,
    window: Duration,
    op: impl Fn() -> Result<(), Error> + Sync,
) -> Result<(f64, Duration), Error> {
    let cpu_before = cpu_time()?;
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = op() {
                        eprintln!("{e}");
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_time()? - cpu_before;
    if failed.load(Ordering::Relaxed) {
        return Err("an operation failed".into());
    }
    let done = done.load(Ordering::Relaxed).max(1);
    Ok((done as f64 / elapsed, cpu / u32::try_from(done)?))
}

fn sign(signer: &dyn Signer) -> Result<Vec<u8>, Error> {
    // About the size of a TBS certificate.
    Ok(signer.sign(&[0x5a; 512])?)
}

/// One issuance's writes: reserve, (sign,) complete.
fn pair(
    db: &Db,
    issuer: &IssuerId,
    next: &AtomicU64,
    signer: Option<&dyn Signer>,
) -> Result<(), Error> {
    let n = next.fetch_add(1, Ordering::Relaxed);
    let serial = Serial::from_bytes(&(0x4000_0000_0000_0000 | n).to_be_bytes());
    let now = SystemTime::now();
    let cert = NewCertificate {
        serial: serial.clone(),
        issuer: issuer.clone(),
        profile: "tls-server".into(),
        requester: "bench".into(),
        subject: format!("CN=host-{n}.bench.internal"),
        sans: format!("DNS:host-{n}.bench.internal"),
        not_before: now,
        not_after: now + Duration::from_secs(86_400),
        request_id: None,
    };
    let object = format!("certificate:{serial}");
    db.reserve(
        &cert,
        &AuditEvent::new(Action::IssuanceStarted, "bench", "bench", &object),
    )?;
    let der = match signer {
        Some(signer) => sign(signer)?,
        None => vec![0x30; 600],
    };
    db.complete(
        &serial,
        &der,
        &AuditEvent::new(Action::CertificateIssued, "bench", "bench", &object),
    )?;
    Ok(())
}
