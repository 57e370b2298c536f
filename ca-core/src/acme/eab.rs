//! External account binding (RFC 8555 7.3.4): a newAccount request proves it holds an HMAC
//! key an administrator handed out, and binds the new account to that key.
//!
//! Invariant: a binding is accepted only when its MAC verifies in constant time under the
//! stored key, its `url` is the newAccount URL, it has no nonce, and its payload is exactly
//! the account key that signed the outer request.

use aws_lc_rs::hmac;
use serde_json::Value;

use super::jwk::Jwk;
use super::{AcmeProblem, ProblemKind, b64url_decode};

/// An external account binding, parsed but not verified.
#[derive(Debug, Clone)]
pub struct Eab {
    /// The EAB key id the client names; the caller looks its HMAC key up by it.
    pub key_id: String,
    alg: hmac::Algorithm,
    protected_b64: String,
    payload_b64: String,
    signature: Vec<u8>,
    url: String,
}

fn unauthorized(detail: &str) -> AcmeProblem {
    AcmeProblem::new(ProblemKind::Unauthorized, detail)
}

impl Eab {
    /// Reads the `externalAccountBinding` member of a newAccount payload. Fails with
    /// `malformed` when it is not a flattened JWS with `alg` HS256, HS384 or HS512, a `kid`
    /// and a `url`, or when it carries a nonce (RFC 8555 7.3.4: "MUST NOT contain a nonce").
    pub fn from_json(value: &Value) -> Result<Self, AcmeProblem> {
        let bad = |d: &str| AcmeProblem::malformed(format!("externalAccountBinding {d}"));
        let object = value
            .as_object()
            .ok_or_else(|| bad("is not a JSON object"))?;
        let field = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("has no string member \"{name}\"")))
        };
        let protected_b64 = field("protected")?.to_owned();
        let payload_b64 = field("payload")?.to_owned();
        let signature = b64url_decode(field("signature")?, "externalAccountBinding signature")?;
        let header: Value = serde_json::from_slice(&b64url_decode(
            &protected_b64,
            "externalAccountBinding protected header",
        )?)
        .map_err(|_| bad("protected header is not JSON"))?;
        let header_field = |name: &str| {
            header
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("protected header has no string \"{name}\"")))
        };
        let alg = match header_field("alg")? {
            "HS256" => hmac::HMAC_SHA256,
            "HS384" => hmac::HMAC_SHA384,
            "HS512" => hmac::HMAC_SHA512,
            other => return Err(bad(&format!("alg {other:?} is not HS256, HS384 or HS512"))),
        };
        if header.get("nonce").is_some() {
            return Err(bad("must not carry a nonce"));
        }
        Ok(Self {
            key_id: header_field("kid")?.to_owned(),
            alg,
            url: header_field("url")?.to_owned(),
            protected_b64,
            payload_b64,
            signature,
        })
    }

    /// Verifies the binding with the HMAC key stored for [`Eab::key_id`], for an account
    /// whose outer request was signed by `account_key` at `new_account_url`. Fails with
    /// `unauthorized` when the MAC, the url or the bound key do not match; the detail never
    /// says which byte differed.
    pub fn verify(
        &self,
        hmac_key: &[u8],
        account_key: &Jwk,
        new_account_url: &str,
    ) -> Result<(), AcmeProblem> {
        let key = hmac::Key::new(self.alg, hmac_key);
        let signing_input = format!("{}.{}", self.protected_b64, self.payload_b64);
        hmac::verify(&key, signing_input.as_bytes(), &self.signature)
            .map_err(|_| unauthorized("external account binding MAC does not verify"))?;
        if self.url != new_account_url {
            return Err(unauthorized(
                "external account binding url is not the newAccount URL",
            ));
        }
        let payload: Value = serde_json::from_slice(&b64url_decode(
            &self.payload_b64,
            "externalAccountBinding payload",
        )?)
        .map_err(|_| AcmeProblem::malformed("externalAccountBinding payload is not JSON"))?;
        if Jwk::from_json(&payload)? != *account_key {
            return Err(unauthorized(
                "external account binding names another key than the account's",
            ));
        }
        Ok(())
    }
}
