//! Users, roles and signing in.

use sqlx::any::AnyRow;
use sqlx::Acquire;

use crate::audit;
use crate::db::{col, flag, Db, Lock};
use crate::error::{Error, Result};
use crate::password::{self, Password};
use crate::time::now_ms;
use crate::UserId;

/// Failed sign-ins allowed for one email from one client address within
/// [`FAILURE_WINDOW_MS`]; further attempts are refused until it ends.
pub const MAX_FAILURES: i64 = 5;
/// The window failures are counted in (from the first), and so the
/// longest a lockout lasts.
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// What a user may do (shared with the browser).
pub use types::Role;

/// An email address, trimmed and lower-cased, with a plausible shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self> {
        let email = raw.trim().to_lowercase();
        let bad = |m: &str| Err(Error::invalid("email", m));
        if email.is_empty() {
            return bad("Enter an email address.");
        }
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("Enter a valid email address.");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return bad("Enter a valid email address.");
        };
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return bad("Enter a valid email address.");
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user as the rest of the product sees it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
}

impl audit::Actor for User {
    fn id(&self) -> i64 {
        self.id.get()
    }

    fn email(&self) -> &str {
        &self.email
    }
}

const USER_COLUMNS: &str = "id, email, role, active, created_at, last_sign_in_at";

fn user_from_row(row: &AnyRow) -> Result<User> {
    let role: String = col(row, "role")?;
    Ok(User {
        id: col(row, "id")?,
        email: col(row, "email")?,
        role: Role::parse(&role).map_err(|_| Error::internal(format!("bad role {role:?}")))?,
        active: flag(row, "active")?,
        created_at: col(row, "created_at")?,
        last_sign_in_at: col(row, "last_sign_in_at")?,
    })
}

/// True until the first administrator exists; from then on, for good.
pub async fn needs_setup(db: &Db) -> Result<bool> {
    let done: Option<i64> = sqlx::query_scalar("SELECT completed_at FROM setup WHERE id = 1")
        .fetch_optional(db.pool())
        .await?;
    Ok(done.is_none())
}

async fn insert_user(
    conn: &mut sqlx::AnyConnection,
    email: &Email,
    role: Role,
    hash: &str,
    created_by: Option<UserId>,
) -> Result<User> {
    let row = sqlx::query(&format!(
        "INSERT INTO users (email, role, password_hash, active, created_at, created_by) \
         VALUES ($1, $2, $3, TRUE, $4, $5) RETURNING {USER_COLUMNS}"
    ))
    .bind(email.as_str())
    .bind(role.as_str())
    .bind(hash)
    .bind(now_ms())
    .bind(created_by)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match e {
        // The only unique constraint on users besides the key is the email.
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::invalid("email", "A user with this email already exists.")
        }
        other => Error::from(other),
    })?;
    user_from_row(&row)
}

/// Creates the first administrator. Fails with [`Error::AlreadySetUp`]
/// once any administrator has been created this way, even concurrently.
pub async fn create_first_admin(db: &Db, email: &Email, password: &Password) -> Result<User> {
    if !needs_setup(db).await? {
        return Err(Error::AlreadySetUp);
    }
    let hash = password::hash(password).await?;
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    // The single-row `setup` table is the lock: a second concurrent setup
    // fails on its primary key and rolls back its user.
    let claimed = sqlx::query(
        "INSERT INTO setup (id, completed_at) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
    )
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() != 1 {
        return Err(Error::AlreadySetUp);
    }
    let user = insert_user(&mut tx, email, Role::Admin, &hash, None).await?;
    audit::record(
        &mut tx,
        Some(&user),
        "user.create_first_admin",
        &user.email,
        "role admin",
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Creates a user on behalf of `actor` (an administrator; `None` for the
/// command line).
pub async fn create_user(
    db: &Db,
    actor: Option<&User>,
    email: &Email,
    role: Role,
    password: &Password,
) -> Result<User> {
    let hash = password::hash(password).await?;
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    let user = insert_user(&mut tx, email, role, &hash, actor.map(|a| a.id)).await?;
    audit::record(
        &mut tx,
        actor,
        "user.create",
        &user.email,
        &format!("role {role}"),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Every user, administrators first, then by email.
pub async fn list_users(db: &Db) -> Result<Vec<User>> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY CASE role WHEN 'admin' THEN 0 WHEN 'contributor' THEN 1 ELSE 2 END, email"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(user_from_row).collect()
}

pub async fn get_user(db: &Db, id: UserId) -> Result<Option<User>> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Changes a user's role, refusing to demote the last active administrator.
pub async fn set_role(db: &Db, actor: &User, user_id: UserId, role: Role) -> Result<User> {
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    db.lock(&mut tx, Lock::Users).await?;
    let target = get_user_in(&mut tx, user_id)
        .await?
        .ok_or(Error::NotFound("The user"))?;
    if target.role == Role::Admin && role != Role::Admin && target.active {
        ensure_another_admin(&mut tx, user_id.get(), "change the role of").await?;
    }
    sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
        .bind(role.as_str())
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        Some(actor),
        "user.set_role",
        &target.email,
        &format!("{} -> {role}", target.role),
    )
    .await?;
    let updated = get_user_in(&mut tx, user_id)
        .await?
        .ok_or(Error::NotFound("The user"))?;
    tx.commit().await?;
    Ok(updated)
}

/// Deactivates or reactivates a user, refusing to deactivate the last
/// active administrator. Deactivation ends the user's sessions: they are
/// deleted, and any signed in before now stays invalid, so reactivating
/// the user does not revive an old cookie.
pub async fn set_active(db: &Db, actor: &User, user_id: UserId, active: bool) -> Result<User> {
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    // Two admins deactivating each other at once must not both pass the
    // last-admin check.
    db.lock(&mut tx, Lock::Users).await?;
    let target = get_user_in(&mut tx, user_id)
        .await?
        .ok_or(Error::NotFound("The user"))?;
    if !active && target.role == Role::Admin && target.active {
        ensure_another_admin(&mut tx, user_id.get(), "deactivate").await?;
    }
    if active {
        sqlx::query("UPDATE users SET active = $1 WHERE id = $2")
            .bind(active)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query("UPDATE users SET active = $1, sessions_valid_after = $2 WHERE id = $3")
            .bind(active)
            .bind(now_ms())
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    }
    let action = if active {
        "user.reactivate"
    } else {
        "user.deactivate"
    };
    audit::record(&mut tx, Some(actor), action, &target.email, "").await?;
    let updated = get_user_in(&mut tx, user_id)
        .await?
        .ok_or(Error::NotFound("The user"))?;
    tx.commit().await?;
    if !active {
        let ended = crate::sessions::end_all_for_user(db, user_id).await?;
        tracing::info!(
            user_id = %user_id,
            sessions = ended,
            "deactivated user's sessions ended"
        );
    }
    Ok(updated)
}

/// True when a session that signed in at `signed_in_at` (Unix ms) may
/// still act for `user_id`: the user exists, is active and has not been
/// deactivated since.
pub async fn session_user(db: &Db, user_id: UserId, signed_in_at: i64) -> Result<Option<User>> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS}, sessions_valid_after FROM users WHERE id = $1"
    ))
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let valid_after: i64 = col(&row, "sessions_valid_after")?;
    let user = user_from_row(&row)?;
    Ok((user.active && signed_in_at >= valid_after).then_some(user))
}

