//! Certificate lists: newest first, keyset paging, every filter.

use std::time::Duration;

use ca_core::audit::Action;
use ca_core::store::{
    CertFilter, CertSort, CertStatus, CertificateQueries, CertificateRow, IssuanceLedger,
    RevocationLedger, Serial,
};

use crate::support::*;

on_both_backends!(
    pages_walk_every_certificate_once_newest_first,
    pages_walk_a_filtered_list,
    search_is_a_case_insensitive_substring_of_subject_sans_or_serial,
    search_takes_wildcards_literally,
    expiring_lists_valid_certificates_not_yet_expired,
    a_page_holds_at_most_a_thousand,
    issued_certificates_are_counted_per_utc_day,
    certificates_completed_together_are_each_counted_once,
    pages_walk_every_certificate_once_in_every_order,
    counts_are_exact_and_scoped_to_a_requester,
    a_common_substring_is_found_as_surely_as_a_rare_one,
    search_takes_quotes_literally,
    search_finds_rows_before_and_after_the_index_catches_up,
);

/// Certificates 1..=n, created two per second (so created_at ties, broken by serial),
/// alternating profile and requester; every third one left reserved.
fn populate(b: &Backend, n: u64) {
    with_issuer(b);
    for i in 1..=n {
        b.clock.set(t0() + Duration::from_secs(i / 2));
        let s = serial(i);
        let mut cert = new_cert(&s);
        cert.profile = if i % 2 == 0 {
            "tls-server"
        } else {
            "tls-client"
        }
        .into();
        cert.requester = if i % 3 == 0 { "bob" } else { "alice" }.into();
        // Five expiry days, so that sorting by expiry has ties too.
        cert.not_after = t0() + Duration::from_secs(86_400 * (90 + i % 5));
        b.db.reserve(&cert, &event(Action::IssuanceStarted, ""))
            .unwrap();
        if i % 3 != 1 {
            b.db.complete(&s, b"DER", &event(Action::CertificateIssued, ""))
                .unwrap();
        }
    }
}

/// Walks every page of `filter` with `page` rows each.
fn walk(b: &Backend, filter: &CertFilter, page: u32) -> Vec<CertificateRow> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let rows =
            b.db.certificates(&CertFilter {
                after: after.clone(),
                limit: page,
                ..filter.clone()
            })
            .unwrap();
        assert!(rows.len() <= page as usize);
        let Some(last) = rows.last() else { break };
        after = Some((filter.sort.key(last), last.serial.clone()));
        let short = rows.len() < page as usize;
        all.extend(rows);
        if short {
            break;
        }
    }
    all
}

/// Newest first, ties by serial descending.
fn expected_order(rows: &mut [CertificateRow]) {
    rows.sort_by(|a, b| (b.created_at, &b.serial).cmp(&(a.created_at, &a.serial)));
}

fn serials(rows: &[CertificateRow]) -> Vec<Serial> {
    rows.iter().map(|r| r.serial.clone()).collect()
}

fn pages_walk_every_certificate_once_newest_first(b: &Backend) {
    populate(b, 23);
    let everything = b.db.certificates(&CertFilter::default()).unwrap();
    assert_eq!(everything.len(), 23);
    let mut sorted = everything.clone();
    expected_order(&mut sorted);
    assert_eq!(serials(&everything), serials(&sorted));
    assert_eq!(everything[0].serial, serial(23));
    for page in [1, 4, 7, 23, 50] {
        assert_eq!(
            serials(&walk(b, &CertFilter::default(), page)),
            serials(&everything),
            "page size {page}"
        );
    }
}

