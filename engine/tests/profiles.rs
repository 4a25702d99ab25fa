//! The CSV importer against a real database (SQLite, or PostgreSQL with
//! `TEST_DATABASE=postgres`).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use engine::profiles::{self, RowError};
use engine::testing::TestDb;

#[tokio::test]
async fn good_rows_are_imported_and_bad_rows_reported_by_line() {
    let t = TestDb::new().await;
    let csv = "\u{feff}id,email,first_name,country,lifetime_value\n\
               p1,ann@example.com,Ann,HU,120.5\n\
               p2,bob@example.com,\"Bob, Jr.\",US,80\n\
               p3,too,few\n\
               ,nobody@example.com,Nobody,HU,1\n\
               \n\
               p4,\"multi\nline@example.com\",Multi,HU,3\n\
               p5,carol@example.com,Carol,DE,9\n";
    let mut bytes = csv.as_bytes().to_vec();
    // A row with invalid UTF-8, after everything else.
    bytes.extend_from_slice(b"p6,bad\xff@example.com,Bad,HU,1\n");
    let report = profiles::import_csv(&t.db, std::io::Cursor::new(bytes.clone()), "id")
        .await
        .unwrap();
    assert_eq!((report.rows, report.imported, report.rejected), (7, 4, 3));
    assert_eq!(
        report.errors,
        [
            RowError {
                line: 4,
                reason: "expected 5 columns, found 3".into()
            },
            RowError {
                line: 5,
                reason: "the profile id (id) is empty".into()
            },
            RowError {
                line: 10,
                reason: "the value of email is not valid UTF-8".into()
            },
        ]
    );
    assert_eq!(profiles::count(&t.db).await.unwrap(), 4);
    let bob = profiles::get(&t.db, "p2").await.unwrap().unwrap();
    assert_eq!(bob["first_name"], "Bob, Jr.");
    assert!(
        !bob.contains_key("id"),
        "the id is the key, not an attribute"
    );
    let multi = profiles::get(&t.db, "p4").await.unwrap().unwrap();
    assert_eq!(multi["email"], "multi\nline@example.com");
}

#[tokio::test]
async fn an_import_upserts_by_id_and_keeps_fields_it_does_not_name() {
    let t = TestDb::new().await;
    profiles::import_csv(
        &t.db,
        "id,email,country\np1,ann@example.com,HU\np2,bob@example.com,US\n".as_bytes(),
        "id",
    )
    .await
    .unwrap();
    let r = profiles::import_csv(
        &t.db,
        "customer,country,vip\np1,AT,yes\np3,DE,no\np1,CH,no\n".as_bytes(),
        "customer",
    )
    .await
    .unwrap();
    assert_eq!((r.imported, r.rejected), (3, 0));
    let p1 = profiles::get(&t.db, "p1").await.unwrap().unwrap();
    assert_eq!(
        (
            p1["email"].as_str(),
            p1["country"].as_str(),
            p1["vip"].as_str()
        ),
        ("ann@example.com", "CH", "no")
    );
    assert_eq!(profiles::count(&t.db).await.unwrap(), 3);
}

#[tokio::test]
async fn the_catalogue_infers_types_and_counts_filled_values() {
    let t = TestDb::new().await;
    let csv = "id,email,lifetime_value,signup_date,nickname\n\
               p1,ann@example.com,10,2025-01-02,\n\
               p2,bob@example.com,3.5,2024-12-31,Bobby\n\
               p3,,7,2025-03-04,\n";
    profiles::import_csv(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()), "id")
        .await
        .unwrap();
    let fields: Vec<(String, String, i64)> = profiles::fields(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.kind, f.filled))
        .collect();
    assert_eq!(
        fields,
        [
            ("email".into(), "email".into(), 2),
            ("lifetime_value".into(), "number".into(), 3),
            ("nickname".into(), "text".into(), 1),
            ("signup_date".into(), "date".into(), 3),
        ]
    );
}

