//! Operations over HTTP: the REST API (`/api/v1`) with tokens made by
//! administrators (every endpoint as each token role, idempotent
//! triggers, JSON errors with stable codes, the OpenAPI document); the
//! health and metrics endpoints for orchestrators; the overview.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::fixtures::{call_json, token, two_exports};
use common::TestApp;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// An API call: the status and the JSON body.
async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Client::new().request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

async fn get(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    api(app, reqwest::Method::GET, path, Some(token), None, None).await
}

async fn post(app: &TestApp, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    api(app, reqwest::Method::POST, path, Some(token), body, None).await
}

async fn wait_for_run(app: &TestApp, token: &str, run: i64) -> Value {
    for _ in 0..600 {
        let (status, r) = get(app, &format!("/api/v1/runs/{run}"), token).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        if r["status"] != "queued" && r["status"] != "running" {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run} did not finish in 30 s");
}

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
    let status = &doc["components"]["schemas"]["RunStatus"]["enum"];
    assert!(
        status
            .as_array()
            .unwrap()
            .contains(&json!("partially_succeeded")),
        "{status}"
    );
}

#[tokio::test]
async fn health_says_live_and_ready_and_metrics_are_off_unless_enabled() {
    let app = TestApp::spawn().await;
    let res = reqwest::get(app.url("/health/live")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = reqwest::get(app.url("/health/ready")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");
    let res = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // A migration this build knows but the database lacks: not ready.
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(app.db.db.pool())
    .await
    .unwrap();
    let res = reqwest::get(app.url("/health/ready")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["reason"].as_str().unwrap().contains("migrations"),
        "{body}"
    );
    let res = reqwest::get(app.url("/health/live")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_runs_contacts_requests_and_latency() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|config, _| config.metrics = true).await;
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let (admins, _) = two_exports(&app, &admin, &carol).await;
    let secret = token(&app, &admin, "ops", "admin").await;
    let (status, run) = post(
        &app,
        &format!("/api/v1/exports/{admins}/runs"),
        &secret,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let run = wait_for_run(&app, &secret, run["id"].as_i64().unwrap()).await;
    let sent = run["counts"]["sent"].as_u64().unwrap();
    assert!(sent > 0);

    let res = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    assert_eq!(
        value("segment_export_runs{status=\"partially_succeeded\"}"),
        1.0
    );
    assert_eq!(value("segment_export_runs{status=\"succeeded\"}"), 0.0);
    assert_eq!(value("segment_export_runs{status=\"failed\"}"), 0.0);
    assert_eq!(value("segment_export_contacts_sent_total"), sent as f64);
    assert_eq!(value("segment_export_exports "), 2.0);
    assert!(
        value("segment_export_constant_contact_requests_total{") >= 2.0,
        "{text}"
    );
    assert!(
        text.contains("segment_export_constant_contact_throttled_total{"),
        "{text}"
    );
    assert!(
        text.contains("segment_export_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/runs/{id}\",status=\"200\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn the_overview_puts_failing_exports_first_with_their_history() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let viewer = app.user(&admin, "vic@example.com", "viewer").await;
    let (admins, carols) = two_exports(&app, &admin, &carol).await;
    let secret = token(&app, &admin, "ops", "admin").await;
    let empty = call_json(&app, &viewer, "get_dashboard", &[]).await;
    assert_eq!(empty["exports"].as_array().unwrap().len(), 2, "{empty}");
    assert!(empty["exports"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["failing"] == false && e["history"] == json!([])));
    // Not on the schedule: on demand only.
    assert!(empty["exports"][0]["next_run"].is_null(), "{empty}");

    // Admin's: three dry runs (succeeded); Carol's: one run that skipped
    // an invalid email (partially succeeded).
    for _ in 0..3 {
        let (_, r) = post(
            &app,
            &format!("/api/v1/exports/{admins}/runs"),
            &secret,
            Some(json!({"mode": "dry_run"})),
        )
        .await;
        wait_for_run(&app, &secret, r["id"].as_i64().unwrap()).await;
    }
    let (_, r) = post(
        &app,
        &format!("/api/v1/exports/{carols}/runs"),
        &secret,
        None,
    )
    .await;
    let carols_run = wait_for_run(&app, &secret, r["id"].as_i64().unwrap()).await;

    let d = call_json(&app, &viewer, "get_dashboard", &[]).await;
    let exports = d["exports"].as_array().unwrap();
    assert_eq!(exports[0]["name"], "Carol's", "failing first: {d}");
    assert_eq!(exports[0]["failing"], true);
    assert_eq!(exports[0]["last_run"]["status"], "partially_succeeded");
    assert_eq!(exports[0]["history"].as_array().unwrap().len(), 1);
    assert_eq!(
        exports[0]["history"][0]["sent"],
        carols_run["counts"]["sent"]
    );
    assert_eq!(exports[0]["history"][0]["failed"], 1);
    assert_eq!(exports[1]["name"], "Admin's");
    assert_eq!(exports[1]["failing"], false);
    assert_eq!(exports[1]["history"].as_array().unwrap().len(), 3);
    assert_eq!(d["connections"][0]["status"], "authorized", "{d}");
    assert_eq!(d["connections"][0]["token_age_days"], 0);
    assert!(d["quota"][0]["used"].as_i64().unwrap() > 0, "{d}");
    assert_eq!(d["quota"][0]["limit"], 10_000);

    // A connection that needs signing in again: both its exports need attention.
    let connection = d["connections"][0]["id"].as_i64().unwrap();
    engine::connections::set_status(
        &app.db.db,
        connection,
        engine::connections::Status::NeedsReauthentication,
        Some("The refresh token was refused."),
    )
    .await
    .unwrap();
    let d = call_json(&app, &viewer, "get_dashboard", &[]).await;
    assert!(
        d["exports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["failing"] == true),
        "{d}"
    );
    assert_eq!(d["connections"][0]["status"], "needs_reauth");

    let (status, _) = app.call(&app.client(), "get_dashboard", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
