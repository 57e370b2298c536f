use std::time::Duration;

use super::*;

const TLS: &str = r#"
        version = 1
        issuer = "issuing-ca"
        [validity]
        max_days = 90
        [keys]
        allowed = ["p256", "p384", "rsa"]
        [names]
        dns_suffixes = [".internal", ".corp"]
        dns_exact = ["exact.example"]
        ip_ranges = ["10.0.0.0/8"]
        email_domains = ["corp.example"]
        uri_prefixes = ["spiffe://corp/"]
        deny = ["admin.corp"]
        max_sans = 3
        require_san = true
        [subject]
        from_csr = ["CN"]
        fixed = { O = "Example" }
        [usage]
        key_usage = ["digitalSignature", "keyEncipherment"]
        extended_key_usage = ["serverAuth"]
    "#;

fn profile(text: &str) -> Profile {
    Profile::parse("tls-server", Path::new("tls-server.toml"), text).unwrap()
}

fn request() -> RequestFacts {
    RequestFacts {
        subject: vec![("CN".into(), "db.corp".into())],
        sans: vec![San::Dns("db.corp".into())],
        key: SubjectKey::Ec(KeyKind::P384),
        key_is_a_ca_key: false,
        validity_days: None,
    }
}

fn alice() -> Requester {
    Requester {
        name: "alice".into(),
        roles: vec!["requester".into()],
    }
}

const NOW: Duration = Duration::from_secs(1_800_000_000);
const YEAR: Duration = Duration::from_secs(365 * 86_400);

fn eval(p: &Profile, r: &RequestFacts) -> Decision {
    let now = SystemTime::UNIX_EPOCH + NOW;
    evaluate(p, r, &alice(), now, now + YEAR)
}

