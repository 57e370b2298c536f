//! Issue 18 through the real server: `keyhold serve` with two HSM members that hold the same
//! keys, under concurrent issuance over HTTP. `hsm-a` is a SoftHSM2 token behind its own
//! `p11-kit-server`, reached through Debian's `p11-kit-client.so` (a network HSM: it can be
//! killed or hung with real signals); `hsm-b` is a copy of that token through SoftHSM2
//! in-process (its token directory can be moved away). See `ca_e2e::hsm_lab`.
//!
//! Without p11-kit-server, the client module, SoftHSM2 or pkcs11-tool these tests skip,
//! unless KEYHOLD_REQUIRE_ALL_BACKENDS=1 (CI), where they fail.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ca_e2e::hsm_lab::{self, Lab, wait_for};
use serde_json::Value;

use crate::cli::{keyhold, run, shipped_policies};
use crate::serve::{Server, create_token, http, issue_and_verify, ocsp_get_path, ocsp_text};
use crate::support::free_port;

/// The members' signing deadline (`sign_timeout`).
const DEADLINE: Duration = Duration::from_secs(1);
/// What an HTTP issuance may take beyond the signing deadline: its reservation and record in
/// the database, on a 2-core machine shared with the rest of the suite.
const MARGIN: Duration = Duration::from_millis(1500);
/// Concurrent requesters.
const THREADS: usize = 6;

/// The lab's tools, or `None` (skip) when they are missing and CI does not require them.
fn lab_tools() -> Option<PathBuf> {
    let missing = hsm_lab::missing_tools();
    if !missing.is_empty() {
        let required = std::env::var_os("KEYHOLD_REQUIRE_ALL_BACKENDS").is_some_and(|v| v == "1");
        assert!(
            !required,
            "the hsm cluster tests need: {}",
            missing.join(", ")
        );
        eprintln!("skipped: missing {}", missing.join(", "));
        return None;
    }
    hsm_lab::client_module()
}

/// `keyhold init` of a CA whose keys are generated in lab HSM `hsm` (SoftHSM2 directly).
fn init_ca(lab: &Lab, hsm: &str, dir: &Path) {
    let conf = lab.conf(hsm);
    let r = run(keyhold(dir)
        .args([
            "init",
            "--keystore",
            "pkcs11",
            "--pkcs11-token",
            hsm_lab::TOKEN,
        ])
        .env("SOFTHSM2_CONF", &conf)
        .env("KEYHOLD_PKCS11_PIN", hsm_lab::USER_PIN));
    assert!(r.ok, "{}", r.stderr);
}

/// Replaces the single-module `[keystore]` that `init` wrote with two members: `hsm-a`
/// through the p11-kit client module, `hsm-b` through SoftHSM2.
fn two_members(dir: &Path, client: &Path) {
    let path = dir.join("keyhold.toml");
    let text = fs::read_to_string(&path).unwrap();
    let start = text.find("[keystore]\n").unwrap();
    let end = start + 1 + text[start + 1..].find("\n[").unwrap();
    let section = format!(
        "[keystore]\nbackend = \"pkcs11\"\ntoken = \"{}\"\nsign_timeout = \"{}ms\"\n\
         keepalive = \"5s\"\n\n[[keystore.members]]\nname = \"hsm-a\"\nmodule = \"{}\"\n\n\
         [[keystore.members]]\nname = \"hsm-b\"\nmodule = \"{}\"\n",
        hsm_lab::TOKEN,
        DEADLINE.as_millis(),
        client.display(),
        hsm_lab::SOFTHSM,
    );
    let new = format!("{}{}{}", &text[..start], section, &text[end..]);
    fs::write(&path, new).unwrap();
}

