//! Operations over HTTP: the health and metrics endpoints for
//! orchestrators, and the overview.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::fixtures::{call_json, post, token, two_exports, wait_for_run};
use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

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
        engine::ConnectionId(connection),
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
