//! Segments against a real database (SQLite, or PostgreSQL with
//! `TEST_DATABASE=postgres`): rules select the same members on both.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use engine::profiles;
use engine::segments::{self, Condition, Kind, Match, Op, Rule};
use engine::testing::TestDb;

const PEOPLE: &str = "id,email,country,lifetime_value,signup_date\n\
    p01,ann@example.com,HU,120,2025-03-01\n\
    p02,bob@example.org,HU,99,2024-12-31\n\
    p03,cy@example.com,US,500,2025-01-15\n\
    p04,dee@example.com,hu,101,2025-06-30\n\
    p05,,HU,1000,\n\
    p06,eve@EXAMPLE.com,DE,5,2026-01-01\n";

fn cond(field: &str, op: Op, value: &str) -> Condition {
    Condition {
        field: field.into(),
        op,
        value: value.into(),
    }
}

async fn people(t: &TestDb) {
    profiles::import_csv(
        &t.db,
        std::io::Cursor::new(PEOPLE.as_bytes().to_vec()),
        "id",
    )
    .await
    .unwrap();
}

async fn ids(t: &TestDb, id: engine::SegmentId) -> Vec<String> {
    segments::members_after(&t.db, id, "", 1000).await.unwrap()
}

#[tokio::test]
async fn rules_select_by_text_number_suffix_and_date() {
    let t = TestDb::new().await;
    people(&t).await;
    let cases = [
        (
            Match::All,
            vec![
                cond("country", Op::Eq, "HU"),
                cond("lifetime_value", Op::Gt, "100"),
            ],
            vec!["p01", "p04", "p05"],
        ),
        (
            Match::All,
            vec![cond("email", Op::EndsWith, "@example.com")],
            vec!["p01", "p03", "p04", "p06"],
        ),
        (
            Match::All,
            vec![cond("signup_date", Op::After, "2025-01-01")],
            vec!["p01", "p03", "p04", "p06"],
        ),
        (
            Match::Any,
            vec![cond("country", Op::Eq, "US"), cond("country", Op::Eq, "DE")],
            vec!["p03", "p06"],
        ),
        (
            Match::All,
            vec![cond("email", Op::IsNotSet, "")],
            vec!["p05"],
        ),
    ];
    for (i, (matching, conditions, expected)) in cases.into_iter().enumerate() {
        let rule = Rule {
            matching,
            conditions,
        };
        let s = segments::create_rule(&t.db, None, &format!("Rule {i}"), "", &rule)
            .await
            .unwrap();
        assert_eq!(ids(&t, s.id).await, expected, "rule {i}: {rule:?}");
        assert_eq!(s.member_count, expected.len() as i64);
        assert_eq!(segments::evaluate(&t.db, &rule).await.unwrap(), expected);
    }
}

#[tokio::test]
async fn a_refresh_records_who_entered_and_who_left() {
    let t = TestDb::new().await;
    people(&t).await;
    let rule = Rule {
        matching: Match::All,
        conditions: vec![cond("country", Op::Eq, "HU")],
    };
    let s = segments::create_rule(&t.db, None, "Hungary", "Customers in Hungary", &rule)
        .await
        .unwrap();
    assert_eq!(s.refresh_no, 1);
    assert_eq!(
        segments::changes(&t.db, s.id, 1).await.unwrap(),
        (
            vec!["p01".into(), "p02".into(), "p04".into(), "p05".into()],
            vec![]
        )
    );
    profiles::import_csv(&t.db, "id,country\np02,AT\np06,HU\n".as_bytes(), "id")
        .await
        .unwrap();
    let s = segments::refresh(&t.db, s.id).await.unwrap();
    assert_eq!(s.refresh_no, 2);
    assert_eq!(s.member_count, 4);
    assert_eq!(
        segments::changes(&t.db, s.id, 2).await.unwrap(),
        (vec!["p06".into()], vec!["p02".into()])
    );
    assert_eq!(ids(&t, s.id).await, ["p01", "p04", "p05", "p06"]);
}

