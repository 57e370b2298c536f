//! The server's ACME secret: one value every node shares, from which the nonce key and the
//! key that seals EAB HMAC keys at rest are derived.
//!
//! Invariant: no key bytes leave this module except an EAB HMAC key, opened for the one
//! check that needs it (or shown once to the administrator who created it); `Debug` shows
//! nothing.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use super::nonce::NonceKey;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The ACME secret's derived keys.
pub struct AcmeSecret {
    nonce: NonceKey,
    seal: LessSafeKey,
}

impl fmt::Debug for AcmeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AcmeSecret([redacted])")
    }
}

fn derive(secret: &[u8], label: &[u8]) -> Zeroizing<Vec<u8>> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    Zeroizing::new(hmac::sign(&key, label).as_ref().to_vec())
}

impl AcmeSecret {
    /// Derives the keys from `secret`. Fails if it is shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the ACME secret is {} bytes; at least {MIN_SECRET_BYTES} are needed",
                secret.len()
            ));
        }
        let nonce = NonceKey::from_secret(&derive(secret, b"keyhold acme nonce v1"))?;
        let seal_bytes = derive(secret, b"keyhold acme eab seal v1");
        let seal = UnboundKey::new(&AES_256_GCM, &seal_bytes)
            .map(LessSafeKey::new)
            .map_err(|_| "cannot derive the EAB sealing key".to_owned())?;
        Ok(AcmeSecret { nonce, seal })
    }

    /// The key nonces are minted and checked with.
    pub fn nonce_key(&self) -> &NonceKey {
        &self.nonce
    }

    /// Seals an EAB HMAC key for storage, bound to its `kid`.
    pub fn seal(&self, kid: &str, key: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness".to_owned())?;
        let mut out = key.to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut out,
            )
            .map_err(|_| "cannot seal the EAB key".to_owned())?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        Ok(sealed)
    }

    /// Opens a sealed EAB HMAC key. Fails if it was sealed under another secret or for
    /// another `kid`, or was altered.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        let bad = || format!("EAB key {kid:?} does not open under this server's ACME secret");
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self
            .seal
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| bad())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eab_keys_open_only_under_the_same_secret_and_kid() -> Result<(), String> {
        let a = AcmeSecret::new(&[7u8; 32])?;
        let b = AcmeSecret::new(&[8u8; 32])?;
        let sealed = a.seal("kid-1", b"hmac key bytes")?;
        assert_eq!(a.open("kid-1", &sealed)?.as_slice(), b"hmac key bytes");
        assert!(a.open("kid-2", &sealed).is_err());
        assert!(b.open("kid-1", &sealed).is_err());
        assert!(AcmeSecret::new(&[1u8; 31]).is_err());
        assert!(!format!("{a:?}").contains('7'));
        Ok(())
    }
}
