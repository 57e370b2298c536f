//! `issue-bench`: certificates per second through Keyhold's whole issuance cycle, beside the
//! raw signing rate of the same key measured in the same run.
//!
//! Run it with `tests/bench/issue [--seconds N] [--runs N] [--json FILE] ...`: the script
//! makes the CSRs with openssl, a throwaway SoftHSM2 token directory (`SOFTHSM2_CONF`) and,
//! unless `KEYHOLD_BENCH_DATABASE_URL` or `KEYHOLD_TEST_DATABASE_URL` names one, a throwaway
//! PostgreSQL server; it runs this binary in release mode and removes them all afterwards.
//!
//! For each key store (the embedded token, PKCS#11 on SoftHSM2), each database (SQLite in a
//! temporary file, PostgreSQL in a fresh schema) and each number of concurrent requesters
//! (1 and 16), every run measures three things on the same threads, one after the other:
//!
//! 1. `raw signs/s`: the issuing CA's `Signer::sign` on a 512-byte message (about a TBS
//!    certificate's size) and nothing else: the ceiling for issuance;
//! 2. `certs/s`: `Ca::submit` on the `tls-server` profile with a P-256 CSR made by openssl:
//!    CSR parse and self-signature check, policy, reserve the serial with its audit entry
//!    (one transaction, committed and ordered but not flushed on its own), build, lint,
//!    sign, record the certificate with its audit entry (a durable transaction, whose flush
//!    covers the reservation too). A call counts only if it returns `Outcome::Issued`;
//! 3. `db alone/s`: the same two writes (`Store::reserve`, `Store::complete`, with
//!    their audit events) without CSR or signing, to show whether the database is what holds
//!    issuance back.
//!
//! Each measurement warms up for 0.5 s, then counts for `--seconds` (default 3). Every cell
//! runs `--runs` times (default 3), rounds interleaved so that drift in the machine's speed
//! hits every cell alike; the table shows medians, and the ratio is the median over runs of
//! that run's certs/s divided by its raw signs/s. p50 and p99 are over every timed `submit`
//! call of the cell's runs.
//!
//! Every measurement writes into a fresh database and checks it afterwards through the
//! store's read connections, so a fast but wrong run cannot post a number: the certificate
//! rows are exactly the certificates returned (warm-up included), all `valid`; the audit log
//! grew by exactly two entries per certificate; and a sample of the returned certificates
//! verifies against the issuing CA's key and matches its row byte for byte. The last
//! signature of every raw signing thread is verified too.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use ca_core::issuance::Ca;
use ca_core::policy::{self, Profile, Requester};
use ca_core::store::{CertificateQueries, IssuanceLedger, Store};
use ca_e2e::report::{cpu_model, load_average, thousands};

use crate::report::{Cell, Machine, Sample, module_info, table, to_json};
use crate::setup::{FreshDb, KeySetup};
use crate::workers::{DbWorker, IssueWorker, SignWorker, measure};

mod breakdown;
mod report;
mod setup;
mod workers;

/// Length of the message the raw signing rate signs.
const MESSAGE_LEN: usize = 512;
/// Work before the timed window of each measurement (it also starts the database's writer).
const WARM_UP: Duration = Duration::from_millis(500);
/// The profile every certificate is issued under.
const PROFILE: &str = "tls-server";
/// The base URL in the certificates' CRL and OCSP pointers.
const BASE_URL: &str = "http://pki.bench.internal";
/// Where Debian's softhsm2 package installs the module.
const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The share of the raw signing rate issuance must reach (issue 3).
const TARGET: f64 = 0.70;

const USAGE: &str = "\
usage: issue-bench --csrs DIR [--seconds N] [--runs N] [--json FILE] [--threads LIST]
                   [--keys LIST] [--databases LIST] [--postgres URL] [--policies DIR]
                   [--module PATH] [--breakdown N [--breakdown-threads T]
                   [--server-cpu C1,CT]]

Issues certificates end to end through Keyhold's core and prints certificates/s beside the
raw signing rate of the same key, for each key store, database and thread count. Run it
through tests/bench/issue, which provides the CSRs, a SoftHSM2 token directory and a
PostgreSQL server.

  --csrs DIR         PEM CSRs (*.pem) for names under .internal, used round robin
  --seconds N        timed window of each measurement, in seconds (default 3)
  --runs N           runs per cell; the table shows the median (default 3)
  --json FILE        also write the results as JSON to FILE
  --threads LIST     comma-separated requester counts (default 1,16)
  --keys LIST        key stores: embedded, pkcs11 (default both)
  --databases LIST   databases: sqlite, postgres (default both)
  --postgres URL     PostgreSQL database to create throwaway schemas in
  --policies DIR     certificate profiles (default: the repository's policies/)
  --module PATH      PKCS#11 module (default /usr/lib/softhsm/libsofthsm2.so)
  --breakdown N      instead: µs of CPU per certificate by stage over N certificates from
                     one requester, then the whole cycle's CPU per certificate with
                     --breakdown-threads requesters (default 16) for --seconds
  --server-cpu C1,CT the server's CPU per certificate over HTTP at concurrency 1 and T (µs,
                     from http-bench --server-pid): adds the HTTP and JSON row";

