//! HTTP benchmark: answers/s with p50/p99 latency, at several concurrencies, from a server
//! on loopback. `--mode` says what is sent:
//!
//! - `issue` (default): `POST /api/v1/certificates` of a running `keyhold serve`, counted when
//!   `201 Created`;
//! - `cfssl-sign`: `POST /api/v1/cfssl/sign` of `cfssl serve` with `{"certificate_request":
//!   PEM}`, counted when `200` with `"success":true`;
//! - `ocsp-post` / `ocsp-get`: the DER OCSP requests (`*.der`) in `--input`, sent by POST to
//!   `--path` or by GET to `--path/{base64}`, counted when `200` with a successful
//!   OCSPResponse. Used for Keyhold, `openssl ocsp -port` and `cfssl ocspserve` alike;
//! - `codesign`: `POST /api/v1/sign` of a running `keyhold serve` with the SHA-256 digest of
//!   one of 64 small artifacts (made here, no `--input`) for the key `--key`, counted when
//!   `200` with a DER CMS SignedData body.
//!
//! A connection is opened only to send a request on it, never as a probe (`openssl ocsp
//! -port` spins after a connection that closes without a request); an HTTP/1.0 answer or
//! `Connection: close` closes it.
//!
//! Each connection is one thread with one keep-alive HTTP/1.1 connection on loopback (the
//! client is a few dozen lines of std, so its cost is small and known). A request counts only
//! when it is answered `201 Created`; any other answer is counted as an error and the first
//! one is printed. Each measurement warms up for 0.5 s, then counts for `--seconds`; each
//! figure is the median of `--runs` runs, latencies are pooled over the runs.
//!
//! The token for `issue` and `codesign` comes from `KEYHOLD_BENCH_TOKEN` (not an argument, so that it stays
//! out of `ps`). `tests/bench/http`, `tests/bench/codesign` and `bench/run` set everything up
//! and run this.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use ca_e2e::report::{
    cpu_model, json_number, json_string, load_average, median, quantile_ms, thousands,
};

mod bodies;
mod client;
mod requests;

use bodies::{ARTIFACTS, artifact, cms_signed_data, contains, ocsp_successful};
use client::{Answer, Client};
use requests::http_request;

const USAGE: &str = "usage: http-bench --url http://HOST:PORT --input DIR [--mode MODE]
                  [--path PATH] [--profile NAME] [--key LABEL] [--concurrency LIST] [--seconds N]
                  [--runs N] [--max-requests N] [--json FILE] [--label NAME]
                  [--save DIR] [--no-target] [--target N] [--server-pid PID]
  --target N: the rate at concurrency 16 to check (default 2,500; p99 under 50 ms)
  --max-requests N: a measurement (warm-up included) sends at most N requests
  --mode: issue (default), cfssl-sign, ocsp-post, ocsp-get, codesign
  --input DIR: *.pem CSRs (issue, cfssl-sign) or *.der OCSP requests (ocsp-*); --csrs is
               the same option; codesign takes none (it signs digests of its own artifacts)
  --path: the OCSP path (default /ocsp)
  --key LABEL: the code-signing key (codesign)
  token (issue, codesign): the environment variable KEYHOLD_BENCH_TOKEN
  --save DIR: write one answer there (cert.pem and chain.pem, ocsp.der, or artifact and
              signature.der), to check with openssl
  --server-pid PID: also report the server's CPU (user + system, every thread) per answer
              counted, from /proc/PID/stat over each timed window";

