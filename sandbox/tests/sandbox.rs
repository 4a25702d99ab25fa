//! The sandbox's v3 API over HTTP: bearer tokens, rate limits and the
//! quota, lists, imports and their limits, faults, activities.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;

#[tokio::test]
async fn the_api_wants_a_valid_bearer_token() {
    let sb = start(Config::default()).await;
    let res = http()
        .get(format!("{}/v3/contact_lists", sb.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({ "error_key": "unauthorized", "error_message": "Unauthorized" })
    );
    let at = signed_in(&sb).await;
    let ok = http()
        .get(format!("{}/v3/account/user/privileges", sb.url()))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    http()
        .post(format!("{}/_sandbox/tokens/revoke_all", sb.url()))
        .send()
        .await
        .unwrap();
    let revoked = http()
        .get(format!("{}/v3/account/user/privileges", sb.url()))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn more_than_four_requests_a_second_are_throttled_and_the_daily_quota_holds() {
    let sb = start(Config {
        daily_quota: 7,
        ..Config::default()
    })
    .await;
    let at = signed_in(&sb).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let res = http()
            .get(format!("{}/v3/account/user/privileges", sb.url()))
            .bearer_auth(&at)
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(res.json::<Value>().await.unwrap()["error_key"], "throttled");
        }
    }
    assert_eq!(&statuses[..4], &[200, 200, 200, 200]);
    assert!(statuses[4..].iter().all(|&s| s == 429), "{statuses:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut last = None;
    for _ in 0..4 {
        last = Some(
            http()
                .get(format!("{}/v3/account/user/privileges", sb.url()))
                .bearer_auth(&at)
                .send()
                .await
                .unwrap(),
        );
    }
    let res = last.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error_key"],
        "quota_exceeded"
    );
}

