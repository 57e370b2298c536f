use std::io::{Read, Write};
use std::sync::Arc;

use super::*;
use crate::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use crate::keystore::{KeyRef, KeySpec, KeyStore, Signer};
use crate::secret::Secret;

struct Fixture {
    _dir: tempfile::TempDir,
    signer: Arc<dyn Signer>,
    other: Arc<dyn Signer>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedKeyStore::create(
        &dir.path().join("token"),
        &Secret::new("correct horse battery staple".into()),
        KdfParams::insecure_for_tests(),
    )
    .unwrap();
    let audit = KeyRef::new("audit").unwrap();
    let other = KeyRef::new("someone-else").unwrap();
    store.generate(&audit, KeySpec::EcP256).unwrap();
    store.generate(&other, KeySpec::EcP256).unwrap();
    Fixture {
        signer: store.signer(&audit).unwrap(),
        other: store.signer(&other).unwrap(),
        _dir: dir,
    }
}

fn info() -> ManifestInfo {
    ManifestInfo {
        keyhold_version: "0.1.0".into(),
        schema_version: "20261123195000".into(),
        database: "sqlite".into(),
        created_at_micros: 1_735_689_600_000_000,
        audit_head: Some(AuditHead {
            seq: 7,
            sha256: "00".repeat(32),
        }),
        keys: KeyNote {
            backend: "embedded".into(),
            keys_included: true,
            references: vec!["embedded:root-ca".into()],
            note: "sealed key files under token/".into(),
        },
    }
}

/// An archive with a part from memory, one from a file and a directory of two.
fn archive(signer: &dyn Signer, to: &[Recipient]) -> (Vec<u8>, Manifest) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("db"), vec![7u8; 100_000]).unwrap();
    std::fs::create_dir_all(src.path().join("ca/sub")).unwrap();
    std::fs::write(src.path().join("ca/root.pem"), b"root").unwrap();
    std::fs::write(src.path().join("ca/sub/x.pem"), b"x").unwrap();
    let mut w = ArchiveWriter::new(Vec::new(), to).unwrap();
    w.add_bytes("keyhold.toml", b"version = 1\n").unwrap();
    w.add_file("db/keyhold.db", &src.path().join("db")).unwrap();
    w.add_dir("ca", &src.path().join("ca")).unwrap();
    let (manifest, out) = w.finish(info(), "embedded:audit", signer).unwrap();
    (out, manifest)
}