/// The environment `keyhold serve` needs: hsm-a's server address, hsm-b's SoftHSM2 config
/// (lab HSM `b`), the PIN.
fn serve_env(lab: &Lab, b: &str) -> Vec<(String, String)> {
    vec![
        (hsm_lab::ADDRESS_VAR.to_owned(), lab.address("a")),
        (
            "SOFTHSM2_CONF".to_owned(),
            lab.conf(b).display().to_string(),
        ),
        (
            "KEYHOLD_PKCS11_PIN".to_owned(),
            hsm_lab::USER_PIN.to_owned(),
        ),
    ]
}

#[test]
fn serve_refuses_a_member_holding_another_key_under_the_same_label_naming_it() {
    let Some(client) = lab_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    fs::create_dir(work.join("lab")).unwrap();
    let lab = Lab::new(&work.join("lab"));
    let dir = work.join("data");
    // HSM a holds this CA's keys; HSM c holds another CA's keys under the same labels.
    lab.init("a").unwrap();
    init_ca(&lab, "a", &dir);
    lab.init("c").unwrap();
    init_ca(&lab, "c", &work.join("other"));
    two_members(&dir, &client);
    let _a = lab.serve("a").unwrap();

    let (out, err) = (work.join("serve.out"), work.join("serve.err"));
    let mut child = keyhold(&dir)
        .arg("--policies")
        .arg(shipped_policies())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--tls-listen",
            "none",
        ])
        .envs(serve_env(&lab, "c"))
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!(
                "serve started with an out-of-step member:\n{}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = fs::read_to_string(&err).unwrap();
    println!("refused in {:?}: {stderr}", started.elapsed());
    assert!(!status.success());
    assert!(
        stderr.contains("\"hsm-b\"") && stderr.contains("different key"),
        "{stderr}"
    );
}

/// One issuance request of a load run.
#[derive(Debug)]
struct Shot {
    /// When it was sent, from the start of the run.
    at: Duration,
    latency: Duration,
    /// 0 if the connection closed without an answer.
    status: u16,
    retry_after: bool,
    /// The issued certificate's serial (201 only).
    serial: Option<String>,
}

/// `THREADS` requesters issue with `body` over HTTP until `stop` is set.
fn issuance_load(
    port: u16,
    token: Arc<str>,
    body: Arc<str>,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<Shot>> {
    std::thread::spawn(move || {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (token, body, stop) = (token.clone(), body.clone(), stop.clone());
                std::thread::spawn(move || {
                    let request = format!(
                        "POST /api/v1/certificates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \
                         {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let mut shots = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let began = Instant::now();
                        let answer = http(port, request.as_bytes());
                        let latency = began.elapsed();
                        let (status, retry_after, serial) = match answer {
                            None => (0, false, None),
                            Some(r) => {
                                let serial = (r.status == 201)
                                    .then(|| r.json()["serial"].as_str().map(str::to_owned))
                                    .flatten();
                                let retry = r.head.to_ascii_lowercase().contains("retry-after: ");
                                (r.status, retry, serial)
                            }
                        };
                        shots.push(Shot {
                            at: began - start,
                            latency,
                            status,
                            retry_after,
                            serial,
                        });
                        if status != 201 {
                            // A failing server answers fast; do not spin.
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    shots
                })
            })
            .collect();
        let mut all: Vec<Shot> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        all.sort_by_key(|s| s.at);
        all
    })
}

/// What the cluster test needs to drive the server.
struct Driver<'a> {
    server: &'a Server,
    token: Arc<str>,
    body: Arc<str>,
    /// Every request of every run.
    all: Vec<Shot>,
}

