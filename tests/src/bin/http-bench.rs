//! HTTP issuance benchmark: certificates/s through `POST /api/v1/certificates` of a running
//! `keyhold serve`, at several concurrencies, with p50/p99 latency.
//!
//! Each connection is one thread with one keep-alive HTTP/1.1 connection on loopback (the
//! client is a few dozen lines of std, so its cost is small and known). A request counts only
//! when it is answered `201 Created`; any other answer is counted as an error and the first
//! one is printed. Each measurement warms up for 0.5 s, then counts for `--seconds`; each
//! figure is the median of `--runs` runs, latencies are pooled over the runs.
//!
//! The token comes from `KEYHOLD_BENCH_TOKEN` (not an argument, so that it stays out of
//! `ps`). `tests/bench/http` sets everything up and runs this.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use ca_e2e::report::{
    cpu_model, json_number, json_string, load_average, median, quantile_ms, thousands,
};

const USAGE: &str = "usage: http-bench --url http://HOST:PORT --csrs DIR [--profile NAME]
                  [--concurrency LIST] [--seconds N] [--runs N] [--json FILE]
                  [--save DIR]
  token: the environment variable KEYHOLD_BENCH_TOKEN
  --save DIR: write one issued certificate and its chain (PEM) there, to check with openssl";

/// The issue's target at concurrency 16.
const TARGET_RATE: f64 = 3000.0;
/// The issue's p99 target, milliseconds.
const TARGET_P99_MS: f64 = 50.0;
const WARM_UP: Duration = Duration::from_millis(500);
/// Largest response accepted (a certificate and its chain are a few KiB).
const MAX_BODY: usize = 1 << 20;

struct Options {
    addr: SocketAddr,
    host: String,
    csrs: PathBuf,
    profile: String,
    concurrency: Vec<usize>,
    seconds: f64,
    runs: usize,
    json: Option<PathBuf>,
    save: Option<PathBuf>,
    token: String,
}

fn parse_options() -> Result<Options> {
    let mut url = None;
    let mut csrs = None;
    let mut profile = "tls-server".to_owned();
    let mut concurrency = vec![1, 16, 64];
    let mut seconds = 3.0;
    let mut runs = 3;
    let mut json = None;
    let mut save = None;
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
            "--csrs" => csrs = Some(PathBuf::from(value()?)),
            "--profile" => profile = value()?,
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
    let token = std::env::var("KEYHOLD_BENCH_TOKEN")
        .map_err(|_| anyhow!("set KEYHOLD_BENCH_TOKEN to an API token with the requester role"))?;
    Ok(Options {
        addr,
        host,
        csrs: csrs.ok_or_else(|| anyhow!("--csrs DIR is required\n\n{USAGE}"))?,
        profile,
        concurrency,
        seconds,
        runs,
        json,
        save,
        token,
    })
}

/// One HTTP answer.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The server will close the connection after this answer.
    close: bool,
}

/// A keep-alive HTTP/1.1 connection that sends one prepared request again and again.
struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, conn: None }
    }

    fn send(&mut self, request: &[u8]) -> Result<Answer> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let stream = TcpStream::connect(self.addr)
                    .with_context(|| format!("connecting to {}", self.addr))?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                self.conn.insert(BufReader::new(stream))
            }
        };
        let answer = exchange(conn, request);
        match &answer {
            Ok(a) if !a.close => {}
            _ => self.conn = None,
        }
        answer
    }
}

fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> Result<Answer> {
    conn.get_mut().write_all(request)?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("not an HTTP status line: {line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        ensure!(
            conn.read_line(&mut line)? > 0,
            "connection closed in the headers"
        );
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.parse::<usize>()?),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let body = if chunked {
        read_chunked(conn)?
    } else {
        let length = length.unwrap_or(0);
        ensure!(length <= MAX_BODY, "a {length}-byte answer");
        let mut body = vec![0; length];
        conn.read_exact(&mut body)?;
        body
    };
    Ok(Answer {
        status,
        body,
        close,
    })
}

fn read_chunked(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .with_context(|| format!("chunk size {line:?}"))?;
        ensure!(
            body.len() + size <= MAX_BODY,
            "an answer over {MAX_BODY} bytes"
        );
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])?;
        line.clear();
        conn.read_line(&mut line)?; // the CRLF after the chunk (or the trailer's end)
        if size == 0 {
            return Ok(body);
        }
    }
}

/// The HTTP request that issues one certificate for `csr`.
fn issue_request(options: &Options, csr: &str) -> Vec<u8> {
    let body = format!(
        "{{\"profile\":{},\"csr\":{}}}",
        json_string(&options.profile),
        json_string(csr)
    );
    format!(
        "POST /api/v1/certificates HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        options.host,
        options.token,
        body.len()
    )
    .into_bytes()
}

/// One run at one concurrency.
struct Run {
    rate: f64,
    errors: u64,
    latencies: Vec<u32>,
    first_error: Option<String>,
}

