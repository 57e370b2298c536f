//! `keyhold revoke` and `keyhold crl generate` end to end, with the CRL checked by
//! `openssl crl -verify` and `openssl verify -crl_check`. openssl is required: these tests
//! fail, never skip, without it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::cli::{Run, fails_with, init_embedded, shipped_policies, with_pass};
pub(crate) use crate::support::openssl;

/// A data directory with a fresh embedded CA, and a scratch directory.
pub(crate) struct Ca {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) work: PathBuf,
}

impl Ca {
    pub(crate) fn new() -> Ca {
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

    pub(crate) fn keyhold(&self, args: &[&str]) -> Run {
        let policies = shipped_policies();
        let mut all = vec!["--policies", policies.to_str().unwrap()];
        all.extend_from_slice(args);
        with_pass(&self.dir, &all)
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.work.join(name).to_str().unwrap().to_owned()
    }

    pub(crate) fn ca_file(&self, name: &str) -> String {
        self.dir.join("ca").join(name).to_str().unwrap().to_owned()
    }

    /// Issues a tls-server certificate for `name`.internal; returns (PEM path, serial).
    pub(crate) fn issue(&self, name: &str) -> (String, String) {
        let key = self.path(&format!("{name}.key"));
        let csr = self.path(&format!("{name}.csr"));
        let out = openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            &format!("/CN={name}.internal"),
            "-addext",
            &format!("subjectAltName=DNS:{name}.internal"),
            "-out",
            &csr,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let pem = self.path(&format!("{name}.pem"));
        let r = self.keyhold(&[
            "issue",
            "--profile",
            "tls-server",
            "--csr",
            &csr,
            "--out",
            &pem,
        ]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let out = openssl(&["x509", "-noout", "-serial", "-in", &pem]);
        let serial = String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_lowercase();
        (pem, serial)
    }
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn verify_with_crl(ca: &Ca, crl_pem: &str, leaf: &str) -> Output {
    openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        &ca.ca_file("root.pem"),
        "-untrusted",
        &ca.ca_file("chain.pem"),
        "-CRLfile",
        crl_pem,
        leaf,
    ])
}

#[test]
fn a_revoked_certificate_is_on_the_next_crl_which_openssl_verifies() {
    let ca = Ca::new();
    let (good, _) = ca.issue("good");
    let (bad, bad_serial) = ca.issue("bad");

    let r = ca.keyhold(&[
        "revoke",
        &bad_serial,
        "--reason",
        "keyCompromise",
        "--invalidity-date",
        "2026-01-02T03:04:05Z",
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("revoked certificate"), "{}", r.stdout);

    let der = ca.path("issuing-ca.crl");
    let r = ca.keyhold(&["crl", "generate", "--issuer", "issuing-ca", "--out", &der]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains(" of issuing-ca: 1 revoked"),
        "{}",
        r.stdout
    );
    // CRL numbers are at least thisUpdate in microseconds, so they never go backwards even
    // when the database does (a restored backup).
    let first = printed_crl_number(&r.stdout);
    assert!(first > 1_700_000_000_000_000, "{}", r.stdout);

    let out = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &der,
        "-CAfile",
        &ca.ca_file("issuing-ca.pem"),
        "-verify",
        "-noout",
        "-text",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("verify OK"), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Version 2",
        "X509v3 CRL Number",
        "X509v3 Authority Key Identifier",
        "Key Compromise",
        "Invalidity Date",
        "Jan  2 03:04:05 2026 GMT",
        "Next Update",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(text.to_lowercase().contains(&bad_serial), "{text}");

    // The next CRL has a larger number; PEM for openssl verify.
    let pem = ca.path("issuing-ca.crl.pem");
    let r = ca.keyhold(&[
        "crl",
        "generate",
        "--issuer",
        "issuing-ca",
        "--out",
        &pem,
        "--pem",
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert!(printed_crl_number(&r.stdout) > first, "{}", r.stdout);

    let out = verify_with_crl(&ca, &pem, &bad);
    assert!(!out.status.success(), "a revoked certificate verified");
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("certificate revoked"), "{said}");
    let out = verify_with_crl(&ca, &pem, &good);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(": OK"), "{}", stdout(&out));

    let r = ca.keyhold(&["certs", "show", &bad_serial]);
    assert!(r.stdout.contains("Revoked:"), "{}", r.stdout);
    assert!(r.stdout.contains("(keyCompromise)"), "{}", r.stdout);

    let r = ca.keyhold(&["audit", "list", "--limit", "5"]);
    assert!(r.stdout.contains("certificate.revoked"), "{}", r.stdout);
    let r = ca.keyhold(&["audit", "verify"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
}

#[test]
fn bad_revocations_are_clear_errors_and_change_nothing() {
    let ca = Ca::new();
    let (_, serial) = ca.issue("web");
    fails_with(
        &ca.keyhold(&["revoke", &serial, "--reason", "stolen"]),
        "unknown revocation reason \"stolen\"",
    );
    fails_with(
        &ca.keyhold(&["revoke", &serial, "--reason", "certificateHold"]),
        "certificateHold is refused",
    );
    fails_with(
        &ca.keyhold(&[
            "revoke",
            &serial,
            "--reason",
            "superseded",
            "--invalidity-date",
            "2999-01-01T00:00:00Z",
        ]),
        "in the future",
    );
    fails_with(
        &ca.keyhold(&["revoke", "0badc0de", "--reason", "superseded"]),
        "certificate 0badc0de not found",
    );
    fails_with(
        &ca.keyhold(&["revoke", "not-hex", "--reason", "superseded"]),
        "is not a serial number",
    );
    let r = ca.keyhold(&["revoke", &serial, "--reason", "superseded"]);
    assert!(r.ok, "{}", r.stderr);
    fails_with(
        &ca.keyhold(&["revoke", &serial, "--reason", "keyCompromise"]),
        "already revoked",
    );
    fails_with(
        &ca.keyhold(&[
            "crl",
            "generate",
            "--issuer",
            "nope",
            "--out",
            &ca.path("x"),
        ]),
        "no issuer \"nope\"",
    );
    assert!(!Path::new(&ca.path("x")).exists());

    // The root's CRL: signed by the root, nothing revoked.
    let root_crl = ca.path("root.crl");
    let r = ca.keyhold(&["crl", "generate", "--issuer", "root", "--out", &root_crl]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("0 revoked"), "{}", r.stdout);
    let out = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &root_crl,
        "-CAfile",
        &ca.ca_file("root.pem"),
        "-verify",
        "-noout",
    ]);
    assert!(stderr(&out).contains("verify OK"), "{}", stderr(&out));
}

/// `openssl crl -text` of a CRL file (DER).
fn crl_text(path: &str) -> String {
    let out = openssl(&["crl", "-inform", "DER", "-in", path, "-noout", "-text"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// The number in `keyhold crl generate`'s "CRL number N of ISSUER" line.
fn printed_crl_number(stdout: &str) -> u64 {
    let at = stdout.find("CRL number ").expect("a CRL number line") + "CRL number ".len();
    stdout[at..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CRL number in {stdout}"))
}

/// The number after "X509v3 CRL Number:".
fn crl_number(text: &str) -> u64 {
    let at = text.find("CRL Number:").expect("a CRL number");
    text[at..]
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no CRL number in {text}"))
}

#[test]
fn a_revoked_issuing_ca_is_on_the_root_crl_and_its_certificates_then_fail_crl_check_all() {
    let ca = Ca::new();
    let (leaf, _) = ca.issue("leaf");
    let root_crl = ca.path("root.crl");
    let r = ca.keyhold(&["crl", "generate", "--issuer", "root", "--out", &root_crl]);
    assert!(r.ok, "{}", r.stderr);
    let before = crl_number(&crl_text(&root_crl));

    // Refused, each with its reason, and nothing recorded: no confirmation (stdin is empty),
    // a root, a reason that does not apply to a CA, an unknown issuer.
    let refusals = [
        (
            vec!["revoke-ca", "issuing-ca", "--reason", "cACompromise"],
            "not confirmed: nothing was revoked",
        ),
        (
            vec!["revoke-ca", "root", "--reason", "cACompromise", "--yes"],
            "root is a root",
        ),
        (
            vec![
                "revoke-ca",
                "issuing-ca",
                "--reason",
                "privilegeWithdrawn",
                "--yes",
            ],
            "a CA certificate is revoked for cACompromise",
        ),
        (
            vec!["revoke-ca", "nope", "--reason", "superseded", "--yes"],
            "no issuer \"nope\"",
        ),
    ];
    for (args, needle) in refusals {
        fails_with(&ca.keyhold(&args), needle);
    }

    let r = ca.keyhold(&[
        "revoke-ca",
        "issuing-ca",
        "--reason",
        "cACompromise",
        "--yes",
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("the next CRL of root lists it"),
        "{}",
        r.stdout
    );
    fails_with(
        &ca.keyhold(&["revoke-ca", "issuing-ca", "--reason", "superseded", "--yes"]),
        "already revoked",
    );
    let r = ca.keyhold(&["audit", "list", "--limit", "50"]);
    assert!(
        r.ok && r.stdout.contains("ca.revoked"),
        "{}{}",
        r.stdout,
        r.stderr
    );

    // The root's next CRL: verified against the root, lists the issuing CA's serial with its
    // reason, and its number went up.
    let r = ca.keyhold(&["crl", "generate", "--issuer", "root", "--out", &root_crl]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("1 revoked"), "{}", r.stdout);
    let out = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &root_crl,
        "-CAfile",
        &ca.ca_file("root.pem"),
        "-verify",
        "-noout",
    ]);
    assert!(stderr(&out).contains("verify OK"), "{}", stderr(&out));
    let text = crl_text(&root_crl);
    let out = openssl(&[
        "x509",
        "-noout",
        "-serial",
        "-in",
        &ca.ca_file("issuing-ca.pem"),
    ]);
    let issuing_serial = stdout(&out).trim().trim_start_matches("serial=").to_owned();
    assert!(
        text.contains(&format!("Serial Number: {issuing_serial}")),
        "{issuing_serial} not in {text}"
    );
    assert!(text.contains("CA Compromise"), "{text}");
    assert!(crl_number(&text) > before, "{text}");

    // A certificate of the revoked CA fails a full-chain CRL check.
    let issuing_crl = ca.path("issuing-ca.crl");
    let r = ca.keyhold(&[
        "crl",
        "generate",
        "--issuer",
        "issuing-ca",
        "--out",
        &issuing_crl,
    ]);
    assert!(r.ok, "{}", r.stderr);
    let pem = |der: &str| {
        let out = format!("{der}.pem");
        let o = openssl(&["crl", "-inform", "DER", "-in", der, "-out", &out]);
        assert!(o.status.success(), "{}", stderr(&o));
        out
    };
    let (root_pem, issuing_pem) = (pem(&root_crl), pem(&issuing_crl));
    let out = openssl(&[
        "verify",
        "-crl_check_all",
        "-CAfile",
        &ca.ca_file("root.pem"),
        "-untrusted",
        &ca.ca_file("chain.pem"),
        "-CRLfile",
        &root_pem,
        "-CRLfile",
        &issuing_pem,
        &leaf,
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("certificate revoked"), "{said}");
}
