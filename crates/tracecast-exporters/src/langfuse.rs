//! `langfuse`: generations as OTLP/HTTP JSON to Langfuse's OpenTelemetry endpoint,
//! `POST {baseUrl}/api/public/otel/v1/traces`, with Langfuse's own attribute names.
//!
//! # Protocol choice and sources
//!
//! Langfuse has two write paths: the JSON batch API `POST /api/public/ingestion` (207 with
//! per-event answers) and the OTLP endpoint. This exporter uses **OTLP**:
//! - Langfuse labels the batch API legacy: a Langfuse v4 deployment in `events_only` mode
//!   rejects every trace and observation event sent there, and the current Python SDK
//!   (`langfuse` 5.x) no longer ships an ingestion client at all; its generated API client
//!   documents the OTLP endpoint as "the only real-time write path" together with the v2
//!   observations API, and says direct exporters must send `x-langfuse-ingestion-version: 4`
//!   (`langfuse/api/opentelemetry/client.py`; `web/src/pages/api/public/ingestion.ts` and
//!   `web/src/pages/api/public/otel/v1/traces/index.ts` in the langfuse repository).
//! - OpenRouter's own Langfuse destination is OTLP-based: its page says `environment` and
//!   `release` are "emitted as both a resource attribute and observation attribute", and the
//!   traces it produces carry `langfuse.trace.name`, `langfuse.observation.*`,
//!   `langfuse.environment` and `langfuse.release` next to the GenAI `gen_ai.*` attributes
//!   (OpenRouter's `broadcast/langfuse.mdx`; tracecast's destination-protocols notes, §1 and the
//!   OpenRouter Broadcast spec notes).
//!
//! Attribute names are those of Langfuse's SDKs and server
//! (`LangfuseOtelSpanAttributes` in `langfuse/_client/attributes.py` and
//! `packages/shared/src/server/otel/attributes.ts`); how the server reads them is in
//! `packages/shared/src/server/otel/OtelIngestionProcessor.ts`.
//!
//! # Shape
//!
//! The shared OTLP encoder ([`crate::otlp`], `docs/otlp.md`) builds the spans; [`LangfuseDialect`]
//! renames and adds attributes:
//!
//! | OpenRouter input | Langfuse | attribute |
//! |---|---|---|
//! | `trace.trace_id` | trace id | OTLP trace id: itself when 32 hex characters, else SHA-256 of it (first 16 bytes); the raw key stays in the resource attribute `openrouter.trace.id` |
//! | `trace.trace_name` (default: model) | trace name | `langfuse.trace.name` on the top-most span |
//! | `trace.span_name` | span observation | an intermediate span (`langfuse.observation.type` = `span`) |
//! | `trace.generation_name` (default: model) | generation name | the generation span's name |
//! | `trace.parent_span_id` | parent observation id | OTLP parent span id only when it can name an observation the user sent (16 hex characters in the user's own 32-hex trace id: Langfuse SDKs from v3 are OpenTelemetry-based); else `langfuse.observation.metadata.parent_span_id` on the top-most span, the trace's root |
//! | `trace.environment` | environment | `langfuse.environment` on the resource and on every span, normalised to Langfuse's rule (see below) |
//! | `trace.release` | release | `langfuse.release` on the resource and on every span |
//! | `trace.tags` (array or comma-separated string) | trace tags | `langfuse.trace.tags` (also kept as metadata) |
//! | other `trace` keys | trace metadata | `langfuse.trace.metadata.<key>` |
//! | `user` | user id | `user.id` |
//! | `session_id` | session id | `session.id` |
//! | request messages / prompt / input | observation input | `langfuse.observation.input` (JSON `{"messages":[...]}`); not in privacy mode |
//! | completion, reasoning, tool calls | observation output | `langfuse.observation.output` (JSON `{"completion":...,"reasoning":...}`); not in privacy mode |
//! | `response.model`, else `model` | model | `langfuse.observation.model.name` |
//! | request parameters | model parameters | `langfuse.observation.model.parameters` (JSON) |
//! | `usage` | usage details | `langfuse.observation.usage_details` (JSON, Langfuse's flattening of OpenAI usage: `input`, `output`, `total`, `input_cached_tokens`, ...) |
//! | `total_cost` | cost | `langfuse.observation.cost_details` = `{"total": cost}` |
//! | `created_at` + `time_to_first_token` | completion start time | `langfuse.observation.completion_start_time` (ISO-8601) |
//! | `error` | level ERROR, status message | `langfuse.observation.level`, `langfuse.observation.status_message` |
//!
//! The resource has no `service.version`: Langfuse reads it as the version of every observation
//! and trace (`OtelIngestionProcessor.ts`), and OpenRouter's fixed `1.0.0` is not the user's.
//!
//! Everything else the shared encoder sends (`gen_ai.*` usage and request attributes,
//! `openrouter.*` and the optional metadata groups) is kept: Langfuse stores unknown attributes
//! in the observation's `metadata.attributes`.
//!
//! Environment: Langfuse accepts `^(?!langfuse)[a-z0-9-_]+$`, at most 40 characters, and drops
//! an observation whose environment breaks the rule. A value that does not fit is lower-cased,
//! other characters become `-`, a leading `langfuse` gets an `env-` prefix and the result is cut
//! at 40 characters; the value as given is then kept as `langfuse.trace.metadata.environment`.
//!
//! # Limits and truncation
//!
//! Requests carry at most 500 generations and 3.5 MB ([`LIMITS`]). The string attributes of
//! one generation span are kept under 1 MB on the wire ([`MAX_SPAN_STRING_BYTES`], the
//! per-event default of Langfuse's SDKs): past that, the largest strings (usually the input and
//! output) are cut and end with `… [truncated by tracecast: kept K of N bytes]`, the span gets
//! `langfuse.observation.metadata.tracecast_truncated` = true and
//! `langfuse.observation.metadata.tracecast_truncated_attributes` (the keys cut), and its level
//! becomes WARNING unless it is an error.
//!
//! # Answers
//!
//! 2xx delivered (an OTLP `partialSuccess` in it is logged, not retried, as the OTLP
//! specification says); 401/403 pause the destination; 408, 429 (with `Retry-After`) and 5xx
//! are retried; other 4xx are dead-lettered. Langfuse's OTLP endpoint has no per-item answer.
//!
//! # Test connection
//!
//! `GET {baseUrl}/api/public/projects` proves the key pair ("Langfuse rejected the
//! public/secret key pair (401)"), then an empty OTLP export request proves the traces endpoint
//! (a Langfuse v2 server, which has none, answers 404).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Map, Value};
use tracecast_model::trace::TraceView;

