//! `braintrust`: generations as OTLP/HTTP JSON spans POSTed to Braintrust's OpenTelemetry
//! endpoint, `{baseUrl}/otel/v1/traces`, with Braintrust's `braintrust.*` attributes on top of
//! the GenAI semantic conventions.
//!
//! # Protocol choice and sources
//!
//! Braintrust documents its OTLP endpoint as the way to send traces from existing
//! OpenTelemetry pipelines ("Send OpenTelemetry traces and logs to Braintrust",
//! <https://braintrust.dev/docs/integrations/sdk-integrations/opentelemetry/send-traces-and-logs>;
//! `notes/destination-protocols.md` §5.3): `Authorization: Bearer <apiKey>` and
//! `x-bt-parent: project_id:<projectId>`; LLM spans become Braintrust LLM spans. tracecast
//! already builds OTLP spans for every generation (the shared encoder and fragment cache), so
//! OTLP costs no second mapping; the row API (`/v1/project_logs/{id}/insert`, §5.2) has no
//! documented advantage for this use. Braintrust attributes used
//! (<https://braintrust.dev/docs/integrations/sdk-integrations/opentelemetry/attributes>):
//! `braintrust.input_json` / `braintrust.output_json` (JSON strings parsed into `input` /
//! `output`), `braintrust.metadata.<key>`, `braintrust.metrics.<key>`, `braintrust.tags`,
//! `braintrust.span_attributes.type`. `tests/vendors/test_braintrust.py` rebuilds the row those
//! attributes describe and validates it with the `braintrust` package's generated API types
//! (`ProjectLogsEventMetrics`, `SpanAttributes`, ...).
//!
//! # Config
//!
//! | field | default | use |
//! |---|---|---|
//! | `apiKey` (secret) | required | `Authorization: Bearer` header |
//! | `projectId` | required | `x-bt-parent: project_id:<projectId>`; the connection test reads the project |
//! | `baseUrl` | `https://api.braintrust.dev` | API base URL (`https://api-eu.braintrust.dev`, self-hosted data plane); a trailing `/v1` is ignored |
//! | `headers` | none | sent with every request, including the connection test; `Authorization` and `x-bt-parent` from the fields above win |
//!
//! # Mapping (on top of the shared OTLP mapping, `docs/otlp.md`)
//!
//! | OpenRouter | Braintrust attribute | Braintrust field |
//! |---|---|---|
//! | `trace.trace_id` | OTLP trace id | `root_span_id` (and span ids) |
//! | `trace.trace_name`, `trace.span_name`, `trace.generation_name` | span name | `span_attributes.name` |
//! | `trace.parent_span_id` | OTLP parent of the top-most span only when it can name a span the user sent: 16 hex characters in the user's own 32-hex trace id ([`TraceView::otlp_linkable_parent_span_id`]; Braintrust's SDK makes OpenTelemetry ids by default, braintrust 0.48.1 `braintrust/id_gen.py`); else `braintrust.metadata.parent_span_id` on the top-most span, then the root (Braintrust lists traces by their root span) | `span_parents` / metadata |
//! | observation type | `braintrust.span_attributes.type`: `llm` (generation), `task` (the `span_name` span) | `span_attributes.type` |
//! | `user` | `braintrust.metadata.user_id` | `metadata.user_id` |
//! | `session_id` | `braintrust.metadata.session_id` | `metadata.session_id` |
//! | custom `trace` keys | `braintrust.metadata.<key>` (instead of `trace.metadata.<key>`) | `metadata.<key>` |
//! | string arrays in custom metadata | `braintrust.tags` (string array; root spans only, where Braintrust keeps tags) | `tags` |
//! | model, provider, trace name | `braintrust.metadata.model`, `.provider`, `.trace_name` (top-most span) | `metadata` (`model` lets Braintrust estimate cost) |
//! | prompt (`messages`, else `prompt`, else `input`) | `braintrust.input_json` | `input` |
//! | completion (the response's `choices`, else `{"completion","reasoning","tool_calls"}`) | `braintrust.output_json` | `output` |
//! | tool definitions | `braintrust.metadata.tools` (JSON) | `metadata.tools` |
//! | tokens | `braintrust.metrics.prompt_tokens`, `completion_tokens`, `tokens`, `prompt_cached_tokens`, `prompt_cache_creation_tokens`, `completion_reasoning_tokens` | `metrics` |
//! | cost (USD) | `braintrust.metrics.total_cost`; `prompt_cost`, `completion_cost` with the cost group | `metrics` |
//! | timing | span start/end; `braintrust.metrics.time_to_first_token` (seconds) | `metrics` |
//!
//! The GenAI content attributes `gen_ai.prompt`, `gen_ai.completion` and
//! `gen_ai.tool.definitions` are not sent: the same content goes in the Braintrust attributes
//! above, once. Fields set from the generation win over custom metadata keys of the same name.
//!
//! # Privacy mode
//!
//! No `braintrust.input_json`, `braintrust.output_json` or `braintrust.metadata.tools`: the
//! shared [`TraceView`] gives no content. Usage, cost, timing, model and metadata are sent.
//!
//! # Limits and truncation
//!
//! At most 100 generations and 5 MiB per request. Any string attribute over 1 MiB (in practice
//! `braintrust.input_json`, `braintrust.output_json`, `braintrust.metadata.tools`, or an
//! outsized custom metadata value) is replaced by the JSON marker
//! `{"truncated":true,"original_bytes":…,"kept_bytes":…,"note":…,"preview":"<first 64 KiB>"}`
//! (still valid JSON, so Braintrust shows it as the input/output), and the span gets
//! `braintrust.metadata.truncated = true` and `tracecast.truncated = true`.
//!
//! # Responses
//!
//! Braintrust documents no rate limits or per-item answers for this endpoint: the shared
//! classification applies (2xx delivered; 401/403 pause; 408, 429 with `Retry-After`, 5xx
//! retried; other 4xx dead-lettered); an OTLP `partialSuccess` is logged and counts as
//! delivered.
//!
//! # Test connection
//!
//! `GET {baseUrl}/v1/project/{projectId}` with the same headers: it proves the URL, the API key
//! and that the key can see the project, and writes nothing. 401/403 read "Braintrust rejected
//! the API key (401)"; 404 "Braintrust has no project with id … visible to this API key (404)".

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use reqwest::{Method, Url};
use serde::Serialize;
use serde_json::{Map, Value};
use tracecast_model::trace::TraceView;

