//! Data > Exports over HTTP: the real server with its workers, the
//! Constant Contact sandbox, and users played by cookie-keeping clients.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::{add_connection, TestApp};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

async fn call_json(app: &TestApp, client: &Client, f: &str, form: &[(&str, &str)]) -> Value {
    let (status, body) = app.call(client, f, form).await;
    assert_eq!(status, StatusCode::OK, "{f}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn sandbox_get(sb: &sandbox::Running, path: &str) -> Value {
    reqwest::get(format!("{}{path}", sb.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn sandbox_writes(sb: &sandbox::Running) -> usize {
    sandbox_get(sb, "/_sandbox/requests").await["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] != "GET" && r["path"].as_str().unwrap().starts_with("/v3"))
        .count()
}

/// Segments of the demo data, by name.
async fn segment_id(app: &TestApp, name: &str) -> engine::SegmentId {
    engine::segments::by_name(&app.db.db, name)
        .await
        .unwrap()
        .unwrap()
        .id
}

fn export_json(connection: i64, list: &str, segments: &[engine::SegmentId]) -> String {
    json!({
        "name": "Newsletter",
        "connection_id": connection,
        "list_id": list,
        "mapping": [
            { "source": "email", "target": "email" },
            { "source": "first_name", "target": "first_name" },
            { "source": "last_name", "target": "last_name" }
        ],
        "segment_ids": segments,
        "on_schedule": true,
        "remove_left": false,
        "removal_limit_pct": 20
    })
    .to_string()
}

async fn wait_for_run(app: &TestApp, client: &Client, run: i64) -> Value {
    for _ in 0..600 {
        let d = call_json(
            app,
            client,
            "get_run",
            &[("id", &run.to_string()), ("errors_page", "0")],
        )
        .await;
        let status = d["run"]["status"].as_str().unwrap().to_owned();
        if status != "queued" && status != "running" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run} did not finish in 30 s");
}

#[tokio::test]
async fn a_contributor_configures_an_export_runs_it_and_reads_the_results() {
    let (app, sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    engine::demo::generate(&app.db.db, 300, 7).await.unwrap();
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let connection = add_connection(&app, &admin, "Marketing").await["id"]
        .as_i64()
        .unwrap();
    let cid = connection.to_string();

    let form = call_json(&app, &carol, "get_export_form", &[]).await;
    assert_eq!(form["connections"][0]["display_name"], "Marketing");
    assert!(form["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "email"));
    let list = call_json(
        &app,
        &carol,
        "create_connection_list",
        &[("connection_id", &cid), ("name", "Customers")],
    )
    .await;
    let list_id = list["list_id"].as_str().unwrap().to_owned();
    let lists = call_json(&app, &carol, "connection_lists", &[("connection_id", &cid)]).await;
    assert!(lists
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["list_id"] == list_id.as_str()));

    let segments = [
        segment_id(&app, "Hungarian customers").await,
        segment_id(&app, "High value").await,
    ];
    let joined = format!("{},{}", segments[0], segments[1]);
    let count: i64 = serde_json::from_value(
        call_json(
            &app,
            &carol,
            "count_export_profiles",
            &[("segment_ids", &joined)],
        )
        .await,
    )
    .unwrap();
    assert!(count > 0);

    // A list that is not in the account is an error on the field.
    let (status, body) = app
        .call(
            &carol,
            "save_export",
            &[(
                "export",
                &export_json(
                    connection,
                    "00000000-0000-4000-8000-000000000000",
                    &segments,
                ),
            )],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("list_id"), "{body}");

    let writes_before = sandbox_writes(&sb).await;
    let id: i64 = serde_json::from_value(
        call_json(
            &app,
            &carol,
            "save_export",
            &[("export", &export_json(connection, &list_id, &segments))],
        )
        .await,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        sandbox_writes(&sb).await,
        writes_before,
        "saving sends nothing"
    );
    let page = call_json(&app, &carol, "list_exports", &[]).await;
    assert_eq!(page["exports"][0]["list_name"], "Customers");
    assert!(page["exports"][0]["last_run"].is_null());

    // A mode that is not one is refused, not taken for an incremental run.
    let (status, body) = app
        .call(
            &carol,
            "run_export",
            &[("id", &id.to_string()), ("mode", "everything")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("is not a run mode"), "{body}");

    let run: i64 = serde_json::from_value(
        call_json(
            &app,
            &carol,
            "run_export",
            &[("id", &id.to_string()), ("mode", "incremental")],
        )
        .await,
    )
    .unwrap();
    let (status, body) = app
        .call(
            &carol,
            "run_export",
            &[("id", &id.to_string()), ("mode", "incremental")],
        )
        .await;
    // Refused while the first is active (or accepted if it already ended).
    assert!(
        status == StatusCode::CONFLICT || status == StatusCode::OK,
        "{status} {body}"
    );
    let done = wait_for_run(&app, &carol, run).await;
    let status = done["run"]["status"].as_str().unwrap();
    assert!(
        status == "succeeded" || status == "partially_succeeded",
        "{done}"
    );
    let sent = done["run"]["counts"]["sent"].as_u64().unwrap();
    let read = done["run"]["counts"]["read"].as_u64().unwrap();
    assert_eq!(read as i64, count);
    assert!(sent > 0);
    let members = sandbox_get(&sb, &format!("/_sandbox/lists/{list_id}/members")).await;
    assert_eq!(members["count"].as_u64().unwrap(), sent);

    // The demo data has bad and duplicate emails on purpose: they are listed
    // and downloadable.
    let errors = done["errors_total"].as_i64().unwrap();
    assert!(errors > 0, "{done}");
    let csv = carol
        .get(app.url(&format!("/runs/{run}/errors.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("profile_id,email,problem,field,reason"));
    assert_eq!(text.lines().count() as i64, errors + 1);
    let anonymous = app.client();
    let refused = anonymous
        .get(app.url(&format!("/runs/{run}/errors.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // The plain routes answer errors as JSON, as the uploads do.
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "Please sign in to continue.");
    let missing = carol
        .get(app.url("/runs/987654/errors.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "The run was not found.");
    let not_an_id = carol
        .get(app.url("/runs/seven/errors.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_an_id.status(), StatusCode::BAD_REQUEST);

    // The connections page counts the export; removing the connection
    // disables it.
    let conns = call_json(&app, &admin, "list_connections", &[]).await;
    assert_eq!(conns["connections"][0]["exports"], json!(["Newsletter"]));
    call_json(&app, &admin, "remove_connection", &[("id", &cid)]).await;
    let page = call_json(&app, &carol, "list_exports", &[]).await;
    assert_eq!(page["exports"][0]["enabled"], false);
    let (status, _) = app
        .call(
            &carol,
            "run_export",
            &[("id", &id.to_string()), ("mode", "incremental")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn every_exports_function_checks_the_callers_role() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    engine::demo::generate(&app.db.db, 50, 7).await.unwrap();
    let admin = app.setup_admin().await;
    let viewer = app.user(&admin, "viewer@example.com", "viewer").await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let dave = app.user(&admin, "dave@example.com", "contributor").await;
    let anonymous = app.client();
    let connection = add_connection(&app, &admin, "Shared").await["id"]
        .as_i64()
        .unwrap();
    let cid = connection.to_string();
    let list = call_json(
        &app,
        &carol,
        "create_connection_list",
        &[("connection_id", &cid), ("name", "Everyone")],
    )
    .await;
    let list_id = list["list_id"].as_str().unwrap().to_owned();
    let seg = segment_id(&app, "Hungarian customers").await;
    let body = export_json(connection, &list_id, &[seg]);
    let id: i64 =
        serde_json::from_value(call_json(&app, &carol, "save_export", &[("export", &body)]).await)
            .unwrap();
    let sid = id.to_string();
    // A form without a connection (none chosen) hears of it with its
    // other problems, all at once.
    let unchosen = json!({
        "name": "", "connection_id": null, "list_id": "", "mapping": [],
        "segment_ids": [], "on_schedule": true, "remove_left": false, "removal_limit_pct": 20
    })
    .to_string();
    let (status, refused) = app
        .call(&carol, "save_export", &[("export", &unchosen)])
        .await;
    assert!(status.is_client_error(), "{status} {refused}");
    assert!(refused.contains("Choose a connection."), "{refused}");
    assert!(
        refused.contains("\"name\""),
        "the name's problem too: {refused}"
    );
    let run: i64 = serde_json::from_value(
        call_json(
            &app,
            &carol,
            "run_export",
            &[("id", &sid), ("mode", "dry_run")],
        )
        .await,
    )
    .unwrap();
    wait_for_run(&app, &carol, run).await;
    let rid = run.to_string();

    // (function, form, lowest role: 1 viewer, 2 contributor)
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let functions: Vec<(&str, Form, u8)> = vec![
        ("list_exports", vec![], 1),
        ("get_export", vec![("id", &sid)], 1),
        ("get_run", vec![("id", &rid), ("errors_page", "0")], 1),
        ("get_export_form", vec![], 2),
        ("connection_lists", vec![("connection_id", &cid)], 2),
        ("connection_custom_fields", vec![("connection_id", &cid)], 2),
        ("count_export_profiles", vec![("segment_ids", "1")], 2),
        (
            "create_connection_list",
            vec![("connection_id", &cid), ("name", "")],
            2,
        ),
        ("save_export", vec![("export", "{}")], 2),
        ("run_export", vec![("id", "999999"), ("mode", "dry_run")], 2),
        ("cancel_run", vec![("id", "999999")], 2),
        ("remove_export", vec![("id", "999999")], 2),
    ];
    common::assert_role_matrix(
        &app,
        &common::Callers {
            anonymous: &anonymous,
            viewer: &viewer,
            contributor: &carol,
            admin: &admin,
        },
        &functions,
    )
    .await;

    // Another contributor may not run, change or remove Carol's export;
    // an admin may.
    for (function, form) in [
        (
            "run_export",
            vec![("id", sid.as_str()), ("mode", "incremental")],
        ),
        ("get_export_form", vec![("id", sid.as_str())]),
        ("remove_export", vec![("id", sid.as_str())]),
    ] {
        let (status, body) = app.call(&dave, function, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{function} as dave: {body}");
    }
    let (status, refused) = app
        .call(&dave, "save_export", &[("id", &sid), ("export", &body)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");

    // A connection only admins may use is refused to a contributor, even
    // in a hand-made request.
    call_json(
        &app,
        &admin,
        "update_connection",
        &[
            ("id", &cid),
            ("display_name", "Shared"),
            ("usable_by", "admins"),
        ],
    )
    .await;
    let (status, refused) = app.call(&carol, "save_export", &[("export", &body)]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused.contains("connection"), "{refused}");
    let (status, _) = app
        .call(&carol, "connection_lists", &[("connection_id", &cid)])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        app.call(&admin, "remove_export", &[("id", &sid)]).await.0,
        StatusCode::OK
    );
    let page = call_json(&app, &viewer, "list_exports", &[]).await;
    assert!(page["exports"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn only_admins_see_and_set_the_schedule_and_mistakes_are_named() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let schedule = |zone: &str| {
        json!({ "mode": "weekly", "times": ["06:30", "18:00"], "weekdays": [1, 4], "cron": "", "time_zone": zone })
            .to_string()
    };
    for (f, form) in [
        ("get_system", vec![]),
        ("save_schedule", vec![("schedule", schedule("UTC"))]),
        ("refresh_now", vec![]),
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = app.call(&carol, f, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{f}: {body}");
        let (status, body) = app.call(&app.client(), f, &form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{f}: {body}");
    }
    let default = call_json(&app, &admin, "get_system", &[]).await;
    assert_eq!(default["schedule"]["mode"], "daily");
    assert_eq!(default["next_runs"].as_array().unwrap().len(), 5);

    let (status, body) = app
        .call(
            &admin,
            "save_schedule",
            &[("schedule", &schedule("Mars/Olympus"))],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("time_zone"), "{body}");
    let saved = call_json(
        &app,
        &admin,
        "save_schedule",
        &[("schedule", &schedule("Europe/Budapest"))],
    )
    .await;
    assert_eq!(saved["schedule"]["weekdays"], json!([1, 4]));
    let next: Vec<String> = serde_json::from_value(saved["next_runs"].clone()).unwrap();
    assert!(
        next.iter()
            .all(|t| t.ends_with("CET") || t.ends_with("CEST")),
        "{next:?}"
    );
    assert!(
        next.iter()
            .all(|t| t.contains("06:30") || t.contains("18:00")),
        "{next:?}"
    );
    let queued = call_json(&app, &admin, "refresh_now", &[]).await;
    assert_eq!(queued, json!(0));
    let log = engine::audit::recent(&app.db.db, 5).await.unwrap();
    assert!(log.iter().any(|e| e.action == "schedule.update"));
}
