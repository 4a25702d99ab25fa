//! API tokens: how other tools call the REST API. An administrator
//! creates a token with a name and a role; its secret is shown once and
//! only its SHA-256 is stored. A token acts for the administrator who made
//! it, with its own role capped by that administrator's role now: a token
//! of a deactivated or demoted administrator loses what they lost.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Acquire;

use crate::audit;
use crate::db::{col, flag, Db};
use crate::error::{Error, Result};
use crate::policy;
use crate::time::now_ms;
use crate::users::{Role, User};
use crate::{ExportId, RunId};

/// What every secret starts with, so that one found in a log or a
/// repository is recognised for what it is.
pub const SECRET_PREFIX: &str = "sxp_";

/// A token as lists show it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The secret's first characters (`sxp_AbCd…`).
    pub prefix: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A token just created, with its secret: shown once, never again.
#[derive(Debug, Clone)]
pub struct Created {
    pub token: Token,
    pub secret: String,
}

/// Who is calling: the token, and the user it acts as (the creator, with
/// the token's role capped by theirs).
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: Token,
    pub user: User,
}

fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const COLUMNS: &str = "t.id, t.name, t.role, t.prefix, u.email AS created_by, t.created_at, \
     t.last_used_at, t.revoked_at";

fn from_row(row: &AnyRow) -> Result<Token> {
    let role: String = col(row, "role")?;
    Ok(Token {
        id: col(row, "id")?,
        name: col(row, "name")?,
        role: Role::parse(&role)?,
        prefix: col(row, "prefix")?,
        created_by: col(row, "created_by")?,
        created_at: col(row, "created_at")?,
        last_used_at: col(row, "last_used_at")?,
        revoked_at: col(row, "revoked_at")?,
    })
}

/// Creates a token (administrators only).
pub async fn create(db: &Db, actor: &User, name: &str, role: Role) -> Result<Created> {
    policy::administer(actor)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "Enter a name for the token."));
    }
    if name.chars().count() > 100 {
        return Err(Error::invalid(
            "name",
            "The name can be at most 100 characters.",
        ));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let prefix: String = secret.chars().take(SECRET_PREFIX.len() + 6).collect();
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (name, role, prefix, secret_hash, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(&prefix)
    .bind(hash(&secret))
    .bind(actor.id)
    .bind(now_ms())
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        Some(actor),
        "api_token.create",
        name,
        &format!("role {role}, {prefix}…"),
    )
    .await?;
    tx.commit().await?;
    let token = get(db, id).await?.ok_or(Error::NotFound("The token"))?;
    Ok(Created { token, secret })
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Token>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_tokens t LEFT JOIN users u ON u.id = t.created_by WHERE t.id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every token, newest first, revoked ones too (administrators only).
pub async fn list(db: &Db, actor: &User) -> Result<Vec<Token>> {
    policy::administer(actor)?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_tokens t LEFT JOIN users u ON u.id = t.created_by \
         ORDER BY t.id DESC"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Revokes a token: from now on it is refused (administrators only).
pub async fn revoke(db: &Db, actor: &User, id: i64) -> Result<Token> {
    policy::administer(actor)?;
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING name",
    )
    .bind(now_ms())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = done else {
        drop(tx);
        return match get(db, id).await? {
            Some(_) => Err(Error::Conflict(String::from(
                "This token has already been revoked.",
            ))),
            None => Err(Error::NotFound("The token")),
        };
    };
    let name: String = col(&row, "name")?;
    audit::record(&mut tx, Some(actor), "api_token.revoke", &name, "").await?;
    tx.commit().await?;
    get(db, id).await?.ok_or(Error::NotFound("The token"))
}

/// The caller presenting `secret`: `None` for an unknown or revoked token,
/// or one whose administrator was deactivated. Records the use.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Option<Caller>> {
    if !secret.starts_with(SECRET_PREFIX) || secret.len() > 100 {
        return Ok(None);
    }
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, t.created_by AS user_id, u.role AS user_role, u.active AS user_active, \
                u.created_at AS user_created_at, u.last_sign_in_at AS user_last_sign_in_at \
         FROM api_tokens t JOIN users u ON u.id = t.created_by \
         WHERE t.secret_hash = $1"
    ))
    .bind(hash(secret))
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let token = from_row(&row)?;
    let active = flag(&row, "user_active")?;
    if token.revoked_at.is_some() || !active {
        return Ok(None);
    }
    let user_role: String = col(&row, "user_role")?;
    let role = token.role.min(Role::parse(&user_role)?);
    let user = User {
        id: col(&row, "user_id")?,
        // As the audit log and run messages name the caller.
        email: format!(
            "{} (API token \u{201c}{}\u{201d})",
            token.created_by.as_deref().unwrap_or(""),
            token.name
        ),
        role,
        active,
        created_at: col(&row, "user_created_at")?,
        last_sign_in_at: col(&row, "user_last_sign_in_at")?,
    };
    // Last use to the minute: one write a minute per token at most.
    let now = now_ms();
    if token.last_used_at.is_none_or(|at| now - at >= 60_000) {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(token.id)
            .execute(db.pool())
            .await?;
    }
    Ok(Some(Caller { token, user }))
}