fn pages_walk_a_filtered_list(b: &Backend) {
    populate(b, 30);
    let everything = b.db.certificates(&CertFilter::default()).unwrap();
    let filters = [
        CertFilter {
            profile: Some("tls-server".into()),
            ..Default::default()
        },
        CertFilter {
            status: Some(CertStatus::Reserved),
            ..Default::default()
        },
        CertFilter {
            status: Some(CertStatus::Valid),
            ..Default::default()
        },
        CertFilter {
            requester: Some("bob".into()),
            ..Default::default()
        },
        CertFilter {
            profile: Some("tls-client".into()),
            status: Some(CertStatus::Valid),
            requester: Some("alice".into()),
            ..Default::default()
        },
    ];
    for filter in filters {
        let expected: Vec<_> = everything
            .iter()
            .filter(|r| filter.profile.as_ref().is_none_or(|p| &r.profile == p))
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .filter(|r| filter.requester.as_ref().is_none_or(|q| &r.requester == q))
            .cloned()
            .collect();
        assert!(!expected.is_empty(), "{filter:?}");
        assert_eq!(
            serials(&walk(b, &filter, 3)),
            serials(&expected),
            "{filter:?}"
        );
    }
}

fn search_is_a_case_insensitive_substring_of_subject_sans_or_serial(b: &Backend) {
    with_issuer(b);
    let mut web = new_cert(&Serial::parse("0a1b2c3d").unwrap());
    web.subject = "CN=Web.Example.Internal,O=Keyhold".into();
    web.sans = "DNS:web.example.internal IP:10.0.0.7".into();
    let mut db = new_cert(&Serial::parse("77ee").unwrap());
    db.subject = "CN=Database".into();
    db.sans = "DNS:db.corp.internal".into();
    for c in [&web, &db] {
        b.db.reserve(c, &event(Action::IssuanceStarted, ""))
            .unwrap();
    }
    let found = |q: &str| -> Vec<String> {
        b.db.certificates(&CertFilter {
            search: Some(q.into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.serial.to_string())
        .collect()
    };
    assert_eq!(
        found("WEB.example"),
        ["0a1b2c3d"],
        "subject and SANs, any case"
    );
    assert_eq!(found("o=keyhold"), ["0a1b2c3d"]);
    assert_eq!(found("10.0.0.7"), ["0a1b2c3d"]);
    assert_eq!(found("CORP"), ["77ee"]);
    assert_eq!(found("1B2C"), ["0a1b2c3d"], "the serial, any case");
    assert_eq!(found("internal").len(), 2);
    assert!(found("nowhere").is_empty());
    assert_eq!(found("").len(), 2, "an empty search matches everything");
}

fn search_takes_wildcards_literally(b: &Backend) {
    with_issuer(b);
    let mut odd = new_cert(&serial(1));
    odd.subject = "CN=100% sure_thing\\x".into();
    b.db.reserve(&odd, &event(Action::IssuanceStarted, ""))
        .unwrap();
    b.db.reserve(&new_cert(&serial(2)), &event(Action::IssuanceStarted, ""))
        .unwrap();
    let count = |q: &str| {
        b.db.certificates(&CertFilter {
            search: Some(q.into()),
            ..Default::default()
        })
        .unwrap()
        .len()
    };
    assert_eq!(count("100%"), 1);
    assert_eq!(count("%"), 1);
    assert_eq!(count("_"), 1);
    assert_eq!(count("sure_thing\\x"), 1);
    assert_eq!(count("\\"), 1);
}

fn expiring_lists_valid_certificates_not_yet_expired(b: &Backend) {
    with_issuer(b);
    let day = Duration::from_secs(86_400);
    // (serial, notAfter in days from t0, issued?)
    for (n, days, issued) in [
        (1, 5, true),
        (2, 20, true),
        (3, 40, true),
        (4, 10, false),
        (5, 1, true),
    ] {
        let mut cert = new_cert(&serial(n));
        cert.not_after = t0() + day * days;
        b.db.reserve(&cert, &event(Action::IssuanceStarted, ""))
            .unwrap();
        if issued {
            b.db.complete(&serial(n), b"DER", &event(Action::CertificateIssued, ""))
                .unwrap();
        }
    }
    // Now is two days in: certificate 5 has expired already.
    b.clock.set(t0() + day * 2);
    let expiring = |within: u32| -> Vec<Serial> {
        let filter = CertFilter {
            expiring_before: Some(t0() + day * within),
            ..Default::default()
        };
        let mut s = serials(&b.db.certificates(&filter).unwrap());
        s.sort();
        s
    };
    assert_eq!(expiring(30), [serial(1), serial(2)]);
    assert_eq!(expiring(6), [serial(1)]);
    assert!(expiring(2).is_empty());
}

fn a_page_holds_at_most_a_thousand(b: &Backend) {
    with_issuer(b);
    // Many callers at once, so group commit makes this quick.
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            scope.spawn(move || {
                for i in 0..126u64 {
                    let s = serial(t * 1_000 + i);
                    b.db.reserve(&new_cert(&s), &event(Action::IssuanceStarted, ""))
                        .unwrap();
                }
            });
        }
    });
    let page = |limit| {
        b.db.certificates(&CertFilter {
            limit,
            ..Default::default()
        })
        .unwrap()
        .len()
    };
    assert_eq!(page(5_000), 1_000);
    assert_eq!(page(0), 1_000, "0 asks for the largest page");
    assert_eq!(page(1_000), 1_000);
    assert_eq!(page(10), 10);
    assert_eq!(walk(b, &CertFilter::default(), 1_000).len(), 1_008);
}