/// A key store under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    Embedded,
    Pkcs11,
}

impl Keys {
    const ALL: [Keys; 2] = [Keys::Embedded, Keys::Pkcs11];

    fn id(self) -> &'static str {
        match self {
            Keys::Embedded => "embedded",
            Keys::Pkcs11 => "pkcs11",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Keys::Embedded => "embedded",
            Keys::Pkcs11 => "pkcs11 (SoftHSM2)",
        }
    }
}

/// A database under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    const ALL: [Database; 2] = [Database::Sqlite, Database::Postgres];

    fn id(self) -> &'static str {
        match self {
            Database::Sqlite => "sqlite",
            Database::Postgres => "postgres",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Database::Sqlite => "SQLite",
            Database::Postgres => "PostgreSQL",
        }
    }
}

/// The command line.
#[derive(Debug)]
struct Options {
    csrs: Option<PathBuf>,
    seconds: f64,
    runs: usize,
    json: Option<PathBuf>,
    threads: Vec<usize>,
    keys: Vec<Keys>,
    databases: Vec<Database>,
    postgres: Option<String>,
    policies: PathBuf,
    module: PathBuf,
    breakdown: Option<u64>,
    breakdown_threads: usize,
    server_cpu: Option<(f64, f64)>,
}

/// The items of a comma-separated list, each once, in the order of `all`.
fn pick<T: Copy + PartialEq>(list: &str, all: &[T], id: fn(T) -> &'static str) -> Result<Vec<T>> {
    let mut wanted = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let item = all
            .iter()
            .copied()
            .find(|t| id(*t) == name)
            .ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|t| id(*t)).collect();
                anyhow!("unknown {name:?} (known: {})", known.join(", "))
            })?;
        wanted.push(item);
    }
    ensure!(!wanted.is_empty(), "the list {list:?} is empty");
    Ok(all.iter().copied().filter(|t| wanted.contains(t)).collect())
}

impl Options {
    /// Parses `--flag value` and `--flag=value`; `None` means `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let mut options = Options {
            csrs: None,
            seconds: 3.0,
            runs: 3,
            json: None,
            threads: vec![1, 16],
            keys: Keys::ALL.to_vec(),
            databases: Database::ALL.to_vec(),
            postgres: None,
            policies: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies")),
            module: PathBuf::from(DEFAULT_MODULE),
            breakdown: None,
            breakdown_threads: 16,
            server_cpu: None,
        };
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
                "--csrs" => options.csrs = Some(PathBuf::from(value()?)),
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
                "--threads" => {
                    let v = value()?;
                    let mut threads = Vec::new();
                    for t in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let t: usize = t
                            .parse()
                            .ok()
                            .filter(|t| (1..=256).contains(t))
                            .ok_or_else(|| {
                                anyhow!("--threads {v:?}: give whole numbers in 1..=256")
                            })?;
                        if !threads.contains(&t) {
                            threads.push(t);
                        }
                    }
                    ensure!(!threads.is_empty(), "--threads {v:?} is empty");
                    threads.sort_unstable();
                    options.threads = threads;
                }
                "--keys" => {
                    options.keys = pick(&value()?, &Keys::ALL, Keys::id).context("--keys")?;
                }
                "--databases" => {
                    options.databases =
                        pick(&value()?, &Database::ALL, Database::id).context("--databases")?;
                }
                "--postgres" => options.postgres = Some(value()?).filter(|u| !u.is_empty()),
                "--policies" => options.policies = PathBuf::from(value()?),
                "--module" => options.module = PathBuf::from(value()?),
                "--breakdown" => {
                    let v = value()?;
                    options.breakdown = Some(
                        v.parse()
                            .ok()
                            .filter(|n: &u64| (1..=10_000_000).contains(n))
                            .ok_or_else(|| anyhow!("--breakdown {v:?}: a positive whole number"))?,
                    );
                }
                "--breakdown-threads" => {
                    let v = value()?;
                    options.breakdown_threads = v
                        .parse()
                        .ok()
                        .filter(|t| (1..=256).contains(t))
                        .ok_or_else(|| anyhow!("--breakdown-threads {v:?}: 1..=256"))?;
                }
                "--server-cpu" => {
                    options.server_cpu = Some(breakdown::parse_server_cpu(&value()?)?);
                }
                _ => bail!("unknown argument {arg:?}\n\n{USAGE}"),
            }
        }
        Ok(Some(options))
    }

    fn max_threads(&self) -> usize {
        let most = self.threads.iter().copied().max().unwrap_or(1);
        most.max(self.breakdown_threads)
    }
}

