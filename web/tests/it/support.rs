//! What the test modules share: openssl as the independent checker, CSRs made by openssl,
//! bearer headers, and loopback ports.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs openssl with `args`; its output, whatever its exit status.
pub(crate) fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed (.ci/setup installs it)")
}

/// Runs openssl with `args` in `dir`; its standard output. Fails the test if openssl fails.
pub(crate) fn openssl_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (.ci/setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CSR made by openssl in `dir` (key `NAME.key`, request `NAME.csr`) on the EC `curve`,
/// with subject `subj` (`/CN=...`) and `sans` (`DNS:x,IP:y`; empty for none). Returns the
/// request's path.
pub(crate) fn csr_file(dir: &Path, name: &str, subj: &str, sans: &str, curve: &str) -> String {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-new", "-newkey"]);
    // `curve` is P-256, P-384 or RSA-<bits>.
    match curve.strip_prefix("RSA-") {
        Some(bits) => cmd.arg(format!("rsa:{bits}")),
        None => cmd
            .args(["ec", "-pkeyopt"])
            .arg(format!("ec_paramgen_curve:{curve}")),
    };
    cmd.args(["-nodes", "-keyout"])
        .arg(&key)
        .args(["-subj", subj, "-out"])
        .arg(&csr);
    if !sans.is_empty() {
        cmd.arg("-addext").arg(format!("subjectAltName={sans}"));
    }
    let out = cmd
        .output()
        .expect("openssl must be installed (.ci/setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    csr.to_str().unwrap().to_owned()
}

/// [`csr_file`] on P-256, as PEM text.
pub(crate) fn csr_pem(dir: &Path, name: &str, subj: &str, sans: &str) -> String {
    std::fs::read_to_string(csr_file(dir, name, subj, sans, "P-256")).unwrap()
}

/// The `Authorization` header for a bearer token.
pub(crate) fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// A loopback port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (30 s at most) until something listens on the loopback `port`.
pub(crate) fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