/// What the benchmark sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Issue,
    CfsslSign,
    OcspPost,
    OcspGet,
    Codesign,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "issue" => Mode::Issue,
            "cfssl-sign" => Mode::CfsslSign,
            "ocsp-post" => Mode::OcspPost,
            "ocsp-get" => Mode::OcspGet,
            "codesign" => Mode::Codesign,
            other => bail!("--mode {other:?}: issue, cfssl-sign, ocsp-post, ocsp-get or codesign"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Issue => "issue",
            Mode::CfsslSign => "cfssl-sign",
            Mode::OcspPost => "ocsp-post",
            Mode::OcspGet => "ocsp-get",
            Mode::Codesign => "codesign",
        }
    }

    fn is_ocsp(self) -> bool {
        matches!(self, Mode::OcspPost | Mode::OcspGet)
    }

    /// Whether `answer` counts as done.
    fn accepts(self, answer: &Answer) -> bool {
        match self {
            Mode::Issue => answer.status == 201,
            Mode::CfsslSign => answer.status == 200 && contains(&answer.body, b"\"success\":true"),
            Mode::OcspPost | Mode::OcspGet => answer.status == 200 && ocsp_successful(&answer.body),
            Mode::Codesign => answer.status == 200 && cms_signed_data(&answer.body),
        }
    }
}

/// The issue's target at concurrency 16 (issue 21) with SQLite; `--target` sets another
/// (1,500 with PostgreSQL).
const TARGET_RATE: f64 = 2500.0;
/// The issue's p99 target, milliseconds.
const TARGET_P99_MS: f64 = 50.0;
const WARM_UP: Duration = Duration::from_millis(500);

struct Options {
    addr: SocketAddr,
    host: String,
    mode: Mode,
    path: String,
    label: Option<String>,
    target: bool,
    target_rate: f64,
    max_requests: u64,
    input: PathBuf,
    profile: String,
    key: String,
    concurrency: Vec<usize>,
    seconds: f64,
    runs: usize,
    json: Option<PathBuf>,
    save: Option<PathBuf>,
    token: String,
    server_pid: Option<u32>,
}

fn parse_options() -> Result<Options> {
    let mut url = None;
    let mut input = None;
    let mut mode = Mode::Issue;
    let mut path = "/ocsp".to_owned();
    let mut label = None;
    let mut target = true;
    let mut target_rate = TARGET_RATE;
    let mut max_requests = u64::MAX;
    let mut profile = "tls-server".to_owned();
    let mut key = None;
    let mut concurrency = vec![1, 16, 64];
    let mut seconds = 3.0;
    let mut runs = 3;
    let mut json = None;
    let mut save = None;
    let mut server_pid = None;
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
            "--url" => url = Some(value()?),
            "--input" | "--csrs" => input = Some(PathBuf::from(value()?)),
            "--mode" => mode = Mode::parse(&value()?)?,
            "--path" => path = value()?.trim_end_matches('/').to_owned(),
            "--label" => label = Some(value()?),
            "--no-target" => target = false,
            "--target" => {
                let v = value()?;
                target_rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| *r > 0.0)
                    .ok_or_else(|| anyhow!("--target: answers/s at 16, not {v:?}"))?;
            }
            "--max-requests" => {
                let v = value()?;
                max_requests = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow!("--max-requests {v:?}: a positive whole number"))?;
            }
            "--profile" => profile = value()?,
            "--key" => key = Some(value()?),
            "--concurrency" => {
                let v = value()?;
                concurrency = v
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (1..=1024).contains(n))
                            .ok_or_else(|| {
                                anyhow!("--concurrency {v:?}: whole numbers in 1..=1024")
                            })
                    })
                    .collect::<Result<_>>()?;
            }
            "--seconds" => {
                let v = value()?;
                seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && *s <= 600.0)
                    .ok_or_else(|| anyhow!("--seconds {v:?}: a number in (0, 600]"))?;
            }
            "--runs" => {
                let v = value()?;
                runs = v
                    .parse::<usize>()
                    .ok()
                    .filter(|r| (1..=100).contains(r))
                    .ok_or_else(|| anyhow!("--runs {v:?}: a whole number in 1..=100"))?;
            }
            "--json" => json = Some(PathBuf::from(value()?)),
            "--save" => save = Some(PathBuf::from(value()?)),
            "--server-pid" => {
                let v = value()?;
                let pid: u32 = v
                    .parse()
                    .map_err(|_| anyhow!("--server-pid {v:?}: a process id"))?;
                server_cpu(pid).with_context(|| format!("--server-pid {pid}"))?;
                server_pid = Some(pid);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let url = url.ok_or_else(|| anyhow!("--url is required\n\n{USAGE}"))?;
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url {url:?}: only http:// on loopback is benchmarked"))?
        .trim_end_matches('/')
        .to_owned();
    ensure!(
        !host.contains('/'),
        "--url {url:?}: give only http://HOST:PORT"
    );
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} resolves to no address"))?;
    ensure!(
        addr.ip().is_loopback(),
        "{host} is not a loopback address: the benchmark loads only this machine"
    );
    let token = match mode {
        Mode::Issue => std::env::var("KEYHOLD_BENCH_TOKEN").map_err(|_| {
            anyhow!("set KEYHOLD_BENCH_TOKEN to an API token with the requester role")
        })?,
        Mode::Codesign => std::env::var("KEYHOLD_BENCH_TOKEN").map_err(|_| {
            anyhow!("set KEYHOLD_BENCH_TOKEN to an API token that owns or is bound to --key")
        })?,
        _ => String::new(),
    };
    let key = match (mode, key) {
        (Mode::Codesign, Some(key)) => key,
        (Mode::Codesign, None) => bail!("--mode codesign needs --key LABEL\n\n{USAGE}"),
        (_, Some(_)) => bail!("--key is for --mode codesign only"),
        (_, None) => String::new(),
    };
    let input = match (mode, input) {
        (Mode::Codesign, None) => PathBuf::new(),
        (Mode::Codesign, Some(_)) => bail!("--mode codesign makes its own inputs: no --input"),
        (_, input) => input.ok_or_else(|| anyhow!("--input DIR is required\n\n{USAGE}"))?,
    };
    Ok(Options {
        addr,
        host,
        mode,
        path,
        label,
        target: target && mode == Mode::Issue,
        target_rate,
        max_requests,
        input,
        profile,
        key,
        concurrency,
        seconds,
        runs,
        json,
        save,
        token,
        server_pid,
    })
}