fn issued_certificates_are_counted_per_utc_day(b: &Backend) {
    with_issuer(b);
    let day0 = t0()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 86_400;
    // Day 0: three issued, one left reserved; day 2: one issued by bob, then revoked.
    let at = |day: u64, secs: u64| t0() + Duration::from_secs(day * 86_400 + secs);
    let mut n = 0;
    for (day, secs, requester, complete) in [
        (0, 10, "alice", true),
        (0, 86_399, "alice", true),
        (0, 500, "bob", true),
        (0, 600, "alice", false),
        (2, 0, "bob", true),
    ] {
        n += 1;
        b.clock.set(at(day, secs));
        let s = serial(n);
        let mut cert = new_cert(&s);
        cert.requester = requester.into();
        b.db.reserve(&cert, &event(Action::IssuanceStarted, ""))
            .unwrap();
        if complete {
            b.db.complete(&s, b"DER", &event(Action::CertificateIssued, ""))
                .unwrap();
        }
    }
    b.db.revoke(
        &ca_core::store::Revocation {
            serial: serial(5),
            reason: ca_core::revocation::Reason::Superseded,
            invalidity_date: None,
            revoked_at: at(2, 1),
        },
        &event(Action::CertificateRevoked, ""),
    )
    .unwrap();

    let all = b.db.issued_per_day(t0(), None).unwrap();
    assert_eq!(all, [(day0, 3), (day0 + 2, 1)], "{}", b.name);
    let bobs = b.db.issued_per_day(t0(), Some("bob")).unwrap();
    assert_eq!(bobs, [(day0, 1), (day0 + 2, 1)], "{}", b.name);
    let later = b.db.issued_per_day(at(1, 0), None).unwrap();
    assert_eq!(later, [(day0 + 2, 1)], "{}", b.name);
}

/// Many completions share a writer batch, whose counts are written once per day and
/// requester at its end; a completion refused inside the batch counts nothing.
fn certificates_completed_together_are_each_counted_once(b: &Backend) {
    with_issuer(b);
    let at = t0() + Duration::from_secs(60);
    let day = i64::try_from(at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        .unwrap()
        .div_euclid(86_400);
    b.clock.set(at);
    let threads = 8u64;
    let each = 25u64;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let db = &b.db;
            scope.spawn(move || {
                for i in 0..each {
                    let s = serial(1000 + t * each + i);
                    let mut cert = new_cert(&s);
                    cert.requester = if t % 2 == 0 { "alice" } else { "bob" }.into();
                    db.reserve(&cert, &event(Action::IssuanceStarted, ""))
                        .unwrap();
                    db.complete(&s, b"DER", &event(Action::CertificateIssued, ""))
                        .unwrap();
                    // A second completion is refused, and must not count again.
                    db.complete(&s, b"DER", &event(Action::CertificateIssued, ""))
                        .unwrap_err();
                }
            });
        }
    });
    let all = b.db.issued_per_day(t0(), None).unwrap();
    assert_eq!(all, [(day, threads * each)], "{}", b.name);
    let bobs = b.db.issued_per_day(t0(), Some("bob")).unwrap();
    assert_eq!(bobs, [(day, threads / 2 * each)], "{}", b.name);
}

