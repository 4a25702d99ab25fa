//! Exports and runs end to end: the engine against a real database (SQLite,
//! or PostgreSQL with `TEST_DATABASE=postgres`) and the sandbox over HTTP.
//! What a run sends, skips, plans, removes and refuses; cancel and remove.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;

#[tokio::test]
async fn a_run_sends_each_contact_once_skips_with_reasons_and_an_unchanged_rerun_sends_nothing() {
    let w = world().await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    assert_eq!(w.writes().await, 0, "saving an export sends nothing");

    let run = w.run(export.id, Mode::Incremental).await;
    // Three profiles could not be sent for their data: not a clean success.
    assert_eq!(run.status, Status::PartiallySucceeded, "{:?}", run.message);
    assert!(
        run.message.as_deref().unwrap().contains(
            "Skipped for their data: 1 had no email address, 1 had an invalid email address, 1 had a value Constant Contact would refuse."
        ),
        "{:?}",
        run.message
    );
    let c = &run.counts;
    assert_eq!(c.read, 45);
    assert_eq!(c.sent, 40);
    assert_eq!(c.adds, 40);
    assert_eq!(c.batches_done, 4, "10 contacts a batch");
    assert_eq!(
        (
            c.skipped_no_email,
            c.skipped_invalid_email,
            c.skipped_duplicate_email,
            c.skipped_invalid_value,
            c.skipped_unsubscribed
        ),
        (1, 1, 1, 1, 1)
    );
    assert!(c.api_calls > 4);
    let members = w.members().await;
    assert_eq!(members.len(), 40);
    assert!(
        !members.contains(&"gone@example.com".to_owned()),
        "never re-subscribed"
    );
    let one = sandbox_get(&w.sb, "/_sandbox/contacts?email=person7@example.com").await;
    assert_eq!(one["fields"]["first_name"], "First7");
    assert_eq!(one["fields"]["last_name"], "Last7");

    // Every skipped profile is reported with its reason.
    let (errors, total) = runs::errors(&w.t.db, run.id, 0, 100).await.unwrap();
    assert_eq!(total, 5);
    let kinds: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.profile_id.as_str(), e.kind.as_str()))
        .collect();
    assert!(kinds.contains(&("Q001", "no_email")));
    assert!(kinds.contains(&("Q002", "invalid_email")));
    assert!(kinds.contains(&("Q003", "duplicate_email")));
    assert!(kinds.contains(&("Q004", "invalid_value")));
    assert!(kinds.contains(&("Q005", "unsubscribed")));
    let mut csv = Vec::new();
    runs::write_errors_csv(&w.t.db, run.id, &mut csv)
        .await
        .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("profile_id,email,problem,field,reason\n"));
    assert!(csv.contains("Q004,long@example.com,invalid_value,first_name,"));

    // Nothing changed: nothing is sent.
    let again = w.run(export.id, Mode::Incremental).await;
    assert_eq!(again.status, Status::PartiallySucceeded);
    assert_eq!((again.counts.sent, again.counts.unchanged), (0, 40));

    // One profile changes: only it is sent.
    profiles::upsert(
        &w.t.db,
        vec![profile("P005", "person5@example.com", "Changed", "Last5")],
    )
    .await
    .unwrap();
    let third = w.run(export.id, Mode::Incremental).await;
    assert_eq!(
        (
            third.counts.sent,
            third.counts.updates,
            third.counts.unchanged
        ),
        (1, 1, 39)
    );
    let one = sandbox_get(&w.sb, "/_sandbox/contacts?email=person5@example.com").await;
    assert_eq!(one["fields"]["first_name"], "Changed");

    // A mapping change sends everyone again; so does a full resend.
    let mut input = w.input(vec![seg]);
    input.mapping.pop();
    exports::update(&w.t.db, &w.carol, export.id, &input)
        .await
        .unwrap();
    let remapped = w.run(export.id, Mode::Incremental).await;
    assert_eq!(remapped.counts.sent, 40);
    let full = w.run(export.id, Mode::Full).await;
    assert_eq!(full.counts.sent, 40);
    // Sent again with the same values: neither new nor changed.
    let c = &full.counts;
    assert_eq!((c.adds, c.updates, c.resent, c.unchanged), (0, 0, 40, 0));
    assert!(
        full.message
            .as_deref()
            .unwrap()
            .contains("0 new, 0 changed, 40 sent again unchanged"),
        "{:?}",
        full.message
    );

    let stats = sandbox_get(&w.sb, "/_sandbox/import_stats").await;
    assert_eq!(stats["import_rows"], 40 + 1 + 40 + 40);
}

