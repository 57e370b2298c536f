//! http-01 (RFC 8555 8.3): `GET /.well-known/acme-challenge/{token}` from the identifier,
//! following redirects as section 8.3 allows.
//!
//! Invariant: a redirect is followed only to `http` on the configured `http01_port` or to
//! `https` on the configured `tls_alpn01_port` (the stand-ins for ports 80 and 443; with the
//! defaults they are exactly 80 and 443), at most [`MAX_REDIRECTS`] times, never to another
//! scheme and never to a URL carrying credentials. An https target's certificate is not
//! validated (RFC 8555 10.2: the key authorization proves control, not the certificate);
//! its handshake signature still is.

use std::net::{IpAddr, SocketAddr};

use ca_core::acme::identifier::Identifier;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::validate::Validator;

/// The most redirects followed for one validation.
pub const MAX_REDIRECTS: usize = 10;
/// The most of one response read.
const MAX_RESPONSE: usize = 16 * 1024;

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    host: Host,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    fn header(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

/// A response: its status, `Location` if any, and its body (de-chunked).
#[derive(Debug)]
struct Response {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

/// Fetches the challenge from `id` and returns the body of the final 200 response.
pub async fn fetch(v: &Validator, id: &Identifier, token: &str) -> Result<String, String> {
    let mut target = Target {
        https: false,
        host: match id {
            Identifier::Dns(n) => Host::Name(n.clone()),
            Identifier::Ip(ip) => Host::Ip(*ip),
        },
        port: v.http01_port,
        path: format!("/.well-known/acme-challenge/{token}"),
    };
    for _ in 0..=MAX_REDIRECTS {
        let response = get(v, &target).await?;
        match (response.status, response.location) {
            (200, _) => {
                return String::from_utf8(response.body)
                    .map_err(|_| "http-01: the body is not text".into());
            }
            (301 | 302 | 303 | 307 | 308, Some(location)) => {
                target = redirect(v, &target, &location)?;
            }
            (status @ (301 | 302 | 303 | 307 | 308), None) => {
                return Err(format!("http-01: redirect {status} without a Location"));
            }
            (status, _) => return Err(format!("http-01: the server answered {status}")),
        }
    }
    Err(format!(
        "http-01: more than {MAX_REDIRECTS} redirects; the last was to {}",
        describe(&target)
    ))
}

fn describe(t: &Target) -> String {
    let scheme = if t.https { "https" } else { "http" };
    format!("{scheme}://{}:{}{}", t.host.header(), t.port, t.path)
}

/// Where `location` (absolute, or relative to `from`) points, if it may be followed.
fn redirect(v: &Validator, from: &Target, location: &str) -> Result<Target, String> {
    let location = location.trim();
    let location = location.split('#').next().unwrap_or_default();
    if location.starts_with('/') && !location.starts_with("//") {
        return Ok(Target {
            path: location.to_owned(),
            ..from.clone()
        });
    }
    let (scheme, rest) = match location.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None if location.starts_with("//") => (
            if from.https { "https" } else { "http" }.to_owned(),
            &location[2..],
        ),
        None if !location.contains(':') && !location.is_empty() => {
            // Relative to the current path's directory.
            let dir = from.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            return Ok(Target {
                path: format!("{dir}/{location}"),
                ..from.clone()
            });
        }
        None => {
            return Err(format!(
                "http-01: redirect to {location:?}: not an http(s) URL"
            ));
        }
    };
    let https = match scheme.as_str() {
        "http" => false,
        "https" => true,
        _ => {
            return Err(format!(
                "http-01: redirect to a {scheme}: URL; only http and https are followed"
            ));
        }
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err("http-01: redirect to a URL with credentials".into());
    }
    let (host, port) = split_authority(authority)?;
    let (allowed, default) = if https {
        (v.tls_alpn01_port, 443)
    } else {
        (v.http01_port, 80)
    };
    let port = port.unwrap_or(default);
    if port != allowed {
        return Err(format!(
            "http-01: redirect to {scheme} port {port}; only {scheme} on port {allowed} is followed"
        ));
    }
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    Ok(Target {
        https,
        host,
        port,
        path,
    })
}

fn split_authority(authority: &str) -> Result<(Host, Option<u16>), String> {
    let bad = || format!("http-01: redirect to a bad host {authority:?}");
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (Host::Ip(ip), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => {
                let ok = !host.is_empty()
                    && host.len() <= 253
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
                if !ok {
                    return Err(bad());
                }
                Host::Name(host.trim_end_matches('.').to_ascii_lowercase())
            }
        };
        (host, port)
    };
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| bad()))
        .transpose()?;
    Ok((host, port))
}

async fn connect(v: &Validator, host: &Host, port: u16) -> Result<TcpStream, String> {
    let addresses = match host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => {
            let found = super::dns::addresses(v.resolver, name).await?;
            if found.is_empty() {
                return Err(format!("{name} has no A or AAAA record"));
            }
            found
        }
    };
    let mut last = String::new();
    for ip in addresses {
        let addr = SocketAddr::new(ip, port);
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

async fn get(v: &Validator, t: &Target) -> Result<Response, String> {
    let stream = connect(v, &t.host, t.port).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: keyhold-acme\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        t.path,
        t.host.header()
    );
    let raw = if t.https {
        let sni = match &t.host {
            Host::Name(n) => rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|_| format!("http-01: {n:?} is not a server name"))?,
            Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
        };
        let tls = super::tls_alpn::connect_unverified(stream, sni, b"http/1.1")
            .await
            .map_err(|e| format!("http-01: https to {}: {e}", describe(t)))?;
        exchange(tls, &request).await?
    } else {
        exchange(stream, &request).await?
    };
    parse(&raw)
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
) -> Result<Vec<u8>, String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("http-01: cannot send the request: {e}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify: what was read is the response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(format!("http-01: cannot read the response: {e}")),
        };
        if n == 0 {
            return Ok(response);
        }
        response.extend_from_slice(&chunk[..n]);
        if response.len() > MAX_RESPONSE {
            return Err(format!(
                "http-01: the response exceeds {MAX_RESPONSE} bytes"
            ));
        }
    }
}

/// A response's status, Location and body (Content-Length, chunked, or until close).
fn parse(response: &[u8]) -> Result<Response, String> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("http-01: the response has no header end")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let raw = &response[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("http-01: bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut location = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if name == "location" {
            location = Some(value.trim().to_owned());
        }
    }
    let body = if status == 200 && chunked {
        dechunk(raw)?
    } else {
        raw.to_vec()
    };
    Ok(Response {
        status,
        location,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("http-01: bad chunked body")?;
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "http-01: bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let data = raw
            .get(eol + 2..eol + 2 + size)
            .ok_or("http-01: truncated chunk")?;
        out.extend_from_slice(data);
        raw = raw
            .get(eol + 4 + size..)
            .ok_or("http-01: truncated chunk")?;
    }
}

#[cfg(test)]
mod tests;
