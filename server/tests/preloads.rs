//! A page opened directly starts fetching the wasm modules it needs while
//! its head is read, so that the browser has them beside the main bundle
//! rather than after it: on every load, each of the page's modules once,
//! and no other page's. They are fetched with `fetch()` and compiled at
//! once (`__wasm_early`; the start-up script takes the main module with
//! `__wasm_take`), never linked with `<link rel="preload">`, which keeps
//! Chromium from using the compiled code it cached for them. (A test
//! binary of its own: Leptos reads the split manifest once per process,
//! from the first server's site.)
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;

use common::TestApp;
use futures_util::stream::{self, StreamExt};

/// Each lazily loaded page's group (its module, in `lib.rs`) and a path
/// that opens it.
const PAGES: &[(&str, &str)] = &[
    ("daily_pages", "/"),
    ("admin_pages", "/admin/users"),
    ("admin_pages", "/admin/connections"),
    ("admin_pages", "/admin/connections/new"),
    ("admin_pages", "/admin/connections/new/constant-contact"),
    ("daily_pages", "/data/segments"),
    ("daily_pages", "/data/segments/new"),
    ("daily_pages", "/data/exports"),
    ("daily_pages", "/data/exports/new"),
    ("admin_pages", "/admin/system"),
    ("admin_pages", "/admin/api-tokens"),
    ("admin_pages", "/admin/audit"),
];

/// A split manifest as the site build writes it: each group's module and
/// the chunks it imports, one of them shared by both.
fn manifest() -> BTreeMap<String, Vec<String>> {
    ["daily_pages", "admin_pages"]
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let modules = vec![
                String::from("chunk_0.0000000000000000"),
                format!("chunk_{}.{:016x}", i + 1, i + 1),
                format!("split_{group}_5001850821522190575.{:016x}", 100 + i),
            ];
            (format!("{group}_5001850821522190575"), modules)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_direct_load_links_its_pages_modules_once() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("pkg")).unwrap();
    let manifest = manifest();
    std::fs::write(
        site.path().join("pkg").join("__wasm_split_manifest.json"),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    let root = site.path().to_str().unwrap().to_owned();
    let (app, _sandbox) = TestApp::spawn_with_sandbox(|config, _| config.site_root = root).await;
    let admin = app.setup_admin().await;

    let loads: Vec<(&str, &str)> = PAGES
        .iter()
        .copied()
        .cycle()
        .take(PAGES.len() * 20)
        .collect();
    let failures: Vec<String> = stream::iter(loads)
        .map(|(group, path)| {
            let (app, admin, manifest) = (&app, &admin, &manifest);
            async move {
                let body = app.page(admin, path).await.text().await.unwrap();
                let head = body.split("</head>").next().unwrap_or_default();
                let mut wrong = Vec::new();
                for (page, modules) in manifest {
                    let own = page.starts_with(&format!("{group}_"));
                    for module in modules.iter().filter(|m| own || !m.starts_with("chunk_0.")) {
                        let fetch = format!("__wasm_early?.(\"/pkg/{module}.wasm\")");
                        let linked = head.matches(&fetch).count();
                        if linked != usize::from(own) {
                            wrong.push(format!("{path}: {module} fetched early {linked} times"));
                        }
                    }
                }
                let loader = head
                    .split("<link")
                    .filter(|tag| {
                        let tag = tag.split('>').next().unwrap_or_default();
                        tag.contains("modulepreload") && tag.contains("/pkg/__wasm_split.")
                    })
                    .count();
                if loader != 1 {
                    wrong.push(format!("{path}: the split loader linked {loader} times"));
                }
                let main = head
                    .matches("__wasm_early(\"/pkg/segment-export.wasm\")")
                    .count();
                if main != 1 {
                    wrong.push(format!(
                        "{path}: the main module fetched early {main} times"
                    ));
                }
                // The start-up script instantiates the module compiled
                // early, rather than fetching it again.
                if !head
                    .contains("init({ module_or_path: __wasm_take(\"/pkg/segment-export.wasm\") })")
                {
                    wrong.push(format!(
                        "{path}: the start-up script does not take the early module"
                    ));
                }
                if head.split("<link").any(|tag| {
                    let tag = tag.split('>').next().unwrap_or_default();
                    tag.contains("preload") && tag.contains(".wasm")
                }) {
                    wrong.push(format!("{path}: a wasm module linked for preloading"));
                }
                wrong
            }
        })
        .buffer_unordered(8)
        .flat_map(stream::iter)
        .collect()
        .await;
    assert!(failures.is_empty(), "{failures:#?}");

    // The sign-in page is in the main bundle: nothing else to fetch.
    let body = app
        .page(&app.client(), "/login")
        .await
        .text()
        .await
        .unwrap();
    assert!(!body.contains("/pkg/chunk_") && !body.contains("/pkg/split_"));
}
