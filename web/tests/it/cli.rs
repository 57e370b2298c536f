use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub(crate) const PASS: &str = "an integration test passphrase";
pub(crate) const SO_PIN: &str = "so-pin-for-cli-tests";
pub(crate) const USER_PIN: &str = "user-pin-for-cli-tests";

pub(crate) fn keyhold(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyhold"));
    cmd.arg("--data-dir").arg(data_dir);
    for var in [
        "KEYHOLD_PASSPHRASE",
        "KEYHOLD_PKCS11_PIN",
        "KEYHOLD_PKCS11_SO_PIN",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    Run {
        ok: status.success(),
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
    }
}

/// Asserts a command failed with one `error:` line group mentioning `needle`, and no panic.
pub(crate) fn fails_with(r: &Run, needle: &str) {
    assert!(!r.ok, "expected failure, got success:\n{}", r.stdout);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    assert!(
        r.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

/// Runs `keyhold ARGS` on `dir` with the test passphrase in the environment.
pub(crate) fn with_pass(dir: &Path, args: &[&str]) -> Run {
    run(keyhold(dir).args(args).env("KEYHOLD_PASSPHRASE", PASS))
}

/// The officers every test CA starts with (`keyhold init --officer`): approvals count only
/// from officer accounts that held the role before what they approve was made.
pub(crate) const OFFICERS: [&str; 7] = ["alice", "bob", "carol", "cyril", "dave", "olga", "oscar"];

/// `init --officer NAME` for each of [`OFFICERS`], after `args`.
pub(crate) fn init_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    for name in OFFICERS {
        all.extend(["--officer", name]);
    }
    all
}

pub(crate) fn init_embedded(dir: &Path) -> Run {
    with_pass(dir, &init_args(&["init"]))
}

/// Every file under `dir` with its contents, to prove a failed command changed nothing.
pub(crate) fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

pub(crate) fn openssl_verify(ca_dir: &Path, leaf: &str) {
    openssl_verify_under(ca_dir, "chain.pem", leaf);
}

/// `openssl verify` of `leaf` with `chain` (a file in `ca_dir`, e.g. `codesign-ca-chain.pem`)
/// as the untrusted certificates.
pub(crate) fn openssl_verify_under(ca_dir: &Path, chain: &str, leaf: &str) {
    let out = Command::new("openssl")
        .args([
            "verify",
            "-x509_strict",
            "-CAfile",
            "root.pem",
            "-untrusted",
            chain,
            leaf,
        ])
        .current_dir(ca_dir)
        .output()
        .expect("openssl must be installed (.ci/test installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn init_makes_a_hierarchy_that_openssl_verifies_and_ca_check_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = init_embedded(&dir);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("SHA-256"), "{}", r.stdout);
    openssl_verify(&dir.join("ca"), "issuing-ca.pem");
    openssl_verify(&dir.join("ca"), "issuing-ca-ocsp.pem");
    openssl_verify(&dir.join("ca"), "root-ocsp.pem");
    let r = with_pass(&dir, &["ca", "check"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("key matches certificate"), "{}", r.stdout);
    assert!(
        !fs::read_to_string(dir.join("keyhold.toml"))
            .unwrap()
            .contains(PASS)
    );
    assert!(fs::read_dir(&dir).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".init")
    }));
}

#[test]
fn init_over_an_existing_ca_refuses_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(init_embedded(&dir).ok);
    let before = snapshot(&dir);
    fails_with(&init_embedded(&dir), "already holds a CA");
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn demo_init_stores_a_private_passphrase_and_later_commands_use_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let r = run(keyhold(&dir).args(["init", "--demo"]));
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("DEMO ONLY"), "{}", r.stdout);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir.join("demo-passphrase"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let r = run(keyhold(&dir).args(["keys", "list"]));
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("7 key(s)"), "{}", r.stdout);
}

#[test]
fn a_wrong_passphrase_is_refused_without_echoing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(init_embedded(&dir).ok);
    let wrong = "definitely-the-wrong-passphrase";
    let r = run(keyhold(&dir)
        .args(["ca", "check"])
        .env("KEYHOLD_PASSPHRASE", wrong));
    fails_with(&r, "wrong passphrase");
    assert!(!r.stderr.contains(wrong));
}

#[test]
fn missing_short_or_world_readable_passphrases_are_refused_and_nothing_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    fails_with(&run(keyhold(&dir).args(["init"])), "KEYHOLD_PASSPHRASE");
    fails_with(
        &run(keyhold(&dir)
            .args(["init"])
            .env("KEYHOLD_PASSPHRASE", "short")),
        "at least 12",
    );
    let file = tmp.path().join("pass");
    fs::write(&file, PASS).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    fails_with(
        &run(keyhold(&dir).args(["init", "--passphrase-file"]).arg(&file)),
        "chmod 600",
    );
    assert!(!dir.exists(), "a failed init left {}", dir.display());
}

