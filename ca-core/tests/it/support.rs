//! Backends for the conformance suites, and tools we did not write.
//!
//! SoftHSM2 needs `SOFTHSM2_CONF` (exported by `.ci/test`). Without it the PKCS#11 half of
//! a suite is skipped with a message, unless `CI` or `KEYHOLD_REQUIRE_ALL_BACKENDS` is set:
//! then it fails, so CI can never pass without testing PKCS#11.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use ca_core::keystore::KeyStore;
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, init_token};
use ca_core::secret::Secret;

pub const USER_PIN: &str = "1234-conformance";
const SO_PIN: &str = "5678-conformance";

pub fn module() -> PathBuf {
    std::env::var_os("KEYHOLD_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

fn required() -> bool {
    ["CI", "KEYHOLD_REQUIRE_ALL_BACKENDS"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// A test's backend: the store, plus what keeps it alive.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn KeyStore>,
    pub _dir: Option<tempfile::TempDir>,
}

pub fn passphrase() -> Secret {
    Secret::new("conformance passphrase".into())
}

pub fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedKeyStore::create(
        &dir.path().join("token"),
        &passphrase(),
        KdfParams::insecure_for_tests(),
    )
    .unwrap();
    Backend {
        name: "embedded",
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

/// The SoftHSM2 token these suites share (one per process); `None` means skip.
pub fn pkcs11() -> Option<Backend> {
    static TOKEN: OnceLock<String> = OnceLock::new();
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        assert!(
            !required(),
            "SOFTHSM2_CONF is not set but CI requires the pkcs#11 backend: run .ci/test"
        );
        eprintln!("skipping the pkcs#11 backend: SOFTHSM2_CONF not set (run .ci/test)");
        return None;
    }
    let label = TOKEN.get_or_init(|| {
        let mut random = [0u8; 4];
        aws_lc_rs::rand::fill(&mut random).unwrap();
        let label = format!("kh-conf-{}-{}", std::process::id(), hex::encode(random));
        init_token(
            &module(),
            &label,
            &Secret::new(SO_PIN.into()),
            &Secret::new(USER_PIN.into()),
        )
        .unwrap();
        label
    });
    let store = Pkcs11KeyStore::open(
        &Pkcs11Config::new(module(), label.clone()),
        &Secret::new(USER_PIN.into()),
    )
    .unwrap();
    Some(Backend {
        name: "pkcs11",
        store: Arc::new(store),
        _dir: None,
    })
}

/// Every backend available: embedded always, PKCS#11 when configured.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![embedded()];
    all.extend(pkcs11());
    all
}

/// A label unique to this test run, so tests sharing a token never collide.
pub fn unique(prefix: &str) -> String {
    let mut random = [0u8; 4];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    format!("{prefix}-{}", hex::encode(random))
}

/// Runs openssl with `args` in `dir`; returns (success, stdout + stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (.ci/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
