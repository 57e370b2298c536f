//! ACME requests as flattened JWS (RFC 8555 6.2, RFC 7515 7.2.2).
//!
//! Invariant: a [`Jws`] has a supported asymmetric `alg` (never `none` or a MAC), exactly one
//! of `kid` and `jwk`, a `url`, no unprotected header, and came from at most
//! [`MAX_JWS_BYTES`]; [`Jws::verify`] is the only way to its payload.

use serde_json::{Map, Value};

use super::jwk::Jwk;
use super::{AcmeProblem, ProblemKind, b64url_decode};

/// The largest request body accepted, in bytes. A 50-name order with a 4096-bit RSA key's
/// CSR is under 10 KiB; 64 KiB leaves room and bounds the work an unauthenticated sender
/// can cause.
pub const MAX_JWS_BYTES: usize = 64 * 1024;

/// The JWS algorithms accepted for account and certificate keys (RFC 8555 6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsAlg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl JwsAlg {
    /// Reads an `alg` value. `none` and MAC algorithms (RFC 8555 6.2: "MUST NOT be none or a
    /// MAC-based algorithm") and anything unknown fail with `badSignatureAlgorithm`.
    pub fn parse(alg: &str) -> Result<Self, AcmeProblem> {
        match alg {
            "ES256" => Ok(Self::Es256),
            "ES384" => Ok(Self::Es384),
            "RS256" => Ok(Self::Rs256),
            "EdDSA" => Ok(Self::EdDsa),
            other => Err(AcmeProblem::new(
                ProblemKind::BadSignatureAlgorithm,
                format!(
                    "alg {other:?} is not accepted; use one of {}",
                    Self::ACCEPTED
                ),
            )),
        }
    }

    /// The accepted algorithms, as the `algorithms` member of a badSignatureAlgorithm
    /// problem lists them.
    pub const ACCEPTED: &'static str = "ES256, ES384, RS256, EdDSA";

    /// The name as JWS spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// How a request names its signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwsKey {
    /// `kid`: the account URL, for requests by an existing account.
    Kid(String),
    /// `jwk`: the key itself, for newAccount and revocation by the certificate's key.
    Jwk(Jwk),
}

/// Which way of naming the key a resource requires (RFC 8555 6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    /// Only `jwk` (newAccount, keyChange's inner JWS).
    Jwk,
    /// Only `kid` (every request by an account).
    Kid,
    /// Either (revokeCert: by the account or by the certificate's key).
    Either,
}

/// A parsed, not yet verified flattened JWS.
#[derive(Debug, Clone)]
pub struct Jws {
    /// The signature algorithm.
    pub alg: JwsAlg,
    /// The signing key, by reference or by value.
    pub key: JwsKey,
    /// The anti-replay nonce, if present (required on outer requests, see [`Jws::nonce`]).
    nonce: Option<String>,
    /// The URL the client signed for.
    pub url: String,
    protected_b64: String,
    payload_b64: String,
    signature: Vec<u8>,
}

fn string_member<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<&'a str, AcmeProblem> {
    object
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| AcmeProblem::malformed(format!("{what} has no string member \"{name}\"")))
}

impl Jws {
    /// Parses a request body. Fails with `malformed` for a body over [`MAX_JWS_BYTES`], JSON
    /// that is not a flattened JWS, an unprotected header, a missing `url`, or both or
    /// neither of `kid` and `jwk`; `badSignatureAlgorithm` for `none`, MACs and unknown
    /// algorithms; `badPublicKey` for an unacceptable `jwk`.
    pub fn parse(body: &[u8]) -> Result<Self, AcmeProblem> {
        if body.len() > MAX_JWS_BYTES {
            return Err(AcmeProblem::malformed(format!(
                "request body of {} bytes exceeds the limit of {MAX_JWS_BYTES}",
                body.len()
            )));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| AcmeProblem::malformed(format!("request body is not JSON: {e}")))?;
        Self::from_json(&value)
    }

