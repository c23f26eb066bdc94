//! Reading a destination's (validated, decrypted) config. Validation in `tracecast-model`
//! has already checked types and required fields; these return a config error rather than
//! panic if a config slipped past it.

use serde_json::{Map, Value};

use crate::ExportError;

/// A required, non-empty string field.
pub fn required_str<'a>(config: &'a Map<String, Value>, key: &str) -> Result<&'a str, ExportError> {
    optional_str(config, key).ok_or_else(|| ExportError::Config(format!("{key} is required")))
}

/// A string field that may be absent, null or empty (all read as `None`).
pub fn optional_str<'a>(config: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    config
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A boolean field (absent or null reads as `default`).
pub fn bool_or(config: &Map<String, Value>, key: &str, default: bool) -> bool {
    config.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// The destination's custom `headers` (sent with every request).
pub fn custom_headers(
    config: &Map<String, Value>,
) -> Result<reqwest::header::HeaderMap, ExportError> {
    crate::http::custom_headers(config.get("headers").and_then(Value::as_object))
}
