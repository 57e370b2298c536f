//! One keep-alive HTTPS connection to the server: requests, and answers read to the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;

const MAX_BODY: usize = 1 << 20;

/// Where the server is: scheme-less authority for TLS and the socket address.
#[derive(Clone)]
pub(crate) struct Origin {
    /// `https://host:port`, to tell our URLs from foreign ones.
    prefix: String,
    host: String,
    addr: std::net::SocketAddr,
    tls: Arc<ClientConfig>,
}

impl Origin {
    pub(crate) fn new(directory: &str, ca_bundle: &str) -> Result<(Origin, String)> {
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
    pub(crate) fn path<'a>(&self, url: &'a str) -> Result<&'a str> {
        url.strip_prefix(&self.prefix)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| anyhow!("the server named a URL on another origin: {url}"))
    }
}

/// One HTTP answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).context("the answer is not JSON")
    }

    /// The problem type, for an error answer.
    pub(crate) fn problem(&self) -> String {
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
pub(crate) struct Conn {
    pub(crate) origin: Origin,
    pub(crate) stream: Option<BufReader<StreamOwned<ClientConnection, TcpStream>>>,
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

    pub(crate) fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer> {
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
