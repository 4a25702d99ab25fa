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
    start_server_with(db_url, sandbox, data, 2, 2)
}

fn start_server_with(
    db_url: &str,
    sandbox: &str,
    data: &std::path::Path,
    lease_seconds: u32,
    workers: u32,
) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .env("DATABASE_URL", db_url)
        .env("DATA_DIR", data)
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("SECRET_KEY", key())
        .env("CC_CLIENT_ID", CLIENT)
        .env("CC_CLIENT_SECRET", "demo-client-secret")
        .env("CC_SANDBOX_URL", sandbox)
        .env("WORKERS", workers.to_string())
        .env("RUN_LEASE_SECONDS", lease_seconds.to_string())
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

/// What the tests share: a database with demo profiles, a sandbox, a
/// connection with tokens the sandbox issued, and `exports` exports to as
/// many lists.
struct Setup {
    t: TestDb,
    data: tempfile::TempDir,
    sb: sandbox::Running,
    admin: users::User,
    export_ids: Vec<engine::ExportId>,
}

async fn setup(processing_delay_ms: u64, exports: usize) -> Setup {
    let t = TestDb::new().await;
    let data = tempfile::tempdir().unwrap();
    let sb = sandbox::spawn(
        sandbox::Config {
            rate_per_second: 0,
            processing_delay_ms,
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
    for (i, segment) in segments.iter().take(exports).enumerate() {
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

    Setup {
        t,
        data,
        sb,
        admin,
        export_ids,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_runs_and_a_killed_ones_runs_finish_exactly_once() {
    // Imports take a while: a process dies while one is waited for.
    let Setup {
        t,
        data,
        sb,
        admin,
        export_ids,
    } = setup(1500, 4).await;
    let a = start_server(&t.url, &sb.url(), &data.path().join("a"));
    let b = start_server(&t.url, &sb.url(), &data.path().join("b"));
    let a_pid = a.0.id();
    let mut run_ids = Vec::new();
    for id in &export_ids {
        run_ids.push(run_now(&t, *id, &admin).await.id);
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
        assert!(
            matches!(run.status, Status::Succeeded | Status::PartiallySucceeded),
            "run {id}: {:?}",
            run.message
        );
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

/// Sends `signal` (`TERM`, `STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// Waits until the run has an import at Constant Contact that its worker
/// waits for (and none between its send and its record).
/// `admin` presses Run now on `export` (an incremental run).
async fn run_now(t: &TestDb, export: engine::ExportId, admin: &users::User) -> runs::Run {
    runs::trigger(
        &t.db,
        export,
        Trigger::Manual,
        Mode::Incremental,
        Some(admin),
    )
    .await
    .unwrap()
}

async fn wait_for_an_import(t: &TestDb, run_id: engine::RunId) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = |state: &'static str| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM run_batches WHERE run_id = $1 AND state = $2",
            )
            .bind(run_id)
            .bind(state)
            .fetch_one(t.db.pool())
        };
        if count("sent").await.unwrap() > 0 && count("sending").await.unwrap() == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the run never sent an import");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_for_the_end(t: &TestDb, run_id: engine::RunId, within: Duration) -> runs::Run {
    let deadline = Instant::now() + within;
    loop {
        let run = runs::get(&t.db, run_id).await.unwrap().unwrap();
        if !matches!(run.status, Status::Queued | Status::Running) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not finish within {within:?}: {:?}",
            run.message
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_process_gives_its_run_up_and_another_takes_it_over_at_once() {
    let Setup {
        t,
        data,
        sb,
        admin,
        export_ids,
    } = setup(1500, 1).await;
    // Leases of a minute: a process that died without giving its run up
    // would hold it that long.
    let mut a = start_server_with(&t.url, &sb.url(), &data.path().join("a"), 60, 1);
    let run = run_now(&t, export_ids[0], &admin).await;
    wait_for_an_import(&t, run.id).await;
    signal(a.0.id(), "TERM");
    // It stops at its next safe point, well within its lease.
    let stopped = Instant::now();
    loop {
        if a.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "SIGTERM did not stop the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = runs::get(&t.db, run.id).await.unwrap().unwrap();
    assert_eq!(left.status, Status::Running, "{:?}", left.message);
    // Another process takes it at once, not after the minute.
    let taken_over = Instant::now();
    let _b = start_server_with(&t.url, &sb.url(), &data.path().join("b"), 60, 1);
    let done = wait_for_the_end(&t, run.id, Duration::from_secs(45)).await;
    assert!(taken_over.elapsed() < Duration::from_secs(45));
    assert!(
        matches!(done.status, Status::Succeeded | Status::PartiallySucceeded),
        "{:?}",
        done.message
    );
    assert_eq!(done.attempts, 2);
    let stats = sandbox_get(&sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
    assert_eq!(
        stats["import_rows"].as_u64().unwrap(),
        done.counts.sent,
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_process_that_wakes_up_after_losing_its_run_writes_nothing() {
    let Setup {
        t,
        data,
        sb,
        admin,
        export_ids,
    } = setup(1500, 1).await;
    let a = start_server_with(&t.url, &sb.url(), &data.path().join("a"), 2, 1);
    let run = run_now(&t, export_ids[0], &admin).await;
    wait_for_an_import(&t, run.id).await;
    signal(a.0.id(), "STOP");
    // B takes the run over once A's lease has run out, and finishes it.
    let b = start_server_with(&t.url, &sb.url(), &data.path().join("b"), 2, 1);
    let done = wait_for_the_end(&t, run.id, Duration::from_secs(60)).await;
    assert!(
        matches!(done.status, Status::Succeeded | Status::PartiallySucceeded),
        "{:?}",
        done.message
    );
    assert_eq!(done.attempts, 2);
    drop(b);
    let batches = || async {
        sqlx::query_as::<_, (i64, String, Option<String>)>(
            "SELECT seq, state, outcome FROM run_batches WHERE run_id = $1 ORDER BY seq",
        )
        .bind(run.id)
        .fetch_all(t.db.pool())
        .await
        .unwrap()
    };
    let before = (
        batches().await,
        runs::get(&t.db, run.id).await.unwrap().unwrap(),
    );
    // A wakes up, believing it still holds the run.
    signal(a.0.id(), "CONT");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = (
        batches().await,
        runs::get(&t.db, run.id).await.unwrap().unwrap(),
    );
    assert_eq!(before, after, "the woken process wrote to the run");
    let stats = sandbox_get(&sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
    assert_eq!(
        stats["import_rows"].as_u64().unwrap(),
        done.counts.sent,
        "{stats}"
    );
    drop(a);
}

/// A process runs exports on threads of their own, which the system runs
/// after the threads serving pages (a run is throughput work; pages are
/// waited for): the run still finishes.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_runs_exports_on_threads_of_a_lower_priority_than_its_pages() {
    let Setup {
        t,
        data,
        sb,
        admin,
        export_ids,
    } = setup(0, 1).await;
    let server = start_server_with(&t.url, &sb.url(), &data.path().join("a"), 60, 1);
    let run = run_now(&t, export_ids[0], &admin).await;
    let done = wait_for_the_end(&t, run.id, Duration::from_secs(60)).await;
    assert!(
        matches!(done.status, Status::Succeeded | Status::PartiallySucceeded),
        "{:?}",
        done.message
    );
    assert!(done.counts.sent > 0);

    let threads = threads_of(server.0.id());
    let nice_of = |prefix: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, nice)| *nice)
            .collect()
    };
    let (runs, pages) = (nice_of("export-runs"), nice_of("tokio-rt"));
    assert!(!runs.is_empty(), "no export threads: {threads:?}");
    assert!(!pages.is_empty(), "no page threads: {threads:?}");
    // The process starts at this test's priority (0 unless it was started
    // under `nice`); its export threads are 10, never raised above it.
    let own = nice_of_task(std::path::Path::new("/proc/self"));
    assert!(pages.iter().all(|&n| n == own), "{threads:?}");
    assert!(runs.iter().all(|&n| n == own.max(10)), "{threads:?}");
}

/// Each thread of process `pid`: its name and its nice value.
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> Vec<(String, i64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let path = task.unwrap().path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap();
            (name.trim().to_owned(), nice_of_task(&path))
        })
        .collect()
}

/// The nice value in `/proc/.../stat` (the 19th field; the name, the 2nd,
/// is in parentheses and may hold spaces).
#[cfg(target_os = "linux")]
fn nice_of_task(path: &std::path::Path) -> i64 {
    let stat = std::fs::read_to_string(path.join("stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    after_name
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap()
}
