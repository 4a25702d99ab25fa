//! Encryption of secrets at rest (OAuth tokens): ChaCha20-Poly1305 with a
//! key derived (HKDF-SHA256) from the instance secret. Stored as base64 of
//! nonce ‖ ciphertext; a fresh random nonce each time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::constant_contact::Secret;
use crate::error::{Error, Result};
use crate::secrets::SecretKey;

const NONCE_LEN: usize = 12;

/// Encrypts and decrypts secrets stored in the database.
#[derive(Clone)]
pub struct Cipher(ChaCha20Poly1305);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(<key redacted>)")
    }
}

impl Cipher {
    /// The token cipher of this instance. The purpose string keeps this key
    /// apart from the one that signs cookies.
    pub fn new(secret: &SecretKey) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"segment-export"), secret.bytes());
        let mut key = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(b"token-encryption-v1", &mut key);
        Cipher(ChaCha20Poly1305::new(Key::from_slice(&key)))
    }

    pub fn encrypt(&self, plain: &Secret) -> Result<String> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(&nonce, plain.expose().as_bytes())
            .map_err(|_| Error::internal(String::from("encryption failed")))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Fails for text that was not sealed with this key (a changed
    /// `SECRET_KEY`, or tampering).
    pub fn decrypt(&self, sealed: &str) -> Result<Secret> {
        let fail = || {
            Error::internal(String::from(
                "a stored secret could not be decrypted (was SECRET_KEY changed?)",
            ))
        };
        let raw = STANDARD.decode(sealed).map_err(|_| fail())?;
        if raw.len() <= NONCE_LEN {
            return Err(fail());
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| fail())?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_the_same_key() {
        let key = SecretKey::generate();
        let c = Cipher::new(&key);
        let sealed = c.encrypt(&Secret::new("sbx_at_token")).unwrap();
        assert!(!sealed.contains("sbx_at_token"));
        assert_ne!(
            sealed,
            c.encrypt(&Secret::new("sbx_at_token")).unwrap(),
            "fresh nonce each time"
        );
        assert_eq!(c.decrypt(&sealed).unwrap().expose(), "sbx_at_token");
        assert!(Cipher::new(&SecretKey::generate())
            .decrypt(&sealed)
            .is_err());
        let mut tampered = STANDARD.decode(&sealed).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(c.decrypt(&STANDARD.encode(tampered)).is_err());
    }
}
