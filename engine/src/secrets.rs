//! The instance secret: 64 random bytes that sign session cookies (and,
//! later, derive the key that encrypts tokens at rest). It comes from
//! `SECRET_KEY` (base64) or is generated once into the data directory.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;

use crate::error::{Error, Result};

/// Secret key material. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey([u8; 64]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    pub fn bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// Decodes a base64 key of exactly 64 bytes.
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| Error::invalid("secret_key", "SECRET_KEY is not valid base64."))?;
        let array: [u8; 64] = bytes.try_into().map_err(|_| {
            Error::invalid("secret_key", "SECRET_KEY must decode to exactly 64 bytes.")
        })?;
        Ok(SecretKey(array))
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; 64];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SecretKey(bytes)
    }

    /// Reads `path`, or creates it (mode 0600) with a new key.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path)?;
            return Self::from_base64(&text);
        }
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir)?;
        }
        let key = Self::generate();
        write_private(path, &STANDARD.encode(key.0))?;
        Ok(key)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/secret.key");
        let first = SecretKey::load_or_create(&path).unwrap();
        let second = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(first.bytes(), second.bytes());
        assert!(!format!("{first:?}").contains(&STANDARD.encode(first.bytes())));
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(SecretKey::from_base64(&STANDARD.encode([1u8; 32])).is_err());
    }
}
