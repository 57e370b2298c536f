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

#[test]
fn serve_on_a_fresh_directory_issues_over_http_and_openssl_verifies_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    let server = Server::start(work, &dir);
    let out = server.logs();
    assert!(out.contains("DEMO ONLY"), "{out}");
    assert!(
        out.contains(&format!(
            "OCSP, CRL, CA certificates: http://127.0.0.1:{}/",
            server.port
        )),
        "{out}"
    );
    assert!(out.contains("SHA-256"), "{out}");
    // The demo CA's base URL is this server, so its AIA and CDP URLs point here.
    let config = fs::read_to_string(dir.join("keyhold.toml")).unwrap();
    assert!(
        config.contains(&format!("http://127.0.0.1:{}", server.port)),
        "{config}"
    );

    let token = create_token(&server.dir, "ci-deployer", "requester");
    assert!(!server.logs().contains(&token));

    let issued = issue_and_verify(&server, work, &token);

    let serial = issued["serial"].as_str().unwrap();
    let one = server.get(&format!("/api/v1/certificates/{serial}"), Some(&token));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["requester"], "ci-deployer");
    assert_eq!(server.get("/readyz", None).status, 200);

    // Listing shows the token, revoking it locks it out at once.
    let r = run(keyhold(&server.dir).args(["tokens", "list"]));
    assert!(
        r.ok && r.stdout.contains("ci-deployer") && !r.stdout.contains("kh_"),
        "{}",
        r.stdout
    );
    let r = run(keyhold(&server.dir).args(["tokens", "revoke", "ci-deployer"]));
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(server.get("/api/v1/certificates", Some(&token)).status, 401);
    let r = run(keyhold(&server.dir)
        .args(["audit", "list", "--limit", "50"])
        .env("KEYHOLD_PASSPHRASE", "unused"));
    for action in ["token.created", "token.revoked", "certificate.issued"] {
        assert!(r.stdout.contains(action), "{action}: {}", r.stdout);
    }

    let logs = server.terminate();
    assert!(logs.contains("stopped"), "{logs}");
    assert!(!logs.contains(&token), "a token was logged");
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

