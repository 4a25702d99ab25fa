//! Server rendering under load: every page a signed-in user can open,
//! requested many at a time, each answered in full. Pages have stalled
//! here before (one rebuilding itself for ever and taking the workers
//! with it; pages waiting for ever while another server in the process
//! started), so these tests fail on any response that does not finish.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fixtures::two_exports;
use common::TestApp;
use futures_util::stream::{self, StreamExt};
use reqwest::{Client, StatusCode};

/// Loads `path` and reads the whole body; a page that does not finish
/// within `limit` is an error naming it.
async fn load(app: &TestApp, client: &Client, path: &str, limit: Duration) -> Result<(), String> {
    let load = async {
        let res = app.page(client, path).await;
        let status = res.status();
        let body = res.text().await.map_err(|e| format!("{path}: {e}"))?;
        if status != StatusCode::OK && status != StatusCode::NOT_FOUND {
            return Err(format!("{path}: {status}"));
        }
        // A page in full: the document, then the script that hands its
        // data to the browser, closed by the one that says nothing is
        // left to stream.
        if !(body.contains("</html>") && body.ends_with("__INCOMPLETE_CHUNKS=[];</script>")) {
            let tail: String = body.chars().rev().take(200).collect();
            return Err(format!(
                "{path}: the page ended early: …{}",
                tail.chars().rev().collect::<String>()
            ));
        }
        Ok(())
    };
    tokio::time::timeout(limit, load)
        .await
        .map_err(|_| format!("{path}: no complete answer within {limit:?}"))?
}

/// Every page of the app with data behind it, as an admin sees it.
async fn every_page(app: &TestApp, admin: &Client, carol: &Client) -> Vec<String> {
    let (admins, carols) = two_exports(app, admin, carol).await;
    let segment = engine::segments::by_name(&app.db.db, "High value")
        .await
        .unwrap()
        .unwrap()
        .id;
    let mut pages: Vec<String> = [
        "/",
        "/admin/users",
        "/admin/connections",
        "/admin/connections/new",
        "/admin/connections/new/constant-contact",
        "/data/segments",
        "/data/segments/new",
        "/data/exports",
        "/data/exports/new",
        "/admin/system",
        "/admin/api-tokens",
        "/admin/audit",
        "/no/such/page",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    pages.push(format!("/data/segments/{segment}"));
    for id in [admins, carols] {
        pages.push(format!("/data/exports/{id}"));
        pages.push(format!("/data/exports/{id}/edit"));
    }
    pages
}

/// Many users at once, some leaving before their page is in: each of
/// about a thousand loads of every page finishes. With everything on one
/// thread, the order in which a page's data arrives is the one that once
/// made the audit log rebuild itself for ever (its filter's field errors
/// read the entries outside a `Suspend`, so the page's enclosing
/// `Suspend` rebuilt the page, and the entries, each time they loaded).
#[tokio::test]
async fn many_pages_at_once_all_finish_on_one_thread() {
    many_pages_at_once().await;
}

/// The same on two workers, where a page's tasks run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pages_at_once_all_finish_on_two_workers() {
    many_pages_at_once().await;
}

async fn many_pages_at_once() {
    let (app, _sandbox) = TestApp::spawn_with_sandbox(|_, _| {}).await;
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    let pages = every_page(&app, &admin, &carol).await;
    let app = Arc::new(app);
    let loads: Vec<String> = (0..40).flat_map(|_| pages.iter().cloned()).collect();
    let failures: Vec<String> = stream::iter(loads.into_iter().enumerate())
        .map(|(i, path)| {
            let (app, admin) = (app.clone(), admin.clone());
            async move {
                if i % 3 == 0 {
                    // A visitor who goes elsewhere before the page is in.
                    let wait = Duration::from_millis((i % 40) as u64);
                    let _ = tokio::time::timeout(wait, load(&app, &admin, &path, wait)).await;
                    return Ok(());
                }
                load(&app, &admin, &path, Duration::from_secs(20)).await
            }
        })
        .buffer_unordered(16)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A second server built in the same process (as the tests do, many at a
/// time) never leaves a page of the first one waiting: building the
/// route list once ran the whole app with resource loading switched off
/// for the whole process, and a page whose data was first asked for in
/// that moment waited for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_finish_while_other_servers_start() {
    let app = Arc::new(TestApp::spawn().await);
    let admin = app.setup_admin().await;
    engine::demo::generate(&app.db.db, 50, 3).await.unwrap();
    let builder = {
        let app = app.clone();
        tokio::spawn(async move {
            let dir = tempfile::tempdir().unwrap();
            for _ in 0..40 {
                let config = server::Config::for_tests(&app.db.url, dir.path().to_path_buf());
                let _ = server::router(&config, app.db.db.clone()).await.unwrap();
            }
        })
    };
    let pages = ["/", "/data/segments", "/data/exports", "/admin/audit"];
    let loads: Vec<&str> = (0..60).flat_map(|_| pages).collect();
    let failures: Vec<String> = stream::iter(loads)
        .map(|path| {
            let (app, admin) = (app.clone(), admin.clone());
            async move { load(&app, &admin, path, Duration::from_secs(20)).await }
        })
        .buffer_unordered(8)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    builder.await.unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
}
