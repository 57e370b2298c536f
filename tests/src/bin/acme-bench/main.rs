//! ACME load generator: full RFC 8555 issuances per second against an ACME server on
//! loopback, with p50/p99 per issuance and errors by type.
//!
//! Each worker owns one ES256 account (created once, reused for every run and concurrency)
//! and one keep-alive HTTPS connection (rustls, trusting `--ca-bundle`), and loops the full
//! issuance: newOrder for one random DNS name (`n<k>.<domain>`), POST-as-GET the
//! authorization, answer its http-01 challenge, poll the authorization until `valid`, finalize
//! with a CSR for a fresh P-256 key, poll the order until `valid`, download the chain. Only an
//! issuance that ends with a PEM chain counts; anything else is an error of its step and kind.
//!
//! The bench answers http-01 itself: `--responder PORT` is a small HTTP server on
//! 127.0.0.1 serving `/.well-known/acme-challenge/{token}` from a map the workers fill. The
//! server under test must resolve the names to 127.0.0.1 and connect to that port.
//!
//! Polls wait `--poll-ms` (default 5 ms) and do not honour `Retry-After`, for every server
//! alike: the bench measures how fast a server completes the work, not a client's patience.
//!
//! Each measurement warms up for 1 s, then counts for `--seconds`; each figure is the
//! median of `--runs` runs, latencies are pooled. `tests/bench/acme` sets up Keyhold and
//! pebble side by side and runs this against both.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_lc_rs::rand::SystemRandom;
use ca_e2e::report::{load_average, median, quantile_ms};
use serde_json::Value;

use crate::client::{Account, Client, Directory, Failure};
use crate::https::{Conn, Origin};
use crate::responder::start_responder;

mod client;
mod csr;
mod https;
mod responder;

const USAGE: &str = "usage: acme-bench --directory URL --ca-bundle PEM --responder PORT
                  [--domain NAME] [--concurrency LIST] [--seconds N] [--runs N]
                  [--poll-ms N] [--label NAME] [--server-pid PID] [--save FILE] [--best]
  --directory: the ACME directory (https://HOST:PORT/...)
  --ca-bundle: the PEM root(s) the server's HTTPS certificate chains to
  --responder: the 127.0.0.1 port on which the bench answers http-01
  --domain: names are n<random>.<domain> (default bench.test)
  --server-pid: also report the server's CPU (user + system) per issuance
  --save FILE: write the first issuance's PEM chain there (to check with openssl)
  --best: report the best run's rate instead of the median (for a server that can wedge)
  prints one `result` line per concurrency: label, concurrency, issuances/s, p50 ms,
  p99 ms, errors, server CPU ms per issuance, load average";

const WARM_UP: Duration = Duration::from_secs(1);

struct Options {
    directory: String,
    ca_bundle: String,
    responder: u16,
    domain: String,
    concurrency: Vec<usize>,
    seconds: f64,
    runs: usize,
    poll: Duration,
    label: String,
    server_pid: Option<u32>,
    save: Option<String>,
    best: bool,
}

fn parse_options() -> Result<Options> {
    let (mut directory, mut ca_bundle, mut responder) = (None, None, None);
    let mut o = Options {
        directory: String::new(),
        ca_bundle: String::new(),
        responder: 0,
        domain: "bench.test".into(),
        concurrency: vec![1, 16],
        seconds: 5.0,
        runs: 3,
        poll: Duration::from_millis(5),
        label: "server".into(),
        server_pid: None,
        save: None,
        best: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow!("{arg} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--directory" => directory = Some(value()?),
            "--ca-bundle" => ca_bundle = Some(value()?),
            "--responder" => responder = Some(number::<u16>(&arg, &value()?, 1, 65535)?),
            "--domain" => o.domain = value()?.trim_matches('.').to_owned(),
            "--concurrency" => {
                let v = value()?;
                o.concurrency = v
                    .split(',')
                    .map(|n| number::<usize>(&arg, n.trim(), 1, 512))
                    .collect::<Result<_>>()?;
            }
            "--seconds" => {
                let v = value()?;
                o.seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && *s <= 600.0)
                    .ok_or_else(|| anyhow!("--seconds {v:?}: a number in (0, 600]"))?;
            }
            "--runs" => o.runs = number(&arg, &value()?, 1, 100)?,
            "--poll-ms" => o.poll = Duration::from_millis(number(&arg, &value()?, 0, 10_000)?),
            "--label" => o.label = value()?,
            "--save" => o.save = Some(value()?),
            "--best" => o.best = true,
            "--server-pid" => o.server_pid = Some(number(&arg, &value()?, 1, u32::MAX)?),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    o.directory = directory.ok_or_else(|| anyhow!("--directory is required\n\n{USAGE}"))?;
    o.ca_bundle = ca_bundle.ok_or_else(|| anyhow!("--ca-bundle is required\n\n{USAGE}"))?;
    o.responder = responder.ok_or_else(|| anyhow!("--responder is required\n\n{USAGE}"))?;
    Ok(o)
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    arg: &str,
    v: &str,
    min: T,
    max: T,
) -> Result<T> {
    v.parse::<T>()
        .ok()
        .filter(|n| *n >= min && *n <= max)
        .ok_or_else(|| anyhow!("{arg} {v:?}: a whole number in {min}..={max}"))
}

/// What one worker saw in one measurement.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    /// Requests sent by counted issuances.
    requests: u64,
    errors: BTreeMap<String, u64>,
}

/// The server's CPU time (user + system) from /proc/PID/stat.
fn server_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: field {i} is not a number"))
    };
    let per_second = rustix::param::clock_ticks_per_second();
    ensure!(per_second > 0, "the clock tick rate is unknown");
    Ok(Duration::from_secs_f64(
        (ticks(14)? + ticks(15)?) as f64 / per_second as f64,
    ))
}

