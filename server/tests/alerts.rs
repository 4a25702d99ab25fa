//! Alerts end to end: rules set through the server functions, runs on
//! the real server and the sandbox, and delivery to an SMTP sink and a
//! webhook receiver that these tests start on local ports.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fixtures::{call_json, two_exports};
use common::TestApp;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Mail the sink accepted: (recipients, message text).
type Inbox = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// A local SMTP server that accepts every message (no TLS, no auth).
async fn smtp_sink() -> (u16, Inbox) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox: Inbox = Arc::default();
    let kept = inbox.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let inbox = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut to = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        to.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                        b"250 OK\r\n"
                    } else if upper.starts_with("DATA") {
                        write.write_all(b"354 go on\r\n").await.unwrap();
                        let mut text = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            text.push_str(&l);
                            text.push('\n');
                        }
                        inbox.lock().unwrap().push((std::mem::take(&mut to), text));
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, inbox)
}

/// What the webhook receiver got: (headers, body).
type Hooks = Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>;

/// A local webhook receiver answering the statuses in `answers` in turn
/// (then 200).
async fn webhook_receiver(answers: Vec<u16>) -> (String, Hooks) {
    let hooks: Hooks = Arc::default();
    let answers = Arc::new(Mutex::new(answers));
    let kept = hooks.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let hooks = kept.clone();
            let answers = answers.clone();
            async move {
                hooks.lock().unwrap().push((headers, body));
                let mut a = answers.lock().unwrap();
                let code = if a.is_empty() { 200 } else { a.remove(0) };
                StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hooks)
}

/// One alerts round, retrying at once.
async fn tick(app: &TestApp) {
    let settings = engine::alerts::Settings {
        every: Duration::from_millis(10),
        retry_after_ms: 0,
        max_attempts: 3,
    };
    let key = server::secret_key(&server::Config::for_tests(&app.db.url, app.data_dir())).unwrap();
    engine::alerts::tick(&app.db.db, &engine::crypto::Cipher::new(&key), &settings)
        .await
        .unwrap();
}

async fn wait_for(app: &TestApp, client: &reqwest::Client, run: &Value) {
    let id = run.as_i64().unwrap().to_string();
    for _ in 0..600 {
        let d = call_json(app, client, "get_run", &[("id", &id), ("errors_page", "0")]).await;
        let s = d["run"]["status"].as_str().unwrap();
        if s != "queued" && s != "running" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {id} did not finish");
}

fn rule_form<'a>(emails: &'a str, webhook: &'a str, threshold: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("rule[on_failure]", "on"),
        ("rule[on_partial]", "on"),
        ("rule[partial_threshold_pct]", threshold),
        ("rule[on_reauth]", "on"),
        ("rule[on_quota]", "on"),
        ("rule[emails]", emails),
        ("rule[webhook_url]", webhook),
    ]
}

