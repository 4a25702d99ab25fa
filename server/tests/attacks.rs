//! The attack suite: each attack of the security review (issue 13),
//! replayed against the real server, asserting the safe outcome. Each one
//! got through on the main branch before the fixes.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{add_connection, TestApp, USER_PW};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const XSS_NAME: &str = "</title><script>window.__xss=1</script>";

async fn call_json(app: &TestApp, client: &Client, f: &str, form: &[(&str, &str)]) -> Value {
    let (status, body) = app.call(client, f, form).await;
    assert_eq!(status, StatusCode::OK, "{f}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn rule(field: &str, conditions: usize) -> String {
    let one = json!({ "field": field, "op": "is_set", "value": "" });
    json!({ "match": "all", "conditions": vec![one; conditions] }).to_string()
}

/// A client whose requests carry `headers` (an attacker's browser).
fn client_with(headers: &[(&'static str, String)]) -> Client {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(map)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_segment_name_with_markup_is_text_in_the_page_title() {
    let app = TestApp::spawn().await;
    engine::demo::generate(&app.db.db, 20, 1).await.unwrap();
    let admin = app.setup_admin().await;
    let segment = call_json(
        &app,
        &admin,
        "create_segment",
        &[
            ("name", XSS_NAME),
            ("description", ""),
            ("rule", &rule("email", 1)),
        ],
    )
    .await;
    let page = app
        .page(&admin, &format!("/data/segments/{}", segment["id"]))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>window.__xss"), "{html}");
    let title = &html[html.find("<title>").unwrap()..html.find("</title>").unwrap()];
    assert!(title.contains("&lt;/title&gt;&lt;script&gt;"), "{title}");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_pages_a_script_nonce() {
    let app = TestApp::spawn().await;
    let page = app.page(&app.client(), "/login").await;
    let h = page.headers().clone();
    let html = page.text().await.unwrap();
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("'unsafe-inline'") || !csp.contains("script-src 'unsafe-inline'"));
    assert!(html.contains(&format!("nonce=\"{nonce}\"")), "{html}");
    // Every inline script carries the nonce.
    for script in html.split("<script").skip(1) {
        let tag = &script[..script.find('>').unwrap()];
        assert!(
            tag.contains("src=") || tag.contains(&format!("nonce=\"{nonce}\"")),
            "{tag}"
        );
    }
    for headers in [
        h,
        app.client()
            .post(app.url("/api/get_session"))
            .send()
            .await
            .unwrap()
            .headers()
            .clone(),
    ] {
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "same-origin");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(headers.contains_key("content-security-policy"));
    }
    // Another response's nonce is another.
    let again = app.page(&app.client(), "/login").await;
    assert_ne!(again.headers()["content-security-policy"], csp.as_str());
}

#[tokio::test]
async fn a_dns_rebinding_page_cannot_claim_the_first_admin() {
    let app = TestApp::spawn().await;
    let port = app.addr.port();
    let form = [
        ("email", "mallory@example.com"),
        ("password", "mallory password"),
        ("confirm_password", "mallory password"),
    ];
    // The attacker's name resolves to us: Origin and Host agree, and both
    // are the attacker's.
    let rebound = client_with(&[
        ("origin", format!("http://evil.example:{port}")),
        ("host", format!("evil.example:{port}")),
        ("sec-fetch-site", String::from("same-origin")),
    ]);
    let (status, _) = app.call(&rebound, "create_first_admin", &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A browser's write that names no origin at all.
    let anonymous = client_with(&[("sec-fetch-site", String::from("cross-site"))]);
    let (status, _) = app.call(&anonymous, "create_first_admin", &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A foreign Referer.
    let referred = client_with(&[("referer", String::from("http://evil.example/page"))]);
    let (status, _) = app.call(&referred, "create_first_admin", &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(engine::users::needs_setup(&app.db.db).await.unwrap());
    // Our own page may.
    let ours = client_with(&[
        ("origin", format!("http://{}", app.addr)),
        ("sec-fetch-site", String::from("same-origin")),
    ]);
    let (status, body) = app.call(&ours, "create_first_admin", &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_burst_of_sign_ins_is_rate_limited_and_checks_at_most_five_passwords() {
    let app = TestApp::spawn().await;
    app.setup_admin().await;
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let (c, url) = (app.client(), app.url("/api/sign_in"));
        tasks.push(tokio::spawn(async move {
            let res = c
                .post(url)
                .form(&[
                    ("email", "admin@example.com"),
                    ("password", "wrong password"),
                ])
                .send()
                .await
                .unwrap();
            let status = res.status();
            let retry = res.headers().contains_key("retry-after");
            (status, retry, res.text().await.unwrap())
        }));
    }
    let (mut limited, mut checked, mut locked) = (0, 0, 0);
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(
                    retry && body.contains("Too many sign-in attempts"),
                    "{body}"
                );
                limited += 1;
            }
            StatusCode::CONFLICT if body.contains("not correct") => checked += 1,
            StatusCode::CONFLICT if body.contains("Too many failed") => locked += 1,
            other => panic!("{other}: {body}"),
        }
    }
    assert!(limited >= 40, "{limited} rate-limited");
    assert!(checked <= 5, "{checked} passwords checked");
    assert_eq!(limited + checked + locked, 60);
}

#[tokio::test]
async fn a_deactivated_users_old_cookie_stays_dead_after_reactivation() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let vic = app.user(&admin, "vic@example.com", "viewer").await;
    let id = app.user_id("vic@example.com").await.to_string();
    assert_eq!(app.call(&vic, "list_exports", &[]).await.0, StatusCode::OK);
    for active in ["false", "true"] {
        let (status, body) = app
            .call(
                &admin,
                "set_user_active",
                &[("user_id", &id), ("active", active)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = app.call(&vic, "list_exports", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Signing in again works.
    let (status, _) = app
        .call(
            &vic,
            "sign_in",
            &[("email", "vic@example.com"), ("password", USER_PW)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.call(&vic, "list_exports", &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn malformed_arguments_get_400_and_a_viewer_cancelling_gets_403() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let viewer = app.user(&admin, "vic@example.com", "viewer").await;
    for (f, form) in [
        ("get_export", vec![("id", "not-a-number")]),
        ("get_export", vec![]),
        (
            "set_user_active",
            vec![("user_id", "1"), ("active", "maybe")],
        ),
    ] {
        let (status, body) = app.call(&admin, f, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{f}: {body}");
    }
    let (status, _) = app.call(&viewer, "cancel_run", &[("id", "1")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn oversized_input_is_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    // A rule of 14,000 conditions.
    let (status, body) = app
        .call(&admin, "preview_rule", &[("rule", &rule("email", 14_000))])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .call(&admin, "preview_rule", &[("rule", &rule("email", 51))])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("at most 50 conditions"), "{body}");
    // A profile file of 100,000 columns, and one line of 2 MiB.
    let wide: String = (0..100_000).map(|i| format!("c{i},")).collect::<String>() + "id\n";
    let long = format!("id,note\n1,{}\n", "x".repeat(2 * 1024 * 1024));
    for (csv, reason) in [(wide, "at most 1000"), (long, "longer than 1 MiB")] {
        let res = admin
            .post(app.url("/data/import/profiles?id_column=id"))
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = res.text().await.unwrap();
        assert!(body.contains(reason), "{body}");
    }
    assert_eq!(
        reqwest::get(app.url("/health")).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn contributors_cannot_change_what_an_admins_export_sends_and_changes_are_audited() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    engine::demo::generate(&app.db.db, 50, 3).await.unwrap();
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let connection = add_connection(&app, &admin, "Marketing").await["id"]
        .as_i64()
        .unwrap();
    let cid = connection.to_string();
    let list = call_json(
        &app,
        &admin,
        "create_connection_list",
        &[("connection_id", &cid), ("name", "Customers")],
    )
    .await;
    // A rule segment and a static one, both read by the admin's export.
    let rule_segment = call_json(
        &app,
        &carol,
        "create_segment",
        &[
            ("name", "Has email"),
            ("description", ""),
            ("rule", &rule("email", 1)),
        ],
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let ids = engine::profiles::count(&app.db.db).await.unwrap();
    assert!(ids > 0);
    let upload = |client: &Client, body: &'static str| {
        client
            .post(app.url("/data/import/segment?name=VIPs&file=vips.csv"))
            .body(body)
            .send()
    };
    let res = upload(&carol, "id\nnope\n").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let vips: Value = res.json().await.unwrap();
    let export = json!({
        "name": "Admins' newsletter",
        "connection_id": connection,
        "list_id": list["list_id"],
        "mapping": [{ "source": "email", "target": "email" }],
        "segment_ids": [rule_segment, vips["id"]],
        "on_schedule": false,
        "remove_left": false,
        "removal_limit_pct": 20
    })
    .to_string();
    call_json(&app, &admin, "save_export", &[("export", &export)]).await;

    let sid = rule_segment.to_string();
    let change = [
        ("id", sid.as_str()),
        ("name", "Has email"),
        ("description", ""),
        ("rule", &rule("first_name", 1)),
    ];
    let (status, _) = app.call(&carol, "update_segment", &change).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.call(&carol, "refresh_segment", &[("id", &sid)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let res = upload(&carol, "id\nsomeone-else\n").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let detail = call_json(&app, &carol, "get_segment", &[("id", &sid)]).await;
    assert_eq!(detail["can_manage"], false);
    // The admin may, and every change is in the audit log.
    call_json(&app, &admin, "update_segment", &change).await;
    assert_eq!(
        upload(&admin, "id\nx\n").await.unwrap().status(),
        StatusCode::OK
    );
    let actions: Vec<String> = engine::audit::recent(&app.db.db, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.actor_email.unwrap_or_default(), e.action))
        .collect();
    for expected in [
        "carol@example.com segment.create",
        "carol@example.com segment.import_static",
        "admin@example.com segment.update",
        "admin@example.com segment.replace_members",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected}: {actions:?}"
        );
    }
}

#[tokio::test]
async fn a_forged_oauth_callback_leaves_the_admins_draft_alone() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let url = common::start(&app, &admin, "Marketing").await;
    // The attacker lures the admin to a callback of their own making.
    let forged = app.url("/oauth/constant-contact/callback?state=bogus&code=attackers");
    let res = admin.get(&forged).send().await.unwrap();
    assert_eq!(res.headers()["location"], "/admin/connections");
    // The real answer still completes the sign-in.
    let back = common::consent(&url, "allow").await;
    assert_eq!(
        common::callback(&admin, &back).await,
        "/admin/connections/new/constant-contact"
    );
    let draft = call_json(&app, &admin, "get_connection_draft", &[]).await;
    assert_eq!(draft["authorized"], true, "{draft}");
}