#[tokio::test]
async fn lists_page_by_cursor_and_duplicate_names_conflict() {
    let sb = start(Config {
        rate_per_second: 0,
        ..Config::default()
    })
    .await;
    let at = signed_in(&sb).await;
    for i in 0..5 {
        create_list(&sb, &at, &format!("List {i}")).await;
    }
    let dup = post_api(&sb, &at, "/contact_lists", &json!({ "name": "list 0" })).await;
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    assert!(dup.json::<Value>().await.unwrap().is_array());

    let mut names = Vec::new();
    let mut next = Some(format!(
        "{}/v3/contact_lists?limit=2&include_count=true",
        sb.url()
    ));
    while let Some(url) = next {
        let page: Value = http()
            .get(&url)
            .bearer_auth(&at)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        names.extend(
            page["lists"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["name"].as_str().unwrap().to_owned()),
        );
        next = page["_links"]["next"]["href"]
            .as_str()
            .map(|h| format!("{}{h}", sb.url()));
    }
    assert_eq!(names, ["List 0", "List 1", "List 2", "List 3", "List 4"]);
    let missing = http()
        .get(format!(
            "{}/v3/contact_lists/{}",
            sb.url(),
            uuid::Uuid::new_v4()
        ))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_import_runs_to_completion_and_keeps_unsubscribed_contacts_off_the_list() {
    let sb = start(Config {
        rate_per_second: 0,
        processing_delay_ms: 20,
        ..Config::default()
    })
    .await;
    let at = signed_in(&sb).await;
    let list = create_list(&sb, &at, "Customers").await;
    let list_id = list["list_id"].as_str().unwrap().to_owned();
    http()
        .post(format!("{}/_sandbox/custom_fields", sb.url()))
        .json(&json!({ "label": "Favorite Color" }))
        .send()
        .await
        .unwrap();
    http()
        .post(format!("{}/_sandbox/contacts/unsubscribe", sb.url()))
        .json(&json!({ "email": "gone@example.com" }))
        .send()
        .await
        .unwrap();

    let unknown_cf = post_api(&sb, &at, "/activities/contacts_json_import", &json!({ "import_data": [{ "email": "a@example.com", "cf:shoe_size": "9" }], "list_ids": [list_id] })).await;
    assert_eq!(unknown_cf.status(), StatusCode::BAD_REQUEST);

    let res = post_api(
        &sb,
        &at,
        "/activities/contacts_json_import",
        &json!({
            "import_data": [
                { "email": "ann@example.com", "first_name": "Ann", "cf:Favorite_Color": "blue" },
                { "email": "gone@example.com" },
                { "email": "not-an-email" },
            ],
            "list_ids": [list_id],
        }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let activity: Value = res.json().await.unwrap();
    assert_eq!(activity["state"], "initialized");
    let href = activity["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = loop {
        let a: Value = http()
            .get(format!("{}{href}", sb.url()))
            .bearer_auth(&at)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if a["state"] == "completed" {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(done["percent_done"], 100);
    assert_eq!(done["status"]["cannot_add_to_list_count"], 1);
    assert_eq!(done["status"]["correctable_count"], 1);
    let members = inspect(&sb, &format!("/lists/{list_id}/members")).await;
    assert_eq!(members["emails"], json!(["ann@example.com"]));
    let found: Value = http()
        .get(format!("{}/v3/contacts", sb.url()))
        .bearer_auth(&at)
        .query(&[("email", "gone@example.com"), ("status", "all")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        found["contacts"][0]["email_address"]["permission_to_send"],
        "unsubscribed"
    );
}

#[tokio::test]
async fn imports_over_the_limits_are_refused() {
    let sb = start(Config {
        rate_per_second: 0,
        ..Config::default()
    })
    .await;
    let at = signed_in(&sb).await;
    let list = create_list(&sb, &at, "Big").await;
    let too_many: Vec<Value> = (0..40_001)
        .map(|i| json!({ "email": format!("c{i}@example.com") }))
        .collect();
    let res = post_api(
        &sb,
        &at,
        "/activities/contacts_json_import",
        &json!({ "import_data": too_many, "list_ids": [list["list_id"]] }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let long_name = post_api(&sb, &at, "/activities/contacts_json_import", &json!({ "import_data": [{ "email": "a@example.com", "first_name": "x".repeat(51) }], "list_ids": [list["list_id"]] })).await;
    assert_eq!(long_name.status(), StatusCode::BAD_REQUEST);
    let no_list = post_api(&sb, &at, "/activities/contacts_json_import", &json!({ "import_data": [{ "email": "a@example.com" }], "list_ids": [uuid::Uuid::new_v4()] })).await;
    assert_eq!(no_list.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn injected_faults_answer_as_configured() {
    let sb = start(Config {
        rate_per_second: 0,
        ..Config::default()
    })
    .await;
    let at = signed_in(&sb).await;
    set_faults(&sb, json!({ "p503": 1.0 })).await;
    let res = http()
        .get(format!("{}/v3/account/user/privileges", sb.url()))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    set_faults(&sb, json!({ "drop": 1.0 })).await;
    let dropped = http()
        .get(format!("{}/v3/account/user/privileges", sb.url()))
        .bearer_auth(&at)
        .send()
        .await;
    let broke = match dropped {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(broke, "a dropped connection must fail on the client");
    set_faults(&sb, json!({})).await;
    let ok = http()
        .get(format!("{}/v3/account/user/privileges", sb.url()))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let log = inspect(&sb, "/requests").await;
    let statuses: Vec<u64> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 200, 200]);
}

#[tokio::test]
async fn activities_are_listed_newest_first_by_state_and_page() {
    let sb = start(Config {
        rate_per_second: 0,
        processing_delay_ms: 400,
        ..Config::default()
    })
    .await;
    let at = signed_in(&sb).await;
    let list = create_list(&sb, &at, "Customers").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let activity: Value = post_api(
            &sb,
            &at,
            "/activities/contacts_json_import",
            &json!({
                "import_data": [{ "email": format!("p{i}@example.com") }],
                "list_ids": [list["list_id"]],
            }),
        )
        .await
        .json()
        .await
        .unwrap();
        ids.push(activity["activity_id"].as_str().unwrap().to_owned());
    }
    let get = |query: &str| {
        let url = format!("{}/v3/activities{query}", sb.url());
        let at = at.clone();
        async move {
            let res = http().get(url).bearer_auth(at).send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let listed = |page: &Value| -> Vec<String> {
        page["activities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["activity_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = get("").await;
    assert_eq!(status, StatusCode::OK);
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed(&all), newest_first);
    assert!(all["_links"]["next"].is_null());
    // Nothing is done yet: none is completed.
    assert!(listed(&get("?state=completed").await.1).is_empty());

    let (_, first) = get("?limit=2").await;
    assert_eq!(listed(&first), newest_first[..2]);
    let next = first["_links"]["next"]["href"].as_str().unwrap();
    let (_, rest) = get(next.trim_start_matches("/v3/activities")).await;
    assert_eq!(listed(&rest), newest_first[2..]);

    for bad in ["?limit=0", "?limit=501", "?state=done"] {
        assert_eq!(get(bad).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (_, done) = get("?state=completed").await;
    assert_eq!(listed(&done), newest_first);
    assert_eq!(done["activities"][0]["status"]["person_count"], 1);
}
