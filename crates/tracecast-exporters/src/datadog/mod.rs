//! `datadog`: Datadog LLM Observability through its agentless HTTP spans API.
//!
//! # Protocol and source
//!
//! `POST {url}/api/intake/llm-obs/v1/trace/spans` with `DD-API-KEY: <apiKey>` and a JSON body
//! `{"data":{"type":"span","attributes":{"ml_app","tags","spans":[...]}}}`; Datadog answers 202
//! with an empty body. This is the HTTP API Datadog documents for sending LLM Observability
//! spans from any language ("LLM Observability HTTP API Reference",
//! docs.datadoghq.com/llm_observability/instrumentation/api, the `DataDog/documentation`
//! page `content/en/llm_observability/instrumentation/api.md`), and it keeps LLM span kinds,
//! input/output messages and token metrics first-class. Datadog's OTLP intake for LLM
//! Observability (`otlp.<site>/v1/traces` with `dd-otlp-source=llmobs`) is the other option;
//! it needs extra attributes whose requirements were still unsettled when this was written
//! (see `destination-protocols.md` §3.3), so the documented spans API is used.
//!
//! # Mapping (see `docs/destinations/datadog.md` for the full table)
//!
//! One generation gives one `llm` span, plus a `workflow` span for `trace.span_name`, plus a
//! root `workflow` span named `trace.trace_name` when the trace has a name of its own and
//! another span is named after something else, as OpenRouter's Datadog guide describes
//! (`trace_name` names the root span, `span_name` the intermediate workflow span,
//! `generation_name` the LLM span). `trace_id` is `trace.trace_id` itself when it is a Datadog
//! trace id, else the 128-bit trace id in lower-case hex (the same id the OTLP destinations
//! use); span ids are 64-bit decimal strings derived from the generation id (or the trace key
//! and span name), so retries send the same ids.
//!
//! # Parents
//!
//! Datadog lists only traces with a root, and a span whose parent it never receives is an
//! orphan. A user's own Datadog span has a decimal 64-bit span id (ddtrace 4.16.0
//! `ddtrace/llmobs/_llmobs.py`: `"span_id": str(span.span_id)`) in a trace whose id ddtrace's
//! `format_trace_id` writes as 32 hex characters or in decimal. So `trace.parent_span_id` is the
//! top-most span's `parent_id` only when it is such a span id and `trace.trace_id` such a trace
//! id ([`linked_parent`]); any other parent keeps the generation's spans rooted (`"undefined"`)
//! and is kept in `meta.metadata.parent_span_id`.
//!
//! `ml_app` is the config `mlApp`, normalised to Datadog's naming rules. Tags: `service:<ml_app>`
//! on the request; `user_id:<user>`, `session_id:<session>`, `env:<trace.environment>`,
//! `version:<trace.release>`, `model_name:`, `model_provider:` on each span. Custom `trace` keys
//! go to `meta.metadata` (Datadog's flat metadata dictionary: strings, numbers and booleans;
//! objects and arrays as JSON text). Privacy mode: no `meta.input` / `meta.output` at all.
//!
//! # Limits
//!
//! As ddtrace 4.16.0 (`ddtrace/internal/evp_proxy/constants.py`): a span event of 5 MB or more
//! (`DEFAULT_EVP_EVENT_SIZE_LIMIT = 5_000_000`) keeps its metadata and metrics, but its input and
//! output are replaced by a marker text, and it is flagged
//! (`meta.metadata["tracecast.truncated"] = true`, tag `tracecast_truncated:true`, and
//! `collection_errors: ["dropped_io"]`, the marker ddtrace itself sets on such spans). A batch
//! whose spans exceed a request's 5 MiB (`DEFAULT_EVP_PAYLOAD_SIZE_LIMIT`) is sent as several
//! requests (see [`crate::chunking`]).
//!
//! # Old spans
//!
//! Datadog's HTTP API "accepts spans with timestamps no more than 24 hours old"
//! (docs.datadoghq.com/llm_observability/instrumentation/api). A generation whose spans start
//! more than [`MAX_SPAN_AGE`] (23 h) before encoding, which a paused backlog can reach, is
//! re-stamped rather than silently dropped by Datadog: its spans end at the encoding time with
//! their duration, and carry the original start in `meta.metadata["tracecast.original_start_ns"]`,
//! `meta.metadata["tracecast.restamped"] = true` and the tag `tracecast_restamped:true`
//! ([`restamp_if_too_old`]).
//!
//! # Test connection
//!
//! `GET {url}/api/v1/validate` with the API key: 200 proves the site and the key ("Datadog
//! accepted the API key (200)"); 403 fails with "Datadog rejected the API key (403)".

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};
use tracecast_model::trace::TraceView;