/// The run an earlier trigger with the same idempotency key queued.
pub enum Claim {
    /// The key is new: trigger, then [`remember`] the run.
    New,
    /// The same key already queued this run.
    Done(RunId),
}

/// Claims an idempotency key for a trigger of `export_id` in `mode`. The
/// same key again answers with the first run; with another export or mode
/// it is refused, and while the first request is still in progress too.
pub async fn claim_key(
    db: &Db,
    token_id: i64,
    key: &str,
    export_id: ExportId,
    mode: &str,
) -> Result<Claim> {
    if key.is_empty() || key.len() > 200 {
        return Err(Error::invalid(
            "Idempotency-Key",
            "The Idempotency-Key must be 1 to 200 characters.",
        ));
    }
    let now = now_ms();
    sqlx::query("DELETE FROM api_idempotency WHERE created_at < $1")
        .bind(now - 86_400_000)
        .execute(db.pool())
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO api_idempotency (token_id, key, export_id, mode, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_id, key) DO NOTHING",
    )
    .bind(token_id)
    .bind(key)
    .bind(export_id)
    .bind(mode)
    .bind(now)
    .execute(db.pool())
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let row = sqlx::query(
        "SELECT export_id, mode, run_id FROM api_idempotency WHERE token_id = $1 AND key = $2",
    )
    .bind(token_id)
    .bind(key)
    .fetch_one(db.pool())
    .await?;
    let (first_export, first_mode): (ExportId, String) =
        (col(&row, "export_id")?, col(&row, "mode")?);
    if first_export != export_id || first_mode != mode {
        return Err(Error::Conflict(String::from(
            "This Idempotency-Key was already used for another request.",
        )));
    }
    match col::<Option<RunId>>(&row, "run_id")? {
        Some(run) => Ok(Claim::Done(run)),
        None => Err(Error::Conflict(String::from(
            "A request with this Idempotency-Key is still in progress.",
        ))),
    }
}

/// Records the run a claimed key queued; `None` gives the key up (the
/// trigger failed, and the same key may be tried again).
pub async fn remember(db: &Db, token_id: i64, key: &str, run_id: Option<RunId>) -> Result<()> {
    match run_id {
        Some(run) => {
            sqlx::query("UPDATE api_idempotency SET run_id = $1 WHERE token_id = $2 AND key = $3")
                .bind(run)
                .bind(token_id)
                .bind(key)
                .execute(db.pool())
                .await?
        }
        None => {
            sqlx::query("DELETE FROM api_idempotency WHERE token_id = $1 AND key = $2")
                .bind(token_id)
                .bind(key)
                .execute(db.pool())
                .await?
        }
    };
    Ok(())
}
