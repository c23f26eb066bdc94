//! `sentry`: OTLP/HTTP JSON to the project's OTLP traces endpoint, authenticated with the
//! public key of the project's DSN, in the attribute dialect of Sentry's AI monitoring.
//!
//! # Protocol and its sources
//!
//! Sentry recommends OTLP for sending OpenTelemetry traces without a Sentry SDK ("Direct OTLP
//! Traces", <https://docs.sentry.io/concepts/otlp/direct/traces/>, open beta): POST an
//! `ExportTraceServiceRequest` to the project's *OTLP Traces Endpoint*
//! (`https://o<org>.ingest.<region>.sentry.io/api/<project>/integration/otlp/v1/traces`) with
//! the header `x-sentry-auth: sentry sentry_key=<public key>`. It is also what OpenRouter's
//! Sentry destination sends (`sentry.mdx`: "Sentry receives traces via the OTLP protocol").
//! Relay (`relay-server/src/endpoints/integrations/otlp.rs`) accepts `application/json` and
//! `application/x-protobuf` and answers `202`; tracecast sends JSON so the engine can share
//! the encoded fragments with the other OTLP destinations.
//!
//! Config: `otlpEndpoint` (required, the full traces URL; a base ending in `/otlp` gets `/v1/traces`), `dsn` (required, secret: only its
//! public key is sent, in `x-sentry-auth`; it is never logged nor put in an error), `headers`
//! (custom headers on every request; a custom `x-sentry-auth` is replaced by the DSN's).
//!
//! # Dialect
//!
//! The shared OTLP mapping (`docs/otlp.md`), with the names of Sentry's semantic conventions
//! registry (PyPI `sentry-conventions`, checked by `tests/vendors/test_sentry.py`):
//!
//! - span names: the root span (no `parent_span_id`) is named `trace.trace_name`, which Sentry
//!   shows as the transaction name; other spans are named `span_name` / `generation_name`.
//!   `sentry.description` always carries `span_name` (intermediate span) or `generation_name`
//!   (generation span), and `sentry.segment.name` = `trace_name` when tracecast emits the root;
//! - the generation span has `sentry.op` = `gen_ai.<operation>` (`gen_ai.chat`), the op
//!   Sentry's AI monitoring keys on;
//! - content as `gen_ai.input.messages` and `gen_ai.output.messages` (stringified arrays of
//!   `{role, parts[]}` messages, the registry's shape) instead of `gen_ai.prompt` /
//!   `gen_ai.completion`, plus `gen_ai.tool.definitions`; none of them in privacy mode;
//! - cost as `gen_ai.cost.total_tokens` (USD) instead of `gen_ai.usage.cost` /
//!   `gen_ai.usage.total_cost`, and with the cost-allocation group the `gen_ai.cost.*` parts;
//! - deprecated aliases are not sent (`gen_ai.system`, `gen_ai.usage.prompt_tokens`,
//!   `gen_ai.usage.completion_tokens`, `gen_ai.usage.input_tokens.cached`,
//!   `gen_ai.usage.input_tokens.cache_write`, `gen_ai.usage.output_tokens.reasoning`,
//!   `gen_ai.response.finish_reason`); their registry replacements are;
//! - registry types: `gen_ai.response.finish_reasons` is a JSON string, `gen_ai.request.seed` a
//!   string, sampling parameters doubles, `max_tokens`/`top_k` integers;
//! - `trace.environment` / `trace.release` also go to `sentry.environment` / `sentry.release`;
//!   `gen_ai.response.streaming` and `gen_ai.response.time_to_first_chunk` (seconds) are added.
//!
//! # Limits and responses
//!
//! At most 100 traces or 4 MiB per request (Relay's body limits for integrations are larger).
//! A content attribute longer than 64 KiB is shortened visibly ([`crate::json_fit`]). 429 is
//! retried after `Retry-After`, else after the longest `X-Sentry-Rate-Limits` entry that
//! covers spans; 401/403 pause the destination; other 4xx dead-letter the batch.
//!
//! # Test connection
//!
//! The empty request `{"resourceSpans":[]}` with the DSN's key: 2xx passes; 401/403 fail with
//! "Sentry rejected the DSN key (401)", with a hint when the DSN's project id is not the one in
//! the endpoint.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};
use tracecast_model::trace::{Input, Output, TraceView};