#[test]
fn an_unwritable_data_directory_is_a_clear_error() {
    let r = run(keyhold(Path::new("/proc/keyhold-cannot-exist"))
        .args(["init"])
        .env("KEYHOLD_PASSPHRASE", PASS));
    fails_with(&r, "/proc/keyhold-cannot-exist");
}

#[test]
fn an_invalid_ceremony_file_lists_every_problem_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let ceremony = tmp.path().join("ceremony.toml");
    fs::write(
        &ceremony,
        "[root]\nsubject = \"nonsense\"\nvalidity_years = 99\n",
    )
    .unwrap();
    let r = run(keyhold(&dir)
        .args(["init", "--ceremony"])
        .arg(&ceremony)
        .env("KEYHOLD_PASSPHRASE", PASS));
    fails_with(&r, "root.subject");
    assert!(r.stderr.contains("root.validity_years"), "{}", r.stderr);
    assert!(!dir.exists());
}

#[test]
fn a_swapped_issuer_key_or_an_altered_key_file_stops_the_ca_loading() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(init_embedded(&dir).ok);
    let config = dir.join("keyhold.toml");
    let original = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        original.replace(
            "key = \"embedded:issuing-ca\"",
            "key = \"embedded:root-ca\"",
        ),
    )
    .unwrap();
    let r = with_pass(&dir, &["ca", "check"]);
    fails_with(&r, "does not match the certificate");
    fs::write(&config, &original).unwrap();

    let key = dir.join("token/keys/issuing-ca.key");
    let text = fs::read_to_string(&key).unwrap();
    fs::write(&key, text.replacen("sealed = \"", "sealed = \"00", 1)).unwrap();
    let r = with_pass(&dir, &["ca", "check"]);
    fails_with(&r, "damaged or was altered");
}

#[test]
fn keys_in_use_cannot_be_destroyed_and_destroying_needs_confirmation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(init_embedded(&dir).ok);
    let k = |args: &[&str]| {
        run(keyhold(&dir)
            .arg("keys")
            .args(args)
            .env("KEYHOLD_PASSPHRASE", PASS))
    };
    fails_with(
        &k(&["destroy", "--label", "root-ca", "--yes"]),
        "in use as the CA key of issuer root",
    );
    assert!(k(&["generate", "--label", "spare", "--type", "p256"]).ok);
    fails_with(&k(&["generate", "--label", "spare"]), "already exists");
    fails_with(
        &k(&["generate", "--label", "../escape"]),
        "invalid key label",
    );
    fails_with(&k(&["destroy", "--label", "spare"]), "--yes");
    assert!(k(&["destroy", "--label", "spare", "--yes"]).ok);
    fails_with(
        &k(&["destroy", "--label", "spare", "--yes"]),
        "no key labelled",
    );
}

#[test]
fn ocsp_renew_issues_a_fresh_responder_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(init_embedded(&dir).ok);
    let path = dir.join("ca/issuing-ca-ocsp.pem");
    let before = fs::read(&path).unwrap();
    let r = with_pass(
        &dir,
        &["ocsp", "renew", "--issuer", "issuing-ca", "--days", "7"],
    );
    assert!(r.ok, "{}", r.stderr);
    assert_ne!(fs::read(&path).unwrap(), before);
    openssl_verify(&dir.join("ca"), "issuing-ca-ocsp.pem");
    fails_with(
        &with_pass(&dir, &["ocsp", "renew", "--issuer", "nope"]),
        "no issuer \"nope\"",
    );
}

// --- PKCS#11 (SoftHSM2, set up by .ci/test) -----------------------------------------------

pub(crate) fn softhsm() -> Option<PathBuf> {
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        let required = ["CI", "KEYHOLD_REQUIRE_ALL_BACKENDS"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        assert!(
            !required,
            "SOFTHSM2_CONF is not set but CI requires the pkcs#11 tests: run .ci/test"
        );
        eprintln!("skipping: SOFTHSM2_CONF not set (run .ci/test)");
        return None;
    }
    Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// One token per test process, initialised through `keyhold hsm init-token`.
pub(crate) fn token() -> Option<(&'static str, PathBuf)> {
    static LABEL: OnceLock<String> = OnceLock::new();
    let module = softhsm()?;
    let label = LABEL.get_or_init(|| {
        let label = format!("kh-cli-{}", std::process::id());
        let r = run(keyhold(Path::new("/nonexistent"))
            .args(["hsm", "init-token", "--label", &label])
            .env("KEYHOLD_PKCS11_SO_PIN", SO_PIN)
            .env("KEYHOLD_PKCS11_PIN", USER_PIN));
        assert!(r.ok, "{}", r.stderr);
        label
    });
    Some((label.as_str(), module))
}

pub(crate) fn init_pkcs11(dir: &Path, token: &str, prefix: &str, pin: &str) -> Run {
    run(keyhold(dir)
        .args(init_args(&[
            "init",
            "--keystore",
            "pkcs11",
            "--pkcs11-token",
            token,
            "--key-prefix",
            prefix,
        ]))
        .env("KEYHOLD_PKCS11_PIN", pin))
}

#[test]
fn pkcs11_init_makes_a_hierarchy_that_openssl_verifies() {
    let Some((token, _)) = token() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = init_pkcs11(&dir, token, "ok-", USER_PIN);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout
            .contains(&format!("pkcs11:token={token};object=ok-root-ca")),
        "{}",
        r.stdout
    );
    assert!(
        !dir.join("token").exists(),
        "no embedded token for a pkcs#11 CA"
    );
    openssl_verify(&dir.join("ca"), "issuing-ca.pem");
    let r = run(keyhold(&dir)
        .args(["ca", "check"])
        .env("KEYHOLD_PKCS11_PIN", USER_PIN));
    assert!(r.ok, "{}", r.stderr);
    assert!(
        !fs::read_to_string(dir.join("keyhold.toml"))
            .unwrap()
            .contains(USER_PIN)
    );
}

