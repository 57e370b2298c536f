//! Validation off the request path: a thread with its own async runtime takes answered
//! challenges from a queue, checks each over the network (http-01 RFC 8555 8.3, dns-01 8.4,
//! tls-alpn-01 RFC 8737, IP identifiers RFC 8738) and records the result through the ACME
//! service. The same thread runs ACME upkeep: every few seconds it takes over the challenges
//! left `processing` by a node whose heartbeat stopped (or by this node's earlier process),
//! and every ten minutes it deletes redeemed nonces past their lifetime and orders and
//! authorizations long expired (`ca_core::acme::upkeep`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use ca_core::acme::identifier::{ChallengeType, Identifier};
use ca_core::acme::jwk::{dns01_txt_value, tls_alpn01_digest};
use ca_core::acme::nonce::NonceLedger;
use ca_core::acme::service::{AcmeService, ValidationJob};
use ca_core::acme::store::Validation;
use ca_core::acme::upkeep::RECLAIM_EVERY;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::dns;

/// How long one validation may take in all.
const DEADLINE: Duration = Duration::from_secs(20);

/// Where answered challenges go.
#[derive(Debug, Clone)]
pub struct Queue(mpsc::UnboundedSender<String>);

impl Queue {
    /// Queues challenge `id` for validation.
    pub fn send(&self, id: String) {
        if self.0.send(id).is_err() {
            tracing::error!("the ACME validation worker has stopped");
        }
    }
}

/// Where validation connects (`[acme]` in keyhold.toml).
#[derive(Debug, Clone)]
pub struct Validator {
    /// http-01's port.
    pub http01_port: u16,
    /// tls-alpn-01's port.
    pub tls_alpn01_port: u16,
    /// The DNS resolver asked for addresses and TXT records.
    pub resolver: SocketAddr,
}

/// How often redeemed nonces past their lifetime, and ACME state long expired, are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Starts the validation worker, which also takes over the validations of stopped nodes
/// every [`RECLAIM_EVERY`] and sweeps expired records every [`SWEEP_EVERY`]; it stops when
/// every [`Queue`] is dropped.
///
/// Fails if the thread or its runtime cannot start.
pub fn start(
    service: Arc<AcmeService>,
    nonces: Arc<dyn NonceLedger>,
    validator: Validator,
) -> Result<Queue> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let queue = Queue(tx);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the ACME validation runtime")?;
    let validator = Arc::new(validator);
    std::thread::Builder::new()
        .name("acme-validation".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(upkeep(service.clone(), validator.clone(), nonces));
                while let Some(id) = rx.recv().await {
                    let (service, validator) = (service.clone(), validator.clone());
                    tokio::spawn(async move { run(service, &validator, id).await });
                }
            });
        })
        .context("cannot start the ACME validation thread")?;
    Ok(queue)
}

async fn upkeep(
    service: Arc<AcmeService>,
    validator: Arc<Validator>,
    nonces: Arc<dyn NonceLedger>,
) {
    let mut every = tokio::time::interval(RECLAIM_EVERY);
    let mut last_sweep: Option<tokio::time::Instant> = None;
    let mut failing = false; // log a failing database once, not every RECLAIM_EVERY
    loop {
        every.tick().await;
        let s = service.clone();
        match tokio::task::spawn_blocking(move || s.reclaim_orphaned_challenges(SystemTime::now()))
            .await
        {
            Ok(Ok(ids)) => {
                failing = false;
                if !ids.is_empty() {
                    tracing::warn!(
                        challenges = ids.len(),
                        "acme: validating challenges a stopped node left processing"
                    );
                }
                for id in ids {
                    let (service, validator) = (service.clone(), validator.clone());
                    tokio::spawn(async move { run(service, &validator, id).await });
                }
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "acme: cannot reclaim challenges");
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::error!(error = %e, "acme: reclaim task failed"),
        }
        if last_sweep.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
            continue;
        }
        last_sweep = Some(tokio::time::Instant::now());
        let (n, s) = (nonces.clone(), service.clone());
        let swept = tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            (n.sweep_nonces(now), s.sweep_expired(now))
        })
        .await;
        match swept {
            Ok((nonces, state)) => {
                match nonces {
                    Ok(gone) => tracing::debug!(gone, "acme: expired nonce records swept"),
                    Err(e) => tracing::warn!(error = %e, "acme: cannot sweep nonce records"),
                }
                match state {
                    Ok(s) => tracing::debug!(
                        orders = s.orders,
                        authorizations = s.authzs,
                        challenges = s.challenges,
                        "acme: expired orders and authorizations swept"
                    ),
                    Err(e) => tracing::warn!(error = %e, "acme: cannot sweep expired state"),
                }
            }
            Err(e) => tracing::error!(error = %e, "acme: sweep task failed"),
        }
    }
}

