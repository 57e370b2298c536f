//! Failover between two HSMs (issue 18): how long signing stops when a member dies or hangs,
//! and the latency of signatures across it.
//!
//! Two SoftHSM2 tokens with the same key: `hsm-a` behind `p11-kit-server` (a network HSM),
//! `hsm-b` in-process (see `ca_e2e::hsm_lab`). Eight threads sign with the CA key (P-384)
//! through Keyhold's PKCS#11 key store, each signature verified. Three runs of a few seconds:
//! steady state; `hsm-a` killed (SIGKILL to its server) two seconds in; `hsm-a` hung
//! (SIGSTOP) two seconds in, with the default 2 s signing deadline.
//!
//! Failover time: from the fault to the first signature completed after it (on the other
//! member). Run: `cargo run --release -p ca-e2e --bin hsm-failover-bench`. Needs p11-kit,
//! p11-kit-modules, softhsm2 and opensc (pkcs11-tool).
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ca_core::keystore::pkcs11::{MemberConfig, Pkcs11Config, Pkcs11KeyStore};
use ca_core::keystore::{KeyRef, KeyStore, MemberState, Signer};
use ca_core::secret::Secret;
use ca_e2e::hsm_lab::{self, KEY, Lab, Sample, TOKEN, USER_PIN, load, wait_for};
use ca_e2e::report::quantile_ms;

const THREADS: usize = 8;
const CHILD: &str = "KEYHOLD_HSM_BENCH_DIR";

fn main() -> Result<()> {
    let missing = hsm_lab::missing_tools();
    if !missing.is_empty() {
        bail!("missing: {}", missing.join(", "));
    }
    match std::env::var_os(CHILD) {
        Some(dir) => bench(&Lab::new(std::path::Path::new(&dir))),
        None => {
            // The client module and SoftHSM2 read their settings from the environment when
            // loaded: run the measurement in a child that starts with them.
            let dir = tempfile::tempdir()?;
            let lab = Lab::new(dir.path());
            let status = std::process::Command::new(std::env::current_exe()?)
                .env(CHILD, dir.path())
                .env(hsm_lab::ADDRESS_VAR, lab.address("a"))
                .env("SOFTHSM2_CONF", lab.conf("b"))
                .status()?;
            if !status.success() {
                bail!("the benchmark failed");
            }
            Ok(())
        }
    }
}

fn bench(lab: &Lab) -> Result<()> {
    lab.init("a")?;
    lab.generate("a")?;
    lab.replicate("a", "b")?;
    let mut a = lab.serve("a")?;
    let client = hsm_lab::client_module().context("no p11-kit-client.so")?;
    let config = Pkcs11Config::with_members(
        TOKEN.into(),
        vec![
            MemberConfig::new("hsm-a", client),
            MemberConfig::new("hsm-b", hsm_lab::SOFTHSM.into()),
        ],
    );
    let store = Pkcs11KeyStore::open(&config, &Secret::new(USER_PIN.into()))?;
    let signer = store.signer(&KeyRef::new(KEY)?)?;
    let fault_at = Duration::from_secs(2);

    println!(
        "hsm failover: {THREADS} threads signing with a P-384 key, two members (p11-kit-server + in-process SoftHSM2), deadline {:?}\n",
        config.sign_timeout
    );
    println!(
        "| run | signatures | failed | failover time | p50 ms | p99 ms | p99 ms, fault ±1 s | max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let steady = run(&signer, Duration::from_secs(4), None, || Ok(()))?;
    row("steady state", &steady, None);
    let killed = run(&signer, Duration::from_secs(5), Some(fault_at), || a.kill())?;
    row("hsm-a killed (SIGKILL)", &killed, Some(fault_at));
    a = lab.serve("a")?;
    if wait_for(Duration::from_secs(20), || {
        store.members().iter().all(|m| m.state == MemberState::In)
    })
    .is_none()
    {
        bail!("hsm-a did not come back: {:?}", store.members());
    }
    let hung = run(&signer, Duration::from_secs(6), Some(fault_at), || a.stop())?;
    row("hsm-a hung (SIGSTOP)", &hung, Some(fault_at));
    a.resume()?;
    Ok(())
}

/// Signs for `length`, calling `fault` at `fault_at`.
fn run(
    signer: &Arc<dyn Signer>,
    length: Duration,
    fault_at: Option<Duration>,
    fault: impl FnOnce() -> Result<()>,
) -> Result<Vec<Sample>> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handle = load(Arc::clone(signer), THREADS, Arc::clone(&stop));
    if let Some(at) = fault_at {
        std::thread::sleep(at);
        fault()?;
    }
    std::thread::sleep(length.saturating_sub(started.elapsed()));
    stop.store(true, Ordering::SeqCst);
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn row(name: &str, samples: &[Sample], fault_at: Option<Duration>) {
    let latencies: Vec<u32> = samples.iter().map(|s| us(s.latency)).collect();
    let failed = samples.iter().filter(|s| s.error.is_some()).count();
    let (failover, near) = match fault_at {
        Some(at) => {
            let first_ok_after = samples
                .iter()
                .filter(|s| s.error.is_none() && s.at + s.latency > at)
                .map(|s| s.at + s.latency - at)
                .min();
            let near: Vec<u32> = samples
                .iter()
                .filter(|s| {
                    s.at + Duration::from_secs(1) >= at && s.at <= at + Duration::from_secs(1)
                })
                .map(|s| us(s.latency))
                .collect();
            (
                first_ok_after.map_or("never".into(), |d| {
                    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
                }),
                format!("{:.1}", quantile_ms(&near, 0.99)),
            )
        }
        None => ("-".into(), "-".into()),
    };
    println!(
        "| {name} | {} | {failed} | {failover} | {:.2} | {:.1} | {near} | {:.0} |",
        samples.len(),
        quantile_ms(&latencies, 0.5),
        quantile_ms(&latencies, 0.99),
        quantile_ms(&latencies, 1.0),
    );
}
