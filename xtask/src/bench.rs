//! `cargo xtask bench [--profiles N] [--database postgres://…] [--faults [RUNS]]
//! [--http-users USERS [--seconds S]]`: the export benchmark (on SQLite, or
//! on fresh databases of the PostgreSQL server that URL names). With
//! `--faults`, instead: RUNS (20) full resends under issue 14's fault mix
//! (see [`run_fault_bench`]). With `--http-users`, instead: the page
//! rendering load test (see [`http`]).
//!
//! Builds the release server and sandbox, generates N demo profiles into a
//! fresh SQLite database, connects to the sandbox (rate limit on) through
//! its sign-in page like a browser would, saves an export of the
//! "Everyone with an email" segment, then times, each as its own `server
//! export` process:
//! - the floor: a dry run (stream, map, validate, hash and serialise every
//!   row into import batches, no network writes);
//! - the full export, with the process's peak RSS;
//! - a re-run with nothing changed.
//!
//! The full export can be no faster than the floor, nor than the requests
//! it must make at Constant Contact's pace (an import per 40,000
//! contacts, under 4 a second); its ratio is taken to the larger.
//!
//! It also times a CSV import of N rows (issue 5's target). Results are
//! printed and written to `target/bench/export.json`; at 1,000,000
//! profiles the targets are checked and a miss fails the command.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{build_server, root, target_dir, KillOnDrop};

mod faults;
mod http;
mod setup;

use faults::run_fault_bench;
use setup::{call, fresh_postgres, generate_demo, set_up_export, write_csv, write_report};

const CLIENT: &str = "segment-export-demo";
const SECRET: &str = "demo-client-secret";

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Env {
    server: PathBuf,
    data: PathBuf,
    db_url: String,
    /// The CSV import's database.
    import_url: String,
    port: u16,
    sandbox_url: String,
}

impl Env {
    fn server(&self) -> Command {
        let mut c = Command::new(&self.server);
        c.current_dir(root())
            .env("DATABASE_URL", &self.db_url)
            .env("DATA_DIR", &self.data)
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{}", self.port))
            .env("LEPTOS_SITE_ROOT", target_dir().join("site"))
            .env("CC_CLIENT_ID", CLIENT)
            .env("CC_CLIENT_SECRET", SECRET)
            .env("CC_SANDBOX_URL", &self.sandbox_url)
            .env(
                "CC_REDIRECT_URL",
                format!(
                    "http://127.0.0.1:{}/oauth/constant-contact/callback",
                    self.port
                ),
            )
            .env("WORKERS", "0")
            .env("DEMO_PROFILES_ON_EMPTY", "0")
            .env("RUST_LOG", "warn,sqlx=error,engine::run=info");
        c
    }

