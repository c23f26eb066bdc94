//! A generation: one LLM call as tracecast ingests it.
//!
//! Field names follow OpenRouter's generation object (the SDK's `GenerationResponse` data) and
//! the OpenAI-compatible request and response bodies. `docs/generation.md` documents every
//! field; `docs/generation.schema.json` is the JSON Schema of the ingest body.
//!
//! [`Generation::from_json`] validates a record and completes it (derivations from `request` and
//! `response`, multimodal placeholders). After that a generation is immutable; destination-specific
//! shaping (privacy mode, optional metadata groups) happens in [`crate::trace::TraceView`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ValidationError;
use crate::region::Region;

/// Maximum length of `id` (the idempotency key).
pub const MAX_ID_LEN: usize = 256;
/// Maximum length of `user`.
pub const MAX_USER_LEN: usize = 128;
/// Maximum length of `session_id`.
pub const MAX_SESSION_LEN: usize = 256;

/// OpenAI-style token usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Per-token-kind cost breakdown, when the gateway reports it (OpenRouter's `cost_details`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_details: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tokens: Option<u64>,
}

/// The error of a failed call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationError {
    /// HTTP status or provider error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Value>,
    pub message: String,
}

/// Who sent the generation: set by tracecast from the ingest credentials, never by the body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Workspace the record belongs to.
    pub workspace_id: String,
    /// Hex SHA-256 of the API key the call was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_hash: Option<String>,
    /// That key's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_name: Option<String>,
}

impl Identity {
    /// Not set yet: a record that has been validated but not appended. Such a generation
    /// serialises without `identity`, so its JSON is an ingest record (the stored form).
    pub fn is_unset(&self) -> bool {
        self.workspace_id.is_empty() && self.api_key_hash.is_none() && self.api_key_name.is_none()
    }
}

/// One ingested LLM call. All fields but `id`, `model` and `created_at` are optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Unique id, also the idempotency key (at most 256 characters).
    pub id: String,
    /// Model slug, e.g. `openai/gpt-4o`.
    pub model: String,
    /// RFC 3339 start time of the call.
    pub created_at: String,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_finish_reason: Option<String>,

    /// Total latency in ms (start to last byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<f64>,
    /// Generation time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation_latency: Option<f64>,
    /// Time to first token in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_token: Option<f64>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Billed cost in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_inference_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_discount: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_byok: Option<bool>,

    /// End-user id (at most 128 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Session id (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Trace metadata: `trace_id`, `trace_name`, `span_name`, `generation_name`,
    /// `parent_span_id` shape the hierarchy; every other key is custom metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user: Option<String>,

    /// The OpenAI-compatible request body (`messages`, `prompt` or `input`, `tools`, parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Map<String, Value>>,
    /// The response body; for streamed calls, the assembled one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Map<String, Value>>,
    /// Set for failed calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<GenerationError>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_referer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset_id: Option<String>,
    /// Where the call was served; default `global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_region: Option<Region>,

    /// Set by tracecast at ingest (left out of the JSON while unset).
    #[serde(default, skip_serializing_if = "Identity::is_unset")]
    pub identity: Identity,
}

/// Top-level keys accepted besides the record fields: the rest of OpenRouter's
/// `GenerationResponse` data, which tracecast reads where useful and otherwise ignores.
const OPENROUTER_EXTRAS: &[&str] = &[
    "app_id",
    "native_tokens_cached",
    "native_tokens_completion",
    "native_tokens_completion_images",
    "native_tokens_prompt",
    "native_tokens_reasoning",
    "num_fetches",
    "num_input_audio_prompt",
    "num_media_completion",
    "num_media_prompt",
    "num_search_results",
    "provider_responses",
    "service_tier",
    "tokens_completion",
    "tokens_prompt",
    "web_search_engine",
    "workspace_id",
    "response_cache_source_id",
    "api_key_hash",
];

/// Options that come from the ingest request rather than the body.
#[derive(Debug, Clone, Default)]
pub struct IngestContext {
    /// `x-session-id` header: the session when neither the record nor its request has one.
    pub session_header: Option<String>,
}