fn measure(options: &Options, requests: &Arc<Vec<Vec<u8>>>, connections: usize) -> Result<Run> {
    let duration = Duration::from_secs_f64(options.seconds);
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(connections + 1));
    let mut handles = Vec::new();
    for worker in 0..connections {
        let (counting, stop, ready) = (counting.clone(), stop.clone(), ready.clone());
        let requests = requests.clone();
        let addr = options.addr;
        handles.push(thread::spawn(move || {
            let mut client = Client::new(addr);
            let mut latencies = Vec::new();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            ready.wait();
            let mut next = worker;
            while !stop.load(Ordering::Relaxed) {
                let request = &requests[next % requests.len()];
                next += connections;
                let started = Instant::now();
                let answer = client.send(request);
                let micros = started.elapsed().as_micros();
                let counted = counting.load(Ordering::Relaxed);
                match answer {
                    Ok(a) if a.status == 201 => {
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
    let started = Instant::now();
    thread::sleep(duration);
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        rate: 0.0,
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
    Ok(run)
}

/// Issues one certificate and writes it and its chain to `dir` as `cert.pem`, `chain.pem`.
fn save_one(options: &Options, request: &[u8], dir: &std::path::Path) -> Result<()> {
    let answer = Client::new(options.addr).send(request)?;
    ensure!(
        answer.status == 201,
        "HTTP {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    let value: serde_json::Value =
        serde_json::from_slice(&answer.body).context("the 201 answer is not JSON")?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| anyhow!("the 201 answer has no {name:?} string"))
    };
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("cert.pem"), field("certificate")?)?;
    std::fs::write(dir.join("chain.pem"), field("chain")?)?;
    Ok(())
}

fn read_csrs(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut csrs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pem") {
            csrs.push(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
            );
        }
    }
    ensure!(!csrs.is_empty(), "no *.pem CSRs in {}", dir.display());
    csrs.sort();
    Ok(csrs)
}

fn run() -> Result<()> {
    let options = parse_options()?;
    let csrs = read_csrs(&options.csrs)?;
    let requests: Arc<Vec<Vec<u8>>> =
        Arc::new(csrs.iter().map(|c| issue_request(&options, c)).collect());
    println!("cpu: {}", cpu_model());
    println!(
        "available parallelism: {}",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "server: {} (keep-alive HTTP/1.1, one connection per requester); profile {}; {} CSRs \
         round robin",
        options.host,
        options.profile,
        csrs.len()
    );
    println!(
        "per measurement {:.1} s warm-up + {} s timed, median of {} run(s)\n",
        WARM_UP.as_secs_f64(),
        options.seconds,
        options.runs
    );
    if let Some(dir) = &options.save {
        save_one(&options, &requests[0], dir)?;
    }
    let mut cells = Vec::new();
    for &connections in &options.concurrency {
        let mut runs = Vec::new();
        for i in 0..options.runs {
            let load = load_average();
            let run = measure(&options, &requests, connections)?;
            println!(
                "run {}/{}: concurrency {connections:>3}  {:>7} certs/s  errors {}  load before {load}",
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
        "concurrency", "certs/s", "p50 ms", "p99 ms", "errors"
    );
    let mut json_cells = Vec::new();
    let mut failed = false;
    for (connections, runs) in &cells {
        let rate = median(&runs.iter().map(|(r, _)| r.rate).collect::<Vec<_>>());
        let latencies: Vec<u32> = runs.iter().flat_map(|(r, _)| r.latencies.clone()).collect();
        let errors: u64 = runs.iter().map(|(r, _)| r.errors).sum();
        failed |= errors > 0;
        let (p50, p99) = (quantile_ms(&latencies, 0.5), quantile_ms(&latencies, 0.99));
        println!(
            "{connections:>11} {:>9} {p50:>8.2} {p99:>8.2} {errors:>7}",
            thousands(rate)
        );
        json_cells.push(format!(
            "{{\"concurrency\": {connections}, \"certs_per_s\": {}, \"p50_ms\": {}, \
             \"p99_ms\": {}, \"errors\": {errors}, \"runs\": [{}]}}",
            json_number(rate, 1),
            json_number(p50, 3),
            json_number(p99, 3),
            runs.iter()
                .map(|(r, load)| format!(
                    "{{\"certs_per_s\": {}, \"errors\": {}, \"load_before\": {}}}",
                    json_number(r.rate, 1),
                    r.errors,
                    json_string(load)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if *connections == 16 {
            println!(
                "            target at 16: {} certs/s and p99 under {TARGET_P99_MS} ms: {}",
                thousands(TARGET_RATE),
                if rate >= TARGET_RATE && p99 < TARGET_P99_MS {
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
            "{{\"benchmark\": \"http-issuance\", \"cpu\": {}, \"profile\": {}, \
             \"seconds\": {}, \"runs\": {}, \"cells\": [{}]}}\n",
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
        "some requests were not answered 201 Created (see the first errors above)"
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
