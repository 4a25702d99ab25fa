//! Storage: one `sqlx::Any` pool serves both backends.
//!
//! How queries serve two backends: every query is a runtime query
//! (`sqlx::query`) with `$1, $2, …` placeholders, which SQLite and
//! PostgreSQL both accept, and uses only types `Any` can carry (`BIGINT`,
//! `TEXT`, `DOUBLE`, booleans). Timestamps are Unix milliseconds. Flags are
//! `BOOLEAN` on PostgreSQL and `INTEGER` 0/1 on SQLite, because `Any` cannot
//! decode SQLite's `BOOLEAN`; [`flag`] reads either. The
//! schema lives in one migration folder per backend
//! (`migrations/sqlite`, `migrations/postgres`) because DDL differs; where
//! a statement must differ (row locking, say) the code branches on
//! [`Db::backend`]. The export's member stream, a million rows a run,
//! runs on the backend's own pool instead ([`Db::typed`]): converting
//! each row to `Any` cost more than reading it. Every database test runs
//! against both backends.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{AnyPool, Connection, Executor};

use crate::error::{Error, Result};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Rows a SQLite connection's worker thread may read ahead of the task
/// that takes them (sqlx's default is 50). SQLite runs on a thread of its
/// own and hands rows over one by one; with room for a whole page the
/// worker is not stopped and woken every few rows (a re-run took 11% less
/// time).
const ROW_BUFFER: usize = 8_192;

/// Rows written at once from which a table's statistics are refreshed
/// ([`Db::refresh_statistics`]).
pub(crate) const BULK_ROWS: usize = 10_000;

/// What a [`Db::lock`] serialises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum Lock {
    /// Changes to users' roles and activity (the last-admin guard).
    Users = 0x5e6_0001,
}

/// Settings of every PostgreSQL connection. Statements are prepared once
/// per connection; after five runs PostgreSQL may switch one to a generic
/// plan that ignores the parameters, and for the member stream's keyset
/// pages (`profile_id > $1` joined with the ledger) that plan was a scan:
/// pages of 5,000 took 30 s or more in a long-lived connection against
/// 128 ms in a fresh one. Custom plans are made for each execution's
/// parameters, so a page costs the same in every connection.
const PG_SESSION: &str = "SET plan_cache_mode = force_custom_plan";

/// Which database the process talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a `DATABASE_URL` names.
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(Error::invalid(
                "database_url",
                "DATABASE_URL must start with sqlite: or postgres:",
            ))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The backend's own pool, kept for what needs a typed pool (migrations,
