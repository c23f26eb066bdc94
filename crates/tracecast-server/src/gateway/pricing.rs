//! The price table: what a call cost when the upstream does not say (`usage.cost`, which
//! OpenRouter reports, always wins).
//!
//! The default table, `prices/default.json`, is built by `scripts/gateway_prices.py` from LiteLLM's
//! model price list (`model_prices_and_context_window.json`, https://github.com/BerriAI/litellm,
//! MIT licence; version in the file's `_source`): per-token USD prices of input, output, cached
//! input reads and cache writes of text models. Operators add or replace entries with
//! `[gateway] prices_file`, a file of the same shape: `{"models": {"<model>": {"input": <USD per
//! token>, "output": ..., "cache_read": ..., "cache_write": ...}}}`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use thiserror::Error;

const DEFAULT: &str = include_str!("prices/default.json");

/// Per-token prices in USD.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    /// Embedding models have no output price.
    #[serde(default)]
    pub output: f64,
    #[serde(default)]
    pub cache_read: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
}

#[derive(Deserialize)]
struct File {
    models: HashMap<String, Price>,
    #[serde(default, rename = "_source")]
    _source: Option<String>,
}

#[derive(Debug, Error)]
pub enum PriceError {
    #[error("gateway.prices_file {path}: {error}")]
    Read { path: String, error: String },
    #[error("gateway.prices_file: models.{0}: prices must be finite and not negative")]
    Invalid(String),
    #[error("the built-in price table is invalid: {0}")]
    Default(String),
}

#[derive(Debug, Default)]
pub struct Prices(HashMap<String, Price>);

impl Prices {
    /// The default table with `overrides` (a prices file) applied over it.
    pub fn load(overrides: Option<&Path>) -> Result<Prices, PriceError> {
        let mut table = serde_json::from_str::<File>(DEFAULT)
            .map_err(|e| PriceError::Default(e.to_string()))?
            .models;
        if let Some(path) = overrides {
            let read_err = |error: String| PriceError::Read {
                path: path.display().to_string(),
                error,
            };
            let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
            let de = &mut serde_json::Deserializer::from_str(&text);
            let file: File = serde_path_to_error::deserialize(de)
                .map_err(|e| read_err(format!("{}: {}", e.path(), e.inner())))?;
            for (name, p) in file.models {
                let ok = |v: f64| v.is_finite() && v >= 0.0;
                if !(ok(p.input)
                    && ok(p.output)
                    && p.cache_read.is_none_or(ok)
                    && p.cache_write.is_none_or(ok))
                {
                    return Err(PriceError::Invalid(name));
                }
                table.insert(name, p);
            }
        }
        Ok(Prices(table))
    }

    /// The price of the first of `names` the table knows; each name is also tried without its
    /// `vendor/` prefix.
    pub fn lookup(&self, names: &[&str]) -> Option<Price> {
        names
            .iter()
            .find_map(|n| {
                self.0
                    .get(*n)
                    .or_else(|| n.rsplit_once('/').and_then(|(_, base)| self.0.get(base)))
            })
            .copied()
    }
}

impl Price {
    /// `(total_cost, cost_details)` of a call with this usage (the record's usage shape):
    /// uncached input, cache reads and cache writes, and output, each at its price (a cache
    /// price the table lacks is the input price). `None` without token counts.
    pub fn cost(&self, usage: &Value) -> Option<(f64, Value)> {
        let int = |p: &str| usage.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        let prompt = usage.get("prompt_tokens").and_then(Value::as_u64);
        let completion = usage.get("completion_tokens").and_then(Value::as_u64);
        if prompt.is_none() && completion.is_none() {
            return None;
        }
        let prompt = prompt.unwrap_or(0);
        let cached = int("/prompt_tokens_details/cached_tokens").min(prompt);
        let written = int("/prompt_tokens_details/cache_write_tokens").min(prompt - cached);
        let uncached = prompt - cached - written;
        let prompt_cost = uncached as f64 * self.input;
        let cache_read_cost = cached as f64 * self.cache_read.unwrap_or(self.input);
        let cache_write_cost = written as f64 * self.cache_write.unwrap_or(self.input);
        let completion_cost = completion.unwrap_or(0) as f64 * self.output;
        let total = prompt_cost + cache_read_cost + cache_write_cost + completion_cost;
        let mut details = Map::new();
        details.insert("prompt_cost".into(), json!(prompt_cost));
        if cached > 0 {
            details.insert("cache_read_cost".into(), json!(cache_read_cost));
        }
        if written > 0 {
            details.insert("cache_write_cost".into(), json!(cache_write_cost));
        }
        details.insert("completion_cost".into(), json!(completion_cost));
        Some((total, Value::Object(details)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_parses_and_knows_common_models() {
        let p = Prices::load(None).unwrap();
        assert!(p.0.len() > 100, "{}", p.0.len());
        // LiteLLM 1.108.5: gpt-4o is $2.50 / $10 per million tokens, cached reads $1.25.
        let gpt4o = p.lookup(&["gpt-4o"]).unwrap();
        assert_eq!(gpt4o.input, 2.5e-6);
        assert_eq!(gpt4o.output, 1e-5);
        assert_eq!(gpt4o.cache_read, Some(1.25e-6));
        assert_eq!(p.lookup(&["openai/gpt-4o"]), Some(gpt4o));
        assert!(
            p.lookup(&["no-such-model", "anthropic/claude-sonnet-4-5"])
                .is_some()
        );
        assert!(p.lookup(&["no-such-model"]).is_none());
    }

    #[test]
    fn cost_splits_cached_and_uncached_input() {
        let price = Price {
            input: 2.0,
            output: 10.0,
            cache_read: Some(0.5),
            cache_write: None,
        };
        let usage = json!({"prompt_tokens": 100, "completion_tokens": 10,
                           "prompt_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 20}});
        let (total, details) = price.cost(&usage).unwrap();
        // 40 uncached * 2 + 40 cached * 0.5 + 20 written * 2 (input price) + 10 * 10
        assert_eq!(total, 80.0 + 20.0 + 40.0 + 100.0);
        assert_eq!(
            details,
            json!({"prompt_cost": 80.0, "cache_read_cost": 20.0, "cache_write_cost": 40.0, "completion_cost": 100.0})
        );
        assert!(price.cost(&json!({})).is_none());
    }

    #[test]
    fn an_override_file_replaces_and_adds_entries_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.json");
        std::fs::write(
            &path,
            r#"{"models": {"gpt-4o": {"input": 1e-6, "output": 2e-6}, "house-model": {"input": 0, "output": 1e-7}}}"#,
        )
        .unwrap();
        let p = Prices::load(Some(&path)).unwrap();
        assert_eq!(p.lookup(&["gpt-4o"]).unwrap().input, 1e-6);
        assert_eq!(p.lookup(&["house-model"]).unwrap().output, 1e-7);
        std::fs::write(&path, r#"{"models": {"x": {"input": -1, "output": 0}}}"#).unwrap();
        assert_eq!(
            Prices::load(Some(&path)).unwrap_err().to_string(),
            "gateway.prices_file: models.x: prices must be finite and not negative"
        );
        std::fs::write(&path, r#"{"models": {"x": {"input": 1, "outptu": 0}}}"#).unwrap();
        let e = Prices::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("models.x"), "{e}");
    }
}