/// A tiny deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Between 1 and `max` random bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[test]
fn thousands_of_malformed_requests_get_4xx_and_the_server_stays_healthy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(tmp.path(), &dir);
    let token = create_token(&dir, "fuzz", "admin");
    let mut rng = Rng(0x6b65_7968_6f6c_6421);
    let paths = [
        "/api/v1/certificates",
        "/api/v1/certificates/0a1b",
        "/api/v1/certificates/zz",
        "/api/v1/certificates/0a1b/revoke",
        "/api/v1/certificates/zz/revoke",
        "/api/v1/sign",
        "/api/v1/requests/1",
        "/api/v1/requests/-1",
        "/ca/root.pem",
        "/ca/issuing-ca/chain.pem",
        "/ca/..%2f..%2fetc%2fpasswd",
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
        "/metrics",
        "/%ff%fe",
        "/api/v1/certificates?limit=99999999999999999999",
        "/crl/nope.crl",
        "/crl/issuing-ca",
    ];
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    let types = [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
        "application/json; charset=utf-8",
    ];
    let bodies = [
        "{",
        "[]",
        "null",
        r#"{"profile":"tls-server"}"#,
        r#"{"profile":"tls-server","csr":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}"#,
        r#"{"profile":"tls-server","csr":"x","extra":1}"#,
        r#"{"profile":"sub-ca","csr":"x"}"#,
        r#"{"profile":null,"csr":[1,2,3]}"#,
    ];
    let n = 2500;
    let mut answered = 0;
    for i in 0..n {
        let method = rng.pick(&methods);
        let mut path = rng.pick(&paths).to_owned();
        // Every request carries at least one mistake so that no answer may be 2xx.
        let mistake = rng.below(6);
        match mistake {
            0 => path.push_str(&format!("?zz{}=1", rng.next())),
            1 => path = format!("/{}", hex_str(&rng.bytes(40))),
            _ => {}
        }
        let auth = match rng.below(4) {
            0 => String::new(),
            1 => format!("Authorization: Bearer kh_{}\r\n", hex_str(&rng.bytes(32))),
            2 => "Authorization: Basic Zm9vOmJhcg==\r\n".to_owned(),
            _ => format!("Authorization: Bearer {token}\r\n"),
        };
        let valid_auth = auth.contains(&token);
        let body: Vec<u8> = match rng.below(4) {
            0 => rng.bytes(2048),
            1 => rng.pick(&bodies).as_bytes().to_vec(),
            2 => vec![b'{'; 70 * 1024],
            _ => Vec::new(),
        };
        let ctype = rng.pick(&types);
        // Public routes ignore query strings (cache busters), so a real one would rightly
        // answer 200: misspell it instead.
        let public = [
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/openapi.json",
            "/ca/root",
            "/ca/issuing",
        ]
        .iter()
        .any(|p| path.starts_with(p));
        if public {
            let at = path.find('?').unwrap_or(path.len());
            path.insert(at, 'x');
        }
        if mistake > 1 && valid_auth && method == "GET" && path.starts_with("/api/v1/certificates?")
        {
            path.push('x');
        }
        if mistake > 1 && valid_auth && method == "GET" && path == "/api/v1/certificates" {
            path.push_str("?cursor=nope");
        }
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n");
        if !ctype.is_empty() {
            req.push_str(&format!("Content-Type: {ctype}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut raw = req.into_bytes();
        raw.extend_from_slice(&body);
        if i % 50 == 0 {
            raw = rng.bytes(300); // not HTTP at all
        }
        if let Some(r) = http(server.port, &raw) {
            answered += 1;
            assert!(
                (400..500).contains(&r.status),
                "request {i} ({method} {path}, auth {valid_auth}, {ctype:?}) got {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    assert!(answered > n * 9 / 10, "only {answered} of {n} answered");
    // OCSP answers malformed requests with an OCSP malformedRequest (RFC 6960 2.3), in a
    // 200: garbage there must get that or a 4xx, never a 5xx.
    for i in 0..500 {
        let body = rng.bytes(600);
        let raw = if i % 2 == 0 {
            let mut raw = format!(
                "POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(&body);
            raw
        } else {
            format!(
                "GET /ocsp/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                hex_str(&body[..body.len().min(100)])
            )
            .into_bytes()
        };
        let r = http(server.port, &raw).expect("an answer");
        assert!(
            r.status == 200
                && r.head
                    .to_ascii_lowercase()
                    .contains("application/ocsp-response")
                || (400..500).contains(&r.status),
            "ocsp request {i}: {}",
            r.status
        );
    }
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.get("/readyz", None).status, 200);
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

fn hex_str(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn serve_refuses_to_start_listing_every_problem() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = crate::cli::init_embedded(&dir);
    assert!(r.ok, "{}", r.stderr);
    // Two profiles naming issuers that do not exist: both are reported.
    let policies = tmp.path().join("policies");
    fs::create_dir(&policies).unwrap();
    for name in ["tls-server", "tls-client"] {
        let text = fs::read_to_string(shipped_policies().join(format!("{name}.toml")))
            .unwrap()
            .replace(
                "issuer = \"issuing-ca\"",
                &format!("issuer = \"missing-{name}\""),
            );
        fs::write(policies.join(format!("{name}.toml")), text).unwrap();
    }
    let port = free_port().to_string();
    let r = crate::cli::with_pass(
        &dir,
        &[
            "--policies",
            policies.to_str().unwrap(),
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
    );
    crate::cli::fails_with(&r, "missing-tls-server");
    assert!(r.stderr.contains("missing-tls-client"), "{}", r.stderr);

    // A passphrase file others can read is refused (outside demo mode).
    let pass = tmp.path().join("pass");
    fs::write(&pass, crate::cli::PASS).unwrap();
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o644)).unwrap();
    let r = run(keyhold(&dir)
        .arg("--passphrase-file")
        .arg(&pass)
        .arg("--policies")
        .arg(shipped_policies())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")]));
    crate::cli::fails_with(&r, "readable by group or others");
}

#[test]
fn tokens_create_refuses_bad_roles_names_profiles_and_reused_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = crate::cli::init_embedded(&dir);
    assert!(r.ok, "{}", r.stderr);
    let tokens = |args: &[&str]| {
        run(keyhold(&dir)
            .arg("--policies")
            .arg(shipped_policies())
            .arg("tokens")
            .args(args))
    };
    crate::cli::fails_with(
        &tokens(&["create", "--name", "x", "--role", "root"]),
        "unknown role",
    );
    crate::cli::fails_with(
        &tokens(&["create", "--name", "a b", "--role", "admin"]),
        "invalid token name",
    );
    crate::cli::fails_with(
        &tokens(&[
            "create",
            "--name",
            "x",
            "--role",
            "requester",
            "--profiles",
            "nope",
        ]),
        "unknown profile",
    );
    crate::cli::fails_with(
        &tokens(&[
            "create",
            "--name",
            "x",
            "--role",
            "admin",
            "--expires",
            "soon",
        ]),
        "not a duration",
    );
    let r = tokens(&[
        "create",
        "--name",
        "x",
        "--role",
        "requester",
        "--profiles",
        "tls-server,tls-client",
        "--expires",
        "90d",
    ]);
    assert!(r.ok, "{}", r.stderr);
    crate::cli::fails_with(
        &tokens(&["create", "--name", "x", "--role", "admin"]),
        "exists already",
    );
    crate::cli::fails_with(&tokens(&["revoke", "nobody"]), "not found");
    let list = tokens(&["list"]);
    assert!(
        list.stdout.contains("tls-server,tls-client") && list.stdout.contains("active"),
        "{}",
        list.stdout
    );
}

#[test]
fn serve_issues_with_keys_in_a_pkcs11_token() {
    let Some((hsm_token, _)) = crate::cli::token() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    let r = crate::cli::init_pkcs11(&dir, hsm_token, "serve-", crate::cli::USER_PIN);
    assert!(r.ok, "{}", r.stderr);
    let server = Server::start_with(work, &dir, &[("KEYHOLD_PKCS11_PIN", crate::cli::USER_PIN)]);
    assert!(!server.logs().contains("DEMO ONLY"));
    let token = create_token(&dir, "ci", "requester");
    issue_and_verify(&server, work, &token);
    let ready = server.get("/readyz", None);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["key_store"], "ok");
    let logs = server.terminate();
    assert!(!logs.contains(crate::cli::USER_PIN), "the PIN was logged");
}

#[test]
fn a_revoked_certificate_shows_in_ocsp_over_post_and_get_and_on_the_served_crl() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    let server = Server::start(work, &dir);
    let token = create_token(&dir, "ci", "requester");
    let issued = issue_and_verify(&server, work, &token);
    let serial = issued["serial"].as_str().unwrap();
    fs::write(
        work.join("issuing.pem"),
        server.get("/ca/issuing-ca.pem", None).body,
    )
    .unwrap();
    // Every CA certificate, to verify the responder's certificate and the CRL.
    let mut all = fs::read(work.join("chain.pem")).unwrap();
    all.extend(fs::read(work.join("root.pem")).unwrap());
    fs::write(work.join("all.pem"), all).unwrap();

    let ocsp_post = || {
        openssl_in(
            work,
            &[
                "ocsp",
                "-issuer",
                "issuing.pem",
                "-cert",
                "leaf.pem",
                "-CAfile",
                "all.pem",
                "-url",
                &format!("http://127.0.0.1:{}/ocsp", server.port),
            ],
        )
    };
    let before = ocsp_post();
    assert!(before.contains("leaf.pem: good"), "{before}");

    let r = run(keyhold(&dir).args(["revoke", serial, "--reason", "keyCompromise"]));
    assert!(r.ok, "{}", r.stderr);
    let after = ocsp_post();
    assert!(
        after.contains("leaf.pem: revoked") && after.contains("keyCompromise"),
        "{after}"
    );

    // GET: the same request, base64 in the path.
    let path = ocsp_get_path(work);
    // Without a nonce, the answer comes from those signed ahead of time: the pre-signer
    // picks up a revocation made by another process (the CLI) within its poll interval.
    let mut r = server.get(&path, None);
    for _ in 0..100 {
        fs::write(work.join("resp.der"), &r.body).unwrap();
        let text = openssl_in(
            work,
            &["ocsp", "-respin", "resp.der", "-noverify", "-resp_text"],
        );
        if text.contains("Cert Status: revoked") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        r = server.get(&path, None);
    }
    assert_eq!(r.status, 200);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/ocsp-response")
    );
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("cache-control: max-age="),
        "{}",
        r.head
    );
    fs::write(work.join("resp.der"), &r.body).unwrap();
    let text = openssl_in(
        work,
        &[
            "ocsp",
            "-respin",
            "resp.der",
            "-CAfile",
            "all.pem",
            "-resp_text",
        ],
    );
    assert!(text.contains("Cert Status: revoked"), "{text}");

    // The CRL at the certificate's CDP URL lists it, and openssl refuses the leaf with it.
    let r = server.get("/crl/issuing-ca.crl", None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/pkix-crl")
    );
    fs::write(work.join("crl.der"), &r.body).unwrap();
    openssl_in(
        work,
        &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
    );
    let crl = openssl_in(
        work,
        &[
            "crl", "-in", "crl.pem", "-noout", "-text", "-CAfile", "all.pem",
        ],
    );
    assert!(
        crl.to_ascii_lowercase()
            .contains(&serial.to_ascii_lowercase()),
        "{crl}"
    );
    let out = Command::new("openssl")
        .args([
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "-CRLfile",
            "crl.pem",
            "leaf.pem",
        ])
        .current_dir(work)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revoked")
            || String::from_utf8_lossy(&out.stderr).contains("revoked")
    );
    assert_eq!(server.get("/crl/nope.crl", None).status, 404);
    // A second fetch within the refresh interval is the same CRL (no new number burnt).
    assert_eq!(server.get("/crl/issuing-ca.crl", None).body, r.body);
    // Caches may keep it until its nextUpdate; its ETag names it, and asking with that ETag
    // gets 304 and no body.
    let head = r.head.to_ascii_lowercase();
    assert!(
        head.contains("expires: ") && head.contains("last-modified: "),
        "{head}"
    );
    let etag = r
        .head
        .lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .unwrap_or_else(|| panic!("no ETag: {}", r.head))
        .trim()
        .to_owned();
    let req = format!(
        "GET /crl/issuing-ca.crl HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    );
    let again = http(server.port, req.as_bytes()).unwrap();
    assert_eq!(again.status, 304, "{}", again.head);
    assert!(again.body.is_empty());
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

#[test]
fn with_the_key_store_gone_ocsp_and_the_crl_are_still_served_and_readyz_says_so() {
    if crate::cli::softhsm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    // A token directory of this test's own: taking it away disturbs no other test.
    let tokens = work.join("tokens");
    fs::create_dir(&tokens).unwrap();
    let conf = work.join("softhsm2.conf");
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_owned();
    let env = [
        ("SOFTHSM2_CONF", conf.as_str()),
        ("KEYHOLD_PKCS11_PIN", crate::cli::USER_PIN),
        ("KEYHOLD_PKCS11_SO_PIN", crate::cli::SO_PIN),
    ];
    let r = run(keyhold(&dir)
        .args(["hsm", "init-token", "--label", "going-away"])
        .envs(env));
    assert!(r.ok, "{}", r.stderr);
    let r = run(keyhold(&dir)
        .args([
            "init",
            "--keystore",
            "pkcs11",
            "--pkcs11-token",
            "going-away",
        ])
        .envs(env));
    assert!(r.ok, "{}", r.stderr);
    let server = Server::start_with(work, &dir, &env);
    let token = create_token(&dir, "ci", "requester");
    let officer = create_token(&dir, "officer", "officer");
    let issued = issue_and_verify(&server, work, &token);
    let serial = issued["serial"].as_str().unwrap();
    fs::write(
        work.join("issuing.pem"),
        server.get("/ca/issuing-ca.pem", None).body,
    )
    .unwrap();
    let path = ocsp_get_path(work);
    // The first question may be answered by a signature made on demand, which the
    // pre-signer replaces when it reaches the new certificate (ECDSA signatures differ):
    // take as the baseline an answer that stays the same for over a second.
    let mut good = server.get(&path, None);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(1200));
        let again = server.get(&path, None);
        let settled = again.body == good.body;
        good = again;
        if settled {
            break;
        }
    }
    assert_eq!(good.status, 200);
    assert!(ocsp_text(work, &good.body).contains("Cert Status: good"));
    let crl = server.get("/crl/issuing-ca.crl", None);
    assert_eq!(crl.status, 200);
    assert_eq!(server.get("/readyz", None).status, 200);

    // The token's files vanish from under the running server.
    fs::rename(&tokens, work.join("tokens.away")).unwrap();
    fs::create_dir(&tokens).unwrap();

    // Readiness says the key store is down and what still works (its probe result is
    // reused for 2 s, so wait for a fresh one).
    let mut ready = server.get("/readyz", None);
    for _ in 0..100 {
        if ready.status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        ready = server.get("/readyz", None);
    }
    assert_eq!(
        ready.status,
        503,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    let body = ready.json();
    assert_eq!(body["key_store"], "unavailable");
    assert_eq!(body["database"], "ok");
    assert!(
        body["degraded"].as_array().is_some_and(|d| d.len() == 3),
        "{body}"
    );
    // Issue 18: the one HSM member is listed as out, with its last error.
    assert_eq!(body["hsm_members"][0]["name"], "hsm", "{body}");
    assert_eq!(body["hsm_members"][0]["state"], "out", "{body}");
    assert!(body["hsm_members"][0]["last_error"].is_string(), "{body}");

    // OCSP answers from what was signed before; the CRL is still served.
    let r = server.get(&path, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, good.body, "the same pre-signed answer");
    let r = server.get("/crl/issuing-ca.crl", None);
    assert_eq!((r.status, &r.body), (200, &crl.body));

    // A revocation is recorded, but cannot be signed: OCSP stops saying `good` for that
    // certificate (tryLater), and the last CRL is served rather than an error.
    let r = server.post_json(
        &format!("/api/v1/certificates/{serial}/revoke"),
        &officer,
        r#"{"reason": "keyCompromise"}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = server.get(&path, None);
    assert_eq!(r.status, 200);
    let text = ocsp_text(work, &r.body);
    assert!(
        !text.contains("Cert Status: good") && text.to_ascii_lowercase().contains("trylater"),
        "{text}"
    );
    let r = server.get("/crl/issuing-ca.crl", None);
    assert_eq!((r.status, &r.body), (200, &crl.body));
    // Issuance fails with a clear server-side error, not a hang or a crash.
    let csr = fs::read_to_string(work.join("web.csr")).unwrap();
    let body = serde_json::json!({"profile": "tls-server", "csr": csr}).to_string();
    let r = server.post_json("/api/v1/certificates", &token, &body);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.head.to_ascii_lowercase().contains("retry-after: 2"),
        "{}",
        r.head
    );
    assert_eq!(server.get("/healthz", None).status, 200);

    // Issue 18: the token comes back; issuance recovers by itself within seconds (the
    // member's module is re-initialised in the background), without a restart.
    fs::remove_dir(&tokens).unwrap();
    fs::rename(work.join("tokens.away"), &tokens).unwrap();
    let back = std::time::Instant::now();
    let mut r = server.post_json("/api/v1/certificates", &token, &body);
    while r.status != 201 && r.status != 200 && back.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        r = server.post_json("/api/v1/certificates", &token, &body);
    }
    assert!(
        r.status == 201 || r.status == 200,
        "issuance did not recover: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    println!(
        "issuance recovered {:?} after the token came back",
        back.elapsed()
    );
    std::thread::sleep(Duration::from_millis(2100));
    let ready = server.get("/readyz", None);
    let body = ready.json();
    assert_eq!(ready.status, 200, "{body}");
    assert_eq!(body["hsm_members"][0]["state"], "in", "{body}");
    let metrics = String::from_utf8_lossy(&server.get("/metrics", None).body).into_owned();
    assert!(
        metrics.contains("keyhold_hsm_member_up{member=\"hsm\"} 1"),
        "{metrics}"
    );
    let logs = server.terminate();
    assert_eq!(
        logs.matches("hsm member taken out of service").count(),
        1,
        "out is logged once, not per failed call:\n{logs}"
    );
    assert!(logs.contains("hsm member back in service"), "{logs}");
    assert!(!logs.contains(crate::cli::USER_PIN), "the PIN was logged");
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

/// The value of the response header `name` (case-insensitive) in curl's `-i` output.
fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[test]
fn https_listener_serves_ui_and_api_with_a_self_issued_certificate_openssl_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let dir = work.join("data");
    let server = Server::start_opts(work, &dir, &[], false, true);
    let out = server.logs();
    let https = format!("https://127.0.0.1:{}", server.tls_port);
    assert!(out.contains(&format!("UI and API: {https}/ui")), "{out}");
    assert!(
        out.contains(&format!(
            "OCSP, CRL, CA certificates: http://127.0.0.1:{}/",
            server.port
        )),
        "{out}"
    );
    assert!(!out.contains("without TLS"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("HTTPS server certificate: serial "))
        .unwrap_or_else(|| panic!("no server certificate line:\n{out}"));
    let serial = line.split(' ').nth(4).unwrap().to_owned();
    let fingerprint = line.rsplit_once("SHA-256 ").unwrap().1;
    let fingerprint = fingerprint.split(';').next().unwrap().to_owned();

    // The root comes over plain HTTP (no chicken-and-egg), then HTTPS verifies with it.
    let root = server.get("/ca/root.pem", None);
    assert_eq!(root.status, 200);
    fs::write(work.join("root.pem"), &root.body).unwrap();
    let status = |url: &str| {
        curl(
            &[
                "--cacert",
                "root.pem",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                url,
            ],
            work,
        )
    };
    assert_eq!(status(&format!("{https}/healthz")), "200");
    assert_eq!(
        status(&format!("https://localhost:{}/healthz", server.tls_port)),
        "200"
    );
    assert_eq!(status(&format!("{https}/ca/root.pem")), "200");
    let openapi = curl(
        &[
            "--cacert",
            "root.pem",
            "-f",
            &format!("{https}/api/v1/openapi.json"),
        ],
        work,
    );
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    assert!(openapi["paths"].is_object(), "{openapi}");

    // openssl checks the served chain (leaf + issuing CA) against the root alone.
    let sclient = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.tls_port),
            "-servername",
            "localhost",
            "-CAfile",
            "root.pem",
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-showcerts",
        ])
        .current_dir(work)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sclient.stdout);
    assert!(
        sclient.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&sclient.stderr)
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert_eq!(
        text.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "{text}"
    );
    let leaf_end = text.find("-----END CERTIFICATE-----").unwrap();
    let leaf_start = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    fs::write(
        work.join("leaf.pem"),
        format!("{}-----END CERTIFICATE-----\n", &text[leaf_start..leaf_end]),
    )
    .unwrap();
    let fp = openssl_in(
        work,
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    assert!(
        fp.trim()
            .eq_ignore_ascii_case(&format!("sha256 Fingerprint={fingerprint}")),
        "{fp} vs {fingerprint}"
    );
    let ext = openssl_in(
        work,
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
        ],
    );
    assert!(ext.contains("DNS:localhost"), "{ext}");
    assert!(ext.contains("IP Address:127.0.0.1"), "{ext}");
    assert!(ext.contains("TLS Web Server Authentication"), "{ext}");
    // TLS 1.1 and older are refused.
    let old = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.tls_port),
            "-tls1_1",
        ])
        .current_dir(work)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!old.status.success());

    // The certificate is recorded like any other, with the server as its requester.
    let token = create_token(&server.dir, "auditor", "auditor");
    let auth = format!("Authorization: Bearer {token}");
    let one = curl(
        &[
            "--cacert",
            "root.pem",
            "-f",
            "-H",
            &auth,
            &format!("{https}/api/v1/certificates/{serial}"),
        ],
        work,
    );
    let one: Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["requester"], "keyhold-server", "{one}");
    assert_eq!(one["profile"], "tls-server", "{one}");

    // The plain listener serves OCSP, CRLs and CA certificates, and refuses the UI and API.
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.get("/crl/issuing-ca.crl", None).status, 200);
    let ocsp = http(
        server.port,
        b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\nContent-Length: 2\r\nConnection: close\r\n\r\n\x30\x00",
    )
    .unwrap();
    assert!(![404, 421].contains(&ocsp.status), "{}", ocsp.head);
    let api = server.get("/api/v1/certificates", Some(&token));
    assert_eq!(api.status, 421, "{}", api.head);
    let detail = api.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains(&format!("{https}/api/v1/certificates")),
        "{detail}"
    );
    let ui = server.get("/ui/login?x=1", None);
    assert_eq!(ui.status, 308, "{}", ui.head);
    assert!(
        ui.head.contains(&format!("{https}/ui/login?x=1")),
        "{}",
        ui.head
    );
    let post = server.post_json("/ui/login", "x", "{}");
    assert_eq!(post.status, 421, "{}", post.head);
    assert!(!server.logs().contains(&token));

    // Over HTTPS both the sign-in form's cookie and the session cookie are Secure.
    let form = curl(
        &["--cacert", "root.pem", "-i", &format!("{https}/ui/login")],
        work,
    );
    let login = header_values(&form, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("kh_login="))
        .unwrap_or_else(|| panic!("{form}"))
        .to_owned();
    assert!(login.contains("; Secure"), "{login}");
    let csrf = login["kh_login=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let password = out
        .split_once("with the one-time password ")
        .unwrap()
        .1
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let signed_in = curl(
        &[
            "--cacert",
            "root.pem",
            "-i",
            "-b",
            &format!("kh_login={csrf}"),
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "--data-urlencode",
            "name=admin",
            "--data-urlencode",
            &format!("password={password}"),
            &format!("{https}/ui/login"),
        ],
        work,
    );
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let session = header_values(&signed_in, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("kh_session="))
        .unwrap_or_else(|| panic!("{signed_in}"))
        .to_owned();
    assert!(session.contains("; Secure"), "{session}");
    server.terminate();
}