use crate::chunking::{chunks, combine, pack, stops};
use crate::config::required_str;
use crate::content::{as_text, content_text, provider_id, snippet};
use crate::derived_ids::digest16;
use crate::http::transport_message;
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, Outcome, Payload, truncate,
};

/// The spans intake path, under the site's API base URL.
pub const SPANS_PATH: &str = "/api/intake/llm-obs/v1/trace/spans";
/// The API-key validation path.
pub const VALIDATE_PATH: &str = "/api/v1/validate";
/// A span event of this many bytes or more loses its input and output, as ddtrace does
/// (`DEFAULT_EVP_EVENT_SIZE_LIMIT = 5_000_000`, "5 MB, LLM Obs event size limit", in
/// `ddtrace/internal/evp_proxy/constants.py`, ddtrace 4.16.0).
pub const MAX_EVENT_BYTES: usize = 5_000_000;
/// A request over this many bytes is split (ddtrace's `DEFAULT_EVP_PAYLOAD_SIZE_LIMIT`, 5 MiB;
/// the intake's own limit is 5.1 MB).
pub const MAX_REQUEST_BYTES: usize = 5 << 20;
/// Spans that start earlier than this before now are re-stamped (module docs, "Old spans"):
/// Datadog accepts spans "no more than 24 hours old"; one hour is kept for the time between
/// encoding and Datadog's check.
pub const MAX_SPAN_AGE: Duration = Duration::from_secs(23 * 3600);
/// Datadog's tag length limit.
const MAX_TAG_LEN: usize = 200;
/// What replaces the input and output of a span over [`MAX_EVENT_BYTES`].
pub const DROPPED_IO: &str = "[tracecast: dropped, the span exceeded Datadog's 5 MB event limit]";

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(DatadogExporter::new(config, ctx)?))
}

/// The Datadog LLM Observability exporter.
pub struct DatadogExporter {
    client: reqwest::Client,
    timeout: Duration,
    spans_url: Url,
    validate_url: Url,
    headers: HeaderMap,
    /// Off by default: see [`crate::compression`].
    compression: crate::compression::Compression,
    ml_app: String,
    /// The current time in ns since the Unix epoch (a parameter for tests).
    now: fn() -> u64,
    /// `{"data":{"type":"span","attributes":{"ml_app":..,"tags":[..],"spans":[`
    prefix: String,
}

impl DatadogExporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let api_key = required_str(config, "apiKey")?;
        let ml_app = ml_app(required_str(config, "mlApp")?)?;
        let base =
            crate::config::optional_str(config, "url").unwrap_or("https://api.datadoghq.com");
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix(SPANS_PATH).unwrap_or(base);
        let parse = |path: &str| {
            let u = Url::parse(&format!("{base}{path}")).map_err(|e| {
                ExportError::Config(format!("url: {base:?} is not a valid URL: {e}"))
            })?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(ExportError::Config(format!(
                    "url: {base} is not an http(s) URL"
                )));
            }
            Ok(u)
        };
        let mut headers = crate::config::custom_headers(config)?;
        headers.insert(
            HeaderName::from_static("dd-api-key"),
            crate::http::secret_value(api_key, "apiKey is not a valid header value")?,
        );
        Ok(DatadogExporter {
            client: ctx.client.clone(),
            timeout: ctx.timeout,
            spans_url: parse(SPANS_PATH)?,
            validate_url: parse(VALIDATE_PATH)?,
            headers,
            compression: crate::compression::Compression::for_destination(
                tracecast_model::DestinationType::Datadog,
                config,
            ),
            prefix: format!(
                r#"{{"data":{{"type":"span","attributes":{{"ml_app":{},"tags":[{}],"spans":["#,
                Value::String(ml_app.clone()),
                tag("service", &ml_app),
            ),
            ml_app,
            now: unix_nanos_now,
        })
    }

    /// The same exporter reading the current time from `now` (ns since the Unix epoch).
    pub fn with_clock(mut self, now: fn() -> u64) -> Self {
        self.now = now;
        self
    }

    /// The normalised `ml_app`.
    pub fn ml_app(&self) -> &str {
        &self.ml_app
    }
}

