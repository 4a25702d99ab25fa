//! Users, roles and signing in.

use std::fmt;

use sqlx::any::AnyRow;
use sqlx::Acquire;

use crate::audit;
use crate::db::{col, flag, Db};
use crate::error::{Error, Result};
use crate::password::{self, Password};
use crate::time::now_ms;

/// Failed sign-ins allowed within [`FAILURE_WINDOW_MS`] before a lockout.
pub const MAX_FAILURES: i64 = 5;
/// The window failures are counted in, and how long a lockout lasts.
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// What a user may do. Ordered: a higher role can do all a lower one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Contributor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Contributor, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Contributor => "contributor",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "admin" => Ok(Role::Admin),
            "contributor" => Ok(Role::Contributor),
            "viewer" => Ok(Role::Viewer),
            _ => Err(Error::invalid(
                "role",
                "The role must be admin, contributor or viewer.",
            )),
        }
    }

    /// True when this role includes everything `required` may do.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
}

const USER_COLUMNS: &str = "id, email, role, active, created_at, last_sign_in_at";

fn user_from_row(row: &AnyRow) -> Result<User> {
    let role: String = col(row, "role")?;
    Ok(User {
        id: col(row, "id")?,
        email: col(row, "email")?,
        role: Role::parse(&role).map_err(|_| Error::Internal(format!("bad role {role:?}")))?,
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
    created_by: Option<i64>,
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

pub async fn get_user(db: &Db, id: i64) -> Result<Option<User>> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Changes a user's role, refusing to demote the last active administrator.
pub async fn set_role(db: &Db, actor: &User, user_id: i64, role: Role) -> Result<User> {
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    let target = get_user_in(&mut tx, user_id)
        .await?
        .ok_or(Error::NotFound("The user"))?;
    if target.role == Role::Admin && role != Role::Admin && target.active {
        ensure_another_admin(&mut tx, user_id, "change the role of").await?;
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
/// active administrator. A deactivated user's sessions stop working at
/// their next request.
pub async fn set_active(db: &Db, actor: &User, user_id: i64, active: bool) -> Result<User> {
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    let target = get_user_in(&mut tx, user_id)
        .await?
        .ok_or(Error::NotFound("The user"))?;
    if !active && target.role == Role::Admin && target.active {
        ensure_another_admin(&mut tx, user_id, "deactivate").await?;
    }
    sqlx::query("UPDATE users SET active = $1 WHERE id = $2")
        .bind(active)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
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
    Ok(updated)
}

async fn get_user_in(conn: &mut sqlx::AnyConnection, id: i64) -> Result<Option<User>> {
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

/// Checks an email and password. Unknown emails and wrong passwords cost
/// the same and get the same error; after [`MAX_FAILURES`] failures within
/// the window, the email is locked out for the window's length.
pub async fn authenticate(db: &Db, email: &str, password: &Password) -> Result<User> {
    let key = email.trim().to_lowercase();
    let now = now_ms();
    let locked_until: Option<i64> =
        sqlx::query_scalar("SELECT locked_until FROM sign_in_failures WHERE email = $1")
            .bind(&key)
            .fetch_optional(db.pool())
            .await?
            .flatten();
    if let Some(until) = locked_until.filter(|&u| u > now) {
        return Err(Error::LockedOut {
            minutes: ((until - now) + 59_999) / 60_000,
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
    if !password::verify(password, hash).await {
        record_failure(db, &key, now).await?;
        return Err(Error::InvalidCredentials);
    }
    let user = user.ok_or(Error::InvalidCredentials)?;
    if !user.active {
        return Err(Error::Deactivated);
    }
    sqlx::query("DELETE FROM sign_in_failures WHERE email = $1")
        .bind(&key)
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

async fn record_failure(db: &Db, key: &str, now: i64) -> Result<()> {
    // One statement, so concurrent failures all count: a new window starts
    // when the old one has passed.
    sqlx::query(
        "INSERT INTO sign_in_failures (email, failures, window_started_at, locked_until) \
         VALUES ($1, 1, $2, NULL) \
         ON CONFLICT (email) DO UPDATE SET \
           failures = CASE WHEN sign_in_failures.window_started_at < $3 THEN 1 ELSE sign_in_failures.failures + 1 END, \
           window_started_at = CASE WHEN sign_in_failures.window_started_at < $3 THEN $2 ELSE sign_in_failures.window_started_at END, \
           locked_until = CASE WHEN sign_in_failures.window_started_at >= $3 AND sign_in_failures.failures + 1 >= $4 THEN $5 ELSE NULL END",
    )
    .bind(key)
    .bind(now)
    .bind(now - FAILURE_WINDOW_MS)
    .bind(MAX_FAILURES)
    .bind(now + FAILURE_WINDOW_MS)
    .execute(db.pool())
    .await?;
    Ok(())
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