impl Driver<'_> {
    /// Issues under load, doing `fault` after `after`, then for `for_` more. Returns when
    /// the fault began, from the start of the run, and the run's requests.
    fn run(
        &mut self,
        what: &str,
        after: Duration,
        for_: Duration,
        fault: impl FnOnce(),
    ) -> (Duration, &[Shot]) {
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let load = issuance_load(
            self.server.port,
            self.token.clone(),
            self.body.clone(),
            start,
            stop.clone(),
        );
        std::thread::sleep(after);
        let fault_at = start.elapsed();
        fault();
        std::thread::sleep(for_);
        stop.store(true, Ordering::SeqCst);
        let shots = load.join().unwrap();
        let failed: Vec<_> = shots.iter().filter(|s| s.status != 201).collect();
        let mut latencies: Vec<_> = shots.iter().map(|s| s.latency).collect();
        latencies.sort();
        let p99 = latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
        println!(
            "{what}: {} requests, {} failed {:?}, p99 {p99:?}, slowest {:?}",
            shots.len(),
            failed.len(),
            failed
                .iter()
                .take(12)
                .map(|s| (s.status, s.at.as_millis(), s.latency.as_millis()))
                .collect::<Vec<_>>(),
            latencies.last().copied().unwrap_or_default()
        );
        let from = self.all.len();
        self.all.extend(shots);
        (fault_at, &self.all[from..])
    }
}

