//! Credentials at rest: destination configs are sealed with XChaCha20-Poly1305.
//!
//! A [`Keyring`] holds one or more 256-bit keys, each with a short id. The first is the
//! *primary*: everything new is sealed with it. Every ciphertext carries the id of the key that
//! sealed it (`tc1:<kid>:<base64(nonce || ciphertext)>`), so a keyring can hold old keys for
//! reading while new writes use the new one. The associated data binds a ciphertext to its row
//! (the destination id), so sealed configs cannot be swapped between rows.
//!
//! Rotation: put a new key first (`tracecast encryption add-key`), restart, run
//! `tracecast encryption rotate` to re-seal every config with it, then drop the old key.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use thiserror::Error;

const PREFIX: &str = "tc1";

#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("invalid encryption key spec: {0}")]
    BadSpec(String),
    #[error("ciphertext is not in tracecast's format")]
    BadCiphertext,
    #[error("ciphertext was sealed with key id {0:?}, which is not in the keyring")]
    UnknownKey(String),
    #[error("decryption failed (wrong key or tampered data)")]
    Open,
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct Keyring {
    primary: String,
    keys: HashMap<String, XChaCha20Poly1305>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("primary", &self.primary)
            .field("key_ids", &ids)
            .finish()
    }
}

/// Generates a new key line: `<kid>:<base64 key>`.
pub fn generate_key_spec() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let mut kid = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut kid);
    format!("k{}:{}", hex_encode(&kid), B64.encode(key))
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Keyring {
    /// Parses `kid:base64key[,kid:base64key...]` (commas or newlines); the first is primary.
    /// Blank lines and `#` comments are ignored.
    pub fn from_spec(spec: &str) -> Result<Self, CryptoError> {
        let mut primary = None;
        let mut keys = HashMap::new();
        for entry in spec.split([',', '\n']).map(str::trim) {
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (kid, b64) = entry
                .split_once(':')
                .ok_or_else(|| CryptoError::BadSpec("expected <key id>:<base64 key>".into()))?;
            let kid = kid.trim();
            if kid.is_empty()
                || !kid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(CryptoError::BadSpec(format!(
                    "key id {kid:?} must be letters, digits, '-' or '_'"
                )));
            }
            let raw = B64
                .decode(b64.trim())
                .map_err(|_| CryptoError::BadSpec(format!("key {kid}: not valid base64")))?;
            if raw.len() != 32 {
                return Err(CryptoError::BadSpec(format!(
                    "key {kid}: must be 32 bytes, got {}",
                    raw.len()
                )));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&raw)
                .map_err(|_| CryptoError::BadSpec(format!("key {kid}: bad length")))?;
            if keys.insert(kid.to_string(), cipher).is_some() {
                return Err(CryptoError::BadSpec(format!("key id {kid} appears twice")));
            }
            primary.get_or_insert_with(|| kid.to_string());
        }
        let primary = primary.ok_or_else(|| CryptoError::BadSpec("no keys given".into()))?;
        Ok(Keyring { primary, keys })
    }

    /// Loads the key file, creating it (mode 0600) with a fresh key if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let io = |source| CryptoError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_spec(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let line = generate_key_spec();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path).map_err(io)?;
                writeln!(
                    f,
                    "# tracecast credential encryption keys: <key id>:<base64 32-byte key>.\n# The first key seals new data; later keys are kept to read older data.\n{line}"
                )
                .map_err(io)?;
                f.sync_all().map_err(io)?;
                Self::from_spec(&line)
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn primary_id(&self) -> &str {
        &self.primary
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let cipher = &self.keys[&self.primary];
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut blob = Vec::with_capacity(24 + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        format!("{PREFIX}:{}:{}", self.primary, B64.encode(blob))
    }

    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(PREFIX), Some(kid), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::BadCiphertext);
        };
        let cipher = self
            .keys
            .get(kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_string()))?;
        let blob = B64.decode(b64).map_err(|_| CryptoError::BadCiphertext)?;
        if blob.len() < 24 + 16 {
            return Err(CryptoError::BadCiphertext);
        }
        let (nonce, ct) = blob.split_at(24);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Open)
    }

    /// The key id a sealed value names, if it is well-formed.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, ':');
        match (parts.next(), parts.next()) {
            (Some(PREFIX), Some(kid)) => Some(kid),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rotate() {
        let old = Keyring::from_spec(&generate_key_spec()).unwrap();
        let sealed = old.seal(b"secret config", b"row-1");
        assert!(!sealed.contains("secret"));
        assert_eq!(old.open(&sealed, b"row-1").unwrap(), b"secret config");
        assert!(matches!(
            old.open(&sealed, b"row-2"),
            Err(CryptoError::Open)
        ));

        let new_spec = generate_key_spec();
        // A ring with only the new key cannot read the old ciphertext ...
        let only_new = Keyring::from_spec(&new_spec).unwrap();
        assert!(matches!(
            only_new.open(&sealed, b"row-1"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn multi_key_ring_reads_old_and_writes_new() {
        let a = generate_key_spec();
        let b = generate_key_spec();
        let ring_a = Keyring::from_spec(&a).unwrap();
        let sealed_a = ring_a.seal(b"x", b"id");
        let ring_ba = Keyring::from_spec(&format!("{b},{a}")).unwrap();
        assert_eq!(ring_ba.open(&sealed_a, b"id").unwrap(), b"x");
        let sealed_b = ring_ba.seal(b"y", b"id");
        assert_eq!(Keyring::key_id_of(&sealed_b), Some(ring_ba.primary_id()));
        assert_ne!(Keyring::key_id_of(&sealed_a), Keyring::key_id_of(&sealed_b));
    }

    #[test]
    fn key_file_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("encryption.key");
        let r1 = Keyring::load_or_create(&p).unwrap();
        let r2 = Keyring::load_or_create(&p).unwrap();
        assert_eq!(r1.primary_id(), r2.primary_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(Keyring::from_spec("nope").is_err());
        assert!(Keyring::from_spec("k1:AAAA").is_err());
    }
}