#[tokio::test]
async fn members_page_in_key_order() {
    let t = TestDb::new().await;
    let mut csv = String::from("id,n\n");
    for i in 0..1_234 {
        csv.push_str(&format!("p{i:05},{i}\n"));
    }
    profiles::import_csv(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()), "id")
        .await
        .unwrap();
    let s = segments::create_rule(
        &t.db,
        None,
        "Everyone",
        "",
        &Rule {
            matching: Match::All,
            conditions: vec![cond("n", Op::IsSet, "")],
        },
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = segments::members_after(&t.db, s.id, &after, 500)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.clone();
        seen.extend(page);
    }
    assert_eq!(seen.len(), 1_234);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn static_segments_keep_known_ids_and_report_the_rest() {
    let t = TestDb::new().await;
    people(&t).await;
    let r = segments::import_static(
        &t.db,
        None,
        "VIPs",
        "/home/ann/Downloads/vips.csv",
        vec!["p03".into(), "p01".into(), "nope".into(), "p01".into()],
    )
    .await
    .unwrap();
    let s = r.segment;
    assert_eq!(s.kind, Kind::Static);
    assert_eq!((r.ids, r.unknown), (4, 1));
    assert_eq!(r.unknown_sample, ["nope"]);
    assert_eq!(ids(&t, s.id).await, ["p01", "p03"]);
    assert_eq!(s.description, "Imported from vips.csv");
    let s = segments::import_static(&t.db, None, "vips", "", vec!["p02".into()])
        .await
        .unwrap()
        .segment;
    assert_eq!(s.description, "Imported list of profile ids");
    assert_eq!(ids(&t, s.id).await, ["p02"]);
    assert_eq!(
        segments::changes(&t.db, s.id, 2).await.unwrap(),
        (vec!["p02".into()], vec!["p01".into(), "p03".into()])
    );
}

#[tokio::test]
async fn names_are_unique_and_rules_must_be_complete() {
    let t = TestDb::new().await;
    let rule = Rule {
        matching: Match::All,
        conditions: vec![cond("country", Op::Eq, "HU")],
    };
    segments::create_rule(&t.db, None, "Hungary", "", &rule)
        .await
        .unwrap();
    assert!(segments::create_rule(&t.db, None, " hungary ", "", &rule)
        .await
        .is_err());
    let empty = Rule {
        matching: Match::All,
        conditions: vec![],
    };
    assert!(segments::create_rule(&t.db, None, "Empty", "", &empty)
        .await
        .is_err());
    let no_value = Rule {
        matching: Match::All,
        conditions: vec![cond("country", Op::Eq, " ")],
    };
    assert!(
        segments::create_rule(&t.db, None, "No value", "", &no_value)
            .await
            .is_err()
    );
    assert_eq!(segments::list(&t.db, "hun").await.unwrap().len(), 1);
    assert_eq!(segments::list(&t.db, "").await.unwrap().len(), 1);
}

#[tokio::test]
async fn demo_data_is_deterministic_and_makes_segments_of_different_sizes() {
    let a = TestDb::new().await;
    let b = TestDb::new().await;
    engine::demo::generate(&a.db, 600, 7).await.unwrap();
    engine::demo::generate(&b.db, 600, 7).await.unwrap();
    assert_eq!(profiles::count(&a.db).await.unwrap(), 600);
    assert_eq!(
        profiles::get(&a.db, "P0000042").await.unwrap(),
        profiles::get(&b.db, "P0000042").await.unwrap()
    );
    let sizes: Vec<i64> = segments::list(&a.db, "")
        .await
        .unwrap()
        .iter()
        .map(|s| s.member_count)
        .collect();
    assert_eq!(sizes.len(), 5);
    assert!(sizes.iter().all(|&n| n > 0 && n <= 600), "{sizes:?}");
    let mut distinct = sizes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() >= 4,
        "segments of different sizes: {sizes:?}"
    );
    // Some emails are invalid or shared on purpose.
    let mut invalid = 0;
    for n in 0..300 {
        let p = profiles::get(&a.db, &format!("P{n:07}"))
            .await
            .unwrap()
            .unwrap();
        invalid += usize::from(!p["email"].is_empty() && !p["email"].contains('@'));
    }
    assert!(invalid > 0);
}

