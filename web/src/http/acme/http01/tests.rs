//! http-01 against a tiny redirecting responder on loopback (and `openssl s_server` for the
//! https hop), and the redirect rules on their own.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

fn validator(http: u16, https: u16) -> Validator {
    Validator {
        http01_port: http,
        tls_alpn01_port: https,
        resolver: SocketAddr::from(([127, 0, 0, 1], 1)),
    }
}

fn start(path: &str) -> Target {
    Target {
        https: false,
        host: Host::Name("a.internal".into()),
        port: 8080,
        path: path.into(),
    }
}

#[test]
fn redirects_are_followed_only_to_http_and_https_on_the_configured_ports() {
    let v = validator(8080, 8443);
    let from = start("/.well-known/acme-challenge/t");
    let to = |l: &str| redirect(&v, &from, l);
    assert_eq!(to("/x?y").unwrap().path, "/x?y");
    assert_eq!(
        to("other").unwrap().path,
        "/.well-known/acme-challenge/other"
    );
    let t = to("https://B.internal:8443/p#frag").unwrap();
    assert_eq!(
        (t.https, t.host, t.port, t.path.as_str()),
        (true, Host::Name("b.internal".into()), 8443, "/p")
    );
    let t = to("http://[::1]:8080").unwrap();
    assert_eq!(
        (t.host, t.path.as_str()),
        (Host::Ip("::1".parse().unwrap()), "/")
    );
    let t = to("//c.internal:8080/q").unwrap();
    assert_eq!((t.https, t.host), (false, Host::Name("c.internal".into())));
    for (bad, why) in [
        ("ftp://a.internal/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://a.internal:8080/", "only http and https"),
        ("http://a.internal:9999/x", "only http on port 8080"),
        ("http://a.internal/x", "port 80; only http on port 8080"),
        ("https://a.internal/x", "port 443; only https on port 8443"),
        ("https://a.internal:8080/x", "only https on port 8443"),
        ("http://user:pw@a.internal:8080/", "credentials"),
        ("http://a b:8080/", "bad host"),
        ("javascript:alert(1)", "not an http(s) URL"),
    ] {
        let e = to(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
    // With the defaults, ports 80 and 443 are implied.
    let v = validator(80, 443);
    assert_eq!(
        redirect(&v, &from, "https://a.internal/x").unwrap().port,
        443
    );
    assert_eq!(redirect(&v, &from, "http://a.internal/x").unwrap().port, 80);
}

#[test]
fn responses_are_read_plain_chunked_and_as_redirects() {
    let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc").unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, b"abc".as_slice()));
    let r = parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.body, b"abc");
    let r = parse(b"HTTP/1.1 302 Found\r\nlocation:  /next \r\n\r\n").unwrap();
    assert_eq!((r.status, r.location.as_deref()), (302, Some("/next")));
    assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
}

/// A responder on `listener`: each path maps to a fixed answer; counts requests.
fn responder(
    listener: TcpListener,
    routes: Vec<(String, String)>,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            let answer = routes
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into());
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    hits
}

fn moved(code: u16, to: &str) -> String {
    format!("HTTP/1.1 {code} Moved\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
}

/// `openssl s_server -WWW` on a free port, serving `dir` with a fresh self-signed
/// certificate (which http-01 must not validate).
struct Https {
    child: Child,
    port: u16,
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https_server(dir: &std::path::Path) -> Https {
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=redirect-target", "-days", "1"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed (it is in .ci/setup)");
    assert!(ok.success());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .args([
            "s_server", "-quiet", "-WWW", "-cert", "cert.pem", "-key", "key.pem",
        ])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Https { child, port }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_redirecting_responder_is_followed_to_http_and_unvalidated_https_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("final"), "tok.thumbprint\n").unwrap();
    let https = https_server(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let w = "/.well-known/acme-challenge";
    let routes = vec![
        (format!("{w}/tok"), moved(302, "/hop1")),
        (
            "/hop1".into(),
            moved(301, &format!("http://127.0.0.1:{port}/hop2")),
        ),
        (
            "/hop2".into(),
            moved(307, &format!("https://127.0.0.1:{}/final", https.port)),
        ),
        (format!("{w}/plain"), moved(308, "/ok")),
        (
            "/ok".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nplain.thumbprint".into(),
        ),
        (format!("{w}/loop"), moved(302, &format!("{w}/loop"))),
        (format!("{w}/ftp"), moved(302, "ftp://127.0.0.1/x")),
        (format!("{w}/port"), moved(302, "http://127.0.0.1:1/x")),
        (
            format!("{w}/nowhere"),
            "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n".into(),
        ),
    ];
    let hits = responder(listener, routes);
    let v = validator(port, https.port);
    let ip = Identifier::Ip("127.0.0.1".parse().unwrap());
    let body = run(fetch(&v, &ip, "tok")).unwrap();
    assert_eq!(
        body.trim_end(),
        "tok.thumbprint",
        "three hops, the last over https"
    );
    assert_eq!(run(fetch(&v, &ip, "plain")).unwrap(), "plain.thumbprint");
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let e = run(fetch(&v, &ip, "loop")).unwrap_err();
    assert!(e.contains("more than 10 redirects"), "{e}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst) - before,
        MAX_REDIRECTS + 1,
        "the first request and ten redirects, then it stops"
    );
    let e = run(fetch(&v, &ip, "ftp")).unwrap_err();
    assert!(e.contains("only http and https"), "{e}");
    let e = run(fetch(&v, &ip, "port")).unwrap_err();
    assert!(e.contains(&format!("only http on port {port}")), "{e}");
    let e = run(fetch(&v, &ip, "nowhere")).unwrap_err();
    assert!(e.contains("without a Location"), "{e}");
    let e = run(fetch(&v, &ip, "missing")).unwrap_err();
    assert!(e.contains("404"), "{e}");
}
