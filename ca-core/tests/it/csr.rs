//! CSRs made by openssl, parsed and verified; and thousands of corrupted ones that must
//! never panic the parser.

use std::path::Path;
use std::process::Command;

use ca_core::csr::{self, CsrError, MAX_CSR_BYTES};
use ca_core::policy::{KeyKind, San, SubjectKey};

/// Makes a CSR with openssl: `newkey` like "ec:P-384" or "rsa:2048", digest like "sha256".
fn openssl_csr(dir: &Path, newkey: &str, digest: &str, san: &str) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args([
        "req", "-new", "-nodes", "-keyout", "key.pem", "-out", "req.pem",
    ]);
    match newkey.split_once(':') {
        Some(("ec", curve)) => cmd.args([
            "-newkey",
            "ec",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
        ]),
        _ => cmd.args(["-newkey", newkey]),
    };
    cmd.args([&format!("-{digest}"), "-subj", "/CN=db.corp/O=Ignored"]);
    if !san.is_empty() {
        cmd.args(["-addext", &format!("subjectAltName={san}")]);
    }
    let out = cmd
        .output()
        .expect("openssl must be installed (.ci/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join("req.pem")).unwrap()
}

#[test]
fn openssl_csrs_verify_with_the_hash_their_signature_names() {
    let dir = tempfile::tempdir().unwrap();
    for (newkey, digest, kind) in [
        ("ec:P-384", "sha256", KeyKind::P384), // openssl's default hash for any EC key
        ("ec:P-384", "sha384", KeyKind::P384),
        ("ec:P-256", "sha256", KeyKind::P256),
        ("ec:P-256", "sha384", KeyKind::P256),
    ] {
        let pem = openssl_csr(
            dir.path(),
            newkey,
            digest,
            "DNS:db.corp,IP:10.1.2.3,email:a@corp.example,URI:spiffe://corp/x",
        );
        let parsed = csr::parse(&pem, &[]).unwrap_or_else(|e| panic!("{newkey} {digest}: {e}"));
        assert_eq!(parsed.facts.key, SubjectKey::Ec(kind));
        assert_eq!(
            parsed.facts.sans,
            [
                San::Dns("db.corp".into()),
                San::Ip("10.1.2.3".parse().unwrap()),
                San::Email("a@corp.example".into()),
                San::Uri("spiffe://corp/x".into())
            ]
        );
        assert_eq!(
            parsed.facts.subject,
            [
                ("CN".to_string(), "db.corp".to_string()),
                ("O".into(), "Ignored".into())
            ]
        );
        // The same request in DER parses to the same facts.
        let (_, der) = der::pem::decode_vec(&pem).unwrap();
        assert_eq!(csr::parse(&der, &[]).unwrap().public_key, parsed.public_key);
    }
}

#[test]
fn rsa_csrs_report_their_size_and_small_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let parsed = csr::parse(&openssl_csr(dir.path(), "rsa:2048", "sha256", ""), &[]).unwrap();
    assert_eq!(
        parsed.facts.key,
        SubjectKey::Rsa {
            bits: 2048,
            exponent: 65537
        }
    );
    let err = csr::parse(&openssl_csr(dir.path(), "rsa:1024", "sha256", ""), &[]).unwrap_err();
    assert!(err.to_string().contains("1024 bits"), "{err}");
}

#[test]
fn a_ca_key_in_a_csr_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let pem = openssl_csr(dir.path(), "ec:P-256", "sha256", "");
    let key = csr::parse(&pem, &[]).unwrap().public_key;
    assert!(csr::parse(&pem, &[key]).unwrap().facts.key_is_a_ca_key);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pem = openssl_csr(dir.path(), "ec:P-384", "sha384", "DNS:a.corp");
    let (_, der) = der::pem::decode_vec(&pem).unwrap();

    let mut forged = der.clone();
    let n = forged.len();
    forged[n - 5] ^= 0x01; // inside the signature
    assert!(matches!(
        csr::parse(&forged, &[]),
        Err(CsrError::BadSignature | CsrError::Malformed(_))
    ));

    assert!(matches!(
        csr::parse(&vec![b'A'; MAX_CSR_BYTES + 1], &[]),
        Err(CsrError::TooLarge(_))
    ));
    let cert_pem = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    assert!(
        csr::parse(cert_pem, &[])
            .unwrap_err()
            .to_string()
            .contains("not CERTIFICATE REQUEST")
    );
    assert!(matches!(
        csr::parse(b"hello", &[]),
        Err(CsrError::Malformed(_))
    ));
    assert!(matches!(
        csr::parse(&der[..der.len() / 2], &[]),
        Err(CsrError::Malformed(_))
    ));
}

#[test]
fn truncated_corrupted_and_random_der_never_panics_the_parser() {
    let dir = tempfile::tempdir().unwrap();
    let pem = openssl_csr(dir.path(), "ec:P-384", "sha256", "DNS:a.corp,IP:10.0.0.1");
    let (_, der) = der::pem::decode_vec(&pem).unwrap();
    let mut cases = 0;
    // Every truncation.
    for len in 0..der.len() {
        assert!(csr::parse(&der[..len], &[]).is_err());
        cases += 1;
    }
    // Single-byte corruptions at every offset, with several values: anything accepted must
    // still carry a signature that verifies (only bytes outside the signed part can change).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for offset in 0..der.len() {
        for _ in 0..8 {
            let mut bad = der.clone();
            bad[offset] = (next() & 0xff) as u8;
            let _ = csr::parse(&bad, &[]);
            cases += 1;
        }
    }
    // Random bytes behind a plausible SEQUENCE header.
    for _ in 0..3000 {
        let len = (next() % 600) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| (next() & 0xff) as u8).collect();
        if bytes.len() > 4 {
            bytes[0] = 0x30;
        }
        let _ = csr::parse(&bytes, &[]);
        cases += 1;
    }
    assert!(cases > 5000, "{cases}");
}