use crate::config::{optional_str, required_str};
use crate::otlp::keys as k;
use crate::otlp::{
    AttrValue, AttributeKey, Attributes, Element, OtlpDialect, OtlpExporter, OtlpHttp, Probe,
    SpanRole, SpanSlot, snippet,
};
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, FragmentEncoder, Outcome,
    Payload,
};

/// The platform's name in messages.
pub const PLATFORM: &str = "Langfuse";
/// `baseUrl` when the config gives none (OpenRouter's default).
pub const DEFAULT_BASE_URL: &str = "https://us.cloud.langfuse.com";
/// The OTLP traces endpoint, under the base URL.
pub const OTLP_PATH: &str = "/api/public/otel/v1/traces";
/// What the connection test reads with the key pair.
pub const PROJECTS_PATH: &str = "/api/public/projects";
/// Selects Langfuse's real-time (v4) processing of OTLP spans; a value given in the
/// destination's `headers` wins.
pub const INGESTION_VERSION_HEADER: &str = "x-langfuse-ingestion-version";
pub const INGESTION_VERSION: &str = "4";
/// Wire bytes of the string attributes of one generation span before content is truncated.
pub const MAX_SPAN_STRING_BYTES: usize = 1_000_000;
/// Batch limits: 500 generations or 3.5 MB per request.
pub const LIMITS: BatchLimits = BatchLimits {
    max_items: 500,
    max_bytes: 3_500_000,
};
/// Name of this dialect's encoding in the engine's fragment cache.
pub const FRAGMENT_KEY: &str = "otlp-json/langfuse";

