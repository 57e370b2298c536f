//! The signers under test: Keyhold's key stores and the raw implementations they are measured against.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1,
    ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
    VerificationAlgorithm,
};
use ca_core::keystore::{KeySpec, Signer};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256, Sha384};

pub(crate) const USER_PIN: &str = "bench-user-pin";

/// A curve, with the hash Keyhold pairs it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Curve {
    P384,
    P256,
}

impl Curve {
    pub(crate) const ALL: [Curve; 2] = [Curve::P384, Curve::P256];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Curve::P384 => "P-384",
            Curve::P256 => "P-256",
        }
    }

    pub(crate) fn spec(self) -> KeySpec {
        match self {
            Curve::P384 => KeySpec::EcP384,
            Curve::P256 => KeySpec::EcP256,
        }
    }

    /// aws-lc-rs's verifier for DER signatures on this curve.
    pub(crate) fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Curve::P384 => &ECDSA_P384_SHA384_ASN1,
            Curve::P256 => &ECDSA_P256_SHA256_ASN1,
        }
    }

    /// The digest CKM_ECDSA signs for this curve (RFC 5758 3.2).
    pub(crate) fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Curve::P384 => Sha384::digest(message).to_vec(),
            Curve::P256 => Sha256::digest(message).to_vec(),
        }
    }

    /// A raw `r || s` signature (what CKM_ECDSA returns) as a DER Ecdsa-Sig-Value.
    pub(crate) fn raw_to_der(self, raw: &[u8]) -> Result<Vec<u8>> {
        Ok(match self {
            Curve::P384 => p384::ecdsa::Signature::from_slice(raw)
                .context("C_Sign returned a malformed P-384 signature")?
                .to_der()
                .to_bytes()
                .to_vec(),
            Curve::P256 => p256::ecdsa::Signature::from_slice(raw)
                .context("C_Sign returned a malformed P-256 signature")?
                .to_der()
                .to_bytes()
                .to_vec(),
        })
    }
}

/// Signs the benchmark message once and returns the signature (DER, or raw `r || s` for
/// C_Sign).
pub(crate) type SignFn<'a> = Box<dyn FnMut() -> Result<Vec<u8>> + 'a>;

/// One signer under test.
pub(crate) trait Subject: Sync {
    /// A signing closure for one thread, with whatever per-thread state it needs (for C_Sign,
    /// its own session).
    fn worker(&self) -> Result<SignFn<'_>>;

    /// Checks a signature the worker produced over the benchmark message.
    fn verify(&self, signature: &[u8]) -> Result<()>;
}

/// A Keyhold [`Signer`] (embedded or PKCS#11), called exactly as the CA calls it.
pub(crate) struct KeyholdSubject {
    pub(crate) signer: Arc<dyn Signer>,
    pub(crate) message: Arc<[u8]>,
}

impl Subject for KeyholdSubject {
    fn worker(&self) -> Result<SignFn<'_>> {
        Ok(Box::new(|| Ok(self.signer.sign(&self.message)?)))
    }

    fn verify(&self, signature: &[u8]) -> Result<()> {
        ca_core::keystore::verify(
            self.signer.algorithm(),
            self.signer.public_key(),
            &self.message,
            signature,
        )
        .context("keyhold signature does not verify")
    }
}

/// aws-lc-rs's `EcdsaKeyPair`, called directly.
pub(crate) struct AwsLcSubject {
    curve: Curve,
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
    message: Arc<[u8]>,
}

impl AwsLcSubject {
    pub(crate) fn new(curve: Curve, message: Arc<[u8]>) -> Result<Self> {
        let alg = match curve {
            Curve::P384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
            Curve::P256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .map_err(|_| anyhow!("aws-lc-rs: key generation failed"))?;
        let key_pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref())
            .map_err(|_| anyhow!("aws-lc-rs: cannot load the generated key"))?;
        Ok(AwsLcSubject {
            curve,
            key_pair,
            rng,
            message,
        })
    }
}

impl Subject for AwsLcSubject {
    fn worker(&self) -> Result<SignFn<'_>> {
        Ok(Box::new(|| {
            let signature = self
                .key_pair
                .sign(&self.rng, &self.message)
                .map_err(|_| anyhow!("aws-lc-rs: signing failed"))?;
            Ok(signature.as_ref().to_vec())
        }))
    }

    fn verify(&self, signature: &[u8]) -> Result<()> {
        UnparsedPublicKey::new(
            self.curve.verification(),
            self.key_pair.public_key().as_ref(),
        )
        .verify(&self.message, signature)
        .map_err(|_| anyhow!("aws-lc-rs signature does not verify"))
    }
}

