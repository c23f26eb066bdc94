//! `posthog`: PostHog LLM analytics, one `$ai_generation` event per generation.
//!
//! # Protocol and source
//!
//! `POST {endpoint}/batch/` with `{"api_key":"<project key>","batch":[<event>, ...]}` and no auth
//! header: PostHog's public capture API (posthog.com/docs/api/post-only-endpoints), the endpoint
//! its server SDKs (`posthog` on PyPI, `posthog-node`) post batches to. The events follow
//! PostHog's LLM analytics manual-capture reference (posthog.com/docs/llm-analytics/manual-capture)
//! and OpenRouter's PostHog guide (`posthog.mdx`): `trace_id` -> `$ai_trace_id`,
//! `generation_name` -> `$ai_span_name`, `trace_name` -> the plain property `trace_name`, every
//! other `trace` key -> `metadata_<key>` (nesting deeper than 3 levels replaced by
//! `"[truncated]"`), `user` -> `distinct_id`, `session_id` -> `$ai_session_id`; privacy mode
//! drops `$ai_input` and `$ai_output_choices` (and `$ai_tools`). PostHog's AI OTLP endpoint
//! (`/i/v0/ai/otel`) is the alternative; the batch API is what OpenRouter's guide describes
//! (native `$ai_*` properties) and what every PostHog SDK speaks.
//!
//! Each event has a `uuid` derived from the generation id, so a retried batch does not count a
//! generation twice (PostHog de-duplicates events by uuid). Without a `user`, `distinct_id` is
//! the trace key (`trace.trace_id`, else the generation id), as PostHog's own AI SDKs fall back
//! to the trace id, and `$process_person_profile` is `false` so no person profile is created.
//!
//! # Cost
//!
//! PostHog prices `$ai_generation` events at ingestion (`processCost` in PostHog/posthog
//! `nodejs/src/ingestion/pipelines/ai/costs/index.ts`, read at commit
//! `fdb18fb41aeb936ce1f3becf3ec12c408981eb09`: the early return at line 98 keeps client costs
//! only when `$ai_input_cost_usd` and `$ai_output_cost_usd` are both present and non-zero;
//! otherwise `setCostsOnEvent` (line 50) fills both from PostHog's own model table, so the
//! split no longer matches the bill). Since PostHog/posthog pull request #88457 (merged
//! 2026-08-25), `$ai_cost_passthrough: true` with a numeric `$ai_total_cost_usd` (zero
//! included) keeps that total and skips estimation, labelled `$ai_cost_model_source:
//! passthrough`. So every event with a known `total_cost` carries `$ai_total_cost_usd` and
//! `$ai_cost_passthrough: true`, whatever the metadata groups: PostHog shows the cost
//! OpenRouter billed, also for a record without a prompt/completion split or with a zero part.
//! `$ai_input_cost_usd` / `$ai_output_cost_usd` are added when the destination enabled the
//! cost allocation group (`prompt` / `completion` parts) or the cost group (`cost_details`).
//! `$ai_cache_reporting_exclusive: false` is sent with the token counts: OpenRouter's
//! `prompt_tokens` include cached tokens, while PostHog otherwise reads Anthropic and Claude
//! prompt tokens as excluding them (`resolveCacheReportingExclusive` in the same folder's
//! `input-costs.ts`) and prices cached tokens twice. `tests/vendors/test_posthog.py` runs our
//! events through this rule.
//!
//! # Limits
//!
//! PostHog's Python SDK keeps an event under 900 KiB and a batch request under 5 MiB. An event
//! over 900 KiB loses `$ai_input`, `$ai_output_choices` and `$ai_tools` (replaced by a marker
//! text) and gets `tracecast_truncated: true`; a batch over 5 MiB is sent as several requests.
//!
//! # Test connection
//!
//! PostHog's public project key can be checked without sending an event: `POST
//! {endpoint}/flags/?v=2` (feature-flag evaluation) with the key and a fixed distinct id answers
//! 200 for a known project key and 401 for an unknown one. So a pass proves the host is a PostHog
//! ingestion host and that PostHog knows the key; it does not send or store an event. A server
//! without `/flags` (older self-hosted) is asked `/decide/?v=3` instead.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};
use tracecast_model::trace::TraceView;

