//! A test server: the real router on port 0 with its own database, and
//! optionally the Constant Contact sandbox beside it.
#![allow(dead_code)] // each test binary uses its own part
#![allow(clippy::unwrap_used)] // tests fail loudly by design

pub mod fixtures;

use std::net::SocketAddr;

use engine::testing::TestDb;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use server::Config;

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDb,
    _dir: tempfile::TempDir,
    /// The export workers stop when this is dropped.
    _workers: tokio::sync::watch::Sender<bool>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(false, |_, _| {}).await.0
    }

    /// The server with the Constant Contact sandbox beside it, configured
    /// to use it; the sandbox's demo client has this server's callback
    /// registered. `adjust` may change either configuration.
    pub async fn spawn_with_sandbox(
        adjust: impl FnOnce(&mut Config, &mut sandbox::Config),
    ) -> (Self, sandbox::Running) {
        let (app, sb) = Self::spawn_with(true, adjust).await;
        (app, sb.unwrap())
    }

    async fn spawn_with(
        with_sandbox: bool,
        adjust: impl FnOnce(&mut Config, &mut sandbox::Config),
    ) -> (Self, Option<sandbox::Running>) {
        init_logs();
        let db = TestDb::new().await;
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let callback = format!("http://{addr}/oauth/constant-contact/callback");
        let mut config = Config::for_tests(&db.url, dir.path().to_path_buf());
        config.addr = addr;
        let mut sb_config = sandbox::Config {
            rate_per_second: 0,
            processing_delay_ms: 5,
            ..sandbox::Config::default()
        };
        sb_config.clients[0].redirect_uris = vec![callback.clone()];
        if with_sandbox {
            config.cc_client_id = Some(sb_config.clients[0].id.clone());
            config.cc_client_secret = Some(sb_config.clients[0].secret.clone());
            config.cc_redirect_url = callback;
        }
        adjust(&mut config, &mut sb_config);
        let sb = if with_sandbox {
            let sb = sandbox::spawn(sb_config, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            config.cc_sandbox_url = Some(sb.url());
            Some(sb)
        } else {
            None
        };
        let app = server::router(&config, db.db.clone()).await.unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        let (workers, _) = server::start_workers(&config, db.db.clone()).unwrap();
        (
            TestApp {
                addr,
                db,
                _dir: dir,
                _workers: workers,
            },
            sb,
        )
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().to_path_buf()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Loads a page as a browser does (a redirect is a 302 only for
    /// requests that accept HTML).
    pub async fn page(&self, client: &Client, path: &str) -> reqwest::Response {
        client
            .get(self.url(path))
            .header(reqwest::header::ACCEPT, "text/html")
            .send()
            .await
            .unwrap()
    }

    /// A fresh browser-like client with its own cookie jar.
    pub fn client(&self) -> Client {
        Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            // A request that hangs fails its test instead of the whole run.
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .unwrap()
    }

    pub async fn call(
        &self,
        client: &Client,
        function: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let res = client
            .post(self.url(&format!("/api/{function}")))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    pub async fn setup_admin(&self) -> Client {
        let c = self.client();
        let (status, body) = self
            .call(
                &c,
                "create_first_admin",
                &[
                    ("email", "admin@example.com"),
                    ("password", ADMIN_PW),
                    ("confirm_password", ADMIN_PW),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        c
    }

    /// Creates a user (as `admin`) and returns a client signed in as them.
    pub async fn user(&self, admin: &Client, email: &str, role: &str) -> Client {
        let (status, body) = self
            .call(
                admin,
                "create_user",
                &[("email", email), ("role", role), ("password", USER_PW)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let c = self.client();
        let (status, body) = self
            .call(&c, "sign_in", &[("email", email), ("password", USER_PW)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        c
    }

    pub async fn user_id(&self, email: &str) -> i64 {
        engine::users::list_users(&self.db.db)
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.email == email)
            .unwrap()
            .id
            .get()
    }
}

pub const ADMIN_PW: &str = "admin password 1";
pub const USER_PW: &str = "user password 1";

/// Tests are quiet unless `TEST_LOG` is set (then it is the log filter).
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if let Ok(filter) = std::env::var("TEST_LOG") {
        ONCE.call_once(|| {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(if filter.is_empty() {
                    "info"
                } else {
                    &filter
                }))
                .with_test_writer()
                .try_init();
        });
    }
}

// Adding a Constant Contact connection over HTTP, as an admin's browser would.

pub fn plain() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// "Authenticate with Constant Contact": returns the sandbox URL.
pub async fn start(app: &TestApp, admin: &Client, name: &str) -> String {
    let (status, body) = app
        .call(
            admin,
            "start_connect",
            &[
                ("display_name", name),
                ("usable_by", "admins_and_contributors"),
                ("agree", "on"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str::<String>(&body).unwrap()
}

/// Plays the admin at the sandbox's consent page; returns our callback URL
/// with Constant Contact's answer.
pub async fn consent(url: &str, decision: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let mut form: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    form.extend([
        ("username".to_owned(), "demo@example.com".to_owned()),
        ("password".to_owned(), "demo-password".to_owned()),
        ("decision".to_owned(), decision.to_owned()),
    ]);
    let res = plain().post(base).form(&form).send().await.unwrap();
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// Follows the callback with the admin's session; returns where it sends us.
pub async fn callback(admin: &Client, url: &str) -> String {
    let res = admin.get(url).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        res.text().await
    );
    res.headers()["location"].to_str().unwrap().to_owned()
}

pub async fn add_connection(app: &TestApp, admin: &Client, name: &str) -> Value {
    let url = start(app, admin, name).await;
    let back = consent(&url, "allow").await;
    assert_eq!(
        callback(admin, &back).await,
        "/admin/connections/new/constant-contact"
    );
    assert_eq!(
        app.call(admin, "add_export_user", &[]).await.0,
        StatusCode::OK
    );
    let (status, body) = app
        .call(
            admin,
            "save_connection",
            &[
                ("display_name", name),
                ("usable_by", "admins_and_contributors"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A server function, its form, and the lowest role level it serves.
pub type Gated<'a> = (&'a str, Vec<(&'a str, &'a str)>, u8);

/// The signed-in clients of a role matrix: anonymous, viewer, contributor
/// and admin, in that order (levels 0 to 3).
pub struct Callers<'a> {
    pub anonymous: &'a Client,
    pub viewer: &'a Client,
    pub contributor: &'a Client,
    pub admin: &'a Client,
}

/// Calls every function as each caller: callers at or above the function's
/// level (1 viewer, 2 contributor, 3 admin) are let through, lower ones get
/// 403, and anonymous callers get 401.
pub async fn assert_role_matrix(app: &TestApp, callers: &Callers<'_>, functions: &[Gated<'_>]) {
    for (function, form, needed) in functions {
        for (client, level, who) in [
            (callers.anonymous, 0u8, "anonymous"),
            (callers.viewer, 1, "viewer"),
            (callers.contributor, 2, "contributor"),
            (callers.admin, 3, "admin"),
        ] {
            let (status, body) = app.call(client, function, form).await;
            if level >= *needed {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{function} as {who}: {status} {body}"
                );
            } else if level == 0 {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{function} as {who}: {body}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{function} as {who}: {body}");
            }
        }
    }
}