/// Langfuse's attribute names (`LangfuseOtelSpanAttributes`).
pub mod keys {
    pub const TRACE_NAME: &str = "langfuse.trace.name";
    pub const TRACE_TAGS: &str = "langfuse.trace.tags";
    /// Prefix: `langfuse.trace.metadata.<key>`.
    pub const TRACE_METADATA_PREFIX: &str = "langfuse.trace.metadata.";
    pub const OBSERVATION_TYPE: &str = "langfuse.observation.type";
    /// Prefix: `langfuse.observation.metadata.<key>`.
    pub const OBSERVATION_METADATA_PREFIX: &str = "langfuse.observation.metadata.";
    pub const OBSERVATION_LEVEL: &str = "langfuse.observation.level";
    pub const OBSERVATION_STATUS_MESSAGE: &str = "langfuse.observation.status_message";
    pub const OBSERVATION_INPUT: &str = "langfuse.observation.input";
    pub const OBSERVATION_OUTPUT: &str = "langfuse.observation.output";
    pub const OBSERVATION_COMPLETION_START_TIME: &str =
        "langfuse.observation.completion_start_time";
    pub const OBSERVATION_MODEL: &str = "langfuse.observation.model.name";
    pub const OBSERVATION_MODEL_PARAMETERS: &str = "langfuse.observation.model.parameters";
    pub const OBSERVATION_USAGE_DETAILS: &str = "langfuse.observation.usage_details";
    pub const OBSERVATION_COST_DETAILS: &str = "langfuse.observation.cost_details";
    pub const ENVIRONMENT: &str = "langfuse.environment";
    pub const RELEASE: &str = "langfuse.release";
    /// The `trace.parent_span_id` a root observation was given but could not be linked to.
    pub const OBSERVATION_PARENT_SPAN_ID: &str = "langfuse.observation.metadata.parent_span_id";
    /// Set (true) on a generation span whose strings were cut.
    pub const TRUNCATED: &str = "langfuse.observation.metadata.tracecast_truncated";
    /// The keys of the attributes that were cut.
    pub const TRUNCATED_ATTRIBUTES: &str =
        "langfuse.observation.metadata.tracecast_truncated_attributes";
}

use keys as lf;

// ---------------------------------------------------------------------------------------------
// The dialect
// ---------------------------------------------------------------------------------------------

/// Langfuse's flavour of OTLP (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct LangfuseDialect;

/// `trace` keys mapped to first-class Langfuse fields instead of metadata.
const ENVIRONMENT_KEY: &str = "environment";
const RELEASE_KEY: &str = "release";
const TAGS_KEY: &str = "tags";

impl OtlpDialect for LangfuseDialect {
    /// The user's parent only when it can name an observation the user sent Langfuse: Langfuse
    /// SDKs (v3 on) are OpenTelemetry-based, so an observation id is a 16-hex span id and a
    /// trace id 32 hex. In any other form the parent cannot be in the trace; the generation is
    /// then the trace's root (Langfuse takes trace name, user and tags from the root) and the
    /// parent goes in `langfuse.observation.metadata.parent_span_id`.
    fn parent_span_id(&self, view: &TraceView<'_>) -> Option<[u8; 8]> {
        view.otlp_linkable_parent_span_id()
    }