fn decrypt(bytes: &[u8], id: &Identity) -> Vec<u8> {
    let d = age::Decryptor::new(bytes).unwrap();
    let mut out = Vec::new();
    d.decrypt(id.as_dyn())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn encrypt(plain: &[u8], to: &Recipient) -> Vec<u8> {
    let e = age::Encryptor::with_recipients(std::iter::once(&to.0 as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut w = e.wrap_output(&mut out).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap();
    out
}

#[test]
fn an_archive_round_trips_for_every_recipient_and_extracts_every_part() {
    let f = fixture();
    let (a, b) = (Identity::generate(), Identity::generate());
    let to = [a.recipient().unwrap(), b.recipient().unwrap()];
    let (bytes, written) = archive(f.signer.as_ref(), &to);
    assert_eq!(
        written
            .parts
            .iter()
            .map(|p| p.path.as_str())
            .collect::<Vec<_>>(),
        [
            "keyhold.toml",
            "db/keyhold.db",
            "ca/root.pem",
            "ca/sub/x.pem"
        ]
    );
    for id in [&a, &b] {
        let m = verify(bytes.as_slice(), id, Some(f.signer.public_key())).unwrap();
        assert_eq!(m, written);
    }
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored");
    let got = extract(bytes.as_slice(), &a, None, &dest).unwrap();
    assert_eq!(got.manifest, written);
    assert_eq!(
        std::fs::read(dest.join("db/keyhold.db")).unwrap(),
        vec![7u8; 100_000]
    );
    assert_eq!(std::fs::read(dest.join("ca/sub/x.pem")).unwrap(), b"x");
    assert_eq!(
        std::fs::read(dest.join("keyhold.toml")).unwrap(),
        b"version = 1\n"
    );
    // The identity file round-trips through its text form.
    let again = Identity::parse(&a.to_file_text()).unwrap();
    verify(bytes.as_slice(), &again, None).unwrap();
    // Debug never shows the secret.
    assert!(!format!("{a:?}").contains("AGE-SECRET-KEY"));
}

#[test]
fn a_wrong_identity_is_refused() {
    let f = fixture();
    let id = Identity::generate();
    let (bytes, _) = archive(f.signer.as_ref(), &[id.recipient().unwrap()]);
    let err = verify(bytes.as_slice(), &Identity::generate(), None).unwrap_err();
    assert!(matches!(err, BackupError::Key(_)), "{err}");
    assert!(err.to_string().contains("does not open"), "{err}");
}

#[test]
fn a_truncated_or_edited_archive_is_refused_and_extracts_nothing() {
    let f = fixture();
    let id = Identity::generate();
    let (bytes, _) = archive(f.signer.as_ref(), &[id.recipient().unwrap()]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored");

    for cut in [1, 200, bytes.len() / 2] {
        let short = &bytes[..bytes.len() - cut];
        let err = extract(short, &id, None, &dest).unwrap_err();
        assert!(matches!(err, BackupError::Tampered(_)), "cut {cut}: {err}");
        assert!(!dest.exists(), "cut {cut}: a failed restore left files");
    }
    for at in [bytes.len() / 3, bytes.len() - 20] {
        let mut edited = bytes.clone();
        edited[at] ^= 0x01;
        let err = verify(edited.as_slice(), &id, None).unwrap_err();
        assert!(matches!(err, BackupError::Tampered(_)), "byte {at}: {err}");
    }
}

#[test]
fn a_part_edited_and_re_encrypted_by_someone_with_the_identity_is_refused() {
    let f = fixture();
    let id = Identity::generate();
    let to = id.recipient().unwrap();
    let (bytes, _) = archive(f.signer.as_ref(), std::slice::from_ref(&to));
    let mut plain = decrypt(&bytes, &id);
    // The first part's content starts after its 512-byte header.
    assert_eq!(&plain[512..523], b"version = 1");
    plain[512] = b'V';
    let err = verify(encrypt(&plain, &to).as_slice(), &id, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("keyhold.toml does not match its SHA-256"),
        "{err}"
    );
}

#[test]
fn an_archive_signed_by_another_key_is_refused_when_the_audit_key_is_known() {
    let f = fixture();
    let id = Identity::generate();
    let (forged, _) = archive(f.other.as_ref(), &[id.recipient().unwrap()]);
    let err = verify(forged.as_slice(), &id, Some(f.signer.public_key())).unwrap_err();
    assert!(matches!(err, BackupError::Refused(_)), "{err}");
    assert!(
        err.to_string().contains("not by the trusted audit key"),
        "{err}"
    );
    // Without a trusted key the signature still has to verify with the key it names.
    let m = verify(forged.as_slice(), &id, None).unwrap();
    assert_eq!(m.signer.fingerprint, f.other.public_key().fingerprint());
}

#[test]
fn a_manifest_whose_signature_does_not_verify_is_refused() {
    let f = fixture();
    let id = Identity::generate();
    let to = id.recipient().unwrap();
    let (bytes, _) = archive(f.signer.as_ref(), std::slice::from_ref(&to));
    let mut plain = decrypt(&bytes, &id);
    // Edit the manifest's stated schema version, keeping its length.
    let needle = b"20261123195000";
    let at = plain
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    plain[at] = b'3';
    let err = verify(encrypt(&plain, &to).as_slice(), &id, None).unwrap_err();
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );
}

#[test]
fn extract_refuses_a_non_empty_directory_and_accepts_an_empty_one() {
    let f = fixture();
    let id = Identity::generate();
    let (bytes, _) = archive(f.signer.as_ref(), &[id.recipient().unwrap()]);
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("keyhold.toml"), b"existing CA").unwrap();
    let err = extract(bytes.as_slice(), &id, None, out.path()).unwrap_err();
    assert!(matches!(err, BackupError::Refused(_)), "{err}");
    assert_eq!(
        std::fs::read(out.path().join("keyhold.toml")).unwrap(),
        b"existing CA"
    );

    let empty = out.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    extract(bytes.as_slice(), &id, None, &empty).unwrap();
    assert!(empty.join("ca/root.pem").exists());
}

#[test]
fn part_names_that_could_escape_the_directory_are_refused() {
    for bad in [
        "../x",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "",
        "a b",
        "a/../../b",
    ] {
        assert!(archive::check_path(bad).is_err(), "{bad:?}");
    }
    for good in [
        "keyhold.toml",
        "token/keys/root-ca.key",
        "db/postgres/audit_log.jsonl",
    ] {
        archive::check_path(good).unwrap();
    }
    let mut w =
        ArchiveWriter::new(Vec::new(), &[Identity::generate().recipient().unwrap()]).unwrap();
    assert!(w.add_bytes("MANIFEST.json", b"{}").is_err());
    assert!(ArchiveWriter::new(Vec::new(), &[]).is_err());
}

#[test]
fn recipients_and_identities_that_do_not_parse_are_named_without_echoing_secrets() {
    let err = Recipient::parse("age1nope").unwrap_err();
    assert!(err.to_string().contains("age1nope"), "{err}");
    let err = Identity::parse("# comment\nAGE-SECRET-KEY-1SECRETBUTBROKEN\n").unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(!err.to_string().contains("SECRETBUTBROKEN"), "{err}");
    assert!(Identity::parse("# only a comment\n").is_err());
}