    /// Reads a flattened JWS from JSON already parsed (the inner JWS of a key change and an
    /// external account binding arrive inside a payload). Fails as [`Jws::parse`] does.
    pub fn from_json(value: &Value) -> Result<Self, AcmeProblem> {
        let object = value
            .as_object()
            .ok_or_else(|| AcmeProblem::malformed("JWS is not a JSON object"))?;
        if object.contains_key("signatures") {
            return Err(AcmeProblem::malformed(
                "JWS must use the flattened JSON serialization, not \"signatures\"",
            ));
        }
        if object.contains_key("header") {
            // RFC 8555 6.2: "The JWS Unprotected Header MUST NOT be used."
            return Err(AcmeProblem::malformed(
                "JWS must not have an unprotected header",
            ));
        }
        if let Some(extra) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "protected" | "payload" | "signature"))
        {
            return Err(AcmeProblem::malformed(format!(
                "JWS has an unknown member \"{extra}\""
            )));
        }
        let protected_b64 = string_member(object, "protected", "JWS")?.to_owned();
        let payload_b64 = string_member(object, "payload", "JWS")?.to_owned();
        let signature = b64url_decode(string_member(object, "signature", "JWS")?, "signature")?;

        let header: Value =
            serde_json::from_slice(&b64url_decode(&protected_b64, "protected header")?)
                .map_err(|_| AcmeProblem::malformed("protected header is not JSON"))?;
        let header = header
            .as_object()
            .ok_or_else(|| AcmeProblem::malformed("protected header is not a JSON object"))?;
        let alg = JwsAlg::parse(string_member(header, "alg", "protected header")?)?;
        let key = match (header.get("kid"), header.get("jwk")) {
            (Some(_), Some(_)) => {
                return Err(AcmeProblem::malformed(
                    "protected header has both \"kid\" and \"jwk\"; exactly one is allowed",
                ));
            }
            (Some(kid), None) => JwsKey::Kid(
                kid.as_str()
                    .ok_or_else(|| AcmeProblem::malformed("\"kid\" is not a string"))?
                    .to_owned(),
            ),
            (None, Some(jwk)) => JwsKey::Jwk(Jwk::from_json(jwk)?),
            (None, None) => {
                return Err(AcmeProblem::malformed(
                    "protected header has neither \"kid\" nor \"jwk\"",
                ));
            }
        };
        if header.contains_key("crit") {
            return Err(AcmeProblem::malformed(
                "protected header must not have \"crit\"",
            ));
        }
        let url = string_member(header, "url", "protected header")?.to_owned();
        let nonce = match header.get("nonce") {
            None => None,
            Some(n) => Some(
                n.as_str()
                    .ok_or_else(|| {
                        AcmeProblem::new(ProblemKind::BadNonce, "nonce is not a string")
                    })?
                    .to_owned(),
            ),
        };
        Ok(Self {
            alg,
            key,
            nonce,
            url,
            protected_b64,
            payload_b64,
            signature,
        })
    }

    /// The nonce an outer request must carry. Fails with `badNonce` when it is missing or is
    /// not base64url (RFC 8555 6.5.1); whether it is fresh is the nonce ledger's to say.
    pub fn nonce(&self) -> Result<&str, AcmeProblem> {
        let nonce = self.nonce.as_deref().ok_or_else(|| {
            AcmeProblem::new(ProblemKind::BadNonce, "protected header has no \"nonce\"")
        })?;
        if nonce.is_empty() || b64url_decode(nonce, "nonce").is_err() {
            return Err(AcmeProblem::new(
                ProblemKind::BadNonce,
                "nonce is not base64url",
            ));
        }
        Ok(nonce)
    }

    /// Whether a nonce is present at all (the inner JWS of a key change must have none).
    pub fn has_nonce(&self) -> bool {
        self.nonce.is_some()
    }

    /// Checks the signed `url` against the URL the request arrived at. Fails with
    /// `unauthorized` when they differ (RFC 8555 6.4).
    pub fn check_url(&self, request_url: &str) -> Result<(), AcmeProblem> {
        if self.url == request_url {
            Ok(())
        } else {
            Err(AcmeProblem::new(
                ProblemKind::Unauthorized,
                format!(
                    "JWS url {:?} does not match the request URL {request_url:?}",
                    self.url
                ),
            ))
        }
    }

    /// Checks the key is named the way the resource requires. Fails with `malformed`.
    pub fn check_key_rule(&self, rule: KeyRule) -> Result<(), AcmeProblem> {
        match (rule, &self.key) {
            (KeyRule::Jwk, JwsKey::Kid(_)) => Err(AcmeProblem::malformed(
                "this resource needs \"jwk\" in the protected header, not \"kid\"",
            )),
            (KeyRule::Kid, JwsKey::Jwk(_)) => Err(AcmeProblem::malformed(
                "this resource needs \"kid\" (the account URL), not \"jwk\"",
            )),
            _ => Ok(()),
        }
    }

    /// Verifies the signature with `key` (the `jwk` itself, or the account key `kid` names)
    /// and returns the payload: `None` for POST-as-GET (an empty payload), else its JSON.
    /// Fails with `badSignatureAlgorithm` or `unauthorized` as [`Jwk::verify`] does, and
    /// with `malformed` for a payload that is not JSON.
    pub fn verify(&self, key: &Jwk) -> Result<Option<Value>, AcmeProblem> {
        let signing_input = format!("{}.{}", self.protected_b64, self.payload_b64);
        key.verify(self.alg, signing_input.as_bytes(), &self.signature)?;
        if self.payload_b64.is_empty() {
            return Ok(None);
        }
        let payload = b64url_decode(&self.payload_b64, "payload")?;
        serde_json::from_slice(&payload)
            .map(Some)
            .map_err(|_| AcmeProblem::malformed("payload is not JSON"))
    }
}