    fn attribute_key(&self, element: Element, key: &str) -> AttributeKey {
        if element == Element::Resource && key == k::SERVICE_VERSION {
            // Langfuse reads `service.version` as the version of every observation and trace
            // (`OtelIngestionProcessor.ts`): OpenRouter's fixed `1.0.0` is not the user's.
            return AttributeKey::Drop;
        }
        if !matches!(element, Element::Span(_)) {
            return AttributeKey::Keep;
        }
        match key {
            k::OPENROUTER_OBSERVATION_TYPE => {
                AttributeKey::Rename(Cow::Borrowed(lf::OBSERVATION_TYPE))
            }
            k::OPENROUTER_TRACE_NAME => AttributeKey::Rename(Cow::Borrowed(lf::TRACE_NAME)),
            k::GEN_AI_PROMPT => AttributeKey::Rename(Cow::Borrowed(lf::OBSERVATION_INPUT)),
            k::GEN_AI_COMPLETION => AttributeKey::Rename(Cow::Borrowed(lf::OBSERVATION_OUTPUT)),
            _ => match key.strip_prefix(k::TRACE_METADATA_PREFIX) {
                Some(ENVIRONMENT_KEY | RELEASE_KEY) => AttributeKey::Drop,
                Some(name) => {
                    let mut renamed =
                        String::with_capacity(lf::TRACE_METADATA_PREFIX.len() + name.len());
                    renamed.push_str(lf::TRACE_METADATA_PREFIX);
                    renamed.push_str(name);
                    AttributeKey::Rename(Cow::Owned(renamed))
                }
                None => AttributeKey::Keep,
            },
        }
    }

    fn resource_attributes<'a>(&self, view: &TraceView<'a>, attrs: &mut Attributes<'a, '_>) {
        add_environment_and_release(view, attrs, false);
    }

    fn span_attributes<'a>(
        &self,
        view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        match slot.role {
            SpanRole::Intermediate => add_environment_and_release(view, attrs, false),
            SpanRole::Generation => generation_attributes(view, attrs),
        }
        if let Some(parent) = slot.unsent_parent(view) {
            attrs.string(lf::OBSERVATION_PARENT_SPAN_ID, parent);
        }
    }
}

/// The custom `trace` value under `key`, if any.
fn trace_value<'a>(view: &TraceView<'a>, key: &str) -> Option<&'a Value> {
    view.metadata()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// A scalar as text (strings as they are, numbers and booleans written out).
fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Langfuse's environment rule: `^(?!langfuse)[a-z0-9-_]+$`, at most 40 characters.
pub fn environment_is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && !s.starts_with("langfuse")
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// An environment name Langfuse accepts: the value itself when it does, else lower-cased with
/// other characters as `-`, an `env-` prefix before a leading `langfuse`, cut at 40 characters.
/// `None` when nothing usable is left.
pub fn normalise_environment(raw: &str) -> Option<Cow<'_, str>> {
    if environment_is_valid(raw) {
        return Some(Cow::Borrowed(raw));
    }
    let mut out: String = raw
        .trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.starts_with("langfuse") {
        out.insert_str(0, "env-");
    }
    out.truncate(40); // ASCII only by now
    if out.is_empty() || out.bytes().all(|b| b == b'-') {
        return None;
    }
    Some(Cow::Owned(out))
}

/// `langfuse.environment` and `langfuse.release` from the custom `trace` keys. On the
/// generation span (`keep_original`), a value that could not be sent verbatim is also kept as
/// trace metadata.
fn add_environment_and_release<'a>(
    view: &TraceView<'a>,
    attrs: &mut Attributes<'a, '_>,
    keep_original: bool,
) {
    if let Some(raw) = trace_value(view, ENVIRONMENT_KEY) {
        let env = match raw {
            Value::String(s) => normalise_environment(s),
            other => scalar_text(other)
                .and_then(|t| normalise_environment(&t).map(|e| Cow::Owned(e.into_owned()))),
        };
        let verbatim = matches!((raw, &env), (Value::String(s), Some(e)) if s == e);
        if let Some(env) = env {
            attrs.string(lf::ENVIRONMENT, env);
        }
        if keep_original && !verbatim {
            attrs.value(
                const_concat(lf::TRACE_METADATA_PREFIX, ENVIRONMENT_KEY),
                raw,
            );
        }
    }
    if let Some(raw) = trace_value(view, RELEASE_KEY) {
        match scalar_text(raw) {
            Some(release) => {
                attrs.string(lf::RELEASE, release);
            }
            None if keep_original => {
                attrs.value(const_concat(lf::TRACE_METADATA_PREFIX, RELEASE_KEY), raw);
            }
            None => {}
        }
    }
}

fn const_concat(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len());
    s.push_str(a);
    s.push_str(b);
    s
}