#[tokio::test]
async fn alerts_reach_email_and_webhook_once_and_failing_channels_are_retried() {
    let (app, _sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let (admins, carols) = two_exports(&app, &admin, &carol).await;
    let (smtp_port, inbox) = smtp_sink().await;
    // The receiver fails the first delivery: it is retried.
    let (hook_url, hooks) = webhook_receiver(vec![500]).await;

    // Mistakes are named, all at once.
    let (status, body) = app
        .call(
            &admin,
            "save_default_alert_rule",
            &rule_form("ops@, x", "ftp://nope", "250"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    for field in ["emails", "webhook_url", "partial_threshold_pct"] {
        assert!(body.contains(field), "{field}: {body}");
    }
    // Only administrators set the default; a contributor sets no webhook.
    let (status, _) = app
        .call(
            &carol,
            "save_default_alert_rule",
            &rule_form("a@example.com", "", "0"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    call_json(
        &app,
        &admin,
        "save_default_alert_rule",
        &rule_form("ops@example.com", &hook_url, "0"),
    )
    .await;
    let port = smtp_port.to_string();
    call_json(
        &app,
        &admin,
        "save_smtp_settings",
        &[
            ("smtp_host", "127.0.0.1"),
            ("smtp_port", &port),
            ("smtp_tls", "none"),
            ("smtp_username", ""),
            ("smtp_password", ""),
            ("smtp_from", "alerts@example.com"),
        ],
    )
    .await;
    let carols_id = carols.to_string();
    let mut form = rule_form("carol-team@example.com", &hook_url, "0");
    form.push(("export_id", &carols_id));
    let (status, body) = app.call(&carol, "save_export_alert_rule", &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.contains("Only an administrator can set a webhook"),
        "{body}"
    );
    let mut form = rule_form("carol-team@example.com", "", "0");
    form.push(("export_id", &carols_id));
    call_json(&app, &carol, "save_export_alert_rule", &form).await;

    // Both exports skip the demo data's invalid email: over a 0% threshold.
    for (who, id) in [(&admin, admins), (&carol, carols)] {
        let run = call_json(
            &app,
            who,
            "run_export",
            &[("id", &id.to_string()), ("mode", "incremental")],
        )
        .await;
        wait_for(&app, who, &run).await;
    }
    tick(&app).await;
    tick(&app).await;
    tick(&app).await;

    // Carol's export: its own rule, by email to her team only.
    let mail = inbox.lock().unwrap().clone();
    assert_eq!(mail.len(), 2, "{mail:?}");
    let to_team = mail
        .iter()
        .find(|(to, _)| to == &vec![String::from("carol-team@example.com")])
        .unwrap();
    assert!(to_team.1.contains("Carol's"), "{}", to_team.1);
    assert!(
        to_team.1.contains("Subject: [Segment Export] Export"),
        "{}",
        to_team.1
    );
    let to_ops = mail
        .iter()
        .find(|(to, _)| to == &vec![String::from("ops@example.com")])
        .unwrap();
    assert!(to_ops.1.contains("Admin's"), "{}", to_ops.1);

    // Admin's export: the default rule's webhook, refused once, then
    // delivered; signed with the secret the admin sees.
    let got = hooks.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one failure, one retry: {got:?}");
    let (headers, body) = &got[1];
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["event"], "run_partially_succeeded", "{event}");
    assert!(
        event["text"].as_str().unwrap().contains("Admin's"),
        "{event}"
    );
    let settings = call_json(&app, &admin, "get_alert_settings", &[]).await;
    let secret = settings["webhook_secret"].as_str().unwrap();
    let timestamp = headers["x-segment-export-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        headers["x-segment-export-signature"].to_str().unwrap(),
        format!("sha256={expected}")
    );

    // Recorded and visible, with each delivery's fate.
    let log = settings["alerts"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{settings}");
    let webhook = log
        .iter()
        .flat_map(|a| a["deliveries"].as_array().unwrap())
        .find(|d| d["channel"] == "webhook")
        .unwrap();
    assert_eq!(
        (&webhook["status"], &webhook["attempts"]),
        (&Value::from("sent"), &Value::from(2)),
        "{webhook}"
    );

    // Raised once: more rounds send nothing new.
    tick(&app).await;
    assert_eq!(inbox.lock().unwrap().len(), 2);
    assert_eq!(hooks.lock().unwrap().len(), 2);

    // A connection that needs signing in again, and a spent quota: to the
    // default rule's recipients.
    let connection: i64 = sqlx::query_scalar("SELECT id FROM connections")
        .fetch_one(app.db.db.pool())
        .await
        .unwrap();
    engine::connections::set_status(
        &app.db.db,
        engine::ConnectionId(connection),
        engine::connections::Status::NeedsReauthentication,
        Some("The refresh token was refused."),
    )
    .await
    .unwrap();
    engine::quota::record(&app.db.db, "https://api.example test-client", 0, true)
        .await
        .unwrap();
    tick(&app).await;
    let kinds: Vec<String> = hooks
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| {
            serde_json::from_str::<Value>(b).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        kinds.contains(&String::from("connection_needs_reauth")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&String::from("quota_exhausted")),
        "{kinds:?}"
    );
    let mail = inbox.lock().unwrap().clone();
    // (Quoted-printable: soft line breaks joined.)
    assert!(
        mail.iter().any(|(_, m)| m
            .replace("=\n", "")
            .contains("must sign in with Constant Contact again (Admin > Connections)")),
        "{mail:?}"
    );

    // A mail server that is gone: retried, then given up, and said so.
    call_json(
        &app,
        &admin,
        "save_smtp_settings",
        &[
            ("smtp_host", "127.0.0.1"),
            ("smtp_port", "1"),
            ("smtp_tls", "none"),
            ("smtp_username", ""),
            ("smtp_password", ""),
            ("smtp_from", "alerts@example.com"),
        ],
    )
    .await;
    let n = call_json(&app, &admin, "send_test_alert", &[]).await;
    assert_eq!(n, 2, "email and webhook");
    for _ in 0..3 {
        tick(&app).await;
    }
    let settings = call_json(&app, &admin, "get_alert_settings", &[]).await;
    let test = &settings["alerts"][0];
    assert_eq!(test["kind"], "test", "{test}");
    let email = test["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["channel"] == "email")
        .unwrap();
    assert_eq!(
        (&email["status"], &email["attempts"]),
        (&Value::from("failed"), &Value::from(3)),
        "{email}"
    );
    assert!(
        email["last_error"].as_str().unwrap().contains("SMTP"),
        "{email}"
    );
    let hook = test["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["channel"] == "webhook")
        .unwrap();
    assert_eq!(hook["status"], "sent", "{hook}");
}

#[tokio::test]
async fn a_run_that_fails_and_its_connection_each_alert_once_per_rule() {
    let (app, sb) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let (admins, carols) = two_exports(&app, &admin, &carol).await;
    let (hook_url, hooks) = webhook_receiver(Vec::new()).await;
    // Partial runs do not alert under a 100% threshold; failures do.
    call_json(
        &app,
        &admin,
        "save_default_alert_rule",
        &rule_form("", &hook_url, "100"),
    )
    .await;
    // Carol's export has its own rule (set by an admin, with a webhook):
    // its connection's trouble reaches it too.
    let carols_id = carols.to_string();
    let own_hook = format!("{hook_url}?export={carols}");
    let mut form = rule_form("", &own_hook, "100");
    form.push(("export_id", &carols_id));
    call_json(&app, &admin, "save_export_alert_rule", &form).await;

    // Constant Contact forgets every token: the run cannot succeed.
    let res = reqwest::Client::new()
        .post(format!("{}/_sandbox/tokens/revoke_all", sb.url()))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let run = call_json(
        &app,
        &admin,
        "run_export",
        &[("id", &admins.to_string()), ("mode", "incremental")],
    )
    .await;
    wait_for(&app, &admin, &run).await;
    let d = call_json(
        &app,
        &admin,
        "get_run",
        &[("id", &run.to_string()), ("errors_page", "0")],
    )
    .await;
    assert_eq!(d["run"]["status"], "failed", "{d}");

    tick(&app).await;
    tick(&app).await;
    let events: Vec<Value> = hooks
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "run_failed").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "connection_needs_reauth")
            .count(),
        2,
        "{kinds:?}"
    );
    let for_carol: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "connection_needs_reauth" && e["export_id"] == carols)
        .collect();
    assert_eq!(for_carol.len(), 1, "{events:?}");
    let failed = events.iter().find(|e| e["event"] == "run_failed").unwrap();
    assert_eq!(failed["run_id"], run, "{failed}");
    assert!(
        failed["text"].as_str().unwrap().contains("Admin's"),
        "{failed}"
    );
}

#[tokio::test]
async fn a_changed_secret_key_costs_the_smtp_password_but_not_the_alerts() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    call_json(
        &app,
        &admin,
        "save_smtp_settings",
        &[
            ("smtp_host", "127.0.0.1"),
            ("smtp_port", "2525"),
            ("smtp_tls", "none"),
            ("smtp_username", "alerts"),
            ("smtp_password", "smtp secret"),
            ("smtp_from", "alerts@example.com"),
        ],
    )
    .await;
    let before = call_json(&app, &admin, "get_alert_settings", &[]).await;
    assert_eq!(before["smtp_password_set"], true, "{before}");
    // The password never comes back to the page.
    assert!(!before.to_string().contains("smtp secret"));

    let dir = tempfile::tempdir().unwrap();
    let other_key =
        engine::secrets::SecretKey::load_or_create(&dir.path().join("other.key")).unwrap();
    let other = engine::crypto::Cipher::new(&other_key);
    let channels = engine::alerts::channels::get(&app.db.db, &other)
        .await
        .unwrap();
    assert!(channels.smtp_password.is_none());
    assert_eq!(channels.smtp_host, "127.0.0.1");
    assert_ne!(
        channels.webhook_secret.expose(),
        before["webhook_secret"].as_str().unwrap()
    );
    // And the new signing secret is kept.
    let again = engine::alerts::channels::get(&app.db.db, &other)
        .await
        .unwrap();
    assert_eq!(
        again.webhook_secret.expose(),
        channels.webhook_secret.expose()
    );
}