use crate::config::required_str;
use crate::http::classify;
use crate::http::headers_with_credentials;
use crate::json_fit::cap_content;
use crate::otlp::keys as k;
use crate::otlp::{
    Attr, AttrValue, AttributeKey, Attributes, Element, OtlpDialect, OtlpEncoding, OtlpExporter,
    OtlpHttp, Probe, SpanRole, SpanSlot, partial_success,
};
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, FragmentEncoder, Outcome,
    Payload,
};

/// The authentication header of Sentry's OTLP endpoint.
pub const AUTH_HEADER: &str = "x-sentry-auth";
/// Sentry's rate-limit answer header.
pub const RATE_LIMITS_HEADER: &str = "x-sentry-rate-limits";
/// Longest content attribute sent as is.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Batch limits.
pub const LIMITS: BatchLimits = BatchLimits {
    max_items: 100,
    max_bytes: 4 * 1024 * 1024,
};

// Sentry registry keys this dialect adds.
pub const SENTRY_OP: &str = "sentry.op";
pub const SENTRY_DESCRIPTION: &str = "sentry.description";
pub const SENTRY_SEGMENT_NAME: &str = "sentry.segment.name";
pub const SENTRY_ENVIRONMENT: &str = "sentry.environment";
pub const SENTRY_RELEASE: &str = "sentry.release";
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
pub const GEN_AI_COST_TOTAL: &str = "gen_ai.cost.total_tokens";
pub const GEN_AI_COST_INPUT: &str = "gen_ai.cost.input_tokens";
pub const GEN_AI_COST_OUTPUT: &str = "gen_ai.cost.output_tokens";
pub const GEN_AI_COST_CACHE_READ: &str = "gen_ai.cost.cache_read.input_tokens";
pub const GEN_AI_COST_CACHE_CREATION: &str = "gen_ai.cost.cache_creation.input_tokens";
pub const GEN_AI_COST_REASONING: &str = "gen_ai.cost.reasoning.output_tokens";
pub const GEN_AI_RESPONSE_STREAMING: &str = "gen_ai.response.streaming";
pub const GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";

/// What a Sentry DSN tells: the public key and the project.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    public_key: String,
    pub host: String,
    pub project_id: String,
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dsn")
            .field("public_key", &"<redacted>")
            .field("host", &self.host)
            .field("project_id", &self.project_id)
            .finish()
    }
}

impl Dsn {
    /// Parses `https://<public key>[:<secret>]@<host>/[<path>/]<project id>`. Errors never
    /// contain the DSN.
    pub fn parse(dsn: &str) -> Result<Dsn, ExportError> {
        let bad = |why: &str| ExportError::Config(format!("dsn: {why}"));
        let url = Url::parse(dsn.trim()).map_err(|_| bad("is not a URL"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(bad("must be an https URL"));
        }
        let public_key = url.username();
        if public_key.is_empty() {
            return Err(bad("has no public key (https://<key>@<host>/<project id>)"));
        }
        let host = url.host_str().ok_or_else(|| bad("has no host"))?;
        let project_id = url
            .path_segments()
            .and_then(|mut s| s.rfind(|p| !p.is_empty()))
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad("does not end with the numeric project id"))?;
        Ok(Dsn {
            public_key: public_key.to_owned(),
            host: host.to_owned(),
            project_id: project_id.to_owned(),
        })
    }

    /// The value of `x-sentry-auth` (Sentry's documented OTLP header).
    pub fn auth_header(&self) -> String {
        format!("sentry sentry_key={}", self.public_key)
    }
}

/// The project id in an OTLP endpoint path (`/api/<id>/...`), if it has one.
fn endpoint_project(url: &Url) -> Option<&str> {
    let mut segs = url.path_segments()?;
    while let Some(s) = segs.next() {
        if s == "api" {
            return segs.next().filter(|p| !p.is_empty());
        }
    }
    None
}

