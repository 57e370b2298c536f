//! Account public keys as JSON Web Keys (RFC 7517/7518), their RFC 7638 thumbprints, and
//! the key authorizations that challenges prove (RFC 8555 8.1).
//!
//! Invariant: a [`Jwk`] holds only public keys of the kinds Keyhold accepts (EC P-256 and
//! P-384, RSA 2048 to 4096 bits, Ed25519), with coordinates of the exact length; anything
//! else is refused when parsed, never when used.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256,
    RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde_json::{Map, Value};

use super::jws::JwsAlg;
use super::{AcmeProblem, ProblemKind, b64url, b64url_decode};

/// RSA moduli Keyhold accepts for account keys, in bits (Boulder's range).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// A public JSON Web Key of an accepted kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jwk {
    /// `kty` EC, `crv` P-256 or P-384: the affine coordinates, big-endian, full length.
    Ec {
        /// The curve.
        curve: EcCurve,
        /// X coordinate.
        x: Vec<u8>,
        /// Y coordinate.
        y: Vec<u8>,
    },
    /// `kty` RSA: modulus and public exponent, big-endian without leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// `kty` OKP, `crv` Ed25519: the 32-byte public key.
    Ed25519 {
        /// The public key.
        x: Vec<u8>,
    },
}

/// The elliptic curves accepted for EC account keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcCurve {
    /// NIST P-256, used with ES256.
    P256,
    /// NIST P-384, used with ES384.
    P384,
}

impl EcCurve {
    fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, AcmeProblem> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| AcmeProblem::malformed(format!("jwk has no string member \"{name}\"")))
}

fn bad_key(detail: impl Into<String>) -> AcmeProblem {
    AcmeProblem::new(ProblemKind::BadPublicKey, detail)
}

impl Jwk {
    /// Reads a public JWK. Fails with `malformed` when members are missing or not base64url,
    /// and with `badPublicKey` for a private key, an unsupported kind or curve, coordinates
    /// of the wrong length, or an RSA modulus outside 2048 to 4096 bits.
    pub fn from_json(value: &Value) -> Result<Self, AcmeProblem> {
        let jwk = value
            .as_object()
            .ok_or_else(|| AcmeProblem::malformed("jwk is not a JSON object"))?;
        if jwk.contains_key("d") || jwk.contains_key("p") || jwk.contains_key("k") {
            return Err(bad_key("jwk carries private or symmetric key material"));
        }
        match member(jwk, "kty")? {
            "EC" => {
                let curve = match member(jwk, "crv")? {
                    "P-256" => EcCurve::P256,
                    "P-384" => EcCurve::P384,
                    other => return Err(bad_key(format!("EC curve {other} is not accepted"))),
                };
                let x = b64url_decode(member(jwk, "x")?, "jwk x")?;
                let y = b64url_decode(member(jwk, "y")?, "jwk y")?;
                // RFC 7518 6.2.1.2: coordinates are the full field length, zero-padded.
                if x.len() != curve.coordinate_len() || y.len() != curve.coordinate_len() {
                    return Err(bad_key(format!(
                        "{} coordinates must be {} bytes",
                        curve.name(),
                        curve.coordinate_len()
                    )));
                }
                Ok(Self::Ec { curve, x, y })
            }
            "RSA" => {
                let n = b64url_decode(member(jwk, "n")?, "jwk n")?;
                let e = b64url_decode(member(jwk, "e")?, "jwk e")?;
                // RFC 7518 6.3.1: unsigned big-endian, no leading zero octets.
                if n.first() == Some(&0) || e.first().is_none_or(|b| *b == 0) {
                    return Err(bad_key("RSA n and e must have no leading zero octets"));
                }
                let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                if !RSA_BITS.contains(&bits) {
                    return Err(bad_key(format!(
                        "RSA modulus of {bits} bits is outside 2048 to 4096"
                    )));
                }
                Ok(Self::Rsa { n, e })
            }
            "OKP" => match member(jwk, "crv")? {
                "Ed25519" => {
                    let x = b64url_decode(member(jwk, "x")?, "jwk x")?;
                    if x.len() != 32 {
                        return Err(bad_key("Ed25519 public key must be 32 bytes"));
                    }
                    Ok(Self::Ed25519 { x })
                }
                other => Err(bad_key(format!("OKP curve {other} is not accepted"))),
            },
            other => Err(bad_key(format!("key type {other} is not accepted"))),
        }
    }