fn pages_walk_every_certificate_once_in_every_order(b: &Backend) {
    populate(b, 23);
    let everything = b.db.certificates(&CertFilter::default()).unwrap();
    for sort in CertSort::ALL {
        let mut want = everything.clone();
        want.sort_by(|x, y| {
            let (kx, ky) = ((sort.key(x), &x.serial), (sort.key(y), &y.serial));
            match sort {
                CertSort::Oldest | CertSort::ExpiresFirst => kx.cmp(&ky),
                CertSort::Newest | CertSort::ExpiresLast => ky.cmp(&kx),
            }
        });
        for page in [1, 4, 23, 100] {
            let got = walk(
                b,
                &CertFilter {
                    sort,
                    ..Default::default()
                },
                page,
            );
            assert_eq!(serials(&got), serials(&want), "{sort:?}, pages of {page}");
        }
        // Sorting composes with a filter.
        let bobs = walk(
            b,
            &CertFilter {
                sort,
                requester: Some("bob".into()),
                ..Default::default()
            },
            2,
        );
        let want_bobs: Vec<Serial> = want
            .iter()
            .filter(|r| r.requester == "bob")
            .map(|r| r.serial.clone())
            .collect();
        assert_eq!(serials(&bobs), want_bobs, "{sort:?}, bob's");
    }
}

fn counts_are_exact_and_scoped_to_a_requester(b: &Backend) {
    with_issuer(b);
    let day = Duration::from_secs(86_400);
    // (serial, requester, notAfter in days from t0, final state)
    for (n, who, days, state) in [
        (1, "alice", 90, "valid"),
        (2, "alice", 10, "valid"),
        (3, "bob", 20, "valid"),
        (4, "bob", 1, "valid"),
        (5, "alice", 90, "revoked"),
        (6, "alice", 90, "reserved"),
        (7, "bob", 5, "failed"),
    ] {
        let mut cert = new_cert(&serial(n));
        cert.requester = who.into();
        cert.not_after = t0() + day * days;
        b.db.reserve(&cert, &event(Action::IssuanceStarted, ""))
            .unwrap();
        match state {
            "valid" | "revoked" => {
                b.db.complete(&serial(n), b"DER", &event(Action::CertificateIssued, ""))
                    .unwrap()
            }
            "failed" => {
                b.db.fail(&serial(n), "test", &event(Action::SigningFailed, ""))
                    .unwrap()
            }
            _ => {}
        }
        if state == "revoked" {
            b.db.revoke(
                &ca_core::store::Revocation {
                    serial: serial(n),
                    reason: ca_core::revocation::Reason::Superseded,
                    invalidity_date: None,
                    revoked_at: t0(),
                },
                &event(Action::CertificateRevoked, ""),
            )
            .unwrap();
        }
    }
    // Two days in: certificate 4 has expired; 2 and 3 expire within 30 days.
    b.clock.set(t0() + day * 2);
    let all = b.db.counts(None, t0() + day * 32).unwrap();
    assert_eq!(
        (all.valid, all.expiring, all.revoked),
        (3, 2, 1),
        "{}",
        b.name
    );
    let bobs = b.db.counts(Some("bob"), t0() + day * 32).unwrap();
    assert_eq!((bobs.valid, bobs.expiring, bobs.revoked), (1, 1, 0));
    let nobody = b.db.counts(Some("carol"), t0() + day * 32).unwrap();
    assert_eq!(nobody, ca_core::store::CertCounts::default());
}