impl Generation {
    /// Parses, validates and completes one ingest record. Errors name the field (the caller
    /// prefixes the record's index).
    ///
    /// The record's values are moved into the generation, not deserialised a second time:
    /// `request`, `response` and `trace` (most of a record's bytes) are taken over as the maps
    /// the JSON parser built. Only small typed fields (`usage`, `error`, `data_region`) and
    /// values of the wrong type go through serde, which words the errors.
    pub fn from_json(v: Value, ctx: &IngestContext) -> Result<Generation, ValidationError> {
        let Value::Object(obj) = v else {
            return Err(ValidationError::new("record must be a JSON object"));
        };
        let known = |k: &str| FIELDS.contains(&k) || OPENROUTER_EXTRAS.contains(&k);
        if let Some(unknown) = obj.keys().find(|k| !known(k)) {
            let hint = match unknown.as_str() {
                "metadata" | "tags" | "name" => "; put custom metadata in `trace`",
                _ => "",
            };
            return Err(ValidationError::new(format!(
                "{unknown} is not a known field{hint}"
            )));
        }
        let api_key_hash = match obj.get("api_key_hash") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ValidationError::new("api_key_hash must be a string")),
        };
        let mut g = Generation::default();
        let (mut id, mut model, mut created_at) = (None, None, None);
        let (mut tokens_prompt, mut tokens_completion) = (None, None);
        let (mut native_cached, mut native_reasoning) = (None, None);
        // In key order, as serde's derived visitor would report the first bad field.
        for (key, value) in obj {
            let k = key.as_str();
            match k {
                "id" => id = Some(string(k, value)?),
                "model" => model = Some(string(k, value)?),
                "created_at" => created_at = Some(string(k, value)?),
                "provider_name" => g.provider_name = opt_string(k, value)?,
                "api_type" => g.api_type = opt_string(k, value)?,
                "streamed" => g.streamed = opt_bool(k, value)?,
                "cancelled" => g.cancelled = opt_bool(k, value)?,
                "finish_reason" => g.finish_reason = opt_string(k, value)?,
                "native_finish_reason" => g.native_finish_reason = opt_string(k, value)?,
                "latency" => g.latency = opt_f64(k, value)?,
                "generation_time" => g.generation_time = opt_f64(k, value)?,
                "moderation_latency" => g.moderation_latency = opt_f64(k, value)?,
                "time_to_first_token" => g.time_to_first_token = opt_f64(k, value)?,
                // OpenRouter's generation object has `usage` as a number (credits); the
                // record's `usage` is the OpenAI-style object, so a number is dropped and the
                // token counts are used.
                "usage" if value.is_number() || value.is_null() => {}
                "usage" => g.usage = field(k, value)?,
                "total_cost" => g.total_cost = opt_f64(k, value)?,
                "upstream_inference_cost" => g.upstream_inference_cost = opt_f64(k, value)?,
                "cache_discount" => g.cache_discount = opt_f64(k, value)?,
                "is_byok" => g.is_byok = opt_bool(k, value)?,
                "user" => g.user = opt_string(k, value)?,
                "session_id" => g.session_id = opt_string(k, value)?,
                "trace" => g.trace = opt_map(k, value)?,
                "external_user" => g.external_user = opt_string(k, value)?,
                "request" => g.request = opt_map(k, value)?,
                "response" => g.response = opt_map(k, value)?,
                "error" => g.error = field(k, value)?,
                "http_referer" => g.http_referer = opt_string(k, value)?,
                "x_title" => g.x_title = opt_string(k, value)?,
                "user_agent" => g.user_agent = opt_string(k, value)?,
                "origin" => g.origin = opt_string(k, value)?,
                "request_id" => g.request_id = opt_string(k, value)?,
                "upstream_id" => g.upstream_id = opt_string(k, value)?,
                "router" => g.router = opt_string(k, value)?,
                "preset_id" => g.preset_id = opt_string(k, value)?,
                "data_region" => g.data_region = field(k, value)?,
                "tokens_prompt" => tokens_prompt = value.as_u64(),
                "tokens_completion" => tokens_completion = value.as_u64(),
                "native_tokens_cached" => native_cached = value.as_u64(),
                "native_tokens_reasoning" => native_reasoning = value.as_u64(),
                // The rest of OpenRouter's generation object (and `api_key_hash`, read above).
                _ => {}
            }
        }
        let missing = |name: &str| ValidationError::new(format!("missing field `{name}`"));
        g.id = id.ok_or_else(|| missing("id"))?;
        g.model = model.ok_or_else(|| missing("model"))?;
        g.created_at = created_at.ok_or_else(|| missing("created_at"))?;
        g.identity.api_key_hash = api_key_hash;
        g.validate()?;
        g.complete(
            ctx,
            tokens_prompt,
            tokens_completion,
            native_cached,
            native_reasoning,
        );
        Ok(g)
    }

    /// Validates and completes a generation built field by field (OTLP ingest) by the same
    /// rules as [`Self::from_json`]: the checks of every field, then the derivations. Its JSON
    /// (identity unset) is a record that [`Self::from_json`] reads back as the same generation.
    pub fn validated(mut self, ctx: &IngestContext) -> Result<Generation, ValidationError> {
        self.validate()?;
        self.complete(ctx, None, None, None, None);
        Ok(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.id.is_empty() || self.id.chars().count() > MAX_ID_LEN {
            return Err(ValidationError::new(format!(
                "id must be 1 to {MAX_ID_LEN} characters"
            )));
        }
        if self.model.trim().is_empty() {
            return Err(ValidationError::new("model must not be empty"));
        }
        if chrono::DateTime::parse_from_rfc3339(&self.created_at).is_err() {
            return Err(ValidationError::new(format!(
                "created_at must be an RFC 3339 timestamp, got {:?}",
                self.created_at
            )));
        }
        if let Some(u) = &self.user
            && u.chars().count() > MAX_USER_LEN
        {
            return Err(ValidationError::new(format!(
                "user must be at most {MAX_USER_LEN} characters"
            )));
        }
        if let Some(s) = &self.session_id
            && s.chars().count() > MAX_SESSION_LEN
        {
            return Err(ValidationError::new(format!(
                "session_id must be at most {MAX_SESSION_LEN} characters"
            )));
        }
        for (name, v) in [
            ("latency", self.latency),
            ("generation_time", self.generation_time),
            ("moderation_latency", self.moderation_latency),
            ("time_to_first_token", self.time_to_first_token),
        ] {
            if v.is_some_and(|x| !x.is_finite() || x < 0.0) {
                return Err(ValidationError::new(format!(
                    "{name} must be a non-negative number of milliseconds"
                )));
            }
        }
        for (name, v) in [
            ("total_cost", self.total_cost),
            ("upstream_inference_cost", self.upstream_inference_cost),
            ("cache_discount", self.cache_discount),
        ] {
            if v.is_some_and(|x| !x.is_finite()) {
                return Err(ValidationError::new(format!(
                    "{name} must be a finite number"
                )));
            }
        }
        if let Some(h) = &self.identity.api_key_hash
            && !crate::api_key::is_key_hash(h)
        {
            return Err(ValidationError::new(
                "api_key_hash must be the 64-character hex SHA-256 hash of an API key",
            ));
        }
        if let Some(t) = &self.trace {
            for k in RESERVED_TRACE_KEYS {
                if let Some(v) = t.get(*k)
                    && !(v.is_string() || v.is_null())
                {
                    return Err(ValidationError::new(format!("trace.{k} must be a string")));
                }
            }
        }
        Ok(())
    }

    /// Derivations: `user`, `session_id` and `trace` from `request`; `usage` from
    /// `response.usage` (or OpenRouter's token counts); `session_id` from `x-session-id`;
    /// multimodal parts replaced by placeholders.
    fn complete(
        &mut self,
        ctx: &IngestContext,
        tokens_prompt: Option<u64>,
        tokens_completion: Option<u64>,
        native_cached: Option<u64>,
        native_reasoning: Option<u64>,
    ) {
        if let Some(req) = &self.request {
            if self.user.is_none() {
                self.user = req
                    .get("user")
                    .and_then(Value::as_str)
                    .map(|s| s.chars().take(MAX_USER_LEN).collect());
            }
            if self.session_id.is_none() {
                self.session_id = req
                    .get("session_id")
                    .and_then(Value::as_str)
                    .map(|s| s.chars().take(MAX_SESSION_LEN).collect());
            }
            if self.trace.is_none() {
                self.trace = req.get("trace").and_then(Value::as_object).cloned();
            }
        }
        if self.session_id.is_none() {
            self.session_id = ctx
                .session_header
                .as_ref()
                .map(|s| s.chars().take(MAX_SESSION_LEN).collect());
        }
        if self.usage.is_none() {
            self.usage = self
                .response
                .as_ref()
                .and_then(|r| r.get("usage"))
                .and_then(|u| serde_json::from_value(u.clone()).ok());
        }
        if self.usage.is_none() && (tokens_prompt.is_some() || tokens_completion.is_some()) {
            self.usage = Some(Usage {
                prompt_tokens: tokens_prompt,
                completion_tokens: tokens_completion,
                total_tokens: match (tokens_prompt, tokens_completion) {
                    (Some(p), Some(c)) => Some(p.saturating_add(c)),
                    _ => None,
                },
                prompt_tokens_details: native_cached.map(|c| PromptTokensDetails {
                    cached_tokens: Some(c),
                    ..Default::default()
                }),
                completion_tokens_details: native_reasoning.map(|r| CompletionTokensDetails {
                    reasoning_tokens: Some(r),
                    ..Default::default()
                }),
                cost_details: None,
            });
        }
        if let Some(u) = &mut self.usage
            && u.total_tokens.is_none()
            && let (Some(p), Some(c)) = (u.prompt_tokens, u.completion_tokens)
        {
            u.total_tokens = Some(p.saturating_add(c));
        }
        if let Some(req) = &mut self.request {
            crate::multimodal::strip_request(req);
        }
        if let Some(resp) = &mut self.response {
            crate::multimodal::strip_response(resp);
        }
    }

    /// The region the call was served in (`global` when unset).
    pub fn region(&self) -> Region {
        self.data_region.unwrap_or(Region::Global)
    }

    /// A `trace` key as a string.
    pub fn trace_str(&self, key: &str) -> Option<&str> {
        self.trace
            .as_ref()
            .and_then(|t| t.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The sampling key: `session_id`, else `trace.trace_id`, else the generation id.
    pub fn sampling_key(&self) -> &str {
        self.session_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .or_else(|| self.trace_str("trace_id"))
            .unwrap_or(&self.id)
    }
}

/// A record field through serde (its errors name `key` and the path inside it).
fn field<T: serde::de::DeserializeOwned>(key: &str, v: Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        ValidationError::new(match path.as_str() {
            "." => format!("{key}: {msg}"),
            p if p.starts_with('[') => format!("{key}{p}: {msg}"),
            p => format!("{key}.{p}: {msg}"),
        })
    })
}