/// What every measurement shares.
struct Bench<'a> {
    options: &'a Options,
    duration: Duration,
    profiles: Vec<Profile>,
    csrs: Vec<Vec<u8>>,
    requester: Requester,
    message: Vec<u8>,
}

impl Bench<'_> {
    /// One run of one cell: raw signing, issuance, then the database alone, each with
    /// `threads` threads; returns the sample and the issuance latencies.
    fn run(
        &self,
        setup: &KeySetup,
        database: Database,
        threads: usize,
    ) -> Result<(Sample, Vec<u32>)> {
        // 1. Raw signing.
        let workers = (0..threads)
            .map(|_| SignWorker {
                signer: setup.signer.as_ref(),
                message: &self.message,
                last: Vec::new(),
            })
            .collect();
        let (workers, raw) = measure(workers, self.duration).context("raw signing")?;
        for worker in &workers {
            ca_core::keystore::verify(
                setup.signer.algorithm(),
                setup.signer.public_key(),
                &self.message,
                &worker.last,
            )
            .context("a raw signature does not verify")?;
        }

        // 2. Issuance, into a fresh database.
        let fresh = FreshDb::open(database, self.options)?;
        let store: Arc<dyn Store> = fresh.store.clone();
        let ca = Ca::new(
            setup.issuers.clone(),
            self.profiles.clone(),
            store,
            BASE_URL,
        )
        .map_err(|p| anyhow!("the CA cannot start:\n  - {}", p.join("\n  - ")))?;
        let audit_before = fresh.audit_seq()?;
        let workers = (0..threads)
            .map(|t| IssueWorker {
                ca: &ca,
                csrs: &self.csrs,
                requester: &self.requester,
                next: t,
                stride: threads,
                issued: 0,
                samples: Vec::new(),
            })
            .collect();
        let (workers, certs) = measure(workers, self.duration).context("issuance")?;
        let issued: u64 = workers.iter().map(|w| w.issued).sum();
        fresh
            .check(issued, audit_before)
            .context("after issuance")?;
        for sample in workers.iter().flat_map(|w| &w.samples) {
            ca_core::x509::verify_signed_by(&sample.cert, setup.signer.public_key())
                .with_context(|| format!("certificate {} does not verify", sample.serial))?;
            let row = fresh
                .store
                .certificate(&sample.serial)?
                .with_context(|| format!("certificate {} is not in the database", sample.serial))?;
            ensure!(
                row.der.as_deref() == Some(sample.cert.der.as_slice()),
                "certificate {} differs from its database row",
                sample.serial
            );
        }
        drop(ca);
        drop(fresh);

        // 3. The database alone, fresh too.
        let fresh = FreshDb::open(database, self.options)?;
        fresh
            .store
            .ensure_issuer(&setup.issuing_id, &setup.issuing_der)?;
        let audit_before = fresh.audit_seq()?;
        let workers = (0..threads)
            .map(|_| DbWorker {
                store: fresh.store.as_ref(),
                issuer: &setup.issuing_id,
                der: &setup.issuing_der,
                written: 0,
            })
            .collect();
        let (workers, db_alone) = measure(workers, self.duration).context("database alone")?;
        let written: u64 = workers.iter().map(|w| w.written).sum();
        fresh
            .check(written, audit_before)
            .context("after the database-alone writes")?;

        let sample = Sample {
            raw: raw.rate,
            certs: certs.rate,
            db_alone: db_alone.rate,
            issued,
        };
        Ok((sample, certs.latencies))
    }
}