use crate::chunking::{chunks, combine, pack, stops};
use crate::config::required_str;
use crate::content::{as_text, cost_json, provider_id, snippet};
use crate::derived_ids::derived_uuid;
use crate::http::transport_message;
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, Outcome, Payload, truncate,
};

/// An event over this many bytes loses its content (PostHog's SDK limit: 900 KiB).
pub const MAX_EVENT_BYTES: usize = 900 * 1024;
/// A request over this many bytes is split (PostHog's SDK batch limit: 5 MiB).
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// Room kept in each request for `{"api_key":..,"batch":}`.
const ENVELOPE_RESERVE: usize = 1024;
/// Custom property values keep at most this many levels of nesting.
pub const MAX_DEPTH: usize = 3;
/// What replaces content in an event over [`MAX_EVENT_BYTES`].
pub const DROPPED: &str = "[tracecast: dropped, the event exceeded PostHog's 900 KiB limit]";
/// The distinct id of the connection test's flag evaluation.
pub const TEST_DISTINCT_ID: &str = "tracecast-connection-test";

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(PosthogExporter::new(config, ctx)?))
}

/// The PostHog LLM analytics exporter.
pub struct PosthogExporter {
    client: reqwest::Client,
    timeout: Duration,
    batch_url: Url,
    flags_url: Url,
    decide_url: Url,
    headers: HeaderMap,
    /// gzip by default: see [`crate::compression`].
    compression: crate::compression::Compression,
    /// The project key as a JSON string (it goes into the body, not a header).
    api_key_json: String,
}

impl PosthogExporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let api_key = required_str(config, "apiKey")?;
        let base = crate::config::optional_str(config, "endpoint")
            .unwrap_or("https://us.i.posthog.com")
            .trim_end_matches('/');
        let base = base
            .strip_suffix("/batch")
            .or_else(|| base.strip_suffix("/capture"))
            .unwrap_or(base);
        let parse = |path: &str| {
            let u = Url::parse(&format!("{base}{path}")).map_err(|e| {
                ExportError::Config(format!("endpoint: {base:?} is not a valid URL: {e}"))
            })?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(ExportError::Config(format!(
                    "endpoint: {base} is not an http(s) URL"
                )));
            }
            Ok(u)
        };
        let mut headers = crate::config::custom_headers(config)?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(PosthogExporter {
            client: ctx.client.clone(),
            timeout: ctx.timeout,
            batch_url: parse("/batch/")?,
            flags_url: parse("/flags/?v=2")?,
            decide_url: parse("/decide/?v=3")?,
            headers,
            compression: crate::compression::Compression::for_destination(
                tracecast_model::DestinationType::Posthog,
                config,
            ),
            api_key_json: Value::String(api_key.to_string()).to_string(),
        })
    }

    fn post(&self, url: &Url, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.client
            .request(Method::POST, url.clone())
            .headers(self.headers.clone())
            .body(body)
            .timeout(self.timeout)
    }
}

/// `$ai_trace_id` allows letters, digits and `- _ ~ . @ ( ) ! ' : |`; others become `_`.
pub fn trace_id(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_~.@()!':|".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A custom property value with at most [`MAX_DEPTH`] levels of nesting: an object or array
/// that would be a fourth level is replaced by `"[truncated]"`.
pub fn cap_depth(v: &Value, depth: usize) -> Value {
    match v {
        Value::Object(_) | Value::Array(_) if depth >= MAX_DEPTH => json!("[truncated]"),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), cap_depth(v, depth + 1)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| cap_depth(v, depth + 1)).collect()),
        other => other.clone(),
    }
}