use crate::config::{custom_headers, optional_str, required_str};
use crate::endpoint::{join_url, set_header};
use crate::http::transport_message;
use crate::otlp::keys as k;
use crate::otlp::{
    AttrValue, AttributeKey, Attributes, Element, OtlpDialect, OtlpExporter, OtlpHttp, Probe,
    SpanRole, SpanSlot,
};
use crate::truncate::TRUNCATED as TRACECAST_TRUNCATED;
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, FragmentEncoder, Outcome,
    Payload,
};

/// The default `baseUrl`.
pub const DEFAULT_BASE_URL: &str = "https://api.braintrust.dev";
/// The path of Braintrust's OTLP traces endpoint under `baseUrl`.
pub const TRACES_PATH: &str = "/otel/v1/traces";

pub const METADATA_PREFIX: &str = "braintrust.metadata.";
pub const METRICS_PREFIX: &str = "braintrust.metrics.";
pub const INPUT_JSON: &str = "braintrust.input_json";
pub const OUTPUT_JSON: &str = "braintrust.output_json";
pub const TAGS: &str = "braintrust.tags";
pub const SPAN_TYPE: &str = "braintrust.span_attributes.type";
const TOOLS: &str = "braintrust.metadata.tools";

/// Largest string attribute (input, output, tool definitions) sent as is, in bytes; a larger
/// one is replaced by a truncation marker.
pub const CONTENT_CAP: usize = 1024 * 1024;
/// How many bytes of the original value a truncation marker keeps as its `preview`.
pub const PREVIEW_BYTES: usize = 64 * 1024;
/// Generations per request: Braintrust's SDK flushes 100 rows at a time.
pub const MAX_ITEMS: usize = 100;
/// Request bodies stay under 5 MiB (OTLP's recommended receiver limit is 20 MiB; Braintrust
/// documents no lower one).
pub const MAX_BYTES: usize = 5 * 1024 * 1024;