fn rejected(d: Decision) -> Vec<String> {
    match d {
        Decision::Reject(why) => why,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn key_usage_follows_the_key_type_within_what_the_profile_allows() {
    let plan = |r: &RequestFacts| match eval(&profile(TLS), r) {
        Decision::Issue(plan) => plan,
        other => panic!("expected issue, got {other:?}"),
    };
    // EC: keyEncipherment is wrong for an EC key, so digitalSignature alone.
    assert_eq!(plan(&request()).key_usage, ["digitalSignature"]);
    // RSA: NSS wants keyEncipherment on RSA server keys, and the profile allows it.
    let rsa = RequestFacts {
        key: SubjectKey::Rsa {
            bits: 2048,
            exponent: 65537,
        },
        ..request()
    };
    assert_eq!(
        plan(&rsa).key_usage,
        ["digitalSignature", "keyEncipherment"]
    );
    // A profile that does not allow encipherment never gets it, whatever the key.
    let signing_only = profile(&TLS.replace(
        r#"key_usage = ["digitalSignature", "keyEncipherment"]"#,
        r#"key_usage = ["digitalSignature"]"#,
    ));
    match eval(&signing_only, &rsa) {
        Decision::Issue(plan) => assert_eq!(plan.key_usage, ["digitalSignature"]),
        other => panic!("expected issue, got {other:?}"),
    }
    // keyAgreement is for EC keys only.
    let both = ["keyAgreement".to_string(), "dataEncipherment".to_string()];
    assert_eq!(usages_for_key(&both, KeyFamily::Ec), ["keyAgreement"]);
    assert_eq!(usages_for_key(&both, KeyFamily::Rsa), ["dataEncipherment"]);
    let own = own_server_plan(
        &profile(TLS),
        KeyFamily::Rsa,
        &[San::Dns("localhost".into())],
        YEAR,
        SystemTime::UNIX_EPOCH + NOW,
        SystemTime::UNIX_EPOCH + NOW + YEAR,
    )
    .unwrap();
    assert_eq!(own.key_usage, ["digitalSignature", "keyEncipherment"]);
}

#[test]
fn own_server_plan_ignores_the_allowed_names_but_keeps_usages_and_validity_caps() {
    let now = SystemTime::UNIX_EPOCH + NOW;
    let sans = [
        San::Dns("LocalHost".into()),
        San::Ip("127.0.0.1".parse().unwrap()),
        San::Dns("localhost".into()),
    ];
    let day = Duration::from_secs(86_400);
    let plan = own_server_plan(
        &profile(TLS),
        KeyFamily::Ec,
        &sans,
        30 * day,
        now,
        now + YEAR,
    )
    .unwrap();
    assert_eq!(
        plan.sans,
        [
            San::Dns("localhost".into()),
            San::Ip("127.0.0.1".parse().unwrap())
        ]
    );
    assert_eq!(
        plan.subject,
        [
            ("O".to_string(), "Example".to_string()),
            ("CN".into(), "localhost".into())
        ]
    );
    assert_eq!(plan.extended_key_usage, ["serverAuth"]);
    assert_eq!(plan.not_after, now + 30 * day);
    // Never past the profile's maximum or the issuer's notAfter.
    let plan = own_server_plan(&profile(TLS), KeyFamily::Ec, &sans, YEAR, now, now + YEAR).unwrap();
    assert_eq!(plan.not_after, now + 90 * day);
    let plan = own_server_plan(&profile(TLS), KeyFamily::Ec, &sans, YEAR, now, now + day).unwrap();
    assert_eq!(plan.not_after, now + day);
}

#[test]
fn own_server_plan_refuses_non_server_profiles_bad_names_and_an_expired_issuer() {
    let now = SystemTime::UNIX_EPOCH + NOW;
    let client = profile(&TLS.replace(r#"["serverAuth"]"#, r#"["clientAuth"]"#));
    let why = own_server_plan(
        &client,
        KeyFamily::Ec,
        &[San::Dns("bad name".into()), San::Email("a@b.corp".into())],
        YEAR,
        now,
        now,
    )
    .unwrap_err();
    assert_eq!(why.len(), 5, "{why:?}");
    assert!(why[0].contains("no serverAuth"), "{why:?}");
    assert!(why[4].contains("expired"), "{why:?}");
    let why =
        own_server_plan(&profile(TLS), KeyFamily::Ec, &[], YEAR, now, now + YEAR).unwrap_err();
    assert!(why[0].contains("at least one"), "{why:?}");
}

#[test]
fn a_conforming_request_is_issued_with_the_profiles_usages_and_fixed_subject() {
    let Decision::Issue(plan) = eval(&profile(TLS), &request()) else {
        panic!()
    };
    assert_eq!(plan.extended_key_usage, ["serverAuth"]);
    assert_eq!(
        plan.subject,
        [
            ("O".to_string(), "Example".to_string()),
            ("CN".into(), "db.corp".into())
        ]
    );
    assert_eq!(
        plan.not_after
            .duration_since(plan.not_before)
            .unwrap()
            .as_secs(),
        90 * 86_400
    );
}

#[test]
fn each_rule_rejects_what_it_should() {
    type Case = (&'static str, fn(&mut RequestFacts), &'static str);
    let cases: &[Case] = &[
        (
            "suffix",
            |r| r.sans = vec![San::Dns("db.example.com".into())],
            "outside the names",
        ),
        (
            "suffix boundary",
            |r| r.sans = vec![San::Dns("evilcorp".into())],
            "outside the names",
        ),
        (
            "wildcard",
            |r| r.sans = vec![San::Dns("*.svc.corp".into())],
            "wildcard",
        ),
        (
            "deny list",
            |r| r.sans = vec![San::Dns("x.admin.corp".into())],
            "deny list",
        ),
        (
            "bad dns",
            |r| r.sans = vec![San::Dns("a..corp".into())],
            "invalid label",
        ),
        (
            "ip range",
            |r| r.sans = vec![San::Ip("192.168.1.1".parse().unwrap())],
            "ip address",
        ),
        (
            "email",
            |r| r.sans = vec![San::Email("x@evil.example".into())],
            "email",
        ),
        (
            "uri",
            |r| r.sans = vec![San::Uri("https://x".into())],
            "uri",
        ),
        (
            "max sans",
            |r| r.sans = vec![San::Dns("a.corp".into()); 4],
            "at most 3",
        ),
        (
            "no san",
            |r| r.sans.clear(),
            "at least one subject alternative name",
        ),
        (
            "cn not a san",
            |r| r.subject = vec![("CN".into(), "other.corp".into())],
            "not one of the subject alternative",
        ),
        (
            "subject field",
            |r| r.subject.push(("OU".into(), "x".into())),
            "OU may not come",
        ),
        (
            "key type",
            |r| r.key = SubjectKey::Other("ed25519".into()),
            "unsupported key",
        ),
        (
            "small rsa",
            |r| {
                r.key = SubjectKey::Rsa {
                    bits: 1024,
                    exponent: 65537,
                }
            },
            "below the minimum",
        ),
        (
            "rsa exponent 1",
            |r| {
                r.key = SubjectKey::Rsa {
                    bits: 2048,
                    exponent: 1,
                }
            },
            "exponent 1",
        ),
        (
            "even exponent",
            |r| {
                r.key = SubjectKey::Rsa {
                    bits: 2048,
                    exponent: 65536,
                }
            },
            "exponent 65536",
        ),
        ("ca key", |r| r.key_is_a_ca_key = true, "CA's own keys"),
    ];
    for (name, mutate, needle) in cases {
        let mut r = request();
        mutate(&mut r);
        let why = rejected(eval(&profile(TLS), &r));
        assert!(why.iter().any(|w| w.contains(needle)), "{name}: {why:?}");
    }
}

#[test]
fn every_violation_is_reported_not_just_the_first() {
    let mut r = request();
    r.sans = vec![
        San::Dns("x.example.com".into()),
        San::Ip("8.8.8.8".parse().unwrap()),
    ];
    r.key = SubjectKey::Rsa {
        bits: 1024,
        exponent: 3,
    };
    let why = rejected(eval(&profile(TLS), &r));
    assert_eq!(why.len(), 4, "{why:?}"); // dns, ip, cn-not-in-sans, rsa size
}

#[test]
fn validity_is_clamped_or_refused_as_the_profile_says_and_never_outlives_the_issuer() {
    let mut r = request();
    r.validity_days = Some(400);
    let Decision::Issue(plan) = eval(&profile(TLS), &r) else {
        panic!()
    };
    assert_eq!(
        plan.not_after
            .duration_since(plan.not_before)
            .unwrap()
            .as_secs(),
        90 * 86_400
    );
    let strict = profile(&TLS.replace("max_days = 90", "max_days = 90\non_excess = \"reject\""));
    assert!(rejected(eval(&strict, &r))[0].contains("exceeds"));

    let now = SystemTime::UNIX_EPOCH + NOW;
    let soon = now + Duration::from_secs(86_400);
    let Decision::Issue(plan) = evaluate(&profile(TLS), &request(), &alice(), now, soon) else {
        panic!()
    };
    assert_eq!(plan.not_after, soon);
}

#[test]
fn approvals_and_roles_are_enforced() {
    let quorum = profile(&format!(
        "{TLS}\n[approval]\napprovals = 2\nrequester_roles = [\"requester\"]\n"
    ));
    assert!(matches!(
        eval(&quorum, &request()),
        Decision::NeedsApproval { approvals: 2, .. }
    ));
    let officers_only = profile(&format!(
        "{TLS}\n[approval]\nrequester_roles = [\"officer\"]\n"
    ));
    assert!(rejected(eval(&officers_only, &request()))[0].contains("needs role officer"));
    let cli = profile(&TLS.replace(
        "issuer = \"issuing-ca\"",
        "issuer = \"issuing-ca\"\ncli_only = true",
    ));
    assert!(rejected(eval(&cli, &request()))[0].contains("ceremony CLI"));
}

#[test]
fn invalid_profiles_report_every_problem_with_the_path() {
    let bad = TLS
        .replace("version = 1", "version = 2")
        .replace("\"serverAuth\"", "\"serverAuthh\"")
        .replace("10.0.0.0/8", "10.0.0.1/8")
        .replace("from_csr = [\"CN\"]", "from_csr = [\"XX\"]");
    let err = Profile::parse("t", Path::new("policies/t.toml"), &bad).unwrap_err();
    assert_eq!(err.0.len(), 4, "{err}");
    assert!(
        err.0.iter().all(|e| e.starts_with("policies/t.toml: ")),
        "{err}"
    );
    let err = Profile::parse(
        "t",
        Path::new("policies/t.toml"),
        "version = 1\nbogus = 1\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("line 1") || err.to_string().contains("bogus"),
        "{err}"
    );
}

#[test]
fn the_shipped_policies_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let profiles = load_dir(&dir).unwrap();
    let names: Vec<_> = profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["code-signing", "sub-ca", "tls-client", "tls-server"]
    );
    let limits = profiles[0].codesign_limits().unwrap();
    assert_eq!(limits.per_minute, 60);
    assert_eq!(limits.per_day, Some(1000));
    assert_eq!(profiles[3].codesign_limits(), None);
}

#[test]
fn codesign_limits_default_and_are_validated_at_load() {
    let signing = TLS.replace("\"serverAuth\"", "\"codeSigning\"");
    assert_eq!(
        profile(&signing).codesign_limits(),
        Some(CodesignLimits {
            per_minute: DEFAULT_SIGNATURES_PER_MINUTE,
            per_day: None
        })
    );
    let zero = format!(
        "{signing}\n[codesign]\nmax_signatures_per_minute = 0\nmax_signatures_per_day = 0\n"
    );
    let err = Profile::parse("t", Path::new("t.toml"), &zero).unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
    assert!(
        err.to_string()
            .contains("max_signatures_per_minute must be at least 1")
    );
    let on_tls = format!("{TLS}\n[codesign]\nmax_signatures_per_day = 5\n");
    let err = Profile::parse("t", Path::new("t.toml"), &on_tls).unwrap_err();
    assert!(err.to_string().contains("only to profiles"), "{err}");
    let typo = format!("{signing}\n[codesign]\nmax_per_day = 5\n");
    assert!(Profile::parse("t", Path::new("t.toml"), &typo).is_err());
}

#[test]
fn a_ca_profile_must_be_cli_only_under_two_approvals_without_ekus() {
    let ca = |extra: &str| {
        let text = format!(
            "version = 1\nissuer = \"root\"\n{extra}\n[validity]\nmax_days = 365\n\
                 [keys]\nallowed = [\"p384\"]\n[usage]\nkey_usage = [\"keyCertSign\", \"cRLSign\"]\n"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.toml"), text).unwrap();
        load_dir(dir.path()).map(|_| ()).map_err(|e| e.to_string())
    };
    let e = ca("").unwrap_err();
    assert!(
        e.contains("must be cli_only") && e.contains("at least 2"),
        "{e}"
    );
    let e = ca("cli_only = true\n[approval]\napprovals = 1").unwrap_err();
    assert!(e.contains("at least 2") && !e.contains("cli_only"), "{e}");
    ca("cli_only = true\n[approval]\napprovals = 2\nrequester_roles = [\"officer\"]").unwrap();
}

#[test]
fn only_profiles_without_approvals_or_ca_powers_open_to_acme() {
    let open = TLS.replacen(
        "issuer = \"issuing-ca\"",
        "issuer = \"issuing-ca\"\nacme = true",
        1,
    );
    assert!(profile(&open).acme());
    assert!(!profile(TLS).acme());
    let approvals = format!("{open}\n[approval]\napprovals = 1\n");
    let err = Profile::parse("t", Path::new("t.toml"), &approvals).unwrap_err();
    assert!(
        err.to_string()
            .contains("needs approvals cannot be open to ACME"),
        "{err}"
    );
    let ca = "version = 1\nissuer = \"root\"\nacme = true\ncli_only = true\n[validity]\nmax_days = 365\n\
              [keys]\nallowed = [\"p384\"]\n[usage]\nkey_usage = [\"keyCertSign\", \"cRLSign\"]\n\
              [approval]\napprovals = 2\nrequester_roles = [\"officer\"]\n";
    let err = Profile::parse("ca", Path::new("ca.toml"), ca).unwrap_err();
    assert!(err.to_string().contains("cannot be open to ACME"), "{err}");
    let shipped = include_str!("../../../policies/tls-server.toml");
    assert!(
        profile(shipped).acme(),
        "the shipped tls-server profile is open to ACME"
    );
}
