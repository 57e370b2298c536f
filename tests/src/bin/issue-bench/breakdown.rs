//! `issue-bench --breakdown N`: where an issuance's CPU goes, stage by stage.
//!
//! One requester issues N certificates (after N/10 not counted) through
//! [`Ca::submit_timed`], which calls back as each [`Stage`] ends; the callback reads the
//! process's CPU clock (every thread: the requester, the database writer, the key store's),
//! so a stage's figure includes the work it hands to other threads and the cost of handing it
//! over, but not the time spent waiting for the disk. The response stage is what the HTTP
//! handler does with the result (PEM of the certificate and its chain, the JSON body). Then
//! `--breakdown-threads` requesters issue for `--seconds`, and the process's CPU over that
//! window divided by the certificates gives the whole cycle's cost under concurrency, where
//! batching and hand-offs change it.
//!
//! The HTTP stage needs a server: `tests/bench/breakdown` runs `http-bench --server-pid`
//! first, which measures the server's CPU per certificate, and passes it here as
//! `--server-cpu C1,CN` (µs at concurrency 1 and at `--breakdown-threads`); the HTTP and
//! JSON row is that minus every stage measured here.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail, ensure};
use ca_core::issuance::{Ca, Channel, Outcome, Stage, Submission};
use ca_core::store::Store;
use ca_e2e::report::{load_average, process_cpu};

use super::{BASE_URL, Bench, Database, FreshDb, IssueWorker, KeySetup, PROFILE, measure};

/// The stages in the order they are printed, with their labels.
const STAGES: [(Stage, &str); 7] = [
    (Stage::CsrCheck, "CSR check"),
    (Stage::Policy, "policy"),
    (Stage::Reservation, "reservation (serial + audit entry)"),
    (Stage::Build, "build (template, lint, DER)"),
    (Stage::Sign, "sign"),
    (Stage::SelfCheck, "self-check of our signature"),
    (Stage::Record, "record (certificate + audit entry, durable)"),
];

/// CPU per certificate by stage, in microseconds, for one key store and database.
pub struct Breakdown {
    label: String,
    stages: [f64; 7],
    response: f64,
    /// The process's CPU per certificate with several requesters.
    concurrent: f64,
    threads: usize,
}

/// Measures one key store on one database.
pub fn measure_breakdown(
    bench: &Bench<'_>,
    setup: &KeySetup,
    database: Database,
    count: u64,
    threads: usize,
) -> Result<Breakdown> {
    let fresh = FreshDb::open(database, bench.options)?;
    let store: Arc<dyn Store> = fresh.store.clone();
    let ca = Ca::new(
        setup.issuers.clone(),
        bench.profiles.clone(),
        store,
        BASE_URL,
    )
    .map_err(|p| anyhow!("the CA cannot start:\n  - {}", p.join("\n  - ")))?;
    let audit_before = fresh.audit_seq()?;
    let mut stages = [Duration::ZERO; 7];
    let mut response = Duration::ZERO;
    let warm_up = (count / 10).max(1);
    let mut body_len = 0usize;
    for i in 0..warm_up + count {
        let csr = bench
            .csrs
            .get(usize::try_from(i).unwrap_or(0) % bench.csrs.len().max(1))
            .context("the CSR pool is empty")?;
        let submission = Submission {
            profile: PROFILE,
            csr,
            requester: &bench.requester,
            source: "issue-bench",
            channel: Channel::Api,
        };
        let counted = i >= warm_up;
        let mut last = process_cpu();
        let mut lap = |stage: Stage| {
            let now = process_cpu();
            if counted && let Some(k) = STAGES.iter().position(|(s, _)| *s == stage) {
                stages[k] += now.saturating_sub(last);
            }
            last = now;
        };
        let outcome = ca.submit_timed(&submission, SystemTime::now(), &mut lap)?;
        let start = process_cpu();
        let Outcome::Issued(issued) = outcome else {
            bail!("the CA did not issue: {outcome:?}");
        };
        // What the HTTP handler does with it: PEM, then the JSON body.
        let mut chain = String::new();
        for c in &issued.chain {
            chain.push_str(&c.to_pem()?);
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "serial": issued.serial.to_string(),
            "certificate": issued.cert.to_pem()?,
            "chain": chain,
            "not_after": format!("{:?}", issued.cert.not_after()),
        }))?;
        body_len = body_len.max(body.len());
        if counted {
            response += process_cpu().saturating_sub(start);
        }
    }
    ensure!(body_len > 0, "no response body was made");

    // The whole cycle with several requesters: the process's CPU over the window.
    let workers = (0..threads)
        .map(|t| IssueWorker {
            ca: &ca,
            csrs: &bench.csrs,
            requester: &bench.requester,
            next: t,
            stride: threads,
            issued: 0,
            samples: Vec::new(),
        })
        .collect();
    let before = process_cpu();
    let (workers, window) = measure(workers, bench.duration).context("concurrent issuance")?;
    let cpu = process_cpu().saturating_sub(before);
    let concurrent_issued: u64 = workers.iter().map(|w| w.issued).sum();
    fresh
        .check(warm_up + count + concurrent_issued, audit_before)
        .context("after the breakdown")?;
    // The window counts only its timed part; the CPU clock ran through the warm-up too, so
    // divide by every certificate issued while it ran.
    ensure!(window.rate > 0.0, "no certificate was issued concurrently");
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n as f64;
    Ok(Breakdown {
        label: format!("{} / {}", setup.keys.label(), database.label()),
        stages: stages.map(|d| per(d, count)),
        response: per(response, count),
        concurrent: per(cpu, concurrent_issued),
        threads,
    })
}