#[tokio::test]
async fn a_broken_header_is_a_clear_error_and_imports_nothing() {
    let t = TestDb::new().await;
    for (csv, expected) in [
        ("", "empty"),
        ("email,name\na@example.com,A\n", "no column \"id\""),
        ("id,email,email\n1,a,b\n", "twice"),
        ("id,,x\n1,2,3\n", "has no name"),
    ] {
        let e = profiles::import_csv(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()), "id")
            .await
            .unwrap_err();
        assert!(e.to_string().contains(expected), "{csv:?}: {e}");
    }
    assert_eq!(profiles::count(&t.db).await.unwrap(), 0);
}

#[tokio::test]
async fn a_large_file_streams_through_in_batches() {
    let t = TestDb::new().await;
    let mut csv = String::from("id,email\n");
    for i in 0..5_000 {
        csv.push_str(&format!("p{i:05},person{i}@example.com\n"));
    }
    let r = profiles::import_csv(&t.db, std::io::Cursor::new(csv.as_bytes().to_vec()), "id")
        .await
        .unwrap();
    assert_eq!((r.rows, r.imported), (5_000, 5_000));
    assert_eq!(profiles::count(&t.db).await.unwrap(), 5_000);
}

/// Batches of one file are written two at a time on PostgreSQL: a profile
/// that appears again in a later batch still ends with its later values,
/// whether the batches are neighbours or not.
#[tokio::test]
async fn a_profile_repeated_in_a_later_batch_keeps_its_later_row() {
    let t = TestDb::new().await;
    let rows = 3 * profiles::BATCH_ROWS + 10;
    let mut csv = String::from("id,email,tier\n");
    for i in 0..rows {
        let id = match i {
            // p-first again in the next batch and two batches on.
            _ if i == profiles::BATCH_ROWS + 3 || i == 3 * profiles::BATCH_ROWS + 5 => {
                String::from("p-first")
            }
            0 => String::from("p-first"),
            _ => format!("p{i:06}"),
        };
        csv.push_str(&format!("{id},person{i}@example.com,t{i}\n"));
    }
    let r = profiles::import_csv(&t.db, std::io::Cursor::new(csv.into_bytes()), "id")
        .await
        .unwrap();
    assert_eq!(
        (r.rows, r.imported, r.rejected),
        (rows as u64, rows as u64, 0)
    );
    let last = 3 * profiles::BATCH_ROWS + 5;
    let p = profiles::get(&t.db, "p-first").await.unwrap().unwrap();
    assert_eq!(p["tier"].as_str(), format!("t{last}"));
    assert_eq!(p["email"].as_str(), format!("person{last}@example.com"));
    assert_eq!(profiles::count(&t.db).await.unwrap(), rows as i64 - 2);
}

/// Imports that overlap in time (two uploads, an upload and the CLI) all
/// succeed, on SQLite too, and the later values win per field.
#[tokio::test]
async fn concurrent_imports_of_overlapping_profiles_all_succeed() {
    let t = TestDb::new().await;
    let file = |k: u32| {
        let mut csv = format!("id,email,source{k}\n");
        for i in 0..3_000u32 {
            csv.push_str(&format!("p{:05},u{i}@example.com,{k}\n", i + k * 1_000));
        }
        csv
    };
    let imports: Vec<_> = (0..4u32)
        .map(|k| {
            let db = t.db.clone();
            let csv = file(k);
            tokio::spawn(async move {
                profiles::import_csv(&db, std::io::Cursor::new(csv.as_bytes().to_vec()), "id").await
            })
        })
        .collect();
    for import in imports {
        let report = import.await.unwrap().unwrap();
        assert_eq!((report.imported, report.rejected), (3_000, 0));
    }
    assert_eq!(profiles::count(&t.db).await.unwrap(), 6_000);
    // p02500 was in files 0, 1 and 2: it has each file's own field.
    let p = profiles::get(&t.db, "p02500").await.unwrap().unwrap();
    for k in 0..3 {
        assert_eq!(p.get(&format!("source{k}")), Some(&k.to_string()), "{p:?}");
    }
    let fields = profiles::fields(&t.db).await.unwrap();
    assert_eq!(fields.len(), 5, "{fields:?}");
}
