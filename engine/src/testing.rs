//! Test support: a fresh, migrated database per test, on the backend the
//! test run asks for. `TEST_DATABASE=postgres` (with `TEST_POSTGRES_URL`)
//! selects PostgreSQL, where each test gets its own database that is
//! dropped afterwards; otherwise each test gets its own SQLite file.

use crate::db::Db;

/// Which backend this test run uses, from `TEST_DATABASE`.
pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_DATABASE").as_deref() {
        Ok("postgres") => Some(
            std::env::var("TEST_POSTGRES_URL")
                .unwrap_or_else(|_| String::from("postgres://postgres@127.0.0.1:5432/postgres")),
        ),
        _ => None,
    }
}

/// A database that lives as long as the test.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    drop_pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> Self {
        match postgres_url() {
            Some(admin_url) => {
                let name = format!("se_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Db::connect(&admin_url)
                    .await
                    .expect("connect to TEST_POSTGRES_URL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin.pool())
                    .await
                    .expect("create test database");
                admin.close().await;
                let mut url = url::Url::parse(&admin_url).expect("TEST_POSTGRES_URL is a URL");
                url.set_path(&name);
                let url = url.to_string();
                let db = Db::connect(&url).await.expect("connect to test database");
                db.migrate().await.expect("migrate test database");
                TestDb {
                    db,
                    url,
                    _dir: None,
                    drop_pg: Some((admin_url, name)),
                }
            }
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                let db = Db::connect(&url).await.expect("open test database");
                db.migrate().await.expect("migrate test database");
                TestDb {
                    db,
                    url,
                    _dir: Some(dir),
                    drop_pg: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.drop_pg.take() else {
            return;
        };
        // Drop runs outside async: drop the database from a thread with its
        // own runtime. FORCE ends the pool's connections that may remain.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = Db::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(admin.pool())
                        .await;
                    admin.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}
