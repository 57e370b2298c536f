//! The load generator's HTTP/1.1 client: a few dozen lines of std, one keep-alive
//! connection per thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};

/// Largest response accepted (a certificate and its chain are a few KiB).
pub(crate) const MAX_BODY: usize = 1 << 20;

/// One HTTP answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// The server will close the connection after this answer.
    pub(crate) close: bool,
}

/// A keep-alive HTTP/1.1 connection that sends one prepared request again and again.
pub(crate) struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr) -> Client {
        Client { addr, conn: None }
    }

    pub(crate) fn send(&mut self, request: &[u8]) -> Result<Answer> {
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

pub(crate) fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> Result<Answer> {
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
    // HTTP/1.0 closes after the answer unless it says keep-alive (openssl ocsp -port).
    let mut close = line.starts_with("HTTP/1.0");
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
                "connection" => close = !value.eq_ignore_ascii_case("keep-alive"),
                _ => {}
            }
        }
    }
    let body = if chunked {
        read_chunked(conn)?
    } else if length.is_none() && close {
        let mut body = Vec::new();
        conn.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
        ensure!(body.len() <= MAX_BODY, "an answer over {MAX_BODY} bytes");
        body
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

pub(crate) fn read_chunked(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>> {
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