fn string(key: &str, v: Value) -> Result<String, ValidationError> {
    match v {
        Value::String(s) => Ok(s),
        other => field(key, other),
    }
}

fn opt_string(key: &str, v: Value) -> Result<Option<String>, ValidationError> {
    match v {
        Value::String(s) => Ok(Some(s)),
        Value::Null => Ok(None),
        other => field(key, other),
    }
}

fn opt_bool(key: &str, v: Value) -> Result<Option<bool>, ValidationError> {
    match v {
        Value::Bool(b) => Ok(Some(b)),
        Value::Null => Ok(None),
        other => field(key, other),
    }
}

fn opt_f64(key: &str, v: Value) -> Result<Option<f64>, ValidationError> {
    match v {
        Value::Number(n) => Ok(n.as_f64()),
        Value::Null => Ok(None),
        other => field(key, other),
    }
}

/// An object field, taken over as parsed.
fn opt_map(key: &str, v: Value) -> Result<Option<Map<String, Value>>, ValidationError> {
    match v {
        Value::Object(m) => Ok(Some(m)),
        Value::Null => Ok(None),
        other => field(key, other),
    }
}

/// `trace` keys that shape the hierarchy rather than being custom metadata.
pub const RESERVED_TRACE_KEYS: &[&str] = &[
    "trace_id",
    "trace_name",
    "span_name",
    "generation_name",
    "parent_span_id",
];