/// `mlApp` under Datadog's application naming rules: lower case; alphanumerics, `_ - : . /`
/// only (others become `_`); no runs of `_` and no trailing `_`; at most 193 characters.
pub fn ml_app(raw: &str) -> Result<String, ExportError> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.trim().chars().flat_map(char::to_lowercase) {
        let c = if c.is_alphanumeric() || matches!(c, '-' | ':' | '.' | '/') {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let mut out: String = out.chars().take(193).collect();
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        return Err(ExportError::Config(format!(
            "mlApp: {raw:?} has no letter or digit to name a Datadog ML app"
        )));
    }
    Ok(out)
}

fn tag(key: &str, value: &str) -> Value {
    let t = format!("{key}:{}", value.trim());
    Value::String(truncate::prefix(&t, MAX_TAG_LEN).to_string())
}

/// A 64-bit span id as Datadog's SDKs write it (decimal).
fn span_id(bytes: [u8; 8]) -> String {
    u64::from_be_bytes(bytes).to_string()
}

/// The current time in ns since the Unix epoch.
fn unix_nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `s` as a Datadog span id, the form its SDKs write (`str(span.span_id)` in ddtrace): a
/// non-zero 64-bit integer in decimal.
pub fn datadog_span_id(s: &str) -> Option<u64> {
    let t = s.trim();
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<u64>().ok().filter(|v| *v != 0)
}

/// Whether `trace.trace_id` is a Datadog trace id as ddtrace writes one (`format_trace_id`:
/// 32 hex characters for a 128-bit id, decimal for a 64-bit one), i.e. an id the user's own
/// Datadog spans can carry.
fn is_datadog_trace_id(s: &str) -> bool {
    let t = s.trim();
    (t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())) || datadog_span_id(t).is_some()
}

/// The span `trace_id`: `trace.trace_id` as is when it is a Datadog trace id (decimal, or 32
/// hex characters in lower case), else the 128-bit OTLP trace id in lower-case hex.
pub fn trace_id(view: &TraceView<'_>) -> String {
    let key = view.trace_key();
    match datadog_span_id(key) {
        Some(v) if key != view.id() => v.to_string(),
        _ => hex::encode(view.otlp_trace_id()),
    }
}

/// The `parent_id` of the generation's top-most span: `trace.parent_span_id` when it is a
/// Datadog span id in a trace the user's own Datadog spans can share (`trace.trace_id` is a
/// Datadog trace id), so Datadog links the generation under that span. Any other parent
/// (`None`) is one Datadog never receives: the generation's spans stay rooted in the trace and
/// the value is only kept in metadata (`parent_span_id`).
pub fn linked_parent(view: &TraceView<'_>) -> Option<u64> {
    let parent = datadog_span_id(view.parent_span_id()?)?;
    let key = view.trace_key();
    (key != view.id() && is_datadog_trace_id(key)).then_some(parent)
}

fn first8(b: [u8; 16]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[..8]);
    out
}

/// The `meta.input` of an LLM span: chat messages as `messages`, a completions prompt or a
/// Responses-API input that is not a list of messages as `value`.
fn input_io(view: &TraceView<'_>) -> Option<Value> {
    let input = view.input()?;
    if let Some(Value::Array(msgs)) = input.messages {
        return Some(json!({"messages": msgs.iter().map(message).collect::<Vec<_>>()}));
    }
    if let Some(Value::Array(items)) = input.input
        && items.iter().all(|i| i.get("role").is_some())
    {
        return Some(json!({"messages": items.iter().map(message).collect::<Vec<_>>()}));
    }
    let v = input.messages.or(input.prompt).or(input.input)?;
    let value = match v {
        Value::Array(parts) if parts.iter().all(Value::is_string) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        other => as_text(other),
    };
    Some(json!({"value": value}))
}

/// A chat message as Datadog's `Message` (`content` a string, `role`), with tool calls.
fn message(m: &Value) -> Value {
    let mut out = Map::new();
    let content = m.get("content").map(content_text).unwrap_or_default();
    out.insert("content".into(), Value::String(content));
    out.insert(
        "role".into(),
        Value::String(
            m.get("role")
                .and_then(Value::as_str)
                .unwrap_or("user")
                .to_string(),
        ),
    );
    if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
        out.insert("tool_calls".into(), tool_calls(calls));
    }
    Value::Object(out)
}