fn meta(name: &str) -> String {
    format!("{METADATA_PREFIX}{name}")
}

fn metric(name: &str) -> String {
    format!("{METRICS_PREFIX}{name}")
}

/// Braintrust's flavour of OTLP (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct BraintrustDialect;

#[derive(Serialize)]
struct CompletionJson<'a> {
    completion: &'a str,
    reasoning: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a Value>,
}

fn set_str<'a>(attrs: &mut Attributes<'a, '_>, key: String, value: &'a str) {
    attrs.set(key, AttrValue::String(Cow::Borrowed(value)));
}

fn set_uint(attrs: &mut Attributes<'_, '_>, key: &str, value: Option<u64>) {
    if let Some(v) = value {
        let v = i64::try_from(v).unwrap_or(i64::MAX);
        attrs.set(metric(key), AttrValue::Int(v));
    }
}

fn set_f64(attrs: &mut Attributes<'_, '_>, key: &str, value: Option<f64>) {
    if let Some(v) = value.filter(|v| v.is_finite()) {
        attrs.set(metric(key), AttrValue::Double(v));
    }
}

fn set_json<T: Serialize + ?Sized>(attrs: &mut Attributes<'_, '_>, key: &str, value: &T) {
    if let Ok(s) = serde_json::to_string(value) {
        attrs.set(key.to_owned(), AttrValue::String(Cow::Owned(s)));
    }
}

impl OtlpDialect for BraintrustDialect {
    /// The user's parent only when it can name a span the user sent Braintrust: an
    /// OpenTelemetry-form span id (16 hex characters, what Braintrust's SDK generates by
    /// default) in the user's own OpenTelemetry-form trace id. Otherwise the generation is a
    /// root (Braintrust lists traces by their root span) and the parent goes in metadata.
    fn parent_span_id(&self, view: &TraceView<'_>) -> Option<[u8; 8]> {
        view.otlp_linkable_parent_span_id()
    }

    fn attribute_key(&self, _element: Element, key: &str) -> AttributeKey {
        if let Some(name) = key.strip_prefix(k::TRACE_METADATA_PREFIX) {
            return AttributeKey::Rename(Cow::Owned(meta(name)));
        }
        match key {
            k::GEN_AI_PROMPT | k::GEN_AI_COMPLETION | k::GEN_AI_TOOL_DEFINITIONS => {
                AttributeKey::Drop
            }
            _ => AttributeKey::Keep,
        }
    }

    fn span_attributes<'a>(
        &self,
        view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        braintrust_attributes(view, slot, attrs);
        if crate::truncate::replace_oversized(attrs, CONTENT_CAP, PREVIEW_BYTES) {
            attrs.set(meta("truncated"), AttrValue::Bool(true));
            attrs.set(TRACECAST_TRUNCATED, AttrValue::Bool(true));
        }
    }
}

