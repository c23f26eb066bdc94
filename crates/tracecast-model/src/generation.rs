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

/// Input fields that may be null; `null` means absent.
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
    pub fn from_json(mut v: Value, ctx: &IngestContext) -> Result<Generation, ValidationError> {
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
        // OpenRouter's generation object has `usage` as a number (credits); the record's `usage`
        // is the OpenAI-style object, so a number is dropped and the token counts are used.
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
        if obj.contains_key("identity") {
            return Err(ValidationError::new(
                "identity is set by tracecast and cannot be sent",
            ));
        }
        let de = serde_path_to_error::deserialize::<_, Generation>(v);
        let mut g = de.map_err(|e| {
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
