//! `keyhold-bench`: how many ECDSA signatures per second Keyhold's key stores make, next to
//! the raw implementations they are built on.
//!
//! Run it with `tests/bench/sign [--seconds N] [--runs N] [--json FILE] [--only LIST]`: the
//! script sets up a throwaway SoftHSM2 token directory (`SOFTHSM2_CONF`), runs this binary in
//! release mode and removes the directory afterwards.
//!
//! For P-384 (ECDSA with SHA-384) and P-256 (ECDSA with SHA-256), with 1 and 2 threads, it
//! measures:
//!
//! - `embedded`: Keyhold's embedded token ([`EmbeddedKeyStore`]), `Signer::sign`;
//! - `aws-lc-rs (raw)`: `aws_lc_rs::signature::EcdsaKeyPair::sign`, what the embedded token
//!   is built on, and its reference;
//! - `p384 crate (raw)` / `p256 crate (raw)`: RustCrypto, for comparison;
//! - `pkcs11 (SoftHSM2)`: Keyhold's PKCS#11 key store ([`Pkcs11KeyStore`]) on a fresh
//!   SoftHSM2 token, `Signer::sign`;
//! - `softhsm2 C_Sign (raw)`: cryptoki directly on the same token and key, one session per
//!   thread, hashing on the host and signing the digest with CKM_ECDSA: the reference for
//!   the PKCS#11 store.
//!
//! Every signer signs the same fixed 512-byte message (about the size of a TBS certificate).
//! Each cell (curve, backend, thread count) starts its threads together, warms up for 0.3 s,
//! then counts signatures for `--seconds` (default 2); the rate is the sum over threads of
//! signatures / elapsed. Each cell runs `--runs` times (default 3), rounds interleaved so
//! that drift in the machine's speed hits every backend alike, and the table shows the
//! median. The last signature of every thread in every run is verified (with
//! [`ca_core::keystore::verify`] for Keyhold's backends), so a broken backend cannot post a
//! number.
//!
//! A cell's median still moves by 10-20% between runs on a shared VM (SoftHSM2 alone
//! varies that much), more than the 10% the Keyhold backends are held to. So a paired check
//! follows the table: each Keyhold backend and its reference take turns in 10 ms slices on
//! the same threads, and Keyhold's rate is reported as a share of the reference's; both
//! sides see the same machine, so that ratio is steady to a percent or two.
//!
//! The machine may not be quiet: for every run it also records the share of CPU time the
//! hypervisor stole (`/proc/stat` steal) and other processes used, and lists the disturbed
//! runs (over 5%) under the table.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ca_e2e::report::{cpu_model, load_average, thousands};

use crate::report::{Cell, Machine, PairCell, Results, noise_report, paired_table, table, to_json};
use crate::setup::Setup;
use crate::subjects::Curve;
use crate::timing::{measure, measure_paired};

mod noise;
mod report;
mod setup;
mod subjects;
mod timing;

/// Length of the message every backend signs.
const MESSAGE_LEN: usize = 512;
/// Signing before the timed window of each cell.
const WARM_UP: Duration = Duration::from_millis(300);
/// Thread counts measured for every backend.
const THREADS: [usize; 2] = [1, 2];
/// Where Debian's softhsm2 package installs the module.
const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Passphrase of the throwaway embedded token (at least 12 characters).
const EMBEDDED_PASSPHRASE: &str = "keyhold-bench-passphrase";
const SO_PIN: &str = "bench-so-pin";

const USAGE: &str = "\
usage: keyhold-bench [--seconds N] [--runs N] [--json FILE] [--only LIST] [--module PATH]

Measures ECDSA P-384 and P-256 signatures per second with 1 and 2 threads, then checks
each Keyhold backend against its raw reference with both taking turns on the same threads.
Run it through tests/bench/sign, which provides a throwaway SoftHSM2 token directory.

  --seconds N    timed window of each cell, in seconds (default 2)
  --runs N       runs per cell; the table shows the median (default 3)
  --json FILE    also write the results as JSON to FILE
  --only LIST    comma-separated backends: embedded, aws-lc-rs, rustcrypto, pkcs11, c-sign
  --module PATH  PKCS#11 module (default /usr/lib/softhsm/libsofthsm2.so)";

/// What signs, in the order of the table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Backend {
    Embedded,
    AwsLc,
    RustCrypto,
    Pkcs11,
    CSign,
}

impl Backend {
    const ALL: [Backend; 5] = [
        Backend::Embedded,
        Backend::AwsLc,
        Backend::RustCrypto,
        Backend::Pkcs11,
        Backend::CSign,
    ];

    /// The name for `--only` and the JSON output.
    fn id(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::AwsLc => "aws-lc-rs",
            Backend::RustCrypto => "rustcrypto",
            Backend::Pkcs11 => "pkcs11",
            Backend::CSign => "c-sign",
        }
    }

    /// The name in the table.
    fn label(self, curve: Curve) -> &'static str {
        match (self, curve) {
            (Backend::Embedded, _) => "embedded",
            (Backend::AwsLc, _) => "aws-lc-rs (raw)",
            (Backend::RustCrypto, Curve::P384) => "p384 crate (raw)",
            (Backend::RustCrypto, Curve::P256) => "p256 crate (raw)",
            (Backend::Pkcs11, _) => "pkcs11 (SoftHSM2)",
            (Backend::CSign, _) => "softhsm2 C_Sign (raw)",
        }
    }

    /// The raw implementation a Keyhold backend is compared with.
    fn reference(self) -> Option<Backend> {
        match self {
            Backend::Embedded => Some(Backend::AwsLc),
            Backend::Pkcs11 => Some(Backend::CSign),
            _ => None,
        }
    }

    fn uses_softhsm(self) -> bool {
        matches!(self, Backend::Pkcs11 | Backend::CSign)
    }

    fn from_id(id: &str) -> Result<Self> {
        Backend::ALL
            .into_iter()
            .find(|b| b.id() == id)
            .ok_or_else(|| {
                anyhow!(
                    "unknown backend {id:?} for --only (known: embedded, aws-lc-rs, rustcrypto, \
                     pkcs11, c-sign)"
                )
            })
    }
}