async fn get_user_in(conn: &mut sqlx::AnyConnection, id: UserId) -> Result<Option<User>> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

async fn ensure_another_admin(
    conn: &mut sqlx::AnyConnection,
    except: i64,
    verb: &str,
) -> Result<()> {
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND active = TRUE AND id <> $1",
    )
    .bind(except)
    .fetch_one(&mut *conn)
    .await?;
    if others == 0 {
        return Err(Error::Conflict(format!(
            "You cannot {verb} the last active administrator. Make another user an administrator first."
        )));
    }
    Ok(())
}

/// Checks an email and password from `client` (the caller's address).
/// Unknown emails and wrong passwords cost the same and get the same
/// error. Each attempt is counted before its password is checked, in one
/// statement, so parallel attempts cannot slip past the limit: after
/// [`MAX_FAILURES`] within the window, that email is locked out for that
/// client until the window ends. Other clients (the account's owner) can
/// still sign in.
pub async fn authenticate(db: &Db, email: &str, password: &Password, client: &str) -> Result<User> {
    let key = email.trim().to_lowercase();
    let now = now_ms();
    let (attempts, window_started_at) = count_attempt(db, &key, client, now).await?;
    if attempts > MAX_FAILURES {
        let until = window_started_at + FAILURE_WINDOW_MS;
        return Err(Error::LockedOut {
            minutes: ((until - now).max(0) + 59_999) / 60_000,
        });
    }

    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1"
    ))
    .bind(&key)
    .fetch_optional(db.pool())
    .await?;
    let (user, hash) = match &row {
        Some(r) => (
            Some(user_from_row(r)?),
            Some(col::<String>(r, "password_hash")?),
        ),
        None => (None, None),
    };
    if !password::verify(password, hash).await? {
        return Err(Error::InvalidCredentials);
    }
    let user = user.ok_or(Error::InvalidCredentials)?;
    if !user.active {
        return Err(Error::Deactivated);
    }
    sqlx::query("DELETE FROM sign_in_attempts WHERE email = $1 AND client = $2")
        .bind(&key)
        .bind(client)
        .execute(db.pool())
        .await?;
    sqlx::query("UPDATE users SET last_sign_in_at = $1 WHERE id = $2")
        .bind(now)
        .bind(user.id)
        .execute(db.pool())
        .await?;
    Ok(User {
        last_sign_in_at: Some(now),
        ..user
    })
}

/// Counts one attempt for (email, client) and returns the attempts in the
/// current window with its start. One statement: concurrent attempts each
/// get their own count. A new window starts when the old one has passed.
async fn count_attempt(db: &Db, key: &str, client: &str, now: i64) -> Result<(i64, i64)> {
    let row = sqlx::query(
        "INSERT INTO sign_in_attempts (email, client, attempts, window_started_at) \
         VALUES ($1, $2, 1, $3) \
         ON CONFLICT (email, client) DO UPDATE SET \
           attempts = CASE WHEN sign_in_attempts.window_started_at < $4 THEN 1 ELSE sign_in_attempts.attempts + 1 END, \
           window_started_at = CASE WHEN sign_in_attempts.window_started_at < $4 THEN $3 ELSE sign_in_attempts.window_started_at END \
         RETURNING attempts, window_started_at",
    )
    .bind(key)
    .bind(client)
    .bind(now)
    .bind(now - FAILURE_WINDOW_MS)
    .fetch_one(db.pool())
    .await?;
    Ok((col(&row, "attempts")?, col(&row, "window_started_at")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_what_they_allow() {
        assert!(Role::Admin.allows(Role::Contributor));
        assert!(Role::Contributor.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Contributor));
        assert!(!Role::Contributor.allows(Role::Admin));
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn unknown_role_is_refused() {
        assert!(Role::parse("owner").is_err());
        assert_eq!(Role::parse("viewer").unwrap(), Role::Viewer);
    }
}