/// `/readyz`: its status and the named members' states.
fn members(server: &Server) -> (u16, Value, HashMap<String, String>) {
    let r = http(
        server.port,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap_or_else(|| panic!("no answer to /readyz:\n{}", server.logs()));
    let body = r.json();
    let states = body["hsm_members"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or_default().to_owned(),
                        m["state"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (r.status, body, states)
}

/// Waits up to 20 s for `/readyz` to show `member` in `state` (the probe result `/readyz`
/// shows is up to 2 s old).
fn wait_member(server: &Server, member: &str, state: &str) -> Duration {
    let took = wait_for(Duration::from_secs(20), || {
        members(server).2.get(member).map(String::as_str) == Some(state)
    });
    took.unwrap_or_else(|| panic!("{member} not {state}: {}", members(server).1))
}

fn ok(s: &Shot) -> bool {
    s.status == 201
}

#[test]
fn serve_with_two_members_keeps_issuing_through_kill_hang_and_both_down() {
    let Some(client) = lab_tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    fs::create_dir(work.join("lab")).unwrap();
    let lab = Lab::new(&work.join("lab"));
    let dir = work.join("data");
    lab.init("a").unwrap();
    init_ca(&lab, "a", &dir);
    // hsm-b: a replica of a's token (what cluster synchronisation does).
    lab.replicate("a", "b").unwrap();
    two_members(&dir, &client);
    let mut a = lab.serve("a").unwrap();
    let env = serve_env(&lab, "b");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start_with(work, &dir, &env);
    let token = create_token(&dir, "ci", "requester");
    issue_and_verify(&server, work, &token);
    fs::write(
        work.join("issuing.pem"),
        server.get("/ca/issuing-ca.pem", None).body,
    )
    .unwrap();
    let ocsp_path = ocsp_get_path(work);
    assert_eq!(server.get(&ocsp_path, None).status, 200);
    assert_eq!(server.get("/crl/issuing-ca.crl", None).status, 200);
    let (status, body, states) = members(&server);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        states.get("hsm-a").map(String::as_str),
        Some("in"),
        "{body}"
    );
    assert_eq!(
        states.get("hsm-b").map(String::as_str),
        Some("in"),
        "{body}"
    );
    let before = certificates(&dir);

    let csr = fs::read_to_string(work.join("web.csr")).unwrap();
    let mut driver = Driver {
        server: &server,
        token: token.as_str().into(),
        body: serde_json::json!({"profile": "tls-server", "csr": csr})
            .to_string()
            .into(),
        all: Vec::new(),
    };
    let after = Duration::from_millis(1000);

    // 1. Kill hsm-a under load: issuance continues on hsm-b. A call in flight on hsm-a that
    //    gets an error is retried on hsm-b; one that gets no answer fails at the deadline (it
    //    is never retried after its deadline). Nothing else fails.
    let (fault_at, shots) = driver.run("hsm-a killed", after, Duration::from_secs(3), || {
        a.kill().unwrap()
    });
    let failover = shots
        .iter()
        .find(|s| s.at > fault_at && ok(s))
        .map(|s| s.at + s.latency - fault_at);
    println!("failover: first issuance started after the kill done {failover:?} after it");
    assert!(failover.is_some());
    for s in shots.iter().filter(|s| !ok(s)) {
        assert!(
            s.status == 503 && s.retry_after && s.at < fault_at && s.at + s.latency > fault_at,
            "only requests in flight at the kill may fail: {s:?}"
        );
    }
    assert!(shots.iter().filter(|s| !ok(s)).count() <= THREADS);
    assert!(shots.iter().filter(|s| s.at > fault_at && ok(s)).count() > 10);
    assert!(shots.iter().all(|s| s.latency < DEADLINE + MARGIN));
    assert_eq!(members(&server).2["hsm-a"], "out");

    // 2. Bring it back: taken back in without a restart.
    a = lab.serve("a").unwrap();
    println!(
        "hsm-a back in {:?} after its server restarted",
        wait_member(&server, "hsm-a", "in")
    );

    // 3. Hang it (SIGSTOP): calls in flight on it fail at the deadline with 503 and
    //    Retry-After; nothing waits longer than the deadline (plus the request's own work);
    //    requests move to hsm-b.
    let (fault_at, shots) = driver.run("hsm-a hung", after, Duration::from_secs(4), || {
        a.stop().unwrap()
    });
    for s in shots.iter().filter(|s| !ok(s)) {
        assert!(
            s.status == 503 && s.retry_after && s.at < fault_at + MARGIN,
            "only requests in flight on the hung member may fail: {s:?}"
        );
    }
    assert!(shots.iter().all(|s| s.latency < DEADLINE + MARGIN));
    let settled = fault_at + DEADLINE + MARGIN;
    assert!(shots.iter().filter(|s| s.at > settled).all(ok));
    assert!(shots.iter().filter(|s| s.at > settled).count() > 10);
    assert_eq!(members(&server).2["hsm-a"], "out");
    a.resume().unwrap();
    println!(
        "hsm-a back in {:?} after SIGCONT",
        wait_member(&server, "hsm-a", "in")
    );

    // 4. Both down (hsm-a's server killed, hsm-b's token directory gone): issuance answers 503
    //    with Retry-After within the deadline; OCSP and the CRL are still served; /readyz
    //    says so.
    let tokens = lab.tokens("b");
    let away = work.join("b-away");
    let ocsp = server.get(&ocsp_path, None);
    assert!(ocsp_text(work, &ocsp.body).contains("Cert Status: good"));
    let crl = server.get("/crl/issuing-ca.crl", None);
    let (fault_at, shots) = driver.run("both down", after, Duration::from_secs(3), || {
        a.kill().unwrap();
        fs::rename(&tokens, &away).unwrap();
    });
    let down = fault_at + DEADLINE + MARGIN;
    assert!(shots.iter().filter(|s| s.at > down).count() > 10);
    for s in shots.iter().filter(|s| s.at > down) {
        assert!(s.status == 503 && s.retry_after, "{s:?}");
    }
    assert!(shots.iter().all(|s| s.latency < DEADLINE + MARGIN));
    let (status, body, states) = members(&server);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["key_store"], "unavailable", "{body}");
    assert_eq!(states["hsm-a"], "out", "{body}");
    assert_eq!(states["hsm-b"], "out", "{body}");
    let r = server.get(&ocsp_path, None);
    assert_eq!(
        (r.status, &r.body),
        (200, &ocsp.body),
        "the answer signed before"
    );
    let r = server.get("/crl/issuing-ca.crl", None);
    assert_eq!((r.status, &r.body), (200, &crl.body));

    // 5. Both back: issuance recovers without a restart.
    fs::rename(&away, &tokens).unwrap();
    let _a = lab.serve("a").unwrap();
    // The members are probed with back-off, at most 5 s apart.
    let (_, shots) = driver.run("both back", Duration::ZERO, Duration::from_secs(8), || {});
    let first = shots.iter().find(|s| ok(s)).map(|s| s.at + s.latency);
    println!("issuance recovered {first:?} after both came back");
    let first = first.unwrap();
    assert!(first < Duration::from_secs(7));
    assert!(shots.iter().filter(|s| s.at > first).all(ok));
    wait_member(&server, "hsm-a", "in");
    wait_member(&server, "hsm-b", "in");
    let r = server.get("/readyz", None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // 6. A reserved serial is signed once and nothing is half-written: every 201 is one
    //    stored certificate, every other new row is a burnt serial without a certificate,
    //    and none is left reserved.
    let after = certificates(&dir);
    let issued: Vec<&str> = driver
        .all
        .iter()
        .filter_map(|s| s.serial.as_deref())
        .collect();
    let unique: HashSet<&str> = issued.iter().copied().collect();
    assert_eq!(unique.len(), issued.len(), "a serial was returned twice");
    let new: Vec<&Cert> = after
        .iter()
        .filter(|c| !before.iter().any(|b| b.serial == c.serial))
        .collect();
    for c in &new {
        match c.status.as_str() {
            "valid" => assert!(c.has_der && unique.contains(c.serial.as_str()), "{c:?}"),
            "failed" => assert!(!c.has_der, "{c:?}"),
            _ => panic!("half-written: {c:?}"),
        }
    }
    let stored: HashSet<&str> = new
        .iter()
        .filter(|c| c.status == "valid")
        .map(|c| c.serial.as_str())
        .collect();
    assert_eq!(stored, unique, "every 201 is one stored certificate");
    let refused = driver.all.iter().filter(|s| !ok(s)).count();
    let burnt = new.iter().filter(|c| c.status == "failed").count();
    println!(
        "{} requests: {} issued, {refused} refused, {burnt} serials burnt, none reserved",
        driver.all.len(),
        unique.len()
    );
    assert!(
        burnt <= refused,
        "a serial was burnt for a request that succeeded"
    );
    // While every member is out, requests are refused before a serial is reserved: only
    // calls already signing when a member went out (hung, killed, both down: at most
    // THREADS each) burn one.
    assert!(
        burnt <= 3 * THREADS,
        "{burnt} serials burnt for {refused} refused requests: refusals while every member \
         is out must not reserve"
    );

    // 7. Every member going out and coming back is audited once (not per failed call).
    let r = run(keyhold(&dir).args(["audit", "list", "--limit", "1000000"]));
    assert!(r.ok, "{}", r.stderr);
    let count = |action: &str, member: &str| {
        r.stdout
            .lines()
            .filter(|l| l.contains(action) && l.contains(&format!("hsm-member:{member}")))
            .count()
    };
    assert_eq!(count("hsm.member_out", "hsm-a"), 3, "{}", r.stdout);
    assert_eq!(count("hsm.member_back", "hsm-a"), 3, "{}", r.stdout);
    assert_eq!(count("hsm.member_out", "hsm-b"), 1, "{}", r.stdout);
    assert_eq!(count("hsm.member_back", "hsm-b"), 1, "{}", r.stdout);
    server.terminate();
}

/// A row of the certificates table.
#[derive(Debug, diesel::QueryableByName)]
struct Cert {
    #[diesel(sql_type = diesel::sql_types::Text)]
    serial: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    has_der: bool,
}

/// Every certificate row of the CA in `dir` (SQLite, as `init` made it).
fn certificates(dir: &Path) -> Vec<Cert> {
    use diesel::{Connection as _, RunQueryDsl as _, SqliteConnection};
    let path = dir.join("keyhold.db");
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    diesel::sql_query("SELECT serial, status, der IS NOT NULL AS has_der FROM certificates")
        .load(&mut conn)
        .unwrap()
}
