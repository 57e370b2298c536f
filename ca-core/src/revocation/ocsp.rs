//! OCSP (RFC 6960, profiled by RFC 5019): parsing requests and signing responses with each
//! issuer's delegated responder key.
//!
//! Invariant: [`OcspResponder::respond`] never panics and never fails: any input, however
//! malformed, gets a DER OCSPResponse (`malformedRequest`, `unauthorized`, `tryLater` or
//! `internalError` when no status can be given), so the HTTP layer never answers 500.
//!
//! The structures are defined here with der's derive macros (the `ocsp` crate panics on valid
//! input and cannot sign with P-384; `x509-ocsp` is built on the previous x509-cert). Requests
//! are decoded with them; responses are written by hand with `tlv`, which keeps the
//! encoding of each field visible next to its RFC 6960 definition.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use der::asn1::{Any, Int, OctetString};
use der::{Decode, Encode, Sequence};
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;

use super::Reason;
use super::encoding::{tlv, whole_seconds};
use crate::issuer::{Issuer, IssuerId};
use crate::keystore::{self, Signer};
use crate::store::{CertStatus, Serial, StatusReader};

/// How long a response is valid by default (thisUpdate to nextUpdate).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(4 * 86_400);

/// The largest request accepted (RFC 5019 requests hold one CertID: about 100 octets).
pub const MAX_REQUEST_LEN: usize = 16 * 1024;

/// The most CertIDs answered in one request.
pub const MAX_CERT_IDS: usize = 64;

/// RFC 8954 2.1: a nonce is 1 to 32 octets.
pub const MAX_NONCE_LEN: usize = 32;

const ID_PKIX_OCSP_BASIC: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const ID_PKIX_OCSP_NONCE: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const ID_SHA1: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// OCSPResponseStatus (RFC 6960 4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStatus {
    /// successful (0): the response carries a signed BasicOCSPResponse.
    Successful,
    /// malformedRequest (1): the request did not parse or broke a rule.
    MalformedRequest,
    /// internalError (2): signing failed.
    InternalError,
    /// tryLater (3): the database could not be read.
    TryLater,
    /// unauthorized (6): a CertID names an issuer this responder does not serve.
    Unauthorized,
}

impl ResponseStatus {
    /// The ENUMERATED value.
    pub fn code(self) -> u8 {
        match self {
            ResponseStatus::Successful => 0,
            ResponseStatus::MalformedRequest => 1,
            ResponseStatus::InternalError => 2,
            ResponseStatus::TryLater => 3,
            ResponseStatus::Unauthorized => 6,
        }
    }
}

/// An OCSP response and what the HTTP layer needs for caching headers (RFC 5019 6).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The DER OCSPResponse (`application/ocsp-response`).
    pub der: Vec<u8>,
    /// Its status.
    pub status: ResponseStatus,
    /// thisUpdate and nextUpdate of a successful response (the same for every CertID).
    pub validity: Option<(SystemTime, SystemTime)>,
    /// Whether a nonce was echoed (such a response must not be cached).
    pub nonce: bool,
    /// Why it is not successful, for logs (never echoes request bytes).
    pub problem: Option<String>,
}

// ---- RFC 6960 4.1.1 request structures (decoded) ----

/// OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL }
#[derive(Debug, Clone, Sequence)]
struct OcspRequest {
    tbs_request: TbsRequest,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    optional_signature: Option<Any>,
}

/// TBSRequest ::= SEQUENCE { version [0] EXPLICIT Version DEFAULT v1, requestorName [1]
/// EXPLICIT GeneralName OPTIONAL, requestList SEQUENCE OF Request, requestExtensions [2]
/// EXPLICIT Extensions OPTIONAL }
#[derive(Debug, Clone, Sequence)]
struct TbsRequest {
    // Decoded as OPTIONAL rather than DEFAULT: some clients send v1 explicitly (not DER, but
    // harmless), and refusing them would help no one.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<u8>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    requestor_name: Option<Any>,
    request_list: Vec<Request>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    request_extensions: Option<Vec<Extension>>,
}

/// Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
#[derive(Debug, Clone, Sequence)]
struct Request {
    req_cert: CertId,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    single_request_extensions: Option<Vec<Extension>>,
}

/// CertID ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, issuerNameHash OCTET STRING,
/// issuerKeyHash OCTET STRING, serialNumber CertificateSerialNumber }
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
struct CertId {
    hash_algorithm: AlgorithmIdentifierOwned,
    issuer_name_hash: OctetString,
    issuer_key_hash: OctetString,
    // Any INTEGER, so that an odd serial gets `unknown` rather than `malformedRequest`.
    serial_number: Int,
}

// ---- The responder ----

/// A hash a CertID may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    fn from_oid(oid: &der::asn1::ObjectIdentifier) -> Option<Self> {
        [
            (ID_SHA1, HashAlg::Sha1),
            (ID_SHA256, HashAlg::Sha256),
            (ID_SHA384, HashAlg::Sha384),
            (ID_SHA512, HashAlg::Sha512),
        ]
        .into_iter()
        .find(|(o, _)| o == oid)
        .map(|(_, h)| h)
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

const HASHES: [HashAlg; 4] = [
    HashAlg::Sha1,
    HashAlg::Sha256,
    HashAlg::Sha384,
    HashAlg::Sha512,
];

/// An issuer this responder answers for, with its CertID hashes precomputed.
#[derive(Debug)]
struct Served {
    id: IssuerId,
    /// (hash, issuerNameHash, issuerKeyHash) for each hash in [`HASHES`].
    hashes: Vec<(HashAlg, Vec<u8>, Vec<u8>)>,
    /// The delegated responder's key.
    signer: Arc<dyn Signer>,
    /// ResponderID byKey: SHA-1 of the responder's public key (RFC 6960 4.2.1).
    responder_key_hash: Vec<u8>,
    /// `[0] EXPLICIT SEQUENCE OF Certificate` holding the responder's certificate.
    certs_field: Vec<u8>,
    /// The responder certificate's notAfter: no response is valid past it.
    responder_not_after: SystemTime,
}

/// Where a pre-signed response is filed: the DER of the CertID it answers (which the
/// response echoes, so a client's CertID must match it exactly).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Vec<u8>);

impl CacheKey {
    /// The key for a CertID, given as DER. Keys made here match those of
    /// [`OcspResponder::cache_key`] only for the exact DER a client sent.
    pub fn from_cert_id_der(der: Vec<u8>) -> Self {
        CacheKey(der)
    }

    /// The DER CertID this key is.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Served {
    /// The CertID a client computes for `serial` of this issuer with `alg`.
    fn cert_id(&self, alg: HashAlg, serial: &Serial) -> Result<CertId, String> {
        let oid = match alg {
            HashAlg::Sha1 => ID_SHA1,
            HashAlg::Sha256 => ID_SHA256,
            HashAlg::Sha384 => ID_SHA384,
            HashAlg::Sha512 => ID_SHA512,
        };
        let (_, name, key) = self
            .hashes
            .iter()
            .find(|(h, _, _)| *h == alg)
            .ok_or_else(|| format!("no {alg:?} hashes for issuer {}", self.id))?;
        let mut bytes =
            hex::decode(serial.as_str()).map_err(|e| format!("serial {serial}: {e}"))?;
        // A positive DER INTEGER: a leading zero octet when the top bit is set.
        if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        Ok(CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: Some(Any::from(der::asn1::Null)),
            },
            issuer_name_hash: OctetString::new(name.clone()).map_err(|e| e.to_string())?,
            issuer_key_hash: OctetString::new(key.clone()).map_err(|e| e.to_string())?,
            serial_number: Int::new(&bytes).map_err(|e| e.to_string())?,
        })
    }
}