/// Tags from the custom `trace.tags`: an array (each element as text) or a comma-separated
/// string.
pub(crate) fn tags<'a>(view: &TraceView<'a>) -> Vec<Cow<'a, str>> {
    match trace_value(view, TAGS_KEY) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::Null => None,
                Value::Array(_) | Value::Object(_) => Some(Cow::Owned(v.to_string())),
                other => scalar_text(other),
            })
            .filter(|t| !t.trim().is_empty())
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Cow::Borrowed)
            .collect(),
        _ => Vec::new(),
    }
}

/// Usage in Langfuse's own flattening of OpenAI usage (the ingestion schema's transform):
/// `input` and `output` exclude their details, which follow as `input_<detail>` and
/// `output_<detail>`.
pub fn usage_details(view: &TraceView<'_>) -> Option<Map<String, Value>> {
    let usage = view.usage()?;
    let mut out = Map::new();
    let mut put = |key: &str, v: Option<u64>| {
        if let Some(v) = v {
            out.insert(key.to_owned(), Value::from(v));
        }
    };
    let pd = usage.prompt_tokens_details.as_ref();
    let cd = usage.completion_tokens_details.as_ref();
    let prompt_parts = [
        ("input_cached_tokens", pd.and_then(|d| d.cached_tokens)),
        (
            "input_cache_write_tokens",
            pd.and_then(|d| d.cache_write_tokens),
        ),
        ("input_audio_tokens", pd.and_then(|d| d.audio_tokens)),
    ];
    let completion_parts = [
        (
            "output_reasoning_tokens",
            cd.and_then(|d| d.reasoning_tokens),
        ),
        ("output_audio_tokens", cd.and_then(|d| d.audio_tokens)),
        ("output_image_tokens", cd.and_then(|d| d.image_tokens)),
    ];
    let rest = |total: Option<u64>, parts: &[(&str, Option<u64>)]| {
        total.map(|t| {
            parts
                .iter()
                .filter_map(|(_, v)| *v)
                .fold(t, u64::saturating_sub)
        })
    };
    put("input", rest(usage.prompt_tokens, &prompt_parts));
    put("output", rest(usage.completion_tokens, &completion_parts));
    put("total", view.total_tokens());
    for (key, v) in prompt_parts.into_iter().chain(completion_parts) {
        put(key, v);
    }
    (!out.is_empty()).then_some(out)
}

/// `{"total": total_cost}` when the cost is a finite, non-negative number (Langfuse rejects
/// negative costs).
pub fn cost_details(view: &TraceView<'_>) -> Option<Map<String, Value>> {
    let cost = view.total_cost().filter(|c| c.is_finite() && *c >= 0.0)?;
    let mut out = Map::new();
    out.insert("total".into(), Value::from(cost));
    Some(out)
}

