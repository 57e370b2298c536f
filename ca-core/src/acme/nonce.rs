//! Anti-replay nonces (RFC 8555 6.5) that work behind a load balancer.
//!
//! A nonce is minted by any node without a database write: `issued_at || random`, with an
//! HMAC under a key every node shares. Redeeming it checks the MAC and age here, then records
//! its id once in the shared database through a [`NonceLedger`]; a second redemption, on
//! any node, finds the record and fails with `badNonce`. So unauthenticated `newNonce`
//! requests cost no writes, and only a request whose nonce is genuine writes one row.
//!
//! Invariant: a nonce is accepted at most once cluster-wide, and only within [`NONCE_TTL`]
//! of its minting by a holder of the key.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::{AcmeProblem, ProblemKind, b64url, b64url_decode};
use crate::store::StoreError;

/// How long a nonce stays redeemable. Clients use a nonce within seconds; an hour covers a
/// slow manual dns-01 step between two requests.
pub const NONCE_TTL: Duration = Duration::from_secs(3600);

/// Clock difference between nodes tolerated for a nonce minted "in the future".
const SKEW: Duration = Duration::from_secs(60);

const TIME_LEN: usize = 8;
const RANDOM_LEN: usize = 16;
const TAG_LEN: usize = 16;
const PAYLOAD_LEN: usize = TIME_LEN + RANDOM_LEN;

/// The id a redeemed nonce is recorded under: its time and random part (the MAC adds
/// nothing unique once checked).
pub type NonceId = [u8; PAYLOAD_LEN];

/// Records redeemed nonces in storage every node shares.
pub trait NonceLedger: Send + Sync {
    /// Records `id` as redeemed until `expires_at`; `Ok(true)` if this was its first
    /// redemption, `Ok(false)` if it was redeemed before (on any node). Fails only when
    /// storage cannot be reached.
    fn redeem_nonce(&self, id: &NonceId, expires_at: SystemTime) -> Result<bool, StoreError>;

    /// Forgets records that expired before `now` (they can no longer pass the age check);
    /// returns how many.
    fn sweep_nonces(&self, now: SystemTime) -> Result<u64, StoreError>;
}

/// The HMAC key the nodes share. Its `Debug` shows no key bytes.
pub struct NonceKey(hmac::Key);

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

fn bad_nonce(detail: &str) -> AcmeProblem {
    AcmeProblem::new(ProblemKind::BadNonce, detail)
}

impl NonceKey {
    /// A key from 32 or more secret bytes (read from the file every node is given). Fails
    /// with a description when shorter.
    pub fn from_secret(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err(format!(
                "the ACME nonce key needs at least 32 bytes, got {}",
                secret.len()
            ));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// Mints a fresh nonce at `now`. Fails only when the system random source fails.
    pub fn mint(&self, now: SystemTime) -> Result<String, AcmeProblem> {
        let mut payload = [0u8; PAYLOAD_LEN];
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        payload[..TIME_LEN].copy_from_slice(&secs.to_be_bytes());
        SystemRandom::new()
            .fill(&mut payload[TIME_LEN..])
            .map_err(|_| AcmeProblem::new(ProblemKind::ServerInternal, "no randomness"))?;
        let tag = hmac::sign(&self.0, &payload);
        let mut nonce = payload.to_vec();
        nonce.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
        Ok(b64url(&nonce))
    }

    /// Checks that `nonce` was minted with this key within [`NONCE_TTL`] before `now`, and
    /// returns its id and when its record may be forgotten. Fails with `badNonce` otherwise;
    /// whether it was redeemed before is the ledger's to say (see [`redeem`]).
    pub fn check(
        &self,
        nonce: &str,
        now: SystemTime,
    ) -> Result<(NonceId, SystemTime), AcmeProblem> {
        let bytes =
            b64url_decode(nonce, "nonce").map_err(|_| bad_nonce("nonce is not base64url"))?;
        if bytes.len() != PAYLOAD_LEN + TAG_LEN {
            return Err(bad_nonce("nonce was not issued by this server"));
        }
        let (payload, tag) = bytes.split_at(PAYLOAD_LEN);
        // Constant time: a forger learns nothing from how long the comparison took.
        let expected = hmac::sign(&self.0, payload);
        if !constant_time_eq(&expected.as_ref()[..TAG_LEN], tag) {
            return Err(bad_nonce("nonce was not issued by this server"));
        }
        let mut secs = [0u8; TIME_LEN];
        secs.copy_from_slice(&payload[..TIME_LEN]);
        let minted = UNIX_EPOCH + Duration::from_secs(u64::from_be_bytes(secs));
        let expires = minted + NONCE_TTL;
        if now >= expires || minted > now + SKEW {
            return Err(bad_nonce("nonce has expired"));
        }
        let mut id = [0u8; PAYLOAD_LEN];
        id.copy_from_slice(payload);
        Ok((id, expires))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a nonce was not redeemed.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// The client's fault: forged, expired or used before (`badNonce`).
    #[error(transparent)]
    Refused(#[from] AcmeProblem),
    /// The ledger could not be reached; nothing is known about the nonce.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Redeems `nonce` once, cluster-wide: checks it with `key`, then records it in `ledger`.
/// Fails with [`RedeemError::Refused`] (`badNonce`) for a forged, expired or already used
/// nonce, and [`RedeemError::Store`] when the ledger cannot be reached.
pub fn redeem(
    key: &NonceKey,
    ledger: &dyn NonceLedger,
    nonce: &str,
    now: SystemTime,
) -> Result<(), RedeemError> {
    let (id, expires) = key.check(nonce, now)?;
    if ledger.redeem_nonce(&id, expires)? {
        Ok(())
    } else {
        Err(bad_nonce("nonce has been used before").into())
    }
}
