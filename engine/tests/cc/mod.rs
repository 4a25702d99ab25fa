//! What the Constant Contact client tests share: the sandbox, signing in
//! through it, a client.
#![allow(dead_code, unused_imports)] // each test binary uses its own part

pub use std::collections::HashMap;
pub use std::sync::atomic::{AtomicUsize, Ordering};
pub use std::sync::Arc;
pub use std::time::Duration;

pub use engine::constant_contact::{
    ApiClient, BatchBuilder, CcError, Endpoints, ImportContact, OAuthClient, RetryPolicy, Secret,
    Tokens, MIN_INTERVAL,
};
pub use sandbox::{Config, Running};
pub use serde_json::{json, Value};

pub const CLIENT: &str = "segment-export-demo";
pub const SECRET: &str = "demo-client-secret";
pub const REDIRECT: &str = "http://127.0.0.1:3000/oauth/constant-contact/callback";

pub async fn start(config: Config) -> Running {
    sandbox::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub fn fast() -> Config {
    Config {
        rate_per_second: 0,
        processing_delay_ms: 5,
        ..Config::default()
    }
}

pub fn oauth(sb: &Running) -> OAuthClient {
    OAuthClient::new(
        &Endpoints::at(&sb.url()),
        CLIENT,
        &Secret::new(SECRET),
        REDIRECT,
    )
    .unwrap()
}

pub fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Plays the browser: opens the authorization URL, signs in, approves,
/// and returns the query of the redirect back to us.
pub async fn approve(url: &str, decision: &str) -> HashMap<String, String> {
    let http = plain_http();
    let page = http.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let query: HashMap<String, String> =
        form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    let mut form: Vec<(String, String)> = query.into_iter().collect();
    form.push(("username".into(), "demo@example.com".into()));
    form.push(("password".into(), "demo-password".into()));
    form.push(("decision".into(), decision.into()));
    let res = http
        .post(url.split_once('?').unwrap().0)
        .form(&form)
        .send()
        .await
        .unwrap();
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
        .into_owned()
        .collect()
}

pub async fn sign_in(sb: &Running) -> Tokens {
    let oauth = oauth(sb);
    let request = oauth.authorization_request();
    let back = approve(&request.url, "allow").await;
    assert_eq!(back["state"], request.state.expose());
    oauth
        .exchange_code(&back["code"], &request.pkce_verifier)
        .await
        .unwrap()
}

pub async fn client(sb: &Running) -> ApiClient {
    let tokens = sign_in(sb).await;
    ApiClient::new(Endpoints::at(&sb.url()), tokens, Some(oauth(sb)))
        .unwrap()
        .with_interval(Duration::ZERO)
        .with_retry(RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
        })
}

/// An error with the sandbox's last answers: under injected faults,
/// retries should outlast any run of them.
pub async fn with_last_answers(sb: &Running, e: CcError) -> String {
    let log = sandbox_json(sb, "/_sandbox/requests").await;
    let requests = log["requests"].as_array().unwrap();
    let tail: Vec<String> = requests[requests.len().saturating_sub(25)..]
        .iter()
        .map(|r| format!("{} {} {}", r["method"], r["path"], r["status"]))
        .collect();
    format!("{e:?} after:\n{}", tail.join("\n"))
}

pub async fn sandbox_json(sb: &Running, path: &str) -> Value {
    plain_http()
        .get(format!("{}{path}", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