/// Answers OCSP requests for every issuer that has a delegated responder.
#[derive(Debug)]
pub struct OcspResponder {
    served: Vec<Served>,
    /// The configured CA certificates whose parent is configured too: answered for from
    /// `ca_revocations` ([`cas`]).
    cas: Vec<cas::ChildCa>,
    status: Arc<dyn StatusReader>,
    validity: Duration,
}

/// Why a responder could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("ocsp responder for issuer {issuer}: {reason}")]
pub struct SetupError {
    issuer: String,
    reason: String,
}

impl OcspResponder {
    /// A responder for every issuer in `issuers` that has a delegated OCSP responder (others
    /// are not served: requests about them get `unauthorized`), reading statuses from
    /// `status`, with responses valid for `validity`. It answers for the certificates those
    /// issuers issued and for the CA certificates among `issuers` they signed.
    ///
    /// Fails if an issuer's certificate or responder certificate does not re-encode.
    pub fn new(
        issuers: &[Issuer],
        status: Arc<dyn StatusReader>,
        validity: Duration,
    ) -> Result<Self, SetupError> {
        let mut served = Vec::new();
        for issuer in issuers {
            let Some(responder) = &issuer.ocsp else {
                continue;
            };
            let fail = |reason: String| SetupError {
                issuer: issuer.id.to_string(),
                reason,
            };
            let name = issuer
                .ca
                .cert
                .cert
                .tbs_certificate()
                .subject()
                .to_der()
                .map_err(|e| fail(format!("subject does not encode: {e}")))?;
            let key = issuer
                .ca
                .signer
                .public_key()
                .subject_public_key()
                .map_err(|e| fail(e.to_string()))?;
            let responder_key = responder
                .signer
                .public_key()
                .subject_public_key()
                .map_err(|e| fail(e.to_string()))?;
            served.push(Served {
                id: issuer.id.clone(),
                hashes: HASHES
                    .into_iter()
                    .map(|h| (h, h.digest(&name), h.digest(&key)))
                    .collect(),
                signer: responder.signer.clone(),
                responder_key_hash: HashAlg::Sha1.digest(&responder_key),
                certs_field: tlv(0xa0, &tlv(0x30, &responder.cert.der)),
                responder_not_after: responder.cert.not_after(),
            });
        }
        Ok(OcspResponder {
            served,
            cas: cas::children(issuers),
            status,
            validity,
        })
    }

    /// The DER OCSPResponse for a DER OCSPRequest, at `now`: what `POST /ocsp` returns, and
    /// `GET /ocsp/{...}` after [`decode_get_path`].
    pub fn respond(&self, request_der: &[u8], now: SystemTime) -> Vec<u8> {
        self.answer(request_der, now).der
    }

    /// [`OcspResponder::respond`] with the status and validity the HTTP layer needs for its
    /// headers. Never fails: problems become unsuccessful OCSP responses.
    pub fn answer(&self, request_der: &[u8], now: SystemTime) -> Answer {
        match self.try_answer(request_der, now) {
            Ok(answer) => answer,
            Err((status, problem)) => Answer {
                der: error_response(status),
                status,
                validity: None,
                nonce: false,
                problem: Some(problem),
            },
        }
    }

