//! `keyhold keys generate --exportable`, `hsm install-wrapping-key`, `keys export` and
//! `keys import` end to end between two SoftHSM2 tokens, as issue 19 asks: the key moves
//! wrapped, both tokens sign, and `openssl` verifies both signatures with one public key;
//! a non-exportable key and an untrusted wrapping key are refused; with `[quorum]
//! export_key` both commands wait for officers (`keyhold ops approve`) and run at the quorum.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::cli::{
    Run, SO_PIN, USER_PIN, fails_with, init_pkcs11, keyhold, run, shipped_policies, softhsm, token,
};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn at(dir: &Path, args: &[&str]) -> Run {
    run(keyhold(dir)
        .arg("--policies")
        .arg(shipped_policies())
        .args(args)
        .env("KEYHOLD_PKCS11_PIN", USER_PIN)
        .env("KEYHOLD_PKCS11_SO_PIN", SO_PIN))
}

fn tool(token: &str, args: &[&str]) -> Run {
    run(Command::new("pkcs11-tool")
        .args(["--module", MODULE, "--token-label", token])
        .args(args))
}

fn openssl(args: &[&str]) -> Run {
    run(Command::new("openssl").args(args))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn set_quorum(dir: &Path, export_key: u32) {
    let path = dir.join("keyhold.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("[quorum]"), "{text}");
    text.push_str(&format!("\n[quorum]\nexport_key = {export_key}\n"));
    std::fs::write(&path, text).unwrap();
}

/// Signs `data` with key `label` in `token`, with pkcs11-tool: SoftHSM2 2.6 has only raw
/// CKM_ECDSA, so the token signs the SHA-384 digest (openssl's), giving an ECDSA-SHA384
/// signature (DER) over `data`. The key is named by its CKA_ID: pkcs11-tool 0.23 does not
/// select the signing key by --label (it takes the first one).
fn sign_in_token(token: &str, label: &str, data: &Path, sig: &Path) {
    let listed = tool(
        token,
        &[
            "--login",
            "--pin",
            USER_PIN,
            "--list-objects",
            "--type",
            "privkey",
        ],
    );
    let mut lines = listed.stdout.lines();
    lines
        .find(|l| l.trim() == format!("label:      {label}"))
        .unwrap_or_else(|| panic!("{label} in {}", listed.stdout));
    let id = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("ID:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("an ID for {label} in {}", listed.stdout))
        .to_owned();
    let digest = sig.with_extension("sha384");
    let r = openssl(&["dgst", "-sha384", "-binary", "-out", s(&digest), s(data)]);
    assert!(r.ok, "{}", r.stderr);
    let r = tool(
        token,
        &[
            "--login",
            "--pin",
            USER_PIN,
            "--sign",
            "--mechanism",
            "ECDSA",
            "--id",
            &id,
            "--input-file",
            s(&digest),
            "--output-file",
            s(sig),
        ],
    );
    assert!(
        r.ok,
        "pkcs11-tool sign in {token}: {}{}",
        r.stdout, r.stderr
    );
    let raw = std::fs::read(sig).unwrap();
    assert_eq!(raw.len(), 96, "a P-384 signature is r || s, 48 octets each");
    std::fs::write(sig, ecdsa_der(&raw[..48], &raw[48..])).unwrap();
}

/// ECDSA-Sig-Value (RFC 3279) of r and s, for signatures under 128 octets.
fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    let int = |v: &[u8]| {
        let v = &v[v.iter().take_while(|b| **b == 0).count()..];
        let mut out = vec![0x02];
        if v.first().is_none_or(|b| *b >= 0x80) {
            out.extend([v.len() as u8 + 1, 0]);
        } else {
            out.push(v.len() as u8);
        }
        out.extend(v);
        out
    };
    let body = [int(r), int(s)].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

fn audit_actions(dir: &Path) -> String {
    let r = at(dir, &["audit", "verify"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let r = at(dir, &["audit", "list", "--limit", "1000"]);
    assert!(r.ok, "{}", r.stderr);
    r.stdout
}

#[test]
fn a_key_moves_wrapped_between_two_softhsm2_tokens_under_quorum_and_signs_the_same_in_both() {
    let Some((token_a, _)) = token() else { return };
    softhsm().unwrap();
    let token_b = format!("kh-wrap-{}", std::process::id());
    let r = run(keyhold(Path::new("/nonexistent"))
        .args(["hsm", "init-token", "--label", &token_b])
        .env("KEYHOLD_PKCS11_SO_PIN", SO_PIN)
        .env("KEYHOLD_PKCS11_PIN", USER_PIN));
    assert!(r.ok, "{}", r.stderr);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert!(init_pkcs11(&a, token_a, "wa-", USER_PIN).ok);
    assert!(init_pkcs11(&b, &token_b, "wb-", USER_PIN).ok);

    // The security officer puts the same AES-256 value, trusted, into both tokens; a second
    // AES key made without Keyhold (pkcs11-tool: CKA_TRUSTED false) is not trusted.
    let value = tmp.path().join("kek.hex");
    std::fs::write(&value, format!("{}\n", "5a".repeat(32))).unwrap();
    std::fs::set_permissions(&value, std::fs::Permissions::from_mode(0o600)).unwrap();
    for t in [token_a, token_b.as_str()] {
        let r = at(
            &a,
            &[
                "hsm",
                "install-wrapping-key",
                "--token",
                t,
                "--label",
                "wr-kek",
                "--value-file",
                s(&value),
            ],
        );
        assert!(r.ok, "{}{}", r.stdout, r.stderr);
    }
    let r = tool(
        token_a,
        &[
            "--login",
            "--pin",
            USER_PIN,
            "--keygen",
            "--key-type",
            "AES:32",
            "--label",
            "wr-untrusted",
        ],
    );
    assert!(r.ok, "{}{}", r.stdout, r.stderr);

    let r = at(
        &a,
        &["keys", "generate", "--label", "wr-moves", "--exportable"],
    );
    assert!(r.ok, "{}", r.stderr);
    let r = at(&a, &["keys", "generate", "--label", "wr-stays"]);
    assert!(r.ok, "{}", r.stderr);

    // Refusals, before any operation exists: nothing is written.
    let out = tmp.path().join("moves.wrapped");
    let export = |label: &str, kek: &str| {
        at(
            &a,
            &[
                "keys",
                "export",
                "--label",
                label,
                "--wrapping-key",
                kek,
                "--out",
                s(&out),
            ],
        )
    };
    fails_with(&export("wr-stays", "wr-kek"), "is not exportable");
    fails_with(
        &export("wr-moves", "wr-untrusted"),
        "not marked CKA_TRUSTED",
    );
    assert!(!out.exists());

    // Under quorum: the export waits for two officers; one is not enough.
    set_quorum(&a, 2);
    // alice, bob and carol are officers since `init --officer` (init_pkcs11).
    let r = export("wr-moves", "wr-kek");
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("operation 1: exporting key wr-moves waits for 2 officers")
    );
    assert!(!out.exists());
    let r = at(&a, &["ops", "list"]);
    assert!(r.stdout.contains("export_key"), "{}", r.stdout);
    let r = at(&a, &["ops", "approve", "1", "--as", "alice"]);
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    assert!(!out.exists(), "quorum not met: nothing leaves");
    let r = at(&a, &["ops", "approve", "1", "--as", "bob"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("exported key wr-moves"), "{}", r.stdout);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("keyhold-wrapped-key-v1"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let r = at(&a, &["ops", "approve", "1", "--as", "carol"]);
    assert!(!r.ok, "a finished operation never runs again");
    let log = audit_actions(&a);
    for action in [
        "operation.requested",
        "operation.approved",
        "key.exported",
        "operation.done",
    ] {
        assert!(log.contains(action), "{action} in {log}");
    }

    // The import into token B waits for its one officer; a rejection ends another request.
    set_quorum(&b, 1);
    // carol is an officer of B since `init --officer` (init_pkcs11).
    let import = || {
        at(
            &b,
            &[
                "keys",
                "import",
                "--in",
                s(&out),
                "--wrapping-key",
                "wr-kek",
            ],
        )
    };
    let r = import();
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    let r = at(
        &b,
        &[
            "ops",
            "reject",
            "1",
            "--as",
            "carol",
            "--reason",
            "wrong day",
        ],
    );
    assert!(r.ok, "{}", r.stderr);
    let r = at(&b, &["keys", "list"]);
    assert!(!r.stdout.contains("object=wr-moves"), "{}", r.stdout);
    let r = import();
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    let r = at(&b, &["ops", "approve", "2", "--as", "carol"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("imported key wr-moves"), "{}", r.stdout);
    let log = audit_actions(&b);
    assert!(log.contains("key.imported"), "{log}");
    assert!(log.contains("operation.rejected"), "{log}");

    // Both tokens sign; one public key (read from token A) verifies both signatures.
    let data = tmp.path().join("data.txt");
    std::fs::write(&data, b"signed in two tokens\n").unwrap();
    let (sig_a, sig_b) = (tmp.path().join("a.sig"), tmp.path().join("b.sig"));
    sign_in_token(token_a, "wr-moves", &data, &sig_a);
    sign_in_token(&token_b, "wr-moves", &data, &sig_b);
    // The public key the export wrote (token A's public key object); both tokens list the
    // key with that key's fingerprint.
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let der = hex::decode(file["public_key"].as_str().unwrap()).unwrap();
    let fingerprint = {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&der)))
    };
    for dir in [&a, &b] {
        let r = at(dir, &["keys", "list"]);
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains("object=wr-moves"))
            .unwrap_or_else(|| panic!("wr-moves in {}", r.stdout));
        assert!(line.contains(&fingerprint), "{line} has {fingerprint}");
    }
    let pub_der = tmp.path().join("pub.der");
    std::fs::write(&pub_der, &der).unwrap();
    let pub_pem = tmp.path().join("pub.pem");
    let r = openssl(&[
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        s(&pub_der),
        "-out",
        s(&pub_pem),
    ]);
    assert!(r.ok, "{}", r.stderr);
    for sig in [&sig_a, &sig_b] {
        let r = openssl(&[
            "dgst",
            "-sha384",
            "-verify",
            s(&pub_pem),
            "-signature",
            s(sig),
            s(&data),
        ]);
        assert!(
            r.ok && r.stdout.contains("Verified OK"),
            "{}{}",
            r.stdout,
            r.stderr
        );
    }
    let other = tmp.path().join("other.txt");
    std::fs::write(&other, b"not what was signed\n").unwrap();
    let r = openssl(&[
        "dgst",
        "-sha384",
        "-verify",
        s(&pub_pem),
        "-signature",
        s(&sig_b),
        s(&other),
    ]);
    assert!(!r.ok, "a signature over other data must not verify");
}

#[test]
fn a_ceremony_marks_exportable_ca_keys_in_softhsm2_and_the_embedded_token() {
    let Some((token, _)) = token() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ceremony = tmp.path().join("ceremony.toml");
    std::fs::write(
        &ceremony,
        "key_label_prefix = \"cx-\"\n[root]\nexportable = true\n[[issuing]]\nid = \"issuing-ca\"\n",
    )
    .unwrap();
    let a = tmp.path().join("a");
    let r = run(keyhold(&a)
        .args(["init", "--keystore", "pkcs11", "--pkcs11-token", token])
        .arg("--ceremony")
        .arg(&ceremony)
        .env("KEYHOLD_PKCS11_PIN", USER_PIN));
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let r = at(
        &a,
        &[
            "hsm",
            "install-wrapping-key",
            "--token",
            token,
            "--label",
            "cx-kek",
            "--value-file",
            s(&{
                let v = tmp.path().join("v.hex");
                std::fs::write(&v, "a7".repeat(32)).unwrap();
                std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o600)).unwrap();
                v
            }),
        ],
    );
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    // The root key was made exportable; the issuing CA's (not asked) was not.
    let export = |label: &str, out: &Path| {
        at(
            &a,
            &[
                "keys",
                "export",
                "--label",
                label,
                "--wrapping-key",
                "cx-kek",
                "--out",
                s(out),
            ],
        )
    };
    let root_out = tmp.path().join("root.wrapped");
    let r = export("cx-root-ca", &root_out);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(root_out.exists());
    fails_with(
        &export("cx-issuing-ca", &tmp.path().join("issuing.wrapped")),
        "is not exportable",
    );

    // On the embedded token too: the root key leaves re-encrypted, the issuing CA's never.
    let e = tmp.path().join("embedded");
    let emb = |args: &[&str]| crate::cli::with_pass(&e, args);
    let r = emb(&["init", "--ceremony", s(&ceremony)]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let r = emb(&["backup", "keygen", "--out", s(&tmp.path().join("id.txt"))]);
    let recipient = r.stdout.trim().to_owned();
    let export = |label: &str, out: &str| {
        emb(&[
            "keys",
            "export",
            "--label",
            label,
            "--recipient",
            &recipient,
            "--out",
            s(&tmp.path().join(out)),
        ])
    };
    let r = export("cx-root-ca", "root.age.json");
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    fails_with(
        &export("cx-issuing-ca", "issuing.age.json"),
        "is not exportable",
    );
}

#[test]
fn an_embedded_key_moves_re_encrypted_to_an_age_recipient_and_under_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        let r = crate::cli::init_embedded(dir);
        assert!(r.ok, "{}", r.stderr);
    }
    let emb = |dir: &Path, args: &[&str]| crate::cli::with_pass(dir, args);
    assert!(
        emb(
            &a,
            &["keys", "generate", "--label", "em-moves", "--exportable"]
        )
        .ok
    );
    assert!(emb(&a, &["keys", "generate", "--label", "em-stays"]).ok);
    let (id, other_id) = (tmp.path().join("id.txt"), tmp.path().join("other.txt"));
    let r = emb(&a, &["backup", "keygen", "--out", s(&id)]);
    assert!(r.ok, "{}", r.stderr);
    let recipient = r.stdout.trim().to_owned();
    assert!(emb(&a, &["backup", "keygen", "--out", s(&other_id)]).ok);

    let out = tmp.path().join("moves.exported");
    let export = |label: &str| {
        emb(
            &a,
            &[
                "keys",
                "export",
                "--label",
                label,
                "--recipient",
                &recipient,
                "--out",
                s(&out),
            ],
        )
    };
    fails_with(&export("em-stays"), "is not exportable");
    fails_with(
        &emb(
            &a,
            &[
                "keys",
                "export",
                "--label",
                "em-moves",
                "--wrapping-key",
                "kek",
                "--out",
                s(&out),
            ],
        ),
        "age recipient",
    );
    assert!(!out.exists());
    let r = export("em-moves");
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("keyhold-embedded-exported-key-v1"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");

    // Into B, under a quorum of one officer; the wrong identity is refused at the quorum.
    set_quorum(&b, 1);
    // olga is an officer since `init --officer` (init_embedded).
    let import = |identity: &Path| {
        emb(
            &b,
            &["keys", "import", "--in", s(&out), "--identity", s(identity)],
        )
    };
    let r = import(&other_id);
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    fails_with(
        &emb(&b, &["ops", "approve", "1", "--as", "olga"]),
        "does not open the exported key",
    );
    let r = emb(&b, &["ops", "show", "1"]);
    assert!(r.stdout.contains("failed"), "{}", r.stdout);
    let r = import(&id);
    assert_eq!(r.code, Some(3), "{}{}", r.stdout, r.stderr);
    let r = emb(&b, &["ops", "approve", "2", "--as", "olga"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("imported key em-moves"), "{}", r.stdout);

    // The same key in both tokens (the core test signs with both); audited.
    let listed = |dir: &Path| {
        let r = emb(dir, &["keys", "list"]);
        r.stdout
            .lines()
            .find(|l| l.contains("em-moves"))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
            .unwrap_or_else(|| panic!("em-moves in {}", r.stdout))
            .to_owned()
    };
    assert_eq!(listed(&a), listed(&b));
    let r = emb(&b, &["audit", "list", "--limit", "1000"]);
    for action in ["key.imported", "operation.failed", "operation.done"] {
        assert!(r.stdout.contains(action), "{action} in {}", r.stdout);
    }
    assert!(emb(&b, &["audit", "verify"]).ok);
}
