//! What the sandbox's tests share: starting it, signing in through its
//! OAuth pages, calling its API and its inspection routes.
#![allow(dead_code, unused_imports)] // each test binary uses its own part

pub use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use base64::Engine;
pub use reqwest::{Client, StatusCode};
pub use sandbox::{Config, Running};
pub use serde_json::{json, Value};
pub use sha2::{Digest, Sha256};

pub const CLIENT: &str = "segment-export-demo";
pub const SECRET: &str = "demo-client-secret";
pub const REDIRECT: &str = "http://127.0.0.1:3000/oauth/constant-contact/callback";

pub async fn start(config: Config) -> Running {
    sandbox::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub fn http() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    let q = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// Signs in on the consent page and returns the redirect's parameters.
pub async fn authorize(
    sb: &Running,
    scope: &str,
    verifier: Option<&str>,
    decision: &str,
    password: &str,
) -> (StatusCode, std::collections::HashMap<String, String>) {
    let mut form = vec![
        ("client_id", CLIENT.to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("response_type", "code".to_owned()),
        ("scope", scope.to_owned()),
        ("state", "xyz".to_owned()),
        ("username", "demo@example.com".to_owned()),
        ("password", password.to_owned()),
        ("decision", decision.to_owned()),
    ];
    if let Some(v) = verifier {
        form.push((
            "code_challenge",
            URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())),
        ));
        form.push(("code_challenge_method", "S256".to_owned()));
    }
    let res = http()
        .post(format!("{}/oauth2/default/v1/authorize", sb.url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, query_of(&location))
}

pub async fn token(sb: &Running, params: &[(&str, &str)]) -> (StatusCode, Value) {
    let res = http()
        .post(format!("{}/oauth2/default/v1/token", sb.url()))
        .basic_auth(CLIENT, Some(SECRET))
        .query(params)
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

pub async fn signed_in(sb: &Running) -> String {
    let (_, q) = authorize(
        sb,
        "contact_data offline_access",
        Some("verifier-0123456789-0123456789-0123456789-xyz"),
        "allow",
        "demo-password",
    )
    .await;
    let (status, body) = token(
        sb,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "verifier-0123456789-0123456789-0123456789-xyz",
            ),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// POSTs `body` as JSON to the API path with the bearer token.
pub async fn post_api(sb: &Running, at: &str, path: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}/v3{path}", sb.url()))
        .bearer_auth(at)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Creates a contact list and returns it.
pub async fn create_list(sb: &Running, at: &str, name: &str) -> Value {
    let res = post_api(sb, at, "/contact_lists", &json!({ "name": name })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

/// Replaces the sandbox's injected faults.
pub async fn set_faults(sb: &Running, faults: Value) {
    let res = http()
        .put(format!("{}/_sandbox/faults", sb.url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
}

/// GETs a sandbox inspection path and returns its JSON.
pub async fn inspect(sb: &Running, path: &str) -> Value {
    http()
        .get(format!("{}/_sandbox{path}", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