/// The traces URL for an `otlpEndpoint`: as given, except that an OTLP *base* URL (a path
/// ending in `/otlp`, such as `.../api/456/integration/otlp` or the older `.../api/456/otlp`)
/// gets the signal path `/v1/traces`, as OpenTelemetry exporters do with a base endpoint.
pub fn traces_url(endpoint: &str) -> String {
    let (head, query) = match endpoint.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (endpoint, None),
    };
    let trimmed = head.trim_end_matches('/');
    let mut url = if trimmed.ends_with("/otlp") {
        format!("{trimmed}/v1/traces")
    } else {
        head.to_owned()
    };
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(exporter(config, ctx)?))
}

/// The Sentry exporter (typed, for tests and tooling).
pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<SentryExporter, ExportError> {
    let endpoint = traces_url(required_str(config, "otlpEndpoint")?);
    let dsn = Dsn::parse(required_str(config, "dsn")?)?;
    let auth = dsn.auth_header();
    let headers = headers_with_credentials(
        config,
        &[(HeaderName::from_static(AUTH_HEADER), &auth, "dsn")],
    )?;
    let http = OtlpHttp::new(ctx, Method::POST, &endpoint, headers)
        .map_err(|e| ExportError::Config(format!("otlpEndpoint: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::Sentry,
            config,
        ));
    let project_hint = match endpoint_project(http.url()) {
        Some(p) if p != dsn.project_id => Some(format!(
            "the DSN is for project {} but otlpEndpoint is for project {p}: copy both from the same project's Client Keys (DSN) page",
            dsn.project_id
        )),
        _ => None,
    };
    let probe = Probe {
        credentials: "the DSN key",
        hint_404: Some(
            "check otlpEndpoint: it is the project's OTLP Traces Endpoint, ending in /integration/otlp/v1/traces",
        ),
        ..Probe::new("Sentry")
    };
    let inner =
        OtlpExporter::new(http, SentryDialect, "otlp-json/sentry", probe).with_limits(LIMITS);
    Ok(SentryExporter {
        inner,
        project_hint,
    })
}

/// [`OtlpExporter`] with Sentry's dialect, plus Sentry's rate-limit header and DSN hints.
pub struct SentryExporter {
    inner: OtlpExporter<SentryDialect>,
    project_hint: Option<String>,
}

impl SentryExporter {
    pub fn otlp(&self) -> &OtlpExporter<SentryDialect> {
        &self.inner
    }
}

#[async_trait]
impl Exporter for SentryExporter {
    fn limits(&self) -> BatchLimits {
        self.inner.limits()
    }

    fn fragments(&self) -> Option<&dyn FragmentEncoder> {
        self.inner.fragments()
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        self.inner.encode(traces)
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        let http = self.inner.http();
        let answer = match http
            .send_raw(payload.body.clone(), OtlpEncoding::Json, &[])
            .await
        {
            Ok(a) => a,
            Err(error) => {
                return Outcome::Retry {
                    status: None,
                    error,
                    retry_after: None,
                };
            }
        };
        if answer.status.is_success() {
            if let Some((rejected, message)) =
                partial_success(&answer.headers, answer.body.as_bytes())
            {
                tracing::warn!(
                    url = %http.url(),
                    rejected_spans = rejected,
                    message = %message,
                    "Sentry accepted the payload partially"
                );
            }
            return Outcome::Delivered;
        }
        match classify(answer.status, &answer.headers, &answer.body) {
            Outcome::Retry {
                status,
                error,
                retry_after: None,
            } => Outcome::Retry {
                status,
                error,
                retry_after: rate_limit_delay(&answer.headers),
            },
            other => other,
        }
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let mut check = self.inner.test_connection().await;
        if !check.ok
            && matches!(check.status, Some(401 | 403))
            && let Some(hint) = &self.project_hint
        {
            check.message = format!("{}: {hint}", check.message);
        }
        check
    }
}

/// The wait asked by `X-Sentry-Rate-Limits` for spans: the longest entry whose categories are
/// empty (all) or include `span`, `span_indexed` or `transaction`; capped at one hour.
///
/// Format: `<seconds>:<categories separated by ;>:<scope>[:<reason>[:<namespaces>]]`, entries
/// separated by commas (<https://develop.sentry.dev/sdk/expected-features/rate-limiting/>).
pub fn rate_limit_delay(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RATE_LIMITS_HEADER)?.to_str().ok()?;
    raw.split(',')
        .filter_map(|entry| {
            let mut parts = entry.trim().split(':');
            let secs: f64 = parts.next()?.trim().parse().ok()?;
            let categories = parts.next().unwrap_or("");
            let applies = categories.trim().is_empty()
                || categories
                    .split(';')
                    .any(|c| matches!(c.trim(), "span" | "span_indexed" | "transaction"));
            (applies && secs.is_finite() && secs >= 0.0).then_some(secs)
        })
        .reduce(f64::max)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

/// Sentry's flavour of the OTLP mapping (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SentryDialect;

/// Standard keys Sentry's registry marks as deprecated aliases of keys that are also sent, or
/// that this dialect replaces.
const DROPPED: &[&str] = &[
    k::GEN_AI_SYSTEM,
    k::GEN_AI_USAGE_PROMPT_TOKENS,
    k::GEN_AI_USAGE_COMPLETION_TOKENS,
    k::GEN_AI_USAGE_INPUT_TOKENS_CACHED,
    k::GEN_AI_USAGE_INPUT_TOKENS_CACHE_WRITE,
    k::GEN_AI_USAGE_OUTPUT_TOKENS_REASONING,
    k::GEN_AI_RESPONSE_FINISH_REASON,
    k::GEN_AI_RESPONSE_FINISH_REASONS,
    k::GEN_AI_USAGE_TOTAL_COST,
    k::GEN_AI_PROMPT,
    k::GEN_AI_COMPLETION,
];

impl OtlpDialect for SentryDialect {
    /// Only a parent that can name a span of the user's own OTLP trace (see
    /// [`crate::otlp::carry_unsent_parent`] for any other).
    fn parent_span_id(&self, view: &TraceView<'_>) -> Option<[u8; 8]> {
        view.otlp_linkable_parent_span_id()
    }

    fn span_name<'a>(&self, view: &TraceView<'a>, slot: SpanSlot) -> Cow<'a, str> {
        Cow::Borrowed(if slot.is_root {
            view.trace_name()
        } else {
            own_name(view, slot.role)
        })
    }

    fn attribute_key(&self, element: Element, key: &str) -> AttributeKey {
        if !matches!(element, Element::Span(_)) {
            return AttributeKey::Keep;
        }
        if key == k::GEN_AI_USAGE_COST {
            AttributeKey::Rename(Cow::Borrowed(GEN_AI_COST_TOTAL))
        } else if DROPPED.contains(&key) {
            AttributeKey::Drop
        } else {
            AttributeKey::Keep
        }
    }

    fn span_attributes<'a>(
        &self,
        view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        crate::otlp::carry_unsent_parent(view, slot, attrs);
        attrs.string(SENTRY_DESCRIPTION, own_name(view, slot.role));
        if view.otlp_linkable_parent_span_id().is_none() {
            // tracecast emits the root (Sentry's segment) of these spans: name it.
            attrs.string(SENTRY_SEGMENT_NAME, view.trace_name());
        }
        for (name, key) in [
            ("environment", SENTRY_ENVIRONMENT),
            ("release", SENTRY_RELEASE),
        ] {
            if let Some(v) = view.metadata().find(|(n, _)| *n == name).map(|(_, v)| v) {
                match v {
                    Value::String(s) if !s.is_empty() => {
                        attrs.string(key, s.as_str());
                    }
                    Value::Number(n) => {
                        attrs.string(key, n.to_string());
                    }
                    _ => {}
                }
            }
        }
        if slot.role != SpanRole::Generation {
            return;
        }

        let op = match attrs.get(k::GEN_AI_OPERATION_NAME) {
            Some(AttrValue::String(s)) => format!("gen_ai.{s}"),
            _ => "gen_ai.chat".to_owned(),
        };
        attrs.string(SENTRY_OP, op);
        if let Some(reason) = view.finish_reason() {
            attrs.string(
                k::GEN_AI_RESPONSE_FINISH_REASONS,
                Value::from(vec![reason]).to_string(),
            );
        }
        normalise_request_types(attrs);
        attrs.opt_bool(GEN_AI_RESPONSE_STREAMING, view.streamed());
        attrs.opt_double(
            GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
            view.time_to_first_token_ms().map(|ms| ms / 1000.0),
        );
        if let Some(alloc) = view.cost_allocation() {
            let part = |kind: &str| alloc.parts.iter().find(|p| p.kind == kind).map(|p| p.cost);
            let sum = |kinds: &[&str]| -> Option<f64> {
                let costs: Vec<f64> = kinds.iter().filter_map(|k| part(k)).collect();
                (!costs.is_empty()).then(|| costs.iter().sum())
            };
            attrs
                .opt_double(
                    GEN_AI_COST_INPUT,
                    sum(&["prompt", "cache_read", "cache_write"]),
                )
                .opt_double(GEN_AI_COST_OUTPUT, sum(&["completion", "reasoning"]))
                .opt_double(GEN_AI_COST_CACHE_READ, part("cache_read"))
                .opt_double(GEN_AI_COST_CACHE_CREATION, part("cache_write"))
                .opt_double(GEN_AI_COST_REASONING, part("reasoning"));
        }
        if let Some(input) = view.input() {
            let messages = input_messages(&input);
            if !messages.is_empty() {
                attrs.string(GEN_AI_INPUT_MESSAGES, Value::Array(messages).to_string());
            }
        }
        if let Some(output) = view.output() {
            attrs.string(
                GEN_AI_OUTPUT_MESSAGES,
                Value::Array(vec![output_message(&output, view.finish_reason())]).to_string(),
            );
        }
        cap_content(
            attrs,
            &[
                GEN_AI_INPUT_MESSAGES,
                GEN_AI_OUTPUT_MESSAGES,
                k::GEN_AI_TOOL_DEFINITIONS,
            ],
            MAX_CONTENT_BYTES,
        );
    }
}