/// the session store) and for the export's member stream, the one query
/// whose rows are too many to convert through `Any`.
#[derive(Clone, Debug)]
pub enum TypedPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    typed: TypedPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url`. A SQLite file (and its directory) is created if
    /// missing and switched to WAL with foreign keys on.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let typed = match backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    .row_buffer_size(ROW_BUFFER);
                create_private(options.get_filename())?;
                TypedPool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .connect_with(options)
                        .await?,
                )
            }
            Backend::Postgres => TypedPool::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(PG_SESSION).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?,
            ),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Per-connection settings: the file was switched to WAL
                        // above, which persists.
                        conn.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                            .await?;
                    } else {
                        conn.execute(PG_SESSION).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(Db {
            pool,
            typed,
            backend,
        })
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<()> {
        match &self.typed {
            TypedPool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            TypedPool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Migrations this build knows that the database has not applied
    /// (successfully): none means the schema is what the code expects.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.pool)
                .await?;
        Ok(migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// The pool every query of the engine runs on.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn typed(&self) -> &TypedPool {
        &self.typed
    }

    /// A PostgreSQL connection of its own, outside the pools, with the
    /// pools' settings, for a read that lasts as long as a run (the member
    /// stream): held from a pool, a few runs would leave none for sessions
    /// and could wait on each other. Closed when dropped.
    pub(crate) async fn own_connection(pool: &PgPool) -> Result<PgConnection> {
        let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
        conn.execute(PG_SESSION).await?;
        Ok(conn)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Serialises the transaction on `conn` with every other one that
    /// takes the same `lock`, until it ends: a transaction-scoped advisory
    /// lock on PostgreSQL; on SQLite, a write first thing, which takes the
    /// database's write lock (the others wait their turn under the busy
    /// timeout instead of failing to upgrade a read). Checks that read
    /// before they write (the last administrator, say) need it: under
    /// PostgreSQL's read committed, two of them would each see the other's
    /// row as it was.
    pub async fn lock(&self, conn: &mut sqlx::AnyConnection, lock: Lock) -> Result<()> {
        match self.backend {
            Backend::Postgres => {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock as i64)
                    .execute(&mut *conn)
                    .await?;
            }
            Backend::Sqlite => {
                sqlx::query("UPDATE setup SET completed_at = completed_at WHERE id = -1")
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Refreshes PostgreSQL's statistics of `tables` after a bulk write.
    /// Autovacuum gets there, but minutes later; until then the planner
    /// takes a freshly loaded table for an empty one and reads a 5,000-row
    /// page of an export's members by a bitmap scan and a sort (a second a
    /// page at 300,000 profiles) instead of its index (66 ms). SQLite's
    /// planner needs no statistics for these queries. A failure is logged,
    /// never returned: the write it follows has been committed.
    pub(crate) async fn refresh_statistics(&self, tables: &[&str]) {
        if self.backend != Backend::Postgres || tables.is_empty() {
            return;
        }
        let statement = format!("ANALYZE {}", tables.join(", "));
        if let Err(e) = sqlx::query(&statement).execute(&self.pool).await {
            tracing::warn!(error = %e, ?tables, "could not refresh table statistics");
        }
    }

    /// Placeholders for a statement with many parameters (bulk writes,
    /// long `IN` lists); see [`Placeholders`].
    pub(crate) fn placeholders(&self) -> Placeholders {
        Placeholders {
            numbered: self.backend == Backend::Postgres,
            next: 0,
        }
    }

    /// Closes every connection (tests drop their database afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
        match &self.typed {
            TypedPool::Sqlite(p) => p.close().await,
            TypedPool::Postgres(p) => p.close().await,
        }
    }
}

/// Creates a missing SQLite file (and its directory) readable by the owner
/// only: it holds sessions, sealed tokens and every profile. SQLite gives
/// its `-wal` and `-shm` files the same permissions.
fn create_private(path: &std::path::Path) -> Result<()> {
    if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") || path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir)?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        // Another process made it first: fine.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the placeholders of one statement, in bind order: `$1, $2, …`
/// on PostgreSQL, plain `?` on SQLite. Numbered parameters cost SQLite
/// dear in bulk: for each one sqlx asks SQLite its name, which SQLite
/// finds by a linear scan, so binding n of them takes n² steps (half of a
/// million-contact export's CPU went there with 3,000 per statement).
/// Every value is bound in the order its placeholder was written.
pub(crate) struct Placeholders {
    numbered: bool,
    next: usize,
}

impl Placeholders {
    /// One placeholder.
    pub(crate) fn one(&mut self) -> String {
        if self.numbered {
            self.next += 1;
            format!("${}", self.next)
        } else {
            String::from("?")
        }
    }

    /// `n` placeholders, comma-separated (an `IN` list).
    pub(crate) fn list(&mut self, n: usize) -> String {
        (0..n).map(|_| self.one()).collect::<Vec<_>>().join(",")
    }

    /// `rows` groups of `cols` placeholders (a multi-row `VALUES`).
    pub(crate) fn rows(&mut self, rows: usize, cols: usize) -> String {
        (0..rows)
            .map(|_| format!("({})", self.list(cols)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Reads a column, turning a decoding failure into an internal error.
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get(name).map_err(Error::from)
}

/// Reads a boolean column: `BOOLEAN` on PostgreSQL, `INTEGER` 0/1 on SQLite.
pub(crate) fn flag(row: &AnyRow, name: &str) -> Result<bool> {
    use sqlx::Row;
    match row.try_get::<bool, _>(name) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<i64, _>(name)? != 0),
    }
}
