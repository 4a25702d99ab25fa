//! `cargo xtask run|build|test`: the README's commands.
//!
//! xtask does what cargo-leptos does for a build, without the 15–20
//! minutes of installing it (see ../shared/TOOLCHAIN.md): the wasm bundle
//! (cargo, then wasm-bindgen through `wasm-bindgen-cli-support` at the
//! workspace's pinned version, then `wasm-opt` from npm's binaryen), the
//! CSS (Tailwind v4 CLI from npm), then the server. `cargo leptos watch`
//! keeps working from the `[[workspace.metadata.leptos]]` block.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const OUTPUT_NAME: &str = "segment-export";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

const USAGE: &str = "usage: cargo xtask <command>

commands:
  run           build everything (release) and serve http://127.0.0.1:3000
  build         build the site and the server (add --release for release)
  test          fmt, clippy, Rust tests on SQLite (and PostgreSQL when
                TEST_POSTGRES_URL is set), then Playwright in Chromium
  e2e           only the Playwright suite (builds first)
  setup         install what the build needs (wasm target, npm packages)
  bench [--profiles N] [--database postgres://…]
                the export benchmark against the sandbox (default 1,000,000
                profiles); writes target/bench/export.json
  bench --faults [RUNS]
                full resends under faults; writes target/bench/faults.json
  bench --http-users N [--seconds S]
                N signed-in users reloading pages while an export runs;
                p50/p95/p99 into target/bench/http.json";

mod bench;
mod site;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(),
        Some("build") => build(args.iter().any(|a| a == "--release")).map(|_| ()),
        Some("test") => test(),
        Some("e2e") => build(false).and_then(|server| end_to_end(&server)),
        Some("setup") => setup(),
        Some("bench") => bench::bench(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask's parent directory). `cargo run` sets
/// `CARGO_MANIFEST_DIR` at run time too, which stays right when a cached
/// xtask binary serves another checkout.
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

fn site_root() -> PathBuf {
    target_dir().join("site")
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo")));
    c.current_dir(root());
    c
}

fn npm_bin(name: &str) -> PathBuf {
    root().join("node_modules").join(".bin").join(name)
}

/// Runs a command, failing with its description if it fails.
fn step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("\n==> {what}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn setup() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the wasm32 target")?;
    if !String::from_utf8_lossy(&installed.stdout).contains(WASM_TARGET) {
        step(
            "adding the wasm32 target",
            Command::new("rustup").args(["target", "add", WASM_TARGET]),
        )?;
    }
    let needed = ["tailwindcss", "wasm-opt", "playwright"];
    if needed.iter().any(|b| !npm_bin(b).exists()) {
        step(
            "installing npm packages (Tailwind, binaryen, Playwright)",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(root()),
        )?;
    }
    Ok(())
}

/// Builds the wasm bundle and CSS into `target/site/pkg`, then the server.
/// Returns the server binary.
fn build(release: bool) -> Result<PathBuf> {
    setup()?;
    site::build_site()?;
    build_server(release)
}

fn build_server(release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    // The Constant Contact sandbox is built alongside: `run` starts it.
    cmd.args(["build", "--package", "server", "--package", "sandbox"]);
    if release {
        cmd.arg("--release");
    }
    step(
        "building the server and the Constant Contact sandbox",
        &mut cmd,
    )?;
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir().join(profile).join("server"))
}

