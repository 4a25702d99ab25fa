//! Exports and runs end to end: the engine against a real database (SQLite,
//! or PostgreSQL with `TEST_DATABASE=postgres`) and the sandbox over HTTP.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::time::Duration;

use engine::connect::CcApp;
use engine::connections::{self, DisplayName, NewConnection, UsableBy};
use engine::constant_contact::{Endpoints, RetryPolicy, Secret, Tokens};
use engine::crypto::Cipher;
use engine::exports::{self, ExportInput, Mapping};
use engine::password::Password;
use engine::run::{Executor, Settings};
use engine::runs::{self, Mode, Status, Trigger};
use engine::secrets::SecretKey;
use engine::testing::TestDb;
use engine::users::{self, Email, Role, User};
use engine::{profiles, segments, worker, Error};
use sandbox::Running;
use serde_json::{json, Value};

const CLIENT: &str = "segment-export-demo";

struct World {
    t: TestDb,
    sb: Running,
    ex: Executor,
    admin: User,
    carol: User,
    connection_id: i64,
    list_id: String,
    /// Writes the setup made (creating the list, the unsubscribed contact).
    setup_writes: usize,
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn sandbox_get(sb: &Running, path: &str) -> Value {
    http()
        .get(format!("{}{path}", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn sandbox_put(sb: &Running, path: &str, body: Value) {
    let r = http()
        .put(format!("{}{path}", sb.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn sandbox_post(sb: &Running, path: &str, body: Value) -> Value {
    http()
        .post(format!("{}{path}", sb.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

fn settings() -> Settings {
    Settings {
        page_size: 7,
        batch_contacts: 10,
        poll_every: Duration::from_millis(10),
        activity_timeout: Duration::from_secs(30),
        lease_ms: 400,
        checkpoint_every: 5,
        api_interval: Some(Duration::ZERO),
        retry: Some(RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
        }),
        round_pause: Duration::from_millis(20),
        ..Settings::default()
    }
}

fn profile(id: &str, email: &str, first: &str, last: &str) -> (String, BTreeMap<String, String>) {
    let mut m = BTreeMap::new();
    for (k, v) in [("email", email), ("first", first), ("last", last)] {
        if !v.is_empty() {
            m.insert(k.to_owned(), v.to_owned());
        }
    }
    (id.to_owned(), m)
}

/// 40 good profiles (P000–P039) and one of each kind of skip.
fn people() -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<_> = (0..40)
        .map(|i| {
            profile(
                &format!("P{i:03}"),
                &format!("person{i}@example.com"),
                &format!("First{i}"),
                &format!("Last{i}"),
            )
        })
        .collect();
    out.push(profile("Q001", "", "No", "Email"));
    out.push(profile("Q002", "not an email", "Bad", "Email"));
    out.push(profile("Q003", "PERSON1@example.com", "Dup", "Licate"));
    out.push(profile("Q004", "long@example.com", &"x".repeat(60), "Long"));
    out.push(profile("Q005", "gone@example.com", "Un", "Subscribed"));
    out
}

async fn world_with(sandbox: sandbox::Config) -> World {
    let t = TestDb::new().await;
    let sb = sandbox::spawn(sandbox, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let admin = users::create_first_admin(
        &t.db,
        &Email::parse("root@example.com").unwrap(),
        &Password::parse("root password 1").unwrap(),
    )
    .await
    .unwrap();
    let carol = users::create_user(
        &t.db,
        Some(&admin),
        &Email::parse("carol@example.com").unwrap(),
        Role::Contributor,
        &Password::parse("carol password 1").unwrap(),
    )
    .await
    .unwrap();
    let cipher = Cipher::new(&SecretKey::generate());
    let issued = sb.shared.lock().issue_tokens(
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
    let connection = connections::create(
        &t.db,
        &cipher,
        &admin,
        NewConnection {
            display_name: DisplayName::parse("Newsletter account").unwrap(),
            usable_by: UsableBy::AdminsAndContributors,
            consent_at: engine::time::now_ms(),
            tokens,
            export_user_id: admin.id,
        },
    )
    .await
    .unwrap();
    let app = CcApp {
        endpoints: Endpoints::at(&sb.url()),
        client_id: CLIENT.into(),
        client_secret: Secret::new("demo-client-secret"),
        redirect_url: "http://127.0.0.1:3000/oauth/constant-contact/callback".into(),
    };
    let ex = Executor {
        db: t.db.clone(),
        cipher,
        app: Some(app),
        worker: String::from("test-worker"),
        settings: settings(),
        shutdown: Default::default(),
    };
    let client =
        engine::connect::api_client(&ex.db, &ex.cipher, ex.app.as_ref().unwrap(), connection.id)
            .await
            .unwrap()
            .with_interval(Duration::ZERO);
    let list = client.create_list("Customers", None).await.unwrap();
    profiles::upsert(&t.db, people()).await.unwrap();
    sandbox_post(
        &sb,
        "/_sandbox/contacts/unsubscribe",
        json!({ "email": "gone@example.com" }),
    )
    .await;
    let mut w = World {
        t,
        sb,
        ex,
        admin,
        carol,
        connection_id: connection.id,
        list_id: list.list_id,
        setup_writes: 0,
    };
    w.setup_writes = w.writes().await;
    w
}

async fn world() -> World {
    world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 5,
        ..sandbox::Config::default()
    })
    .await
}

fn mapping() -> Vec<Mapping> {
    [
        ("email", "email"),
        ("first", "first_name"),
        ("last", "last_name"),
    ]
    .iter()
    .map(|(s, t)| Mapping {
        source: (*s).into(),
        target: (*t).into(),
    })
    .collect()
}

impl World {
    async fn segment(&self, name: &str, ids: Vec<String>) -> i64 {
        segments::import_static(&self.t.db, None, name, "", ids)
            .await
            .unwrap()
            .segment
            .id
    }

    async fn all_segment(&self) -> i64 {
        self.segment("Everyone", people().into_iter().map(|(id, _)| id).collect())
            .await
    }

    fn input(&self, segment_ids: Vec<i64>) -> ExportInput {
        ExportInput {
            name: String::from("Customers to CC"),
            connection_id: self.connection_id,
            list_id: self.list_id.clone(),
            list_name: String::from("Customers"),
            mapping: mapping(),
            segment_ids,
            on_schedule: true,
            remove_left: false,
            removal_limit_pct: exports::DEFAULT_REMOVAL_LIMIT_PCT,
        }
    }

    /// Queues a run as Carol (Run now).
    async fn queue(&self, export_id: i64, mode: Mode) -> runs::Run {
        runs::trigger(
            &self.t.db,
            export_id,
            Trigger::Manual,
            mode,
            Some(&self.carol),
        )
        .await
        .unwrap()
    }

    /// Queues a run as Carol and executes every queued run.
    async fn run(&self, export_id: i64, mode: Mode) -> runs::Run {
        let run = self.queue(export_id, mode).await;
        worker::drain(&self.ex).await.unwrap();
        runs::get(&self.t.db, run.id).await.unwrap().unwrap()
    }

    async fn members(&self) -> Vec<String> {
        let v = sandbox_get(
            &self.sb,
            &format!("/_sandbox/lists/{}/members", self.list_id),
        )
        .await;
        let mut emails: Vec<String> = v["emails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect();
        emails.sort();
        emails
    }

    async fn writes(&self) -> usize {
        let log = sandbox_get(&self.sb, "/_sandbox/requests").await;
        log["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["method"] != "GET" && r["path"].as_str().unwrap_or("").starts_with("/v3"))
            .count()
            - self.setup_writes
    }
}

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
    assert!(runs::queue_scheduled(&w.t.db).await.unwrap().is_empty());

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

async fn wait_until<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..2000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached in 10 s");
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

/// The counts of a first run of [`people`] that was resumed: every profile
/// read once, every good one new (none "unchanged": this run sent them),
/// each batch counted once.
fn assert_resumed_counts(c: &runs::Counts) {
    assert_eq!(c.read, 45, "{c:?}");
    assert_eq!(
        (c.adds, c.updates, c.unchanged, c.resent),
        (40, 0, 0, 0),
        "{c:?}"
    );
    assert_eq!(c.skipped(), 5, "{c:?}");
    assert_eq!((c.batches, c.batches_done), (4, 4), "{c:?}");
}

/// Lets a run waiting to be resumed go now, as if its time had come.
async fn time_passes(w: &World, run: i64) {
    sqlx::query("UPDATE runs SET not_before = 0 WHERE id = $1")
        .bind(run)
        .execute(w.t.db.pool())
        .await
        .unwrap();
}

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
