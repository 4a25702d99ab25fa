//! How runs stop and go on: refused batches and the daily quota resume
//! later, one token refresh per connection, leases fenced and given up,
//! workers that keep dying, the quota counted in the database, frugal
//! polling, and the heavy fault mix. On SQLite, or PostgreSQL with
//! `TEST_DATABASE=postgres`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;

#[tokio::test]
async fn a_batch_constant_contact_keeps_refusing_is_resumed_later_and_nothing_is_lost_or_repeated()
{
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 1_000,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    // Two imports are accepted, every later one is refused with a 500,
    // round after round of retries.
    sandbox_put(
        &w.sb,
        "/_sandbox/faults",
        json!({ "fail_imports_after": 2 }),
    )
    .await;
    let waiting = w.run(export.id, Mode::Incremental).await;
    assert_eq!(waiting.status, Status::Queued, "{:?}", waiting.message);
    let message = waiting.message.clone().unwrap();
    assert!(message.contains("Resumes at"), "{message}");
    assert!(
        message.contains("20 contacts were sent so far"),
        "{message}"
    );
    assert_eq!(waiting.counts.sent, 20);
    assert!(waiting.not_before.unwrap() > engine::time::now_ms());
    // Not before its time.
    assert!(worker::drain(&w.ex).await.unwrap().is_empty());
    // Constant Contact is well again; the run resumes where it stopped.
    sandbox_put(&w.sb, "/_sandbox/faults", json!({})).await;
    time_passes(&w, waiting.id).await;
    assert_eq!(worker::drain(&w.ex).await.unwrap(), vec![waiting.id]);
    let done = runs::get(&w.t.db, waiting.id).await.unwrap().unwrap();
    assert_eq!(
        done.status,
        Status::PartiallySucceeded,
        "{:?}",
        done.message
    );
    assert_eq!(done.counts.sent, 40);
    assert_resumed_counts(&done.counts);
    assert_eq!(done.resumes, 1);
    assert_eq!(w.members().await.len(), 40);
    let stats = sandbox_get(&w.sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
    assert_eq!(stats["import_rows"], 40, "{stats}");
}

#[tokio::test]
async fn a_run_that_uses_up_the_daily_quota_waits_for_the_next_day_and_resumes() {
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 5,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    // A few requests left today: enough to send, not to see it through.
    let used = sandbox_get(&w.sb, "/_sandbox/requests").await["requests"]
        .as_array()
        .unwrap()
        .len();
    let quota = |n: usize| {
        let sb = &w.sb;
        async move {
            let mut settings = sandbox_get(sb, "/_sandbox/settings").await;
            settings["daily_quota"] = json!(n);
            sandbox_put(sb, "/_sandbox/settings", settings).await;
        }
    };
    quota(used + 5).await;
    let waiting = w.run(export.id, Mode::Incremental).await;
    assert_eq!(waiting.status, Status::Queued, "{:?}", waiting.message);
    let message = waiting.message.clone().unwrap();
    assert!(
        message.contains("Waiting for the daily Constant Contact quota"),
        "{message}"
    );
    // Constant Contact's word wins over our count.
    let app = w.ex.app.as_ref().unwrap().key();
    assert_eq!(engine::quota::left_today(&w.t.db, &app).await.unwrap(), 0);
    // Midnight UTC comes (and a few minutes).
    let day = 24 * 60 * 60 * 1000;
    let at = waiting.not_before.unwrap();
    assert!(at % day >= 5 * 60 * 1000 && at - engine::time::now_ms() <= day + 5 * 60 * 1000);
    quota(10_000).await;
    time_passes(&w, waiting.id).await;
    assert_eq!(worker::drain(&w.ex).await.unwrap(), vec![waiting.id]);
    let done = runs::get(&w.t.db, waiting.id).await.unwrap().unwrap();
    assert_eq!(
        done.status,
        Status::PartiallySucceeded,
        "{:?}",
        done.message
    );
    assert_eq!(w.members().await.len(), 40);
    let stats = sandbox_get(&w.sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
}

#[tokio::test]
async fn two_runs_on_one_connection_through_a_token_expiry_both_succeed() {
    let w = world().await;
    let seg = w.all_segment().await;
    let first = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let mut other = w.input(vec![seg]);
    other.name = String::from("Second export");
    let second = exports::create(&w.t.db, &w.carol, &other).await.unwrap();
    // The access token is refused from now on; the refresh token rotates.
    sandbox_post(&w.sb, "/_sandbox/tokens/expire_access", json!({})).await;
    let a = w.queue(first.id, Mode::Incremental).await;
    let b = w.queue(second.id, Mode::Incremental).await;
    let (mut one, mut two) = (w.ex.clone(), w.ex.clone());
    one.worker = String::from("worker-one");
    two.worker = String::from("worker-two");
    let (x, y) = tokio::join!(worker::drain(&one), worker::drain(&two));
    x.unwrap();
    y.unwrap();
    for run in [a.id, b.id] {
        let done = runs::get(&w.t.db, run).await.unwrap().unwrap();
        assert_eq!(
            done.status,
            Status::PartiallySucceeded,
            "{:?}",
            done.message
        );
    }
    let c = connections::get(&w.t.db, w.connection_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, connections::Status::Authorized);
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_can_write_nothing_more() {
    let w = world().await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let run = w.queue(export.id, Mode::Incremental).await;
    let db = &w.t.db;
    let expire = || async move {
        sqlx::query("UPDATE runs SET lease_until = 0 WHERE id = $1")
            .bind(run.id)
            .execute(db.pool())
            .await
            .unwrap();
    };
    let lease = |worker: &str, attempt: i64| runs::Lease {
        run_id: run.id,
        worker: worker.to_owned(),
        attempt,
    };
    let fence = |l: runs::Lease| async move {
        let mut conn = db.pool().acquire().await.unwrap();
        l.fence(&mut conn).await.unwrap()
    };
    assert_eq!(
        runs::claim(db, "paused", 60_000).await.unwrap(),
        Some(run.id)
    );
    let paused = lease("paused", 1);
    assert!(fence(paused.clone()).await);
    // It stops answering; another worker takes over.
    expire().await;
    assert_eq!(
        runs::claim(db, "second", 60_000).await.unwrap(),
        Some(run.id)
    );
    let second = lease("second", 2);
    assert!(!fence(paused.clone()).await);
    assert!(fence(second.clone()).await);
    assert_eq!(
        runs::heartbeat(db, &paused, 60_000).await.unwrap(),
        runs::Beat::Lost
    );
    let zero = runs::Counts::default();
    let progress = runs::Progress {
        phase: "sending",
        total: None,
        counts: &zero,
        resume: &zero,
        checkpoint: Some("p99"),
    };
    assert!(!runs::save_progress(db, &paused, progress).await.unwrap());
    assert!(!runs::finish(
        db,
        &paused,
        Status::Failed,
        Some("stale"),
        &Default::default()
    )
    .await
    .unwrap());
    // Even under its old name, a new claim is a new lease.
    expire().await;
    assert_eq!(
        runs::claim(db, "paused", 60_000).await.unwrap(),
        Some(run.id)
    );
    assert!(!fence(paused).await);
    assert!(fence(lease("paused", 3)).await);
    let r = runs::get(db, run.id).await.unwrap().unwrap();
    assert_eq!(r.status, Status::Running);
    assert_eq!(r.checkpoint, None);
}

#[tokio::test]
async fn a_shutdown_gives_the_run_up_at_once_and_another_worker_finishes_it() {
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 1_000,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let run = w.queue(export.id, Mode::Incremental).await;
    let mut first = w.ex.clone();
    first.settings.lease_ms = 60_000;
    first.shutdown = Default::default();
    let stop = first.shutdown.clone();
    let task = tokio::spawn(async move { worker::drain(&first).await.unwrap() });
    let db = &w.t.db;
    wait_until(|| async move {
        let sent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_batches WHERE run_id = $1 AND state = 'sent'",
        )
        .bind(run.id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        sent >= 2
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();
    // Free at once, though its lease had a minute left.
    let left = runs::get(db, run.id).await.unwrap().unwrap();
    assert_eq!(left.status, Status::Running);
    let mut second = w.ex.clone();
    second.worker = String::from("second-worker");
    assert_eq!(worker::drain(&second).await.unwrap(), vec![run.id]);
    let done = runs::get(db, run.id).await.unwrap().unwrap();
    assert_eq!(
        done.status,
        Status::PartiallySucceeded,
        "{:?}",
        done.message
    );
    assert_eq!(done.counts.sent, 40);
    assert_eq!(w.members().await.len(), 40);
    let stats = sandbox_get(&w.sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
}

#[tokio::test]
async fn a_run_whose_worker_keeps_dying_is_given_up_with_the_reason() {
    let w = world().await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let run = w.queue(export.id, Mode::Incremental).await;
    sqlx::query("UPDATE runs SET status = 'running', worker = 'dead', lease_until = 0, attempts = $1 WHERE id = $2")
        .bind(runs::MAX_ATTEMPTS)
        .bind(run.id)
        .execute(w.t.db.pool())
        .await
        .unwrap();
    assert_eq!(runs::claim(&w.t.db, "next", 60_000).await.unwrap(), None);
    let given_up = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(given_up.status, Status::Failed);
    assert!(given_up.message.unwrap().contains("started 10 times"));
    // The export can run again.
    let again = w.run(export.id, Mode::Incremental).await;
    assert_eq!(
        again.status,
        Status::PartiallySucceeded,
        "{:?}",
        again.message
    );
}

#[tokio::test]
async fn the_quota_left_is_counted_in_the_database_for_every_process() {
    let w = world().await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let done = w.run(export.id, Mode::Incremental).await;
    assert_eq!(
        done.status,
        Status::PartiallySucceeded,
        "{:?}",
        done.message
    );
    // Another process (or this one after a restart) reads the same count:
    // every API request Constant Contact saw today.
    let seen = sandbox_get(&w.sb, "/_sandbox/requests").await["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/v3"))
        .count() as u64;
    let app = w.ex.app.as_ref().unwrap().key();
    let (db, app_key) = (&w.t.db, &app);
    // Requests are counted beside them: the last counts land a moment later.
    wait_until(
        || async move { engine::quota::left_today(db, app_key).await.unwrap() == 10_000 - seen },
    )
    .await;
    let left = engine::quota::left_today(&w.t.db, &app).await.unwrap();
    let dry = w.run(export.id, Mode::DryRun).await;
    assert!(
        dry.counts.quota_left <= left && dry.counts.quota_left + 5 >= left,
        "{} left by the dry run's count, {left} before it",
        dry.counts.quota_left
    );
}

#[tokio::test]
async fn an_import_that_does_not_move_is_looked_at_less_often_and_said_to_be_slow() {
    // Imports take a minute at Constant Contact; the run waits two seconds.
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 60_000,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let mut ex = w.ex.clone();
    ex.settings.batch_contacts = 40;
    ex.settings.activity_timeout = Duration::from_secs(2);
    ex.settings.max_poll_every = Duration::from_millis(200);
    let run = w.queue(export.id, Mode::Incremental).await;
    worker::drain(&ex).await.unwrap();
    let waiting = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(waiting.status, Status::Queued, "{:?}", waiting.message);
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap()
            .contains("did not finish an import"),
        "{:?}",
        waiting.message
    );
    // At a steady 10 ms that would have been some 200 looks.
    let polls = sandbox_get(&w.sb, "/_sandbox/requests").await["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["method"] == "GET" && r["path"].as_str().unwrap().starts_with("/v3/activities")
        })
        .count();
    assert!(polls <= 30, "{polls} polls");
    let notes: Vec<String> = runs::batches(&w.t.db, run.id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|b| b.outcome)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("slower than expected")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn a_run_keeps_to_its_budget_of_status_requests() {
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 60_000,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let mut ex = w.ex.clone();
    ex.settings.batch_contacts = 40;
    ex.settings.poll_budget = 5;
    ex.settings.max_poll_every = Duration::from_millis(20);
    let run = w.queue(export.id, Mode::Incremental).await;
    worker::drain(&ex).await.unwrap();
    let waiting = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(waiting.status, Status::Queued, "{:?}", waiting.message);
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap()
            .contains("status requests"),
        "{:?}",
        waiting.message
    );
    let polls = sandbox_get(&w.sb, "/_sandbox/requests").await["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["method"] == "GET" && r["path"].as_str().unwrap().starts_with("/v3/activities")
        })
        .count();
    assert!(polls <= 25, "{polls} polls for a budget of 5 + 20 a batch");
}

#[tokio::test]
async fn under_a_heavy_fault_mix_every_run_finishes_and_the_list_is_exact() {
    let w = world().await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let mut ex = w.ex.clone();
    // The product's retries (6 attempts a request), quicker.
    ex.settings.retry = Some(RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
    });
    sandbox_put(
        &w.sb,
        "/_sandbox/faults",
        json!({ "p500": 0.2, "p503": 0.1, "drop": 0.1, "p429": 0.2, "latency_ms": 5 }),
    )
    .await;
    for round in 0..10 {
        let run = w.queue(export.id, Mode::Full).await;
        let done = loop {
            worker::drain(&ex).await.unwrap();
            let now = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
            if now.status == Status::Queued {
                // Waiting to resume: its time comes.
                time_passes(&w, run.id).await;
                continue;
            }
            break now;
        };
        assert_eq!(
            done.status,
            Status::PartiallySucceeded,
            "round {round}: {:?}",
            done.message
        );
    }
    sandbox_put(&w.sb, "/_sandbox/faults", json!({})).await;
    // Exactly the 40 sendable contacts: none lost, none extra.
    let members = w.members().await;
    assert_eq!(members.len(), 40, "{members:?}");
    assert!(!members.iter().any(|m| m == "gone@example.com"));
}