/// The CPU time (user + system, every thread) process `pid` has used so far, from
/// `/proc/PID/stat` (clock ticks, usually 10 ms each).
fn server_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields; `rest` starts at the 3rd.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: field {i} is not a number"))
    };
    let total = ticks(14)? + ticks(15)?;
    let per_second = rustix::param::clock_ticks_per_second();
    ensure!(per_second > 0, "the clock tick rate is unknown");
    Ok(Duration::from_secs_f64(total as f64 / per_second as f64))
}

/// One run at one concurrency.
struct Run {
    rate: f64,
    /// The server's CPU per answer counted, in microseconds (with `--server-pid`).
    server_us: Option<f64>,
    errors: u64,
    latencies: Vec<u32>,
    first_error: Option<String>,
}

fn measure(options: &Options, requests: &Arc<Vec<Vec<u8>>>, connections: usize) -> Result<Run> {
    let duration = Duration::from_secs_f64(options.seconds);
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(connections + 1));
    let mut handles = Vec::new();
    for worker in 0..connections {
        let (counting, stop, ready) = (counting.clone(), stop.clone(), ready.clone());
        let (sent, max_requests) = (sent.clone(), options.max_requests);
        let requests = requests.clone();
        let addr = options.addr;
        let mode = options.mode;
        handles.push(thread::spawn(move || {
            let mut client = Client::new(addr);
            let mut latencies = Vec::new();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            ready.wait();
            let mut next = worker;
            while !stop.load(Ordering::Relaxed)
                && sent.fetch_add(1, Ordering::Relaxed) < max_requests
            {
                let request = &requests[next % requests.len()];
                next += connections;
                let started = Instant::now();
                let answer = client.send(request);
                let micros = started.elapsed().as_micros();
                let counted = counting.load(Ordering::Relaxed);
                match answer {
                    Ok(a) if mode.accepts(&a) => {
                        if counted {
                            ok += 1;
                            latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                        }
                    }
                    other => {
                        errors += 1;
                        if first_error.is_none() {
                            first_error = Some(match other {
                                Ok(a) => format!(
                                    "HTTP {}: {}",
                                    a.status,
                                    String::from_utf8_lossy(&a.body)
                                        .chars()
                                        .take(300)
                                        .collect::<String>()
                                ),
                                Err(e) => format!("{e:#}"),
                            });
                        }
                    }
                }
            }
            (ok, errors, latencies, first_error)
        }));
    }
    ready.wait();
    thread::sleep(WARM_UP);
    counting.store(true, Ordering::Relaxed);
    let cpu_before = options.server_pid.map(server_cpu).transpose()?;
    let started = Instant::now();
    // Until the time is up, or every worker has stopped at the request cap.
    while started.elapsed() < duration && handles.iter().any(|h| !h.is_finished()) {
        thread::sleep(Duration::from_millis(5).min(duration));
    }
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_after = options.server_pid.map(server_cpu).transpose()?;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        rate: 0.0,
        server_us: None,
        errors: 0,
        latencies: Vec::new(),
        first_error: None,
    };
    let mut ok = 0;
    for handle in handles {
        let (n, errors, latencies, first_error) = handle
            .join()
            .map_err(|_| anyhow!("a load thread panicked"))?;
        ok += n;
        run.errors += errors;
        run.latencies.extend(latencies);
        run.first_error = run.first_error.or(first_error);
    }
    run.rate = ok as f64 / elapsed.as_secs_f64();
    if let (Some(before), Some(after)) = (cpu_before, cpu_after)
        && ok > 0
    {
        run.server_us = Some(after.saturating_sub(before).as_secs_f64() * 1e6 / ok as f64);
    }
    Ok(run)
}