    fn try_answer(
        &self,
        request_der: &[u8],
        now: SystemTime,
    ) -> Result<Answer, (ResponseStatus, String)> {
        let malformed = |why: String| (ResponseStatus::MalformedRequest, why);
        if request_der.len() > MAX_REQUEST_LEN {
            return Err(malformed(format!(
                "request of {} octets (at most {MAX_REQUEST_LEN})",
                request_der.len()
            )));
        }
        // 1. Parse and check the request.
        let request = OcspRequest::from_der(request_der)
            .map_err(|e| malformed(format!("not a DER OCSPRequest: {e}")))?;
        let tbs = &request.tbs_request;
        if let Some(v) = tbs.version
            && v != 0
        {
            return Err(malformed(format!("unknown request version {v}")));
        }
        if tbs.request_list.is_empty() {
            return Err(malformed("the request lists no certificate".into()));
        }
        if tbs.request_list.len() > MAX_CERT_IDS {
            return Err(malformed(format!(
                "the request lists {} certificates (at most {MAX_CERT_IDS})",
                tbs.request_list.len()
            )));
        }
        let nonce =
            nonce(tbs.request_extensions.as_deref().unwrap_or_default()).map_err(malformed)?;
        for r in &tbs.request_list {
            if let Some(critical) = r
                .single_request_extensions
                .iter()
                .flatten()
                .find(|e| e.critical)
            {
                return Err(malformed(format!(
                    "unsupported critical single request extension {}",
                    critical.extn_id
                )));
            }
        }

        // 2. Find the issuer of every CertID: all must be one issuer we serve, since one
        // delegated responder signs the whole response.
        let mut issuer: Option<&Served> = None;
        for r in &tbs.request_list {
            let found = self.issuer_of(&r.req_cert).ok_or_else(|| {
                (
                    ResponseStatus::Unauthorized,
                    "a CertID names an issuer this responder does not serve".to_owned(),
                )
            })?;
            match issuer {
                Some(i) if !std::ptr::eq(i, found) => {
                    return Err((
                        ResponseStatus::Unauthorized,
                        "the CertIDs name different issuers; ask about one issuer per request"
                            .into(),
                    ));
                }
                _ => issuer = Some(found),
            }
        }
        let Some(issuer) = issuer else {
            return Err(malformed("the request lists no certificate".into()));
        };
        let ids: Vec<&CertId> = tbs.request_list.iter().map(|r| &r.req_cert).collect();
        self.sign(issuer, &ids, nonce.as_ref(), now)
    }

    /// Steps 3 to 5: the statuses of `ids` (all of `issuer`), signed.
    fn sign(
        &self,
        issuer: &Served,
        ids: &[&CertId],
        nonce: Option<&Extension>,
        now: SystemTime,
    ) -> Result<Answer, (ResponseStatus, String)> {
        // 3. Each certificate's status. Clients refuse a response signed by an expired
        // responder certificate, and none may outlive it.
        let this_update = whole_seconds(now);
        if this_update > issuer.responder_not_after {
            return Err(internal(format!(
                "the OCSP responder certificate of {} expired at {}: run `keyhold ocsp renew --issuer {}`",
                issuer.id,
                super::rfc3339(issuer.responder_not_after),
                issuer.id
            )));
        }
        let next_update = (this_update + self.validity).min(issuer.responder_not_after);
        let this_update_der = generalized(this_update)?;
        let next_update_der = generalized(next_update)?;
        let mut responses = Vec::new();
        for id in ids {
            let status = self.status_of(&issuer.id, &id.serial_number)?;
            let cert_id = id.to_der().map_err(|e| internal(e.to_string()))?;
            let mut single = cert_id;
            single.extend(status);
            single.extend(&this_update_der);
            single.extend(tlv(0xa0, &next_update_der));
            responses.extend(tlv(0x30, &single));
        }

        // 4. ResponseData, signed by the issuer's delegated responder.
        let mut data = tlv(0xa2, &tlv(0x04, &issuer.responder_key_hash));
        data.extend(&this_update_der);
        data.extend(tlv(0x30, &responses));
        if let Some(ext) = nonce {
            let ext = ext.to_der().map_err(|e| internal(e.to_string()))?;
            data.extend(tlv(0xa1, &tlv(0x30, &ext)));
        }
        let data = tlv(0x30, &data);
        let signature = issuer
            .signer
            .sign(&data)
            // Most often the key store is away for a while: the client may retry.
            .map_err(|e| {
                (
                    ResponseStatus::TryLater,
                    format!("the responder key cannot sign: {e}"),
                )
            })?;
        keystore::verify(
            issuer.signer.algorithm(),
            issuer.signer.public_key(),
            &data,
            &signature,
        )
        .map_err(|e| internal(e.to_string()))?;
        let algorithm = AlgorithmIdentifierOwned {
            oid: issuer.signer.algorithm().oid(),
            parameters: None,
        }
        .to_der()
        .map_err(|e| internal(e.to_string()))?;
        let mut basic = data;
        basic.extend(algorithm);
        let mut bits = vec![0u8];
        bits.extend(signature);
        basic.extend(tlv(0x03, &bits));
        basic.extend(&issuer.certs_field);
        let basic = tlv(0x30, &basic);

        // 5. OCSPResponse { successful, [0] EXPLICIT ResponseBytes { id-pkix-ocsp-basic, basic } }
        let oid = ID_PKIX_OCSP_BASIC
            .to_der()
            .map_err(|e| internal(e.to_string()))?;
        let mut bytes = oid;
        bytes.extend(tlv(0x04, &basic));
        let mut response = tlv(0x0a, &[ResponseStatus::Successful.code()]);
        response.extend(tlv(0xa0, &tlv(0x30, &bytes)));
        Ok(Answer {
            der: tlv(0x30, &response),
            status: ResponseStatus::Successful,
            validity: Some((this_update, next_update)),
            nonce: nonce.is_some(),
            problem: None,
        })
    }