/// Start time plus time to first token, as ISO-8601 (UTC, milliseconds).
pub fn completion_start_time(view: &TraceView<'_>) -> Option<String> {
    let ttft = view
        .time_to_first_token_ms()
        .filter(|t| t.is_finite() && *t >= 0.0)?;
    let start = view.start_unix_nanos();
    if start == 0 {
        return None;
    }
    let at = start.saturating_add((ttft * 1_000_000.0) as u64);
    let at = i64::try_from(at).ok()?;
    Some(
        chrono::DateTime::from_timestamp_nanos(at)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn generation_attributes<'a>(view: &TraceView<'a>, attrs: &mut Attributes<'a, '_>) {
    attrs.string(lf::OBSERVATION_MODEL, view.response_model());
    let params = view.model_parameters();
    if !params.is_empty() {
        attrs.json(lf::OBSERVATION_MODEL_PARAMETERS, &params);
    }
    if let Some(usage) = usage_details(view) {
        attrs.json(lf::OBSERVATION_USAGE_DETAILS, &usage);
    }
    if let Some(cost) = cost_details(view) {
        attrs.json(lf::OBSERVATION_COST_DETAILS, &cost);
    }
    if let Some(at) = completion_start_time(view) {
        attrs.string(lf::OBSERVATION_COMPLETION_START_TIME, at);
    }
    add_environment_and_release(view, attrs, true);
    let tags = tags(view);
    if !tags.is_empty() {
        attrs.strings(lf::TRACE_TAGS, tags);
    }

    let truncated = truncate_strings(attrs, MAX_SPAN_STRING_BYTES);
    if !truncated.is_empty() {
        attrs.bool(lf::TRUNCATED, true);
        attrs.strings(lf::TRUNCATED_ATTRIBUTES, truncated.clone());
    }

    match view.error() {
        Some(err) => {
            attrs
                .string(lf::OBSERVATION_LEVEL, "ERROR")
                .string(lf::OBSERVATION_STATUS_MESSAGE, err.message.as_str());
        }
        None if !truncated.is_empty() => {
            attrs.string(lf::OBSERVATION_LEVEL, "WARNING").string(
                lf::OBSERVATION_STATUS_MESSAGE,
                format!(
                    "tracecast truncated {} to fit Langfuse's span size limit",
                    truncated.join(", ")
                ),
            );
        }
        None => {
            attrs.string(lf::OBSERVATION_LEVEL, "DEFAULT");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

/// Bytes a character takes inside a JSON string.
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Bytes `s` takes inside a JSON string (without the quotes).
pub fn escaped_len(s: &str) -> usize {
    s.chars().map(escaped_char_len).sum()
}

/// Cuts the largest string attributes until all string values together take at most `budget`
/// bytes on the wire; returns the keys of those cut, in the order cut. A cut value keeps its
/// beginning and ends with `… [truncated by tracecast: kept K of N bytes]`.
pub fn truncate_strings(attrs: &mut Attributes<'_, '_>, budget: usize) -> Vec<String> {
    let raw: usize = attrs
        .iter()
        .map(|a| match &a.value {
            AttrValue::String(s) => s.len(),
            _ => 0,
        })
        .sum();
    // No character takes more than 6 bytes escaped: most spans stop here without scanning.
    if raw.saturating_mul(6) <= budget {
        return Vec::new();
    }
    let mut sizes: Vec<(String, usize)> = attrs
        .iter()
        .filter_map(|a| match &a.value {
            AttrValue::String(s) => Some((a.key.to_string(), escaped_len(s))),
            _ => None,
        })
        .collect();
    let total: usize = sizes.iter().map(|(_, n)| n).sum();
    if total <= budget {
        return Vec::new();
    }
    // Largest first; the key breaks ties so that the result does not depend on the order.
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut over = total - budget;
    let mut cut = Vec::new();
    for (key, size) in sizes {
        if over == 0 {
            break;
        }
        let Some(AttrValue::String(original)) = attrs.get(&key) else {
            continue;
        };
        let original_len = original.len();
        // Room for the marker, so the cut value ends up at least `over` bytes smaller.
        let keep = size.saturating_sub(over + 96);
        let mut kept_bytes = 0;
        let mut escaped = 0;
        for c in original.chars() {
            let n = escaped_char_len(c);
            if escaped + n > keep {
                break;
            }
            escaped += n;
            kept_bytes += c.len_utf8();
        }
        let value = format!(
            "{}… [truncated by tracecast: kept {kept_bytes} of {original_len} bytes]",
            &original[..kept_bytes]
        );
        let new_size = escaped_len(&value);
        over = over.saturating_sub(size.saturating_sub(new_size));
        crate::truncate::replace_string(attrs, key.clone(), value);
        cut.push(key);
    }
    cut
}

// ---------------------------------------------------------------------------------------------
// The exporter
// ---------------------------------------------------------------------------------------------

/// The Langfuse destination: an [`OtlpExporter`] with [`LangfuseDialect`], plus a connection
/// test that reads the project with the key pair first.
pub struct LangfuseExporter {
    otlp: OtlpExporter<LangfuseDialect>,
    client: reqwest::Client,
    timeout: Duration,
    base_url: String,
    projects_url: Url,
    headers: HeaderMap,
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(exporter(config, ctx)?))
}

/// The base URL without a trailing `/` or a pasted OTLP path.
fn normalise_base_url(raw: &str) -> &str {
    let mut base = raw.trim().trim_end_matches('/');
    for suffix in [OTLP_PATH, "/api/public/otel"] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            base = stripped.trim_end_matches('/');
            break;
        }
    }
    base
}

pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<LangfuseExporter, ExportError> {
    let public_key = required_str(config, "publicKey")?;
    let secret_key = required_str(config, "secretKey")?;
    let base_url = normalise_base_url(optional_str(config, "baseUrl").unwrap_or(DEFAULT_BASE_URL));
    let projects_url = Url::parse(&format!("{base_url}{PROJECTS_PATH}"))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            ExportError::Config(format!("baseUrl: {base_url:?} is not an http(s) URL"))
        })?;

    let mut headers = crate::config::custom_headers(config)?;
    let ingestion_version = HeaderName::from_static(INGESTION_VERSION_HEADER);
    if !headers.contains_key(&ingestion_version) {
        headers.insert(
            ingestion_version,
            HeaderValue::from_static(INGESTION_VERSION),
        );
    }
    let auth = crate::http::secret_value(
        &crate::http::basic_auth(public_key, secret_key),
        "publicKey/secretKey: not usable in a header",
    )?;
    headers.insert(AUTHORIZATION, auth);

    let http = OtlpHttp::new(
        ctx,
        Method::POST,
        &format!("{base_url}{OTLP_PATH}"),
        headers.clone(),
    )
    .map_err(|e| ExportError::Config(format!("baseUrl: {e}")))?
    .with_compression(crate::compression::Compression::for_destination(
        tracecast_model::DestinationType::Langfuse,
        config,
    ))
    .with_partial_success(true);
    let probe = Probe {
        credentials: "the public/secret key pair",
        hint_404: Some(
            "this Langfuse has no OTLP endpoint (/api/public/otel/v1/traces); Langfuse v3 or later is needed",
        ),
        ..Probe::new(PLATFORM)
    };
    let otlp = OtlpExporter::new(http, LangfuseDialect, FRAGMENT_KEY, probe).with_limits(LIMITS);
    Ok(LangfuseExporter {
        otlp,
        client: ctx.client.clone(),
        timeout: ctx.timeout,
        base_url: base_url.to_owned(),
        projects_url,
        headers,
    })
}