#[tokio::test]
async fn a_run_that_can_send_no_profile_fails_and_says_why() {
    let w = world().await;
    let seg = w.all_segment().await;
    // The email is mapped from the last name: no profile has one there.
    let mut input = w.input(vec![seg]);
    input.mapping[0].source = String::from("last");
    let export = exports::create(&w.t.db, &w.carol, &input).await.unwrap();
    let run = w.run(export.id, Mode::Incremental).await;
    assert_eq!(run.status, Status::Failed, "{:?}", run.message);
    assert_eq!((run.counts.read, run.counts.sent), (45, 0));
    let message = run.message.unwrap();
    assert!(
        message
            .starts_with("None of the 45 profiles could be sent: 45 had an invalid email address."),
        "{message}"
    );
    assert_eq!(w.members().await.len(), 0);
    // A dry run only plans: it says the same without failing.
    let dry = w.run(export.id, Mode::DryRun).await;
    assert_eq!(dry.status, Status::Succeeded, "{:?}", dry.message);
}

#[tokio::test]
async fn several_segments_are_merged_each_profile_once() {
    let w = world().await;
    let a = w
        .segment("A", (0..25).map(|i| format!("P{i:03}")).collect())
        .await;
    let b = w
        .segment("B", (15..40).map(|i| format!("P{i:03}")).collect())
        .await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![a, b]))
        .await
        .unwrap();
    let run = w.run(export.id, Mode::Incremental).await;
    assert_eq!(run.total, Some(40));
    assert_eq!((run.counts.read, run.counts.sent), (40, 40));
    assert_eq!(w.members().await.len(), 40);

    // Each profile's ledger entry comes with it from either segment: a
    // re-run sends nothing, and a change to a profile in both sends it once.
    let again = w.run(export.id, Mode::Incremental).await;
    assert_eq!((again.counts.sent, again.counts.unchanged), (0, 40));
    profiles::upsert(
        &w.t.db,
        vec![profile("P020", "person20@example.com", "Changed", "Last20")],
    )
    .await
    .unwrap();
    let third = w.run(export.id, Mode::Incremental).await;
    assert_eq!(
        (
            third.counts.read,
            third.counts.sent,
            third.counts.updates,
            third.counts.unchanged
        ),
        (40, 1, 1, 39)
    );
    let one = sandbox_get(&w.sb, "/_sandbox/contacts?email=person20@example.com").await;
    assert_eq!(one["fields"]["first_name"], "Changed");
}

#[tokio::test]
async fn a_dry_run_plans_without_writing_to_constant_contact() {
    let w = world().await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let before = w.writes().await;
    let run = w.run(export.id, Mode::DryRun).await;
    assert_eq!(run.status, Status::Succeeded, "{:?}", run.message);
    assert_eq!(w.writes().await, before, "a dry run writes nothing");
    let c = &run.counts;
    assert_eq!((c.adds, c.updates, c.batches, c.sent), (40, 0, 4, 0));
    assert_eq!(c.skipped(), 5);
    assert!(c.api_calls >= 4 && c.quota_left > 0);
    assert!(run
        .message
        .unwrap()
        .starts_with("Dry run: would send 40 contacts"));
    assert!(w.members().await.is_empty());
}