    /// For a request that a pre-signed response can answer (no nonce, exactly one CertID, of
    /// an issuer served here): the key under which [`OcspResponder::presign`] filed that
    /// response. `None` means: call [`OcspResponder::answer`].
    pub fn cache_key(&self, request_der: &[u8]) -> Option<CacheKey> {
        if request_der.len() > MAX_REQUEST_LEN {
            return None;
        }
        let request = OcspRequest::from_der(request_der).ok()?;
        let tbs = &request.tbs_request;
        let [single] = tbs.request_list.as_slice() else {
            return None;
        };
        let has_extensions = tbs
            .request_extensions
            .as_ref()
            .is_some_and(|e| !e.is_empty())
            || single.single_request_extensions.is_some();
        if has_extensions || tbs.version.is_some_and(|v| v != 0) {
            return None;
        }
        self.issuer_of(&single.req_cert)?;
        Some(CacheKey(single.req_cert.to_der().ok()?))
    }

    /// The issuer and serial a [`CacheKey`] from [`OcspResponder::cache_key`] asks about, so
    /// that an answer signed on demand can be kept beside those signed ahead of time.
    /// `None` for a serial that cannot be one of ours (not positive, over 20 octets).
    pub fn subject_of(&self, key: &CacheKey) -> Option<(IssuerId, Serial)> {
        let id = CertId::from_der(&key.0).ok()?;
        let served = self.issuer_of(&id)?;
        let bytes = id.serial_number.as_bytes();
        if bytes.is_empty() || bytes[0] & 0x80 != 0 || bytes.len() > 21 {
            return None;
        }
        Some((served.id.clone(), Serial::from_bytes(bytes)))
    }

    /// The certificates a request asks about, as (issuer, serial), for the CertIDs of issuers
    /// served here whose serial could be one of ours; empty for a request that does not
    /// parse. Lets a caller tell a question about its own certificates from one about serials
    /// it never issued before anything is signed.
    pub fn subjects(&self, request_der: &[u8]) -> Vec<(IssuerId, Serial)> {
        if request_der.len() > MAX_REQUEST_LEN {
            return Vec::new();
        }
        let Ok(request) = OcspRequest::from_der(request_der) else {
            return Vec::new();
        };
        request
            .tbs_request
            .request_list
            .iter()
            .take(MAX_CERT_IDS)
            .filter_map(|r| {
                let served = self.issuer_of(&r.req_cert)?;
                let bytes = r.req_cert.serial_number.as_bytes();
                if bytes.is_empty() || bytes[0] & 0x80 != 0 || bytes.len() > 21 {
                    return None;
                }
                Some((served.id.clone(), Serial::from_bytes(bytes)))
            })
            .collect()
    }

