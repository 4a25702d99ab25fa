//! The `server` binary's command line, run as a user would run it.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::Write;
use std::process::{Command, Stdio};

use engine::testing::TestDb;

fn create_user(
    db_url: &str,
    data: &std::path::Path,
    email: &str,
    role: &str,
    password: &str,
) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["user", "create", "--email", email, "--role", role])
        .env("DATABASE_URL", db_url)
        .env("DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn user_create_makes_the_first_admin_then_other_users() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let out = create_user(
        &t.url,
        dir.path(),
        "viewer@example.com",
        "viewer",
        "viewer password",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("the first user must be created with --role admin"));

    let out = create_user(
        &t.url,
        dir.path(),
        "Root@Example.com",
        "admin",
        "root password 1",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Created root@example.com (admin)."
    );
    assert!(!engine::users::needs_setup(&t.db).await.unwrap());

    let out = create_user(
        &t.url,
        dir.path(),
        "viewer@example.com",
        "viewer",
        "viewer password",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = create_user(&t.url, dir.path(), "short@example.com", "viewer", "short");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10 characters"));

    let users = engine::users::list_users(&t.db).await.unwrap();
    assert_eq!(users.len(), 2);
    engine::users::authenticate(
        &t.db,
        "root@example.com",
        &engine::password::Password::unchecked("root password 1"),
        "127.0.0.1",
    )
    .await
    .unwrap();
}

#[test]
fn help_lists_every_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "DATABASE_URL",
        "DATA_DIR",
        "LEPTOS_SITE_ADDR",
        "LEPTOS_SITE_ROOT",
        "SECRET_KEY",
        "SESSION_INACTIVITY_MINUTES",
        "SECURE_COOKIES",
        "RUST_LOG",
        "CC_CLIENT_ID",
        "CC_CLIENT_SECRET",
        "CC_REDIRECT_URL",
        "CC_SANDBOX_URL",
        "DEMO_PROFILES_ON_EMPTY",
    ] {
        assert!(help.contains(var), "--help does not mention {var}:\n{help}");
    }
}

#[test]
fn a_broken_database_url_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("migrate")
        .env("DATABASE_URL", "mysql://nope")
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("DATABASE_URL must start with sqlite: or postgres:"));
}

#[tokio::test]
async fn import_profiles_reports_what_it_did_line_by_line() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "customer_id,email\nc1,ann@example.com\nc2\n,x@example.com\nc3,cy@example.com\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["import", "profiles"])
        .arg(&file)
        .args(["--id-column", "customer_id"])
        .env("DATABASE_URL", &t.url)
        .env("DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Imported 2 of 4 rows"), "{stdout}");
    assert!(
        stdout.contains("line 3: expected 2 columns, found 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 4: the profile id (customer_id) is empty"),
        "{stdout}"
    );
    assert_eq!(engine::profiles::count(&t.db).await.unwrap(), 2);

    let missing = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["import", "profiles", "/no/such/file.csv"])
        .env("DATABASE_URL", &t.url)
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("could not open /no/such/file.csv"));
}

#[tokio::test]
async fn demo_data_and_static_segment_import_work_from_the_command_line() {
    let t = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_server"))
            .args(args)
            .env("DATABASE_URL", &t.url)
            .env("DATA_DIR", dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&["demo-data", "--profiles", "300", "--seed", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(engine::profiles::count(&t.db).await.unwrap(), 300);
    assert_eq!(engine::segments::list(&t.db, "").await.unwrap().len(), 5);

    let file = dir.path().join("vips.csv");
    std::fs::write(&file, "id\nP0000001\nP0000002\nnobody\n").unwrap();
    let out = run(&["import", "segment", "VIPs", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Segment VIPs now has 2 members."),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 ids are not profiles and were skipped: nobody"),
        "{stdout}"
    );
}
