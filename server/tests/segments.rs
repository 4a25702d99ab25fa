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
