//! `[keystore]` with `backend = "pkcs11"` as written in `keyhold.toml`, and its checked,
//! resolved form.
//!
//! Invariant: a resolved [`Pkcs11Config`] has at least one member, unique member names,
//! positive deadlines, and PINs only inside [`Secret`]s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keystore::KeyStoreError;
use crate::secret::Secret;

/// The default signing deadline (issue 18: a hung HSM must not hold a request longer).
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a member may sit idle before a keepalive signature probes it.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
/// Calls in flight per member unless configured: about 30 threads per network HSM is the
/// throughput sweet spot Thales reports for Luna (see FIELD-NOTES "HSM realities").
pub const DEFAULT_MAX_IN_FLIGHT: usize = 30;

/// `[keystore]` for PKCS#11, as written. Either the single-member form (`module`) or one or
/// more `[[keystore.members]]`, never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Toml {
    /// The single member's module (the form from before several members existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<PathBuf>,
    /// The token's label on every member (slot IDs change; labels do not).
    pub token: String,
    /// Idle sessions kept per member (default: one per CPU, at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    /// Signing deadline, e.g. `"2s"` or `"500ms"` (default 2 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_timeout: Option<String>,
    /// Idle time after which a member is probed by a signature, e.g. `"60s"` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<String>,
    /// The members, in order of preference when equally busy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberToml>,
    /// The mechanism `keyhold keys export` and `import` wrap with (default
    /// `CKM_AES_KEY_WRAP_PAD`, SoftHSM2's RFC 5649; see [`super::wrap::WrapMechanism`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_mechanism: Option<String>,
}

/// One `[[keystore.members]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberToml {
    /// A name for logs, `/readyz`, metrics and the audit trail.
    pub name: String,
    /// The module's shared library (a network HSM's client module, or SoftHSM2).
    pub module: PathBuf,
    /// Tells apart members that show the same token label through one module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_serial: Option<String>,
    /// Most signing calls at once on this member (default 30; 1 for USB tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// A file holding this member's user PIN, if it differs from the key store's; relative
    /// paths are relative to the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    /// An environment variable holding this member's user PIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
}

impl Pkcs11Toml {
    /// The single-member form for `module` and `token`, as `keyhold init` writes it.
    pub fn single(module: PathBuf, token: String) -> Self {
        Pkcs11Toml {
            module: Some(module),
            token,
            sessions: None,
            sign_timeout: None,
            keepalive: None,
            members: Vec::new(),
            wrap_mechanism: None,
        }
    }

    /// Checks the section and reads per-member PINs.
    ///
    /// Fails with [`KeyStoreError::Unsupported`] naming the field for: both or neither of
    /// `module` and `members`, duplicate or empty member names, a zero `max_in_flight`, an
    /// unreadable duration, both `pin_file` and `pin_env` on one member; and with
    /// [`KeyStoreError::WrongSecret`] for a PIN file or variable that cannot be read (the
    /// message names the file or variable, never the PIN).
    pub fn resolve(&self, base: &Path, _pin: &Secret) -> Result<Pkcs11Config, KeyStoreError> {
        let bad = |what: String| KeyStoreError::Unsupported(format!("[keystore] {what}"));
        let mut config = Pkcs11Config::with_members(self.token.clone(), Vec::new());
        if let Some(n) = self.sessions {
            config.sessions = n;
        }
        if let Some(text) = &self.sign_timeout {
            config.sign_timeout =
                parse_duration(text).map_err(|e| bad(format!("sign_timeout: {e}")))?;
        }
        if let Some(text) = &self.keepalive {
            config.keepalive = parse_duration(text).map_err(|e| bad(format!("keepalive: {e}")))?;
        }
        match (&self.module, self.members.is_empty()) {
            (Some(_), false) => {
                return Err(bad(
                    "has both module and [[keystore.members]]: give the module inside each member"
                        .into(),
                ));
            }
            (None, true) => {
                return Err(bad(
                    "needs module = \"...\" or at least one [[keystore.members]]".into(),
                ));
            }
            (Some(module), true) => config
                .members
                .push(MemberConfig::new("hsm", module.clone())),
            (None, false) => {}
        }
        for member in &self.members {
            let name = member.name.trim();
            if name.is_empty() || name.len() > 64 {
                return Err(bad(
                    "members: every member needs a name of 1 to 64 characters".into(),
                ));
            }
            if config.members.iter().any(|m| m.name == name) {
                return Err(bad(format!("members: the name {name:?} is used twice")));
            }
            let max_in_flight = member.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
            if max_in_flight == 0 {
                return Err(bad(format!(
                    "member {name:?}: max_in_flight must be at least 1"
                )));
            }
            let pin = match (&member.pin_file, &member.pin_env) {
                (Some(_), Some(_)) => {
                    return Err(bad(format!(
                        "member {name:?}: give pin_file or pin_env, not both"
                    )));
                }
                (Some(file), None) => {
                    let path = base.join(file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        KeyStoreError::WrongSecret(format!(
                            "cannot read the pin of hsm member {name:?} from {}: {e}",
                            path.display()
                        ))
                    })?;
                    Some(Secret::new(text))
                }
                (None, Some(var)) => Some(Secret::new(std::env::var(var).map_err(|_| {
                    KeyStoreError::WrongSecret(format!(
                        "the pin of hsm member {name:?} is not in environment variable {var}"
                    ))
                })?)),
                (None, None) => None,
            };
            config.members.push(MemberConfig {
                name: name.to_owned(),
                module: member.module.clone(),
                token_serial: member.token_serial.clone(),
                max_in_flight,
                pin,
            });
        }
        Ok(config)
    }
}

