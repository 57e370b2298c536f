//! `codesign-bench`: detached CMS signatures per second through `Codesign::sign` (owner and
//! certificate checks, limit counts, CMS, signing, the durable record with its audit entry),
//! beside the raw signing rate of the same key, without HTTP.
//!
//! `cargo run --release -p ca-e2e --bin codesign-bench -- [--seconds N] [--threads 1,16]`
//! Uses the embedded token, plus SoftHSM2 when `SOFTHSM2_CONF` is set; SQLite in a
//! temporary file. The profile's limits are raised for the run. Afterwards it checks that
//! the database holds exactly one signature row and one `codesign.signed` audit entry per
//! signature returned.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, ensure};
use ca_core::audit::{Action, AuditEvent};
use ca_core::ceremony::{self, CaMaterial, CeremonySpec};
use ca_core::cms::DigestAlg;
use ca_core::codesign::{Codesign, CodesignStore, KeyRequest, NewSignature, SignRequest};
use ca_core::issuance::{Ca, Channel, Outcome};
use ca_core::issuer::{Issuer, IssuerId, KeyedCert};
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, init_token};
use ca_core::keystore::{KeySpec, KeyStore};
use ca_core::policy::{self, Requester};
use ca_core::secret::Secret;
use ca_core::store::{AuditLog, Serial};
use ca_e2e::report::thousands;

const PIN: &str = "1234-codesign-bench";

fn main() -> Result<()> {
    let mut seconds = 3u64;
    let mut threads = vec![1usize, 16];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().context("--seconds N")?.parse()?,
            "--threads" => {
                threads = args
                    .next()
                    .context("--threads LIST")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(anyhow!("unknown argument {other:?}")),
        }
    }
    let tmp = tempfile::tempdir()?;
    let mut stores: Vec<(&str, Arc<dyn KeyStore>)> = vec![(
        "embedded",
        Arc::new(EmbeddedKeyStore::create(
            &tmp.path().join("token"),
            &Secret::new("bench passphrase".into()),
            KdfParams::insecure_for_tests(),
        )?),
    )];
    if std::env::var_os("SOFTHSM2_CONF").is_some() {
        let module = Path::new("/usr/lib/softhsm/libsofthsm2.so");
        let label = format!("kh-csbench-{}", std::process::id());
        init_token(
            module,
            &label,
            &Secret::new("5678-codesign-bench".into()),
            &Secret::new(PIN.into()),
        )?;
        let mut config = Pkcs11Config::new(module.into(), label);
        config.sessions = threads.iter().copied().max().unwrap_or(2);
        stores.push((
            "pkcs11",
            Arc::new(Pkcs11KeyStore::open(&config, &Secret::new(PIN.into()))?),
        ));
    }
    println!(
        "{:<9} {:>7} {:>12} {:>12} {:>6} {:>12} {:>12}",
        "keystore", "threads", "signatures/s", "raw signs/s", "ratio", "records/s", "reads/s"
    );
    for (name, keys) in stores {
        for &n in &threads {
            let [signed, raw, recorded, reads] =
                measure(&keys, tmp.path(), n, Duration::from_secs(seconds))?;
            println!(
                "{name:<9} {n:>7} {:>12} {:>12} {:>5.0}% {:>12} {:>12}",
                thousands(signed),
                thousands(raw),
                100.0 * signed / raw,
                thousands(recorded),
                thousands(reads)
            );
        }
    }
    Ok(())
}

