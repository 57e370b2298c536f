//! `keyhold issue`, `certs`, `requests` and `audit` end to end, with CSRs made by openssl and
//! certificates checked by `openssl verify`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::cli::{Run, fails_with, init_embedded, openssl_verify, shipped_policies, with_pass};

/// A data directory with a fresh embedded CA, and a scratch directory for CSRs.
struct Ca {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    work: PathBuf,
}

impl Ca {
    fn new() -> Ca {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let r = init_embedded(&dir);
        assert!(r.ok, "{}", r.stderr);
        let work = tmp.path().join("work");
        fs::create_dir(&work).unwrap();
        Ca {
            _tmp: tmp,
            dir,
            work,
        }
    }

    fn keyhold(&self, args: &[&str]) -> Run {
        let policies = shipped_policies();
        let mut all = vec!["--policies", policies.to_str().unwrap()];
        all.extend_from_slice(args);
        with_pass(&self.dir, &all)
    }

    /// An openssl CSR for `cn` with `sans` (`DNS:x,IP:y`), key type `curve` (`P-256`,
    /// `P-384`, or `RSA-<bits>`).
    fn csr(&self, name: &str, cn: &str, sans: &str, curve: &str) -> String {
        crate::support::csr_file(&self.work, name, &format!("/CN={cn}"), sans, curve)
    }

    fn out(&self, name: &str) -> String {
        self.work.join(name).to_str().unwrap().to_owned()
    }
}

fn openssl_text(pem: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", pem])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into()
}

fn serial_of(pem: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in", pem])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned()
}

