//! The world the export tests share: a database, the sandbox over HTTP,
//! an admin, a connection, demo people and an export; and helpers.
#![allow(dead_code, unused_imports)] // each test binary uses its own part

pub use std::collections::BTreeMap;
pub use std::time::Duration;

pub use engine::connect::CcApp;
pub use engine::connections::{self, DisplayName, NewConnection, UsableBy};
pub use engine::constant_contact::{Endpoints, RetryPolicy, Secret, Tokens};
pub use engine::crypto::Cipher;
pub use engine::exports::{self, ExportInput, Mapping};
pub use engine::password::Password;
pub use engine::run::{Executor, Settings};
pub use engine::runs::{self, Mode, Status, Trigger};
pub use engine::secrets::SecretKey;
pub use engine::testing::TestDb;
pub use engine::users::{self, Email, Role, User};
pub use engine::{
    profiles, segments, worker, ConnectionId, Error, ExportId, RunId, SegmentId, UserId,
};
pub use sandbox::Running;
pub use serde_json::{json, Value};

pub const CLIENT: &str = "segment-export-demo";

pub struct World {
    pub t: TestDb,
    pub sb: Running,
    pub ex: Executor,
    pub admin: User,
    pub carol: User,
    pub connection_id: ConnectionId,
    pub list_id: String,
    /// Writes the setup made (creating the list, the unsubscribed contact).
    pub setup_writes: usize,
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn sandbox_get(sb: &Running, path: &str) -> Value {
    http()
        .get(format!("{}{path}", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn sandbox_put(sb: &Running, path: &str, body: Value) {
    let r = http()
        .put(format!("{}{path}", sb.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

pub async fn sandbox_post(sb: &Running, path: &str, body: Value) -> Value {
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

pub fn settings() -> Settings {
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

pub fn profile(
    id: &str,
    email: &str,
    first: &str,
    last: &str,
) -> (String, BTreeMap<String, String>) {
    let mut m = BTreeMap::new();
    for (k, v) in [("email", email), ("first", first), ("last", last)] {
        if !v.is_empty() {
            m.insert(k.to_owned(), v.to_owned());
        }
    }
    (id.to_owned(), m)
}

/// 40 good profiles (P000–P039) and one of each kind of skip.
pub fn people() -> Vec<(String, BTreeMap<String, String>)> {
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

pub async fn world_with(sandbox: sandbox::Config) -> World {
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

pub async fn world() -> World {
    world_with(sandbox::Config {
        rate_per_second: 0,
        processing_delay_ms: 5,
        ..sandbox::Config::default()
    })
    .await
}

pub fn mapping() -> Vec<Mapping> {
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
    pub async fn segment(&self, name: &str, ids: Vec<String>) -> SegmentId {
        segments::import_static(&self.t.db, None, name, "", ids)
            .await
            .unwrap()
            .segment
            .id
    }

    pub async fn all_segment(&self) -> SegmentId {
        self.segment("Everyone", people().into_iter().map(|(id, _)| id).collect())
            .await
    }

    pub fn input(&self, segment_ids: Vec<SegmentId>) -> ExportInput {
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
    pub async fn queue(&self, export_id: ExportId, mode: Mode) -> runs::Run {
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
    pub async fn run(&self, export_id: ExportId, mode: Mode) -> runs::Run {
        let run = self.queue(export_id, mode).await;
        worker::drain(&self.ex).await.unwrap();
        runs::get(&self.t.db, run.id).await.unwrap().unwrap()
    }

    pub async fn members(&self) -> Vec<String> {
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

    pub async fn writes(&self) -> usize {
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

pub async fn wait_until<F, Fut>(mut f: F)
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

/// The counts of a first run of [`people`] that was resumed: every profile
/// read once, every good one new (none "unchanged": this run sent them),
/// each batch counted once.
pub fn assert_resumed_counts(c: &runs::Counts) {
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
pub async fn time_passes(w: &World, run: RunId) {
    sqlx::query("UPDATE runs SET not_before = 0 WHERE id = $1")
        .bind(run)
        .execute(w.t.db.pool())
        .await
        .unwrap();
}
