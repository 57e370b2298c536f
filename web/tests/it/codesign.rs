//! `keyhold codesign` end to end: a key generated in the embedded token for carol, its
//! certificate approved by two officers, and a file signed through the local key store whose
//! signature `openssl cms -verify` accepts, and refuses for a changed file.

use std::fs;
use std::process::Command;

use crate::cli::{Run, fails_with, init_embedded, shipped_policies, with_pass};

fn keyhold(dir: &std::path::Path, args: &[&str]) -> Run {
    let policies = shipped_policies();
    let mut all = vec!["--policies", policies.to_str().unwrap()];
    all.extend_from_slice(args);
    with_pass(dir, &all)
}

fn cms_verify(work: &std::path::Path, sig: &str, form: &str, content: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", form, "-in", sig, "-content",
        ])
        .arg(content)
        .args([
            "-CAfile",
            "root.pem",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ])
        .current_dir(work)
        .output()
        .expect("openssl must be installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_key_held_for_carol_signs_her_file_once_two_officers_approve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = init_embedded(&dir);
    assert!(r.ok, "{}", r.stderr);
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::copy(dir.join("ca/root.pem"), work.join("root.pem")).unwrap();
    let mut data = vec![0u8; 3 * 1024 * 1024];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    fs::write(work.join("app.bin"), &data).unwrap();
    let file = work.join("app.bin");
    let file = file.to_str().unwrap();

    let r = keyhold(
        &dir,
        &[
            "codesign",
            "request",
            "--subject",
            "CN=Carol",
            "--requester",
            "carol",
        ],
    );
    fails_with(&r, "give --key-in-hsm");

    let r = keyhold(
        &dir,
        &[
            "codesign",
            "request",
            "--key-in-hsm",
            "--subject",
            "CN=Carol release signing",
            "--requester",
            "carol",
        ],
    );
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("request 1 is waiting for approval (0 of 2)"),
        "{}",
        r.stdout
    );
    let label = r
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("key LABEL ... generated")
        .to_owned();
    assert!(label.starts_with("cs-"), "{}", r.stdout);

    let sig = work.join("app.p7s");
    let sig = sig.to_str().unwrap();
    let sign = |caller: &str, out: &str| {
        keyhold(
            &dir,
            &[
                "codesign", "sign", "--key", &label, file, "--out", out, "--as", caller,
            ],
        )
    };
    // No certificate before the quorum.
    fails_with(&sign("carol", sig), "has no certificate yet: request 1");
    for officer in ["alice", "bob"] {
        let r = keyhold(&dir, &["requests", "approve", "1", "--as", officer]);
        assert!(
            r.code == Some(0) || r.code == Some(3),
            "{}{}",
            r.stdout,
            r.stderr
        );
    }

    let r = sign("mallory", sig);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("mallory may not sign with key"),
        "{}",
        r.stderr
    );
    assert!(!work.join("app.p7s").exists());

    let r = sign("carol", sig);
    assert!(r.ok, "{}", r.stderr);
    let (ok, out) = cms_verify(&work, "app.p7s", "DER", "app.bin");
    assert!(ok, "openssl refused the signature: {out}");
    data[12345] ^= 1;
    fs::write(work.join("changed.bin"), &data).unwrap();
    let (ok, out) = cms_verify(&work, "app.p7s", "DER", "changed.bin");
    assert!(!ok, "openssl accepted a changed file: {out}");

    let pem = work.join("app.p7s.pem");
    let r = keyhold(
        &dir,
        &[
            "codesign",
            "sign",
            "--key",
            &label,
            file,
            "--out",
            pem.to_str().unwrap(),
            "--as",
            "carol",
            "--pem",
        ],
    );
    assert!(r.ok, "{}", r.stderr);
    let (ok, out) = cms_verify(&work, "app.p7s.pem", "PEM", "app.bin");
    assert!(ok, "{out}");
    // An existing file is never overwritten.
    fails_with(&sign("carol", sig), "must not exist yet");

    let r = keyhold(
        &dir,
        &["codesign", "history", "--key", &label, "--as", "carol"],
    );
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    let r = keyhold(&dir, &["audit", "list", "--limit", "50"]);
    assert!(r.stdout.contains("codesign.signed"), "{}", r.stdout);
    let r = keyhold(&dir, &["audit", "verify"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
}
