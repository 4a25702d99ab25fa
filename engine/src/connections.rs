//! Connections to Constant Contact accounts: who may use them, their
//! status, and their OAuth tokens, encrypted at rest.

use sqlx::any::AnyRow;
use sqlx::Acquire;

use crate::audit;
use crate::constant_contact::Tokens;
use crate::crypto::Cipher;
use crate::db::{col, Db};
use crate::error::{Error, Result};
use crate::time::now_ms;
use crate::users::{Role, User};
use crate::{ConnectionId, UserId};

/// The only connection type so far; the column keeps room for more.
pub const KIND_CONSTANT_CONTACT: &str = "constant_contact";

/// Who may use a connection for exports (an authorization rule, kept in
/// [`crate::policy`]).
pub use crate::policy::UsableBy;

/// Whether the connection can be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Authorized,
    /// The refresh token is no longer accepted: an admin must sign in again.
    NeedsReauthentication,
    /// Something else is wrong; `status_reason` says what.
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Authorized => "authorized",
            Status::NeedsReauthentication => "needs_reauth",
            Status::Error => "error",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "authorized" => Ok(Status::Authorized),
            "needs_reauth" => Ok(Status::NeedsReauthentication),
            "error" => Ok(Status::Error),
            other => Err(Error::internal(format!(
                "unknown connection status {other:?}"
            ))),
        }
    }
}

/// A display name: trimmed, 1–100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Error::invalid("display_name", "Enter a display name."));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(Error::invalid(
                "display_name",
                "The display name can be at most 100 characters.",
            ));
        }
        Ok(DisplayName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form that must be unique (case-insensitive).
    fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A connection as the product shows it (never its tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: ConnectionId,
    pub kind: String,
    pub display_name: String,
    pub usable_by: UsableBy,
    pub status: Status,
    pub status_reason: Option<String>,
    pub export_user_email: Option<String>,
    pub consent_by_email: Option<String>,
    pub consent_at: i64,
    pub authorized_at: Option<i64>,
    pub token_expires_at: i64,
    pub created_at: i64,
}

/// What saving a new connection needs.
#[derive(Debug)]
pub struct NewConnection {
    pub display_name: DisplayName,
    pub usable_by: UsableBy,
    /// When the admin agreed to the privacy and compliance statement.
    pub consent_at: i64,
    pub tokens: Tokens,
    /// The export user (the admin who added themselves).
    pub export_user_id: UserId,
}

const COLUMNS: &str = "c.id, c.kind, c.display_name, c.usable_by, c.status, c.status_reason, \
    eu.email AS export_user_email, cu.email AS consent_by_email, c.consent_at, c.authorized_at, \
    c.token_expires_at, c.created_at";
const FROM: &str = "FROM connections c \
    LEFT JOIN users eu ON eu.id = c.export_user_id \
    LEFT JOIN users cu ON cu.id = c.consent_by";

fn from_row(row: &AnyRow) -> Result<Connection> {
    let usable: String = col(row, "usable_by")?;
    let status: String = col(row, "status")?;
    Ok(Connection {
        id: col(row, "id")?,
        kind: col(row, "kind")?,
        display_name: col(row, "display_name")?,
        usable_by: UsableBy::parse(&usable)
            .map_err(|_| Error::internal(format!("bad usable_by {usable:?}")))?,
        status: Status::parse(&status)?,
        status_reason: col(row, "status_reason")?,
        export_user_email: col(row, "export_user_email")?,
        consent_by_email: col(row, "consent_by_email")?,
        consent_at: col(row, "consent_at")?,
        authorized_at: col(row, "authorized_at")?,
        token_expires_at: col(row, "token_expires_at")?,
        created_at: col(row, "created_at")?,
    })
}

fn name_taken(e: sqlx::Error) -> Error {
    match e {
        // The only unique constraint besides the key is the name's.
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::invalid(
            "display_name",
            "A connection with this name already exists.",
        ),
        other => Error::from(other),
    }
}

/// True when another connection (other than `except`) has this name.
pub async fn is_name_taken(
    db: &Db,
    name: &DisplayName,
    except: Option<ConnectionId>,
) -> Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM connections WHERE name_key = $1 AND id <> $2")
            .bind(name.key())
            .bind(except.map_or(-1, ConnectionId::get))
            .fetch_one(db.pool())
            .await?;
    Ok(n > 0)
}