    /// The server for one step of the benchmark; with `BENCH_PERF=FILE`,
    /// the step named by `BENCH_PERF_STEP` (`full` unless set: `floor`,
    /// `full` or `rerun`) runs under `perf record`.
    fn step(&self, name: &str) -> Command {
        let profiled = std::env::var("BENCH_PERF_STEP").unwrap_or_else(|_| "full".into()) == name;
        match std::env::var("BENCH_PERF") {
            Ok(out) if profiled => {
                let mut c = Command::new("perf");
                c.args(["record", "-g", "-F", "999", "-o", &out, "--"])
                    .arg(&self.server)
                    .current_dir(root());
                for (k, v) in self.server().get_envs() {
                    if let Some(v) = v {
                        c.env(k, v);
                    }
                }
                c
            }
            _ => self.server(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Peak resident set size of a running process, in MB (VmHWM).
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) a running process has used, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // utime and stime are fields 14 and 15, in clock ticks (100 a second).
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// What a timed command came to.
struct Timed {
    stdout: String,
    seconds: f64,
    peak_rss_mb: f64,
    /// CPU seconds, as last seen before it ended.
    cpu_seconds: f64,
}

/// Runs a command to the end; returns its stdout, the seconds it took,
/// its peak RSS and its CPU time.
fn timed(mut cmd: Command, what: &str) -> Result<Timed> {
    eprintln!("==> {what}");
    let started = Instant::now();
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {what}"))?;
    let pid = child.id();
    let mut peak: f64 = 0.0;
    let mut cpu: f64 = 0.0;
    loop {
        if let Some(mb) = peak_rss_mb(pid) {
            peak = peak.max(mb);
        }
        if let Some(c) = cpu_seconds(pid) {
            cpu = cpu.max(c);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{what} failed ({})", out.status);
    }
    Ok(Timed {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        seconds,
        peak_rss_mb: peak,
        cpu_seconds: cpu,
    })
}

fn wait_for(url: &str) -> Result<()> {
    for _ in 0..300 {
        if reqwest::blocking::get(url).is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not come up")
}

pub fn bench(args: &[String]) -> Result<()> {
    let faults = args.iter().any(|a| a == "--faults");
    let number = |flag: &str| -> Result<Option<u64>> {
        match args.iter().position(|a| a == flag) {
            Some(i) => Ok(Some(
                args.get(i + 1)
                    .and_then(|n| n.replace(['_', ','], "").parse().ok())
                    .with_context(|| format!("{flag} needs a number"))?,
            )),
            None => Ok(None),
        }
    };
    let http_users = number("--http-users")?;
    let http_seconds = number("--seconds")?.unwrap_or(30);
    let profiles: u64 = match args.iter().position(|a| a == "--profiles") {
        Some(i) => args
            .get(i + 1)
            .context("--profiles needs a number")?
            .replace(['_', ','], "")
            .parse()
            .context("--profiles needs a number")?,
        // Under faults every request may be slowed and retried.
        None if faults => 100_000,
        // Enough for an export to be running throughout the load test.
        None if http_users.is_some() => 100_000,
        None => 1_000_000,
    };
    let database = match args.iter().position(|a| a == "--database") {
        Some(i) => Some(args.get(i + 1).context("--database needs a URL")?.clone()),
        None => None,
    };
    let server = build_server(true)?;
    let work = std::env::temp_dir().join(format!("segment-export-bench-{}", std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let port = free_port()?;
    let sandbox_port = free_port()?;
    let (db_url, import_url) = match &database {
        None => (
            format!("sqlite://{}", work.join("bench.db").display()),
            format!("sqlite://{}", work.join("import.db").display()),
        ),
        Some(url) if url.starts_with("postgres") => (
            fresh_postgres(url, "segment_export_bench")?,
            fresh_postgres(url, "segment_export_bench_import")?,
        ),
        Some(other) => bail!("--database takes a postgres:// URL, not {other}"),
    };
    let env = Env {
        server: server.clone(),
        data: work.clone(),
        db_url,
        import_url,
        port,
        sandbox_url: format!("http://127.0.0.1:{sandbox_port}"),
    };
    let result = match args.iter().position(|a| a == "--faults") {
        None if http_users.is_some() => http::run(
            &env,
            profiles,
            http_users.unwrap_or(50) as usize,
            http_seconds,
            sandbox_port,
        ),
        Some(i) => {
            let runs = match args.get(i + 1).filter(|a| !a.starts_with("--")) {
                Some(n) => n.parse().context("--faults takes a number of runs")?,
                None => 20,
            };
            run_fault_bench(&env, profiles, runs, sandbox_port)
        }
        None => run_bench(&env, profiles, sandbox_port),
    };
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run_bench(env: &Env, profiles: u64, sandbox_port: u16) -> Result<()> {
    // The CSV import, into a database of its own.
    let csv = env.data.join("profiles.csv");
    write_csv(&csv, profiles)?;
    let mut import = env.server();
    import
        .env("DATABASE_URL", &env.import_url)
        .args(["import", "profiles"])
        .arg(&csv)
        .args(["--id-column", "id"]);
    let import = timed(import, &format!("importing a CSV of {profiles} profiles"))?;

    let generate = generate_demo(env, profiles)?;

    let sandbox = start_sandbox(env, sandbox_port)?;
    let sandbox_cpu = || cpu_seconds(sandbox.0.id()).unwrap_or(0.0);
    wait_for(&format!("{}/_sandbox/faults", env.sandbox_url))?;
    let mut serve = env.server();
    let server = KillOnDrop(serve.spawn().context("could not start the server")?);
    wait_for(&env.url("/health"))?;
    let (export, http) = set_up_export(env)?;
    let export = export.to_string();

    let mut floor = env.step("floor");
    floor.args(["export", "dry-run", &export, "--json"]);
    let floor = timed(floor, "floor: stream, map and serialise (dry run)")?;
    let plan: Value = serde_json::from_str(floor.stdout.trim())?;

    let mut full = env.step("full");
    full.args(["export", "run", &export, "--json"]);
    let sandbox_before = sandbox_cpu();
    let full = timed(full, "full export")?;
    let full_sandbox_cpu = sandbox_cpu() - sandbox_before;
    let full_run: Value = serde_json::from_str(full.stdout.trim())?;

    let mut rerun = env.step("rerun");
    rerun.args(["export", "run", &export, "--json"]);
    let rerun = timed(rerun, "re-run with nothing changed")?;
    let rerun_run: Value = serde_json::from_str(rerun.stdout.trim())?;

    // The same CSV uploaded through the browser's endpoint, to the running
    // server: the body is streamed to disk, so its memory stays flat.
    eprintln!("==> uploading the CSV of {profiles} profiles over HTTP");
    let rss_before_upload = peak_rss_mb(server.0.id()).unwrap_or(0.0);
    let started = Instant::now();
    let res = http
        .post(env.url("/data/import/profiles?id_column=id"))
        .header("content-type", "text/csv")
        .body(reqwest::blocking::Body::new(std::fs::File::open(&csv)?))
        .timeout(Duration::from_secs(600))
        .send()?;
    let upload_seconds = started.elapsed().as_secs_f64();
    let upload_status = res.status();
    let upload_report: Value = res.json()?;
    if !upload_status.is_success() {
        bail!("the upload failed: {upload_status} {upload_report}");
    }
    let upload_rss = peak_rss_mb(server.0.id()).unwrap_or(0.0);
    let (import_seconds, import_rss) = (import.seconds, import.peak_rss_mb);
    let (floor_seconds, full_seconds, full_rss) = (floor.seconds, full.seconds, full.peak_rss_mb);
    let rerun_seconds = rerun.seconds;

    let sent = full_run["counts"]["sent"].as_u64().unwrap_or(0);
    // The requests a full export cannot do without (one read of the
    // unsubscribed contacts, an import a batch, one poll) at Constant
    // Contact's pace: the floor the network sets.
    let batches = full_run["counts"]["batches"].as_u64().unwrap_or(0);
    let pace_requests = batches + 2;
    let pace_seconds = pace_requests as f64 * REQUEST_INTERVAL_S;
    let bound = floor_seconds.max(pace_seconds);
    let members: Value =
        reqwest::blocking::get(format!("{}/_sandbox/lists", env.sandbox_url))?.json()?;
    let on_list = members["lists"][0]["members"].as_u64().unwrap_or(0);
    let report = json!({
        "profiles": profiles,
        "database": if env.db_url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" },
        "full": {
            "seconds": round(full_seconds),
            "sent": sent,
            "peak_rss_mb": round(full_rss),
            "contacts_per_second": (sent as f64 / full_seconds).round(),
            "api_calls": full_run["counts"]["api_calls"],
            "status": full_run["status"],
            "on_list": on_list,
            "cpu_seconds": round(full.cpu_seconds),
            "sandbox_cpu_seconds": round(full_sandbox_cpu),
        },
        "rerun": {
            "seconds": round(rerun_seconds),
            "sent": rerun_run["counts"]["sent"],
            "unchanged": rerun_run["counts"]["unchanged"],
            "peak_rss_mb": round(rerun.peak_rss_mb),
        },
        "floor": {
            "seconds": round(floor_seconds),
            "planned": plan["counts"]["adds"],
            "cpu_seconds": round(floor.cpu_seconds),
            "peak_rss_mb": round(floor.peak_rss_mb),
        },
        "ratio_to_floor": round(full_seconds / floor_seconds.max(0.001)),
        "pace": {
            "requests": pace_requests,
            "seconds": round(pace_seconds),
        },
        "ratio_to_bound": round(full_seconds / bound.max(0.001)),
        "import": {
            "rows": profiles,
            "seconds": round(import_seconds),
            "peak_rss_mb": round(import_rss),
        },
        "upload": {
            "rows": upload_report["rows"],
            "imported": upload_report["imported"],
            "seconds": round(upload_seconds),
            "server_peak_rss_mb_before": round(rss_before_upload),
            "server_peak_rss_mb_after": round(upload_rss),
        },
        "generate": { "seconds": round(generate.seconds) },
    });
    write_report("export", &report)?;

    let mut misses = Vec::new();
    if profiles >= 1_000_000 {
        let rerun_sent = rerun_run["counts"]["sent"].as_u64().unwrap_or(u64::MAX);
        for (ok, what) in [
            (
                full_seconds <= 60.0,
                format!("full export {full_seconds:.1} s (target ≤ 60 s)"),
            ),
            (
                full_seconds <= 2.0 * bound,
                format!(
                    "full export {:.2}× the floor ({floor_seconds:.1} s) and {:.2}× the request pace's \
                     ({pace_requests} requests, {pace_seconds:.1} s) (target ≤ 2× the larger)",
                    full_seconds / floor_seconds,
                    full_seconds / pace_seconds.max(0.001),
                ),
            ),
            (
                full_rss <= 256.0,
                format!("peak RSS {full_rss:.0} MB (target ≤ 256 MB)"),
            ),
            (
                rerun_seconds <= 10.0,
                format!("re-run {rerun_seconds:.1} s (target ≤ 10 s)"),
            ),
            (
                rerun_sent == 0,
                format!("re-run sent {rerun_sent} (target 0)"),
            ),
            (
                import_seconds <= 60.0,
                format!("CSV import {import_seconds:.1} s (target ≤ 60 s)"),
            ),
            (
                upload_rss <= 256.0,
                format!("server peak RSS {upload_rss:.0} MB after the upload (target ≤ 256 MB)"),
            ),
        ] {
            println!("{} {what}", if ok { "met " } else { "MISS" });
            if !ok {
                misses.push(what);
            }
        }
    }
    if sent == 0 || on_list != sent {
        bail!("the export sent {sent} contacts but the list has {on_list}");
    }
    if !misses.is_empty() {
        bail!("benchmark targets missed: {}", misses.join("; "));
    }
    Ok(())
}

/// The sandbox the server is registered with, on `port`.
fn start_sandbox(env: &Env, port: u16) -> Result<KillOnDrop> {
    Ok(KillOnDrop(
        Command::new(env.server.with_file_name("sandbox"))
            .env("SANDBOX_PORT", port.to_string())
            .env(
                "SANDBOX_CLIENTS",
                format!(
                    "{CLIENT}:{SECRET}:http://127.0.0.1:{}/oauth/constant-contact/callback",
                    env.port
                ),
            )
            .env("RUST_LOG", "warn")
            .spawn()
            .context("could not start the sandbox")?,
    ))
}

/// Seconds between Constant Contact requests: the engine's
/// `constant_contact::MIN_INTERVAL` (under 4 a second).
const REQUEST_INTERVAL_S: f64 = 0.26;

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
