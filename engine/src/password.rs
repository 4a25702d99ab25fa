//! Password hashing with Argon2id, off the async runtime, a few at a time.

use std::sync::OnceLock;

use tokio::sync::{Semaphore, SemaphorePermit};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use crate::error::{Error, Result};

/// A password that meets the policy. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: &str) -> Result<Self> {
        let n = raw.chars().count();
        if n < Self::MIN_CHARS {
            return Err(Error::invalid(
                "password",
                format!(
                    "The password must be at least {} characters long.",
                    Self::MIN_CHARS
                ),
            ));
        }
        if n > Self::MAX_CHARS {
            return Err(Error::invalid(
                "password",
                format!(
                    "The password must be at most {} characters long.",
                    Self::MAX_CHARS
                ),
            ));
        }
        Ok(Password(raw.to_owned()))
    }

    /// True when both hold the same text (for a "confirm password" field).
    pub fn matches(&self, other: &Password) -> bool {
        self.0 == other.0
    }

    /// For checking a sign-in attempt: no policy, the stored hash decides.
    pub fn unchecked(raw: &str) -> Self {
        Password(raw.to_owned())
    }
}

fn hash_blocking(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

/// Hashes or checks at once at most this many passwords per process. Each
/// takes 19 MiB (Argon2's default memory cost) and a core for a while: 200
/// concurrent sign-ins once took the server to 1 GB. The rest wait.
pub const MAX_CONCURRENT_HASHES: usize = 4;

/// A turn at hashing.
async fn turn() -> Result<SemaphorePermit<'static>> {
    static TURNS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_HASHES);
    TURNS
        .acquire()
        .await
        .map_err(|e| Error::internal(format!("password hashing closed: {e}")))
}

/// Hashes a password (Argon2id, default parameters) on the blocking pool.
pub async fn hash(password: &Password) -> Result<String> {
    let password = password.0.clone();
    let _turn = turn().await?;
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| Error::internal(format!("hashing task failed: {e}")))?
}

/// A hash of a random password, so that checking an unknown user costs
/// the same as checking a known one.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random: String = uuid::Uuid::new_v4().to_string();
        hash_blocking(&random).unwrap_or_default()
    })
}

/// Verifies `password` against `stored`, or against a dummy hash when there
/// is no user, doing the same work either way.
pub async fn verify(password: &Password, stored: Option<String>) -> Result<bool> {
    let password = password.0.clone();
    let _turn = turn().await?;
    let checked = tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let hash_text = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&hash_text) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        known && ok
    })
    .await
    .unwrap_or(false);
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_password_is_refused_with_the_rule() {
        let err = Password::parse("short").unwrap_err();
        assert!(err.to_string().contains("at least 10"));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let p = Password::parse("correct horse battery").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[tokio::test]
    async fn hash_verifies_only_the_same_password() {
        let p = Password::parse("correct horse battery").unwrap();
        let h = hash(&p).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&p, Some(h.clone())).await.unwrap());
        assert!(
            !verify(&Password::unchecked("wrong horse battery"), Some(h))
                .await
                .unwrap()
        );
        assert!(!verify(&p, None).await.unwrap());
    }
}