    /// Signs, ahead of time, the responses for `serial` of `issuer` to the CertIDs clients
    /// send (SHA-1, as openssl, Go and Windows do by default, and SHA-256, both with NULL
    /// hash parameters), each with the key [`OcspResponder::cache_key`] gives for a request
    /// carrying that CertID. Call it again after a revocation, and before half of the
    /// responses' validity has passed.
    ///
    /// Fails with the OCSP status (`unauthorized` for an issuer not served here, `tryLater`,
    /// `internalError`) and why.
    pub fn presign(
        &self,
        issuer: &IssuerId,
        serial: &Serial,
        now: SystemTime,
    ) -> Result<Vec<(CacheKey, Answer)>, (ResponseStatus, String)> {
        let served = self
            .served
            .iter()
            .find(|s| &s.id == issuer)
            .ok_or_else(|| {
                (
                    ResponseStatus::Unauthorized,
                    format!("issuer {issuer} has no OCSP responder here"),
                )
            })?;
        let mut out = Vec::new();
        for alg in [HashAlg::Sha1, HashAlg::Sha256] {
            let id = served.cert_id(alg, serial).map_err(internal)?;
            let key = CacheKey(id.to_der().map_err(|e| internal(e.to_string()))?);
            out.push((key, self.sign(served, &[&id], None, now)?));
        }
        Ok(out)
    }

    /// How long the answers it signs are valid (thisUpdate to nextUpdate).
    pub fn validity(&self) -> Duration {
        self.validity
    }

    fn issuer_of(&self, id: &CertId) -> Option<&Served> {
        let alg = HashAlg::from_oid(&id.hash_algorithm.oid)?;
        self.served.iter().find(|s| {
            s.hashes.iter().any(|(h, name, key)| {
                *h == alg
                    && name.as_slice() == id.issuer_name_hash.as_bytes()
                    && key.as_slice() == id.issuer_key_hash.as_bytes()
            })
        })
    }

    /// The encoded CertStatus (RFC 6960 4.2.1): good `[0] IMPLICIT NULL`, revoked
    /// `[1] IMPLICIT RevokedInfo`, unknown `[2] IMPLICIT NULL`.
    fn status_of(
        &self,
        issuer: &IssuerId,
        serial: &Int,
    ) -> Result<Vec<u8>, (ResponseStatus, String)> {
        const UNKNOWN: [u8; 2] = [0x82, 0x00];
        let bytes = serial.as_bytes();
        // RFC 5280 4.1.2.2: serials are positive and at most 20 octets (21 with DER's
        // leading zero); anything else was never issued here.
        if bytes.is_empty() || bytes[0] & 0x80 != 0 || bytes.len() > 21 {
            return Ok(UNKNOWN.to_vec());
        }
        let serial = Serial::from_bytes(bytes);
        let status = self
            .status
            .revocation_status(issuer, &serial)
            .and_then(|found| match found {
                Some(found) => Ok(Some(found)),
                None => self.ca_status(issuer, &serial),
            })
            .map_err(|e| {
                (
                    ResponseStatus::TryLater,
                    format!("cannot read the status of {serial}: {e}"),
                )
            })?;
        Ok(match status {
            Some(s) if s.status == CertStatus::Valid => vec![0x80, 0x00],
            Some(s) if s.status == CertStatus::Revoked => {
                let Some((at, reason)) = s.revoked else {
                    return Err(internal(format!("{serial} is revoked without a record")));
                };
                let mut info = generalized(at)?;
                // RFC 5280 5.3.1, as on the CRL: no reason rather than unspecified.
                if reason != Reason::Unspecified {
                    info.extend(tlv(0xa0, &tlv(0x0a, &[reason.code()])));
                }
                tlv(0xa1, &info)
            }
            // Reserved (being signed), failed (never issued), or not ours.
            _ => UNKNOWN.to_vec(),
        })
    }
}