/// The `braintrust.*` attributes of a span (see the module docs).
fn braintrust_attributes<'a>(view: &TraceView<'a>, slot: SpanSlot, attrs: &mut Attributes<'a, '_>) {
    let ty = match slot.role {
        SpanRole::Intermediate => "task",
        SpanRole::Generation => "llm",
    };
    attrs.set(SPAN_TYPE, AttrValue::String(Cow::Borrowed(ty)));
    if slot.top_most {
        set_str(attrs, meta("trace_name"), view.trace_name());
    }
    if let Some(user) = view.user() {
        set_str(attrs, meta("user_id"), user);
    }
    if let Some(session) = view.session_id() {
        set_str(attrs, meta("session_id"), session);
    }
    if let Some(parent) = slot.unsent_parent(view) {
        set_str(attrs, meta("parent_span_id"), parent);
    }
    if slot.is_root {
        let tags = crate::tags::from_metadata(view);
        if !tags.is_empty() {
            attrs.set(
                TAGS,
                AttrValue::StringArray(tags.into_iter().map(Cow::Borrowed).collect()),
            );
        }
    }
    if slot.role != SpanRole::Generation {
        return;
    }

    set_str(attrs, meta("model"), view.model());
    if let Some(provider) = view.provider() {
        set_str(attrs, meta("provider"), provider);
    }

    // Metrics.
    set_uint(attrs, "prompt_tokens", view.prompt_tokens());
    set_uint(attrs, "completion_tokens", view.completion_tokens());
    set_uint(attrs, "tokens", view.total_tokens());
    set_uint(attrs, "prompt_cached_tokens", view.cached_tokens());
    set_uint(
        attrs,
        "prompt_cache_creation_tokens",
        view.cache_write_tokens(),
    );
    set_uint(
        attrs,
        "completion_reasoning_tokens",
        view.reasoning_tokens(),
    );
    set_f64(
        attrs,
        "time_to_first_token",
        view.time_to_first_token_ms().map(|ms| ms / 1000.0),
    );
    set_f64(attrs, "total_cost", view.total_cost());
    if let Some(details) = view.cost_group().and_then(|c| c.cost_details) {
        set_f64(
            attrs,
            "prompt_cost",
            details.get("prompt_cost").and_then(Value::as_f64),
        );
        set_f64(
            attrs,
            "completion_cost",
            details.get("completion_cost").and_then(Value::as_f64),
        );
    }

    // Content (none in privacy mode).
    if let Some(input) = view.input() {
        if let Some(v) = input.messages.or(input.prompt).or(input.input) {
            set_json(attrs, INPUT_JSON, v);
        }
        if let Some(tools) = input.tools {
            set_json(attrs, TOOLS, tools);
        }
    }
    if let Some(output) = view.output() {
        match output.choices {
            Some(choices) => set_json(attrs, OUTPUT_JSON, choices),
            None => set_json(
                attrs,
                OUTPUT_JSON,
                &CompletionJson {
                    completion: &output.completion,
                    reasoning: output.reasoning.as_deref(),
                    tool_calls: output.tool_calls,
                },
            ),
        }
    }
}

/// The configured base URL without trailing slashes or a trailing `/v1` (some clients
/// configure `https://api.braintrust.dev/v1`).
pub fn api_base(base_url: &str) -> &str {
    let base = base_url.trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base)
}

/// The `braintrust` exporter: OTLP for traces, Braintrust's project API for the connection test.
pub struct BraintrustExporter {
    otlp: OtlpExporter<BraintrustDialect>,
    client: reqwest::Client,
    timeout: std::time::Duration,
    project_url: Url,
    project_id: String,
    headers: HeaderMap,
}

impl BraintrustExporter {
    pub fn otlp(&self) -> &OtlpExporter<BraintrustDialect> {
        &self.otlp
    }

    /// The URL the connection test reads (`{baseUrl}/v1/project/{projectId}`).
    pub fn project_url(&self) -> &Url {
        &self.project_url
    }
}

