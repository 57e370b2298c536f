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
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use base64ct::{Base64UrlUnpadded, Encoding};
use ca_e2e::report::{load_average, median, quantile_ms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{Value, json};

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
/// An issuance that takes longer than this is abandoned as an error.
const ISSUANCE_DEADLINE: Duration = Duration::from_secs(30);
const MAX_BODY: usize = 1 << 20;

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

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// Where the server is: scheme-less authority for TLS and the socket address.
#[derive(Clone)]
struct Origin {
    /// `https://host:port`, to tell our URLs from foreign ones.
    prefix: String,
    host: String,
    addr: std::net::SocketAddr,
    tls: Arc<ClientConfig>,
}

impl Origin {
    fn new(directory: &str, ca_bundle: &str) -> Result<(Origin, String)> {
        let rest = directory
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("--directory {directory:?}: an https:// URL"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = match authority.rsplit_once(':') {
            Some((h, _)) => h,
            None => authority,
        };
        let port_authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:443")
        };
        let addr = port_authority
            .to_socket_addrs()
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .ok_or_else(|| anyhow!("{authority} has no address"))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_bundle)
            .with_context(|| format!("reading {ca_bundle}"))?
        {
            roots
                .add(cert.with_context(|| format!("a certificate in {ca_bundle}"))?)
                .with_context(|| format!("a root in {ca_bundle}"))?;
        }
        let tls = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let origin = Origin {
            prefix: format!("https://{authority}"),
            host: host.trim_matches(['[', ']']).to_owned(),
            addr,
            tls: Arc::new(tls),
        };
        Ok((
            origin,
            if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        ))
    }

    /// The path of `url`, which must be on this origin.
    fn path<'a>(&self, url: &'a str) -> Result<&'a str> {
        url.strip_prefix(&self.prefix)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| anyhow!("the server named a URL on another origin: {url}"))
    }
}

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).context("the answer is not JSON")
    }

    /// The problem type, for an error answer.
    fn problem(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
            .map(|t| {
                t.trim_start_matches("urn:ietf:params:acme:error:")
                    .to_owned()
            })
            .unwrap_or_else(|| "no problem document".into())
    }
}

/// A keep-alive HTTPS connection, opened again when the server closes it.
struct Conn {
    origin: Origin,
    stream: Option<BufReader<StreamOwned<ClientConnection, TcpStream>>>,
}

impl Conn {
    fn open(&mut self) -> Result<&mut BufReader<StreamOwned<ClientConnection, TcpStream>>> {
        if self.stream.is_none() {
            let name = ServerName::try_from(self.origin.host.clone())
                .context("the directory's host is not a valid TLS name")?;
            let tls =
                ClientConnection::new(self.origin.tls.clone(), name).context("starting TLS")?;
            let tcp = TcpStream::connect(self.origin.addr)
                .with_context(|| format!("connecting to {}", self.origin.addr))?;
            tcp.set_nodelay(true).context("TCP_NODELAY")?;
            // A server that stops answering fails the issuance instead of the whole run.
            tcp.set_read_timeout(Some(Duration::from_secs(10)))
                .context("read timeout")?;
            self.stream = Some(BufReader::new(StreamOwned::new(tls, tcp)));
        }
        self.stream.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer> {
        // A kept-alive connection the server closed meanwhile fails at once: retry once on a
        // fresh one.
        let reused = self.stream.is_some();
        match self.send_once(method, path, body) {
            Err(_) if reused => {
                self.stream = None;
                self.send_once(method, path, body)
            }
            other => other,
        }
    }

    fn send_once(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer> {
        let host = self.origin.prefix.trim_start_matches("https://").to_owned();
        let result = (|| {
            let stream = self.open()?;
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: keyhold-acme-bench\r\n"
            );
            if let Some(b) = body {
                head.push_str(&format!(
                    "Content-Type: application/jose+json\r\nContent-Length: {}\r\n",
                    b.len()
                ));
            }
            head.push_str("\r\n");
            let w = stream.get_mut();
            w.write_all(head.as_bytes())?;
            if let Some(b) = body {
                w.write_all(b)?;
            }
            w.flush()?;
            read_answer(stream, method == "HEAD")
        })();
        match result {
            Ok((answer, close)) => {
                if close {
                    self.stream = None;
                }
                Ok(answer)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// Reads one HTTP/1.1 answer; the flag says the server will close the connection.
fn read_answer(r: &mut impl BufRead, head_only: bool) -> Result<(Answer, bool)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    ensure!(!line.is_empty(), "the server closed the connection");
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
    let mut close = line.starts_with("HTTP/1.0");
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    if get("connection").is_some_and(|v| v.contains("close")) {
        close = true;
    }
    let mut body = Vec::new();
    if head_only || status == 204 || status == 304 {
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| anyhow!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    r.read_line(&mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            ensure!(body.len() + size <= MAX_BODY, "the answer is too large");
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = get("content-length") {
        let n: usize = n.parse().map_err(|_| anyhow!("bad Content-Length"))?;
        ensure!(n <= MAX_BODY, "the answer is too large");
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.take(MAX_BODY as u64).read_to_end(&mut body)?;
        close = true;
    }
    Ok((
        Answer {
            status,
            headers,
            body,
        },
        close,
    ))
}

/// An ES256 account key and the account's URL once created.
struct Account {
    key: EcdsaKeyPair,
    jwk: Value,
    thumbprint: String,
    kid: String,
}

impl Account {
    fn generate() -> Result<Account> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow!("cannot generate a P-256 key"))?;
        let point = key.public_key().as_ref();
        ensure!(point.len() == 65 && point[0] == 4, "unexpected P-256 point");
        let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = b64(digest(&SHA256, canonical.as_bytes()).as_ref());
        Ok(Account {
            key,
            jwk: json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}),
            thumbprint,
            kid: String::new(),
        })
    }
}

/// The directory's URLs a worker uses.
#[derive(Clone)]
struct Directory {
    new_nonce: String,
    new_account: String,
    new_order: String,
}

/// Why an issuance failed: the step and what went wrong there (counted by this).
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(format!("io: {e}"))
    }
}

