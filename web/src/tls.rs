//! The HTTPS listener's certificate: Keyhold issues it to itself from its own issuing CA at
//! start, and a background thread renews it once two thirds of its life have passed,
//! swapping it in without a restart.
//!
//! The private key is a fresh P-256 key made in memory for each certificate; it is never
//! written to disk, logged or shown by `Debug`. The certificate goes through the normal
//! issuance cycle ([`Ca::issue_own_server_cert`]): recorded in the database and audited with
//! the requester [`ca_core::issuance::OWN_SERVER_REQUESTER`]. The chain served is the leaf
//! followed by the issuing CA certificates below the root (clients hold the root, from
//! `/ca/root.pem` on the plain listener).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use ca_core::issuance::{Ca, Issued};
use ca_core::keystore::SpkiDer;
use ca_core::policy::San;
use ca_core::store::Serial;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The profile the server's certificate is issued under unless `--tls-profile` says otherwise.
pub const DEFAULT_PROFILE: &str = "tls-server";

/// The longest the server's certificate lives (less if the profile's maximum is shorter).
pub const LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// After a failed renewal, the next attempt comes this much later.
pub const RETRY_AFTER: Duration = Duration::from_secs(600);

/// One issued server certificate with its key, ready for rustls.
pub struct ServerCert {
    /// The chain and signing key handed to rustls.
    pub certified: Arc<CertifiedKey>,
    /// Its serial.
    pub serial: Serial,
    /// SHA-256 of the leaf, colon-separated hex.
    pub fingerprint: String,
    /// The issuer's id.
    pub issuer: String,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for ServerCert {
    // The key is not shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert")
            .field("serial", &self.serial)
            .field("fingerprint", &self.fingerprint)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What the server's certificate names and under which profile it is issued.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The profile (normally [`DEFAULT_PROFILE`]).
    pub profile: String,
    /// Its subject alternative names.
    pub names: Vec<San>,
}

impl Identity {
    /// The names for a listener on `tls_ip` with the CA's `base_url`: `localhost`,
    /// 127.0.0.1, `tls_ip` unless it is unspecified (0.0.0.0 or ::), and the host of
    /// `base_url`, each once.
    pub fn new(profile: &str, tls_ip: IpAddr, base_url: &str) -> Identity {
        let mut names = vec![
            San::Dns("localhost".into()),
            San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        if !tls_ip.is_unspecified() {
            names.push(San::Ip(tls_ip));
        }
        if let Some(host) = url_host(base_url) {
            names.push(host);
        }
        let mut unique = Vec::new();
        for n in names {
            if !unique.contains(&n) {
                unique.push(n);
            }
        }
        Identity {
            profile: profile.to_owned(),
            names: unique,
        }
    }
}

/// The host of an `http(s)://host[:port][/...]` URL as a SAN, if it has one.
fn url_host(url: &str) -> Option<San> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.split(':').next()?
    };
    if host.is_empty() {
        return None;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => None,
        Ok(ip) => Some(San::Ip(ip)),
        Err(_) => Some(San::Dns(host.to_ascii_lowercase())),
    }
}

/// Makes a fresh P-256 key in memory and has the CA issue its certificate for `who` at `now`.
///
/// Fails if the key cannot be made, the CA refuses or fails to issue, or rustls cannot use
/// the result.
pub fn issue(ca: &Ca, who: &Identity, source: &str, now: SystemTime) -> Result<ServerCert> {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
        .map_err(|_| anyhow!("cannot generate the HTTPS server key"))?;
    let spki = key
        .public_key()
        .as_der()
        .map_err(|_| anyhow!("cannot encode the HTTPS server's public key"))?;
    let spki = SpkiDer::from_der_unchecked(spki.as_ref().to_vec());
    let issued = ca
        .issue_own_server_cert(&who.profile, &spki, &who.names, LIFETIME, source, now)
        .with_context(|| {
            format!(
                "cannot issue the HTTPS server certificate (profile {}; use --tls-profile \
                 NAME, or --tls-listen none to serve without HTTPS)",
                who.profile
            )
        })?;
    let pkcs8 = key
        .to_pkcs8v1()
        .map_err(|_| anyhow!("cannot encode the HTTPS server key for rustls"))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()));
    certified(&issued, der)
}

fn certified(issued: &Issued, key: PrivateKeyDer<'static>) -> Result<ServerCert> {
    let mut chain = vec![CertificateDer::from(issued.cert.der.clone())];
    chain.extend(
        issued
            .chain
            .iter()
            .map(|c| CertificateDer::from(c.der.clone())),
    );
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .context("rustls refused the HTTPS server certificate")?;
    let issuer = issued.cert.cert.tbs_certificate().issuer().to_string();
    Ok(ServerCert {
        certified: Arc::new(certified),
        serial: issued.serial.clone(),
        fingerprint: issued.cert.fingerprint_sha256(),
        issuer,
        not_before: issued
            .cert
            .cert
            .tbs_certificate()
            .validity()
            .not_before
            .to_system_time(),
        not_after: issued.cert.not_after(),
    })
}