/// The exporter for a (validated, decrypted) `braintrust` config.
pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<BraintrustExporter, ExportError> {
    let api_key = required_str(config, "apiKey")?;
    let project_id = required_str(config, "projectId")?;
    let base = api_base(optional_str(config, "baseUrl").unwrap_or(DEFAULT_BASE_URL));
    let traces_url = join_url(base, TRACES_PATH, "baseUrl")?;
    let mut project_url = join_url(base, "/v1/project", "baseUrl")?;
    project_url
        .path_segments_mut()
        .map_err(|_| ExportError::Config("baseUrl cannot be a base URL".into()))?
        .push(project_id);

    let mut headers = custom_headers(config)?;
    headers.remove(AUTHORIZATION);
    set_header(
        &mut headers,
        "authorization",
        &crate::http::bearer_auth(api_key),
        "apiKey",
        true,
    )?;
    let mut otlp_headers = headers.clone();
    set_header(
        &mut otlp_headers,
        "x-bt-parent",
        &format!("project_id:{project_id}"),
        "projectId",
        false,
    )?;
    let http = OtlpHttp::new(ctx, Method::POST, traces_url.as_str(), otlp_headers)
        .map_err(|e| ExportError::Config(format!("baseUrl: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::Braintrust,
            config,
        ))
        .with_partial_success(true);
    let probe = Probe {
        credentials: "the API key",
        ..Probe::new("Braintrust")
    };
    let otlp = OtlpExporter::new(http, BraintrustDialect, "otlp-json/braintrust", probe)
        .with_limits(BatchLimits {
            max_items: MAX_ITEMS,
            max_bytes: MAX_BYTES,
        });
    Ok(BraintrustExporter {
        otlp,
        client: ctx.client.clone(),
        timeout: ctx.timeout,
        project_url,
        project_id: project_id.to_owned(),
        headers,
    })
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(exporter(config, ctx)?))
}

/// Reads the answer to `GET /v1/project/{id}`.
fn read_project_answer(status: u16, body: &str, project_id: &str) -> ConnectionCheck {
    match status {
        200..=299 => {
            let name = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned));
            let project = match name {
                Some(n) => format!("project {n:?} ({project_id})"),
                None => format!("project {project_id}"),
            };
            ConnectionCheck::passed(
                status,
                format!("Braintrust accepted the API key and found {project} ({status})"),
            )
        }
        401 | 403 => ConnectionCheck::failed(
            Some(status),
            format!("Braintrust rejected the API key ({status})"),
        ),
        404 => ConnectionCheck::failed(
            Some(status),
            format!(
                "Braintrust has no project with id {project_id:?} visible to this API key (404); check projectId and baseUrl"
            ),
        ),
        _ => ConnectionCheck::failed(
            Some(status),
            format!(
                "Braintrust answered {status} to the test request{}",
                crate::otlp::snippet(body)
            ),
        ),
    }
}

#[async_trait]
impl Exporter for BraintrustExporter {
    fn limits(&self) -> BatchLimits {
        self.otlp.limits()
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
        let resp = self
            .client
            .get(self.project_url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .send()
            .await;
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = crate::http::read_capped(r, crate::http::MAX_ANSWER).await;
                let body: String = body.chars().take(64 * 1024).collect();
                read_project_answer(status, &body, &self.project_id)
            }
            Err(e) => ConnectionCheck::unreachable("Braintrust", &transport_message(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_bases() {
        assert_eq!(
            api_base("https://api.braintrust.dev"),
            "https://api.braintrust.dev"
        );
        assert_eq!(
            api_base("https://api.braintrust.dev/"),
            "https://api.braintrust.dev"
        );
        assert_eq!(
            api_base("https://api.braintrustdata.com/v1/"),
            "https://api.braintrustdata.com"
        );
    }

    #[test]
    fn project_answers() {
        let ok = read_project_answer(200, r#"{"id":"p","name":"Shop"}"#, "p");
        assert!(ok.ok && ok.message.contains("\"Shop\""), "{ok:?}");
        let denied = read_project_answer(401, "", "p");
        assert_eq!(denied.message, "Braintrust rejected the API key (401)");
        let missing = read_project_answer(404, "", "p-1");
        assert!(!missing.ok && missing.message.contains("p-1"));
        let other = read_project_answer(500, "boom", "p");
        assert_eq!(
            other.message,
            "Braintrust answered 500 to the test request: boom"
        );
    }
}
