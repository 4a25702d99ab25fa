//! The REST API (`/api/v1`) over HTTP: tokens made by administrators,
//! every endpoint as each token role and without one, idempotent
//! triggers, JSON errors with stable codes, the OpenAPI document.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::fixtures::{api, call_json, get, post, token, two_exports, wait_for_run};
use common::TestApp;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn tokens_reach_every_endpoint_as_their_role_allows() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let (admins, carols) = two_exports(&app, &admin, &carol).await;

    // Only administrators make tokens.
    let (status, body) = app
        .call(
            &carol,
            "create_api_token",
            &[("name", "mine"), ("role", "viewer")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app
        .call(
            &admin,
            "create_api_token",
            &[("name", " "), ("role", "viewer")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let viewer = token(&app, &admin, "dashboards", "viewer").await;
    let contributor = token(&app, &admin, "pipeline", "contributor").await;
    let full = token(&app, &admin, "ops", "admin").await;

    // No token, a wrong one, or a session cookie instead: 401, in JSON.
    for t in [None, Some("sxp_not-a-token"), Some("Basic abc")] {
        let (status, body) =
            api(&app, reqwest::Method::GET, "/api/v1/exports", t, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    let res = admin.get(app.url("/api/v1/exports")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");

    // Reading: every role.
    for t in [&viewer, &contributor, &full] {
        let (status, list) = get(&app, "/api/v1/exports", t).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{list}");
        let (status, one) = get(&app, &format!("/api/v1/exports/{carols}"), t).await;
        assert_eq!(status, StatusCode::OK, "{one}");
        assert_eq!(one["name"], "Carol's");
        assert_eq!(one["owner"], "carol@example.com");
        assert!(one["last_run"].is_null());
    }
    let (_, list) = get(&app, "/api/v1/exports?q=carol", &viewer).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["can_manage"], false);
    let (_, list) = get(&app, "/api/v1/exports?status=never", &viewer).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let (status, body) = get(&app, "/api/v1/exports?status=weird", &viewer).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid"))
    );
    let (status, body) = get(&app, "/api/v1/exports?colour=red", &viewer).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid"))
    );
    for path in [
        "/api/v1/exports/999999",
        "/api/v1/exports/abc",
        "/api/v1/runs/999999",
        "/api/v1/nothing",
    ] {
        let (status, body) = get(&app, path, &viewer).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }

    // Running: a viewer token may not; a contributor token runs the
    // exports of the administrator who made it, not another's.
    let trigger = |id: i64| format!("/api/v1/exports/{id}/runs");
    let (status, body) = post(&app, &trigger(admins), &viewer, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (status, body) = post(&app, &trigger(carols), &contributor, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (status, body) = post(
        &app,
        &trigger(admins),
        &contributor,
        Some(json!({"mode": "weekly"})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dry_run"),
        "{body}"
    );
    let (status, dry) = post(
        &app,
        &trigger(admins),
        &contributor,
        Some(json!({"mode": "dry_run"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{dry}");
    assert_eq!(
        (&dry["mode"], &dry["trigger"]),
        (&json!("dry_run"), &json!("api"))
    );
    let dry = wait_for_run(&app, &viewer, dry["id"].as_i64().unwrap()).await;
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert!(dry["counts"]["adds"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(dry["counts"]["sent"], 0, "{dry}");

    // An admin token runs anyone's export; the same Idempotency-Key
    // answers with the same run, and with another request is refused.
    let keyed = |body: Option<Value>, key: &'static str| {
        let app = &app;
        let full = full.clone();
        async move {
            api(
                app,
                reqwest::Method::POST,
                &trigger(carols),
                Some(&full),
                body,
                Some(key),
            )
            .await
        }
    };
    let (status, first) = keyed(None, "nightly-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = keyed(Some(json!({"mode": "incremental"})), "nightly-1").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    let (status, body) = keyed(Some(json!({"mode": "full"})), "nightly-1").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("conflict")),
        "{body}"
    );
    let run = first["id"].as_i64().unwrap();
    let done = wait_for_run(&app, &viewer, run).await;
    // One demo profile has an invalid email: skipped, and said so.
    assert_eq!(done["status"], "partially_succeeded", "{done}");
    assert_eq!(done["counts"]["skipped_invalid_email"], 1, "{done}");
    assert_eq!(done["counts"]["skipped"], 1, "{done}");
    assert!(done["counts"]["sent"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(done["progress"]["percent"], 100);
    assert_eq!(done["requested_by"], "admin@example.com");
    // Still the same run, after it finished.
    let (status, again) = keyed(None, "nightly-1").await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &first["id"]));
    for (status, name) in [("succeeded", "Admin's"), ("partially_succeeded", "Carol's")] {
        let (_, list) = get(&app, &format!("/api/v1/exports?status={status}"), &viewer).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["items"][0]["name"], name, "{list}");
    }

    // A run's errors: paged, filtered, and as CSV, for every role.
    let run_path = format!("/api/v1/runs/{run}");
    let (status, page) = get(
        &app,
        &format!("{run_path}/errors?page=1&per_page=2"),
        &viewer,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let total = page["total"].as_i64().unwrap();
    assert_eq!(page["items"].as_array().unwrap().len() as i64, total.min(2));
    let (_, none) = get(
        &app,
        &format!("{run_path}/errors?q=zzz-nothing-matches"),
        &viewer,
    )
    .await;
    assert_eq!(none["total"], 0, "{none}");
    let (status, body) = get(&app, &format!("{run_path}/errors?per_page=5000"), &viewer).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid"))
    );
    let res = Client::new()
        .get(app.url(&format!("{run_path}/errors.csv")))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    assert_eq!(csv.lines().count() as i64, total + 1, "{csv}");

    // Every reading endpoint for every role; every endpoint refuses a
    // caller without a token.
    for t in [&viewer, &contributor, &full] {
        for path in [
            run_path.clone(),
            format!("{run_path}/errors"),
            format!("{run_path}/errors.csv"),
            format!("/api/v1/exports/{admins}"),
        ] {
            let res = Client::new()
                .get(app.url(&path))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
        }
    }
    for (method, path) in [
        (reqwest::Method::GET, String::from("/api/v1/exports")),
        (reqwest::Method::GET, format!("/api/v1/exports/{admins}")),
        (reqwest::Method::POST, trigger(admins)),
        (reqwest::Method::GET, run_path.clone()),
        (reqwest::Method::GET, format!("{run_path}/errors")),
        (reqwest::Method::GET, format!("{run_path}/errors.csv")),
        (reqwest::Method::POST, format!("{run_path}/cancel")),
    ] {
        let (status, body) = api(&app, method.clone(), &path, None, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    // Cancelling: managing; a finished run is a conflict.
    let (status, body) = post(&app, &format!("{run_path}/cancel"), &viewer, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (status, body) = post(&app, &format!("{run_path}/cancel"), &full, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("conflict")),
        "{body}"
    );
    let (status, queued) = post(&app, &trigger(admins), &contributor, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let (status, cancelled) = post(
        &app,
        &format!("/api/v1/runs/{}/cancel", queued["id"]),
        &contributor,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert!(
        cancelled["status"] == "cancelled" || cancelled["cancel_requested"] == true,
        "{cancelled}"
    );
    assert!(
        cancelled["message"].as_str().unwrap().contains("API token"),
        "{cancelled}"
    );

    // Revoked: refused from then on; the list shows when it was last used.
    let tokens = call_json(&app, &admin, "list_api_tokens", &[]).await;
    let pipeline = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "pipeline")
        .unwrap()
        .clone();
    assert!(!pipeline["last_used"].is_null(), "{pipeline}");
    assert_eq!(pipeline["role"], "Contributor");
    assert!(tokens
        .to_string()
        .find("sxp_")
        .is_some_and(|_| !tokens.to_string().contains(&contributor)));
    let id = pipeline["id"].to_string();
    call_json(&app, &admin, "revoke_api_token", &[("id", &id)]).await;
    let (status, _) = get(&app, "/api/v1/exports", &contributor).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.call(&admin, "revoke_api_token", &[("id", &id)]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let audit: Vec<String> = engine::audit::recent(&app.db.db, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        audit.iter().filter(|a| *a == "api_token.create").count() == 3,
        "{audit:?}"
    );
    assert!(
        audit.contains(&String::from("api_token.revoke")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_token_loses_what_its_administrator_loses() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let (_, carols) = two_exports(&app, &admin, &carol).await;
    let ann = app.user(&admin, "ann@example.com", "admin").await;
    let secret = token(&app, &ann, "ann's", "admin").await;
    let path = format!("/api/v1/exports/{carols}/runs");
    let (status, body) = post(&app, &path, &secret, Some(json!({"mode": "dry_run"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    wait_for_run(&app, &secret, body["id"].as_i64().unwrap()).await;

    // Ann demoted to viewer: her admin token only reads now.
    let ann_id = app.user_id("ann@example.com").await.to_string();
    call_json(
        &app,
        &admin,
        "set_user_role",
        &[("user_id", &ann_id), ("role", "viewer")],
    )
    .await;
    let (status, _) = post(&app, &path, &secret, Some(json!({"mode": "dry_run"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(&app, "/api/v1/exports", &secret).await;
    assert_eq!(status, StatusCode::OK);
    // Deactivated: refused altogether.
    call_json(
        &app,
        &admin,
        "set_user_active",
        &[("user_id", &ann_id), ("active", "false")],
    )
    .await;
    let (status, _) = get(&app, "/api/v1/exports", &secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint() {
    let app = TestApp::spawn().await;
    let res = reqwest::get(app.url("/api/v1/openapi.json")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/exports", "get"),
        ("/api/v1/exports/{id}", "get"),
        ("/api/v1/exports/{id}/runs", "post"),
        ("/api/v1/runs/{id}", "get"),
        ("/api/v1/runs/{id}/errors", "get"),
        ("/api/v1/runs/{id}/errors.csv", "get"),
        ("/api/v1/runs/{id}/cancel", "post"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert_eq!(op["security"][0]["token"], json!([]), "{method} {path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    let counts = &doc["components"]["schemas"]["Counts"]["properties"];
    assert!(
        counts["sent"].is_object() && counts["skipped_no_email"].is_object(),
        "{counts}"
    );
    assert!(
        doc["components"]["schemas"]["RunCounts"].is_object(),
        "{doc}"
    );
    let status = &doc["components"]["schemas"]["RunStatus"]["enum"];
    assert!(
        status
            .as_array()
            .unwrap()
            .contains(&json!("partially_succeeded")),
        "{status}"
    );
}