/// Reads every `*.pem` in `dir`, in name order.
fn read_csrs(dir: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the CSR directory {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the CSR directory {}", dir.display()))?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "pem"));
    paths.sort();
    ensure!(!paths.is_empty(), "no *.pem CSRs in {}", dir.display());
    paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect()
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("issue-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let csr_dir = options
        .csrs
        .clone()
        .ok_or_else(|| anyhow!("--csrs DIR is required\n\n{USAGE}"))?;
    if options.databases.contains(&Database::Postgres) && options.postgres.is_none() {
        bail!(
            "no PostgreSQL database: run the benchmark through tests/bench/issue, which starts \
             a throwaway server, pass --postgres URL, or pass --databases sqlite"
        );
    }
    let profiles: Vec<Profile> = policy::load_dir(&options.policies)
        .with_context(|| format!("loading profiles from {}", options.policies.display()))?
        .into_iter()
        .filter(|p| p.name == PROFILE)
        .collect();
    ensure!(
        !profiles.is_empty(),
        "no {PROFILE} profile in {}",
        options.policies.display()
    );
    let bench = Bench {
        options: &options,
        duration: Duration::from_secs_f64(options.seconds),
        profiles,
        csrs: read_csrs(&csr_dir)?,
        requester: Requester {
            name: "bench-requester".into(),
            roles: vec!["requester".into()],
        },
        message: (0..MESSAGE_LEN)
            .map(|i| (i.wrapping_mul(31) ^ 0x5a) as u8)
            .collect(),
    };

    let mut machine = Machine {
        cpu: cpu_model(),
        parallelism: thread::available_parallelism().map_or(1, |n| n.get()),
        loadavg_before: load_average(),
        loadavg_after: String::new(),
        module: None,
    };
    let setups = options
        .keys
        .iter()
        .map(|&keys| KeySetup::new(keys, &options))
        .collect::<Result<Vec<_>>>()?;
    if options.keys.contains(&Keys::Pkcs11) {
        machine.module = module_info(&options);
    }

    println!("cpu: {}", machine.cpu);
    println!("available parallelism: {}", machine.parallelism);
    println!("load average before the run: {}", machine.loadavg_before);
    if let Some(module) = &machine.module {
        println!("pkcs#11 module: {module}");
    }
    println!(
        "issuing CA key: {} (the default ceremony); profile {PROFILE}; {} CSRs round robin",
        setups
            .first()
            .map_or_else(|| "?".into(), |s| format!("{:?}", s.signer.algorithm())),
        bench.csrs.len()
    );
    println!(
        "per measurement {:.1} s warm-up + {} s timed, median of {} run(s); raw signing on a \
         {MESSAGE_LEN}-byte message\n",
        WARM_UP.as_secs_f64(),
        options.seconds,
        options.runs
    );

    if let Some(count) = options.breakdown {
        let mut rows = Vec::new();
        for setup in &setups {
            for &database in &options.databases {
                rows.push(
                    breakdown::measure_breakdown(
                        &bench,
                        setup,
                        database,
                        count,
                        options.breakdown_threads,
                    )
                    .with_context(|| {
                        format!("breakdown, {} on {}", setup.keys.label(), database.label())
                    })?,
                );
            }
        }
        println!(
            "{count} certificates from 1 requester after {} not counted; process CPU clock \
             (every thread) between the stages' ends; then {} requesters for {} s\n",
            (count / 10).max(1),
            options.breakdown_threads,
            options.seconds
        );
        print!("{}", breakdown::breakdown_table(&rows, options.server_cpu));
        println!("every certificate issued is in the database, valid, with two audit entries");
        return Ok(());
    }

    let mut cells: Vec<Cell> = Vec::new();
    for run in 1..=options.runs {
        for setup in &setups {
            for &database in &options.databases {
                for &threads in &options.threads {
                    let (sample, latencies) =
                        bench.run(setup, database, threads).with_context(|| {
                            format!(
                                "{} on {} with {threads} thread(s), run {run}",
                                setup.keys.label(),
                                database.label()
                            )
                        })?;
                    eprintln!(
                        "run {run}/{}: {:<18} {:<10} {threads:>2}t  {:>7} certs/s  {:>7} raw \
                         signs/s  {:>5.1}%  db alone {:>7}/s",
                        options.runs,
                        setup.keys.label(),
                        database.label(),
                        thousands(sample.certs),
                        thousands(sample.raw),
                        sample.ratio() * 100.0,
                        thousands(sample.db_alone)
                    );
                    match cells.iter_mut().find(|c| {
                        c.keys == setup.keys && c.database == database && c.threads == threads
                    }) {
                        Some(cell) => {
                            cell.runs.push(sample);
                            cell.latencies.extend(latencies);
                        }
                        None => cells.push(Cell {
                            keys: setup.keys,
                            database,
                            threads,
                            runs: vec![sample],
                            latencies,
                        }),
                    }
                }
            }
        }
    }
    machine.loadavg_after = load_average();

    println!();
    print!("{}", table(&cells));
    println!(
        "\nratio: certs/s as a share of raw signs/s, median over runs of each run's own ratio; \
         target {:.0}%.\ndb alone: the issuance's two writes (reservation, durable record) with their audit entries, \
         no CSR or signing, same threads.\nevery run's database held exactly the certificates \
         returned, all valid, with two audit entries each;\nsampled certificates verified \
         against the issuing CA's key.",
        TARGET * 100.0
    );
    println!("load average after the run: {}", machine.loadavg_after);
    if let Some(path) = &options.json {
        std::fs::write(path, to_json(&cells, &machine, &options, bench.csrs.len()))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("json: {}", path.display());
    }
    Ok(())
}
