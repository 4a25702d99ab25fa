//! The audit log: who did what to which object, and when.

use crate::db::{col, Db};
use crate::error::Result;
use crate::time::now_ms;

/// Who did it, as the log records them (a signed-in user; the command line
/// and demo data record none). The log knows nothing else about users.
pub trait Actor {
    fn id(&self) -> i64;
    fn email(&self) -> &str;
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: i64,
    pub actor_email: Option<String>,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// Writes an entry inside the caller's transaction, so it commits (or not)
/// with the change it describes.
pub async fn record<A: Actor + Sync>(
    conn: &mut sqlx::AnyConnection,
    actor: Option<&A>,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor_email, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now_ms())
    .bind(actor.map(|a| a.id()))
    .bind(actor.map(|a| a.email().to_owned()))
    .bind(action)
    .bind(target)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Which entries to show: each part narrows, empty parts do not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Part of the actor's email ("command line" for entries without one).
    pub who: String,
    /// Part of the action (`api_token.create` reads as "api token
    /// create"), its object or its details.
    pub what: String,
    /// Entries at or after (Unix ms).
    pub since: Option<i64>,
    /// Entries before (Unix ms).
    pub until: Option<i64>,
}

/// `text` as a LIKE pattern that matches it anywhere, as typed.
pub(crate) fn contains_pattern(text: &str) -> String {
    format!(
        "%{}%",
        text.trim()
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// The newest entries first.
pub async fn recent(db: &Db, limit: i64) -> Result<Vec<Entry>> {
    search(db, &Filter::default(), limit).await
}

/// The newest entries that pass `filter`, at most `limit`.
pub async fn search(db: &Db, filter: &Filter, limit: i64) -> Result<Vec<Entry>> {
    let who = contains_pattern(&filter.who);
    let what = contains_pattern(&filter.what);
    let rows = sqlx::query(
        "SELECT at, actor_email, action, target, detail FROM audit_log \
         WHERE LOWER(COALESCE(actor_email, 'command line')) LIKE $1 ESCAPE '\\' \
           AND (LOWER(REPLACE(REPLACE(action, '_', ' '), '.', ' ')) LIKE $2 ESCAPE '\\' \
                OR LOWER(target) LIKE $2 ESCAPE '\\' \
                OR LOWER(detail) LIKE $2 ESCAPE '\\') \
           AND at >= $3 AND at < $4 \
         ORDER BY id DESC LIMIT $5",
    )
    .bind(who)
    .bind(what)
    .bind(filter.since.unwrap_or(i64::MIN))
    .bind(filter.until.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Entry {
                at: col(r, "at")?,
                actor_email: col(r, "actor_email")?,
                action: col(r, "action")?,
                target: col(r, "target")?,
                detail: col(r, "detail")?,
            })
        })
        .collect()
}