/// `span_name` for the intermediate span, `generation_name` for the generation span.
fn own_name<'a>(view: &TraceView<'a>, role: SpanRole) -> &'a str {
    match role {
        SpanRole::Intermediate => view.span_name().unwrap_or_else(|| view.generation_name()),
        SpanRole::Generation => view.generation_name(),
    }
}

/// Request parameters with the types of Sentry's registry.
fn normalise_request_types(attrs: &mut Attributes<'_, '_>) {
    const DOUBLES: &[&str] = &[
        "gen_ai.request.temperature",
        "gen_ai.request.top_p",
        "gen_ai.request.frequency_penalty",
        "gen_ai.request.presence_penalty",
    ];
    const INTEGERS: &[&str] = &["gen_ai.request.max_tokens", "gen_ai.request.top_k"];
    let mut replace: Vec<(String, AttrValue<'static>)> = Vec::new();
    for a in attrs.iter() {
        let key = a.key.as_ref();
        let new = match (&a.value, key) {
            (AttrValue::Int(i), "gen_ai.request.seed") => {
                Some(AttrValue::String(Cow::Owned(i.to_string())))
            }
            (AttrValue::Double(d), "gen_ai.request.seed") => {
                Some(AttrValue::String(Cow::Owned(d.to_string())))
            }
            (AttrValue::Int(i), _) if DOUBLES.contains(&key) => Some(AttrValue::Double(*i as f64)),
            (AttrValue::Double(d), _)
                if INTEGERS.contains(&key) && d.fract() == 0.0 && d.abs() < 9.0e15 =>
            {
                Some(AttrValue::Int(*d as i64))
            }
            _ => None,
        };
        if let Some(v) = new {
            replace.push((key.to_owned(), v));
        }
    }
    for (key, value) in replace {
        attrs.remove(&key);
        attrs.push(Attr {
            key: Cow::Owned(key),
            value,
        });
    }
}

// ---- content in the registry's message shape ----

fn text_part(text: &str) -> Value {
    json!({"type": "text", "content": text})
}

/// A content value (string, or array of parts) as registry parts.
fn content_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![text_part(s)],
        Value::Array(items) => items.iter().map(content_part).collect(),
        Value::Null => Vec::new(),
        other => vec![text_part(&other.to_string())],
    }
}