/// OpenAI-style tool calls as Datadog's `ToolCall` (`name`, `arguments` object, `tool_id`,
/// `type`).
fn tool_calls(calls: &[Value]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| {
                let f = c.get("function").unwrap_or(c);
                let args = match f.get("arguments") {
                    Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                        Ok(Value::Object(o)) => Value::Object(o),
                        _ => json!({"value": s}),
                    },
                    Some(Value::Object(o)) => Value::Object(o.clone()),
                    Some(other) => json!({"value": other}),
                    None => json!({}),
                };
                json!({
                    "name": f.get("name").and_then(Value::as_str).unwrap_or(""),
                    "arguments": args,
                    "tool_id": c.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": c.get("type").and_then(Value::as_str).unwrap_or("function"),
                })
            })
            .collect(),
    )
}

fn output_io(view: &TraceView<'_>) -> Option<Value> {
    let out = view.output()?;
    let mut msg = Map::new();
    msg.insert("content".into(), Value::String(out.completion));
    msg.insert("role".into(), Value::String("assistant".into()));
    if let Some(Value::Array(calls)) = out.tool_calls {
        msg.insert("tool_calls".into(), tool_calls(calls));
    }
    Some(json!({"messages": [Value::Object(msg)]}))
}

/// A metadata value: Datadog takes strings, numbers and booleans; others become JSON text.
fn flat(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Some(v.clone()),
        other => Some(Value::String(other.to_string())),
    }
}

/// `meta.metadata` of the LLM span.
fn metadata(view: &TraceView<'_>, provider: &str) -> Map<String, Value> {
    let mut m = Map::new();
    let put = |m: &mut Map<String, Value>, k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put(&mut m, "model_name", json!(view.response_model()));
    put(&mut m, "model_provider", json!(provider));
    put(&mut m, "generation_id", json!(view.id()));
    put(&mut m, "trace_name", json!(view.trace_name()));
    if view.trace_key() != view.id() {
        put(&mut m, "trace_id", json!(view.trace_key()));
    }
    if let Some(p) = view.parent_span_id() {
        put(&mut m, "parent_span_id", json!(p));
    }
    if view.model() != view.response_model() {
        put(&mut m, "requested_model", json!(view.model()));
    }
    if let Some(p) = view.provider() {
        put(&mut m, "provider_name", json!(p));
    }
    if let Some(f) = view.finish_reason() {
        put(&mut m, "finish_reason", json!(f));
    }
    if let Some(f) = view.native_finish_reason() {
        put(&mut m, "native_finish_reason", json!(f));
    }
    if let Some(a) = view.api_type() {
        put(&mut m, "api_type", json!(a));
    }
    if let Some(s) = view.streamed() {
        put(&mut m, "streamed", json!(s));
    }
    if let Some(c) = view.cancelled() {
        put(&mut m, "cancelled", json!(c));
    }
    if let Some(l) = view.duration_ms() {
        put(&mut m, "latency_ms", json!(l));
    }
    if let Some(l) = view.generation_time_ms() {
        put(&mut m, "generation_time_ms", json!(l));
    }
    if let Some(l) = view.moderation_latency_ms() {
        put(&mut m, "moderation_latency_ms", json!(l));
    }
    for (k, v) in view.model_parameters() {
        put(&mut m, &k, v);
    }
    if view.has_tools() {
        put(&mut m, "has_tools", json!(true));
    }
    let called = view.tool_call_names();
    if !called.is_empty() {
        put(&mut m, "tool_call_names", json!(called.join(",")));
    }
    if let Some(c) = view.cost_group() {
        if let Some(v) = c.upstream_inference_cost {
            put(&mut m, "openrouter.upstream_inference_cost", json!(v));
        }
        if let Some(v) = c.cache_discount {
            put(&mut m, "openrouter.cache_discount", json!(v));
        }
        if let Some(v) = c.is_byok {
            put(&mut m, "openrouter.is_byok", json!(v));
        }
        for (k, v) in c.cost_details.into_iter().flatten() {
            if let Some(v) = flat(v) {
                put(&mut m, &format!("openrouter.cost_details.{k}"), v);
            }
        }
    }
    if let Some(i) = view.identity_group() {
        if let Some(v) = i.api_key_name {
            put(&mut m, "openrouter.api_key_name", json!(v));
        }
        if let Some(v) = i.api_key_hash {
            put(&mut m, "openrouter.api_key_hash", json!(v));
        }
        if !i.workspace_id.is_empty() {
            put(&mut m, "openrouter.workspace_id", json!(i.workspace_id));
        }
        if let Some(v) = i.external_user {
            put(&mut m, "openrouter.external_user", json!(v));
        }
    }
    if let Some(r) = view.request_context() {
        for (k, v) in [
            ("http_referer", r.http_referer),
            ("x_title", r.x_title),
            ("user_agent", r.user_agent),
            ("origin", r.origin),
            ("request_id", r.request_id),
            ("upstream_id", r.upstream_id),
            ("router", r.router),
            ("preset_id", r.preset_id),
        ] {
            if let Some(v) = v {
                put(&mut m, &format!("openrouter.{k}"), json!(v));
            }
        }
        put(
            &mut m,
            "openrouter.data_region",
            json!(r.data_region.as_str()),
        );
    }
    // Custom `trace` keys; one that collides with a key above is kept as `trace.<key>`.
    for (k, v) in view.metadata() {
        if let Some(v) = flat(v) {
            let key = if m.contains_key(k) {
                format!("trace.{k}")
            } else {
                k.to_string()
            };
            m.insert(key, v);
        }
    }
    m
}