/// `$ai_input`: chat messages as given; a prompt or a Responses-API input as one user message
/// (or the input items themselves when they are messages).
fn ai_input(view: &TraceView<'_>) -> Option<Value> {
    let input = view.input()?;
    if let Some(m @ Value::Array(_)) = input.messages {
        return Some(m.clone());
    }
    if let Some(Value::Array(items)) = input.input
        && items.iter().all(|i| i.get("role").is_some())
    {
        return Some(Value::Array(items.clone()));
    }
    let v = input.messages.or(input.prompt).or(input.input)?;
    let content = match v {
        Value::Array(parts) if parts.iter().all(Value::is_string) => Value::String(
            parts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Value::String(_) => v.clone(),
        other => Value::String(as_text(other)),
    };
    Some(json!([{"role": "user", "content": content}]))
}

/// `$ai_output_choices`: the assistant message, with its tool calls.
fn ai_output(view: &TraceView<'_>) -> Option<Value> {
    let out = view.output()?;
    let mut msg = Map::new();
    msg.insert("role".into(), json!("assistant"));
    msg.insert("content".into(), json!(out.completion));
    if let Some(calls @ Value::Array(_)) = out.tool_calls {
        msg.insert("tool_calls".into(), calls.clone());
    }
    Some(json!([Value::Object(msg)]))
}

/// The `$ai_generation` event of one generation (see `docs/destinations/posthog.md`).
pub fn event(view: &TraceView<'_>) -> Value {
    let mut p = Map::new();
    let mut put = |k: &str, v: Value| {
        p.insert(k.to_string(), v);
    };
    put("$ai_trace_id", json!(trace_id(view.trace_key())));
    put("$ai_span_id", json!(view.id()));
    put("$ai_span_name", json!(view.generation_name()));
    put("trace_name", json!(view.trace_name()));
    if let Some(s) = view.session_id() {
        put("$ai_session_id", json!(s));
    }
    put("$ai_model", json!(view.model()));
    put(
        "$ai_provider",
        json!(provider_id(view.provider(), view.model())),
    );
    put("$ai_lib", json!("tracecast"));
    if let Some(i) = ai_input(view) {
        put("$ai_input", i);
    }
    if let Some(o) = ai_output(view) {
        put("$ai_output_choices", o);
    }
    if let Some(t) = view.input().and_then(|i| i.tools) {
        put("$ai_tools", t.clone());
    }
    if let Some(v) = view.prompt_tokens() {
        put("$ai_input_tokens", json!(v));
    }
    if let Some(v) = view.completion_tokens() {
        put("$ai_output_tokens", json!(v));
    }
    let total = view.total_tokens().or_else(|| {
        Some(
            view.prompt_tokens()?
                .saturating_add(view.completion_tokens()?),
        )
    });
    if let Some(v) = total {
        put("$ai_total_tokens", json!(v));
    }
    if let Some(v) = view.cached_tokens() {
        put("$ai_cache_read_input_tokens", json!(v));
    }
    if let Some(v) = view.cache_write_tokens() {
        put("$ai_cache_creation_input_tokens", json!(v));
    }
    if let Some(v) = view.reasoning_tokens() {
        put("$ai_reasoning_tokens", json!(v));
    }
    // Our prompt tokens include cached ones (OpenAI's convention); without this PostHog reads
    // Anthropic and Claude prompt tokens as excluding the cache and prices cached tokens twice.
    if view.prompt_tokens().is_some() {
        put("$ai_cache_reporting_exclusive", json!(false));
    }
    // The billed cost, kept by PostHog as is (module docs, "Cost").
    let cost = cost_json(view).unwrap_or_default();
    if let Some(total) = cost.get("total") {
        put("$ai_total_cost_usd", total.clone());
        put("$ai_cost_passthrough", json!(true));
    }
    for (side, prop) in [
        ("input", "$ai_input_cost_usd"),
        ("output", "$ai_output_cost_usd"),
    ] {
        if let Some(v) = cost.get(side) {
            put(prop, v.clone());
        }
    }
    if let Some(a) = view.cost_allocation() {
        for part in a.parts {
            if !matches!(part.kind, "prompt" | "completion") {
                put(
                    &format!("openrouter_{}_cost_usd", part.kind),
                    json!(part.cost),
                );
            }
        }
    }
    if let Some(ms) = view.duration_ms() {
        put("$ai_latency", json!(ms / 1000.0));
    }
    if let Some(ms) = view.time_to_first_token_ms() {
        put("$ai_time_to_first_token", json!(ms / 1000.0));
    }
    if let Some(s) = view.streamed() {
        put("$ai_stream", json!(s));
    }
    if let Some(f) = view.finish_reason() {
        put("$ai_stop_reason", json!(f));
    }
    let params = view.model_parameters();
    for (key, prop) in [
        ("temperature", "$ai_temperature"),
        ("max_tokens", "$ai_max_tokens"),
    ] {
        if let Some(v) = params.get(key).filter(|v| v.is_number()) {
            put(prop, v.clone());
        }
    }
    if !params.is_empty() {
        put("$ai_model_parameters", Value::Object(params));
    }
    match view.error() {
        None => {
            put("$ai_http_status", json!(200));
            put("$ai_is_error", json!(false));
        }
        Some(e) => {
            // As PostHog's SDKs: the HTTP status when the error has one, else 0.
            let status = e
                .code
                .as_ref()
                .and_then(|c| {
                    c.as_u64()
                        .or_else(|| c.as_str().and_then(|s| s.trim().parse().ok()))
                })
                .filter(|c| (100..=599).contains(c))
                .unwrap_or(0);
            put("$ai_http_status", json!(status));
            put("$ai_is_error", json!(true));
            put("$ai_error", json!(e.message));
            if let Some(c) = &e.code {
                put("$ai_error_type", json!(as_text(c)));
            }
        }
    }
    // OpenRouter fields PostHog has no `$ai_` name for.
    if view.response_model() != view.model() {
        put("openrouter_response_model", json!(view.response_model()));
    }
    if let Some(v) = view.provider() {
        put("openrouter_provider_name", json!(v));
    }
    if let Some(v) = view.api_type() {
        put("openrouter_api_type", json!(v));
    }
    if let Some(v) = view.native_finish_reason() {
        put("openrouter_native_finish_reason", json!(v));
    }
    if let Some(v) = view.cancelled() {
        put("openrouter_cancelled", json!(v));
    }
    if let Some(v) = view.generation_time_ms() {
        put("openrouter_generation_time_ms", json!(v));
    }
    if let Some(v) = view.moderation_latency_ms() {
        put("openrouter_moderation_latency_ms", json!(v));
    }
    let called = view.tool_call_names();
    if !called.is_empty() {
        put("openrouter_tool_call_names", json!(called));
    }
    if let Some(c) = view.cost_group() {
        if let Some(v) = c.upstream_inference_cost {
            put("openrouter_upstream_inference_cost", json!(v));
        }
        if let Some(v) = c.cache_discount {
            put("openrouter_cache_discount", json!(v));
        }
        if let Some(v) = c.is_byok {
            put("openrouter_is_byok", json!(v));
        }
        if let Some(d) = c.cost_details {
            put("openrouter_cost_details", Value::Object(d.clone()));
        }
    }
    if let Some(i) = view.identity_group() {
        if let Some(v) = i.api_key_name {
            put("openrouter_api_key_name", json!(v));
        }
        if let Some(v) = i.api_key_hash {
            put("openrouter_api_key_hash", json!(v));
        }
        if !i.workspace_id.is_empty() {
            put("openrouter_workspace_id", json!(i.workspace_id));
        }
        if let Some(v) = i.external_user {
            put("openrouter_external_user", json!(v));
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
                put(&format!("openrouter_{k}"), json!(v));
            }
        }
        put("openrouter_data_region", json!(r.data_region.as_str()));
    }
    // `trace` keys outside the table: `span_name` and `parent_span_id`, then the custom ones.
    if let Some(v) = view.span_name() {
        put("metadata_span_name", json!(v));
    }
    if let Some(v) = view.parent_span_id() {
        put("metadata_parent_span_id", json!(v));
    }
    for (k, v) in view.metadata() {
        put(&format!("metadata_{k}"), cap_depth(v, 0));
    }
    let distinct_id = match view.user().filter(|u| !u.trim().is_empty()) {
        Some(u) => u.to_string(),
        None => {
            put("$process_person_profile", json!(false));
            view.trace_key().to_string()
        }
    };
    json!({
        "event": "$ai_generation",
        "distinct_id": distinct_id,
        "uuid": derived_uuid(&["posthog", view.id()]),
        "timestamp": view.created_at(),
        "properties": Value::Object(p),
    })
}

