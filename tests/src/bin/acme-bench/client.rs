//! A worker's ACME client: its account, JWS-signed requests and the full issuance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Value, json};

use crate::csr::csr_for;
use crate::https::{Answer, Conn};

/// An issuance that takes longer than this is abandoned as an error.
const ISSUANCE_DEADLINE: Duration = Duration::from_secs(30);

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// An ES256 account key and the account's URL once created.
pub(crate) struct Account {
    key: EcdsaKeyPair,
    jwk: Value,
    thumbprint: String,
    kid: String,
}

impl Account {
    pub(crate) fn generate() -> Result<Account> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow!("cannot generate a P-256 key"))?;
        let point = key.public_key().as_ref();
        ensure!(point.len() == 65 && point[0] == 4, "unexpected P-256 point");
        let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = b64(digest(&SHA256, canonical.as_bytes()).as_ref());
        Ok(Account {
            key,
            jwk: json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}),
            thumbprint,
            kid: String::new(),
        })
    }
}

/// The directory's URLs a worker uses.
#[derive(Clone)]
pub(crate) struct Directory {
    pub(crate) new_nonce: String,
    pub(crate) new_account: String,
    pub(crate) new_order: String,
}

/// Why an issuance failed: the step and what went wrong there (counted by this).
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(format!("io: {e}"))
    }
}

/// A worker's client: its connection, its account and the last nonce it was given.
pub(crate) struct Client {
    pub(crate) conn: Conn,
    pub(crate) dir: Directory,
    pub(crate) account: Account,
    pub(crate) nonce: Option<String>,
    pub(crate) rng: SystemRandom,
    pub(crate) poll: Duration,
    pub(crate) challenges: Arc<Mutex<HashMap<String, String>>>,
    pub(crate) domain: String,
    /// Requests sent (HEAD newNonce and POSTs), for requests per issuance.
    pub(crate) requests: u64,
}

impl Client {
    fn new_nonce(&mut self) -> Result<String> {
        let path = self.conn.origin.path(&self.dir.new_nonce)?.to_owned();
        self.requests += 1;
        let a = self.conn.send("HEAD", &path, None)?;
        a.header("replay-nonce")
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("newNonce gave no Replay-Nonce (status {})", a.status))
    }

    /// A JWS POST to `url`: `payload` None is POST-as-GET. Retries on badNonce.
    fn post(&mut self, step: &str, url: &str, payload: Option<&Value>) -> Result<Answer, Failure> {
        let path = self.conn.origin.path(url)?.to_owned();
        let payload = payload
            .map(|p| b64(p.to_string().as_bytes()))
            .unwrap_or_default();
        let mut last = String::new();
        for _ in 0..3 {
            let nonce = match self.nonce.take() {
                Some(n) => n,
                None => self.new_nonce()?,
            };
            let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
            if self.account.kid.is_empty() {
                protected["jwk"] = self.account.jwk.clone();
            } else {
                protected["kid"] = Value::String(self.account.kid.clone());
            }
            let protected = b64(protected.to_string().as_bytes());
            let signing_input = format!("{protected}.{payload}");
            let sig = self
                .account
                .key
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|_| Failure("client: cannot sign".into()))?;
            let body = json!({"protected": protected, "payload": payload,
                "signature": b64(sig.as_ref())})
            .to_string();
            self.requests += 1;
            let a = self.conn.send("POST", &path, Some(body.as_bytes()))?;
            self.nonce = a.header("replay-nonce").map(str::to_owned);
            if a.status >= 400 {
                let kind = a.problem();
                if kind == "badNonce" {
                    last = String::from_utf8_lossy(&a.body).chars().take(200).collect();
                    continue;
                }
                return Err(Failure(format!("{step}: {} {kind}", a.status)));
            }
            return Ok(a);
        }
        Err(Failure(format!("{step}: badNonce three times ({last})")))
    }

    pub(crate) fn create_account(&mut self) -> Result<()> {
        let url = self.dir.new_account.clone();
        let a = self
            .post(
                "newAccount",
                &url,
                Some(&json!({"termsOfServiceAgreed": true})),
            )
            .map_err(|f| anyhow!("{}", f.0))?;
        self.account.kid = a
            .header("location")
            .ok_or_else(|| anyhow!("newAccount gave no Location"))?
            .to_owned();
        Ok(())
    }

    /// POST-as-GET `url` until its status leaves `pending`/`processing`; the object.
    fn poll(&mut self, step: &str, url: &str, start: Instant) -> Result<Value, Failure> {
        loop {
            let v = self.post(step, url, None)?.json()?;
            match v.get("status").and_then(Value::as_str) {
                Some("valid") => return Ok(v),
                Some("pending" | "processing" | "ready") => {}
                Some(other) => return Err(Failure(format!("{step}: status {other}"))),
                None => return Err(Failure(format!("{step}: no status"))),
            }
            if start.elapsed() > ISSUANCE_DEADLINE {
                return Err(Failure(format!("{step}: still not valid after 30 s")));
            }
            thread::sleep(self.poll);
        }
    }

    /// One full issuance; the PEM chain.
    pub(crate) fn issue(&mut self) -> Result<Vec<u8>, Failure> {
        let start = Instant::now();
        let mut k = [0u8; 8];
        self.rng
            .fill(&mut k)
            .map_err(|_| Failure("client: no randomness".into()))?;
        let name = format!("n{}.{}", u64::from_le_bytes(k), self.domain);
        let new_order = self.dir.new_order.clone();
        let a = self.post(
            "newOrder",
            &new_order,
            Some(&json!({"identifiers": [{"type": "dns", "value": name}]})),
        )?;
        let order_url = a
            .header("location")
            .ok_or_else(|| Failure("newOrder: no Location".into()))?
            .to_owned();
        let order = a.json()?;
        let text = |v: &Value, k: &str, step: &str| -> Result<String, Failure> {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| Failure(format!("{step}: no {k}")))
        };
        let finalize = text(&order, "finalize", "newOrder")?;
        let authz_url = order
            .get("authorizations")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .ok_or_else(|| Failure("newOrder: no authorization".into()))?
            .to_owned();
        let authz = self.post("authz", &authz_url, None)?.json()?;
        let challenge = authz
            .get("challenges")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("http-01"))
            })
            .cloned()
            .ok_or_else(|| Failure("authz: no http-01 challenge".into()))?;
        let token = text(&challenge, "token", "authz")?;
        let chall_url = text(&challenge, "url", "authz")?;
        let key_authz = format!("{token}.{}", self.account.thumbprint);
        self.lock_challenges().insert(token.clone(), key_authz);
        let validated = self
            .post("challenge", &chall_url, Some(&json!({})))
            .and_then(|_| self.poll("authz poll", &authz_url, start));
        self.lock_challenges().remove(&token);
        validated?;

        let csr = csr_for(&name, &self.rng)?;
        let a = self.post("finalize", &finalize, Some(&json!({"csr": b64(&csr)})))?;
        let mut order = a.json()?;
        if order.get("status").and_then(Value::as_str) != Some("valid") {
            order = self.poll("order poll", &order_url, start)?;
        }
        let cert_url = text(&order, "certificate", "order")?;
        let a = self.post("certificate", &cert_url, None)?;
        if !a.body.starts_with(b"-----BEGIN CERTIFICATE-----") {
            return Err(Failure("certificate: not a PEM chain".into()));
        }
        Ok(a.body)
    }

    fn lock_challenges(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.challenges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