/// RustCrypto's `p384` / `p256` signing keys (RFC 6979 deterministic ECDSA), DER output.
enum RustCryptoKey {
    P384(p384::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

pub(crate) struct RustCryptoSubject {
    curve: Curve,
    key: RustCryptoKey,
    /// The uncompressed public point, for verification with aws-lc-rs.
    point: Vec<u8>,
    message: Arc<[u8]>,
}

impl RustCryptoSubject {
    /// A key from random bytes (retrying on the negligible chance they are not a scalar).
    pub(crate) fn new(curve: Curve, message: Arc<[u8]>) -> Result<Self> {
        for _ in 0..8 {
            let mut bytes = [0u8; 48];
            let bytes = match curve {
                Curve::P384 => &mut bytes[..],
                Curve::P256 => &mut bytes[..32],
            };
            aws_lc_rs::rand::fill(bytes).map_err(|_| anyhow!("the system rng failed"))?;
            let made = match curve {
                Curve::P384 => p384::ecdsa::SigningKey::from_slice(bytes).ok().map(|k| {
                    let point = k.verifying_key().to_sec1_point(false).as_bytes().to_vec();
                    (RustCryptoKey::P384(k), point)
                }),
                Curve::P256 => p256::ecdsa::SigningKey::from_slice(bytes).ok().map(|k| {
                    let point = k.verifying_key().to_sec1_point(false).as_bytes().to_vec();
                    (RustCryptoKey::P256(k), point)
                }),
            };
            if let Some((key, point)) = made {
                return Ok(RustCryptoSubject {
                    curve,
                    key,
                    point,
                    message,
                });
            }
        }
        bail!("could not make a {} key from random bytes", curve.name())
    }
}

impl Subject for RustCryptoSubject {
    fn worker(&self) -> Result<SignFn<'_>> {
        use p384::ecdsa::signature::Signer as _;
        Ok(Box::new(|| {
            Ok(match &self.key {
                RustCryptoKey::P384(key) => {
                    let signature: p384::ecdsa::DerSignature = key.try_sign(&self.message)?;
                    signature.to_bytes().to_vec()
                }
                RustCryptoKey::P256(key) => {
                    let signature: p256::ecdsa::DerSignature = key.try_sign(&self.message)?;
                    signature.to_bytes().to_vec()
                }
            })
        }))
    }

    fn verify(&self, signature: &[u8]) -> Result<()> {
        UnparsedPublicKey::new(self.curve.verification(), &self.point)
            .verify(&self.message, signature)
            .map_err(|_| anyhow!("{} crate signature does not verify", self.curve.name()))
    }
}

/// cryptoki directly on the token and key Keyhold's PKCS#11 store generated: one session per
/// thread, digest on the host, `C_Sign` with CKM_ECDSA. No DER conversion in the loop.
pub(crate) struct CSignSubject {
    pub(crate) curve: Curve,
    pub(crate) ctx: Pkcs11,
    pub(crate) slot: Slot,
    pub(crate) key_label: String,
    /// Keyhold's signer for the same key: its public key checks C_Sign's signatures.
    pub(crate) keyhold: Arc<dyn Signer>,
    pub(crate) message: Arc<[u8]>,
}

impl Subject for CSignSubject {
    fn worker(&self) -> Result<SignFn<'_>> {
        let session = self
            .ctx
            .open_ro_session(self.slot)
            .context("C_OpenSession")?;
        // Login is per application: Keyhold's store is logged in, so this session is too.
        match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(e).context("C_Login"),
        }
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(self.key_label.as_bytes().to_vec()),
            ])
            .context("C_FindObjects")?;
        let [key] = found.as_slice() else {
            bail!(
                "expected one private key labelled {:?}, found {}",
                self.key_label,
                found.len()
            );
        };
        let key = *key;
        let curve = self.curve;
        Ok(Box::new(move || {
            let digest = curve.digest(&self.message);
            Ok(session.sign(&Mechanism::Ecdsa, key, &digest)?)
        }))
    }

    fn verify(&self, signature: &[u8]) -> Result<()> {
        ca_core::keystore::verify(
            self.keyhold.algorithm(),
            self.keyhold.public_key(),
            &self.message,
            &self.curve.raw_to_der(signature)?,
        )
        .context("C_Sign signature does not verify")
    }
}

/// The slot holding the token labelled `label`.
pub(crate) fn slot_by_label(ctx: &Pkcs11, label: &str) -> Result<Slot> {
    for slot in ctx.get_slots_with_token().context("C_GetSlotList")? {
        let info = ctx.get_token_info(slot).context("C_GetTokenInfo")?;
        if info.token_initialized() && info.label() == label {
            return Ok(slot);
        }
    }
    bail!("no token labelled {label:?}")
}