/// `metrics` of the LLM span.
fn metrics(view: &TraceView<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(v) = view.prompt_tokens() {
        m.insert("input_tokens".into(), json!(v));
    }
    if let Some(v) = view.completion_tokens() {
        m.insert("output_tokens".into(), json!(v));
    }
    let total = view.total_tokens().or_else(|| {
        Some(
            view.prompt_tokens()?
                .saturating_add(view.completion_tokens()?),
        )
    });
    if let Some(v) = total {
        m.insert("total_tokens".into(), json!(v));
    }
    if let Some(v) = view.cached_tokens() {
        m.insert("cache_read_input_tokens".into(), json!(v));
    }
    if let Some(v) = view.cache_write_tokens() {
        m.insert("cache_write_input_tokens".into(), json!(v));
    }
    if let Some(v) = view.reasoning_tokens() {
        m.insert("reasoning_output_tokens".into(), json!(v));
    }
    if let Some(v) = view.time_to_first_token_ms() {
        m.insert("time_to_first_token".into(), json!(v / 1000.0));
    }
    if let Some(v) = view.total_cost() {
        m.insert("total_cost".into(), json!(v));
    }
    if let Some(a) = view.cost_allocation() {
        for p in a.parts {
            match p.kind {
                "prompt" => m.insert("input_cost".into(), json!(p.cost)),
                "completion" => m.insert("output_cost".into(), json!(p.cost)),
                other => m.insert(format!("{other}_cost"), json!(p.cost)),
            };
        }
    }
    m
}