impl LangfuseExporter {
    /// The OTLP exporter underneath (endpoint, dialect, the request a batch becomes).
    pub fn otlp(&self) -> &OtlpExporter<LangfuseDialect> {
        &self.otlp
    }

    /// Reads the project with the key pair: `Ok(project name)` or the failed check.
    async fn check_key_pair(&self) -> Result<Option<String>, ConnectionCheck> {
        let resp = self
            .client
            .get(self.projects_url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                ConnectionCheck::unreachable(PLATFORM, &crate::http::transport_message(&e))
            })?;
        let status = resp.status().as_u16();
        let body = crate::http::read_capped(resp, 64 * 1024).await;
        match status {
            200..=299 => Ok(serde_json::from_str::<Value>(&body).ok().and_then(|v| {
                v.get("data")?
                    .get(0)?
                    .get("name")?
                    .as_str()
                    .map(str::to_owned)
            })),
            401 | 403 => Err(ConnectionCheck::failed(
                Some(status),
                format!("{PLATFORM} rejected the public/secret key pair ({status})"),
            )),
            404 => Err(ConnectionCheck::failed(
                Some(status),
                format!(
                    "{PLATFORM} answered 404 to GET {PROJECTS_PATH}: check that baseUrl ({}) is the Langfuse host, e.g. https://cloud.langfuse.com{}",
                    self.base_url,
                    snippet(&body)
                ),
            )),
            _ => Err(ConnectionCheck::failed(
                Some(status),
                format!(
                    "{PLATFORM} answered {status} to GET {PROJECTS_PATH}{}",
                    snippet(&body)
                ),
            )),
        }
    }
}

#[async_trait]
impl Exporter for LangfuseExporter {
    fn limits(&self) -> BatchLimits {
        LIMITS
    }