#[tokio::test]
async fn a_rule_segment_can_be_edited_and_its_members_previewed_with_fill_rates() {
    let t = TestDb::new().await;
    people(&t).await;
    let s = segments::create_rule(
        &t.db,
        None,
        "Hungary",
        "",
        &Rule {
            matching: Match::All,
            conditions: vec![cond("country", Op::Eq, "HU")],
        },
    )
    .await
    .unwrap();
    let rule = Rule {
        matching: Match::All,
        conditions: vec![cond("country", Op::Eq, "HU"), cond("email", Op::IsSet, "")],
    };
    let s = segments::update_rule(
        &t.db,
        None,
        s.id,
        "Reachable Hungarians",
        "with an email",
        &rule,
    )
    .await
    .unwrap();
    assert_eq!(
        (s.name.as_str(), s.member_count),
        ("Reachable Hungarians", 3)
    );
    let preview = segments::preview(&t.db, s.id, 2).await.unwrap();
    assert_eq!(
        preview
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["p01", "p02"]
    );
    assert_eq!(preview[0].1["email"], "ann@example.com");
    let rates = segments::fill_rates(&t.db, s.id).await.unwrap();
    assert_eq!(rates["email"], 3);
    assert_eq!(rates["signup_date"], 3);
    // Kept, and counted again when the profiles change…
    assert_eq!(segments::fill_rates(&t.db, s.id).await.unwrap(), rates);
    let csv = "id,nickname,signup_date\np01,Annie,\n";
    profiles::import_csv(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()), "id")
        .await
        .unwrap();
    let rates = segments::fill_rates(&t.db, s.id).await.unwrap();
    assert_eq!((rates["nickname"], rates["signup_date"]), (1, 2));
    // …or the members do.
    let csv = "id,email,country\np07,fay@example.com,HU\n";
    profiles::import_csv(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()), "id")
        .await
        .unwrap();
    segments::fill_rates(&t.db, s.id).await.unwrap();
    segments::refresh(&t.db, s.id).await.unwrap();
    let rates = segments::fill_rates(&t.db, s.id).await.unwrap();
    assert_eq!(rates["email"], 4);
}

/// A refresh compares the new and the stored members page by page; across
/// many pages (5,000 each) it keeps the right members and changes.
#[tokio::test]
async fn refreshes_across_many_pages_record_exact_changes() {
    let t = TestDb::new().await;
    let mut csv = String::from("id,n\n");
    for i in 0..12_345u32 {
        csv.push_str(&format!("p{i:05},{i}\n"));
    }
    profiles::import_csv(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()), "id")
        .await
        .unwrap();
    let rule = |field_op: Op, value: &str| Rule {
        matching: Match::All,
        conditions: vec![cond("n", field_op, value)],
    };
    // First the profiles 3,000..=11,000, then 0..=6,999.
    let s = segments::create_rule(&t.db, None, "Window", "", &rule(Op::Ge, "3000"))
        .await
        .unwrap();
    let s = segments::update_rule(
        &t.db,
        None,
        s.id,
        "Window",
        "",
        &Rule {
            matching: Match::All,
            conditions: vec![cond("n", Op::Ge, "3000"), cond("n", Op::Le, "11000")],
        },
    )
    .await
    .unwrap();
    assert_eq!(s.member_count, 8_001);
    let s = segments::update_rule(&t.db, None, s.id, "Window", "", &rule(Op::Lt, "7000"))
        .await
        .unwrap();
    assert_eq!(s.member_count, 7_000);
    assert_eq!(
        segments::count_matching(&t.db, &rule(Op::Lt, "7000"))
            .await
            .unwrap(),
        7_000
    );
    let key = |i: u32| format!("p{i:05}");
    let (entered, left) = segments::changes(&t.db, s.id, 3).await.unwrap();
    assert_eq!(entered, (0..3_000).map(key).collect::<Vec<_>>());
    assert_eq!(left, (7_000..=11_000).map(key).collect::<Vec<_>>());
    let mut members = Vec::new();
    let mut after = String::new();
    loop {
        let page = segments::members_after(&t.db, s.id, &after, 4_000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.clone();
        members.extend(page);
    }
    assert_eq!(members, (0..7_000).map(key).collect::<Vec<_>>());
}

