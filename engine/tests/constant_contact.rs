//! The Constant Contact client against the sandbox, over real HTTP: lists,
//! fields, imports, faults, the quota, pacing, removals and look-ups.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cc;

use cc::*;

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
