//! Every form's server function reports all of a submit's problems at
//! once, each with its field (the page shows each next to its field and
//! all in the form's summary), never the first one alone.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::Value;

/// The fields a 422 answer names, in order.
fn fields(status: StatusCode, body: &str) -> Vec<String> {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let error: Value = serde_json::from_str(body).unwrap();
    match (&error["Fields"], &error["Field"]) {
        (Value::Array(all), _) => all
            .iter()
            .map(|p| p[0].as_str().unwrap().to_owned())
            .collect(),
        (_, Value::Object(one)) => vec![one["field"].as_str().unwrap().to_owned()],
        _ => panic!("not a field error: {body}"),
    }
}

#[tokio::test]
async fn add_user_reports_email_role_and_password_together() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let (status, body) = app
        .call(
            &admin,
            "create_user",
            &[
                ("email", "not an address"),
                ("role", "owner"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(fields(status, &body), ["email", "role", "password"]);
    // Nothing was created.
    let (_, users) = app.call(&admin, "list_users", &[]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&users)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_segment_reports_its_name_and_its_rule_together() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let incomplete = r#"{"match":"all","conditions":[{"field":"","op":"eq","value":""}]}"#;
    let good = r#"{"match":"all","conditions":[{"field":"email","op":"is_set"}]}"#;
    let (status, body) = app
        .call(
            &admin,
            "create_segment",
            &[("name", "  "), ("description", ""), ("rule", incomplete)],
        )
        .await;
    assert_eq!(fields(status, &body), ["name", "rule"]);
    // Not even a rule: still both.
    let (status, body) = app
        .call(
            &admin,
            "create_segment",
            &[("name", ""), ("description", ""), ("rule", "{")],
        )
        .await;
    assert_eq!(fields(status, &body), ["name", "rule"]);

    let (status, body) = app
        .call(
            &admin,
            "create_segment",
            &[("name", "With email"), ("description", ""), ("rule", good)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].to_string();
    let (status, body) = app
        .call(
            &admin,
            "update_segment",
            &[
                ("id", &id),
                ("name", ""),
                ("description", ""),
                ("rule", incomplete),
            ],
        )
        .await;
    assert_eq!(fields(status, &body), ["name", "rule"]);
    // A good rule with a bad name names the name alone.
    let (status, body) = app
        .call(
            &admin,
            "update_segment",
            &[
                ("id", &id),
                ("name", ""),
                ("description", ""),
                ("rule", good),
            ],
        )
        .await;
    assert_eq!(fields(status, &body), ["name"]);
}

#[tokio::test]
async fn a_connection_reports_its_name_and_the_missing_agreement_together() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let (status, body) = app
        .call(
            &admin,
            "start_connect",
            &[("display_name", ""), ("usable_by", "admins")],
        )
        .await;
    assert_eq!(fields(status, &body), ["display_name", "agree"]);
}