fn content_part(part: &Value) -> Value {
    if let Value::String(s) = part {
        return text_part(s);
    }
    if let Some(text) = part.get("text").and_then(Value::as_str) {
        return text_part(text);
    }
    let url = part
        .get("image_url")
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str);
    if let Some(url) = url {
        return if let Some(rest) = url.strip_prefix("data:") {
            // Inline data is not sent (Sentry's SDKs send this same substitute).
            let mime = rest.split([';', ',']).next().unwrap_or("");
            json!({"type": "blob", "modality": "image", "mime_type": mime, "content": "[Blob substitute]"})
        } else {
            json!({"type": "uri", "modality": "image", "uri": url})
        };
    }
    part.clone()
}

/// `function.arguments` parsed when it is JSON text, else as given.
fn arguments(call: &Value) -> Value {
    let raw = call
        .get("function")
        .and_then(|f| f.get("arguments"))
        .or_else(|| call.get("arguments"));
    match raw {
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::from(s.as_str()))
        }
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

fn tool_call_part(call: &Value) -> Value {
    let name = call
        .get("function")
        .and_then(|f| f.get("name"))
        .or_else(|| call.get("name"))
        .cloned()
        .unwrap_or(Value::Null);
    let id = call
        .get("id")
        .or_else(|| call.get("call_id"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({"type": "tool_call", "id": id, "name": name, "arguments": arguments(call)})
}

/// One chat message (or Responses-API input item) as `{role, parts}`.
fn message(m: &Value) -> Value {
    let Some(obj) = m.as_object() else {
        return json!({"role": "user", "parts": content_parts(m)});
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("function_call") => {
            return json!({"role": "assistant", "parts": [tool_call_part(m)]});
        }
        Some("function_call_output") => {
            return json!({"role": "tool", "parts": [{
                "type": "tool_call_response",
                "id": obj.get("call_id").cloned().unwrap_or(Value::Null),
                "result": obj.get("output").cloned().unwrap_or(Value::Null),
            }]});
        }
        _ => {}
    }
    let role = obj.get("role").and_then(Value::as_str).unwrap_or("user");
    let role = match role {
        "developer" => "system",
        "function" => "tool",
        r => r,
    };
    let content = obj.get("content").unwrap_or(&Value::Null);
    let parts: Vec<Value> = if role == "tool" {
        vec![json!({
            "type": "tool_call_response",
            "id": obj.get("tool_call_id").cloned().unwrap_or(Value::Null),
            "result": content,
        })]
    } else {
        let mut parts = content_parts(content);
        if let Some(Value::Array(calls)) = obj.get("tool_calls") {
            parts.extend(calls.iter().map(tool_call_part));
        }
        parts
    };
    json!({"role": role, "parts": parts})
}

/// The prompt side as registry messages.
fn input_messages(input: &Input<'_>) -> Vec<Value> {
    let items = [input.messages, input.input, input.prompt];
    for item in items.into_iter().flatten() {
        match item {
            Value::Array(list) if !list.is_empty() => return list.iter().map(message).collect(),
            Value::String(s) => return vec![json!({"role": "user", "parts": [text_part(s)]})],
            _ => {}
        }
    }
    Vec::new()
}

/// The completion side as one registry output message.
fn output_message(output: &Output<'_>, finish_reason: Option<&str>) -> Value {
    let mut parts = Vec::new();
    if let Some(r) = output.reasoning.as_deref().filter(|r| !r.is_empty()) {
        parts.push(json!({"type": "reasoning", "content": r}));
    }
    let calls = output.tool_calls.and_then(Value::as_array);
    if !output.completion.is_empty() || calls.is_none_or(|c| c.is_empty()) {
        parts.push(text_part(&output.completion));
    }
    if let Some(calls) = calls {
        parts.extend(calls.iter().map(tool_call_part));
    }
    let mut m = json!({"role": "assistant", "parts": parts});
    if let Some(reason) = finish_reason {
        m["finish_reason"] = Value::from(reason);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_parsing() {
        let d = Dsn::parse("https://abc123@o123.ingest.us.sentry.io/456").unwrap();
        assert_eq!(d.auth_header(), "sentry sentry_key=abc123");
        assert_eq!(
            (d.host.as_str(), d.project_id.as_str()),
            ("o123.ingest.us.sentry.io", "456")
        );
        let d = Dsn::parse("https://pkey99:secret@sentry.example.com/sub/path/42/").unwrap();
        assert_eq!(d.auth_header(), "sentry sentry_key=pkey99");
        assert_eq!(d.project_id, "42");
        assert!(!format!("{d:?}").contains("pkey99"), "the key is redacted");
        for bad in [
            "nope",
            "https://o1.ingest.sentry.io/1",
            "https://k@h/abc",
            "ftp://k@h/1",
        ] {
            let e = Dsn::parse(bad).unwrap_err().to_string();
            assert!(e.contains("dsn"), "{e}");
            assert!(!e.contains(bad) || bad == "nope", "{e}");
        }
    }

    #[test]
    fn otlp_base_urls_get_the_traces_path() {
        let full = "https://o1.ingest.us.sentry.io/api/456/integration/otlp/v1/traces";
        assert_eq!(traces_url(full), full);
        assert_eq!(
            traces_url("https://o1.ingest.us.sentry.io/api/456/integration/otlp/"),
            full
        );
        assert_eq!(
            traces_url("https://o1.ingest.sentry.io/api/0/otlp"),
            "https://o1.ingest.sentry.io/api/0/otlp/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:9/x?a=1"),
            "http://127.0.0.1:9/x?a=1"
        );
    }

    #[test]
    fn rate_limit_header() {
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_delay(&h), None);
        h.insert(
            RATE_LIMITS_HEADER,
            "60:transaction;span:organization:quota_exceeded, 2700:error:project"
                .parse()
                .unwrap(),
        );
        assert_eq!(rate_limit_delay(&h), Some(Duration::from_secs(60)));
        h.insert(
            RATE_LIMITS_HEADER,
            "30::organization, 5:span:key".parse().unwrap(),
        );
        assert_eq!(rate_limit_delay(&h), Some(Duration::from_secs(30)));
        h.insert(RATE_LIMITS_HEADER, "10:error:key".parse().unwrap());
        assert_eq!(rate_limit_delay(&h), None);
        h.insert(RATE_LIMITS_HEADER, "99999::org".parse().unwrap());
        assert_eq!(rate_limit_delay(&h), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn messages_in_the_registry_shape() {
        let m = message(
            &json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
            ]}),
        );
        assert_eq!(
            m,
            json!({"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": {"a": 1}}]})
        );
        let m = message(&json!({"role": "tool", "tool_call_id": "c1", "content": "42"}));
        assert_eq!(
            m,
            json!({"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "result": "42"}]})
        );
        let m = message(&json!({"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
        ]}));
        assert_eq!(m["parts"][0], json!({"type": "text", "content": "look"}));
        assert_eq!(m["parts"][1]["content"], "[Blob substitute]");
        assert_eq!(m["parts"][1]["mime_type"], "image/png");
        assert_eq!(m["parts"][2]["uri"], "https://x/y.png");
        assert_eq!(message(&json!("hi"))["parts"][0]["content"], "hi");
        assert_eq!(
            message(&json!({"type": "function_call_output", "call_id": "c", "output": "o"}))["role"],
            "tool"
        );
    }
}
