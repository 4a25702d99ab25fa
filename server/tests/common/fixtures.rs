//! Fixtures several test binaries share: calling a server function for
//! JSON, API tokens, and two exports on one connection.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use super::{add_connection, TestApp};

/// Calls a server function that must succeed; its JSON answer.
pub async fn call_json(app: &TestApp, client: &Client, f: &str, form: &[(&str, &str)]) -> Value {
    let (status, body) = app.call(client, f, form).await;
    assert_eq!(status, StatusCode::OK, "{f}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Creates an API token as `admin`; returns its secret.
pub async fn token(app: &TestApp, admin: &Client, name: &str, role: &str) -> String {
    let created = call_json(
        app,
        admin,
        "create_api_token",
        &[("name", name), ("role", role)],
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sxp_"), "{created}");
    assert!(secret.starts_with(created["token"]["prefix"].as_str().unwrap()));
    secret
}

pub fn export_json(name: &str, connection: i64, list: &str, segments: &[i64]) -> String {
    json!({
        "name": name,
        "connection_id": connection,
        "list_id": list,
        "mapping": [
            { "source": "email", "target": "email" },
            { "source": "first_name", "target": "first_name" }
        ],
        "segment_ids": segments,
        "on_schedule": false,
        "remove_left": false,
        "removal_limit_pct": 20
    })
    .to_string()
}

/// Two exports on one connection: `Admin's` (owned by the admin) and
/// `Carol's` (owned by a contributor). Returns (admin's id, carol's id).
pub async fn two_exports(app: &TestApp, admin: &Client, carol: &Client) -> (i64, i64) {
    engine::demo::generate(&app.db.db, 200, 7).await.unwrap();
    let connection = add_connection(app, admin, "Marketing").await["id"]
        .as_i64()
        .unwrap();
    let cid = connection.to_string();
    let list = call_json(
        app,
        admin,
        "create_connection_list",
        &[("connection_id", &cid), ("name", "Customers")],
    )
    .await;
    let list_id = list["list_id"].as_str().unwrap().to_owned();
    let segment = engine::segments::by_name(&app.db.db, "High value")
        .await
        .unwrap()
        .unwrap()
        .id;
    let mut ids = Vec::new();
    for (who, name) in [(admin, "Admin's"), (carol, "Carol's")] {
        let id: i64 = serde_json::from_value(
            call_json(
                app,
                who,
                "save_export",
                &[(
                    "export",
                    &export_json(name, connection, &list_id, &[segment.get()]),
                )],
            )
            .await,
        )
        .unwrap();
        ids.push(id);
    }
    (ids[0], ids[1])
}

/// An API call: the status and the JSON body.
pub async fn api(
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

pub async fn get(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    api(app, reqwest::Method::GET, path, Some(token), None, None).await
}

pub async fn post(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    api(app, reqwest::Method::POST, path, Some(token), body, None).await
}

pub async fn wait_for_run(app: &TestApp, token: &str, run: i64) -> Value {
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