/// Saves a new, authorized connection.
pub async fn create(
    db: &Db,
    cipher: &Cipher,
    actor: &User,
    new: NewConnection,
) -> Result<Connection> {
    let now = now_ms();
    let access = cipher.encrypt(&new.tokens.access_token)?;
    let refresh = new
        .tokens
        .refresh_token
        .as_ref()
        .map(|t| cipher.encrypt(t))
        .transpose()?;
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    let id: ConnectionId = sqlx::query_scalar(
        "INSERT INTO connections (kind, display_name, name_key, usable_by, status, consent_by, consent_at, \
           export_user_id, access_token_enc, refresh_token_enc, token_expires_at, scopes, authorized_at, \
           authorized_by, created_at, created_by, updated_at) \
         VALUES ($1, $2, $3, $4, 'authorized', $5, $6, $7, $8, $9, $10, $11, $12, $5, $12, $5, $12) RETURNING id",
    )
    .bind(KIND_CONSTANT_CONTACT)
    .bind(new.display_name.as_str())
    .bind(new.display_name.key())
    .bind(new.usable_by.as_str())
    .bind(actor.id)
    .bind(new.consent_at)
    .bind(new.export_user_id)
    .bind(access)
    .bind(refresh)
    .bind(new.tokens.expires_at)
    .bind(new.tokens.scopes.join(" "))
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(name_taken)?;
    audit::record(
        &mut tx,
        Some(actor),
        "connection.create",
        new.display_name.as_str(),
        &format!("Constant Contact; usable by {}", new.usable_by.as_str()),
    )
    .await?;
    tx.commit().await?;
    get(db, id).await?.ok_or(Error::NotFound("The connection"))
}

/// Every connection, by name.
pub async fn list(db: &Db) -> Result<Vec<Connection>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} {FROM} ORDER BY c.name_key"))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// The connections a user with `role` may use for exports.
pub async fn usable_by(db: &Db, role: Role) -> Result<Vec<Connection>> {
    Ok(list(db)
        .await?
        .into_iter()
        .filter(|c| c.usable_by.allows(role))
        .collect())
}

pub async fn get(db: &Db, id: ConnectionId) -> Result<Option<Connection>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Renames a connection or changes who may use it.
pub async fn update(
    db: &Db,
    actor: &User,
    id: ConnectionId,
    name: &DisplayName,
    usable_by: UsableBy,
) -> Result<Connection> {
    let before = get(db, id)
        .await?
        .ok_or(Error::NotFound("The connection"))?;
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("UPDATE connections SET display_name = $1, name_key = $2, usable_by = $3, updated_at = $4 WHERE id = $5")
        .bind(name.as_str())
        .bind(name.key())
        .bind(usable_by.as_str())
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(name_taken)?;
    let mut changes = Vec::new();
    if before.display_name != name.as_str() {
        changes.push(format!(
            "name {:?} -> {:?}",
            before.display_name,
            name.as_str()
        ));
    }
    if before.usable_by != usable_by {
        changes.push(format!(
            "usable by {} -> {}",
            before.usable_by.as_str(),
            usable_by.as_str()
        ));
    }
    audit::record(
        &mut tx,
        Some(actor),
        "connection.update",
        name.as_str(),
        &changes.join("; "),
    )
    .await?;
    tx.commit().await?;
    get(db, id).await?.ok_or(Error::NotFound("The connection"))
}