/// One timed run at `clients.len()` concurrency: issuances/s and the tallies.
fn measure(clients: &mut [Client], seconds: f64, pid: Option<u32>) -> Result<(f64, Tally, f64)> {
    let window = Duration::from_secs_f64(seconds);
    let barrier = Arc::new(Barrier::new(clients.len() + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let (tallies, cpu) = thread::scope(|s| -> Result<(Vec<Tally>, Option<Duration>)> {
        let handles: Vec<_> = clients
            .iter_mut()
            .map(|c| {
                let (barrier, stop) = (barrier.clone(), stop.clone());
                s.spawn(move || {
                    barrier.wait();
                    let begin = Instant::now();
                    let (from, to) = (begin + WARM_UP, begin + WARM_UP + window);
                    let mut t = Tally::default();
                    while !stop.load(Ordering::Relaxed) && Instant::now() < to {
                        let started = Instant::now();
                        let sent = c.requests;
                        let result = c.issue();
                        let done = Instant::now();
                        if started < from || done > to {
                            continue;
                        }
                        match result {
                            Ok(_) => {
                                t.requests += c.requests - sent;
                                t.latencies_us.push(
                                    u32::try_from((done - started).as_micros()).unwrap_or(u32::MAX),
                                );
                            }
                            Err(Failure(kind)) => {
                                let kind: String = kind.chars().take(120).collect();
                                *t.errors.entry(kind).or_default() += 1;
                            }
                        }
                    }
                    t
                })
            })
            .collect();
        barrier.wait();
        thread::sleep(WARM_UP);
        let before = pid.map(server_cpu).transpose()?;
        thread::sleep(window);
        let after = pid.map(server_cpu).transpose()?;
        stop.store(true, Ordering::Relaxed);
        let tallies = handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a worker panicked")))
            .collect::<Result<Vec<_>>>()?;
        Ok((tallies, after.zip(before).map(|(a, b)| a.saturating_sub(b))))
    })?;
    let mut all = Tally::default();
    for t in tallies {
        all.latencies_us.extend(t.latencies_us);
        all.requests += t.requests;
        for (k, n) in t.errors {
            *all.errors.entry(k).or_default() += n;
        }
    }
    let rate = all.latencies_us.len() as f64 / seconds;
    let cpu_ms = cpu.map_or(f64::NAN, |c| {
        c.as_secs_f64() * 1000.0 / all.latencies_us.len().max(1) as f64
    });
    Ok((rate, all, cpu_ms))
}

fn main() -> Result<()> {
    let o = parse_options()?;
    let (origin, dir_path) = Origin::new(&o.directory, &o.ca_bundle)?;
    let challenges = Arc::new(Mutex::new(HashMap::new()));
    start_responder(o.responder, challenges.clone())?;

    let mut conn = Conn {
        origin: origin.clone(),
        stream: None,
    };
    let d = conn.send("GET", &dir_path, None)?;
    ensure!(d.status == 200, "the directory answered {}", d.status);
    let d = d.json()?;
    let url = |k: &str| -> Result<String> {
        d.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the directory has no {k}"))
    };
    let dir = Directory {
        new_nonce: url("newNonce")?,
        new_account: url("newAccount")?,
        new_order: url("newOrder")?,
    };

    let most = o.concurrency.iter().copied().max().unwrap_or(1);
    let mut clients = Vec::with_capacity(most);
    for _ in 0..most {
        let mut c = Client {
            conn: Conn {
                origin: origin.clone(),
                stream: None,
            },
            dir: dir.clone(),
            account: Account::generate()?,
            nonce: None,
            requests: 0,
            rng: SystemRandom::new(),
            poll: o.poll,
            challenges: challenges.clone(),
            domain: o.domain.clone(),
        };
        c.create_account()?;
        clients.push(c);
    }
    // One issuance first, so that a server that cannot issue fails loudly here.
    let chain = clients
        .first_mut()
        .ok_or_else(|| anyhow!("no client"))?
        .issue()
        .map_err(|f| anyhow!("the first issuance failed: {}", f.0))?;
    if let Some(path) = &o.save {
        std::fs::write(path, chain).with_context(|| format!("writing {path}"))?;
    }

    println!(
        "acme-bench {}: full issuances (newOrder, authz, http-01, finalize, download), {} s x {} runs, poll {} ms",
        o.label,
        o.seconds,
        o.runs,
        o.poll.as_millis()
    );
    for &c in &o.concurrency {
        let mut rates = Vec::new();
        let mut cpus = Vec::new();
        let mut pooled = Tally::default();
        for _ in 0..o.runs {
            let (rate, t, cpu) = measure(&mut clients[..c], o.seconds, o.server_pid)?;
            rates.push(rate);
            cpus.push(cpu);
            pooled.latencies_us.extend(t.latencies_us);
            pooled.requests += t.requests;
            for (k, n) in t.errors {
                *pooled.errors.entry(k).or_default() += n;
            }
        }
        let errors: u64 = pooled.errors.values().sum();
        let per_issuance = pooled.requests as f64 / pooled.latencies_us.len().max(1) as f64;
        let rate = if o.best {
            rates.iter().copied().fold(0.0, f64::max)
        } else {
            median(&rates)
        };
        let (p50, p99) = (
            quantile_ms(&pooled.latencies_us, 0.5),
            quantile_ms(&pooled.latencies_us, 0.99),
        );
        let load = load_average();
        println!(
            "  c={c:<3} {rate:8.1} issuances/s (runs {}), p50 {p50:.1} ms, p99 {p99:.1} ms, {errors} errors, {per_issuance:.1} requests/issuance, server CPU {:.2} ms/issuance, load {load}",
            rates
                .iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(" "),
            median(&cpus)
        );
        for (k, n) in &pooled.errors {
            println!("        {n:>6} x {k}");
        }
        println!(
            "result {} {c} {rate:.1} {p50:.1} {p99:.1} {errors} {:.2} {}",
            o.label,
            median(&cpus),
            load.replace(' ', "/")
        );
    }
    Ok(())
}