/// Serialises an event, truncating it to [`MAX_EVENT_BYTES`] when needed (module docs).
fn encode_event(mut ev: Value) -> Result<Vec<u8>, ExportError> {
    let enc = |v: &Value| serde_json::to_vec(v).map_err(|e| ExportError::Encode(e.to_string()));
    let bytes = enc(&ev)?;
    if bytes.len() <= MAX_EVENT_BYTES {
        return Ok(bytes);
    }
    if let Some(p) = ev.get_mut("properties").and_then(Value::as_object_mut) {
        for k in ["$ai_input", "$ai_output_choices", "$ai_tools"] {
            if p.contains_key(k) {
                p.insert(k.into(), json!(DROPPED));
            }
        }
        p.insert("tracecast_truncated".into(), json!(true));
    }
    let bytes = enc(&ev)?;
    if bytes.len() <= MAX_EVENT_BYTES {
        return Ok(bytes);
    }
    if let Some(p) = ev.get_mut("properties") {
        truncate::shorten_strings(p, 1024, 1024, "…[truncated]");
    }
    let bytes = enc(&ev)?;
    if bytes.len() <= MAX_EVENT_BYTES {
        return Ok(bytes);
    }
    // Only a huge number of custom keys gets here: they are dropped, the flag stays.
    if let Some(p) = ev.get_mut("properties").and_then(Value::as_object_mut) {
        p.retain(|k, _| !k.starts_with("metadata_"));
        p.insert("tracecast_metadata_dropped".into(), json!(true));
    }
    enc(&ev)
}