#[test]
fn insecure_http_ui_serves_the_ui_on_loopback_without_secure_cookies() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let server = Server::start_opts(work, &work.join("data"), &[], true, true);
    let out = server.logs();
    assert!(
        out.contains(&format!(
            "UI and API without TLS (--insecure-http-ui): http://127.0.0.1:{}/ui",
            server.port
        )),
        "{out}"
    );
    let form = server.get("/ui/login", None);
    assert_eq!(form.status, 200, "{}", form.head);
    let cookie = header_values(&form.head, "set-cookie").join("\n");
    assert!(cookie.contains("kh_login="), "{}", form.head);
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert_eq!(server.get("/api/v1/certificates", None).status, 401);
}

#[test]
fn without_https_or_insecure_http_ui_the_ui_and_api_are_not_served_and_a_warning_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let server = Server::start_opts(work, &work.join("data"), &[], false, false);
    let out = server.logs();
    assert!(out.contains("WARNING: HTTPS is off"), "{out}");
    assert!(!out.contains("UI and API:"), "{out}");
    assert!(!out.contains("HTTPS server certificate"), "{out}");
    assert_eq!(server.get("/ca/root.pem", None).status, 200);
    for path in ["/ui/login", "/api/v1/certificates", "/api", "/ui"] {
        let r = server.get(path, None);
        assert_eq!(r.status, 421, "{path}: {}", r.head);
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("--tls-listen ADDR"), "{detail}");
    }
    // Only those prefixes: other unknown paths are still 404.
    assert_eq!(server.get("/uix", None).status, 404);
}