fn internal(why: String) -> (ResponseStatus, String) {
    (ResponseStatus::InternalError, why)
}

/// The nonce extension to echo, if the request has one (RFC 8954).
fn nonce(extensions: &[Extension]) -> Result<Option<Extension>, String> {
    let mut found = None;
    for ext in extensions {
        if ext.extn_id == ID_PKIX_OCSP_NONCE {
            if found.is_some() {
                return Err("the request has two nonces".into());
            }
            // Nonce ::= OCTET STRING (SIZE(1..32)) inside extnValue; a few clients put the
            // raw octets there instead, so accept both.
            let value = ext.extn_value.as_bytes();
            let len = OctetString::from_der(value)
                .map(|o| o.as_bytes().len())
                .unwrap_or(value.len());
            if len == 0 || len > MAX_NONCE_LEN {
                return Err(format!(
                    "nonce of {len} octets (RFC 8954: 1 to {MAX_NONCE_LEN})"
                ));
            }
            found = Some(ext.clone());
        } else if ext.critical {
            return Err(format!(
                "unsupported critical request extension {}",
                ext.extn_id
            ));
        }
    }
    Ok(found)
}

fn generalized(t: SystemTime) -> Result<Vec<u8>, (ResponseStatus, String)> {
    super::encoding::generalized_time(t)
        .and_then(|g| Ok(g.to_der()?))
        .map_err(|e| internal(e.to_string()))
}

/// An unsuccessful OCSPResponse: `SEQUENCE { ENUMERATED status }`.
pub fn error_response(status: ResponseStatus) -> Vec<u8> {
    tlv(0x30, &tlv(0x0a, &[status.code()]))
}

/// Why a `GET /ocsp/{...}` path did not decode.
#[derive(Debug, thiserror::Error)]
#[error("invalid OCSP GET request: {0}")]
pub struct GetPathError(String);

/// Decodes the request in a `GET /ocsp/{request}` path (RFC 5019 5: the DER request, base64,
/// then URL-encoded). Accepts what real clients send: percent-encoded or not, standard or
/// URL-safe alphabet, with or without `=` padding, `+` turned into a space. `path` is
/// everything after `/ocsp/` (standard base64 may itself contain `/`).
///
/// Fails if it is not base64 after percent-decoding, or too long. The bytes are not checked
/// to be an OCSPRequest: [`OcspResponder::respond`] does that (and answers
/// `malformedRequest`).
pub fn decode_get_path(path: &str) -> Result<Vec<u8>, GetPathError> {
    // Base64 of MAX_REQUEST_LEN octets, percent-encoded at worst.
    if path.len() > MAX_REQUEST_LEN * 4 {
        return Err(GetPathError("the path is too long".into()));
    }
    let raw = path.as_bytes();
    let mut text = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| GetPathError(format!("bad percent-escape at offset {i}")))?;
            text.push(char::from(hex));
            i += 3;
        } else {
            text.push(char::from(b));
            i += 1;
        }
    }
    let normalised: String = text
        .trim_start_matches('/')
        .chars()
        .map(|c| match c {
            // A `+` some HTTP layers turned into a space (never valid base64 itself).
            '-' | ' ' => '+',
            '_' => '/',
            c => c,
        })
        .collect::<String>()
        .trim_end_matches('=')
        .to_owned();
    if normalised.is_empty() {
        return Err(GetPathError("the path holds no request".into()));
    }
    use base64ct::Encoding;
    base64ct::Base64Unpadded::decode_vec(&normalised)
        .map_err(|_| GetPathError("the path is not base64".into()))
}

mod cas;
#[cfg(test)]
mod tests;