/// The command line.
#[derive(Debug)]
struct Options {
    seconds: f64,
    runs: usize,
    json: Option<PathBuf>,
    only: Vec<Backend>,
    module: PathBuf,
}

impl Options {
    /// Parses `--flag value` and `--flag=value`; `None` means `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let mut options = Options {
            seconds: 2.0,
            runs: 3,
            json: None,
            only: Backend::ALL.to_vec(),
            module: PathBuf::from(DEFAULT_MODULE),
        };
        let mut only: Vec<Backend> = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| anyhow!("{flag} needs a value\n\n{USAGE}"))
            };
            match flag.as_str() {
                "--seconds" => {
                    let v = value()?;
                    options.seconds = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| *s > 0.0 && *s <= 600.0)
                        .ok_or_else(|| anyhow!("--seconds {v:?}: give a number in (0, 600]"))?;
                }
                "--runs" => {
                    let v = value()?;
                    options.runs = v
                        .parse()
                        .ok()
                        .filter(|r: &usize| (1..=100).contains(r))
                        .ok_or_else(|| anyhow!("--runs {v:?}: give a whole number in 1..=100"))?;
                }
                "--json" => options.json = Some(PathBuf::from(value()?)),
                "--only" => {
                    for id in value()?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let backend = Backend::from_id(id)?;
                        if !only.contains(&backend) {
                            only.push(backend);
                        }
                    }
                }
                "--module" => options.module = PathBuf::from(value()?),
                _ => bail!("unknown argument {arg:?}\n\n{USAGE}"),
            }
        }
        if !only.is_empty() {
            options.only = Backend::ALL
                .into_iter()
                .filter(|b| only.contains(b))
                .collect();
        }
        Ok(Some(options))
    }
}

/// The fixed message: deterministic, not all one byte.
fn message() -> Arc<[u8]> {
    (0..MESSAGE_LEN)
        .map(|i| (i.wrapping_mul(31) ^ 0x5a) as u8)
        .collect()
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("keyhold-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let mut machine = Machine {
        cpu: cpu_model(),
        parallelism: thread::available_parallelism().map_or(1, |n| n.get()),
        loadavg_before: load_average(),
        loadavg_after: String::new(),
        module: None,
    };
    let message = message();
    let setup = Setup::new(&options, &message)?;
    machine.module = setup.module_info.clone();

    println!("cpu: {}", machine.cpu);
    println!("available parallelism: {}", machine.parallelism);
    println!("load average before the run: {}", machine.loadavg_before);
    if let Some(module) = &machine.module {
        println!("pkcs#11 module: {module}");
    }
    println!(
        "{MESSAGE_LEN}-byte message; per cell {:.1} s warm-up + {} s timed, median of {} run(s)\n",
        WARM_UP.as_secs_f64(),
        options.seconds,
        options.runs
    );

    let duration = Duration::from_secs_f64(options.seconds);
    let mut cells: Vec<Cell> = Vec::new();
    let mut pairs: Vec<PairCell> = Vec::new();
    for run in 1..=options.runs {
        for (curve, backend, subject) in &setup.subjects {
            for threads in THREADS {
                let sample = measure(subject.as_ref(), threads, duration).with_context(|| {
                    format!(
                        "{} {} with {threads} thread(s)",
                        curve.name(),
                        backend.label(*curve)
                    )
                })?;
                eprintln!(
                    "run {run}/{}: {} {:<22} {threads}t {:>9}/s  ({})",
                    options.runs,
                    curve.name(),
                    backend.label(*curve),
                    thousands(sample.rate),
                    sample.disturbance.describe()
                );
                match cells
                    .iter_mut()
                    .find(|c| c.curve == *curve && c.backend == *backend && c.threads == threads)
                {
                    Some(cell) => cell.runs.push(sample),
                    None => cells.push(Cell {
                        curve: *curve,
                        backend: *backend,
                        threads,
                        runs: vec![sample],
                    }),
                }
            }
        }
        for (curve, backend, keyhold, reference) in setup.pairs() {
            for threads in THREADS {
                let sample =
                    measure_paired(keyhold, reference, threads, duration).with_context(|| {
                        format!(
                            "{} {} paired with its reference, {threads} thread(s)",
                            curve.name(),
                            backend.label(curve)
                        )
                    })?;
                eprintln!(
                    "run {run}/{}: {} {:<22} {threads}t {:>8.1}% of {}  ({})",
                    options.runs,
                    curve.name(),
                    backend.label(curve),
                    sample.ratio * 100.0,
                    backend.reference().map_or("?", |r| r.label(curve)),
                    sample.disturbance.describe()
                );
                match pairs
                    .iter_mut()
                    .find(|c| c.curve == curve && c.backend == backend && c.threads == threads)
                {
                    Some(cell) => cell.runs.push(sample),
                    None => pairs.push(PairCell {
                        curve,
                        backend,
                        threads,
                        runs: vec![sample],
                    }),
                }
            }
        }
    }
    machine.loadavg_after = load_average();
    let results = Results { cells, pairs };

    println!("{}", table(&results, &options.only));
    println!("{}", paired_table(&results));
    print!("{}", noise_report(&results));
    println!("load average after the run: {}", machine.loadavg_after);
    if let Some(path) = &options.json {
        std::fs::write(path, to_json(&results, &machine, &options))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("json: {}", path.display());
    }
    Ok(())
}
