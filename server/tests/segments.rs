//! Data > Segments over HTTP: every server function checks the role.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::TestApp;
use reqwest::StatusCode;

#[tokio::test]
async fn every_segments_function_checks_the_callers_role() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    engine::demo::generate(&app.db.db, 50, 3).await.unwrap();
    let viewer = app.user(&admin, "viewer@example.com", "viewer").await;
    let contributor = app
        .user(&admin, "contributor@example.com", "contributor")
        .await;
    let anonymous = app.client();
    let first = engine::segments::list(&app.db.db, "")
        .await
        .unwrap()
        .remove(0);
    let id = first.id.to_string();
    let rule = r#"{"match":"all","conditions":[{"field":"country","op":"eq","value":"HU"}]}"#;

    // (function, form, lowest role: 1 viewer, 2 contributor)
    type Form<'a> = Vec<(&'a str, String)>;
    let mut n = 0;
    let mut functions: Vec<(&str, Form, u8)> = vec![
        ("list_segments", vec![("search", String::new())], 1),
        ("profile_fields", vec![], 1),
        ("get_segment", vec![("id", id.clone())], 1),
        ("preview_rule", vec![("rule", rule.into())], 2),
        (
            "update_segment",
            vec![
                ("id", id.clone()),
                ("name", first.name.clone()),
                ("description", String::new()),
                ("rule", rule.into()),
            ],
            2,
        ),
        ("refresh_segment", vec![("id", id.clone())], 2),
    ];
    functions.push((
        "create_segment",
        vec![("description", String::new()), ("rule", rule.into())],
        2,
    ));
    for (function, form, needed) in &functions {
        for (client, level, who) in [
            (&anonymous, 0u8, "anonymous"),
            (&viewer, 1, "viewer"),
            (&contributor, 2, "contributor"),
            (&admin, 3, "admin"),
        ] {
            let mut form = form.clone();
            if *function == "create_segment" {
                n += 1;
                form.push(("name", format!("New {n}")));
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = app.call(client, function, &form).await;
            let expected = if level >= *needed {
                StatusCode::OK
            } else if level == 0 {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(status, expected, "{function} as {who}: {body}");
        }
    }
    let created = engine::segments::list(&app.db.db, "new").await.unwrap();
    assert_eq!(
        created.len(),
        2,
        "only the contributor's and the admin's were created"
    );
}

#[tokio::test]
async fn an_incomplete_rule_is_a_field_error() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let (status, body) = app
        .call(
            &admin,
            "create_segment",
            &[
                ("name", "Broken"),
                ("description", ""),
                (
                    "rule",
                    r#"{"match":"all","conditions":[{"field":"country","op":"eq","value":""}]}"#,
                ),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("needs a value"), "{body}");
    let (status, body) = app
        .call(
            &admin,
            "create_segment",
            &[
                ("name", "Broken"),
                ("description", ""),
                ("rule", "not json"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn uploading_profiles_is_for_contributors_and_admins_and_reports_by_line() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let viewer = app.user(&admin, "viewer@example.com", "viewer").await;
    let contributor = app
        .user(&admin, "contributor@example.com", "contributor")
        .await;
    let csv = "customer,email\nc1,a@example.com\nc2\n";
    let upload = |client: reqwest::Client| {
        let url = app.url("/data/import/profiles?id_column=customer");
        async move {
            client
                .post(url)
                .header("content-type", "text/csv")
                .body(csv)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        upload(app.client()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(upload(viewer).await.status(), StatusCode::FORBIDDEN);
    let res = upload(contributor).await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        (
            report["rows"].as_u64(),
            report["imported"].as_u64(),
            report["rejected"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(report["errors"][0]["line"], 3);
    let bad = admin
        .post(app.url("/data/import/profiles?id_column=nope"))
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("no column"));
}

#[tokio::test]
async fn a_static_segment_is_uploaded_as_a_list_of_ids_and_replaced_by_name() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let viewer = app.user(&admin, "viewer@example.com", "viewer").await;
    let contributor = app
        .user(&admin, "contributor@example.com", "contributor")
        .await;
    let mut people = String::from("id,email\n");
    for i in 0..2_000 {
        people.push_str(&format!("p{i:04},p{i}@example.com\n"));
    }
    engine::profiles::import_csv(
        &app.db.db,
        std::io::Cursor::new(people.as_bytes().to_vec()),
        "id",
    )
    .await
    .unwrap();
    let upload = |client: reqwest::Client, name: &str, body: String| {
        let url = app.url(&format!(
            "/data/import/segment?name={}&file=leads.csv",
            form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        ));
        async move {
            client
                .post(url)
                .header("content-type", "text/csv")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let mut ids = String::from("\u{feff}profile_id\n");
    for i in (0..2_000).step_by(2) {
        ids.push_str(&format!("p{i:04}\n"));
    }
    ids.push_str("ghost-1\n\"ghost-2\"\n\n");
    assert_eq!(
        upload(app.client(), "Even", ids.clone()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        upload(viewer, "Even", ids.clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    assert!(engine::segments::list(&app.db.db, "")
        .await
        .unwrap()
        .is_empty());

    let res = upload(contributor.clone(), "Even & odd", ids).await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: serde_json::Value = res.json().await.unwrap();
    assert_eq!(report["name"], "Even & odd");
    assert_eq!(report["ids"], 1_002);
    assert_eq!(report["members"], 1_000);
    assert_eq!(report["unknown"], 2);
    assert_eq!(
        report["unknown_ids"],
        serde_json::json!(["ghost-1", "ghost-2"])
    );
    let id = report["id"].as_i64().unwrap();
    let id = engine::SegmentId(id);
    let segment = engine::segments::get(&app.db.db, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(segment.kind, engine::segments::Kind::Static);
    assert_eq!(segment.description, "Imported from leads.csv");

    // The same name (any case) replaces the members and records the change.
    let res = upload(admin.clone(), "even & ODD", String::from("p0001\np0002\n")).await;
    let report: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        (report["id"].as_i64(), report["members"].as_i64()),
        (Some(id.get()), Some(2))
    );
    let (entered, left) = engine::segments::changes(&app.db.db, id, 2).await.unwrap();
    assert_eq!(entered, ["p0001"]);
    assert_eq!(left.len(), 999);

    // Clear errors, and nothing is created.
    let res = upload(admin.clone(), " ", String::from("p0001\n")).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = admin
        .post(app.url("/data/import/segment?name=Broken"))
        .body(b"id\np0001\n\xff\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Line 3 is not valid UTF-8"));
    assert!(engine::segments::by_name(&app.db.db, "Broken")
        .await
        .unwrap()
        .is_none());
}