#[test]
fn pkcs11_bad_pins_tokens_modules_and_taken_labels_are_clear_errors_leaving_nothing() {
    let Some((token, _)) = token() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = init_pkcs11(&dir, token, "bad-", "not-the-pin");
    fails_with(&r, "pin was refused");
    assert!(!r.stderr.contains("not-the-pin"));
    fails_with(
        &init_pkcs11(&dir, "no-such-token", "bad-", USER_PIN),
        "no-such-token",
    );
    let r = run(keyhold(&dir)
        .args([
            "init",
            "--keystore",
            "pkcs11",
            "--pkcs11-token",
            token,
            "--pkcs11-module",
            "/nonexistent/lib.so",
        ])
        .env("KEYHOLD_PKCS11_PIN", USER_PIN));
    fails_with(&r, "/nonexistent/lib.so");
    assert!(!dir.exists());

    // A second CA with the same labels in the same token: refused before any key is made.
    assert!(init_pkcs11(&tmp.path().join("first"), token, "twice-", USER_PIN).ok);
    let r = init_pkcs11(&dir, token, "twice-", USER_PIN);
    fails_with(&r, "already exists in the key store");
    assert!(!dir.exists());
    let r = run(keyhold(&tmp.path().join("first"))
        .args(["keys", "list"])
        .env("KEYHOLD_PKCS11_PIN", USER_PIN));
    assert_eq!(r.stdout.matches("object=twice-").count(), 7, "{}", r.stdout);
}

#[test]
fn hsm_init_token_refuses_a_label_in_use() {
    let Some((token, _)) = token() else { return };
    let r = run(keyhold(Path::new("/nonexistent"))
        .args(["hsm", "init-token", "--label", token])
        .env("KEYHOLD_PKCS11_SO_PIN", SO_PIN)
        .env("KEYHOLD_PKCS11_PIN", USER_PIN));
    fails_with(&r, "already exists");
}

// --- policies ------------------------------------------------------------------------------

pub(crate) fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn policy_check_accepts_the_shipped_profiles_and_checks_their_issuers() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(keyhold(&tmp.path().join("none"))
        .args(["policy", "check"])
        .arg(shipped_policies()));
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("4 profile(s)"), "{}", r.stdout);

    // Against a CA whose issuing CA has another id, every profile naming it is reported.
    let dir = tmp.path().join("data");
    let ceremony = tmp.path().join("ceremony.toml");
    fs::write(&ceremony, "[[issuing]]\nid = \"other-ca\"\n").unwrap();
    let r = run(keyhold(&dir)
        .args(["init", "--ceremony"])
        .arg(&ceremony)
        .env("KEYHOLD_PASSPHRASE", PASS));
    assert!(r.ok, "{}", r.stderr);
    let r = run(keyhold(&dir)
        .args(["--policies"])
        .arg(shipped_policies())
        .args(["policy", "check"]));
    fails_with(&r, "tls-server.toml: issuer \"issuing-ca\" is not in");
    assert!(
        r.stderr.contains("code-signing.toml") && !r.stderr.contains("sub-ca.toml"),
        "{}",
        r.stderr
    );
}

#[test]
fn policy_check_names_the_file_and_line_of_a_broken_profile() {
    let tmp = tempfile::tempdir().unwrap();
    fs::copy(
        shipped_policies().join("tls-server.toml"),
        tmp.path().join("tls-server.toml"),
    )
    .unwrap();
    fs::write(
        tmp.path().join("broken.toml"),
        "version = 1\nissuer = \"issuing-ca\"\n[validity]\nmax_dayz = 3\n",
    )
    .unwrap();
    let r = run(keyhold(&tmp.path().join("none"))
        .args(["policy", "check"])
        .arg(tmp.path()));
    fails_with(&r, "broken.toml");
    assert!(
        r.stderr.contains("line 4") && r.stderr.contains("max_dayz"),
        "{}",
        r.stderr
    );
}
