//! A small DNS client (RFC 1035 over UDP) for validation: A and AAAA lookups of the names
//! http-01 and tls-alpn-01 connect to, and TXT lookups for dns-01, asked of one configured
//! recursive resolver (`[acme] dns_resolver`, else the first nameserver of /etc/resolv.conf).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// A record.
pub const A: u16 = 1;
/// TXT record.
pub const TXT: u16 = 16;
/// AAAA record.
pub const AAAA: u16 = 28;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The resolver to ask: `configured` (`host:port` or an address without port, 53), else the
/// first `nameserver` of /etc/resolv.conf.
///
/// Fails naming what could not be read.
pub fn resolver(configured: Option<&str>) -> Result<SocketAddr, String> {
    let text = match configured {
        Some(t) => t.to_owned(),
        None => std::fs::read_to_string("/etc/resolv.conf")
            .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("nameserver")
                    .map(|s| s.trim().to_owned())
            })
            .ok_or("/etc/resolv.conf names no nameserver")?,
    };
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("dns resolver {text:?} is not an address or address:port"))
}

fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} is not a DNS name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

/// Skips a (possibly compressed) name at `at`; returns the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)? as usize;
        if len == 0 {
            return Some(at + 1);
        }
        if len & 0xC0 == 0xC0 {
            return Some(at + 2);
        }
        at += 1 + len;
    }
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// The rdata of every answer of type `qtype` in `msg`, a response to query `id`.
fn parse_answers(msg: &[u8], id: u16, qtype: u16) -> Result<Vec<Vec<u8>>, String> {
    let bad = || "malformed DNS response".to_owned();
    if u16_at(msg, 0) != Some(id) {
        return Err("DNS response to another query".into());
    }
    let flags = u16_at(msg, 2).ok_or_else(bad)?;
    match flags & 0x000F {
        0 | 3 => {} // NOERROR, NXDOMAIN (no answers)
        rcode => return Err(format!("DNS server answered rcode {rcode}")),
    }
    let qd = u16_at(msg, 4).ok_or_else(bad)?;
    let an = u16_at(msg, 6).ok_or_else(bad)?;
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at).ok_or_else(bad)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at).ok_or_else(bad)?;
        let rtype = u16_at(msg, at).ok_or_else(bad)?;
        let rdlen = u16_at(msg, at + 8).ok_or_else(bad)? as usize;
        let start = at + 10;
        let rdata = msg.get(start..start + rdlen).ok_or_else(bad)?;
        if rtype == qtype {
            out.push(rdata.to_vec());
        }
        at = start + rdlen;
    }
    Ok(out)
}

/// Asks `server` for `name`'s records of `qtype`; returns their rdata.
///
/// Fails on a timeout, a server failure or a malformed answer.
pub async fn query(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<Vec<u8>>, String> {
    let mut id = [0u8; 2];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| "no randomness")?;
    let id = u16::from_be_bytes(id);
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("cannot open a DNS socket: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("cannot reach DNS server {server}: {e}"))?;
    socket
        .send(&encode_query(id, name, qtype)?)
        .await
        .map_err(|e| format!("cannot ask DNS server {server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf))
            .await
            .map_err(|_| format!("DNS server {server} did not answer"))?
            .map_err(|e| format!("DNS server {server}: {e}"))?;
        // A stray datagram with another id is ignored; a forged one must also guess it.
        if u16_at(&buf[..n], 0) == Some(id) {
            return parse_answers(&buf[..n], id, qtype);
        }
    }
}

/// The addresses of `name` (A, then AAAA).
pub async fn addresses(server: SocketAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for rdata in query(server, name, A).await? {
        if let Ok(b) = <[u8; 4]>::try_from(rdata.as_slice()) {
            out.push(IpAddr::from(b));
        }
    }
    if out.is_empty() {
        for rdata in query(server, name, AAAA).await? {
            if let Ok(b) = <[u8; 16]>::try_from(rdata.as_slice()) {
                out.push(IpAddr::from(b));
            }
        }
    }
    Ok(out)
}

/// The TXT strings of `name`, each record's character strings joined.
pub async fn txt(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for rdata in query(server, name, TXT).await? {
        let mut text = Vec::new();
        let mut at = 0;
        while let Some(&len) = rdata.get(at) {
            let part = rdata
                .get(at + 1..at + 1 + len as usize)
                .ok_or("malformed TXT record")?;
            text.extend_from_slice(part);
            at += 1 + len as usize;
        }
        out.push(String::from_utf8_lossy(&text).into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_encodes_labels_and_answers_parse() -> Result<(), String> {
        let q = encode_query(0x1234, "a.example.", A)?;
        assert_eq!(&q[12..23], b"\x01a\x07example\x00");
        // The query echoed with one A answer (a compressed name pointing at the question).
        let mut r = q.clone();
        r[2] = 0x81;
        r[7] = 1;
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
        assert_eq!(parse_answers(&r, 0x1234, A)?, vec![vec![127, 0, 0, 1]]);
        assert!(parse_answers(&r, 0x4321, A).is_err());
        assert!(encode_query(1, "a..b", A).is_err());
        Ok(())
    }
}