#[async_trait]
impl Exporter for PosthogExporter {
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: 500,
            max_bytes: 4 * 1024 * 1024,
        }
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        let events = traces
            .iter()
            .map(|v| encode_event(event(v)))
            .collect::<Result<Vec<_>, _>>()?;
        let wrap = |l: &[u8]| [b"[".as_slice(), l, b"]"].concat();
        Ok(Payload {
            body: pack(&events, MAX_REQUEST_BYTES, 2 + ENVELOPE_RESERVE, wrap),
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
        let sizes: Vec<usize> = parts.iter().map(|c| c.items).collect();
        let mut answers = Vec::with_capacity(parts.len());
        for c in &parts {
            // The project key is added here, so the encoded payload holds no credentials.
            let mut body = Vec::with_capacity(c.json.len() + self.api_key_json.len() + 24);
            body.extend_from_slice(br#"{"api_key":"#);
            body.extend_from_slice(self.api_key_json.as_bytes());
            body.extend_from_slice(br#","batch":"#);
            body.extend_from_slice(c.json);
            body.push(b'}');
            let a = crate::http::send(
                &self.client,
                Method::POST,
                self.batch_url.as_str(),
                self.headers.clone(),
                body.into(),
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
        let body = format!(
            r#"{{"api_key":{},"distinct_id":"{TEST_DISTINCT_ID}"}}"#,
            self.api_key_json
        )
        .into_bytes();
        let mut path = "/flags/";
        let mut answer = self.post(&self.flags_url, body.clone()).send().await;
        if matches!(&answer, Ok(r) if r.status().as_u16() == 404) {
            path = "/decide/";
            answer = self.post(&self.decide_url, body).send().await;
        }
        match answer {
            Err(e) => ConnectionCheck::unreachable("PostHog", &transport_message(&e)),
            Ok(r) => {
                let status = r.status().as_u16();
                let text = crate::http::read_capped(r, crate::http::MAX_ANSWER).await;
                match status {
                    200..=299 => ConnectionCheck::passed(
                        status,
                        format!(
                            "PostHog accepted the project API key ({status}; checked with a feature-flag request to {path}, no event was sent)"
                        ),
                    ),
                    401 | 403 => ConnectionCheck::failed(
                        Some(status),
                        format!("PostHog rejected the project API key ({status})"),
                    ),
                    _ => ConnectionCheck::failed(
                        Some(status),
                        format!("PostHog answered {status} to POST {path}{}", snippet(&text)),
                    ),
                }
            }
        }
    }
}
