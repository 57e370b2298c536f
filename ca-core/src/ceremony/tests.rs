use super::*;

#[test]
fn an_empty_file_gives_the_default_hierarchy() {
    let spec = CeremonySpec::from_toml("").unwrap();
    assert_eq!(
        spec.key_labels(),
        [
            "root-ca",
            "root-ca-ocsp",
            "issuing-ca",
            "issuing-ca-ocsp",
            "codesign-ca",
            "codesign-ca-ocsp",
            "audit"
        ]
    );
    assert_eq!(spec.crl_url("root"), "http://127.0.0.1:8080/crl/root.crl");
}

#[test]
fn every_problem_is_reported_together() {
    let text = r#"
        version = 2
        base_url = "ftp://x/"
        [root]
        subject = "nonsense"
        validity_years = 0
        [[issuing]]
        id = "Bad Id"
        subject = "CN=A"
        [[issuing]]
        id = "root"
        subject = "CN=A"
        [[issuing]]
        id = "x-chain"
        subject = "CN=B"
    "#;
    let Err(CeremonyError::Invalid(problems)) = CeremonySpec::from_toml(text) else {
        panic!("expected Invalid")
    };
    let all = problems.join("\n");
    for needle in [
        "version = 2",
        "base_url",
        "root.subject",
        "root.validity_years",
        "issuing[0] (Bad Id): id",
        "used twice",
        "end in -chain",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn unknown_fields_are_refused() {
    let err = CeremonySpec::from_toml("[root]\nsubjekt = \"CN=x\"\n").unwrap_err();
    assert!(err.to_string().contains("subjekt"), "{err}");
}