/// Sends `request` (made from `input`) once and writes the answer to `dir`: `cert.pem` and
/// `chain.pem` for issuance (cfssl answers no chain), `ocsp.der` for OCSP, `artifact` and
/// `signature.der` for code signing.
fn save_one(options: &Options, input: &[u8], request: &[u8], dir: &std::path::Path) -> Result<()> {
    let answer = Client::new(options.addr).send(request)?;
    ensure!(
        options.mode.accepts(&answer),
        "HTTP {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    std::fs::create_dir_all(dir)?;
    if options.mode.is_ocsp() {
        std::fs::write(dir.join("ocsp.der"), &answer.body)?;
        return Ok(());
    }
    if options.mode == Mode::Codesign {
        std::fs::write(dir.join("artifact"), input)?;
        std::fs::write(dir.join("signature.der"), &answer.body)?;
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_slice(&answer.body).context("the answer is not JSON")?;
    if options.mode == Mode::CfsslSign {
        let cert = value
            .pointer("/result/certificate")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| anyhow!("the cfssl answer has no result.certificate"))?;
        std::fs::write(dir.join("cert.pem"), cert)?;
        return Ok(());
    }
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| anyhow!("the 201 answer has no {name:?} string"))
    };
    std::fs::write(dir.join("cert.pem"), field("certificate")?)?;
    std::fs::write(dir.join("chain.pem"), field("chain")?)?;
    Ok(())
}

/// The inputs in `dir`: `*.pem` CSRs, or `*.der` OCSP requests, in name order.
fn read_inputs(dir: &std::path::Path, mode: Mode) -> Result<Vec<Vec<u8>>> {
    let ext = if mode.is_ocsp() { "der" } else { "pem" };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == ext) {
            paths.push(path);
        }
    }
    ensure!(!paths.is_empty(), "no *.{ext} files in {}", dir.display());
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect()
}