/// `"2s"`, `"500ms"`, `"1m"`: a positive duration for deadlines and schedules.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"2s\" or \"500ms\""))?;
    let duration = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if duration.is_zero() {
        return Err(format!("{text:?} must be more than zero"));
    }
    Ok(duration)
}

/// How to reach one member. Its `Debug` is safe to log: the PIN is a [`Secret`].
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// Its name.
    pub name: String,
    /// Path of its module's shared library.
    pub module: PathBuf,
    /// The token's serial number, if the label alone is ambiguous.
    pub token_serial: Option<String>,
    /// Most signing calls at once.
    pub max_in_flight: usize,
    /// Its own user PIN; `None` uses the key store's.
    pub pin: Option<Secret>,
}

impl MemberConfig {
    /// A member with the defaults: no serial, 30 calls at once, the key store's PIN.
    pub fn new(name: &str, module: PathBuf) -> Self {
        MemberConfig {
            name: name.to_owned(),
            module,
            token_serial: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            pin: None,
        }
    }
}

/// How to reach a PKCS#11 key store: its token label and members. Holds PINs only as
/// [`Secret`]s, so its `Debug` is safe to log.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// The token's label, the same on every member.
    pub token: String,
    /// One or more members holding the same keys.
    pub members: Vec<MemberConfig>,
    /// How many idle sessions to keep per member for signing; more threads than this still
    /// sign in parallel, on sessions opened for the occasion. Zero counts as one.
    pub sessions: usize,
    /// A signing call that takes longer fails, and its member is taken out.
    pub sign_timeout: Duration,
    /// A member idle this long is probed by a signature.
    pub keepalive: Duration,
}

impl Pkcs11Config {
    /// One member named `hsm` with the defaults: one idle session per CPU (at least 2), a
    /// 2 s deadline, a 60 s keepalive.
    pub fn new(module: PathBuf, token: String) -> Self {
        Self::with_members(token, vec![MemberConfig::new("hsm", module)])
    }

    /// Several members, with the defaults.
    pub fn with_members(token: String, members: Vec<MemberConfig>) -> Self {
        let sessions = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        Pkcs11Config {
            token,
            members,
            sessions,
            sign_timeout: DEFAULT_SIGN_TIMEOUT,
            keepalive: DEFAULT_KEEPALIVE,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse(text: &str) -> Result<Pkcs11Config, KeyStoreError> {
        let toml: Pkcs11Toml =
            toml::from_str(text).map_err(|e| KeyStoreError::Unsupported(format!("toml: {e}")))?;
        toml.resolve(Path::new("/data"), &Secret::new("1234".into()))
    }

    #[test]
    fn single_module_form_is_one_member() {
        let c = parse("module = \"/m.so\"\ntoken = \"ca\"\n").unwrap();
        assert_eq!(c.members.len(), 1);
        assert_eq!(c.members[0].name, "hsm");
        assert_eq!(c.sign_timeout, DEFAULT_SIGN_TIMEOUT);
    }

    #[test]
    fn reads_members_deadline_and_caps() {
        let c = parse(
            "token = \"ca\"\nsign_timeout = \"500ms\"\nkeepalive = \"1m\"\n\
             [[members]]\nname = \"a\"\nmodule = \"/a.so\"\nmax_in_flight = 1\n\
             [[members]]\nname = \"b\"\nmodule = \"/b.so\"\ntoken_serial = \"42\"\n",
        )
        .unwrap();
        assert_eq!(c.sign_timeout, Duration::from_millis(500));
        assert_eq!(c.keepalive, Duration::from_secs(60));
        assert_eq!(c.members[0].max_in_flight, 1);
        assert_eq!(c.members[1].token_serial.as_deref(), Some("42"));
        assert_eq!(c.members[1].max_in_flight, DEFAULT_MAX_IN_FLIGHT);
    }

    #[test]
    fn refuses_unclear_configs_naming_the_field() {
        for (text, says) in [
            ("token = \"ca\"\n", "needs module"),
            (
                "module = \"/m.so\"\ntoken = \"ca\"\n[[members]]\nname = \"a\"\nmodule = \"/a.so\"\n",
                "both module and",
            ),
            (
                "token = \"ca\"\n[[members]]\nname = \"a\"\nmodule = \"/a.so\"\n[[members]]\nname = \"a\"\nmodule = \"/b.so\"\n",
                "used twice",
            ),
            (
                "token = \"ca\"\n[[members]]\nname = \"a\"\nmodule = \"/a.so\"\nmax_in_flight = 0\n",
                "max_in_flight",
            ),
            (
                "module = \"/m.so\"\ntoken = \"ca\"\nsign_timeout = \"2 parsecs\"\n",
                "sign_timeout",
            ),
            (
                "module = \"/m.so\"\ntoken = \"ca\"\nsign_timeout = \"0s\"\n",
                "more than zero",
            ),
            (
                "module = \"/m.so\"\ntoken = \"ca\"\nslot = 3\n",
                "unknown field",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn member_pin_errors_name_the_source_not_the_pin() {
        let err = parse(
            "token = \"ca\"\n[[members]]\nname = \"a\"\nmodule = \"/a.so\"\npin_env = \"KEYHOLD_TEST_NO_SUCH_PIN_VAR\"\n",
        )
        .unwrap_err();
        assert!(matches!(err, KeyStoreError::WrongSecret(_)));
        assert!(err.to_string().contains("KEYHOLD_TEST_NO_SUCH_PIN_VAR"));
    }
}