#[test]
fn serve_refuses_insecure_http_ui_off_loopback_and_bad_tls_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let port = free_port().to_string();
    let serve = |args: &[&str]| {
        run(keyhold(&dir)
            .env("KEYHOLD_LOG", "off")
            .arg("--policies")
            .arg(shipped_policies())
            .arg("serve")
            .args(args))
    };
    // Refused before anything is made.
    let r = serve(&["--listen", &format!("0.0.0.0:{port}"), "--insecure-http-ui"]);
    crate::cli::fails_with(&r, "needs a loopback --listen address");
    assert!(!dir.exists());
    let r = serve(&["--tls-listen", "localhost"]);
    crate::cli::fails_with(&r, "nor `none`");
    let same = format!("127.0.0.1:{port}");
    let r = serve(&["--listen", &same, "--tls-listen", &same]);
    crate::cli::fails_with(&r, "give them different ports");
    assert!(!dir.exists());
    // A profile that does not make server certificates cannot serve HTTPS.
    let r = serve(&[
        "--listen",
        &same,
        "--tls-listen",
        &format!("127.0.0.1:{}", free_port()),
        "--tls-profile",
        "tls-client",
    ]);
    crate::cli::fails_with(&r, "does not issue TLS server certificates");
}

#[test]
fn the_server_makes_backups_on_its_schedule_and_keeps_the_newest() {
    // Issue 19: `[backup] every` makes `keyhold serve` back the CA up by itself, keeping the
    // newest `keep`, and says so on /metrics and /readyz.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = run(keyhold(&dir).args(["init", "--demo"]));
    assert!(r.ok, "{}", r.stderr);
    let identity = tmp.path().join("backup-identity.txt");
    let r = run(keyhold(&dir).args(["backup", "keygen", "--out", identity.to_str().unwrap()]));
    assert!(r.ok, "{}", r.stderr);
    let recipient = r.stdout.trim().to_owned();
    let config = dir.join("keyhold.toml");
    let text = fs::read_to_string(&config).unwrap();
    assert!(!text.contains("[backup]"), "{text}");
    fs::write(
        &config,
        format!("{text}\n[backup]\nrecipients = [\"{recipient}\"]\nevery = \"1s\"\nkeep = 2\n"),
    )
    .unwrap();
    let server = Server::start(tmp.path(), &dir);
    let backups = dir.join("backups");
    let made = |s: &Server| {
        String::from_utf8_lossy(
            &http(
                s.port,
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .unwrap()
            .body,
        )
        .lines()
        .find_map(|l| l.strip_prefix("keyhold_backup_last_success_timestamp_seconds "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while made(&server) == 0 {
        assert!(Instant::now() < deadline, "no backup:\n{}", server.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few more intervals: at least four backups made, two kept.
    std::thread::sleep(Duration::from_secs(4));
    let mut files: Vec<PathBuf> = fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}\n{}", server.logs());
    let ready = http(
        server.port,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let body: Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(body["backup"], "ok", "{body}");
    // What the schedule wrote is a whole, signed, readable backup.
    let r = run(keyhold(&dir).args([
        "backup",
        "verify",
        files[1].to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
    ]));
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    drop(server);
}
