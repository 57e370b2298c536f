//! `keyhold backup` end to end, as issue 19's "Tested" section lists: create a CA, issue and
//! revoke, back up, issue and revoke more, publish CRLs, destroy the data directory, restore
//! into a new one, and check OCSP for every certificate in the backup (with `openssl ocsp`),
//! `audit verify`, a new issuance and a CRL number above every one published. On the
//! embedded token with SQLite and with PostgreSQL, and on SoftHSM2. A tampered archive, a
//! wrong identity and a restore over a CA are refused. The restored CA also answers OCSP
//! over HTTP from a running `keyhold serve`.

use std::path::{Path, PathBuf};

use crate::cli::{PASS, Run, USER_PIN, fails_with, keyhold, run, shipped_policies};
use crate::revoke::{openssl, stderr, stdout};

/// One Keyhold data directory and the secret its key store needs.
struct Site {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Site {
    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = keyhold(&self.dir);
        cmd.arg("--policies").arg(shipped_policies()).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    }

    fn ca_file(&self, name: &str) -> String {
        self.dir.join("ca").join(name).to_str().unwrap().to_owned()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Issues a tls-server certificate for `name`.internal; returns (PEM path, serial).
fn issue(site: &Site, work: &Path, name: &str) -> (String, String) {
    let key = work.join(format!("{name}.key"));
    let csr = work.join(format!("{name}.csr"));
    let out = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&key),
        "-subj",
        &format!("/CN={name}.internal"),
        "-addext",
        &format!("subjectAltName=DNS:{name}.internal"),
        "-out",
        s(&csr),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pem = work.join(format!("{name}.pem"));
    let r = site.run(&[
        "issue",
        "--profile",
        "tls-server",
        "--csr",
        s(&csr),
        "--out",
        s(&pem),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = openssl(&["x509", "-in", s(&pem), "-noout", "-serial"]);
    let serial = stdout(&out)
        .trim()
        .trim_start_matches("serial=")
        .to_lowercase();
    (s(&pem).to_owned(), serial)
}

/// What the restored CA's OCSP responder says about `cert`, checked by `openssl ocsp`.
fn ocsp_status(site: &Site, work: &Path, cert: &str) -> String {
    let issuing = site.ca_file("issuing-ca.pem");
    let req = work.join("req.der");
    let resp = work.join("resp.der");
    let _ = std::fs::remove_file(&req);
    let _ = std::fs::remove_file(&resp);
    let out = openssl(&[
        "ocsp",
        "-issuer",
        &issuing,
        "-cert",
        cert,
        "-no_nonce",
        "-reqout",
        s(&req),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = site.run(&["ocsp", "respond", "--request", s(&req), "--out", s(&resp)]);
    assert!(r.ok, "{}", r.stderr);
    let out = openssl(&[
        "ocsp",
        "-respin",
        s(&resp),
        "-CAfile",
        &site.ca_file("root.pem"),
        "-verify_other",
        &issuing,
        "-issuer",
        &issuing,
        "-cert",
        cert,
        "-no_nonce",
    ]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Response verify OK"), "{said}");
    said
}

/// What `keyhold serve`'s `/ocsp` on `port` says about `cert` (POST, with a nonce), checked
/// by `openssl ocsp` against the site's root.
fn ocsp_over_http(site: &Site, port: u16, cert: &str) -> String {
    let issuing = site.ca_file("issuing-ca.pem");
    let out = openssl(&[
        "ocsp",
        "-issuer",
        &issuing,
        "-cert",
        cert,
        "-CAfile",
        &site.ca_file("root.pem"),
        "-verify_other",
        &issuing,
        "-url",
        &format!("http://127.0.0.1:{port}/ocsp"),
    ]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Response verify OK"), "{said}");
    said
}

fn crl_number(site: &Site, work: &Path, name: &str) -> u64 {
    let out = work.join(name);
    let r = site.run(&[
        "crl",
        "generate",
        "--issuer",
        "issuing-ca",
        "--out",
        s(&out),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let at = r.stdout.find("CRL number ").unwrap() + "CRL number ".len();
    r.stdout[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The whole cycle on one site; `init` makes the CA, `restore_db` names the database for
/// the restore (None: the restored keyhold.toml's SQLite default).
fn backup_restore_cycle(site: &Site, tmp: &Path, restore_db: Option<&str>) {
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let identity = tmp.join("backup.key");
    let r = site.run(&["backup", "keygen", "--out", s(&identity)]);
    assert!(r.ok, "{}", r.stderr);
    let recipient = r.stdout.trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");

    // Before the backup: two certificates, one revoked, one CRL.
    let (kept, _) = issue(site, &work, "kept");
    let (revoked_before, serial_rb) = issue(site, &work, "revoked-before");
    assert!(
        site.run(&["revoke", &serial_rb, "--reason", "keyCompromise"])
            .ok
    );
    let before = crl_number(site, &work, "before.crl");

    let archive = tmp.join("ca.khbak");
    let r = site.run(&[
        "backup",
        "create",
        "--out",
        s(&archive),
        "--recipient",
        &recipient,
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("signed by audit key sha256:"),
        "{}",
        r.stdout
    );

    // After it: more certificates, a revocation of one in the backup, newer CRLs.
    let (_after, _) = issue(site, &work, "after");
    let (_, serial_kept) = {
        let out = openssl(&["x509", "-in", &kept, "-noout", "-serial"]);
        (
            (),
            stdout(&out)
                .trim()
                .trim_start_matches("serial=")
                .to_lowercase(),
        )
    };
    assert!(
        site.run(&["revoke", &serial_kept, "--reason", "superseded"])
            .ok
    );
    let mut published = before;
    for n in 0..3 {
        let number = crl_number(site, &work, &format!("after-{n}.crl"));
        assert!(number > published);
        published = number;
    }

    // verify: intact; a wrong identity and an edited archive are refused.
    let r = site.run(&["backup", "verify", s(&archive), "--identity", s(&identity)]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("is intact"), "{}", r.stdout);
    let other = tmp.join("other.key");
    assert!(site.run(&["backup", "keygen", "--out", s(&other)]).ok);
    let r = site.run(&["backup", "verify", s(&archive), "--identity", s(&other)]);
    fails_with(&r, "does not open this archive");
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    let edited = tmp.join("edited.khbak");
    std::fs::write(&edited, &bytes).unwrap();
    let r = site.run(&["backup", "verify", s(&edited), "--identity", s(&identity)]);
    fails_with(&r, "backup archive refused");
    let truncated = tmp.join("truncated.khbak");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let r = site.run(&[
        "backup",
        "verify",
        s(&truncated),
        "--identity",
        s(&identity),
    ]);
    fails_with(&r, "backup archive refused");

    // A restore over the live CA changes nothing.
    let r = site.run(&["backup", "restore", s(&archive), "--identity", s(&identity)]);
    fails_with(&r, "not empty");

    // Destroy the data directory; restore into a new one.
    std::fs::remove_dir_all(&site.dir).unwrap();
    // The new database, as for every command: KEYHOLD_DATABASE_URL overrides keyhold.toml.
    let mut env = site.env.clone();
    if let Some(url) = restore_db {
        env.push(("KEYHOLD_DATABASE_URL", url.to_owned()));
    }
    let restored = Site {
        dir: tmp.join("restored"),
        env,
    };
    let args = vec!["backup", "restore", s(&archive), "--identity", s(&identity)];
    // An edited archive leaves nothing behind.
    let mut bad = args.clone();
    bad[2] = s(&edited);
    fails_with(&restored.run(&bad), "backup archive refused");
    assert!(!restored.dir.exists() || std::fs::read_dir(&restored.dir).unwrap().next().is_none());
    let r = restored.run(&args);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("restored into"), "{}", r.stdout);

    // Every certificate from the backup answers OCSP as it stood at the backup.
    let said = ocsp_status(&restored, &work, &kept);
    assert!(said.contains(&format!("{kept}: good")), "{said}");
    let said = ocsp_status(&restored, &work, &revoked_before);
    assert!(
        said.contains(&format!("{revoked_before}: revoked")),
        "{said}"
    );
    assert!(said.contains("keyCompromise"), "{said}");

    // And so does a running `keyhold serve` on the restored directory, over HTTP.
    let env: Vec<(&str, &str)> = restored.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = crate::serve::Server::start_opts(&work, &restored.dir, &env, false, false);
    let said = ocsp_over_http(&restored, server.port, &kept);
    assert!(said.contains(&format!("{kept}: good")), "{said}");
    let said = ocsp_over_http(&restored, server.port, &revoked_before);
    assert!(
        said.contains(&format!("{revoked_before}: revoked")) && said.contains("keyCompromise"),
        "{said}"
    );
    server.terminate();

    let r = restored.run(&["audit", "verify"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("audit log intact"), "{}", r.stdout);

    // Issuance continues, and the next CRL number is above every one ever published.
    issue(&restored, &work, "after-restore");
    let next = crl_number(&restored, &work, "restored.crl");
    assert!(next > published, "{next} <= {published}");
}

#[test]
fn an_embedded_sqlite_ca_restores_from_an_old_backup_and_never_reuses_a_crl_number() {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site {
        dir: tmp.path().join("data"),
        env: vec![("KEYHOLD_PASSPHRASE", PASS.to_owned())],
    };
    assert!(site.run(&["init"]).ok);
    backup_restore_cycle(&site, tmp.path(), None);
}

#[test]
fn an_embedded_postgres_ca_restores_into_a_new_database() {
    let Some((url, _place)) = crate::dbs::postgres_url() else {
        return;
    };
    let Some((target, _target_place)) = crate::dbs::postgres_url() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let site = Site {
        dir: tmp.path().join("data"),
        env: vec![("KEYHOLD_PASSPHRASE", PASS.to_owned())],
    };
    let r = site.run(&["init", "--database-url", &url]);
    assert!(r.ok, "{}", r.stderr);
    backup_restore_cycle(&site, tmp.path(), Some(&target));
}

#[test]
fn a_softhsm2_ca_backs_up_key_references_and_restores_against_the_same_token() {
    let Some((token, _)) = crate::cli::token() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let site = Site {
        dir: tmp.path().join("data"),
        env: vec![("KEYHOLD_PKCS11_PIN", USER_PIN.to_owned())],
    };
    let r = crate::cli::init_pkcs11(&site.dir, token, "bk-", USER_PIN);
    assert!(r.ok, "{}", r.stderr);
    backup_restore_cycle(&site, tmp.path(), None);
}
