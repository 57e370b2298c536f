//! The TLS side of tls-alpn-01 (RFC 8737): a handshake that accepts whatever certificate the
//! responder presents (it is self-signed by design; possession of its key is still proven by
//! the handshake signature), then the checks the RFC makes of that certificate.

use std::sync::Arc;

use aws_lc_rs::signature::{self, VerificationAlgorithm};
use der::Decode;
use der::asn1::OctetString;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use ca_core::acme::identifier::Identifier;

/// RFC 8737 3: the ALPN protocol.
const ACME_TLS: &[u8] = b"acme-tls/1";
/// RFC 8737 3: id-pe-acmeIdentifier.
const ACME_IDENTIFIER: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.31");
const SAN: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("2.5.29.17");

#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The certificate is judged by `check_certificate` instead: RFC 8737 wants a
        // self-signed one with the acmeIdentifier extension, not a chain to a root.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.iter().map(|(s, _)| *s).collect()
    }
}

/// The handshake signature schemes accepted, with their verification algorithm.
const SCHEMES: &[(SignatureScheme, &dyn VerificationAlgorithm)] = &[
    (
        SignatureScheme::ECDSA_NISTP256_SHA256,
        &signature::ECDSA_P256_SHA256_ASN1,
    ),
    (
        SignatureScheme::ECDSA_NISTP384_SHA384,
        &signature::ECDSA_P384_SHA384_ASN1,
    ),
    (SignatureScheme::ED25519, &signature::ED25519),
    (
        SignatureScheme::RSA_PSS_SHA256,
        &signature::RSA_PSS_2048_8192_SHA256,
    ),
    (
        SignatureScheme::RSA_PSS_SHA384,
        &signature::RSA_PSS_2048_8192_SHA384,
    ),
    (
        SignatureScheme::RSA_PSS_SHA512,
        &signature::RSA_PSS_2048_8192_SHA512,
    ),
    (
        SignatureScheme::RSA_PKCS1_SHA256,
        &signature::RSA_PKCS1_2048_8192_SHA256,
    ),
    (
        SignatureScheme::RSA_PKCS1_SHA384,
        &signature::RSA_PKCS1_2048_8192_SHA384,
    ),
    (
        SignatureScheme::RSA_PKCS1_SHA512,
        &signature::RSA_PKCS1_2048_8192_SHA512,
    ),
];

/// Checks the handshake signature with the certificate's key, read directly from its SPKI:
/// webpki would refuse the certificate for the critical acmeIdentifier extension it does not
/// know (RFC 8737 makes it critical on purpose).
fn verify_handshake(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let bad = || rustls::Error::General("tls-alpn-01: bad handshake signature".into());
    let cert = Certificate::from_der(cert.as_ref()).map_err(|_| bad())?;
    let key = cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes();
    let alg = SCHEMES
        .iter()
        .find(|(s, _)| *s == dss.scheme)
        .map(|(_, a)| *a)
        .ok_or_else(bad)?;
    signature::UnparsedPublicKey::new(alg, key)
        .verify(message, dss.signature())
        .map_err(|_| bad())?;
    Ok(HandshakeSignatureValid::assertion())
}

/// A TLS client handshake over `stream` with SNI `name` and ALPN `alpn` that accepts any
/// certificate, but checks the handshake signature with the presented certificate's key.
/// Used by tls-alpn-01 and by http-01 redirects to https (RFC 8555 10.2: not validated).
pub async fn connect_unverified(
    stream: TcpStream,
    name: ServerName<'static>,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("handshake failed: {e}"))
}

/// Runs the handshake with ALPN `acme-tls/1` and SNI `sni` over `stream`; returns the
/// presented certificate's DER.
pub async fn handshake(stream: TcpStream, sni: &str) -> Result<Vec<u8>, String> {
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|_| format!("tls-alpn-01: {sni:?} is not a server name"))?;
    let tls = connect_unverified(stream, name, ACME_TLS)
        .await
        .map_err(|e| format!("tls-alpn-01: {e}"))?;
    let (_, session) = tls.get_ref();
    if session.alpn_protocol() != Some(ACME_TLS) {
        return Err("tls-alpn-01: the server did not negotiate acme-tls/1".into());
    }
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| "tls-alpn-01: the server presented no certificate".into())
}

/// RFC 8737 3: the certificate names exactly `id` in its SAN and carries a critical
/// acmeIdentifier extension whose value is `digest`.
pub fn check_certificate(der: &[u8], id: &Identifier, digest: &[u8; 32]) -> Result<(), String> {
    let cert =
        Certificate::from_der(der).map_err(|_| "tls-alpn-01: the certificate does not decode")?;
    let exts = cert
        .tbs_certificate()
        .extensions()
        .map(|e| e.as_slice())
        .unwrap_or_default();
    let acme = exts
        .iter()
        .find(|e| e.extn_id == ACME_IDENTIFIER)
        .ok_or("tls-alpn-01: the certificate has no acmeIdentifier extension")?;
    if !acme.critical {
        return Err("tls-alpn-01: the acmeIdentifier extension is not critical".into());
    }
    let value = OctetString::from_der(acme.extn_value.as_bytes())
        .map_err(|_| "tls-alpn-01: the acmeIdentifier extension does not decode")?;
    if value.as_bytes() != digest {
        return Err("tls-alpn-01: the acmeIdentifier does not match the key authorization".into());
    }
    let san = exts
        .iter()
        .find(|e| e.extn_id == SAN)
        .ok_or("tls-alpn-01: the certificate has no subjectAltName")?;
    let names = SubjectAltName::from_der(san.extn_value.as_bytes())
        .map_err(|_| "tls-alpn-01: the subjectAltName does not decode")?;
    let matches = |n: &GeneralName| match (n, id) {
        (GeneralName::DnsName(d), Identifier::Dns(want)) => d.as_str().eq_ignore_ascii_case(want),
        (GeneralName::IpAddress(ip), Identifier::Ip(want)) => match want {
            std::net::IpAddr::V4(v4) => ip.as_bytes() == v4.octets(),
            std::net::IpAddr::V6(v6) => ip.as_bytes() == v6.octets(),
        },
        _ => false,
    };
    if names.0.len() == 1 && names.0.iter().all(matches) {
        Ok(())
    } else {
        Err("tls-alpn-01: the certificate must name exactly the identifier".into())
    }
}
