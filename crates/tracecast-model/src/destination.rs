//! Observability destinations: where a workspace's traces go, and the rules that decide
//! which traces go there.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::api_key::is_key_hash;
use crate::config::DestinationType;
use crate::error::ValidationError;
use crate::filter::FilterRules;
use crate::region::Region;

/// A workspace may hold at most this many (non-deleted) destinations of one type.
pub const MAX_PER_TYPE: usize = 5;
/// An `api_key_hashes` allowlist holds at most this many hashes.
pub const MAX_KEY_HASHES: usize = 100;

/// A destination as stored (config decrypted).
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub ty: DestinationType,
    pub name: Option<String>,
    pub enabled: bool,
    pub privacy_mode: bool,
    pub broadcast_generation_cost: bool,
    pub broadcast_generation_identity: bool,
    pub broadcast_generation_request_context: bool,
    pub broadcast_generation_cost_allocation: bool,
    pub sampling_rate: f64,
    /// Allowlist of key hashes; `None` admits every key of the workspace.
    pub api_key_hashes: Option<Vec<String>>,
    pub filter_rules: Option<FilterRules>,
    pub regions: Vec<Region>,
    /// Validated config with defaults filled in; secrets in clear. Never log or return it
    /// without [`crate::config::masked`].
    pub config: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// A validated create request.
#[derive(Debug, Clone)]
pub struct NewDestination {
    pub workspace_id: Uuid,
    pub ty: DestinationType,
    pub name: String,
    pub enabled: bool,
    pub privacy_mode: bool,
    pub broadcast_generation_cost: bool,
    pub broadcast_generation_identity: bool,
    pub broadcast_generation_request_context: bool,
    pub broadcast_generation_cost_allocation: bool,
    pub sampling_rate: f64,
    pub api_key_hashes: Option<Vec<String>>,
    pub filter_rules: Option<FilterRules>,
    pub regions: Vec<Region>,
    pub config: Map<String, Value>,
}

/// A tri-state PATCH field: absent keeps the value, `null` clears it, a value replaces it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

/// A validated update request. `config`, when present, is the already-merged full config.
#[derive(Debug, Clone, Default)]
pub struct DestinationPatch {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub privacy_mode: Option<bool>,
    pub broadcast_generation_cost: Option<bool>,
    pub broadcast_generation_identity: Option<bool>,
    pub broadcast_generation_request_context: Option<bool>,
    pub broadcast_generation_cost_allocation: Option<bool>,
    pub sampling_rate: Option<f64>,
    pub api_key_hashes: Patch<Vec<String>>,
    pub filter_rules: Patch<FilterRules>,
    pub regions: Option<Vec<Region>>,
    pub config: Option<Map<String, Value>>,
}

impl Destination {
    /// Applies a validated patch in place.
    pub fn apply(&mut self, p: DestinationPatch, now: String) {
        fn set<T>(slot: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *slot = v;
            }
        }
        if let Some(n) = p.name {
            self.name = Some(n);
        }
        set(&mut self.enabled, p.enabled);
        set(&mut self.privacy_mode, p.privacy_mode);
        set(
            &mut self.broadcast_generation_cost,
            p.broadcast_generation_cost,
        );
        set(
            &mut self.broadcast_generation_identity,
            p.broadcast_generation_identity,
        );
        set(
            &mut self.broadcast_generation_request_context,
            p.broadcast_generation_request_context,
        );
        set(
            &mut self.broadcast_generation_cost_allocation,
            p.broadcast_generation_cost_allocation,
        );
        set(&mut self.sampling_rate, p.sampling_rate);
        match p.api_key_hashes {
            Patch::Keep => {}
            Patch::Clear => self.api_key_hashes = None,
            Patch::Set(v) => self.api_key_hashes = Some(v),
        }
        match p.filter_rules {
            Patch::Keep => {}
            Patch::Clear => self.filter_rules = None,
            Patch::Set(v) => self.filter_rules = Some(v),
        }
        set(&mut self.regions, p.regions);
        set(&mut self.config, p.config);
        self.updated_at = now;
    }
}

/// `sampling_rate` must lie in [0.0001, 1].
pub fn validate_sampling_rate(rate: f64) -> Result<f64, ValidationError> {
    if rate.is_finite() && (0.0001..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(ValidationError::new(format!(
            "sampling_rate must be between 0.0001 and 1, got {rate}"
        )))
    }
}

/// Checks the shape of an `api_key_hashes` list: non-empty, at most [`MAX_KEY_HASHES`],
/// each a 64-hex SHA-256. Returns them lowercased and de-duplicated. Whether each names a key
/// of the workspace is checked against the store by the caller.
pub fn normalize_key_hashes(values: &[String]) -> Result<Vec<String>, ValidationError> {
    if values.is_empty() {
        return Err(ValidationError::new(
            "api_key_hashes must contain at least one hash; use null to allow every key",
        ));
    }
    if values.len() > MAX_KEY_HASHES {
        return Err(ValidationError::new(format!(
            "api_key_hashes may hold at most {MAX_KEY_HASHES} hashes"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, h) in values.iter().enumerate() {
        if !is_key_hash(h) {
            return Err(ValidationError::new(format!(
                "api_key_hashes[{i}] must be the 64-character hex SHA-256 hash of an API key"
            )));
        }
        let h = h.to_ascii_lowercase();
        if !out.contains(&h) {
            out.push(h);
        }
    }
    Ok(out)
}

/// A destination's display name: non-empty, at most 256 characters.
pub fn validate_destination_name(name: &str) -> Result<String, ValidationError> {
    crate::workspace::validate_name("name", name)?;
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_bounds() {
        assert!(validate_sampling_rate(0.0001).is_ok());
        assert!(validate_sampling_rate(1.0).is_ok());
        assert!(validate_sampling_rate(0.0).is_err());
        assert!(validate_sampling_rate(1.01).is_err());
        assert!(validate_sampling_rate(f64::NAN).is_err());
    }

    #[test]
    fn key_hash_lists() {
        let h = "A".repeat(64);
        assert_eq!(
            normalize_key_hashes(&[h.clone(), h.to_lowercase()]).unwrap(),
            vec!["a".repeat(64)]
        );
        assert!(normalize_key_hashes(&[]).is_err());
        let e = normalize_key_hashes(&[h, "xyz".into()]).unwrap_err();
        assert!(e.0.starts_with("api_key_hashes[1]"), "{e}");
    }
}