async fn run(service: Arc<AcmeService>, validator: &Validator, id: String) {
    let s = service.clone();
    let job = match tokio::task::spawn_blocking(move || s.validation_job(&id)).await {
        Ok(Ok(Some(job))) => job,
        Ok(Ok(None)) => return,
        Ok(Err(p)) => {
            return tracing::warn!(error = %p.detail, "acme validation: cannot load the challenge");
        }
        Err(e) => return tracing::error!(error = %e, "acme validation task failed"),
    };
    let result = match tokio::time::timeout(DEADLINE, check(validator, &job)).await {
        Ok(Ok(())) => Validation::Valid,
        Ok(Err(why)) => Validation::Invalid(why),
        Err(_) => Validation::Invalid(format!(
            "validation took longer than {} s",
            DEADLINE.as_secs()
        )),
    };
    tracing::info!(challenge = %job.challenge.id, kind = job.challenge.kind.name(),
        valid = matches!(result, Validation::Valid), "acme validation");
    match tokio::task::spawn_blocking(move || service.settle(&job, &result)).await {
        Ok(Ok(())) => {}
        Ok(Err(p)) => {
            tracing::error!(error = %p.detail, "acme validation: cannot record the result")
        }
        Err(e) => tracing::error!(error = %e, "acme validation task failed"),
    }
}

/// Checks one challenge; the error says why it failed, for the client.
pub async fn check(v: &Validator, job: &ValidationJob) -> Result<(), String> {
    match job.challenge.kind {
        ChallengeType::Http01 => http01(v, job).await,
        ChallengeType::Dns01 => {
            let Identifier::Dns(name) = &job.identifier else {
                return Err("dns-01 validates DNS names only".into());
            };
            let want = dns01_txt_value(&job.key_authorization);
            let owner = format!("_acme-challenge.{name}");
            let got = dns::txt(v.resolver, &owner).await?;
            if got.contains(&want) {
                Ok(())
            } else {
                Err(format!(
                    "no TXT record at {owner} holds the expected value ({} found)",
                    got.len()
                ))
            }
        }
        ChallengeType::TlsAlpn01 => tls_alpn01(v, job).await,
    }
}

async fn addresses(v: &Validator, id: &Identifier) -> Result<Vec<IpAddr>, String> {
    match id {
        Identifier::Ip(ip) => Ok(vec![*ip]),
        Identifier::Dns(name) => {
            let found = dns::addresses(v.resolver, name).await?;
            if found.is_empty() {
                Err(format!("{name} has no A or AAAA record"))
            } else {
                Ok(found)
            }
        }
    }
}

async fn connect(v: &Validator, id: &Identifier, port: u16) -> Result<TcpStream, String> {
    let mut last = String::new();
    for ip in addresses(v, id).await? {
        let addr = SocketAddr::new(ip, port);
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// http-01 (RFC 8555 8.3): `GET /.well-known/acme-challenge/{token}` on port 80 (or the
/// configured port) must answer 200, perhaps after redirects (see [`super::http01`]), with
/// the key authorization (trailing whitespace ignored).
async fn http01(v: &Validator, job: &ValidationJob) -> Result<(), String> {
    let body = super::http01::fetch(v, &job.identifier, &job.challenge.token).await?;
    if body.trim_end() == job.key_authorization {
        Ok(())
    } else {
        Err("http-01: the response is not the key authorization".into())
    }
}

/// tls-alpn-01 (RFC 8737): a TLS handshake with ALPN `acme-tls/1` and SNI the name (for an
/// IP, its reverse-mapping name, RFC 8738 6) must present a certificate naming exactly the
/// identifier, with a critical acmeIdentifier extension holding SHA-256 of the key
/// authorization.
async fn tls_alpn01(v: &Validator, job: &ValidationJob) -> Result<(), String> {
    let stream = connect(v, &job.identifier, v.tls_alpn01_port).await?;
    let sni = match &job.identifier {
        Identifier::Dns(n) => n.clone(),
        Identifier::Ip(ip) => reverse_name(*ip),
    };
    let der = super::tls_alpn::handshake(stream, &sni).await?;
    super::tls_alpn::check_certificate(
        &der,
        &job.identifier,
        &tls_alpn01_digest(&job.key_authorization),
    )
}

/// The reverse-mapping DNS name of an address (`1.0.0.127.in-addr.arpa`).
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels: Vec<String> = Vec::with_capacity(34);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0F));
                labels.push(format!("{:x}", byte >> 4));
            }
            format!("{}.ip6.arpa", labels.join("."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_follow_rfc_8738() {
        assert_eq!(
            reverse_name("127.0.0.1".parse().unwrap_or(IpAddr::from([0; 4]))),
            "1.0.0.127.in-addr.arpa"
        );
    }
}
