//! API keys. Only the SHA-256 hex hash of a key is ever stored; the key itself is shown once,
//! when it is created. The hash doubles as the key's public identifier (`hash`), exactly as
//! OpenRouter's keys API and `api_key_hashes` allowlists use it.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Prefix of every key tracecast issues.
pub const KEY_PREFIX: &str = "sk-tc-v1-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Account-level: manages destinations, workspaces and keys across a tenant's workspaces.
    Management,
    /// Belongs to one workspace: sends generations; identifies their API key.
    Workspace,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Management => "management",
            KeyKind::Workspace => "workspace",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "management" => Some(KeyKind::Management),
            "workspace" => Some(KeyKind::Workspace),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Hex SHA-256 of the key.
    pub hash: String,
    pub tenant_id: Uuid,
    /// The key's workspace; for a management key, its tenant's default workspace.
    pub workspace_id: Uuid,
    pub kind: KeyKind,
    pub name: String,
    /// A non-secret rendering of the key: its prefix and last 4 characters (`sk-tc-v1-...9a1c`).
    pub label: String,
    pub disabled: bool,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

impl ApiKey {
    pub fn is_management(&self) -> bool {
        self.kind == KeyKind::Management
    }
}

/// Generates a new random key: `sk-tc-v1-` followed by 64 hex characters (256 bits).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The lowercase hex SHA-256 of a key, as stored and as used in `api_key_hashes`.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The display label of a key: tracecast's prefix when the key has it, `...`, and the last 4
/// characters (`sk-tc-v1-...9a1c`; `...9a1c` for a key of another shape). Nothing else of the
/// key is shown, whatever its length.
pub fn label_for(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let prefix = if key.starts_with(KEY_PREFIX) {
        KEY_PREFIX
    } else {
        ""
    };
    if chars.len() < prefix.chars().count() + 16 {
        return format!("{prefix}...");
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}...{tail}")
}

/// Whether `s` is a well-formed key hash (64 hex characters).
pub fn is_key_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_to_sha256_hex() {
        let k = generate_key();
        assert!(k.starts_with(KEY_PREFIX));
        assert_eq!(k.len(), KEY_PREFIX.len() + 64);
        let h = hash_key(&k);
        assert!(is_key_hash(&h));
        // sha256("abc")
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(generate_key(), k);
        assert!(!label_for(&k).contains(&k[12..k.len() - 4]));
    }

    #[test]
    fn labels_show_only_the_prefix_and_a_short_suffix() {
        let k = format!("{KEY_PREFIX}{}AbCd", "0".repeat(60));
        assert_eq!(label_for(&k), "sk-tc-v1-...AbCd");
        // A 32-character operator-chosen key: 4 of its characters, not 16.
        assert_eq!(label_for("my-own-bootstrap-key-0123456789Z"), "...789Z");
        // Too short to show even 4 characters safely.
        assert_eq!(label_for("short-key"), "...");
    }
}
