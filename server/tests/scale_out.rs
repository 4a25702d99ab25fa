//! Scale-out: two server processes share one database (PostgreSQL with
//! `TEST_DATABASE=postgres`, else one SQLite file), several runs are
//! triggered, one process is killed while it waits for an import, and
//! every run still finishes with each contact sent exactly once. The
//! sandbox's per-contact import counter is the witness.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine::connections::{self, DisplayName, NewConnection, UsableBy};
use engine::constant_contact::{Secret, Tokens};
use engine::crypto::Cipher;
use engine::exports::{self, ExportInput, Mapping};
use engine::password::Password;
use engine::runs::{self, Mode, Status, Trigger};
use engine::secrets::SecretKey;
use engine::testing::TestDb;
use engine::users::{self, Email};
use serde_json::Value;

const CLIENT: &str = "segment-export-demo";
/// 64 zero bytes: the processes and the test seal tokens alike.
fn key() -> String {
    format!("{}==", "A".repeat(86))
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(db_url: &str, sandbox: &str, data: &std::path::Path) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .env("DATABASE_URL", db_url)
        .env("DATA_DIR", data)
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("SECRET_KEY", key())
        .env("CC_CLIENT_ID", CLIENT)
        .env("CC_CLIENT_SECRET", "demo-client-secret")
        .env("CC_SANDBOX_URL", sandbox)
        .env("WORKERS", "2")
        .env("RUN_LEASE_SECONDS", "2")
        .env("DEMO_PROFILES_ON_EMPTY", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

async fn sandbox_get(sb: &sandbox::Running, path: &str) -> Value {
    reqwest::get(format!("{}{path}", sb.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_runs_and_a_killed_ones_runs_finish_exactly_once() {
    let t = TestDb::new().await;
    let data = tempfile::tempdir().unwrap();
    let sb = sandbox::spawn(
        sandbox::Config {
            rate_per_second: 0,
            // Imports take a while: a process dies while one is waited for.
            processing_delay_ms: 1500,
            ..sandbox::Config::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();

    // The data: demo profiles, a connection with tokens the sandbox issued,
    // and four exports to four lists.
    engine::demo::generate(&t.db, 600, 3).await.unwrap();
    let admin = users::create_first_admin(
        &t.db,
        &Email::parse("root@example.com").unwrap(),
        &Password::parse("root password 1").unwrap(),
    )
    .await
    .unwrap();
    let cipher = Cipher::new(&SecretKey::from_base64(&key()).unwrap());
    let issued = sb.shared.lock().issue_tokens(
        CLIENT,
        0,
        &["contact_data".into(), "offline_access".into()],
        None,
    );
    let connection = connections::create(
        &t.db,
        &cipher,
        &admin,
        NewConnection {
            display_name: DisplayName::parse("Shared").unwrap(),
            usable_by: UsableBy::Admins,
            consent_at: engine::time::now_ms(),
            tokens: Tokens {
                access_token: Secret::new(issued["access_token"].as_str().unwrap()),
                refresh_token: Some(Secret::new(issued["refresh_token"].as_str().unwrap())),
                expires_at: engine::time::now_ms() + 86_400_000,
                scopes: vec!["contact_data".into(), "offline_access".into()],
            },
            export_user_id: admin.id,
        },
    )
    .await
    .unwrap();
    let segments = engine::segments::list(&t.db, "").await.unwrap();
    let app = engine::connect::CcApp {
        endpoints: engine::constant_contact::Endpoints::at(&sb.url()),
        client_id: CLIENT.into(),
        client_secret: Secret::new("demo-client-secret"),
        redirect_url: "http://127.0.0.1:3000/oauth/constant-contact/callback".into(),
    };
    let client = engine::connect::api_client(&t.db, &cipher, &app, connection.id)
        .await
        .unwrap();
    let mut export_ids = Vec::new();
    for (i, segment) in segments.iter().take(4).enumerate() {
        let list = client
            .create_list(&format!("List {i}"), None)
            .await
            .unwrap();
        let e = exports::create(
            &t.db,
            &admin,
            &ExportInput {
                name: format!("Export {i}"),
                connection_id: connection.id,
                list_id: list.list_id,
                list_name: list.name,
                mapping: vec![Mapping {
                    source: "email".into(),
                    target: "email".into(),
                }],
                segment_ids: vec![segment.id],
                on_schedule: true,
                remove_left: false,
                removal_limit_pct: 20,
            },
        )
        .await
        .unwrap();
        export_ids.push(e.id);
    }

    let a = start_server(&t.url, &sb.url(), &data.path().join("a"));
    let b = start_server(&t.url, &sb.url(), &data.path().join("b"));
    let a_pid = a.0.id();
    let mut run_ids = Vec::new();
    for id in &export_ids {
        run_ids.push(
            runs::trigger(&t.db, *id, Trigger::Manual, Mode::Incremental, Some(&admin))
                .await
                .unwrap()
                .id,
        );
    }

    // Kill A while one of its runs waits for an import it sent, and none
    // is in the instant between sending a batch and recording its activity
    // (a batch lost in that instant is sent again: the documented limit).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = |state: &'static str| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM runs r JOIN run_batches b ON b.run_id = r.id \
                 WHERE r.status = 'running' AND r.worker LIKE $1 AND b.state = $2",
            )
            .bind(format!("%-{a_pid}-%"))
            .bind(state)
            .fetch_one(t.db.pool())
        };
        let (sent, sending) = (
            count("sent").await.unwrap(),
            count("sending").await.unwrap(),
        );
        if sent > 0 && sending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "process A never took a run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(a);

    // B finishes everything, A's runs after their leases run out.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')")
                .fetch_one(t.db.pool())
                .await
                .unwrap();
        if active == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "runs did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);

    let mut sent = 0;
    let mut resumed = 0;
    for id in &run_ids {
        let run = runs::get(&t.db, *id).await.unwrap().unwrap();
        assert_eq!(run.status, Status::Succeeded, "run {id}: {:?}", run.message);
        assert!(run.counts.sent > 0);
        sent += run.counts.sent;
        resumed += usize::from(run.attempts > 1);
    }
    assert!(resumed >= 1, "a run of the killed process was resumed");
    let stats = sandbox_get(&sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["import_rows"].as_u64().unwrap(), sent, "{stats}");
    // Contacts in several segments went to several lists, once per list.
    let lists = sandbox_get(&sb, "/_sandbox/lists").await;
    let on_lists: u64 = lists["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["members"].as_u64().unwrap())
        .sum();
    assert_eq!(on_lists, sent);
}
