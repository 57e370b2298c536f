//! Sign-in flood (issue 15, items 7 and 8): starts `keyhold serve` on a throwaway CA, then
//!
//! 1. sends `--attempts` (default 20,000) sign-ins with random names from `--flooders`
//!    connections, each bound to its own loopback source address (127.0.0.10, .11, ...), and
//!    reports the server's resident memory (VmRSS, and its peak VmHWM) after them;
//! 2. floods again from six connections sharing one source address (127.0.0.2), and meanwhile
//!    a legitimate user signs in from 127.0.0.1 every 0.6 s for `--seconds` (default 20),
//!    and reports how many of those sign-ins succeeded.
//!
//! Every sign-in first GETs the form (for its anti-CSRF token) and then POSTs it, on one
//! keep-alive connection, as a browser does.
//!
//! usage: signin-flood [--keyhold PATH] [--policies DIR] [--attempts N] [--flooders N]
//!                     [--seconds N]
//! (`--keyhold` defaults to the `keyhold` binary next to this one: `cargo build -p ca-web`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

const PASSPHRASE: &str = "signin-flood throwaway passphrase";

struct Args {
    keyhold: PathBuf,
    policies: PathBuf,
    attempts: u64,
    flooders: u8,
    seconds: u64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        keyhold: std::env::current_exe()?.with_file_name("keyhold"),
        policies: PathBuf::from("policies"),
        attempts: 20_000,
        flooders: 8,
        seconds: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--keyhold" => a.keyhold = value.into(),
            "--policies" => a.policies = value.into(),
            "--attempts" => a.attempts = value.parse()?,
            "--flooders" => a.flooders = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

struct Server {
    child: Child,
    port: u16,
    _tmp: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keyhold(a: &Args, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(&a.keyhold);
    cmd.env("KEYHOLD_PASSPHRASE", PASSPHRASE)
        .arg("--data-dir")
        .arg(dir)
        .arg("--policies")
        .arg(&a.policies);
    cmd
}

/// A CA with user `legit` (an auditor); its one-time password.
fn start(a: &Args) -> Result<(Server, String)> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let out = keyhold(a, &dir)
        .arg("init")
        .output()
        .context("keyhold init")?;
    if !out.status.success() {
        bail!("init: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = keyhold(a, &dir)
        .args(["users", "add", "legit", "--role", "auditor"])
        .output()?;
    if !out.status.success() {
        bail!("users add: {}", String::from_utf8_lossy(&out.stderr));
    }
    let password = String::from_utf8(out.stdout)?.trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = keyhold(a, &dir)
        .args([
            "serve",
            "--tls-listen",
            "none",
            "--insecure-http-ui",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("keyhold serve")?;
    let server = Server {
        child,
        port,
        _tmp: tmp,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("keyhold serve did not listen on {port}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok((server, password))
}

fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// One keep-alive connection from source address `from`.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(from: Ipv4Addr, port: u16) -> Result<Client> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())?;
        socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    /// Sends `request`; the status and the headers and body as text.
    fn send(&mut self, request: &str) -> Result<(u16, String)> {
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        head.push_str(&String::from_utf8_lossy(&body));
        Ok((status, head))
    }

    /// GET the form, POST `name` and `password`; the POST's status.
    fn sign_in(&mut self, name: &str, password: &str) -> Result<u16> {
        let (_, page) = self.send("GET /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
        let cookie = page
            .lines()
            .find_map(|l| {
                let l = l.to_ascii_lowercase();
                l.strip_prefix("set-cookie: ")
                    .map(|c| c.split(';').next().unwrap_or_default().to_owned())
            })
            .filter(|c| c.starts_with("kh_login="))
            .ok_or_else(|| anyhow!("no kh_login cookie"))?;
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .ok_or_else(|| anyhow!("no csrf field"))?;
        let body = format!("csrf={csrf}&name={name}&password={}", encode(password));
        let (status, _) = self.send(&format!(
            "POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))?;
        Ok(status)
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    unauthorized: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
}

/// Floods from `sources` (one connection each) until `stop` or `limit` attempts in all.
fn flood(
    port: u16,
    sources: Vec<Ipv4Addr>,
    limit: u64,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> Vec<thread::JoinHandle<()>> {
    sources
        .into_iter()
        .enumerate()
        .map(|(i, from)| {
            let (stop, counts) = (stop.clone(), counts.clone());
            thread::spawn(move || {
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
                let mut client = None;
                while !stop.load(Ordering::Relaxed)
                    && counts.sent.fetch_add(1, Ordering::Relaxed) < limit
                {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let name = format!("flood{seed:016x}");
                    if client.is_none() {
                        client = Client::connect(from, port).ok();
                    }
                    let status = client
                        .as_mut()
                        .map(|c| c.sign_in(&name, "not the password"));
                    match status {
                        Some(Ok(401)) => counts.unauthorized.fetch_add(1, Ordering::Relaxed),
                        Some(Ok(429 | 503)) => counts.busy.fetch_add(1, Ordering::Relaxed),
                        Some(Ok(_)) => counts.other.fetch_add(1, Ordering::Relaxed),
                        _ => {
                            client = None;
                            counts.other.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect()
}

fn main() -> Result<()> {
    let a = args()?;
    let (server, password) = start(&a)?;
    let pid = server.child.id();
    let (rss0, _) = rss_kib(pid)?;
    println!("server pid {pid}: resident {} MB at start", rss0 / 1024);

    // 1. Memory after many attempts with random names from many addresses.
    let counts = Arc::new(Counts::default());
    let sources = (0..a.flooders)
        .map(|i| Ipv4Addr::new(127, 0, 0, 10 + i))
        .collect();
    let t0 = Instant::now();
    for t in flood(
        server.port,
        sources,
        a.attempts,
        Arc::new(AtomicBool::new(false)),
        counts.clone(),
    ) {
        let _ = t.join();
    }
    let (rss, hwm) = rss_kib(pid)?;
    println!(
        "{} sign-in attempts (random names, {} sources) in {:.1} s: {} refused (401), {} busy \
         (429/503), {} other",
        a.attempts,
        a.flooders,
        t0.elapsed().as_secs_f64(),
        counts.unauthorized.load(Ordering::Relaxed),
        counts.busy.load(Ordering::Relaxed),
        counts.other.load(Ordering::Relaxed)
    );
    println!(
        "resident memory after them: {} MB (peak {} MB)",
        rss / 1024,
        hwm / 1024
    );

    // 2. The legitimate user under a flood of six connections from one address.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let flooders = flood(
        server.port,
        vec![Ipv4Addr::new(127, 0, 0, 2); 6],
        u64::MAX,
        stop.clone(),
        counts.clone(),
    );
    thread::sleep(Duration::from_secs(1));
    let (mut ok, mut tried, mut refused) = (0, 0, 0);
    let end = Instant::now() + Duration::from_secs(a.seconds);
    while Instant::now() < end {
        tried += 1;
        let status = Client::connect(Ipv4Addr::LOCALHOST, server.port)
            .and_then(|mut c| c.sign_in("legit", &password));
        match status {
            Ok(303) => ok += 1,
            Ok(429 | 503) => refused += 1,
            Ok(s) => println!("  legitimate sign-in answered {s}"),
            Err(e) => println!("  legitimate sign-in failed: {e}"),
        }
        thread::sleep(Duration::from_millis(600));
    }
    stop.store(true, Ordering::Relaxed);
    for t in flooders {
        let _ = t.join();
    }
    println!(
        "legitimate user under a 6-connection flood: {ok} of {tried} sign-ins succeeded \
         ({refused} refused as busy); the flood sent {}",
        counts.sent.load(Ordering::Relaxed)
    );
    Ok(())
}