/// Kills the child when dropped, so the sandbox never outlives `run`.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run() -> Result<()> {
    let server = build(true)?;
    let sandbox_bin = server.with_file_name("sandbox");
    let sandbox_port = std::env::var("SANDBOX_PORT").unwrap_or_else(|_| String::from("3030"));
    let _sandbox = KillOnDrop(
        Command::new(&sandbox_bin)
            .current_dir(root())
            .env("SANDBOX_PORT", &sandbox_port)
            .spawn()
            .context("could not start the Constant Contact sandbox")?,
    );
    eprintln!("\n==> Constant Contact sandbox on http://127.0.0.1:{sandbox_port} (sign in there as demo@example.com / demo-password)");
    eprintln!("==> serving on http://127.0.0.1:3000 (Ctrl-C stops)");
    // The app talks to the sandbox as its Constant Contact, with the
    // sandbox's demo client (unless the environment says otherwise).
    let mut cmd = Command::new(server);
    cmd.current_dir(root()).env("LEPTOS_SITE_ROOT", site_root());
    // A newcomer sees data: a small demo set on the first start.
    if std::env::var_os("DEMO_PROFILES_ON_EMPTY").is_none() {
        cmd.env("DEMO_PROFILES_ON_EMPTY", "2000");
    }
    if std::env::var_os("CC_CLIENT_ID").is_none() {
        cmd.env("CC_CLIENT_ID", "segment-export-demo")
            .env("CC_CLIENT_SECRET", "demo-client-secret")
            .env("CC_SANDBOX_URL", format!("http://127.0.0.1:{sandbox_port}"));
    }
    let status = cmd.status()?;
    if !status.success() {
        bail!("the server stopped with {status}");
    }
    Ok(())
}

fn test() -> Result<()> {
    setup()?;
    step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "clippy (server side)",
        cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]),
    )?;
    step(
        "clippy (browser side, wasm32)",
        cargo().args([
            "clippy",
            "--package",
            "frontend",
            "--target",
            WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step("Rust tests on SQLite", cargo().args(["test"]))?;
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            // The tests that touch the database, again on PostgreSQL.
            step(
                "engine database tests on PostgreSQL",
                cargo()
                    .args([
                        "test",
                        "--package",
                        "engine",
                        "--lib",
                        "--test",
                        "users",
                        "--test",
                        "connections",
                        "--test",
                        "profiles",
                        "--test",
                        "segments",
                        "--test",
                        "exports",
                        "--test",
                        "resume",
                        "--test",
                        "stops",
                    ])
                    .env("TEST_DATABASE", "postgres"),
            )?;
            step(
                "server tests on PostgreSQL",
                cargo()
                    .args(["test", "--package", "server"])
                    .env("TEST_DATABASE", "postgres"),
            )?;
        }
        _ => eprintln!("\n==> TEST_POSTGRES_URL is not set: PostgreSQL tests skipped"),
    }
    site::build_site()?;
    // `cargo test` above built the server binary (the server's own tests
    // run it), with the test run's feature set; building it again with
    // `cargo build` would recompile much of the tree for other features.
    let server = target_dir().join("debug").join("server");
    let server = if server.exists() {
        server
    } else {
        build_server(false)?
    };
    end_to_end(&server)
}

/// Playwright in Chromium against a freshly built server with an empty
/// database of its own.
fn end_to_end(server: &Path) -> Result<()> {
    let data = std::env::temp_dir().join(format!("segment-export-e2e-{}", std::process::id()));
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    std::fs::create_dir_all(&data)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let sandbox_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let results = root().join("end2end").join("test-results");
    let status = Command::new(npm_bin("playwright"))
        .current_dir(root().join("end2end"))
        .args(["test", "--config", "playwright.config.ts"])
        .env("BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("SERVER_BIN", server)
        .env("SERVER_PORT", port.to_string())
        .env("SERVER_DATA_DIR", &data)
        .env("SANDBOX_BIN", server.with_file_name("sandbox"))
        .env("SANDBOX_PORT", sandbox_port.to_string())
        .env("LEPTOS_SITE_ROOT", site_root())
        .status()
        .context("could not start Playwright")?;
    let _ = std::fs::remove_dir_all(&data);
    print_e2e_summary(&results.join("results.json"));
    if !status.success() {
        bail!("end-to-end tests failed");
    }
    Ok(())
}

/// Prints a plain `N passed, N failed` line from Playwright's JSON report.
fn print_e2e_summary(report: &Path) {
    let stats = std::fs::read_to_string(report)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("stats").cloned());
    let Some(stats) = stats else {
        eprintln!("end-to-end: no report found at {}", report.display());
        return;
    };
    let n = |k: &str| {
        stats
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let passed = n("expected") + n("flaky");
    let failed = n("unexpected");
    println!(
        "end-to-end: {passed} passed, {failed} failed, {} skipped",
        n("skipped")
    );
}