    fn fragments(&self) -> Option<&dyn FragmentEncoder> {
        self.otlp.fragments()
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        self.otlp.encode(traces)
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        self.otlp.send(payload).await
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let project = match self.check_key_pair().await {
            Ok(p) => p,
            Err(failed) => return failed,
        };
        let otlp = self.otlp.test_connection().await;
        if !otlp.ok {
            return otlp;
        }
        let status = otlp.status.unwrap_or(200);
        let project = project
            .map(|p| format!(" for project {p:?}"))
            .unwrap_or_default();
        ConnectionCheck::passed(
            status,
            format!(
                "{PLATFORM} accepted the public/secret key pair{project}, and its OTLP endpoint accepted an empty export request ({status})"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments() {
        assert_eq!(normalise_environment("production").unwrap(), "production");
        assert_eq!(normalise_environment("Prod EU").unwrap(), "prod-eu");
        assert_eq!(
            normalise_environment("langfuse-internal").unwrap(),
            "env-langfuse-internal"
        );
        assert_eq!(normalise_environment(&"x".repeat(50)).unwrap().len(), 40);
        assert!(normalise_environment("").is_none());
        assert!(normalise_environment("!!!").is_none());
        assert!(environment_is_valid("staging_2-b"));
        assert!(!environment_is_valid("Staging"));
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            normalise_base_url("https://cloud.langfuse.com/"),
            "https://cloud.langfuse.com"
        );
        assert_eq!(
            normalise_base_url("https://lf.example/api/public/otel/v1/traces"),
            "https://lf.example"
        );
        assert_eq!(
            normalise_base_url("https://lf.example/sub/api/public/otel"),
            "https://lf.example/sub"
        );
    }

    fn wire_total(a: &Attributes<'_, '_>) -> usize {
        a.iter()
            .map(|x| match &x.value {
                AttrValue::String(s) => escaped_len(s),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn truncation_fits_the_budget_and_cuts_the_largest_first() {
        let dialect = LangfuseDialect;
        let keys = |e: Element, k: &str| dialect.attribute_key(e, k);
        let big = "é\"x\n".repeat(200_000); // 1 MB raw, 1.4 MB escaped
        let mid = "y".repeat(300_000);
        let mut a = Attributes::new(&keys, Element::Span(SpanRole::Generation), 4);
        a.string("in", big.as_str())
            .string("out", mid.as_str())
            .string("small", "keep me")
            .int("n", 7);
        let cut = truncate_strings(&mut a, 500_000);
        assert!(wire_total(&a) <= 500_000, "{}", wire_total(&a));
        assert_eq!(cut[0], "in");
        let AttrValue::String(v) = a.get("in").unwrap() else {
            panic!("a string")
        };
        assert!(v.starts_with("é\"x\n"));
        assert!(
            v.ends_with(&format!(" of {} bytes]", big.len())),
            "{}",
            &v[v.len() - 80..]
        );
        assert_eq!(a.get("small"), Some(&AttrValue::String("keep me".into())));
        assert_eq!(a.get("n"), Some(&AttrValue::Int(7)));

        // Both large values: both are cut.
        let mut a = Attributes::new(&keys, Element::Span(SpanRole::Generation), 4);
        a.string("in", big.as_str()).string("out", big.as_str());
        let cut = truncate_strings(&mut a, 100_000);
        assert_eq!(cut.len(), 2, "{cut:?}");
        assert!(wire_total(&a) <= 100_000);

        // Under budget: untouched.
        let mut a = Attributes::new(&keys, Element::Span(SpanRole::Generation), 4);
        a.string("in", mid.as_str());
        assert!(truncate_strings(&mut a, 1_000_000).is_empty());
        assert_eq!(wire_total(&a), 300_000);
    }

    #[test]
    fn escaped_lengths() {
        for s in ["plain", "quote\"d", "new\nline", "\u{1}", "ünï", ""] {
            assert_eq!(
                escaped_len(s) + 2,
                serde_json::to_string(s).unwrap().len(),
                "{s:?}"
            );
        }
    }
}