#[tokio::test]
async fn more_than_the_limit_fails_before_sending_anything() {
    let mut w = world().await;
    w.ex.settings.max_profiles = 30;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let run = w.run(export.id, Mode::Incremental).await;
    assert_eq!(run.status, Status::Failed);
    assert_eq!(
        run.message.as_deref(),
        Some("The selected segments contain 43 profiles; an export can send at most 30.")
    );
    assert_eq!(w.writes().await, 0);
}

#[tokio::test]
async fn contacts_who_left_are_removed_only_if_this_export_added_them_behind_a_breaker() {
    let w = world().await;
    let seg = w
        .segment("Some", (0..40).map(|i| format!("P{i:03}")).collect())
        .await;
    let mut input = w.input(vec![seg]);
    input.remove_left = true;
    let export = exports::create(&w.t.db, &w.carol, &input).await.unwrap();
    let first = w.run(export.id, Mode::Incremental).await;
    assert_eq!(first.counts.sent, 40);
    // Someone added to the list by other means.
    let client = engine::connect::api_client(
        &w.ex.db,
        &w.ex.cipher,
        w.ex.app.as_ref().unwrap(),
        w.connection_id,
    )
    .await
    .unwrap();
    let mut b = engine::constant_contact::BatchBuilder::new(std::slice::from_ref(&w.list_id));
    b.push(
        "x",
        &engine::constant_contact::ImportContact::new("other@example.com"),
    )
    .unwrap();
    let activity = client.import(&b.finish().unwrap()).await.unwrap();
    client
        .wait_for(
            &activity.activity_id,
            Duration::from_millis(10),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(w.members().await.len(), 41);

    // 5 leave (5 of 41 is under 20%): they are removed, nobody else.
    w.segment("Some", (5..40).map(|i| format!("P{i:03}")).collect())
        .await;
    let second = w.run(export.id, Mode::Incremental).await;
    assert_eq!(second.status, Status::Succeeded, "{:?}", second.message);
    assert_eq!((second.counts.removals, second.counts.removed), (5, 5));
    let members = w.members().await;
    assert_eq!(members.len(), 36);
    assert!(members.contains(&"other@example.com".to_owned()));
    assert!(!members.contains(&"person0@example.com".to_owned()));

    // 20 more leave (over 20% of 36): the breaker stops the removal.
    w.segment("Some", (25..40).map(|i| format!("P{i:03}")).collect())
        .await;
    let third = w.run(export.id, Mode::Incremental).await;
    assert_eq!(third.status, Status::PartiallySucceeded);
    assert!(
        third
            .message
            .as_deref()
            .unwrap()
            .contains("circuit breaker"),
        "{:?}",
        third.message
    );
    assert_eq!(third.counts.removed, 0);
    assert_eq!(w.members().await.len(), 36);
}

#[tokio::test]
async fn one_active_run_per_export_and_cancel_and_remove_stop_it() {
    let w = world().await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let queued = w.queue(export.id, Mode::Incremental).await;
    let second = runs::trigger(&w.t.db, export.id, Trigger::Cli, Mode::Incremental, None).await;
    assert!(
        matches!(&second, Err(Error::Conflict(m)) if m.contains("already queued or running")),
        "{second:?}"
    );
    // The schedule coalesces instead of failing.
    assert!(engine::schedule::queue_scheduled(&w.t.db)
        .await
        .unwrap()
        .is_empty());

    let cancelled = runs::cancel(&w.t.db, &w.carol, queued.id).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert!(worker::drain(&w.ex).await.unwrap().is_empty());

    // Removing the export cancels its queued run; nothing is sent for it.
    let queued = runs::trigger(
        &w.t.db,
        export.id,
        Trigger::Manual,
        Mode::Incremental,
        Some(&w.admin),
    )
    .await
    .unwrap();
    exports::remove(&w.t.db, &w.admin, export.id).await.unwrap();
    assert_eq!(
        runs::get(&w.t.db, queued.id).await.unwrap().unwrap().status,
        Status::Cancelled
    );
    assert!(worker::drain(&w.ex).await.unwrap().is_empty());
    assert_eq!(w.writes().await, 0);
    assert!(runs::trigger(
        &w.t.db,
        export.id,
        Trigger::Manual,
        Mode::Incremental,
        Some(&w.admin)
    )
    .await
    .is_err());
    assert!(exports::list(&w.t.db).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_running_run_is_cancelled_at_the_next_batch() {
    let w = world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 150,
        ..sandbox::Config::default()
    })
    .await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let run = w.queue(export.id, Mode::Incremental).await;
    let mut ex = w.ex.clone();
    ex.settings.in_flight = 1;
    let task = tokio::spawn(async move { worker::drain(&ex).await.unwrap() });
    let db = &w.t.db;
    wait_until(|| async move {
        runs::get(db, run.id)
            .await
            .unwrap()
            .unwrap()
            .counts
            .batches_done
            >= 1
    })
    .await;
    runs::cancel(&w.t.db, &w.carol, run.id).await.unwrap();
    task.await.unwrap();
    let done = runs::get(&w.t.db, run.id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Cancelled);
    assert!(done.counts.sent < 40, "stopped early");
    assert!(done
        .message
        .unwrap()
        .contains(&format!("after sending {} contacts", done.counts.sent)));
    // A batch that was with Constant Contact when the cancel came was
    // settled before the run ended: counted, and nothing after it is sent.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(w.members().await.len() as u64, done.counts.sent);
}

#[tokio::test]
async fn removing_the_connection_disables_its_exports() {
    let w = world().await;
    let seg = w.all_segment().await;
    let export = exports::create(&w.t.db, &w.carol, &w.input(vec![seg]))
        .await
        .unwrap();
    let queued = w.queue(export.id, Mode::Incremental).await;
    assert_eq!(
        exports::names_using(&w.t.db, w.connection_id)
            .await
            .unwrap(),
        vec!["Customers to CC"]
    );
    connections::remove(&w.t.db, &w.ex.cipher, &w.admin, w.connection_id)
        .await
        .unwrap();
    let after = exports::get(&w.t.db, export.id).await.unwrap().unwrap();
    assert!(!after.enabled);
    assert_eq!(after.connection_id, None);
    assert!(after
        .disabled_reason
        .unwrap()
        .contains("Newsletter account"));
    assert_eq!(
        runs::get(&w.t.db, queued.id).await.unwrap().unwrap().status,
        Status::Cancelled
    );
    let refused = runs::trigger(
        &w.t.db,
        export.id,
        Trigger::Manual,
        Mode::Incremental,
        Some(&w.carol),
    )
    .await;
    assert!(matches!(refused, Err(Error::Conflict(m)) if m.contains("disabled")));
    assert_eq!(w.writes().await, 0);
}

#[tokio::test]
async fn a_contributor_cannot_use_an_admins_only_connection() {
    let w = world().await;
    let seg = w.all_segment().await;
    let input = w.input(vec![seg]);
    sqlx::query("UPDATE connections SET usable_by = 'admins'")
        .execute(w.t.db.pool())
        .await
        .unwrap();
    let refused = exports::create(&w.t.db, &w.carol, &input).await;
    assert!(
        matches!(
            refused,
            Err(Error::Invalid {
                field: "connection",
                ..
            })
        ),
        "{refused:?}"
    );
    // An export Carol saved earlier stops running once she may not use it.
    sqlx::query("UPDATE connections SET usable_by = 'admins_and_contributors'")
        .execute(w.t.db.pool())
        .await
        .unwrap();
    let export = exports::create(&w.t.db, &w.carol, &input).await.unwrap();
    sqlx::query("UPDATE connections SET usable_by = 'admins'")
        .execute(w.t.db.pool())
        .await
        .unwrap();
    let run = w.run(export.id, Mode::Incremental).await;
    assert_eq!(run.status, Status::Failed);
    assert!(run.message.unwrap().contains("may no longer use"));
    assert_eq!(w.writes().await, 0);
}
