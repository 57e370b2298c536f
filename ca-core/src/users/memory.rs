//! Argon2id's working memory (19 MiB per check), allocated once and reused.
//!
//! Allocating it per check let each blocking thread's allocator arena keep its own copy:
//! thousands of unauthenticated sign-in attempts grew a server past 1 GB. A fixed set of
//! buffers bounds what password checks can ever hold to `slots` x 19 MiB, whatever comes in.

use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::{MAX_PASSWORD_BYTES, PasswordHash};

/// Blocks (1 KiB each) one check needs with OWASP's parameters, which [`PasswordHash::new`]
/// uses; stored hashes asking for more than this match nothing.
pub const BLOCKS: usize = Params::DEFAULT_M_COST as usize;

/// A fixed number of Argon2id work buffers; a check takes one or is refused.
#[derive(Debug)]
pub struct PasswordMemory {
    free: Mutex<Vec<Vec<Block>>>,
}

/// One borrowed buffer, given back when dropped.
#[derive(Debug)]
pub struct Buffer {
    blocks: Option<Vec<Block>>,
    pool: Option<Arc<PasswordMemory>>,
}

impl PasswordMemory {
    /// `slots` buffers, allocated now (zeroed pages: the system maps them on first use).
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(PasswordMemory {
            free: Mutex::new((0..slots).map(|_| vec![Block::default(); BLOCKS]).collect()),
        })
    }

    /// A buffer, or `None` when every one is in use.
    pub fn try_take(self: &Arc<Self>) -> Option<Buffer> {
        let blocks = self.free.lock().ok()?.pop()?;
        Some(Buffer {
            blocks: Some(blocks),
            pool: Some(self.clone()),
        })
    }
}

impl Buffer {
    /// A buffer of its own, outside any pool (the CLI, tests).
    pub fn standalone() -> Self {
        Buffer {
            blocks: Some(vec![Block::default(); BLOCKS]),
            pool: None,
        }
    }

    fn blocks(&mut self) -> &mut [Block] {
        self.blocks.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let (Some(blocks), Some(pool)) = (self.blocks.take(), &self.pool)
            && let Ok(mut free) = pool.free.lock()
        {
            free.push(blocks);
        }
    }
}

impl PasswordHash {
    /// Whether `password` matches, computing in `buffer` (no allocation of the work area).
    /// A hash that does not parse, or asks for more memory than [`BLOCKS`], matches nothing.
    pub fn verify_in(&self, password: &str, buffer: &mut Buffer) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        let Ok(phc) = argon2::PasswordHash::new(&self.0) else {
            return false;
        };
        if phc.algorithm != argon2::ARGON2ID_IDENT {
            return false;
        }
        let (Some(salt), Some(expected), Ok(params)) = (phc.salt, phc.hash, Params::try_from(&phc))
        else {
            return false;
        };
        if params.block_count() > BLOCKS {
            return false;
        }
        let version = match phc.version {
            None => Version::default(),
            Some(v) => match Version::try_from(v) {
                Ok(v) => v,
                Err(_) => return false,
            },
        };
        let expected = expected.as_bytes();
        let mut out = vec![0u8; expected.len()];
        let argon = Argon2::new(Algorithm::Argon2id, version, params);
        if argon
            .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, buffer.blocks())
            .is_err()
        {
            return false;
        }
        // Constant time: every byte is compared whatever the first difference.
        out.iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_checks_agree_with_the_library_and_the_pool_is_bounded() {
        let hash = PasswordHash::new("correct horse battery").unwrap();
        let pool = PasswordMemory::new(1);
        let mut a = pool.try_take().unwrap();
        assert!(pool.try_take().is_none(), "one buffer, one check at a time");
        assert!(hash.verify_in("correct horse battery", &mut a));
        assert!(!hash.verify_in("correct horse battery!", &mut a));
        assert!(hash.verify("correct horse battery"));
        drop(a);
        let mut b = pool.try_take().unwrap();
        assert!(!PasswordHash::from_stored("$argon2id$garbage".into()).verify_in("x", &mut b));
    }
}
