//! Sessions are kept in the application's own database, through
//! `tower-sessions-sqlx-store`. The store type is chosen by backend at
//! start, so [`Store`] forwards to whichever one is in use, and records
//! which user each signed-in session belongs to, so that deactivating a
//! user can end their sessions.

use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use crate::db::{Db, TypedPool};
use crate::error::Result;
use crate::time::now_ms;
use crate::UserId;

/// The session key holding the signed-in user's id.
pub const USER_ID_KEY: &str = "user_id";
/// The session key holding when the user signed in (Unix ms); a session
/// signed in before the user's `sessions_valid_after` is over.
pub const SIGNED_IN_AT_KEY: &str = "signed_in_at";

#[derive(Clone, Debug)]
enum Inner {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

#[derive(Clone, Debug)]
pub struct Store {
    inner: Inner,
    db: Db,
}

impl Store {
    /// The session store for `db`, with its table created if missing.
    pub async fn for_db(db: &Db) -> Result<Self> {
        let store = Self::new(db);
        match &store.inner {
            Inner::Sqlite(s) => s.migrate().await?,
            Inner::Postgres(s) => s.migrate().await?,
        }
        Ok(store)
    }

    /// The store for `db`, whose table exists already.
    pub fn new(db: &Db) -> Self {
        let inner = match db.typed() {
            TypedPool::Sqlite(pool) => Inner::Sqlite(SqliteStore::new(pool.clone())),
            TypedPool::Postgres(pool) => Inner::Postgres(PostgresStore::new(pool.clone())),
        };
        Store {
            inner,
            db: db.clone(),
        }
    }

    /// Notes the user a new session belongs to, if it is signed in.
    async fn remember_owner(&self, record: &Record) -> session_store::Result<()> {
        let Some(user_id) = record.data.get(USER_ID_KEY).and_then(|v| v.as_i64()) else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO user_sessions (session_id, user_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (session_id) DO UPDATE SET user_id = $2",
        )
        .bind(record.id.to_string())
        .bind(user_id)
        .bind(now_ms())
        .execute(self.db.pool())
        .await
        .map_err(|e| session_store::Error::Backend(e.to_string()))?;
        Ok(())
    }
}

/// Deletes every session of `user_id` (deactivation). A request of theirs
/// already in flight may write its session back; `sessions_valid_after`
/// makes that one worthless too.
pub async fn end_all_for_user(db: &Db, user_id: UserId) -> Result<u64> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT session_id FROM user_sessions WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(db.pool())
            .await?;
    let store = Store::new(db);
    let mut ended = 0;
    for text in &ids {
        if let Ok(id) = text.parse::<Id>() {
            store
                .delete(&id)
                .await
                .map_err(|e| crate::Error::internal(format!("ending a session failed: {e}")))?;
            ended += 1;
        }
    }
    sqlx::query("DELETE FROM user_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(db.pool())
        .await?;
    Ok(ended)
}

#[async_trait]
impl SessionStore for Store {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match &self.inner {
            Inner::Sqlite(s) => s.create(record).await?,
            Inner::Postgres(s) => s.create(record).await?,
        }
        self.remember_owner(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match &self.inner {
            Inner::Sqlite(s) => s.save(record).await,
            Inner::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match &self.inner {
            Inner::Sqlite(s) => s.load(id).await,
            Inner::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match &self.inner {
            Inner::Sqlite(s) => s.delete(id).await?,
            Inner::Postgres(s) => s.delete(id).await?,
        }
        sqlx::query("DELETE FROM user_sessions WHERE session_id = $1")
            .bind(id.to_string())
            .execute(self.db.pool())
            .await
            .map_err(|e| session_store::Error::Backend(e.to_string()))?;
        Ok(())
    }
}

#[async_trait]
impl ExpiredDeletion for Store {
    async fn delete_expired(&self) -> session_store::Result<()> {
        let sessions_table = match &self.inner {
            Inner::Sqlite(s) => {
                s.delete_expired().await?;
                "tower_sessions"
            }
            Inner::Postgres(s) => {
                s.delete_expired().await?;
                "tower_sessions.session"
            }
        };
        // Owners of sessions the store has let expire.
        sqlx::query(&format!(
            "DELETE FROM user_sessions WHERE session_id NOT IN (SELECT id FROM {sessions_table})"
        ))
        .execute(self.db.pool())
        .await
        .map_err(|e| session_store::Error::Backend(e.to_string()))?;
        Ok(())
    }
}

/// Where a connection's draft waits between "Connect" and "Save" (see
/// [`crate::connect`]), as JSON: the user's session. `connect` knows this
/// trait, not the session library.
#[async_trait]
pub trait DraftStore: Send + Sync {
    async fn load_draft(&self) -> Result<Option<serde_json::Value>>;
    async fn store_draft(&self, draft: serde_json::Value) -> Result<()>;
    async fn discard_draft(&self) -> Result<()>;
}

/// The session key of the connection draft.
const DRAFT_KEY: &str = "constant_contact_draft";

/// The connection draft kept in the user's session, under one key.
#[async_trait]
impl DraftStore for tower_sessions::Session {
    async fn load_draft(&self) -> Result<Option<serde_json::Value>> {
        self.get::<serde_json::Value>(DRAFT_KEY)
            .await
            .map_err(|e| crate::Error::internal(format!("session: {e}")))
    }

    async fn store_draft(&self, draft: serde_json::Value) -> Result<()> {
        self.insert(DRAFT_KEY, draft)
            .await
            .map_err(|e| crate::Error::internal(format!("session: {e}")))
    }

    async fn discard_draft(&self) -> Result<()> {
        self.remove::<serde_json::Value>(DRAFT_KEY)
            .await
            .map_err(|e| crate::Error::internal(format!("session: {e}")))?;
        Ok(())
    }
}