/// Stores a new token set (after re-authentication by `actor`, or a
/// refresh when `actor` is `None`) and marks the connection authorized.
pub async fn store_tokens(
    db: &Db,
    cipher: &Cipher,
    actor: Option<&User>,
    id: ConnectionId,
    tokens: &Tokens,
) -> Result<()> {
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    let updated = write_tokens(&mut tx, cipher, actor, id, tokens).await?;
    if !updated {
        return Err(Error::NotFound("The connection"));
    }
    if let Some(actor) = actor {
        let name: String = sqlx::query_scalar("SELECT display_name FROM connections WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            Some(actor),
            "connection.authorize",
            &name,
            "re-authenticated with Constant Contact",
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Writes a token set and marks the connection authorized; false when
/// there is no such connection.
async fn write_tokens(
    conn: &mut sqlx::AnyConnection,
    cipher: &Cipher,
    actor: Option<&User>,
    id: ConnectionId,
    tokens: &Tokens,
) -> Result<bool> {
    let access = cipher.encrypt(&tokens.access_token)?;
    let refresh = tokens
        .refresh_token
        .as_ref()
        .map(|t| cipher.encrypt(t))
        .transpose()?;
    let now = now_ms();
    let updated = sqlx::query(
        "UPDATE connections SET access_token_enc = $1, refresh_token_enc = $2, token_expires_at = $3, scopes = $4, \
           status = 'authorized', status_reason = NULL, updated_at = $5, \
           authorized_at = CASE WHEN $6 THEN $5 ELSE authorized_at END, \
           authorized_by = CASE WHEN $6 THEN $7 ELSE authorized_by END \
         WHERE id = $8",
    )
    .bind(access)
    .bind(refresh)
    .bind(tokens.expires_at)
    .bind(tokens.scopes.join(" "))
    .bind(now)
    .bind(actor.is_some())
    .bind(actor.map(|a| a.id))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(updated.rows_affected() > 0)
}

/// The connection's tokens, decrypted.
pub async fn tokens(db: &Db, cipher: &Cipher, id: ConnectionId) -> Result<Tokens> {
    let mut conn = db.pool().acquire().await?;
    read_tokens(&mut conn, cipher, id).await
}

async fn read_tokens(
    conn: &mut sqlx::AnyConnection,
    cipher: &Cipher,
    id: ConnectionId,
) -> Result<Tokens> {
    let row = sqlx::query("SELECT access_token_enc, refresh_token_enc, token_expires_at, scopes FROM connections WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(Error::NotFound("The connection"))?;
    let refresh: Option<String> = col(&row, "refresh_token_enc")?;
    let scopes: String = col(&row, "scopes")?;
    Ok(Tokens {
        access_token: cipher.decrypt(&col::<String>(&row, "access_token_enc")?)?,
        refresh_token: refresh.map(|r| cipher.decrypt(&r)).transpose()?,
        expires_at: col(&row, "token_expires_at")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
    })
}

/// A connection's row as the keeper of its tokens: every client of the
/// connection, in this process or another, refreshes through it, one at
/// a time, and a client that finds the tokens already refreshed takes
/// them instead of refreshing again.
pub struct KeptTokens {
    pub db: Db,
    pub cipher: Cipher,
    pub id: ConnectionId,
}

/// One lock per connection in this process, so that clients waiting for
/// another's refresh wait here rather than on the database.
fn local_lock(id: ConnectionId) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    locks.entry(id.get()).or_default().clone()
}

impl KeptTokens {
    async fn refresh_kept(
        &self,
        stale: &Tokens,
        oauth: &crate::constant_contact::OAuthClient,
    ) -> std::result::Result<Tokens, crate::constant_contact::CcError> {
        use crate::constant_contact::CcError;
        let stored = |e: Error| {
            tracing::error!(connection_id = %self.id, error = %e, "keeping a connection's tokens failed");
            CcError::TokenStorage
        };
        let local = local_lock(self.id);
        let _local = local.lock().await;
        let mut conn = self
            .db
            .pool()
            .acquire()
            .await
            .map_err(|e| stored(e.into()))?;
        let mut tx = conn.begin().await.map_err(|e| stored(e.into()))?;
        // Other processes wait here: the row on PostgreSQL, the database's
        // write lock on SQLite.
        let lock = match self.db.backend() {
            crate::Backend::Postgres => "SELECT id FROM connections WHERE id = $1 FOR UPDATE",
            crate::Backend::Sqlite => {
                "UPDATE connections SET updated_at = updated_at WHERE id = $1"
            }
        };
        sqlx::query(lock)
            .bind(self.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| stored(e.into()))?;
        let kept = read_tokens(&mut tx, &self.cipher, self.id)
            .await
            .map_err(stored)?;
        if kept.access_token != stale.access_token
            && !kept.expires_within(crate::constant_contact::api::REFRESH_MARGIN)
        {
            // Another client refreshed them meanwhile.
            return Ok(kept);
        }
        let Some(refresh_token) = kept.refresh_token.clone() else {
            return Err(CcError::NeedsReauthentication);
        };
        let fresh = oauth.refresh(&refresh_token).await?;
        write_tokens(&mut tx, &self.cipher, None, self.id, &fresh)
            .await
            .map_err(stored)?;
        tx.commit().await.map_err(|e| stored(e.into()))?;
        Ok(fresh)
    }
}

#[async_trait::async_trait]
impl crate::constant_contact::TokenKeeper for KeptTokens {
    async fn refresh(
        &self,
        stale: &Tokens,
        oauth: &crate::constant_contact::OAuthClient,
    ) -> std::result::Result<Tokens, crate::constant_contact::CcError> {
        self.refresh_kept(stale, oauth).await
    }
}

/// Records that the connection cannot be used, and why.
pub async fn set_status(
    db: &Db,
    id: ConnectionId,
    status: Status,
    reason: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE connections SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(status.as_str())
    .bind(reason)
    .bind(now_ms())
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Deletes a connection and its tokens; returns the tokens so the caller
/// can revoke them at Constant Contact.
pub async fn remove(
    db: &Db,
    cipher: &Cipher,
    actor: &User,
    id: ConnectionId,
) -> Result<(Connection, Option<Tokens>)> {
    let connection = get(db, id)
        .await?
        .ok_or(Error::NotFound("The connection"))?;
    // Unreadable tokens (a changed key) must not block removal.
    let tokens = tokens(db, cipher, id).await.ok();
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    crate::exports::disable_for_connection(&mut tx, id, &connection.display_name).await?;
    sqlx::query("DELETE FROM connections WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        Some(actor),
        "connection.remove",
        &connection.display_name,
        "tokens deleted",
    )
    .await?;
    tx.commit().await?;
    Ok((connection, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Newsletter  ").unwrap().as_str(),
            "Newsletter"
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
    }

    #[test]
    fn usable_by_decides_by_role() {
        assert!(UsableBy::Admins.allows(Role::Admin));
        assert!(!UsableBy::Admins.allows(Role::Contributor));
        assert!(UsableBy::AdminsAndContributors.allows(Role::Contributor));
        assert!(!UsableBy::AdminsAndContributors.allows(Role::Viewer));
    }
}