/// Hands rustls the current certificate; [`Resolver::set`] swaps in a renewed one for the
/// handshakes that follow (connections already open keep theirs).
pub struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// Starts with `cert`.
    pub fn new(cert: &ServerCert) -> Resolver {
        Resolver {
            current: RwLock::new(cert.certified.clone()),
        }
    }

    /// Serves `cert` from the next handshake on.
    pub fn set(&self, cert: &ServerCert) {
        // A panic while holding the lock cannot leave a half-written Arc: keep going.
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = cert.certified.clone();
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// A rustls server config (TLS 1.2 and 1.3, rustls's default suites, aws-lc-rs) answering
/// with `resolver`'s certificate; ALPN offers HTTP/1.1.
///
/// Fails only if rustls rejects its own defaults.
pub fn server_config(resolver: Arc<Resolver>) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("cannot configure TLS")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How long to wait, at `now`, before renewing a certificate valid from `not_before` to
/// `not_after`: until two thirds of its life have passed (zero if that time has come, or
/// if the validity is empty or reversed).
pub fn renew_in(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> Duration {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    if life.is_zero() {
        return Duration::ZERO;
    }
    let due = not_before + life / 3 * 2;
    due.duration_since(now).unwrap_or_default()
}

/// The background renewal; stops when dropped (after any renewal in progress finishes).
#[derive(Debug)]
pub struct Renewer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Renewer {
    /// Starts renewing `first` (already served by `resolver`) for `who`, issuing each new
    /// certificate through `ca`.
    ///
    /// Fails if the thread cannot be started.
    pub fn start(
        ca: Arc<Ca>,
        resolver: Arc<Resolver>,
        who: Identity,
        first: &ServerCert,
    ) -> Result<Renewer> {
        let (stop, stopped) = mpsc::channel::<()>();
        let (mut not_before, mut not_after) = (first.not_before, first.not_after);
        let thread = std::thread::Builder::new()
            .name("tls-renewal".into())
            .spawn(move || {
                let mut wait = renew_in(not_before, not_after, SystemTime::now());
                loop {
                    // A message or a dropped sender both mean stop.
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    match issue(&ca, &who, "renewal", SystemTime::now()) {
                        Ok(cert) => {
                            resolver.set(&cert);
                            tracing::info!(
                                serial = %cert.serial,
                                sha256 = %cert.fingerprint,
                                "renewed the HTTPS server certificate"
                            );
                            (not_before, not_after) = (cert.not_before, cert.not_after);
                            wait = renew_in(not_before, not_after, SystemTime::now());
                        }
                        Err(e) => {
                            tracing::error!(
                                error = format!("{e:#}"),
                                retry_in_s = RETRY_AFTER.as_secs(),
                                "cannot renew the HTTPS server certificate"
                            );
                            wait = RETRY_AFTER;
                        }
                    }
                }
            })
            .context("cannot start the certificate renewal thread")?;
        Ok(Renewer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn renewal_waits_for_two_thirds_of_the_life() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 30 * DAY;
        assert_eq!(renew_in(start, end, start), 20 * DAY);
        assert_eq!(renew_in(start, end, start + 5 * DAY), 15 * DAY);
    }

    #[test]
    fn renewal_is_due_at_and_after_two_thirds_and_after_expiry() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 30 * DAY;
        assert_eq!(renew_in(start, end, start + 20 * DAY), Duration::ZERO);
        assert_eq!(renew_in(start, end, start + 25 * DAY), Duration::ZERO);
        assert_eq!(renew_in(start, end, end + DAY), Duration::ZERO);
    }

    #[test]
    fn renewal_of_an_empty_or_reversed_validity_is_due_now() {
        let t = SystemTime::UNIX_EPOCH + 1000 * DAY;
        assert_eq!(renew_in(t, t, t), Duration::ZERO);
        assert_eq!(renew_in(t, t - DAY, t - 2 * DAY), Duration::ZERO);
        assert_eq!(renew_in(t, t - DAY, t), Duration::ZERO);
    }

    #[test]
    fn names_cover_loopback_the_listen_address_and_the_base_url_host() {
        let who = Identity::new(
            "tls-server",
            "10.1.2.3".parse().unwrap(),
            "http://ca.example.internal:8080/x",
        );
        assert_eq!(
            who.names,
            vec![
                San::Dns("localhost".into()),
                San::Ip("127.0.0.1".parse().unwrap()),
                San::Ip("10.1.2.3".parse().unwrap()),
                San::Dns("ca.example.internal".into()),
            ]
        );
        // Unspecified and repeated addresses are left out.
        let who = Identity::new("p", "0.0.0.0".parse().unwrap(), "http://127.0.0.1:8080");
        assert_eq!(who.names.len(), 2);
        let who = Identity::new("p", "::".parse().unwrap(), "https://[::1]:8443/");
        assert_eq!(who.names[2], San::Ip("::1".parse().unwrap()));
    }

    #[test]
    fn url_hosts_are_parsed() {
        assert_eq!(
            url_host("http://Host.Corp"),
            Some(San::Dns("host.corp".into()))
        );
        assert_eq!(url_host("http://u@h:1/p"), Some(San::Dns("h".into())));
        assert_eq!(url_host("http://0.0.0.0:8080"), None);
        assert_eq!(url_host("http://"), None);
    }
}
