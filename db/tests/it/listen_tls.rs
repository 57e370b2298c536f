//! Notices over TLS (issue 20): a PostgreSQL of its own with `ssl = on`, a server certificate
//! made with openssl, and password logins accepted only over TLS. The node's pool (libpq)
//! and its listening connection (the `postgres` crate over rustls) take the same URL with
//! `sslmode=verify-full&sslrootcert=...`; a wrong root stops the listener, saying why; a
//! client certificate logs in where pg_hba.conf asks for one.
//!
//! Needs PostgreSQL's server programs and openssl: without them the test is skipped with a
//! message, unless `KEYHOLD_REQUIRE_ALL_BACKENDS=1` (CI), where it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ca_core::revocation::crl::SignedCrl;
use ca_core::revocation::publish::shared::{Notice, Publication};
use db::{Db, Listened};

use crate::support::*;

const PASSWORD: &str = "listen-over-tls-pw";

/// A throwaway PostgreSQL listening on 127.0.0.1 with TLS, stopped on drop.
struct TlsServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsServer {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self, host: &str, tls: &str) -> String {
        format!(
            "postgres://keyhold:{PASSWORD}@{host}:{}/postgres?{tls}",
            self.port
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let data = self.path("data");
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args([
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

fn as_root() -> bool {
    run(Command::new("id").arg("-u")).is_ok_and(|out| out.trim() == "0")
}

/// `program`, run as the `postgres` user when root (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(c: &mut Command) -> Result<String, String> {
    let out: Output = c.output().map_err(|e| format!("{c:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{c:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A CA (`NAME.crt`, `NAME.key`) made with openssl.
fn ca(dir: &Path, name: &str) -> Result<(), String> {
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &format!("{name}.key"),
        "-out",
        &format!("{name}.crt"),
        "-days",
        "2",
        "-subj",
        &format!("/CN=Keyhold test {name}"),
    ]))
    .map(|_| ())
}

/// A key (`NAME.key`) and certificate (`NAME.crt`) for `subject` with the extensions `ext`,
/// signed by the CA `ca`.
fn leaf(dir: &Path, name: &str, subject: &str, ext: &str) -> Result<(), String> {
    let file = |suffix: &str| format!("{name}.{suffix}");
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &file("key"),
        "-out",
        &file("csr"),
        "-subj",
        subject,
    ]))?;
    std::fs::write(dir.join(file("ext")), ext).map_err(|e| e.to_string())?;
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        &file("csr"),
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &file("ext"),
        "-out",
        &file("crt"),
    ]))
    .map(|_| ())
}

fn start() -> Result<TlsServer, String> {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no PostgreSQL server in /usr/lib/postgresql: {e}"))?
        .filter_map(|d| d.ok().map(|d| d.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .max()
        .ok_or("no /usr/lib/postgresql/*/bin/initdb")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let server = TlsServer { bin, dir, port };
    let d = server.dir.path();
    ca(d, "ca")?;
    ca(d, "wrong")?;
    leaf(
        d,
        "server",
        "/CN=localhost",
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )?;
    leaf(
        d,
        "client",
        "/CN=certuser",
        "extendedKeyUsage = clientAuth\n",
    )?;
    std::fs::write(d.join("pw"), PASSWORD).map_err(|e| e.to_string())?;
    if as_root() {
        run(Command::new("chown").args(["-R", "postgres:"]).arg(d))?;
    }
    let data = server.path("data");
    run(as_postgres(&server.bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "keyhold", "-E", "UTF8", "--no-instructions"])
        .arg(format!("--pwfile={}", server.path("pw").display())))?;
    // Unix socket: trusted (the test's own set-up); TCP: password over TLS only.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all certuser 127.0.0.1/32 cert\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n\
         hostnossl all all 127.0.0.1/32 reject\n",
    )
    .map_err(|e| e.to_string())?;
    let options = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='{}' \
         -c ssl=on -c ssl_cert_file='{}' -c ssl_key_file='{}' -c ssl_ca_file='{}'",
        d.display(),
        server.path("server.crt").display(),
        server.path("server.key").display(),
        server.path("ca.crt").display()
    );
    run(as_postgres(&server.bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(server.path("server.log"))
        .args(["-w", "-o", &options, "start"]))
    .map_err(|e| {
        let log = std::fs::read_to_string(server.path("server.log")).unwrap_or_default();
        format!("{e}\n{log}")
    })?;
    // A user who logs in with a client certificate (`cert` in pg_hba.conf).
    run(as_postgres(Path::new("psql"))
        .args(["-q", "-h"])
        .arg(d)
        .args(["-p", &port.to_string(), "-U", "keyhold", "-d", "postgres"])
        .args(["-c", "CREATE ROLE certuser LOGIN"]))?;
    Ok(server)
}