fn run() -> Result<()> {
    let options = parse_options()?;
    let inputs = if options.mode == Mode::Codesign {
        (0..ARTIFACTS).map(artifact).collect()
    } else {
        read_inputs(&options.input, options.mode)?
    };
    let requests: Arc<Vec<Vec<u8>>> =
        Arc::new(inputs.iter().map(|c| http_request(&options, c)).collect());
    println!("cpu: {}", cpu_model());
    println!(
        "available parallelism: {}",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "server: {} (keep-alive HTTP/1.1, one connection per requester); mode {}; {} inputs \
         round robin",
        options.host,
        options.mode.name(),
        inputs.len()
    );
    println!(
        "per measurement {:.1} s warm-up + {} s timed, median of {} run(s)\n",
        WARM_UP.as_secs_f64(),
        options.seconds,
        options.runs
    );
    if let Some(dir) = &options.save {
        save_one(&options, &inputs[0], &requests[0], dir)?;
    }
    let mut cells = Vec::new();
    for &connections in &options.concurrency {
        let mut runs = Vec::new();
        for i in 0..options.runs {
            let load = load_average();
            let run = measure(&options, &requests, connections)?;
            let cpu = run
                .server_us
                .map_or_else(String::new, |us| format!("  server CPU {us:.0} µs/answer"));
            println!(
                "run {}/{}: concurrency {connections:>3}  {:>7} answers/s  errors {}{cpu}  load before {load}",
                i + 1,
                options.runs,
                thousands(run.rate),
                run.errors
            );
            if let Some(e) = &run.first_error {
                println!("  first error: {e}");
            }
            runs.push((run, load));
        }
        cells.push((connections, runs));
    }

    println!(
        "\n{:>11} {:>9} {:>8} {:>8} {:>7}",
        "concurrency", "answers/s", "p50 ms", "p99 ms", "errors"
    );
    let mut json_cells = Vec::new();
    let mut failed = false;
    for (connections, runs) in &cells {
        let rate = median(&runs.iter().map(|(r, _)| r.rate).collect::<Vec<_>>());
        let latencies: Vec<u32> = runs.iter().flat_map(|(r, _)| r.latencies.clone()).collect();
        let errors: u64 = runs.iter().map(|(r, _)| r.errors).sum();
        failed |= errors > 0;
        let (p50, p99) = (quantile_ms(&latencies, 0.5), quantile_ms(&latencies, 0.99));
        let server_us = median(
            &runs
                .iter()
                .filter_map(|(r, _)| r.server_us)
                .collect::<Vec<_>>(),
        );
        let cpu = if server_us.is_finite() {
            format!("  server CPU {server_us:.0} µs/answer")
        } else {
            String::new()
        };
        println!(
            "{connections:>11} {:>9} {p50:>8.2} {p99:>8.2} {errors:>7}{cpu}",
            thousands(rate)
        );
        json_cells.push(format!(
            "{{\"concurrency\": {connections}, \"per_s\": {}, \"p50_ms\": {}, \
             \"p99_ms\": {}, \"errors\": {errors}, \"server_cpu_us\": {}, \"runs\": [{}]}}",
            json_number(rate, 1),
            json_number(p50, 3),
            json_number(p99, 3),
            json_number(server_us, 1),
            runs.iter()
                .map(|(r, load)| format!(
                    "{{\"per_s\": {}, \"errors\": {}, \"load_before\": {}}}",
                    json_number(r.rate, 1),
                    r.errors,
                    json_string(load)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if *connections == 16 && options.target {
            println!(
                "            target at 16: {} answers/s and p99 under {TARGET_P99_MS} ms: {}",
                thousands(options.target_rate),
                if rate >= options.target_rate && p99 < TARGET_P99_MS {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
    }
    println!("load average after the run: {}", load_average());
    if let Some(path) = &options.json {
        let json = format!(
            "{{\"benchmark\": {}, \"mode\": \"{}\", \"cpu\": {}, \"profile\": {}, \
             \"seconds\": {}, \"runs\": {}, \"cells\": [{}]}}\n",
            json_string(options.label.as_deref().unwrap_or("http-issuance")),
            options.mode.name(),
            json_string(&cpu_model()),
            json_string(&options.profile),
            options.seconds,
            options.runs,
            json_cells.join(", ")
        );
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    ensure!(
        !failed,
        "some requests were not answered as expected (see the first errors above)"
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
