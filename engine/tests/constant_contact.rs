//! The Constant Contact client against the sandbox, over real HTTP.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::constant_contact::{
    ApiClient, BatchBuilder, CcError, Endpoints, ImportContact, OAuthClient, RetryPolicy, Secret,
    Tokens, MIN_INTERVAL,
};
use sandbox::{Config, Running};
use serde_json::{json, Value};

const CLIENT: &str = "segment-export-demo";
const SECRET: &str = "demo-client-secret";
const REDIRECT: &str = "http://127.0.0.1:3000/oauth/constant-contact/callback";

async fn start(config: Config) -> Running {
    sandbox::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn fast() -> Config {
    Config {
        rate_per_second: 0,
        processing_delay_ms: 5,
        ..Config::default()
    }
}

fn oauth(sb: &Running) -> OAuthClient {
    OAuthClient::new(
        &Endpoints::at(&sb.url()),
        CLIENT,
        &Secret::new(SECRET),
        REDIRECT,
    )
    .unwrap()
}

fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Plays the browser: opens the authorization URL, signs in, approves,
/// and returns the query of the redirect back to us.
async fn approve(url: &str, decision: &str) -> HashMap<String, String> {
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

async fn sign_in(sb: &Running) -> Tokens {
    let oauth = oauth(sb);
    let request = oauth.authorization_request();
    let back = approve(&request.url, "allow").await;
    assert_eq!(back["state"], request.state.expose());
    oauth
        .exchange_code(&back["code"], &request.pkce_verifier)
        .await
        .unwrap()
}

async fn client(sb: &Running) -> ApiClient {
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
async fn with_last_answers(sb: &Running, e: CcError) -> String {
    let log = sandbox_json(sb, "/_sandbox/requests").await;
    let requests = log["requests"].as_array().unwrap();
    let tail: Vec<String> = requests[requests.len().saturating_sub(25)..]
        .iter()
        .map(|r| format!("{} {} {}", r["method"], r["path"], r["status"]))
        .collect();
    format!("{e:?} after:\n{}", tail.join("\n"))
}

async fn sandbox_json(sb: &Running, path: &str) -> Value {
    plain_http()
        .get(format!("{}{path}", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_authorization_url_asks_for_code_pkce_state_and_our_scopes() {
    let sb = start(fast()).await;
    let request = oauth(&sb).authorization_request();
    let q: HashMap<String, String> =
        form_urlencoded::parse(request.url.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["scope"], "contact_data offline_access");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], request.state.expose());
    assert!(!request.url.contains(request.pkce_verifier.expose()));
}

#[tokio::test]
async fn code_exchange_gives_tokens_and_a_replayed_code_needs_reauthentication() {
    let sb = start(fast()).await;
    let oauth = oauth(&sb);
    let request = oauth.authorization_request();
    let back = approve(&request.url, "allow").await;
    let tokens = oauth
        .exchange_code(&back["code"], &request.pkce_verifier)
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
    assert!(!tokens.expires_within(Duration::from_secs(3600)));
    assert_eq!(tokens.scopes, ["contact_data", "offline_access"]);
    let replay = oauth
        .exchange_code(&back["code"], &request.pkce_verifier)
        .await;
    assert_eq!(replay, Err(CcError::NeedsReauthentication));
    let wrong_verifier = oauth.authorization_request();
    let back2 = approve(&wrong_verifier.url, "allow").await;
    assert_eq!(
        oauth
            .exchange_code(&back2["code"], &request.pkce_verifier)
            .await,
        Err(CcError::NeedsReauthentication)
    );
}

#[tokio::test]
async fn denial_comes_back_as_access_denied() {
    let sb = start(fast()).await;
    let request = oauth(&sb).authorization_request();
    let back = approve(&request.url, "deny").await;
    assert_eq!(back["error"], "access_denied");
    assert_eq!(back["state"], request.state.expose());
}

#[tokio::test]
async fn refresh_keeps_whatever_refresh_token_comes_back() {
    for rotate in [true, false] {
        let sb = start(Config {
            rotate_refresh_tokens: rotate,
            ..fast()
        })
        .await;
        let first = sign_in(&sb).await;
        let second = oauth(&sb)
            .refresh(first.refresh_token.as_ref().unwrap())
            .await
            .unwrap();
        assert_ne!(first.access_token, second.access_token);
        assert_eq!(first.refresh_token == second.refresh_token, !rotate);
        let again = oauth(&sb)
            .refresh(first.refresh_token.as_ref().unwrap())
            .await;
        if rotate {
            assert_eq!(again, Err(CcError::NeedsReauthentication));
        } else {
            assert!(again.is_ok());
        }
    }
}

#[tokio::test]
async fn a_401_refreshes_once_and_the_new_tokens_are_handed_over() {
    let sb = start(fast()).await;
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let api = client(&sb).await.on_refresh(Arc::new(move |_t: &Tokens| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let before = api.tokens().await;
    plain_http()
        .post(format!("{}/_sandbox/tokens/expire_access", sb.url()))
        .send()
        .await
        .unwrap();
    assert!(!api.privileges().await.unwrap().is_empty());
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    let after = api.tokens().await;
    assert_ne!(before.access_token, after.access_token);
    assert_ne!(
        before.refresh_token, after.refresh_token,
        "the rotated refresh token must be kept"
    );
}

#[tokio::test]
async fn revoked_tokens_end_in_needs_reauthentication() {
    let sb = start(fast()).await;
    let api = client(&sb).await;
    let tokens = api.tokens().await;
    oauth(&sb)
        .revoke(tokens.refresh_token.as_ref().unwrap(), true)
        .await
        .unwrap();
    oauth(&sb)
        .revoke(&tokens.access_token, false)
        .await
        .unwrap();
    assert_eq!(api.lists().await, Err(CcError::NeedsReauthentication));
    assert!(CcError::NeedsReauthentication
        .to_string()
        .contains("re-authenticated"));
}

#[tokio::test]
async fn lists_are_read_across_pages_and_created_with_conflicts_reported() {
    let sb = start(fast()).await;
    let api = client(&sb).await;
    for i in 0..620 {
        api.create_list(&format!("List {i:03}"), None)
            .await
            .unwrap();
    }
    let lists = api.lists().await.unwrap();
    assert_eq!(lists.len(), 620);
    assert_eq!(lists[619].name, "List 619");
    assert_eq!(lists[0].membership_count, Some(0));
    let log = sandbox_json(&sb, "/_sandbox/requests").await;
    let pages = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"] == "/v3/contact_lists")
        .count();
    assert_eq!(pages, 2, "620 lists at 500 a page");

    assert!(matches!(
        api.create_list("list 001", None).await,
        Err(CcError::Conflict(_))
    ));
    let one = api.list(&lists[5].list_id).await.unwrap();
    assert_eq!(one.name, "List 005");
    assert!(matches!(
        api.list(&uuid::Uuid::new_v4().to_string()).await,
        Err(CcError::NotFound(_))
    ));
    assert!(matches!(
        api.list("not-a-uuid").await,
        Err(CcError::NotFound(_))
    ));
}

#[tokio::test]
async fn custom_fields_and_the_probe_are_read() {
    let sb = start(fast()).await;
    for label in ["Favorite Color", "Shoe Size"] {
        plain_http()
            .post(format!("{}/_sandbox/custom_fields", sb.url()))
            .json(&json!({ "label": label }))
            .send()
            .await
            .unwrap();
    }
    let api = client(&sb).await;
    let fields = api.custom_fields().await.unwrap();
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["Favorite_Color", "Shoe_Size"]);
    assert!(api
        .privileges()
        .await
        .unwrap()
        .iter()
        .any(|p| p.privilege_name == "contacts:write"));
}

#[tokio::test]
async fn a_hundred_thousand_contacts_go_in_correct_batches_and_all_arrive() {
    let sb = start(fast()).await;
    let api = client(&sb).await;
    let list = api.create_list("Everyone", None).await.unwrap();
    let mut builder = BatchBuilder::new(std::slice::from_ref(&list.list_id));
    let mut batches = Vec::new();
    for i in 0..100_000 {
        let c = ImportContact::new(format!("person{i}@example.com"))
            .set("first_name", format!("Person {i}"));
        if let Some(b) = builder.push(i.to_string(), &c).unwrap() {
            batches.push(b);
        }
    }
    batches.extend(builder.finish());
    let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
    assert_eq!(sizes, [40_000, 40_000, 20_000]);
    for b in &batches {
        assert!(b.body.len() < 4_000_000);
        let activity = api.import(b).await.unwrap();
        assert_eq!(activity.state, "initialized");
        let done = api
            .wait_for(
                &activity.activity_id,
                Duration::from_millis(20),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(done.state, "completed");
        assert_eq!(done.percent_done, 100);
        assert_eq!(done.status.person_count, b.len() as u64);
    }
    let members = sandbox_json(&sb, &format!("/_sandbox/lists/{}/members", list.list_id)).await;
    assert_eq!(members["count"], 100_000);
    assert_eq!(
        api.list(&list.list_id).await.unwrap().membership_count,
        Some(100_000)
    );
}

#[tokio::test]
async fn under_injected_faults_every_contact_is_imported_exactly_once() {
    let sb = start(fast()).await;
    let api = client(&sb).await;
    let list = api.create_list("Flaky", None).await.unwrap();
    plain_http()
        .put(format!("{}/_sandbox/faults", sb.url()))
        .json(&json!({ "p429": 0.2, "p500": 0.15, "p503": 0.1, "drop": 0.1, "latency_ms": 3 }))
        .send()
        .await
        .unwrap();
    let mut builder =
        BatchBuilder::with_limits(std::slice::from_ref(&list.list_id), 100, 4_000_000);
    let mut batches = Vec::new();
    for i in 0..1_000 {
        if let Some(b) = builder
            .push(
                i.to_string(),
                &ImportContact::new(format!("c{i}@example.com")),
            )
            .unwrap()
        {
            batches.push(b);
        }
    }
    batches.extend(builder.finish());
    let mut activities = Vec::new();
    for b in &batches {
        match api.import(b).await {
            Ok(a) => activities.push(a.activity_id),
            Err(e) => panic!("{}", with_last_answers(&sb, e).await),
        }
    }
    for id in &activities {
        if let Err(e) = api
            .wait_for(id, Duration::from_millis(10), Duration::from_secs(60))
            .await
        {
            panic!("{}", with_last_answers(&sb, e).await);
        }
    }
    plain_http()
        .put(format!("{}/_sandbox/faults", sb.url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let members = sandbox_json(&sb, &format!("/_sandbox/lists/{}/members", list.list_id)).await;
    assert_eq!(members["count"], 1_000);
    let all = sandbox_json(&sb, "/_sandbox/activities").await;
    assert_eq!(
        all["activities"].as_array().unwrap().len(),
        batches.len(),
        "each batch accepted exactly once"
    );
    let log = sandbox_json(&sb, "/_sandbox/requests").await;
    let failures = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"].as_u64().unwrap() >= 429)
        .count();
    assert!(failures > 0, "the faults were injected");
}

#[tokio::test]
async fn the_daily_quota_is_fatal_and_counted() {
    let sb = start(Config {
        daily_quota: 3,
        ..fast()
    })
    .await;
    let api = client(&sb).await;
    for _ in 0..3 {
        api.privileges().await.unwrap();
    }
    assert_eq!(api.privileges().await, Err(CcError::QuotaExceeded));
    assert_eq!(
        api.requests_today(),
        4,
        "a refused request still counts: it was sent"
    );
    assert_eq!(api.quota_left().await, 10_000 - 4);
}

#[tokio::test]
async fn pacing_keeps_under_four_requests_a_second() {
    let sb = start(Config {
        processing_delay_ms: 5,
        ..Config::default()
    })
    .await;
    let tokens = sign_in(&sb).await;
    let api = ApiClient::new(Endpoints::at(&sb.url()), tokens, Some(oauth(&sb)))
        .unwrap()
        .with_retry(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        });
    let api = Arc::new(api);
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.privileges().await })
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    // Sent an interval apart; arrival jitter on a loaded machine may still
    // bring one 429, which a real client retries.
    assert!(started.elapsed() >= MIN_INTERVAL * 9);
    let log = sandbox_json(&sb, "/_sandbox/requests").await;
    let throttled = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != 200)
        .count();
    assert!(throttled <= 1, "{log}");
    assert!(answers
        .iter()
        .all(|a| matches!(a, Ok(_) | Err(CcError::Throttled))));
}

/// The limit is per application: two connections of one application share
/// its 4 requests a second, and its daily count.
#[tokio::test]
async fn clients_of_one_application_share_its_pace() {
    let sb = start(Config {
        processing_delay_ms: 5,
        ..Config::default()
    })
    .await;
    let no_retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let burst = |clients: Vec<Arc<ApiClient>>| async move {
        let calls: Vec<_> = clients
            .iter()
            .flat_map(|api| (0..5).map(move |_| api.clone()))
            .map(|api| tokio::spawn(async move { api.privileges().await }))
            .collect();
        let mut throttled = 0;
        for c in calls {
            if c.await.unwrap().is_err() {
                throttled += 1;
            }
        }
        throttled
    };
    let mut shared = Vec::new();
    let mut alone = Vec::new();
    for _ in 0..2 {
        let api = || async {
            ApiClient::new(
                Endpoints::at(&sb.url()),
                sign_in(&sb).await,
                Some(oauth(&sb)),
            )
            .unwrap()
            .with_retry(no_retry)
        };
        shared.push(Arc::new(api().await.for_application(&sb.url())));
        alone.push(Arc::new(api().await));
    }
    // One pace: the ten requests take nine intervals at least. (Arrival
    // jitter on a loaded machine may still bring one 429 at the sandbox,
    // which a real client retries.)
    let started = std::time::Instant::now();
    let throttled = burst(shared.clone()).await;
    assert!(
        started.elapsed() >= MIN_INTERVAL * 9,
        "one application, one pace"
    );
    assert!(throttled <= 1, "{throttled} of 10 throttled with one pace");
    assert_eq!(shared[0].requests_today(), 10);
    assert_eq!(shared[1].requests_today(), 10);
    assert_eq!(shared[0].requests_sent(), 5, "each knows its own");
    // Paced apart, the two go twice as fast as the limit allows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let throttled = burst(alone).await;
    assert!(
        throttled >= 3,
        "the sandbox throttles 8 a second: {throttled} of 10"
    );
}

#[tokio::test]
async fn removals_and_contact_lookups_read_back_what_happened() {
    let sb = start(fast()).await;
    let api = client(&sb).await;
    let list = api.create_list("Members", None).await.unwrap();
    plain_http()
        .post(format!("{}/_sandbox/contacts/unsubscribe", sb.url()))
        .json(&json!({ "email": "gone@example.com" }))
        .send()
        .await
        .unwrap();
    let mut b = BatchBuilder::new(std::slice::from_ref(&list.list_id));
    for (i, e) in ["a@example.com", "b@example.com", "gone@example.com"]
        .iter()
        .enumerate()
    {
        assert!(b
            .push(i.to_string(), &ImportContact::new(*e))
            .unwrap()
            .is_none());
    }
    let activity = api.import(&b.finish().unwrap()).await.unwrap();
    let done = api
        .wait_for(
            &activity.activity_id,
            Duration::from_millis(10),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(done.status.cannot_add_to_list_count, 1);
    let gone = api.find_contact("gone@example.com").await.unwrap().unwrap();
    assert!(gone.is_unsubscribed());
    let a = api.find_contact("a@example.com").await.unwrap().unwrap();
    assert_eq!(a.list_memberships, std::slice::from_ref(&list.list_id));
    assert!(api
        .find_contact("nobody@example.com")
        .await
        .unwrap()
        .is_none());

    let removal = api
        .remove_list_memberships(
            std::slice::from_ref(&a.contact_id),
            std::slice::from_ref(&list.list_id),
        )
        .await
        .unwrap();
    api.wait_for(
        &removal.activity_id,
        Duration::from_millis(10),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let members = sandbox_json(&sb, &format!("/_sandbox/lists/{}/members", list.list_id)).await;
    assert_eq!(members["emails"], json!(["b@example.com"]));
    assert!(matches!(
        api.remove_list_memberships(&[], std::slice::from_ref(&list.list_id))
            .await,
        Err(CcError::Rejected(_))
    ));
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_before_the_request() {
    let sb = start(Config {
        token_expires_in: 60,
        ..fast()
    })
    .await;
    let api = client(&sb).await;
    let before = api.tokens().await;
    assert!(before.expires_within(Duration::from_secs(120)));
    api.privileges().await.unwrap();
    assert_ne!(api.tokens().await.access_token, before.access_token);
    let log = sandbox_json(&sb, "/_sandbox/requests").await;
    assert!(
        log["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 200),
        "no 401 was needed: {log}"
    );
}

/// A stand-in for Constant Contact that answers every request with `body`
/// (200, JSON); returns its base URL.
async fn answering(body: Value) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = body.to_string();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

fn client_at(url: &str) -> ApiClient {
    let tokens = Tokens {
        access_token: Secret::new("token"),
        refresh_token: None,
        expires_at: engine::time::now_ms() + 3_600_000,
        scopes: vec![],
    };
    ApiClient::new(Endpoints::at(url), tokens, None)
        .unwrap()
        .with_interval(Duration::ZERO)
}

#[tokio::test]
async fn a_next_link_outside_the_collection_is_an_error_not_a_page() {
    // An activity's link where the next page of lists should be.
    let url = answering(json!({
        "lists": [],
        "_links": { "next": { "href": "/v3/activities/0f0e0d0c" } }
    }))
    .await;
    let err = client_at(&url).lists().await.unwrap_err();
    assert!(
        matches!(&err, CcError::Protocol(m) if m.contains("points elsewhere")),
        "{err:?}"
    );
    // A collection that links to itself forever stops at the bound.
    let url = answering(json!({
        "custom_fields": [],
        "_links": { "next": { "href": "/v3/contact_custom_fields?cursor=again" } }
    }))
    .await;
    let err = client_at(&url).custom_fields().await.unwrap_err();
    assert!(
        matches!(&err, CcError::Protocol(m) if m.contains("pages")),
        "{err:?}"
    );
}