/// Per second with `n` threads: signatures through `Codesign::sign`, raw `Signer::sign`,
/// durable signature records alone (no window to check), and the reads before signing alone.
fn measure(keys: &Arc<dyn KeyStore>, tmp: &Path, n: usize, time: Duration) -> Result<[f64; 4]> {
    let now = SystemTime::now();
    let run = tempfile::tempdir_in(tmp)?;
    let spec = CeremonySpec {
        key_label_prefix: format!("b{}{n}-", std::process::id()),
        ..CeremonySpec::default()
    };
    let h = ceremony::run(&spec, keys.as_ref(), now - Duration::from_secs(60))?;
    let keyed = |m: &CaMaterial| -> Result<KeyedCert> {
        Ok(KeyedCert {
            cert: m.cert.clone(),
            signer: keys.signer(&m.key)?,
        })
    };
    let root = IssuerId::new("root").map_err(anyhow::Error::msg)?;
    let mut issuers = vec![Issuer {
        id: root.clone(),
        parent: None,
        ca: keyed(&h.root)?,
        ocsp: None,
    }];
    for i in &h.issuing {
        issuers.push(Issuer {
            id: i.id.clone(),
            parent: Some(root.clone()),
            ca: keyed(&i.ca)?,
            ocsp: None,
        });
    }
    // The shipped profiles, with the per-minute limit raised out of the way and no daily
    // quota (each window costs a count of the key's signatures in it).
    let policies = run.path().join("policies");
    std::fs::create_dir(&policies)?;
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for entry in std::fs::read_dir(&shipped)? {
        let path = entry?.path();
        let mut text = std::fs::read_to_string(&path)?;
        if path.file_stem().is_some_and(|s| s == "code-signing") {
            text = text
                .replace(
                    "max_signatures_per_minute = 60",
                    "max_signatures_per_minute = 4000000000",
                )
                .replace(
                    "max_signatures_per_day = 1000",
                    "max_signatures_per_day = 4000000000",
                );
        }
        if let Some(file) = path.file_name() {
            std::fs::write(policies.join(file), text)?;
        }
    }
    let profiles = policy::load_dir(&policies)?;
    let db = Arc::new(db::Db::open(&format!(
        "sqlite://{}",
        run.path().join("keyhold.db").display()
    ))?);
    let ca = Ca::new(
        issuers.clone(),
        profiles.clone(),
        db.clone(),
        "http://127.0.0.1:8080",
    )
    .map_err(|p| anyhow!("{}", p.join("; ")))?;
    let codesign = Arc::new(Codesign::new(keys.clone(), db.clone(), profiles, issuers));
    let owner = Requester {
        name: "carol".into(),
        roles: vec!["requester".into()],
    };
    // Approvals count only from officer accounts that held the role before the request.
    for officer in ["alice", "bob"] {
        ca_core::users::create_with_one_time_password(
            db.as_ref(),
            officer,
            &[ca_core::users::Role::Officer],
            "bench",
            "bench",
        )?;
    }
    let requested = codesign.request_key(
        &ca,
        &KeyRequest {
            owner: &owner,
            profile: "code-signing",
            subject: "CN=Bench signing",
            spec: KeySpec::EcP256,
            source: "bench",
            channel: Channel::Cli,
        },
        now,
    )?;
    let Outcome::Pending { request_id, .. } = requested.outcome else {
        return Err(anyhow!(
            "expected a pending request, got {:?}",
            requested.outcome
        ));
    };
    for officer in ["alice", "bob"] {
        ca.approve(
            request_id,
            &Requester {
                name: officer.into(),
                roles: vec!["officer".into()],
            },
            "bench",
            "bench",
            now,
        )?;
    }
    let label = requested.key.label().to_owned();
    let digest = DigestAlg::Sha256.hash_reader(&b"artifact"[..])?;
    let raw_signer = keys.signer(&requested.key)?;
    let message = vec![0x5a_u8; 200]; // about the size of the signed attributes

    let audit_before = db.audit_head()?.map_or(0, |(seq, _)| seq);
    let count = |op: &(dyn Fn() -> Result<()> + Sync)| -> Result<f64> {
        let done = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let barrier = Barrier::new(n + 1);
        let failed: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
        let started = thread::scope(|s| {
            for _ in 0..n {
                s.spawn(|| {
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        match op() {
                            Ok(()) => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                if let Ok(mut f) = failed.lock() {
                                    f.get_or_insert(e);
                                }
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
            barrier.wait();
            let started = Instant::now();
            thread::sleep(time);
            stop.store(true, Ordering::Relaxed);
            started
        });
        if let Some(e) = failed.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
    };
    let signatures = AtomicU64::new(0);
    let signed = count(&|| {
        codesign.sign(
            &SignRequest {
                caller: ca_core::codesign::Principal::user("carol"),
                key: &label,
                digest: &digest,
                source: "bench",
            },
            SystemTime::now(),
        )?;
        signatures.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })?;
    let raw = count(&|| {
        raw_signer.sign(&message)?;
        Ok(())
    })?;
    // The reads a signature makes before signing, alone.
    let reads = count(&|| {
        db.codesign_key(&requested.key)?;
        db.codesign_certificate(&requested.key)?;
        db.codesign_signature_count(&requested.key, SystemTime::now() - Duration::from_secs(60))?;
        Ok(())
    })?;
    // The durable record alone (no checks, no signing), on another key's rows.
    let other = codesign.request_key(
        &ca,
        &KeyRequest {
            owner: &owner,
            profile: "code-signing",
            subject: "CN=Bench records",
            spec: KeySpec::EcP256,
            source: "bench",
            channel: Channel::Cli,
        },
        now,
    )?;
    let record_event = AuditEvent::new(Action::CodesignSigned, "carol", "bench", "key:bench");
    let recorded = count(&|| {
        db.record_codesign_signature(
            &NewSignature {
                key: other.key.clone(),
                caller: "carol".into(),
                serial: Serial::from_bytes(&[1]),
                digest_alg: DigestAlg::Sha256,
                digest: digest.to_hex(),
                at: SystemTime::now(),
            },
            &[],
            &record_event,
        )?;
        Ok(())
    })?;

    // Every signature returned is recorded and audited, and nothing else is.
    let made = signatures.load(Ordering::Relaxed);
    let rows = db.codesign_signatures(&requested.key, 0)?.len() as u64;
    ensure!(
        rows == made.min(1_000),
        "{rows} signature rows for {made} signatures"
    );
    let audit_after = db.audit_head()?.map_or(0, |(seq, _)| seq);
    let entries = db.audit_entries(audit_before + 1, audit_after)?;
    let audited = entries
        .iter()
        .filter(|e| e.action == "codesign.signed" && e.object != "key:bench")
        .count() as u64;
    ensure!(
        audited == made,
        "{audited} codesign.signed entries ({} in all) for {made} signatures",
        entries.len()
    );
    Ok([signed, raw, recorded, reads])
}
