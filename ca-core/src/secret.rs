//! Secrets (passphrases, PINs) that must never reach a log, an error or `Debug` output.

use std::fmt;

use zeroize::Zeroizing;

/// A passphrase or PIN. Its `Debug` prints `Secret([redacted])`; its memory is wiped on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret, dropping one trailing newline (as read from a file).
    pub fn new(mut value: String) -> Self {
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        Secret(Zeroizing::new(value))
    }

    /// The secret's text, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2\n".into());
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
