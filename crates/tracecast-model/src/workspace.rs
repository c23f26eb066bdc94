//! Tenants and workspaces.
//!
//! A tenant is one account: its management keys see its workspaces and nothing else. A
//! workspace groups destinations and the API keys whose traffic they receive.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ValidationError;

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub is_default: bool,
    /// The workspace's master switch for broadcast (default on in tracecast).
    pub is_observability_broadcast_enabled: bool,
    /// Fields of OpenRouter's workspace object that tracecast stores and returns but does not
    /// act on (default models, I/O-logging settings). Keyed by their API names.
    pub settings: Map<String, Value>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// Namespace for [`Workspace::default_guardrail_id`].
const GUARDRAIL_NAMESPACE: Uuid = Uuid::from_u128(0x8c1f_2d7e_4b6a_4f0e_9a53_7d2c_1e0b_5a11);

impl Workspace {
    /// OpenRouter documents this id as derived deterministically from the workspace id; it is
    /// a UUIDv5 of the workspace id.
    pub fn default_guardrail_id(&self) -> Uuid {
        Uuid::new_v5(&GUARDRAIL_NAMESPACE, self.id.as_bytes())
    }
}

/// The passthrough settings a workspace accepts, with their defaults.
pub const SETTINGS_DEFAULTS: &[(&str, SettingKind)] = &[
    ("default_text_model", SettingKind::NullableString),
    ("default_image_model", SettingKind::NullableString),
    ("default_provider_sort", SettingKind::NullableString),
    (
        "is_observability_io_logging_enabled",
        SettingKind::Bool(false),
    ),
    ("is_data_discount_logging_enabled", SettingKind::Bool(true)),
    ("io_logging_sampling_rate", SettingKind::Rate),
    ("io_logging_api_key_ids", SettingKind::NullableIntList),
    ("disabled_server_tools", SettingKind::NullableStringList),
];

#[derive(Clone, Copy)]
pub enum SettingKind {
    NullableString,
    Bool(bool),
    Rate,
    NullableIntList,
    NullableStringList,
}

impl SettingKind {
    pub fn default_value(self) -> Value {
        match self {
            SettingKind::Bool(b) => Value::Bool(b),
            SettingKind::Rate => Value::from(1),
            _ => Value::Null,
        }
    }

    pub fn check(self, name: &str, v: &Value) -> Result<(), ValidationError> {
        let ok = match self {
            SettingKind::NullableString => {
                v.is_null() || v.as_str().is_some_and(|s| s.len() <= 256)
            }
            SettingKind::Bool(_) => v.is_boolean(),
            SettingKind::Rate => v.as_f64().is_some_and(|r| (0.0001..=1.0).contains(&r)),
            SettingKind::NullableIntList => {
                v.is_null() || v.as_array().is_some_and(|a| a.iter().all(Value::is_i64))
            }
            SettingKind::NullableStringList => {
                v.is_null() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            }
        };
        if ok {
            return Ok(());
        }
        let expected = match self {
            SettingKind::NullableString => "a string of at most 256 characters or null",
            SettingKind::Bool(_) => "a boolean",
            SettingKind::Rate => "a number between 0.0001 and 1",
            SettingKind::NullableIntList => "an array of integers or null",
            SettingKind::NullableStringList => "an array of strings or null",
        };
        Err(ValidationError::new(format!("{name} must be {expected}")))
    }
}

static SLUG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:-[a-z0-9]+)*$").unwrap());

pub fn validate_slug(slug: &str) -> Result<(), ValidationError> {
    if slug.len() > 64 || !SLUG.is_match(slug) {
        return Err(ValidationError::new(format!(
            "slug must be 1-64 lowercase letters, digits and single hyphens (like \"production\"), got {slug:?}"
        )));
    }
    if Uuid::parse_str(slug).is_ok() {
        return Err(ValidationError::new("slug must not be a UUID"));
    }
    Ok(())
}

pub fn validate_name(field: &str, name: &str) -> Result<(), ValidationError> {
    if name.trim().is_empty() {
        return Err(ValidationError::new(format!("{field} must not be empty")));
    }
    if name.chars().count() > 256 {
        return Err(ValidationError::new(format!(
            "{field} must be at most 256 characters"
        )));
    }
    // PostgreSQL text cannot hold U+0000; refuse it on every backend alike.
    if name.contains('\0') {
        return Err(ValidationError::new(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        validate_slug("production").unwrap();
        validate_slug("team-a-2").unwrap();
        for bad in [
            "",
            "Prod",
            "a--b",
            "-a",
            "a b",
            "550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert!(validate_slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn guardrail_id_is_deterministic() {
        let w = Workspace {
            id: Uuid::from_u128(7),
            tenant_id: Uuid::from_u128(1),
            name: "n".into(),
            slug: "n".into(),
            description: None,
            is_default: true,
            is_observability_broadcast_enabled: true,
            settings: Map::new(),
            created_at: String::new(),
            updated_at: None,
        };
        assert_eq!(w.default_guardrail_id(), w.clone().default_guardrail_id());
        assert_ne!(w.default_guardrail_id(), w.id);
    }
}