    /// The RFC 7638 canonical JSON: the required members only, in lexicographic order, no
    /// whitespace. Two JWKs of one key give the same text whatever else they carried.
    pub fn canonical_json(&self) -> String {
        match self {
            Self::Ec { curve, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                curve.name(),
                b64url(x),
                b64url(y)
            ),
            Self::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64url(e), b64url(n))
            }
            Self::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64url(x))
            }
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url: how an account key is named and stored.
    pub fn thumbprint(&self) -> String {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.canonical_json().as_bytes());
        b64url(digest.as_ref())
    }

    /// The one JWS algorithm this key signs with: ES256 for P-256, ES384 for P-384, RS256
    /// for RSA, EdDSA for Ed25519.
    pub fn algorithm(&self) -> JwsAlg {
        match self {
            Self::Ec {
                curve: EcCurve::P256,
                ..
            } => JwsAlg::Es256,
            Self::Ec {
                curve: EcCurve::P384,
                ..
            } => JwsAlg::Es384,
            Self::Rsa { .. } => JwsAlg::Rs256,
            Self::Ed25519 { .. } => JwsAlg::EdDsa,
        }
    }

    /// Checks `signature` over `message` under `alg`. Fails with `badSignatureAlgorithm` when
    /// `alg` is not this key's algorithm, and `unauthorized` when the signature does not
    /// verify (ECDSA signatures are the fixed-length r||s of RFC 7518 3.4).
    pub fn verify(&self, alg: JwsAlg, message: &[u8], signature: &[u8]) -> Result<(), AcmeProblem> {
        if alg != self.algorithm() {
            return Err(AcmeProblem::new(
                ProblemKind::BadSignatureAlgorithm,
                format!(
                    "alg {} does not fit this key (it signs with {})",
                    alg.name(),
                    self.algorithm().name()
                ),
            ));
        }
        let verified = match self {
            Self::Ec { curve, x, y } => {
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(0x04); // SEC 1 2.3.3: uncompressed point
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                let algorithm = match curve {
                    EcCurve::P256 => &ECDSA_P256_SHA256_FIXED,
                    EcCurve::P384 => &ECDSA_P384_SHA384_FIXED,
                };
                UnparsedPublicKey::new(algorithm, point).verify(message, signature)
            }
            Self::Rsa { n, e } => RsaPublicKeyComponents { n, e }.verify(
                &RSA_PKCS1_2048_8192_SHA256,
                message,
                signature,
            ),
            Self::Ed25519 { x } => UnparsedPublicKey::new(&ED25519, x).verify(message, signature),
        };
        verified.map_err(|_| {
            AcmeProblem::new(ProblemKind::Unauthorized, "JWS signature does not verify")
        })
    }
}

/// The key authorization for `token` (RFC 8555 8.1): `token || '.' || thumbprint`.
pub fn key_authorization(token: &str, account_key: &Jwk) -> String {
    format!("{token}.{}", account_key.thumbprint())
}

/// The TXT record value dns-01 expects (RFC 8555 8.4): base64url(SHA-256(key authorization)).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    b64url(digest.as_ref())
}

/// The acmeIdentifier extension value tls-alpn-01 expects (RFC 8737 3): SHA-256 of the key
/// authorization, 32 bytes.
pub fn tls_alpn01_digest(key_authorization: &str) -> [u8; 32] {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