#[test]
fn id_files_give_the_first_column_without_header_bom_or_blank_rows() {
    let file = "\u{feff}profile_id,note\n\"p 1\",x\n\np2\n  p3  ,\"a,b\"\n";
    assert_eq!(
        segments::read_ids(file.as_bytes()).unwrap(),
        ["p 1", "p2", "p3"]
    );
    // No header: the first row is an id.
    assert_eq!(
        segments::read_ids("p9\np8".as_bytes()).unwrap(),
        ["p9", "p8"]
    );
    let err = segments::read_ids(&b"id\np1\n\xff\xfe\n"[..]).unwrap_err();
    assert!(err.to_string().contains("Line 3"), "{err}");
}

/// The export form's email fill count: one segment is answered from its
/// kept fill rates (and follows the profiles when they change), several
/// are counted together, each profile once.
#[tokio::test]
async fn the_export_forms_fill_count_follows_segments_and_profiles() {
    let t = TestDb::new().await;
    people(&t).await;
    let rule = |c: Condition| Rule {
        matching: Match::All,
        conditions: vec![c],
    };
    let hungary = rule(cond("country", Op::Eq, "HU"));
    let hu = segments::create_rule(&t.db, None, "Hungary", "", &hungary)
        .await
        .unwrap();
    let everyone = rule(cond("country", Op::IsSet, ""));
    let all = segments::create_rule(&t.db, None, "Everyone", "", &everyone)
        .await
        .unwrap();
    // p01, p03, p04 and p05 spent over 100: as many members as Hungary,
    // and p03 is in it alone.
    let spenders = rule(cond("lifetime_value", Op::Gt, "100"));
    let big = segments::create_rule(&t.db, None, "Big spenders", "", &spenders)
        .await
        .unwrap();
    let count = |ids: Vec<engine::SegmentId>, field: &'static str| {
        let db = t.db.clone();
        async move {
            engine::exports::count_filled(&db, &ids, field)
                .await
                .unwrap()
        }
    };
    // p01, p02, p04 (hu) and p05 (no email) are Hungarian.
    assert_eq!(count(vec![hu.id], "email").await, (3, 4));
    assert_eq!(count(vec![hu.id], "signup_date").await, (3, 4));
    assert_eq!(count(vec![hu.id], "no_such_field").await, (0, 4));
    assert_eq!(count(vec![hu.id, all.id], "email").await, (5, 6));
    assert_eq!(count(vec![hu.id, big.id], "email").await, (4, 5));
    assert_eq!(count(vec![big.id, hu.id, big.id], "email").await, (4, 5));
    assert_eq!(count(vec![big.id, hu.id], "signup_date").await, (4, 5));
    // An email blanked (spaces only) is no email, once the profiles change.
    let csv = "id,email\np01,   \n";
    profiles::import_csv(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()), "id")
        .await
        .unwrap();
    assert_eq!(count(vec![hu.id], "email").await, (2, 4));
    assert_eq!(count(vec![hu.id, all.id], "email").await, (4, 6));
    assert_eq!(count(vec![big.id, hu.id], "email").await, (3, 5));
    // So is one of other white space (a tab, a no-break space), as a run
    // sees it, whichever way the count is made. (An import trims values;
    // a store written otherwise may hold them.)
    let store_email = |id: &'static str, email: &'static str| {
        let db = t.db.clone();
        async move {
            let attrs = [("email".to_owned(), email.to_owned())].into();
            profiles::upsert(&db, vec![(id.to_owned(), attrs)])
                .await
                .unwrap();
            profiles::refresh_catalogue(&db).await.unwrap();
        }
    };
    store_email("p02", "\t\u{a0}\u{3000}").await;
    assert_eq!(count(vec![hu.id], "email").await, (1, 4));
    assert_eq!(count(vec![hu.id, all.id], "email").await, (3, 6));
    assert_eq!(count(vec![big.id, hu.id], "email").await, (2, 5));
    // Only the members outside the largest segment are read: p03, with
    // its email blanked the same way, counts as empty too.
    store_email("p03", "\u{2003}").await;
    assert_eq!(count(vec![big.id, hu.id], "email").await, (1, 5));
    assert_eq!(count(vec![big.id], "email").await, (1, 4));
}