/// A worker's client: its connection, its account and the last nonce it was given.
struct Client {
    conn: Conn,
    dir: Directory,
    account: Account,
    nonce: Option<String>,
    rng: SystemRandom,
    poll: Duration,
    challenges: Arc<Mutex<HashMap<String, String>>>,
    domain: String,
    /// Requests sent (HEAD newNonce and POSTs), for requests per issuance.
    requests: u64,
}

impl Client {
    fn new_nonce(&mut self) -> Result<String> {
        let path = self.conn.origin.path(&self.dir.new_nonce)?.to_owned();
        self.requests += 1;
        let a = self.conn.send("HEAD", &path, None)?;
        a.header("replay-nonce")
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("newNonce gave no Replay-Nonce (status {})", a.status))
    }

    /// A JWS POST to `url`: `payload` None is POST-as-GET. Retries on badNonce.
    fn post(&mut self, step: &str, url: &str, payload: Option<&Value>) -> Result<Answer, Failure> {
        let path = self.conn.origin.path(url)?.to_owned();
        let payload = payload
            .map(|p| b64(p.to_string().as_bytes()))
            .unwrap_or_default();
        let mut last = String::new();
        for _ in 0..3 {
            let nonce = match self.nonce.take() {
                Some(n) => n,
                None => self.new_nonce()?,
            };
            let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
            if self.account.kid.is_empty() {
                protected["jwk"] = self.account.jwk.clone();
            } else {
                protected["kid"] = Value::String(self.account.kid.clone());
            }
            let protected = b64(protected.to_string().as_bytes());
            let signing_input = format!("{protected}.{payload}");
            let sig = self
                .account
                .key
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|_| Failure("client: cannot sign".into()))?;
            let body = json!({"protected": protected, "payload": payload,
                "signature": b64(sig.as_ref())})
            .to_string();
            self.requests += 1;
            let a = self.conn.send("POST", &path, Some(body.as_bytes()))?;
            self.nonce = a.header("replay-nonce").map(str::to_owned);
            if a.status >= 400 {
                let kind = a.problem();
                if kind == "badNonce" {
                    last = String::from_utf8_lossy(&a.body).chars().take(200).collect();
                    continue;
                }
                return Err(Failure(format!("{step}: {} {kind}", a.status)));
            }
            return Ok(a);
        }
        Err(Failure(format!("{step}: badNonce three times ({last})")))
    }

    fn create_account(&mut self) -> Result<()> {
        let url = self.dir.new_account.clone();
        let a = self
            .post(
                "newAccount",
                &url,
                Some(&json!({"termsOfServiceAgreed": true})),
            )
            .map_err(|f| anyhow!("{}", f.0))?;
        self.account.kid = a
            .header("location")
            .ok_or_else(|| anyhow!("newAccount gave no Location"))?
            .to_owned();
        Ok(())
    }

    /// POST-as-GET `url` until its status leaves `pending`/`processing`; the object.
    fn poll(&mut self, step: &str, url: &str, start: Instant) -> Result<Value, Failure> {
        loop {
            let v = self.post(step, url, None)?.json()?;
            match v.get("status").and_then(Value::as_str) {
                Some("valid") => return Ok(v),
                Some("pending" | "processing" | "ready") => {}
                Some(other) => return Err(Failure(format!("{step}: status {other}"))),
                None => return Err(Failure(format!("{step}: no status"))),
            }
            if start.elapsed() > ISSUANCE_DEADLINE {
                return Err(Failure(format!("{step}: still not valid after 30 s")));
            }
            thread::sleep(self.poll);
        }
    }

    /// One full issuance; the PEM chain.
    fn issue(&mut self) -> Result<Vec<u8>, Failure> {
        let start = Instant::now();
        let mut k = [0u8; 8];
        self.rng
            .fill(&mut k)
            .map_err(|_| Failure("client: no randomness".into()))?;
        let name = format!("n{}.{}", u64::from_le_bytes(k), self.domain);
        let new_order = self.dir.new_order.clone();
        let a = self.post(
            "newOrder",
            &new_order,
            Some(&json!({"identifiers": [{"type": "dns", "value": name}]})),
        )?;
        let order_url = a
            .header("location")
            .ok_or_else(|| Failure("newOrder: no Location".into()))?
            .to_owned();
        let order = a.json()?;
        let text = |v: &Value, k: &str, step: &str| -> Result<String, Failure> {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| Failure(format!("{step}: no {k}")))
        };
        let finalize = text(&order, "finalize", "newOrder")?;
        let authz_url = order
            .get("authorizations")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .ok_or_else(|| Failure("newOrder: no authorization".into()))?
            .to_owned();
        let authz = self.post("authz", &authz_url, None)?.json()?;
        let challenge = authz
            .get("challenges")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("http-01"))
            })
            .cloned()
            .ok_or_else(|| Failure("authz: no http-01 challenge".into()))?;
        let token = text(&challenge, "token", "authz")?;
        let chall_url = text(&challenge, "url", "authz")?;
        let key_authz = format!("{token}.{}", self.account.thumbprint);
        self.lock_challenges().insert(token.clone(), key_authz);
        let validated = self
            .post("challenge", &chall_url, Some(&json!({})))
            .and_then(|_| self.poll("authz poll", &authz_url, start));
        self.lock_challenges().remove(&token);
        validated?;

        let csr = csr_for(&name, &self.rng)?;
        let a = self.post("finalize", &finalize, Some(&json!({"csr": b64(&csr)})))?;
        let mut order = a.json()?;
        if order.get("status").and_then(Value::as_str) != Some("valid") {
            order = self.poll("order poll", &order_url, start)?;
        }
        let cert_url = text(&order, "certificate", "order")?;
        let a = self.post("certificate", &cert_url, None)?;
        if !a.body.starts_with(b"-----BEGIN CERTIFICATE-----") {
            return Err(Failure("certificate: not a PEM chain".into()));
        }
        Ok(a.body)
    }

    fn lock_challenges(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.challenges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// A PKCS#10 CSR (RFC 2986) for a fresh P-256 key: CN and one dNSName, ECDSA-SHA256.
fn csr_for(name: &str, rng: &SystemRandom) -> Result<Vec<u8>, Failure> {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
        .map_err(|_| Failure("client: cannot make a CSR key".into()))?;
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const ECDSA_SHA256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    const CN: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    const EXTENSION_REQUEST: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e,
    ];
    const SAN: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x11];
    let subject = tlv(
        0x30,
        &tlv(
            0x31,
            &tlv(0x30, &[CN, &tlv(0x0c, name.as_bytes())].concat()),
        ),
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(key.public_key().as_ref());
    let spki = tlv(
        0x30,
        &[tlv(0x30, &[EC_PUBLIC_KEY, P256].concat()), tlv(0x03, &bits)].concat(),
    );
    let san = tlv(0x04, &tlv(0x30, &tlv(0x82, name.as_bytes())));
    let extensions = tlv(0x30, &tlv(0x30, &[SAN, &san].concat()));
    let attribute = tlv(0x30, &[EXTENSION_REQUEST, &tlv(0x31, &extensions)].concat());
    let info = tlv(
        0x30,
        &[
            &[0x02, 0x01, 0x00][..],
            &subject,
            &spki,
            &tlv(0xa0, &attribute),
        ]
        .concat(),
    );
    let sig = key
        .sign(rng, &info)
        .map_err(|_| Failure("client: cannot sign the CSR".into()))?;
    let mut sig_bits = vec![0u8];
    sig_bits.extend_from_slice(sig.as_ref());
    Ok(tlv(
        0x30,
        &[info, tlv(0x30, ECDSA_SHA256), tlv(0x03, &sig_bits)].concat(),
    ))
}

/// Serves http-01 key authorizations from `map` on 127.0.0.1:`port`, one thread per
/// connection, one answer per connection.
fn start_responder(port: u16, map: Arc<Mutex<HashMap<String, String>>>) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("binding the http-01 responder on 127.0.0.1:{port}"))?;
    thread::Builder::new()
        .name("http01".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let map = map.clone();
                let _ = thread::Builder::new().spawn(move || answer_http01(stream, &map));
            }
        })
        .context("starting the http-01 responder")?;
    Ok(())
}

fn answer_http01(stream: TcpStream, map: &Mutex<HashMap<String, String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
        line.clear();
    }
    let token = request
        .split(' ')
        .nth(1)
        .and_then(|p| p.strip_prefix("/.well-known/acme-challenge/"));
    let found = token.and_then(|t| {
        map.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(t)
            .cloned()
    });
    let answer = match found {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    let mut w = &stream;
    let _ = w.write_all(answer.as_bytes());
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
