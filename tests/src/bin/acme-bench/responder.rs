//! The http-01 responder: serves the key authorizations the workers publish.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

/// Serves http-01 key authorizations from `map` on 127.0.0.1:`port`, one thread per
/// connection, one answer per connection.
pub(crate) fn start_responder(port: u16, map: Arc<Mutex<HashMap<String, String>>>) -> Result<()> {
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