/// The table, with the HTTP rows if the server's CPU per certificate is known.
pub fn breakdown_table(rows: &[Breakdown], server_cpu: Option<(f64, f64)>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = write!(out, "{:<48}", "µs of CPU per certificate");
    for r in rows {
        let _ = write!(out, " | {:>26}", r.label);
    }
    out.push('\n');
    let line = |out: &mut String, label: &str, values: &mut dyn Iterator<Item = f64>| {
        let _ = write!(out, "{label:<48}");
        for v in values {
            let _ = write!(out, " | {v:>26.1}");
        }
        out.push('\n');
    };
    let core = |r: &Breakdown| r.stages.iter().sum::<f64>();
    if let Some((c1, _)) = server_cpu {
        line(
            &mut out,
            "HTTP and JSON (server CPU at c1 minus the rest)",
            &mut rows.iter().map(|r| c1 - core(r) - r.response),
        );
    }
    for (k, (_, label)) in STAGES.iter().enumerate() {
        line(&mut out, label, &mut rows.iter().map(|r| r.stages[k]));
    }
    line(
        &mut out,
        "response (PEM, JSON body)",
        &mut rows.iter().map(|r| r.response),
    );
    line(
        &mut out,
        "total without HTTP, 1 requester",
        &mut rows.iter().map(|r| core(r) + r.response),
    );
    let threads = rows.first().map_or(0, |r| r.threads);
    line(
        &mut out,
        &format!("whole cycle without HTTP, {threads} requesters"),
        &mut rows.iter().map(|r| r.concurrent),
    );
    if let Some((c1, cn)) = server_cpu {
        let _ = writeln!(
            out,
            "{:<48} | {c1:>26.1}",
            "server over HTTP, concurrency 1"
        );
        let _ = writeln!(
            out,
            "{:<48} | {cn:>26.1}",
            format!("server over HTTP, concurrency {threads}")
        );
    }
    let _ = writeln!(out, "load average after: {}", load_average());
    out
}

/// `--server-cpu C1,CN`.
pub fn parse_server_cpu(v: &str) -> Result<(f64, f64)> {
    let parsed = v
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .filter(|(a, b): &(f64, f64)| *a > 0.0 && *b > 0.0);
    parsed.ok_or_else(|| anyhow!("--server-cpu {v:?}: two positive numbers, C1,CN (µs)"))
}