#[test]
fn rsa_server_keys_get_key_encipherment_and_ec_keys_digital_signature_only() {
    let ca = Ca::new();
    for (key, wanted) in [
        ("RSA-2048", "Digital Signature, Key Encipherment"),
        ("P-256", "Digital Signature\n"),
    ] {
        let csr = ca.csr(key, "web.internal", "DNS:web.internal", key);
        let out = ca.out(&format!("{key}.pem"));
        let r = ca.keyhold(&[
            "issue",
            "--profile",
            "tls-server",
            "--csr",
            &csr,
            "--out",
            &out,
        ]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let text = openssl_text(&out);
        let usage = text
            .split("X509v3 Key Usage: critical\n")
            .nth(1)
            .unwrap_or_else(|| panic!("no key usage in:\n{text}"));
        assert!(
            usage.trim_start().starts_with(wanted),
            "{key}: wanted {wanted:?} in:\n{text}"
        );
    }
}

#[test]
fn a_tls_server_certificate_is_issued_verified_by_openssl_listed_and_shown() {
    let ca = Ca::new();
    let csr = ca.csr(
        "web",
        "web.internal",
        "DNS:web.internal,IP:10.1.2.3",
        "P-256",
    );
    let out = ca.out("web.pem");
    let r = ca.keyhold(&[
        "issue",
        "--profile",
        "tls-server",
        "--csr",
        &csr,
        "--out",
        &out,
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    openssl_verify(&ca.dir.join("ca"), &out);
    let text = openssl_text(&out);
    for needle in [
        "DNS:web.internal",
        "IP Address:10.1.2.3",
        "TLS Web Server Authentication",
        "CA:FALSE",
        "Digital Signature",
        "OCSP - URI:http://127.0.0.1:8080/ocsp",
        "URI:http://127.0.0.1:8080/crl/issuing-ca.crl",
        "O = Keyhold, CN = web.internal",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    // The leaf and its chain: the file holds the leaf then the issuing CA.
    assert_eq!(
        fs::read_to_string(&out)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );

    let serial = serial_of(&out);
    let r = ca.keyhold(&["certs", "list", "--search", "WEB.internal"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains(&serial.to_lowercase()), "{}", r.stdout);
    assert!(r.stdout.contains("valid"), "{}", r.stdout);
    let r = ca.keyhold(&["certs", "list", "--profile", "code-signing"]);
    assert!(!r.stdout.contains(&serial.to_lowercase()), "{}", r.stdout);

    // Shown by serial with colons, in upper case, as openssl prints it.
    let colons: Vec<String> = serial
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let r = ca.keyhold(&["certs", "show", &colons.join(":")]);
    assert!(r.ok, "{}", r.stderr);
    for needle in [
        "ECDSA P-256",
        "DNS:web.internal",
        "serverAuth",
        "SHA-256:",
        "expires in 89 days",
    ] {
        assert!(
            r.stdout.contains(needle),
            "{needle:?} missing from:\n{}",
            r.stdout
        );
    }
    let r = ca.keyhold(&["certs", "show", &serial, "--pem"]);
    assert!(r.stdout.starts_with("-----BEGIN CERTIFICATE-----"));

    let r = ca.keyhold(&["audit", "verify"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("audit log intact"), "{}", r.stdout);
}

#[test]
fn a_policy_violation_lists_every_reason_exits_2_and_issues_nothing() {
    let ca = Ca::new();
    let csr = ca.csr(
        "bad",
        "evil.example.com",
        "DNS:evil.example.com,DNS:*.web.internal,IP:8.8.8.8",
        "P-256",
    );
    let r = ca.keyhold(&["issue", "--profile", "tls-server", "--csr", &csr]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    for needle in ["evil.example.com", "*.web.internal", "8.8.8.8"] {
        assert!(
            r.stderr.contains(needle),
            "{needle:?} missing from:\n{}",
            r.stderr
        );
    }
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let r = ca.keyhold(&["certs", "list"]);
    assert_eq!(r.stdout.lines().count(), 1, "only the header: {}", r.stdout);
    // The refusal is in the audit log.
    let r = ca.keyhold(&["audit", "list"]);
    assert!(r.stdout.contains("request.refused"), "{}", r.stdout);
}

#[test]
fn bad_input_gets_one_clear_error_and_no_certificate() {
    let ca = Ca::new();
    let garbage = ca.out("garbage.csr");
    fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    let r = ca.keyhold(&["issue", "--profile", "tls-server", "--csr", &garbage]);
    assert_eq!(r.code, Some(1));
    fails_with(&r, "certificate request");

    let big = ca.out("big.csr");
    fs::write(&big, vec![b'A'; 70 * 1024]).unwrap();
    let r = ca.keyhold(&["issue", "--profile", "tls-server", "--csr", &big]);
    fails_with(&r, "the limit is 65536");

    let good = ca.csr("ok", "ok.internal", "DNS:ok.internal", "P-256");
    let r = ca.keyhold(&["issue", "--profile", "no-such-profile", "--csr", &good]);
    fails_with(&r, "unknown profile \"no-such-profile\"");

    // A CSR whose signature does not verify: flip a byte inside the signature.
    let mut der = pem_to_der(&fs::read_to_string(&good).unwrap());
    let last = der.len() - 3;
    der[last] ^= 0x55;
    let tampered = ca.out("tampered.der");
    fs::write(&tampered, der).unwrap();
    let r = ca.keyhold(&["issue", "--profile", "tls-server", "--csr", &tampered]);
    fails_with(&r, "signature");

    let r = ca.keyhold(&["certs", "list"]);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    let r = ca.keyhold(&["certs", "show", "zz"]);
    fails_with(&r, "not a serial number");
    let r = ca.keyhold(&["certs", "show", "0102"]);
    fails_with(&r, "no certificate with serial 0102");
}

#[test]
fn a_common_name_holding_an_escaped_comma_is_issued_after_its_approvals() {
    // Issue 15, item 5: the subject used to be written as RFC 4514 text and parsed again, so
    // a CN holding `\,` was split in the wrong place and the last approval answered 503,
    // leaving the request pending at 2 of 2 for good.
    let ca = Ca::new();
    // openssl -subj: `\\` is one backslash, so the CN is `Release\,signing`.
    let csr = ca.csr("comma", r"Release\\,signing", "", "P-384");
    let r = ca.keyhold(&["issue", "--profile", "code-signing", "--csr", &csr]);
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    let r = ca.keyhold(&["requests", "approve", "1", "--as", "alice"]);
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    let out = ca.out("comma.pem");
    let r = ca.keyhold(&["requests", "approve", "1", "--as", "bob", "--out", &out]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    crate::cli::openssl_verify_under(&ca.dir.join("ca"), "codesign-ca-chain.pem", &out);
    let subject = |args: &[&str]| {
        let text = String::from_utf8(crate::support::openssl(args).stdout).unwrap();
        text.lines()
            .find(|l| l.trim_start().starts_with("commonName"))
            .map(|l| l.trim().to_owned())
            .unwrap_or_else(|| panic!("no commonName in {text}"))
    };
    let asked = subject(&[
        "req",
        "-noout",
        "-subject",
        "-nameopt",
        "multiline",
        "-in",
        &csr,
    ]);
    let issued = subject(&[
        "x509",
        "-noout",
        "-subject",
        "-nameopt",
        "multiline",
        "-in",
        &out,
    ]);
    assert_eq!(asked, issued);
    // openssl shows the backslash escaped: the value is `Release\,signing`, one attribute.
    assert!(issued.ends_with(r"= Release\\,signing"), "{issued}");
}

#[test]
fn code_signing_needs_two_distinct_officers_never_the_requester() {
    let ca = Ca::new();
    let csr = ca.csr("sign", "Release signing", "", "P-384");
    let r = ca.keyhold(&[
        "issue",
        "--profile",
        "code-signing",
        "--csr",
        &csr,
        "--requester",
        "carol",
    ]);
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("request 1 is waiting for approval (0 of 2)"),
        "{}",
        r.stdout
    );

    let r = ca.keyhold(&["requests", "approve", "1", "--as", "carol"]);
    fails_with(&r, "carol asked for request 1 and cannot approve it");
    let r = ca.keyhold(&[
        "requests",
        "approve",
        "1",
        "--as",
        "alice",
        "--comment",
        "release 1.2",
    ]);
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("(1 of 2)"), "{}", r.stdout);
    let r = ca.keyhold(&["requests", "approve", "1", "--as", "alice"]);
    fails_with(&r, "already approved");

    let out = ca.out("sign.pem");
    let r = ca.keyhold(&["requests", "approve", "1", "--as", "bob", "--out", &out]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    crate::cli::openssl_verify_under(&ca.dir.join("ca"), "codesign-ca-chain.pem", &out);
    let text = openssl_text(&out);
    assert!(text.contains("Code Signing"), "{text}");
    assert!(
        text.contains("Issuer: O = Keyhold, CN = Keyhold Code Signing CA"),
        "{text}"
    );
    assert!(!text.contains("Server Authentication"), "{text}");

    let r = ca.keyhold(&["requests", "show", "1"]);
    assert!(r.ok, "{}", r.stderr);
    for needle in [
        "issued",
        "alice",
        "release 1.2",
        "bob",
        "carol",
        "Approvals: 2 of 2",
    ] {
        assert!(
            r.stdout.contains(needle),
            "{needle:?} missing from:\n{}",
            r.stdout
        );
    }
    // Decided requests take no more decisions.
    let r = ca.keyhold(&[
        "requests", "reject", "1", "--as", "dave", "--reason", "late",
    ]);
    fails_with(&r, "not pending");
}

#[test]
fn one_rejection_ends_a_request() {
    let ca = Ca::new();
    let csr = ca.csr("sign", "Nightly signing", "", "P-256");
    let r = ca.keyhold(&[
        "issue",
        "--profile",
        "code-signing",
        "--csr",
        &csr,
        "--requester",
        "carol",
    ]);
    assert_eq!(r.code, Some(3));
    let r = ca.keyhold(&["requests", "reject", "1", "--as", "alice", "--reason", ""]);
    fails_with(&r, "reason");
    let r = ca.keyhold(&[
        "requests",
        "reject",
        "1",
        "--as",
        "alice",
        "--reason",
        "no ticket",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let r = ca.keyhold(&["requests", "approve", "1", "--as", "bob"]);
    fails_with(&r, "not pending");
    let r = ca.keyhold(&["requests", "list", "--status", "rejected"]);
    assert!(
        r.stdout.contains("rejected") && r.stdout.contains("carol"),
        "{}",
        r.stdout
    );
    let r = ca.keyhold(&["requests", "approve", "99", "--as", "bob"]);
    fails_with(&r, "request 99 not found");
}

#[test]
fn audit_checkpoints_are_signed_and_verified() {
    let ca = Ca::new();
    let r = ca.keyhold(&["audit", "verify"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("not yet covered"), "{}", r.stdout);
    let r = ca.keyhold(&["audit", "checkpoint"]);
    assert!(r.ok, "{}", r.stderr);
    let r = ca.keyhold(&["audit", "verify"]);
    assert!(r.ok, "{}", r.stdout);
    assert!(r.stdout.contains("1 signed checkpoint(s)"), "{}", r.stdout);
    // init recorded every key it generated and the CA itself.
    let r = ca.keyhold(&["audit", "list"]);
    assert_eq!(r.stdout.matches("key.generated").count(), 7, "{}", r.stdout);
    assert!(r.stdout.contains("ca.initialised"), "{}", r.stdout);
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let out = Command::new("openssl")
        .args(["base64", "-d", "-A"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(body.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    out.stdout
}

#[test]
fn the_cli_issues_and_audits_on_postgresql_too() {
    let Some((url, _schema)) = crate::dbs::postgres_url() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = with_pass(&dir, &["init", "--database-url", &url]);
    assert!(r.ok, "{}", r.stderr);
    assert!(!dir.join("keyhold.db").exists());
    let ca = Ca {
        _tmp: tmp,
        dir,
        work: PathBuf::new(),
    };
    let work = tempfile::tempdir().unwrap();
    let ca = Ca {
        work: work.path().to_path_buf(),
        ..ca
    };
    let csr = ca.csr("pg", "pg.internal", "DNS:pg.internal", "P-384");
    let out = ca.out("pg.pem");
    let r = ca.keyhold(&[
        "issue",
        "--profile",
        "tls-server",
        "--csr",
        &csr,
        "--out",
        &out,
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    openssl_verify(&ca.dir.join("ca"), &out);
    let r = ca.keyhold(&["certs", "list", "--search", "pg.internal"]);
    assert!(
        r.stdout.contains(&serial_of(&out).to_lowercase()),
        "{}",
        r.stdout
    );
    let r = ca.keyhold(&["audit", "checkpoint"]);
    assert!(r.ok, "{}", r.stderr);
    let r = ca.keyhold(&["audit", "verify"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
}

#[test]
fn a_sub_ca_certificate_needs_the_quorum_its_profile_sets() {
    let ca = Ca::new();
    let csr = ca.csr("sub", "Team CA", "", "P-384");
    let r = ca.keyhold(&[
        "issue",
        "--profile",
        "sub-ca",
        "--csr",
        &csr,
        "--requester",
        "carol",
    ]);
    // policies/sub-ca.toml: [approval] approvals = 2.
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("request 1 is waiting for approval (0 of 2)"),
        "{}",
        r.stdout
    );
    let r = ca.keyhold(&["requests", "approve", "1", "--as", "carol"]);
    fails_with(&r, "carol asked for request 1 and cannot approve it");
    let r = ca.keyhold(&["requests", "approve", "1", "--as", "alice"]);
    assert_eq!(r.code, Some(3), "one of two issues nothing: {}", r.stdout);
    assert!(r.stdout.contains("(1 of 2)"), "{}", r.stdout);
    let out = ca.out("sub.pem");
    let r = ca.keyhold(&["requests", "approve", "1", "--as", "bob", "--out", &out]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    openssl_verify(&ca.dir.join("ca"), &out);
    let text = openssl_text(&out);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
}

#[test]
fn an_old_data_directory_signs_code_with_the_fallback_issuer_until_add_issuing_adds_codesign_ca() {
    // A CA made before init made one issuing CA per purpose: one unconstrained issuing CA.
    let tmp = tempfile::tempdir().unwrap();
    let ceremony = tmp.path().join("ceremony.toml");
    fs::write(&ceremony, "[[issuing]]\nid = \"issuing-ca\"\n").unwrap();
    let dir = tmp.path().join("data");
    let r = with_pass(
        &dir,
        &crate::cli::init_args(&["init", "--ceremony", ceremony.to_str().unwrap()]),
    );
    assert!(r.ok, "{}", r.stderr);
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let ca = Ca {
        _tmp: tmp,
        dir,
        work,
    };
    // The shipped code-signing profile names codesign-ca, with issuing-ca as its fallback.
    let r = ca.keyhold(&["policy", "check"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("fallback_issuer \"issuing-ca\""),
        "{}",
        r.stdout
    );
    let sign = |n: u32| {
        let csr = ca.csr(&format!("sign{n}"), &format!("Release {n}"), "", "P-384");
        let r = ca.keyhold(&["issue", "--profile", "code-signing", "--csr", &csr]);
        assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
        let id = n.to_string();
        let r = ca.keyhold(&["requests", "approve", &id, "--as", "alice"]);
        assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
        let out = ca.out(&format!("sign{n}.pem"));
        let r = ca.keyhold(&["requests", "approve", &id, "--as", "bob", "--out", &out]);
        assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
        openssl_text(&out)
    };
    assert!(sign(1).contains("Issuer: O = Keyhold, CN = Keyhold Issuing CA"));

    let add = |id: &str| {
        ca.keyhold(&[
            "ca",
            "add-issuing",
            "--id",
            id,
            "--subject",
            "CN=Keyhold Code Signing CA,O=Keyhold",
            "--eku",
            "codeSigning",
        ])
    };
    let r = add("codesign-ca");
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("added issuing CA codesign-ca"),
        "{}",
        r.stdout
    );
    fails_with(&add("codesign-ca"), "already configured");
    fails_with(&add("root"), "already configured");
    let r = ca.keyhold(&["ca", "check"]);
    assert!(
        r.ok && r.stdout.contains("codesign-ca"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let ca_dir = ca.dir.join("ca");
    let text = openssl_text(ca_dir.join("codesign-ca.pem").to_str().unwrap());
    assert!(text.contains("Code Signing"), "{text}");
    crate::cli::openssl_verify_under(&ca_dir, "codesign-ca-chain.pem", "codesign-ca-ocsp.pem");

    // Now code-signing certificates come from codesign-ca, and the change is audited.
    let text = sign(2);
    assert!(
        text.contains("Issuer: O = Keyhold, CN = Keyhold Code Signing CA"),
        "{text}"
    );
    crate::cli::openssl_verify_under(&ca_dir, "codesign-ca-chain.pem", &ca.out("sign2.pem"));
    let r = ca.keyhold(&["audit", "list", "--limit", "20"]);
    assert!(r.stdout.contains("issuing CA codesign-ca"), "{}", r.stdout);
    assert!(
        r.stdout.contains("OCSP responder of codesign-ca"),
        "{}",
        r.stdout
    );
}