/// The spans of one generation, top-most first.
pub fn spans(view: &TraceView<'_>) -> Vec<Value> {
    let trace_id = trace_id(view);
    let start = view.start_unix_nanos();
    let duration = view.end_unix_nanos().saturating_sub(start);
    let provider = provider_id(view.provider(), view.model());
    let error = view.error();
    let status = if error.is_some() { "error" } else { "ok" };

    let mut tags = Vec::new();
    if let Some(u) = view.user() {
        tags.push(tag("user_id", u));
    }
    if let Some(s) = view.session_id() {
        tags.push(tag("session_id", s));
    }
    let custom = |key: &str| {
        view.metadata()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.trim().is_empty())
    };
    if let Some(env) = custom("environment") {
        tags.push(tag("env", env));
    }
    if let Some(rel) = custom("release") {
        tags.push(tag("version", rel));
    }
    tags.push(tag("model_name", view.response_model()));
    tags.push(tag("model_provider", &provider));

    let base = |name: &str, id: String, parent: Option<String>, meta: Value| {
        let mut s = Map::new();
        s.insert("name".into(), json!(name));
        s.insert("span_id".into(), json!(id));
        s.insert("trace_id".into(), json!(trace_id));
        s.insert(
            "parent_id".into(),
            json!(parent.unwrap_or_else(|| "undefined".to_string())),
        );
        s.insert("start_ns".into(), json!(start));
        s.insert("duration".into(), json!(duration));
        s.insert("status".into(), json!(status));
        s.insert("meta".into(), meta);
        if let Some(sid) = view.session_id() {
            s.insert("session_id".into(), json!(sid));
        }
        s.insert("tags".into(), Value::Array(tags.clone()));
        s
    };
    let error_meta = error.map(|e| {
        json!({
            "message": e.message,
            "type": e.code.as_ref().map(as_text).unwrap_or_else(|| "error".to_string()),
        })
    });
    let workflow_meta = || {
        let mut m = json!({"kind": "workflow"});
        if let Some(e) = &error_meta {
            m["error"] = e.clone();
        }
        m
    };

    let model = view.model();
    let has_trace_name = view.trace_name() != model;
    let has_generation_name = view.generation_name() != model;
    let caller_parent = linked_parent(view).map(|p| p.to_string());
    let root_needed = caller_parent.is_none()
        && has_trace_name
        && (view.span_name().is_some()
            || (has_generation_name && view.generation_name() != view.trace_name()));

    let mut out = Vec::new();
    let mut parent = caller_parent;
    if root_needed {
        let id = span_id(first8(digest16(&[view.trace_key(), "", "trace"])));
        out.push(Value::Object(base(
            view.trace_name(),
            id.clone(),
            None,
            workflow_meta(),
        )));
        parent = Some(id);
    }
    if let (Some(name), Some(id)) = (view.span_name(), view.otlp_intermediate_span_id()) {
        let id = span_id(id);
        out.push(Value::Object(base(
            name,
            id.clone(),
            parent.clone(),
            workflow_meta(),
        )));
        parent = Some(id);
    }
    let llm_name = if out.is_empty() && parent.is_none() && !has_generation_name {
        view.trace_name()
    } else {
        view.generation_name()
    };
    let mut meta = Map::new();
    meta.insert("kind".into(), json!("llm"));
    meta.insert("model_name".into(), json!(view.response_model()));
    meta.insert("model_provider".into(), json!(provider));
    if let Some(i) = input_io(view) {
        meta.insert("input".into(), i);
    }
    if let Some(o) = output_io(view) {
        meta.insert("output".into(), o);
    }
    if let Some(e) = &error_meta {
        meta.insert("error".into(), e.clone());
    }
    meta.insert("metadata".into(), Value::Object(metadata(view, &provider)));
    let mut llm = base(
        llm_name,
        span_id(view.otlp_span_id()),
        parent,
        Value::Object(meta),
    );
    llm.insert("metrics".into(), Value::Object(metrics(view)));
    out.push(Value::Object(llm));
    out
}

/// Moves the spans of a generation that started more than [`MAX_SPAN_AGE`] before `now_ns` to
/// end at `now_ns` (module docs, "Old spans"), keeping the original start in
/// `meta.metadata["tracecast.original_start_ns"]` and tagging them `tracecast_restamped:true`.
/// Returns whether it did.
pub fn restamp_if_too_old(spans: &mut [Value], now_ns: u64) -> bool {
    let oldest = now_ns.saturating_sub(MAX_SPAN_AGE.as_nanos() as u64);
    let mut moved = false;
    for span in spans.iter_mut() {
        let Some(start) = span.get("start_ns").and_then(Value::as_u64) else {
            continue;
        };
        if start >= oldest {
            continue;
        }
        let duration = span.get("duration").and_then(Value::as_u64).unwrap_or(0);
        let new_start = now_ns.saturating_sub(duration).max(oldest);
        span["start_ns"] = json!(new_start);
        if let Some(meta) = span.get_mut("meta").and_then(Value::as_object_mut) {
            let md = meta.entry("metadata").or_insert_with(|| json!({}));
            if let Some(md) = md.as_object_mut() {
                md.insert("tracecast.original_start_ns".into(), json!(start));
                md.insert("tracecast.restamped".into(), json!(true));
            }
        }
        if let Some(tags) = span.get_mut("tags").and_then(Value::as_array_mut) {
            tags.push(json!("tracecast_restamped:true"));
        }
        moved = true;
    }
    moved
}