fn a_common_substring_is_found_as_surely_as_a_rare_one(b: &Backend) {
    with_issuer(b);
    // More certificates share "host-" than a SQLite search fetches through its trigram
    // index, so that search walks the list's index instead: both ways must agree.
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            scope.spawn(move || {
                for i in 0..270u64 {
                    let s = serial(t * 1_000 + i + 1);
                    b.db.reserve(&new_cert(&s), &event(Action::IssuanceStarted, ""))
                        .unwrap();
                }
            });
        }
    });
    let search = |q: &str, limit| {
        b.db.certificates(&CertFilter {
            search: Some(q.into()),
            limit,
            ..Default::default()
        })
        .unwrap()
    };
    assert_eq!(search("HOST-", 1_000).len(), 1_000);
    let everything = walk(
        b,
        &CertFilter {
            search: Some("host-".into()),
            ..Default::default()
        },
        1_000,
    );
    assert_eq!(everything.len(), 2_160, "{}", b.name);
    let one = search(&format!("host-{}.", serial(7_005)), 10);
    assert_eq!(serials(&one), [serial(7_005)]);
}

fn search_takes_quotes_literally(b: &Backend) {
    with_issuer(b);
    let mut quoted = new_cert(&serial(1));
    quoted.subject = "CN=say \"hi\" AND x OR y".into();
    b.db.reserve(&quoted, &event(Action::IssuanceStarted, ""))
        .unwrap();
    b.db.reserve(&new_cert(&serial(2)), &event(Action::IssuanceStarted, ""))
        .unwrap();
    let count = |q: &str| {
        b.db.certificates(&CertFilter {
            search: Some(q.into()),
            ..Default::default()
        })
        .unwrap()
        .len()
    };
    assert_eq!(count("\"hi\""), 1);
    assert_eq!(count("say \"hi"), 1);
    assert_eq!(count("AND x OR"), 1, "FTS operators are text");
    assert_eq!(count("NEAR("), 0);
    assert_eq!(count("hi\" and x"), 1);
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// SQLite's trigram index is brought up to date by the writer a moment after the insert;
/// a search must find a row before (scanned) and after (through the index) alike.
fn search_finds_rows_before_and_after_the_index_catches_up(b: &Backend) {
    use diesel::{Connection, RunQueryDsl};
    with_issuer(b);
    let mut early = new_cert(&serial(1));
    early.subject = "CN=early-bird.internal".into();
    b.db.reserve(&early, &event(Action::IssuanceStarted, ""))
        .unwrap();
    let indexed = |q: &str| -> i64 {
        let mut c =
            diesel::SqliteConnection::establish(b.url.trim_start_matches("sqlite://")).unwrap();
        diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM certificates_search WHERE certificates_search MATCH '\"{q}\"'"
        ))
        .get_result::<Count>(&mut c)
        .unwrap()
        .n
    };
    if !b.is_postgres() {
        // The writer catches up within a quarter of a second of the write.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while indexed("early-bird") == 0 {
            assert!(std::time::Instant::now() < deadline, "never indexed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut late = new_cert(&serial(2));
    late.subject = "CN=late-bird.internal".into();
    b.db.reserve(&late, &event(Action::IssuanceStarted, ""))
        .unwrap();
    let found = |q: &str| -> Vec<String> {
        b.db.certificates(&CertFilter {
            search: Some(q.into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.serial.to_string())
        .collect()
    };
    // Most likely not indexed yet (the other tests of this file search right after their
    // writes, too): either way it is found.
    assert_eq!(found("early-bird"), [serial(1).to_string()]);
    assert_eq!(found("late-bird"), [serial(2).to_string()]);
    assert_eq!(found("-bird.").len(), 2, "{}", b.name);
    // PostgreSQL: the new entries wait in the trigram index's pending list until the
    // upkeep moves them into the index (`Db::tidy_search_index`); found either way.
    let tidied = b.db.tidy_search_index().unwrap();
    if b.is_postgres() {
        assert!(tidied > 0, "no pending entries were moved");
    } else {
        assert_eq!(tidied, 0);
    }
    assert_eq!(b.db.tidy_search_index().unwrap(), 0, "nothing left to move");
    assert_eq!(found("early-bird"), [serial(1).to_string()]);
    assert_eq!(found("-bird.").len(), 2, "{}", b.name);
}
