//! Runs that are interrupted (faults, an expired token, a crashed
//! worker, an unconfirmed batch, a cancel with imports in flight) resume
//! from their checkpoint and send every contact exactly once; and the
//! scheduled refresh. On SQLite, or PostgreSQL with `TEST_DATABASE=postgres`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;

#[tokio::test]
async fn under_faults_and_an_expired_token_every_contact_lands_exactly_once() {
    let w = world().await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    sandbox_put(
        &w.sb,
        "/_sandbox/faults",
        json!({ "p429": 0.2, "p500": 0.1, "p503": 0.1, "drop": 0.1, "latency_ms": 2 }),
    )
    .await;
    sandbox_post(&w.sb, "/_sandbox/tokens/expire_access", json!({})).await;
    let run = w.run(export.id, Mode::Incremental).await;
    sandbox_put(&w.sb, "/_sandbox/faults", json!({})).await;
    assert_eq!(run.status, Status::PartiallySucceeded, "{:?}", run.message);
    assert_eq!(w.members().await.len(), 40);
    let stats = sandbox_get(&w.sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
    assert_eq!(stats["import_rows"], 40);
    // The refreshed tokens were stored: the next run works with them.
    let again = w.run(export.id, Mode::Incremental).await;
    assert_eq!(
        again.status,
        Status::PartiallySucceeded,
        "{:?}",
        again.message
    );
}

#[tokio::test]
async fn a_crashed_worker_run_is_resumed_from_its_checkpoint_without_resending() {
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 200,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let run = w.queue(export.id, Mode::Incremental).await;
    // One batch at Constant Contact at a time, so the crash lands while a
    // sent batch is being waited for (not between its send and its record).
    let mut ex = w.ex.clone();
    ex.settings.in_flight = 1;
    let doomed = tokio::spawn(async move { worker::drain(&ex).await });
    // Crash while the second batch is at Constant Contact.
    let db = &w.t.db;
    wait_until(|| async move {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_batches WHERE run_id = $1 AND state = 'sent' AND seq = 2",
        )
        .bind(run.id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        n == 1
    })
    .await;
    doomed.abort();
    let _ = doomed.await;
    let crashed = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(crashed.status, Status::Running);
    assert!(crashed.counts.batches_done <= 1);

    // Another worker takes it over once the lease runs out.
    let mut other = w.ex.clone();
    other.worker = String::from("second-worker");
    assert!(
        worker::drain(&other).await.unwrap().is_empty(),
        "the lease still holds"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(worker::drain(&other).await.unwrap(), vec![run.id]);
    let done = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(
        done.status,
        Status::PartiallySucceeded,
        "{:?}",
        done.message
    );
    assert_eq!(done.attempts, 2);
    assert_eq!((done.counts.sent, done.counts.batches_done), (40, 4));
    assert_eq!(done.counts.skipped(), 5);
    // Counted once each, however the attempts split the work.
    assert_resumed_counts(&done.counts);
    let (_, errors) = runs::errors(&w.t.db, run.id, 0, 10).await.unwrap();
    assert_eq!(errors, 5, "skips are reported once");
    assert_eq!(w.members().await.len(), 40);
    let stats = sandbox_get(&w.sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
    assert_eq!(stats["import_rows"], 40);
}

#[tokio::test]
async fn a_batch_never_confirmed_is_sent_again_and_the_confirmed_ones_after_it_are_not() {
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 200,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    // The first import is lost on the way: no answer, never processed.
    sandbox_put(&w.sb, "/_sandbox/faults", json!({ "stall_imports": 1 })).await;
    let run = w.queue(export.id, Mode::Incremental).await;
    let ex = w.ex.clone();
    let doomed = tokio::spawn(async move { worker::drain(&ex).await });
    // The three batches after it are answered while it waits: crash then.
    let db = &w.t.db;
    let states = || async move {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, state FROM run_batches WHERE run_id = $1 ORDER BY seq")
                .bind(run.id)
                .fetch_all(db.pool())
                .await
                .unwrap();
        rows
    };
    wait_until(|| async move { states().await.iter().filter(|(_, s)| s == "sent").count() == 3 })
        .await;
    doomed.abort();
    let _ = doomed.await;
    let seen: Vec<String> = states().await.into_iter().map(|(_, s)| s).collect();
    // The lost one is the first or, when the second overtook it on the
    // way, the second.
    assert!(
        seen == ["sending", "sent", "sent", "sent"] || seen == ["sent", "sending", "sent", "sent"],
        "{seen:?}"
    );
    // The imports answered finish; the lost one never came.
    let w = &w;
    wait_until(|| async move { w.members().await.len() == 30 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut other = w.ex.clone();
    other.worker = String::from("second-worker");
    assert_eq!(worker::drain(&other).await.unwrap(), vec![run.id]);
    let done = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(
        done.status,
        Status::PartiallySucceeded,
        "{:?}",
        done.message
    );
    assert_eq!((done.counts.sent, done.counts.batches_done), (40, 4));
    assert_resumed_counts(&done.counts);
    assert_eq!(w.members().await.len(), 40);
    let stats = sandbox_get(&w.sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
    assert_eq!(stats["import_rows"], 40);
    // The ledger knows every contact: a re-run sends nothing.
    let again = w.run(export.id, Mode::Incremental).await;
    assert_eq!(
        again.status,
        Status::PartiallySucceeded,
        "{:?}",
        again.message
    );
    assert_eq!(again.counts.sent, 0);
}

#[tokio::test]
async fn the_scheduled_refresh_fires_once_per_slot_and_queues_only_exports_on_the_schedule() {
    use engine::schedule;
    let w = world().await;
    let seg = w.all_segment().await;
    let scheduled = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let mut on_demand = w.input(vec![seg]);
    on_demand.name = String::from("Only on demand");
    on_demand.on_schedule = false;
    exports::create(&w.t.db, &w.carol, &on_demand)
        .await
        .unwrap();

    // Every hour, in Budapest; saved now, so nothing is due yet.
    let state = schedule::save(
        &w.t.db,
        &w.admin,
        &schedule::Schedule {
            mode: "cron".into(),
            times: vec![],
            weekdays: vec![],
            cron: "0 * * * *".into(),
            time_zone: "Europe/Budapest".into(),
        },
    )
    .await
    .unwrap();
    let now = engine::time::now_ms();
    assert!(schedule::tick(&w.t.db, now).await.unwrap().is_none());

    // Two hours later (two slots missed): one refresh, by one of two ticks.
    let later = state.last_slot + 2 * 3_600_000;
    let (a, b) = tokio::join!(
        schedule::tick(&w.t.db, later),
        schedule::tick(&w.t.db, later)
    );
    let fired: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(fired.len(), 1, "exactly one tick fires the slot");
    assert_eq!(fired[0].runs_queued.len(), 1);
    let run = runs::get(&w.t.db, fired[0].runs_queued[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (run.export_id, run.trigger.as_str()),
        (scheduled.id, "schedule")
    );
    assert!(schedule::tick(&w.t.db, later).await.unwrap().is_none());
    worker::drain(&w.ex).await.unwrap();
    let run = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(run.status, Status::PartiallySucceeded, "{:?}", run.message);
    assert_eq!(run.counts.sent, 40);
}

/// Imports in flight together are polled together: one request for the
/// account's recent activities answers for all of them, so each batch does
/// not cost a poll of its own (requests are limited to 4 a second).
#[tokio::test]
async fn imports_in_flight_are_polled_with_one_request() {
    let mut w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 300,
        ..sandbox::Config::default()
    })
    .await;
    w.ex.settings.poll_every = Duration::from_secs(1);
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let run = w.run(export.id, Mode::Incremental).await;
    assert_eq!(run.status, Status::PartiallySucceeded, "{:?}", run.message);
    assert_eq!(run.counts.batches_done, 4);
    let log = sandbox_get(&w.sb, "/_sandbox/requests").await;
    let polls: Vec<String> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "GET")
        .filter_map(|r| r["path"].as_str())
        .filter(|p| p.starts_with("/v3/activities"))
        .map(str::to_owned)
        .collect();
    let alone = polls
        .iter()
        .filter(|p| p.starts_with("/v3/activities/"))
        .count();
    // The first poll finds the first import still processing; the next,
    // a second later, finds all four done. Polled one by one, that would
    // be at least five requests.
    assert!(polls.len() <= 3, "{polls:?}");
    assert!(alone <= 1, "{polls:?}");
    assert_eq!(w.members().await.len(), 40);
}

#[tokio::test]
async fn a_cancel_settles_the_imports_constant_contact_already_accepted() {
    // Imports take a while at Constant Contact: all four batches are with
    // it when the cancel comes.
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 3_000,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let run = w.queue(export.id, Mode::Incremental).await;
    let ex = w.ex.clone();
    let task = tokio::spawn(async move { worker::drain(&ex).await.unwrap() });
    let db = &w.t.db;
    let sent_batches = || async move {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_batches WHERE run_id = $1 AND state = 'sent'",
        )
        .bind(run.id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        n
    };
    wait_until(|| async move { sent_batches().await == 4 }).await;
    runs::cancel(&w.t.db, &w.carol, run.id).await.unwrap();
    task.await.unwrap();
    let done = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Cancelled, "{:?}", done.message);
    // What Constant Contact had is counted, recorded and said.
    assert_eq!((done.counts.sent, done.counts.batches_done), (40, 4));
    assert!(
        done.message
            .as_deref()
            .unwrap()
            .contains("after sending 40 contacts"),
        "{:?}",
        done.message
    );
    assert_eq!(w.members().await.len(), 40);
    // The next run sends none of them again.
    let again = w.run(export.id, Mode::Incremental).await;
    assert_eq!(
        again.status,
        Status::PartiallySucceeded,
        "{:?}",
        again.message
    );
    assert_eq!(again.counts.sent, 0);
    let stats = sandbox_get(&w.sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
}

#[tokio::test]
async fn imports_a_run_could_not_see_finish_are_checked_by_the_next_run_and_not_sent_again() {
    // All four imports are with Constant Contact when the sign-in is
    // revoked: the run can neither poll them nor refresh its token.
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 3_000,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let run = w.queue(export.id, Mode::Incremental).await;
    let ex = w.ex.clone();
    let task = tokio::spawn(async move { worker::drain(&ex).await.unwrap() });
    let db = &w.t.db;
    wait_until(|| async move {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_batches WHERE run_id = $1 AND state = 'sent'",
        )
        .bind(run.id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        n == 4
    })
    .await;
    sandbox_post(&w.sb, "/_sandbox/tokens/revoke_all", json!({})).await;
    task.await.unwrap();
    let failed = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(failed.status, Status::Failed, "{:?}", failed.message);
    let message = failed.message.clone().unwrap();
    assert!(
        message.contains("the export's next run checks them"),
        "{message}"
    );

    // An admin signs in again; the imports went through meanwhile.
    let w = &w;
    wait_until(|| async move { w.members().await.len() == 40 }).await;
    let issued = w.sb.shared.lock().issue_tokens(
        CLIENT,
        0,
        &["contact_data".into(), "offline_access".into()],
        None,
    );
    let tokens = Tokens {
        access_token: Secret::new(issued["access_token"].as_str().unwrap()),
        refresh_token: Some(Secret::new(issued["refresh_token"].as_str().unwrap())),
        expires_at: engine::time::now_ms() + 86_400_000,
        scopes: vec!["contact_data".into(), "offline_access".into()],
    };
    connections::store_tokens(&w.t.db, &w.ex.cipher, None, w.connection_id, &tokens)
        .await
        .unwrap();
    // The next run records them from Constant Contact's answer and sends
    // none of them again.
    let next = w.run(export.id, Mode::Incremental).await;
    assert_eq!(
        next.status,
        Status::PartiallySucceeded,
        "{:?}",
        next.message
    );
    assert_eq!((next.counts.sent, next.counts.unchanged), (0, 40));
    assert!(
        next.message
            .as_deref()
            .unwrap()
            .contains("40 contacts of an earlier run's imports were confirmed"),
        "{:?}",
        next.message
    );
    let stats = sandbox_get(&w.sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["imported_more_than_once"], 0, "{stats}");
    assert_eq!(stats["import_rows"], 40, "{stats}");
    let batches: Vec<String> =
        sqlx::query_scalar("SELECT state FROM run_batches WHERE run_id = $1 ORDER BY seq")
            .bind(run.id)
            .fetch_all(w.t.db.pool())
            .await
            .unwrap();
    assert_eq!(batches, ["done", "done", "done", "done"]);
}