/// Waits up to 10 s for an event matching `want`.
fn wait_for(got: &Mutex<Vec<Listened>>, want: impl Fn(&Listened) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if got.lock().unwrap().iter().any(&want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn listening(
    url: &str,
) -> (
    Arc<Mutex<Vec<Listened>>>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = db::listen_to(
        url,
        stop.clone(),
        Box::new(move |l| sink.lock().unwrap().push(l)),
    )
    .unwrap();
    (got, stop, thread)
}

#[test]
fn notices_arrive_over_tls_verified_to_sslrootcert() {
    let server = match start() {
        Ok(server) => server,
        Err(e) => {
            assert!(
                !std::env::var("KEYHOLD_REQUIRE_ALL_BACKENDS").is_ok_and(|v| v == "1"),
                "KEYHOLD_REQUIRE_ALL_BACKENDS=1 but a PostgreSQL with TLS cannot be started: {e}"
            );
            eprintln!("\n*** SKIPPING notices over TLS: {e} ***\n");
            return;
        }
    };
    let root = server.path("ca.crt");
    let verified = |host: &str| {
        server.url(
            host,
            &format!("sslmode=verify-full&sslrootcert={}", root.display()),
        )
    };

    // The pool (libpq) and the listener take the same URL.
    let db = Db::open(&verified("localhost")).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = db
        .listen(
            stop.clone(),
            Box::new(move |l| sink.lock().unwrap().push(l)),
        )
        .unwrap()
        .unwrap();
    assert!(
        wait_for(&got, |l| *l == Listened::Up),
        "{:?}",
        got.lock().unwrap()
    );
    let crl = SignedCrl {
        der: b"CRL 7".to_vec(),
        number: 7,
        this_update: t0(),
        next_update: t0() + Duration::from_secs(3600),
        entries: 0,
    };
    db.put_crl(ISSUER, &crl).unwrap();
    let want = Listened::Notice(Notice::Crl {
        issuer: ISSUER.into(),
        number: 7,
    });
    assert!(wait_for(&got, |l| *l == want), "{:?}", got.lock().unwrap());
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();

    // verify-full checks the name: 127.0.0.1 is in the certificate too.
    let (got, stop, thread) = listening(&verified("127.0.0.1"));
    assert!(
        wait_for(&got, |l| *l == Listened::Up),
        "{:?}",
        got.lock().unwrap()
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();

    // SCRAM bound to the TLS connection (the server checks the certificate hash sent).
    assert_listens(&format!(
        "{}&channel_binding=require",
        verified("localhost")
    ));

    // verify-ca checks the chain only; verify-full the name as well; require neither.
    let elsewhere = |mode: &str| {
        server.url(
            "not-the-server.example",
            &format!(
                "hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}",
                root.display()
            ),
        )
    };
    assert_listens(&elsewhere("verify-ca"));
    assert_refused(&elsewhere("verify-full"), "certificate not valid for name");
    assert_listens(&server.url("localhost", "sslmode=require"));
    assert_listens(&server.url("localhost", "sslmode=prefer"));
    // A client certificate, for a user the server lets in by certificate only.
    let by_certificate = |client: &str| {
        format!(
            "postgres://certuser@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}{client}",
            server.port,
            root.display()
        )
    };
    let client = format!(
        "&sslcert={}&sslkey={}",
        server.path("client.crt").display(),
        server.path("client.key").display()
    );
    assert_listens(&by_certificate(&client));
    assert_refused(&by_certificate(""), "valid client certificate");
    // Without TLS the server refuses the password login (pg_hba.conf): TLS really is used.
    assert_refused(&server.url("localhost", "sslmode=disable"), "no encryption");

    // A wrong root: no listening, and why, without the password.
    let wrong = server.url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            server.path("wrong.crt").display()
        ),
    );
    assert_refused(&wrong, "UnknownIssuer");
}

fn assert_listens(url: &str) {
    let (got, stop, thread) = listening(url);
    assert!(
        wait_for(&got, |l| *l == Listened::Up),
        "{:?}",
        got.lock().unwrap()
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

/// Listening on `url` fails, saying `why`, never the password.
fn assert_refused(url: &str, says: &str) {
    let (got, stop, thread) = listening(url);
    assert!(
        wait_for(&got, |l| matches!(l, Listened::Down(_))),
        "{:?}",
        got.lock().unwrap()
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    let events = got.lock().unwrap();
    assert!(!events.contains(&Listened::Up), "{events:?}");
    let Some(Listened::Down(why)) = events.first() else {
        panic!("{events:?}")
    };
    eprintln!("refused as it should be: {why}");
    assert!(why.contains(says), "{why}");
    assert!(!why.contains(PASSWORD), "{why}");
}