/// Every record field, as sent.
pub const FIELDS: &[&str] = &[
    "id",
    "model",
    "created_at",
    "provider_name",
    "api_type",
    "streamed",
    "cancelled",
    "finish_reason",
    "native_finish_reason",
    "latency",
    "generation_time",
    "moderation_latency",
    "time_to_first_token",
    "usage",
    "total_cost",
    "upstream_inference_cost",
    "cache_discount",
    "is_byok",
    "user",
    "session_id",
    "trace",
    "external_user",
    "request",
    "response",
    "error",
    "http_referer",
    "x_title",
    "user_agent",
    "origin",
    "request_id",
    "upstream_id",
    "router",
    "preset_id",
    "data_region",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Generation, ValidationError> {
        Generation::from_json(v, &IngestContext::default())
    }

    #[test]
    fn minimal_record_and_derivations() {
        let g = Generation::from_json(
            json!({
                "id": "gen-1", "model": "openai/gpt-4o", "created_at": "2026-01-01T00:00:00Z",
                "request": {"messages": [{"role": "user", "content": "hi"}], "user": "u1", "trace": {"trace_id": "t1", "env": "prod"}},
                "response": {"choices": [{"message": {"role": "assistant", "content": "hello"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
            }),
            &IngestContext { session_header: Some("s-hdr".into()) },
        )
        .unwrap();
        assert_eq!(g.user.as_deref(), Some("u1"));
        assert_eq!(g.session_id.as_deref(), Some("s-hdr"));
        assert_eq!(g.trace_str("trace_id"), Some("t1"));
        let u = g.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (Some(3), Some(2), Some(5))
        );
        assert_eq!(g.data_region, None);
    }

    #[test]
    fn top_level_wins_over_request() {
        let g = parse(json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "user": "top", "session_id": "s-top", "request": {"user": "req", "session_id": "s-req"}})).unwrap();
        assert_eq!(g.user.as_deref(), Some("top"));
        assert_eq!(g.session_id.as_deref(), Some("s-top"));
        assert_eq!(g.sampling_key(), "s-top");
    }

    #[test]
    fn huge_token_counts_do_not_overflow() {
        let g = parse(json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "usage": {"prompt_tokens": u64::MAX, "completion_tokens": 1}})).unwrap();
        assert_eq!(g.usage.unwrap().total_tokens, Some(u64::MAX));
        let g = parse(json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "data_region": "eu"})).unwrap();
        assert_eq!(g.region(), Region::Europe);
    }

    #[test]
    fn openrouter_generation_object_is_accepted() {
        let g = parse(json!({"id": "gen-1", "model": "m", "created_at": "2026-01-01T00:00:00Z", "usage": 0.002, "tokens_prompt": 10, "tokens_completion": 5, "native_tokens_reasoning": 2, "app_id": null, "origin": "https://x.test", "is_byok": false, "data_region": "europe"})).unwrap();
        let u = g.usage.clone().unwrap();
        assert_eq!(u.total_tokens, Some(15));
        assert_eq!(
            u.completion_tokens_details.unwrap().reasoning_tokens,
            Some(2)
        );
        assert_eq!(g.region(), Region::Europe);
    }

    /// The first implementation of `from_json` (every field through serde, after removing
    /// nulls and extras), kept as the reference the one-pass version must agree with.
    fn reference(mut v: Value, ctx: &IngestContext) -> Result<Generation, ValidationError> {
        const NULLABLE_STRINGS: &[&str] = &[
            "provider_name",
            "api_type",
            "finish_reason",
            "native_finish_reason",
            "user",
            "session_id",
            "external_user",
            "http_referer",
            "x_title",
            "user_agent",
            "origin",
            "request_id",
            "upstream_id",
            "router",
            "preset_id",
        ];
        let obj = v
            .as_object_mut()
            .ok_or_else(|| ValidationError::new("record must be a JSON object"))?;
        for key in NULLABLE_STRINGS {
            if obj.get(*key).is_some_and(Value::is_null) {
                obj.remove(*key);
            }
        }
        let known = |k: &str| FIELDS.contains(&k) || OPENROUTER_EXTRAS.contains(&k);
        if let Some(unknown) = obj.keys().find(|k| !known(k)) {
            let hint = match unknown.as_str() {
                "metadata" | "tags" | "name" => "; put custom metadata in `trace`",
                _ => "",
            };
            return Err(ValidationError::new(format!(
                "{unknown} is not a known field{hint}"
            )));
        }
        let tokens_prompt = obj.get("tokens_prompt").and_then(Value::as_u64);
        let tokens_completion = obj.get("tokens_completion").and_then(Value::as_u64);
        let native_cached = obj.get("native_tokens_cached").and_then(Value::as_u64);
        let native_reasoning = obj.get("native_tokens_reasoning").and_then(Value::as_u64);
        if obj
            .get("usage")
            .is_some_and(|u| u.is_number() || u.is_null())
        {
            obj.remove("usage");
        }
        for k in OPENROUTER_EXTRAS {
            if *k != "api_key_hash" {
                obj.remove(*k);
            }
        }
        let api_key_hash = match obj.remove("api_key_hash") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(ValidationError::new("api_key_hash must be a string")),
        };
        let mut g = serde_path_to_error::deserialize::<_, Generation>(v).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.inner().to_string();
            if path == "." {
                ValidationError::new(msg)
            } else {
                ValidationError::new(format!("{path}: {msg}"))
            }
        })?;
        g.identity.api_key_hash = api_key_hash;
        g.validate()?;
        g.complete(
            ctx,
            tokens_prompt,
            tokens_completion,
            native_cached,
            native_reasoning,
        );
        Ok(g)
    }

    #[test]
    fn one_pass_parse_agrees_with_the_serde_reference() {
        let base: Value = serde_json::from_str(
            r#"{
            "id": "gen-1", "model": "openai/gpt-4o", "created_at": "2026-01-01T00:00:00Z",
            "provider_name": "OpenAI", "api_type": "completions", "streamed": true,
            "cancelled": false, "finish_reason": "stop", "native_finish_reason": "stop",
            "latency": 1200, "generation_time": 1000.5, "moderation_latency": 0,
            "time_to_first_token": 80, "total_cost": 0.0012, "upstream_inference_cost": 0.001,
            "cache_discount": -0.5, "is_byok": false, "user": "u1", "session_id": "s1",
            "trace": {"trace_id": "t1", "env": "prod"}, "external_user": "x",
            "request": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:x"}}]}], "temperature": 0.2},
            "response": {"choices": [{"message": {"role": "assistant", "content": "hello"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
            "error": {"code": 429, "message": "slow down"},
            "http_referer": "https://a.test", "x_title": "App", "user_agent": "ua",
            "origin": "https://o.test", "request_id": "r", "upstream_id": "up", "router": "auto",
            "preset_id": "p", "data_region": "eu",
            "app_id": 3, "num_fetches": null, "tokens_prompt": 10, "tokens_completion": 5,
            "native_tokens_cached": 1, "native_tokens_reasoning": 2,
            "usage": {"prompt_tokens": 7, "completion_tokens": 1, "cost_details": {"x": 1}}
        }"#,
        )
        .unwrap();
        let mut cases = vec![base.clone(), json!([1]), json!("x"), json!(null)];
        let keys: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
        let odd = [
            json!(null),
            json!(5),
            json!(-1),
            json!(1.5),
            json!("s"),
            json!(true),
            json!([1, "a"]),
            json!({"a": 1}),
            json!({"prompt_tokens": -1}),
            json!(["x", {"y": -1}]),
            json!({"code": "e"}),
            json!(u64::MAX),
        ];
        for k in &keys {
            let mut without = base.clone();
            without.as_object_mut().unwrap().remove(k);
            cases.push(without);
            for v in &odd {
                let mut c = base.clone();
                c[k] = v.clone();
                cases.push(c);
            }
        }
        for extra in [
            "api_key_hash",
            "identity",
            "tags",
            "metadata",
            "zzz",
            "workspace_id",
        ] {
            for v in [json!(null), json!("a".repeat(64)), json!(1)] {
                let mut c = base.clone();
                c[extra] = v;
                cases.push(c);
            }
        }
        cases.push(json!({"model": "m"}));
        cases.push(json!({"id": 1, "model": 2}));
        cases.push(json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "usage": 0.2, "tokens_prompt": 4}));
        let ctx = IngestContext {
            session_header: Some("hdr".into()),
        };
        for c in cases {
            let (new, old) = (
                Generation::from_json(c.clone(), &ctx),
                reference(c.clone(), &ctx),
            );
            assert_eq!(new, old, "input {c}");
        }
    }

    #[test]
    fn errors_name_fields() {
        let e = |v: Value| parse(v).unwrap_err().0;
        assert_eq!(
            e(json!({"model": "m", "created_at": "2026-01-01T00:00:00Z"})),
            "missing field `id`"
        );
        assert!(
            e(json!({"id": "g", "model": "m", "created_at": "yesterday"}))
                .starts_with("created_at must be an RFC 3339")
        );
        assert!(
            e(json!({"id": "x".repeat(257), "model": "m", "created_at": "2026-01-01T00:00:00Z"}))
                .starts_with("id must be 1 to 256")
        );
        assert!(e(json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "user": "u".repeat(129)})).starts_with("user must be at most 128"));
        assert!(e(json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "usage": {"prompt_tokens": -1}})).starts_with("usage.prompt_tokens:"));
        assert!(e(json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "data_region": "mars"})).starts_with("data_region:"));
        assert_eq!(
            e(
                json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "tags": ["a"]})
            ),
            "tags is not a known field; put custom metadata in `trace`"
        );
        assert_eq!(
            e(
                json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "trace": {"trace_id": 5}})
            ),
            "trace.trace_id must be a string"
        );
        assert_eq!(e(json!([1])), "record must be a JSON object");
    }
}
