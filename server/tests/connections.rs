//! Admin > Connections over HTTP: the real server, the Constant Contact
//! sandbox, and a browser played by a cookie-keeping client.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;

use common::{add_connection, callback, consent, plain, start, TestApp};
use reqwest::{Client, StatusCode};
use serde_json::Value;

async fn draft(app: &TestApp, admin: &Client) -> Value {
    let (status, body) = app.call(admin, "get_connection_draft", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn connection_count(app: &TestApp) -> usize {
    engine::connections::list(&app.db.db).await.unwrap().len()
}

#[tokio::test]
async fn an_admin_adds_an_authorized_connection_through_the_sign_in_page() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let url = start(&app, &admin, "Newsletter").await;
    let q: HashMap<String, String> =
        form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(q["scope"], "contact_data offline_access");
    assert_eq!(q["code_challenge_method"], "S256");
    let back = consent(&url, "allow").await;
    assert_eq!(
        callback(&admin, &back).await,
        "/admin/connections/new/constant-contact"
    );

    // The form's values survived the round trip; the tokens wait, sealed,
    // in the session.
    assert_no_token_in_clear(&app);
    let d = draft(&app, &admin).await;
    assert_eq!(
        (
            d["display_name"].as_str(),
            d["usable_by"].as_str(),
            d["authorized"].as_bool()
        ),
        (
            Some("Newsletter"),
            Some("admins_and_contributors"),
            Some(true)
        )
    );
    assert_eq!(
        connection_count(&app).await,
        0,
        "nothing is saved before Save"
    );

    // Save wants the export user first.
    let (status, body) = app
        .call(
            &admin,
            "save_connection",
            &[
                ("display_name", "Newsletter"),
                ("usable_by", "admins_and_contributors"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("export_user"));
    app.call(&admin, "add_export_user", &[]).await;
    let (status, body) = app
        .call(
            &admin,
            "save_connection",
            &[
                ("display_name", "Newsletter"),
                ("usable_by", "admins_and_contributors"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let saved: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(saved["status"], "authorized");
    assert_eq!(saved["export_user"], "admin@example.com");
    let (_, page) = app.call(&admin, "list_connections", &[]).await;
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["connections"][0]["display_name"], "Newsletter");
    assert_eq!(
        draft(&app, &admin).await["authorized"],
        false,
        "the draft is gone after Save"
    );
    assert_no_token_in_clear(&app);
}

/// Sandbox tokens start `sbx_at_` / `sbx_rt_`: neither may appear in the
/// database file (connections, sessions, anything), WAL included.
fn assert_no_token_in_clear(app: &TestApp) {
    let Some(path) = app.db.url.strip_prefix("sqlite://") else {
        return;
    };
    let mut bytes = std::fs::read(path).unwrap();
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains("sbx_at_") && !text.contains("sbx_rt_"),
        "a token is stored in clear"
    );
}

#[tokio::test]
async fn connect_needs_agreement_a_valid_unique_name_and_an_admin() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let (status, body) = app
        .call(
            &admin,
            "start_connect",
            &[("display_name", "Newsletter"), ("usable_by", "admins")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("\"agree\""), "{body}");
    let (status, body) = app
        .call(
            &admin,
            "start_connect",
            &[
                ("display_name", "   "),
                ("usable_by", "admins"),
                ("agree", "on"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("display_name"), "{body}");
    add_connection(&app, &admin, "Newsletter").await;
    let (status, body) = app
        .call(
            &admin,
            "start_connect",
            &[
                ("display_name", "NEWSLETTER"),
                ("usable_by", "admins"),
                ("agree", "on"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("already exists"), "{body}");
}

#[tokio::test]
async fn every_failed_round_trip_says_why_and_leaves_nothing_behind() {
    let (app, sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;

    // Denied at Constant Contact.
    let back = consent(&start(&app, &admin, "Denied").await, "deny").await;
    assert_eq!(
        callback(&admin, &back).await,
        "/admin/connections/new/constant-contact"
    );
    let d = draft(&app, &admin).await;
    assert!(
        d["error"].as_str().unwrap().contains("Access was denied"),
        "{d}"
    );
    assert_eq!(d["authorized"], false);

    // A forged state: refused, and the sign-in in progress is left as it
    // was (a forged link must not be able to spoil an admin's draft).
    let back = consent(&start(&app, &admin, "Forged").await, "allow").await;
    let forged = back.replace("state=", "state=forged");
    assert_eq!(callback(&admin, &forged).await, "/admin/connections");
    let (_, page) = app.call(&admin, "list_connections", &[]).await;
    assert!(page.contains("could not be verified"), "{page}");
    let d = draft(&app, &admin).await;
    assert!(d["error"].is_null(), "{d}");
    assert_eq!(d["authorized"], false);

    // The genuine answer still completes it; the state is single-use.
    callback(&admin, &back).await;
    assert_eq!(draft(&app, &admin).await["authorized"], true);
    assert_eq!(callback(&admin, &back).await, "/admin/connections");
    assert_eq!(draft(&app, &admin).await["authorized"], true);

    // A replayed code with a fresh state.
    let first = consent(&start(&app, &admin, "Replay").await, "allow").await;
    callback(&admin, &first).await;
    assert_eq!(draft(&app, &admin).await["authorized"], true);
    let fresh = start(&app, &admin, "Replay").await;
    let state: String = form_urlencoded::parse(fresh.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let code: String = form_urlencoded::parse(first.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let replay = format!(
        "{}?code={code}&state={state}",
        first.split_once('?').unwrap().0
    );
    callback(&admin, &replay).await;
    let d = draft(&app, &admin).await;
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains("did not accept the authorization code"),
        "{d}"
    );
    assert_eq!(d["authorized"], false);

    // A callback in another session (someone else's browser) is refused.
    let other = app.client();
    app.call(
        &other,
        "sign_in",
        &[
            ("email", "admin@example.com"),
            ("password", common::ADMIN_PW),
        ],
    )
    .await;
    let url = start(&app, &admin, "Elsewhere").await;
    let back = consent(&url, "allow").await;
    callback(&other, &back).await;
    let (_, page) = app.call(&other, "list_connections", &[]).await;
    assert!(
        page.contains("no sign-in with Constant Contact in progress"),
        "{page}"
    );

    // An anonymous callback goes to sign-in.
    let res = app.client().get(&back).send().await.unwrap();
    assert_eq!(res.headers()["location"], "/login");

    assert_eq!(connection_count(&app).await, 0);
    drop(sb);
}

#[tokio::test]
async fn a_token_endpoint_failure_is_reported_on_the_form() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|config, _| {
        config.cc_client_secret = Some(String::from("wrong secret"))
    })
    .await;
    let admin = app.setup_admin().await;
    let back = consent(&start(&app, &admin, "Newsletter").await, "allow").await;
    callback(&admin, &back).await;
    let d = draft(&app, &admin).await;
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains("The tokens could not be obtained"),
        "{d}"
    );
    assert_eq!(connection_count(&app).await, 0);
}

#[tokio::test]
async fn test_refreshes_an_expired_token_and_a_refused_refresh_needs_reauthentication() {
    let (app, sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let id = add_connection(&app, &admin, "Newsletter").await["id"]
        .as_i64()
        .unwrap()
        .to_string();
    plain()
        .post(format!("{}/v3/contact_lists", sb.url()))
        .send()
        .await
        .unwrap();
    let (status, body) = app.call(&admin, "test_connection", &[("id", &id)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("0 lists"), "{body}");

    let cipher_tokens = |app: &TestApp| {
        let db = app.db.db.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT access_token_enc FROM connections")
                .fetch_one(db.pool())
                .await
                .unwrap()
        }
    };
    let before = cipher_tokens(&app).await;
    plain()
        .post(format!("{}/_sandbox/tokens/expire_access", sb.url()))
        .send()
        .await
        .unwrap();
    let (status, body) = app.call(&admin, "test_connection", &[("id", &id)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(
        before,
        cipher_tokens(&app).await,
        "refreshed tokens are stored"
    );
    // And the stored (rotated) refresh token is the one that works next time.
    plain()
        .post(format!("{}/_sandbox/tokens/expire_access", sb.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.call(&admin, "test_connection", &[("id", &id)]).await.0,
        StatusCode::OK
    );

    plain()
        .post(format!("{}/_sandbox/tokens/revoke_all", sb.url()))
        .send()
        .await
        .unwrap();
    let (status, body) = app.call(&admin, "test_connection", &[("id", &id)]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("re-authenticated"), "{body}");
    let (_, page) = app.call(&admin, "list_connections", &[]).await;
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["connections"][0]["status"], "needs_reauth");

    // Re-authenticate: the same flow, and the connection is authorized again.
    let (status, body) = app
        .call(&admin, "reauthenticate_connection", &[("id", &id)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url: String = serde_json::from_str(&body).unwrap();
    let back = consent(&url, "allow").await;
    assert_eq!(callback(&admin, &back).await, "/admin/connections");
    let (_, page) = app.call(&admin, "list_connections", &[]).await;
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["connections"][0]["status"], "authorized");
    assert!(page["notice"]
        .as_str()
        .unwrap()
        .contains("re-authenticated"));
}

#[tokio::test]
async fn removing_revokes_the_tokens_at_constant_contact_and_deletes_them_here() {
    let (app, sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let id = add_connection(&app, &admin, "Newsletter").await["id"]
        .as_i64()
        .unwrap();
    let cipher_key =
        server::secret_key(&server::Config::for_tests(&app.db.url, app.data_dir())).unwrap();
    let tokens = engine::connections::tokens(
        &app.db.db,
        &engine::crypto::Cipher::new(&cipher_key),
        engine::ConnectionId(id),
    )
    .await
    .unwrap();
    let (status, body) = app
        .call(&admin, "remove_connection", &[("id", &id.to_string())])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("revoked"), "{body}");
    assert_eq!(connection_count(&app).await, 0);
    let res = plain()
        .get(format!("{}/v3/contact_lists", sb.url()))
        .bearer_auth(tokens.access_token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the access token was revoked"
    );
    let log = engine::audit::recent(&app.db.db, 5).await.unwrap();
    assert_eq!(log[0].action, "connection.remove");
}

#[tokio::test]
async fn every_connections_function_checks_the_callers_role() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let viewer = app.user(&admin, "viewer@example.com", "viewer").await;
    let contributor = app
        .user(&admin, "contributor@example.com", "contributor")
        .await;
    let anonymous = app.client();
    let id = add_connection(&app, &admin, "Shared").await["id"]
        .as_i64()
        .unwrap()
        .to_string();

    // (function, form, lowest role: 2 contributor, 3 admin)
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let functions: Vec<(&str, Form, u8)> = vec![
        ("list_connections", vec![], 3),
        ("usable_connections", vec![], 2),
        ("get_connection_draft", vec![], 3),
        (
            "start_connect",
            vec![
                ("display_name", "Other"),
                ("usable_by", "admins"),
                ("agree", "on"),
            ],
            3,
        ),
        ("add_export_user", vec![], 3),
        (
            "save_connection",
            vec![("display_name", "Other"), ("usable_by", "admins")],
            3,
        ),
        ("cancel_connection", vec![], 3),
        (
            "update_connection",
            vec![
                ("id", &id),
                ("display_name", "Shared"),
                ("usable_by", "admins_and_contributors"),
            ],
            3,
        ),
        ("reauthenticate_connection", vec![("id", &id)], 3),
        ("test_connection", vec![("id", &id)], 3),
    ];
    common::assert_role_matrix(
        &app,
        &common::Callers {
            anonymous: &anonymous,
            viewer: &viewer,
            contributor: &contributor,
            admin: &admin,
        },
        &functions,
    )
    .await;
    // Contributors see the shared connection by name and type only.
    let (_, body) = app.call(&contributor, "usable_connections", &[]).await;
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        list,
        serde_json::json!([{ "id": id.parse::<i64>().unwrap(), "kind": "Constant Contact", "display_name": "Shared" }])
    );
    for (client, who) in [
        (&anonymous, "anonymous"),
        (&viewer, "viewer"),
        (&contributor, "contributor"),
    ] {
        let (status, _) = app.call(client, "remove_connection", &[("id", &id)]).await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
            "remove_connection as {who}"
        );
    }
    assert_eq!(
        app.call(&admin, "remove_connection", &[("id", &id)])
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn clients_finding_the_tokens_expired_at_once_refresh_them_once() {
    // Rotating refresh tokens: a second refresh with the same one would be
    // refused as if the connection had lost its authorization.
    let (app, sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let id = add_connection(&app, &admin, "Marketing").await["id"]
        .as_i64()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        plain()
            .post(format!("{}/_sandbox/tokens/expire_access", sb.url()))
            .send()
            .await
            .unwrap();
        let form = [("id", id.as_str())];
        let calls = (0..4).map(|_| app.call(&admin, "test_connection", &form));
        for (status, body) in futures_util::future::join_all(calls).await {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let (_, page) = app.call(&admin, "list_connections", &[]).await;
    assert!(!page.contains("needs_reauthentication"), "{page}");
}
