//! `keyhold serve` end to end: the real binary on a free loopback port, driven over TCP with
//! a minimal HTTP/1.1 client, its output checked with openssl.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{keyhold, run, shipped_policies};
use crate::support::{free_port, openssl_in};

mod listeners;
mod malformed;
mod revocation;
mod startup;

pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    pub(crate) tls_port: u16,
    dir: PathBuf,
    log: PathBuf,
    out: PathBuf,
}

impl Server {
    /// Starts `keyhold serve` on `dir` (initialising a demo CA if it holds none) and waits
    /// until `/healthz` answers.
    fn start(work: &Path, dir: &Path) -> Server {
        Server::start_with(work, dir, &[])
    }

    /// [`Server::start`] with extra environment variables (a PIN). The UI and API are served
    /// on the plain listener too (`--insecure-http-ui`), beside HTTPS on a port of its own.
    pub(crate) fn start_with(work: &Path, dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_opts(work, dir, env, true, true)
    }

    /// [`Server::start_with`], with the UI and API on plain HTTP only if `insecure_ui`, and
    /// HTTPS only if `tls`.
    pub(crate) fn start_opts(
        work: &Path,
        dir: &Path,
        env: &[(&str, &str)],
        insecure_ui: bool,
        tls: bool,
    ) -> Server {
        let port = free_port();
        let tls_port = if tls { free_port() } else { 0 };
        let (log, out) = (work.join("server.log"), work.join("server.out"));
        let mut cmd = keyhold(dir);
        cmd.arg("--policies").arg(shipped_policies()).args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-listen",
            &if tls {
                format!("127.0.0.1:{tls_port}")
            } else {
                "none".to_owned()
            },
            "--workers",
            "2",
        ]);
        if insecure_ui {
            cmd.arg("--insecure-http-ui");
        }
        let child = cmd
            .env("KEYHOLD_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            port,
            tls_port,
            dir: dir.to_owned(),
            log,
            out,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("serve exited with {status}:\n{}", server.logs());
            }
            if http(
                port,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .is_some_and(|r| r.status == 200)
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start:\n{}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn logs(&self) -> String {
        format!(
            "{}{}",
            fs::read_to_string(&self.out).unwrap_or_default(),
            fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    pub(crate) fn get(&self, path: &str, token: Option<&str>) -> Response {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        http(self.port, req.as_bytes()).expect("no response")
    }

    pub(crate) fn post_json(&self, path: &str, token: &str, body: &str) -> Response {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        http(self.port, req.as_bytes()).expect("no response")
    }

    /// SIGTERM; the server must finish and exit 0.
    pub(crate) fn terminate(mut self) -> String {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}:\n{}", self.logs());
                return self.logs();
            }
            assert!(Instant::now() < deadline, "serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one raw request and reads the answer to the end (`Connection: close`). `None` if
/// the server closed the connection without a status line.
pub(crate) fn http(port: u16, request: &[u8]) -> Option<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    // The server may answer (413, 401) and close before reading everything we send.
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Response {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    })
}

pub(crate) fn create_token(dir: &Path, name: &str, role: &str) -> String {
    let r = run(keyhold(dir).args(["tokens", "create", "--name", name, "--role", role]));
    assert!(r.ok, "{}", r.stderr);
    let token = r.stdout.trim_end_matches('\n');
    assert!(
        token.starts_with("kh_") && !token.contains('\n'),
        "{:?}",
        r.stdout
    );
    token.to_owned()
}

/// Issues a tls-server certificate over HTTP for an openssl CSR and checks it with
/// `openssl verify` against the chain and root fetched from `/ca/...`, and that its AIA
/// caIssuers URL is served as DER. Returns the 201 body.
pub(crate) fn issue_and_verify(server: &Server, work: &Path, token: &str) -> Value {
    openssl_in(
        work,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "web.key",
            "-subj",
            "/CN=web.internal",
            "-addext",
            "subjectAltName=DNS:web.internal",
            "-out",
            "web.csr",
        ],
    );
    let csr = fs::read_to_string(work.join("web.csr")).unwrap();
    let body = serde_json::json!({"profile": "tls-server", "csr": csr}).to_string();
    let r = server.post_json("/api/v1/certificates", token, &body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let issued = r.json();
    fs::write(
        work.join("leaf.pem"),
        issued["certificate"].as_str().unwrap(),
    )
    .unwrap();

    let chain = server.get("/ca/issuing-ca/chain.pem", None);
    assert_eq!(chain.status, 200);
    assert!(
        chain
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/x-pem-file")
    );
    fs::write(work.join("chain.pem"), &chain.body).unwrap();
    let root = server.get("/ca/root.pem", None);
    fs::write(work.join("root.pem"), &root.body).unwrap();
    openssl_in(
        work,
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "leaf.pem",
        ],
    );

    // The AIA caIssuers URL in the certificate is served, as DER.
    let text = openssl_in(work, &["x509", "-noout", "-text", "-in", "leaf.pem"]);
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("CA Issuers - URI:"))
        .expect("an AIA caIssuers URL")
        .to_owned();
    // The host is the CA's base URL (this server's address for a CA that `serve` made).
    let path = &url[url.find("/ca/").unwrap_or_else(|| panic!("{url}"))..];
    let der = server.get(path, None);
    assert_eq!(der.status, 200);
    assert!(
        der.head
            .to_ascii_lowercase()
            .contains("content-type: application/pkix-cert")
    );
    fs::write(work.join("issuing.der"), &der.body).unwrap();
    openssl_in(
        work,
        &["x509", "-inform", "DER", "-in", "issuing.der", "-noout"],
    );

    issued
}

/// `GET /ocsp/...` for a no-nonce request about `leaf.pem` of `issuing.pem` in `work`, as
/// openssl makes it: base64, percent-encoded.
pub(crate) fn ocsp_get_path(work: &Path) -> String {
    openssl_in(
        work,
        &[
            "ocsp",
            "-issuer",
            "issuing.pem",
            "-cert",
            "leaf.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    let b64 = openssl_in(work, &["base64", "-A", "-in", "req.der"]);
    format!(
        "/ocsp/{}",
        b64.trim()
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    )
}

/// The OCSP answer in `resp.der`, as `openssl ocsp -resp_text` prints it (not verified).
pub(crate) fn ocsp_text(work: &Path, der: &[u8]) -> String {
    fs::write(work.join("resp.der"), der).unwrap();
    let out = Command::new("openssl")
        .args(["ocsp", "-respin", "resp.der", "-noverify", "-resp_text"])
        .current_dir(work)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs curl (installed by .ci/setup) with `args`; returns its standard output.
pub(crate) fn curl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("curl must be installed (.ci/setup installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