/// Serialises a span, truncating it to [`MAX_EVENT_BYTES`] when needed (see the module docs).
fn encode_span(mut span: Value) -> Result<Vec<u8>, ExportError> {
    let enc = |s: &Value| serde_json::to_vec(s).map_err(|e| ExportError::Encode(e.to_string()));
    let bytes = enc(&span)?;
    if bytes.len() < MAX_EVENT_BYTES {
        return Ok(bytes);
    }
    let mark = |span: &mut Value| {
        if let Some(meta) = span.get_mut("meta").and_then(Value::as_object_mut) {
            for io in ["input", "output"] {
                if meta.contains_key(io) {
                    meta.insert(io.into(), json!({"value": DROPPED_IO}));
                }
            }
            if let Some(md) = meta.get_mut("metadata").and_then(Value::as_object_mut) {
                md.insert("tracecast.truncated".into(), json!(true));
            }
        }
        if let Some(s) = span.as_object_mut() {
            // ddtrace's own marker for a span whose input and output were dropped.
            s.insert("collection_errors".into(), json!(["dropped_io"]));
            if let Some(tags) = s.get_mut("tags").and_then(Value::as_array_mut) {
                tags.push(json!("tracecast_truncated:true"));
            }
        }
    };
    mark(&mut span);
    let bytes = enc(&span)?;
    if bytes.len() < MAX_EVENT_BYTES {
        return Ok(bytes);
    }
    // Still too large: long metadata values (custom keys) are shortened.
    if let Some(md) = span.pointer_mut("/meta/metadata") {
        truncate::shorten_strings(md, 1024, 1024, "…[truncated]");
    }
    let bytes = enc(&span)?;
    if bytes.len() < MAX_EVENT_BYTES {
        return Ok(bytes);
    }
    // Only a huge number of metadata keys gets here: keep the flag, drop the rest.
    if let Some(md) = span.pointer_mut("/meta/metadata") {
        *md = json!({"tracecast.truncated": true, "tracecast.metadata_dropped": true});
    }
    enc(&span)
}

impl DatadogExporter {
    /// The request JSON around a comma-separated list of spans.
    fn wrap(&self, list: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + list.len() + 4);
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(list);
        out.extend_from_slice(b"]}}}");
        out
    }
}

#[async_trait]
impl Exporter for DatadogExporter {
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: 500,
            max_bytes: 4 * 1024 * 1024,
        }
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        let mut events = Vec::with_capacity(traces.len());
        let now = (self.now)();
        for view in traces {
            let mut joined = Vec::new();
            let mut spans = spans(view);
            restamp_if_too_old(&mut spans, now);
            for (i, span) in spans.into_iter().enumerate() {
                if i > 0 {
                    joined.push(b',');
                }
                joined.extend(encode_span(span)?);
            }
            events.push(joined);
        }
        let overhead = self.wrap(b"").len();
        Ok(Payload {
            body: pack(&events, MAX_REQUEST_BYTES, overhead, |l| self.wrap(l)),
            content_type: "application/json",
            items: traces.len(),
        })
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        let parts = match chunks(&payload.body) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::Rejected {
                    status: None,
                    error: e,
                };
            }
        };
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let sizes: Vec<usize> = parts.iter().map(|c| c.items).collect();
        let mut answers = Vec::with_capacity(parts.len());
        for c in &parts {
            let a = crate::http::send(
                &self.client,
                Method::POST,
                self.spans_url.as_str(),
                headers.clone(),
                bytes::Bytes::copy_from_slice(c.json),
                self.compression,
                self.timeout,
            )
            .await;
            let stop = stops(&a);
            answers.push(a);
            if stop {
                break;
            }
        }
        combine(&sizes, answers)
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let resp = self
            .client
            .get(self.validate_url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await;
        match resp {
            Err(e) => ConnectionCheck::unreachable("Datadog", &transport_message(&e)),
            Ok(r) => {
                let status = r.status().as_u16();
                let body = crate::http::read_capped(r, crate::http::MAX_ANSWER).await;
                match status {
                    200..=299 => ConnectionCheck::passed(
                        status,
                        format!("Datadog accepted the API key ({status})"),
                    ),
                    401 | 403 => ConnectionCheck::failed(
                        Some(status),
                        format!("Datadog rejected the API key ({status})"),
                    ),
                    _ => ConnectionCheck::failed(
                        Some(status),
                        format!(
                            "Datadog answered {status} to GET {VALIDATE_PATH}{}",
                            snippet(&body)
                        ),
                    ),
                }
            }
        }
    }
}
