//! What every benchmark sets up: databases, a CSV of profiles, and the
//! admin's browser session with a connection and an export.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{timed, Env, Timed};
use crate::target_dir;

/// Calls a server function and returns its JSON answer.
pub(super) fn call(
    http: &reqwest::blocking::Client,
    env: &Env,
    f: &str,
    form: &[(&str, &str)],
) -> Result<Value> {
    let res = http.post(env.url(&format!("/api/{f}"))).form(form).send()?;
    let status = res.status();
    let text = res.text()?;
    if !status.is_success() {
        bail!("{f}: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// Plays the admin's browser: first admin, connection through the
/// sandbox's sign-in page, a list, and the export. Returns the export id
/// and the signed-in client.
pub(super) fn set_up_export(env: &Env) -> Result<(i64, reqwest::blocking::Client)> {
    let http = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let pw = "bench password 1";
    call(
        &http,
        env,
        "create_first_admin",
        &[
            ("email", "bench@example.com"),
            ("password", pw),
            ("confirm_password", pw),
        ],
    )?;
    let url: String = serde_json::from_value(call(
        &http,
        env,
        "start_connect",
        &[
            ("display_name", "Bench"),
            ("usable_by", "admins"),
            ("agree", "on"),
        ],
    )?)?;
    let (base, query) = url.split_once('?').context("authorization URL")?;
    let mut form: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    form.extend([
        ("username".to_owned(), "demo@example.com".to_owned()),
        ("password".to_owned(), "demo-password".to_owned()),
        ("decision".to_owned(), "allow".to_owned()),
    ]);
    let consent = http.post(base).form(&form).send()?;
    let back = consent
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .context("no redirect from the consent page")?
        .to_owned();
    http.get(&back).send()?;
    call(&http, env, "add_export_user", &[])?;
    let connection = call(
        &http,
        env,
        "save_connection",
        &[("display_name", "Bench"), ("usable_by", "admins")],
    )?;
    let cid = connection["id"]
        .as_i64()
        .context("connection id")?
        .to_string();
    let list = call(
        &http,
        env,
        "create_connection_list",
        &[("connection_id", &cid), ("name", "Benchmark")],
    )?;
    let segments = call(
        &http,
        env,
        "list_segments",
        &[("search", "Everyone with an email")],
    )?;
    let segment = segments[0]["id"].as_i64().context("demo segment")?;
    let export = json!({
        "name": "Benchmark",
        "connection_id": cid.parse::<i64>()?,
        "list_id": list["list_id"],
        "mapping": [
            { "source": "email", "target": "email" },
            { "source": "first_name", "target": "first_name" },
            { "source": "last_name", "target": "last_name" }
        ],
        "segment_ids": [segment],
        "on_schedule": false,
        "remove_left": false,
        "removal_limit_pct": 20
    });
    let id = call(
        &http,
        env,
        "save_export",
        &[("export", &export.to_string())],
    )?;
    Ok((id.as_i64().context("export id")?, http))
}

/// A CSV of `n` profiles, written in a streaming way.
pub(super) fn write_csv(path: &Path, n: u64) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "id,email,first_name,last_name,country,lifetime_value")?;
    for i in 0..n {
        writeln!(
            w,
            "C{i:08},person{i}@example.com,First{i},Last{i},{},{}",
            ["HU", "DE", "AT", "US"][(i % 4) as usize],
            i % 5000
        )?;
    }
    w.flush()?;
    Ok(())
}

/// A new, empty database `name` on the PostgreSQL server of `url` (made
/// with `psql`); returns its URL.
pub(super) fn fresh_postgres(url: &str, name: &str) -> Result<String> {
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        let status = Command::new("psql")
            .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .status()
            .context("could not run psql (the PostgreSQL client)")?;
        if !status.success() {
            bail!("psql failed: {sql}");
        }
    }
    // The same server and user, the new database.
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let server = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    Ok(format!("{server}/{name}{query}"))
}

/// `profiles` demo profiles (seed 7) generated into the benchmark's
/// database by the server's `demo-data` command; returns how it went.
pub(super) fn generate_demo(env: &Env, profiles: u64) -> Result<Timed> {
    let mut demo = env.server();
    demo.args([
        "demo-data",
        "--profiles",
        &profiles.to_string(),
        "--seed",
        "7",
    ]);
    timed(demo, &format!("generating {profiles} demo profiles"))
}

/// Prints `report` and writes it to `target/bench/{name}.json`.
pub(super) fn write_report(name: &str, report: &Value) -> Result<()> {
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(&path, &text)?;
    println!("{text}");
    println!("written to {}", path.display());
    Ok(())
}
