//! `cargo xtask bench --faults [RUNS]`: full resends of one export under
//! issue 14's fault mix.

use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{generate_demo, round, set_up_export, start_sandbox, wait_for, write_report, Env};
use crate::KillOnDrop;

/// The fault mix of issue 14: a fifth of requests answered 500, a tenth
/// 503, a tenth dropped, a fifth 429, each delayed 200 ms.
fn fault_mix() -> Value {
    json!({ "p500": 0.2, "p503": 0.1, "drop": 0.1, "p429": 0.2, "latency_ms": 200 })
}

/// `--faults [RUNS]`: full resends of the same export, one after the
/// other, under [`fault_mix`]. Reports how many finished, how many
/// contacts Constant Contact got more than once within a run, and the
/// requests each contact cost; fails unless every run finished with the
/// list exact and nothing repeated.
pub(super) fn run_fault_bench(
    env: &Env,
    profiles: u64,
    runs: u32,
    sandbox_port: u16,
) -> Result<()> {
    generate_demo(env, profiles)?;
    let _sandbox = start_sandbox(env, sandbox_port)?;
    wait_for(&format!("{}/_sandbox/faults", env.sandbox_url))?;
    let _server = KillOnDrop(env.server().spawn().context("could not start the server")?);
    wait_for(&env.url("/health"))?;
    let (export, _http) = set_up_export(env)?;
    let export = export.to_string();
    let sandbox = reqwest::blocking::Client::new();
    let stats = || -> Result<Value> {
        Ok(sandbox
            .get(format!("{}/_sandbox/import_stats", env.sandbox_url))
            .send()?
            .json()?)
    };
    let res = sandbox
        .put(format!("{}/_sandbox/faults", env.sandbox_url))
        .json(&fault_mix())
        .send()?;
    if !res.status().is_success() {
        bail!("could not set the sandbox's faults: {}", res.status());
    }
    let (mut finished, mut repeated, mut sent_total, mut calls_total) = (0u32, 0u64, 0u64, 0u64);
    let mut seconds = Vec::new();
    let mut failures = Vec::new();
    // Contacts the last finished run put on the list.
    let mut expected = 0u64;
    for i in 1..=runs {
        let rows_before = stats()?["import_rows"].as_u64().unwrap_or(0);
        eprintln!("==> run {i} of {runs} (full resend, under faults)");
        let started = Instant::now();
        let out = env
            .server()
            .args(["export", "run", &export, "--full", "--json"])
            .stderr(Stdio::inherit())
            .output()
            .context("could not start the run")?;
        seconds.push(started.elapsed().as_secs_f64());
        // Only a finished run prints itself; one waiting to be resumed
        // (its faults outlasted every retry) says so on stderr.
        let run: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let status = run["status"]
            .as_str()
            .unwrap_or("waiting to resume")
            .to_owned();
        let sent = run["counts"]["sent"].as_u64().unwrap_or(0);
        let rows = stats()?["import_rows"].as_u64().unwrap_or(0) - rows_before;
        if out.status.success() && (status == "succeeded" || status == "partially_succeeded") {
            finished += 1;
            // Constant Contact took more rows than the run sent contacts.
            repeated += rows.saturating_sub(sent);
            sent_total += sent;
            calls_total += run["counts"]["api_calls"].as_u64().unwrap_or(0);
            expected = sent.saturating_sub(run["counts"]["unsubscribed"].as_u64().unwrap_or(0));
        } else {
            failures.push(format!(
                "run {i}: {status}: {}",
                run["message"].as_str().unwrap_or("")
            ));
            // A run waiting to be resumed holds the export: stop here.
            if run.is_null() {
                break;
            }
        }
    }
    let lists: Value = sandbox
        .get(format!("{}/_sandbox/lists", env.sandbox_url))
        .send()?
        .json()?;
    let on_list = lists["lists"][0]["members"].as_u64().unwrap_or(0);
    seconds.sort_by(f64::total_cmp);
    let report = json!({
        "profiles": profiles,
        "faults": fault_mix(),
        "runs": runs,
        "runs_finished": finished,
        "contacts_repeated": repeated,
        "requests_per_contact": (calls_total as f64 / sent_total.max(1) as f64 * 10_000.0).round() / 10_000.0,
        "requests_per_1000_contacts": round(calls_total as f64 * 1000.0 / sent_total.max(1) as f64),
        "contacts_sent": sent_total,
        "on_list": on_list,
        "seconds_median": round(seconds.get(seconds.len() / 2).copied().unwrap_or(0.0)),
        "seconds_max": round(seconds.last().copied().unwrap_or(0.0)),
        "failures": failures,
    });
    write_report("faults", &report)?;
    if finished != runs || repeated != 0 || on_list != expected {
        bail!(
            "under faults: {finished} of {runs} runs finished, {repeated} contacts repeated, \
             {on_list} on the list where {expected} belong"
        );
    }
    Ok(())
}
