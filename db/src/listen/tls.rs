//! TLS for the listening connection over rustls (aws-lc-rs), verifying as libpq's `sslmode`
//! says: `prefer`/`require` encrypt without verifying, `verify-ca` checks the chain to
//! `sslrootcert`, `verify-full` the chain and that the certificate names the host.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::Socket;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::options::{Mode, Split};

/// The `postgres` crate's TLS connector for one [`Mode`].
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    config: Arc<ClientConfig>,
}

impl Tls {
    /// The connector for `split`'s mode, trusting the certificates in its PEM file `root`
    /// when it verifies, and showing its client certificate if it names one. Fails if a
    /// file cannot be read or holds nothing usable.
    pub(crate) fn new(split: &Split) -> Result<Tls, String> {
        let (mode, root) = (split.mode, split.root.as_deref());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, root) {
            (Mode::VerifyCa | Mode::VerifyFull, Some(root)) => {
                let roots = Arc::new(roots(root)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| format!("cannot use sslrootcert: {e}"))?;
                if mode == Mode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
            (Mode::VerifyCa | Mode::VerifyFull, None) => {
                return Err("sslmode=verify-ca and verify-full need sslrootcert".into());
            }
            _ => Arc::new(Unverified(algorithms)),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &split.client {
            None => config.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cannot read sslcert {}: {e}", cert.display()))?;
                if chain.is_empty() {
                    return Err(format!("sslcert {} holds no certificate", cert.display()));
                }
                // The key's own error could quote it: say only which file.
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|_| {
                    format!(
                        "cannot read sslkey {} (an unencrypted PEM private key)",
                        key.display()
                    )
                })?;
                config
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| format!("cannot use sslcert and sslkey: {e}"))?
            }
        };
        Ok(Tls {
            config: Arc::new(config),
        })
    }
}

/// The certificates of the PEM file `path`.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?
    {
        let cert = cert.map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a certificate in sslrootcert {shown} is unusable: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {shown} holds no certificate"));
    }
    Ok(roots)
}

impl MakeTlsConnect<Socket> for Tls {
    type Stream = Stream;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connect> {
        // Empty for a unix socket, where PostgreSQL offers no TLS.
        let name = ServerName::try_from(domain.to_owned()).ok();
        Ok(Connect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One handshake with the host `name`.
#[derive(Debug)]
pub(crate) struct Connect {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
}

type Handshake = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

impl TlsConnect<Socket> for Connect {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Handshake;

    fn connect(self, socket: Socket) -> Handshake {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "no host name for TLS")
            })?;
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, socket)
                .await?;
            Ok(Stream(stream))
        })
    }
}

/// The encrypted connection.
#[derive(Debug)]
pub(crate) struct Stream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for Stream {
    /// `tls-server-end-point` (RFC 5929): the hash of the server's certificate, with the
    /// hash of its signature (SHA-256 for MD5, SHA-1 and anything else), so SCRAM binds the
    /// login to this TLS connection (`channel_binding=require` works as with libpq).
    fn channel_binding(&self) -> ChannelBinding {
        let leaf = self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        match leaf.and_then(|der| end_point(der)) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// The `tls-server-end-point` hash of the certificate `der`, if it can be read.
fn end_point(der: &[u8]) -> Option<Vec<u8>> {
    use const_oid::db::rfc5912::{
        ECDSA_WITH_SHA_384, ECDSA_WITH_SHA_512, SHA_384_WITH_RSA_ENCRYPTION,
        SHA_512_WITH_RSA_ENCRYPTION,
    };
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let oid = cert.signature_algorithm().oid;
    let hash = if oid == ECDSA_WITH_SHA_384 || oid == SHA_384_WITH_RSA_ENCRYPTION {
        &aws_lc_rs::digest::SHA384
    } else if oid == ECDSA_WITH_SHA_512 || oid == SHA_512_WITH_RSA_ENCRYPTION {
        &aws_lc_rs::digest::SHA512
    } else {
        &aws_lc_rs::digest::SHA256
    };
    Some(aws_lc_rs::digest::digest(hash, der).as_ref().to_vec())
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `verify-ca`: the chain to the roots, whatever host the certificate names.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name: a wrong name means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: any certificate (encryption against a passive listener only, as
/// libpq), but the handshake's signatures are still checked.
struct Unverified(WebPkiSupportedAlgorithms);

impl fmt::Debug for Unverified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Unverified")
    }
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
