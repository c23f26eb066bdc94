//! `opik`: Comet Opik through its REST batch endpoints.
//!
//! # Protocol (choice and source)
//!
//! Opik's own SDKs (PyPI `opik`, `opik.rest_api`) and integrations such as LiteLLM write traces
//! and spans with `POST {base}/v1/private/traces/batch` (`{"traces":[TraceWrite...]}`) and
//! `POST {base}/v1/private/spans/batch` (`{"spans":[SpanWrite...]}`), answered `204 No
//! Content`; auth is the raw API key in `Authorization` plus the workspace in
//! `Comet-Workspace` (reference notes §9, "Comet Opik"; `opik/httpx_client.py`,
//! `opik/rest_api/traces/raw_client.py`). This is also the shape OpenRouter's Opik destination
//! documents (`opik.mdx`: a trace plus spans, UUIDv7 ids, the original ids in metadata as
//! `openrouter_trace_id` / `openrouter_observation_id`), which Opik's OTLP endpoint could not
//! produce. So tracecast uses the REST batch API.
//!
//! Base URL: `https://www.comet.com/opik/api` (Comet cloud, `opik.config.OPIK_URL_CLOUD`). The
//! contract has no URL field; a deployment-wide override
//! (`delivery.endpoint_overrides.opik`, e.g. `http://localhost:5173/api` for self-hosted Opik)
//! replaces it.
//!
//! # One request body, two endpoints
//!
//! [`Exporter::encode`] produces newline-separated JSON documents (compact JSON never contains
//! a raw newline): first `{"traces":[...]}` documents, then `{"spans":[...]}` documents, each at
//! most [`MAX_ITEMS_PER_REQUEST`] items and about [`MAX_REQUEST_BYTES`]. [`Exporter::send`]
//! posts each document to its endpoint in order and stops at the first failure; a retry resends
//! everything, which Opik de-duplicates because the ids are deterministic. Opik's batch
//! endpoints answer for the whole batch (there is no per-item answer), so there is no partial
//! outcome.
//!
//! # Mapping (one generation)
//!
//! | Opik | value |
//! |---|---|
//! | trace `id` | UUIDv7, see *Ids* |
//! | trace `name` | `trace.trace_name` (default: the model slug) |
//! | trace `start_time` / `end_time` | `created_at` / + `latency` (else `generation_time`), ISO-8601 UTC, µs |
//! | trace `input` / `output` | `{"messages":[...],"tools":[...]}` (or `prompt` / `input`) / `{"completion","reasoning","tool_calls"?}` when the trace is the generation's own (see *Shared traces*); absent in privacy mode |
//! | trace `metadata` | custom `trace` keys, `openrouter_trace_id` (the trace key), `user_id`, `session_id` |
//! | trace `thread_id` | `session_id` (Opik's threads are sessions) |
//! | trace and span `tags` | `trace.tags` (a string array, or one string) |
//! | trace and span `environment` | `trace.environment` (a string) |
//! | trace `error_info`, span `error_info` | the generation's error: `exception_type` = its code (else `Error`), `message`, `traceback` = the message |
//! | span (only with `trace.span_name`) | `type: "general"`, `name` = `trace.span_name`, parent of the LLM span |
//! | LLM span `type` / `name` | `llm` / `trace.generation_name` (default: the model slug) |
//! | LLM span `parent_span_id` | the `span_name` span, else `trace.parent_span_id` when it is a UUIDv7 (other values only in metadata, `openrouter_parent_span_id`) |
//! | LLM span `model` / `provider` | `model` / `provider_name` |
//! | LLM span `usage` | `prompt_tokens`, `completion_tokens`, `total_tokens`, `cached_tokens`, `cache_write_tokens`, `reasoning_tokens` (32-bit, saturating: Opik stores `Map<String,Integer>`) |
//! | LLM span `total_estimated_cost` | `total_cost` (USD) |
//! | LLM span `ttft` | `time_to_first_token` (ms) |
//! | LLM span `input` / `output` | as the trace's; absent in privacy mode |
//! | LLM span `metadata` | custom `trace` keys; `openrouter_trace_id`, `openrouter_observation_id` (the generation id); `user_id`, `session_id`; `cost` `{total, input?, output?}`; `model_parameters`; `model`, `response_model`, `provider_name`, `api_type`, `finish_reason`, `finish_reasons`, `native_finish_reason`, `streamed`, `cancelled`, `latency_ms`, `generation_time_ms`, `time_to_first_token_ms`, `moderation_latency_ms`, `has_tools`, `tool_call_names`; the enabled metadata groups' fields (`upstream_inference_cost`, `cost_details`, `api_key_name`, `http_referer`, `cost_allocation`, ...) |
//!
//! tracecast's own metadata keys win over custom `trace` keys of the same name.
//!
//! # Ids
//!
//! Opik requires UUIDv7 ids. tracecast derives them so that every retry, restart and replay
//! of a generation produces the same ids (Opik then replaces rather than duplicates), and
//! generations sharing a `trace.trace_id` land in one trace:
//!
//! - the LLM span: time = `created_at` (ms), random bits = SHA-256(`"opik-span"`, generation id);
//! - the trace: if `trace.trace_id` is itself a UUIDv7 it is used as is. Otherwise the random
//!   bits are SHA-256(`"opik-trace"`, trace key) and the time is `created_at` when the trace key
//!   is the generation's own id (no `trace.trace_id`), else the start of `created_at`'s UTC
//!   minute, so that every generation of a shared trace computes the same id without
//!   coordination. Opik lists and partitions traces by the id's time, and the `opik` SDK stamps
//!   an id with its record's start (`opik.id_helpers.generate_id(start_time)`, opik 2.2.122): a
//!   day-start time hid traces from "last hour" views. Generations of one trace starting in
//!   different minutes become separate Opik traces, each with `openrouter_trace_id`;
//! - the `span_name` span: same time rule as the trace, random bits = SHA-256(`"opik-span"`,
//!   trace key, span name), so generations sharing both share the span.
//!
//! # Shared traces
//!
//! Opik's batch insert writes whole trace rows and keeps, per id, the row with the latest
//! `last_updated_at` (comet-ml/opik `TraceDAO` `BATCH_INSERT`, `traces` is a
//! `ReplacingMergeTree(last_updated_at)`). A shared trace's row therefore describes the trace,
//! not the call delivered last: `start_time` is the id's time (never after any call of the
//! trace), `end_time` = `last_updated_at` = the generation's end, so the row of the call that
//! ends last wins whatever the delivery order, and it carries no single call's `input`,
//! `output` or `error_info` (they are on each call's LLM span). Within a batch, records with the
//! same id are sent once: the trace with the latest `last_updated_at`, spans the later
//! generation's.
//!
//! # Limits, truncation, answers
//!
//! At most 1000 items per request (`SpanBatch` `@Size(max=1000)`; the SDK's batchers use 1000)
//! and about 5 MB per request (the SDK's `MAX_BATCH_SIZE_MB`). A generation's `input` or
//! `output` whose JSON exceeds [`MAX_FIELD_BYTES`] is replaced by a marker
//! `{"opik_truncated": true, "truncated": true, "reason": "...", "original_bytes": N}` (the
//! Opik SDK's own truncation flag) and the record's metadata gets `truncated: true` and
//! `truncated_fields`. 204/2xx delivers; 401/403 pause the destination; 429 (with `Retry-After`
//! or Opik cloud's `RateLimit-Reset` seconds), 408 and 5xx retry; other 4xx dead-letter the
//! batch with Opik's message.
//!
//! # Test connection
//!
//! `GET {base}/v1/private/projects?name=<projectName>&size=1` with the same headers: an
//! authenticated, read-only call proving the URL, the API key and access to the workspace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat};
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tracecast_model::DestinationType;
use tracecast_model::trace::TraceView;
use uuid::Uuid;

pub use crate::derived_ids::derived_uuid_v7;

use crate::config::required_str;
use crate::content::{
    call_metadata, cost_json, custom_metadata, error_parts, group_metadata, input_json,
    output_json, truncate_if_over,
};
use crate::http::transport_message;
use crate::{BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, Outcome, Payload};

/// Comet cloud's Opik API base URL.
pub const CLOUD_BASE_URL: &str = "https://www.comet.com/opik/api";
/// The workspace header.
pub const WORKSPACE_HEADER: &str = "comet-workspace";
/// Items per batch request (Opik's `@Size(max = 1000)`).
pub const MAX_ITEMS_PER_REQUEST: usize = 1000;
/// Target size of one batch request (the Opik SDK splits batches at 5 MB).
pub const MAX_REQUEST_BYTES: usize = 5 * 1000 * 1000;
/// Largest `input` or `output` sent as is; bigger ones are replaced by a marker.
pub const MAX_FIELD_BYTES: usize = 2 * 1024 * 1024;
/// Content type of an encoded payload: newline-separated JSON request bodies.
pub const PAYLOAD_CONTENT_TYPE: &str = "application/x-ndjson";

/// Generations of one shared trace starting in the same UTC minute share an Opik trace.
const SHARED_TRACE_WINDOW_MS: u64 = 60_000;
const TRACES_PREFIX: &[u8] = br#"{"traces":"#;
const SPANS_PREFIX: &[u8] = br#"{"spans":"#;

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(OpikExporter::new(config, ctx)?))
}

/// The Opik exporter (see the module docs).
pub struct OpikExporter {
    client: reqwest::Client,
    timeout: Duration,
    traces_url: Url,
    spans_url: Url,
    projects_url: Url,
    headers: HeaderMap,
    workspace: String,
    project_name: String,
}

impl OpikExporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let api_key = required_str(config, "apiKey")?;
        let workspace = required_str(config, "workspace")?;
        let project_name = required_str(config, "projectName")?;
        let base = ctx
            .endpoint_override(DestinationType::Opik)
            .unwrap_or(CLOUD_BASE_URL)
            .trim_end_matches('/')
            .to_owned();
        let url = |path: &str| {
            let s = format!("{base}{path}");
            let u = Url::parse(&s).map_err(|e| {
                ExportError::Config(format!("Opik base URL {base:?} is not a valid URL: {e}"))
            })?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(ExportError::Config(format!(
                    "Opik base URL {base:?} is not an http(s) URL"
                )));
            }
            Ok(u)
        };
        let traces_url = url("/v1/private/traces/batch")?;
        let spans_url = url("/v1/private/spans/batch")?;
        let mut projects_url = url("/v1/private/projects")?;
        projects_url
            .query_pairs_mut()
            .append_pair("name", project_name)
            .append_pair("size", "1");

        let mut headers = crate::config::custom_headers(config)?;
        headers.insert(
            AUTHORIZATION,
            crate::http::secret_value(api_key, "apiKey is not a valid header value")?,
        );
        headers.insert(
            HeaderName::from_static(WORKSPACE_HEADER),
            HeaderValue::from_str(workspace)
                .map_err(|_| ExportError::Config("workspace is not a valid header value".into()))?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(OpikExporter {
            client: ctx.client.clone(),
            timeout: ctx.timeout,
            traces_url,
            spans_url,
            projects_url,
            headers,
            workspace: workspace.to_owned(),
            project_name: project_name.to_owned(),
        })
    }

    /// The URL of the connection test.
    pub fn test_url(&self) -> &Url {
        &self.projects_url
    }

    /// The trace and spans one generation becomes, as JSON values (for tests and tooling).
    pub fn records(&self, view: &TraceView<'_>) -> (Value, Vec<Value>) {
        let (t, spans) = records(view, &self.project_name);
        (
            serde_json::to_value(t).unwrap_or(Value::Null),
            spans
                .into_iter()
                .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                .collect(),
        )
    }

    /// Posts one request body. Opik cloud's 429 carries `RateLimit-Reset` rather than
    /// `Retry-After`; the shared classification reads both.
    async fn post(&self, url: &Url, body: Bytes) -> Outcome {
        crate::http::send(
            &self.client,
            reqwest::Method::POST,
            url.as_str(),
            self.headers.clone(),
            body,
            crate::compression::Compression::None,
            self.timeout,
        )
        .await
    }
}

#[async_trait]
impl Exporter for OpikExporter {
    fn limits(&self) -> BatchLimits {
        // A generation is one trace and one or two spans: 500 generations stay within 1000
        // spans per request; bytes are counted on the raw records.
        BatchLimits {
            max_items: 500,
            max_bytes: 4 * 1024 * 1024,
        }
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        let mut trace_docs: Vec<(Uuid, Vec<u8>)> = Vec::with_capacity(traces.len());
        let mut span_docs: Vec<(Uuid, Vec<u8>)> = Vec::with_capacity(traces.len() * 2);
        let mut trace_at: HashMap<Uuid, usize> = HashMap::new();
        let mut trace_updated: Vec<String> = Vec::with_capacity(traces.len());
        let mut span_at: HashMap<Uuid, usize> = HashMap::new();
        for view in traces {
            let (t, spans) = records(view, &self.project_name);
            let bytes = to_json(&t)?;
            match trace_at.get(&t.id) {
                // As Opik keeps the row with the latest `last_updated_at`.
                Some(&i) if trace_updated[i] <= t.last_updated_at => {
                    trace_docs[i].1 = bytes;
                    trace_updated[i] = t.last_updated_at.clone();
                }
                Some(_) => {}
                None => {
                    trace_updated.push(t.last_updated_at.clone());
                    trace_at.insert(t.id, trace_docs.len());
                    trace_docs.push((t.id, bytes));
                }
            }
            for s in spans {
                let bytes = to_json(&s)?;
                match span_at.get(&s.id) {
                    Some(&i) => span_docs[i].1 = bytes,
                    None => {
                        span_at.insert(s.id, span_docs.len());
                        span_docs.push((s.id, bytes));
                    }
                }
            }
        }
        let mut body = Vec::new();
        write_documents(&mut body, TRACES_PREFIX, &trace_docs);
        write_documents(&mut body, SPANS_PREFIX, &span_docs);
        Ok(Payload {
            body: Bytes::from(body),
            content_type: PAYLOAD_CONTENT_TYPE,
            items: traces.len(),
        })
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        for doc in payload.body.split(|b| *b == b'\n') {
            if doc.is_empty() {
                continue;
            }
            let url = if doc.starts_with(TRACES_PREFIX) {
                &self.traces_url
            } else if doc.starts_with(SPANS_PREFIX) {
                &self.spans_url
            } else {
                return Outcome::Rejected {
                    status: None,
                    error: "not an Opik payload (neither a traces nor a spans batch)".into(),
                };
            };
            match self.post(url, payload.body.slice_ref(doc)).await {
                Outcome::Delivered => {}
                other => return other,
            }
        }
        Outcome::Delivered
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let mut headers = self.headers.clone();
        headers.remove(CONTENT_TYPE);
        let resp = self
            .client
            .get(self.projects_url.clone())
            .headers(headers)
            .timeout(self.timeout)
            .send()
            .await;
        let r = match resp {
            Ok(r) => r,
            Err(e) => {
                return ConnectionCheck::unreachable("Opik", &transport_message(&e));
            }
        };
        let status = r.status().as_u16();
        let body = crate::http::read_capped(r, crate::http::MAX_ANSWER).await;
        read_test_answer(status, &body, &self.workspace, &self.project_name)
    }
}

/// Reads the answer to the connection test.
pub fn read_test_answer(
    status: u16,
    body: &str,
    workspace: &str,
    project: &str,
) -> ConnectionCheck {
    let snippet: String = body.trim().chars().take(300).collect();
    let tail = if snippet.is_empty() {
        String::new()
    } else {
        format!(": {snippet}")
    };
    match status {
        200..=299 => {
            let exists = serde_json::from_str::<Value>(body).ok().and_then(|v| {
                v.get("content")
                    .and_then(Value::as_array)
                    .map(|c| !c.is_empty())
            });
            let project_note = match exists {
                Some(true) => format!("project \"{project}\" exists"),
                Some(false) => {
                    format!(
                        "project \"{project}\" does not exist yet and will be created by the first trace"
                    )
                }
                None => format!("project \"{project}\""),
            };
            ConnectionCheck::passed(
                status,
                format!(
                    "Opik accepted the API key for workspace \"{workspace}\" ({status}); {project_note}"
                ),
            )
        }
        401 => ConnectionCheck::failed(Some(status), "Opik rejected the API key (401)"),
        403 => ConnectionCheck::failed(
            Some(status),
            format!(
                "Opik refused access to workspace \"{workspace}\" with this API key (403){tail}"
            ),
        ),
        404 => ConnectionCheck::failed(
            Some(status),
            format!(
                "Opik answered 404 to the test request: the API base URL must end in /opik/api (cloud) or /api (self-hosted){tail}"
            ),
        ),
        _ => ConnectionCheck::failed(
            Some(status),
            format!("Opik answered {status} to the test request{tail}"),
        ),
    }
}

/// Writes `{"<kind>":[...]}` documents, one per line, each within the item and byte limits.
fn write_documents(out: &mut Vec<u8>, prefix: &[u8], items: &[(Uuid, Vec<u8>)]) {
    let mut open = false;
    let mut count = 0usize;
    let mut size = 0usize;
    for (_, item) in items {
        if open && (count >= MAX_ITEMS_PER_REQUEST || size + item.len() + 1 > MAX_REQUEST_BYTES) {
            out.extend_from_slice(b"]}\n");
            open = false;
        }
        if !open {
            out.extend_from_slice(prefix);
            out.push(b'[');
            open = true;
            count = 0;
            size = prefix.len() + 3;
        } else {
            out.push(b',');
        }
        out.extend_from_slice(item);
        count += 1;
        size += item.len() + 1;
    }
    if open {
        out.extend_from_slice(b"]}\n");
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, ExportError> {
    serde_json::to_vec(v).map_err(|e| ExportError::Encode(format!("Opik JSON: {e}")))
}

// ---- records ----

#[derive(Debug, Serialize)]
struct ErrorInfo {
    exception_type: String,
    message: String,
    traceback: String,
}

/// Opik's `TraceWrite`.
#[derive(Debug, Serialize)]
struct TraceWrite<'a> {
    id: Uuid,
    project_name: &'a str,
    name: &'a str,
    start_time: String,
    end_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_info: Option<ErrorInfo>,
    last_updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<&'a str>,
}

/// Opik's `SpanWrite`.
#[derive(Debug, Serialize)]
struct SpanWrite<'a> {
    id: Uuid,
    project_name: &'a str,
    trace_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<Uuid>,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    start_time: String,
    end_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    usage: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_info: Option<ErrorInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_estimated_cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttft: Option<f64>,
    last_updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<&'a str>,
}

/// `s` as a UUID when it is a UUIDv7.
fn as_uuid_v7(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s.trim())
        .ok()
        .filter(|u| u.get_version_num() == 7)
}

/// The Opik trace id of a generation (see the module docs).
pub fn trace_uuid(view: &TraceView<'_>) -> Uuid {
    let key = view.trace_key();
    if let Some(u) = as_uuid_v7(key) {
        return u;
    }
    derived_uuid_v7(shared_ms(view), &["opik-trace", key])
}

/// The Opik id of the generation's LLM span.
pub fn span_uuid(view: &TraceView<'_>) -> Uuid {
    derived_uuid_v7(start_ms(view), &["opik-span", view.id()])
}

/// The Opik id of the `trace.span_name` span, when there is one.
pub fn intermediate_span_uuid(view: &TraceView<'_>) -> Option<Uuid> {
    let name = span_name(view)?;
    Some(derived_uuid_v7(
        shared_ms(view),
        &["opik-span", view.trace_key(), name],
    ))
}

/// `name` unless it is blank (Opik requires non-blank names), else `fallback`, else `"LLM call"`.
fn non_blank<'a>(name: &'a str, fallback: &'a str) -> &'a str {
    [name, fallback]
        .into_iter()
        .find(|s| !s.trim().is_empty())
        .unwrap_or("LLM call")
}

/// `trace.span_name` unless blank.
fn span_name<'a>(view: &TraceView<'a>) -> Option<&'a str> {
    view.span_name().filter(|s| !s.trim().is_empty())
}

fn start_ms(view: &TraceView<'_>) -> u64 {
    view.start_unix_nanos() / 1_000_000
}

/// Whether the generation shares its trace with others (`trace.trace_id` set and not a UUIDv7
/// taken as is).
fn is_shared_trace(view: &TraceView<'_>) -> bool {
    view.trace_key() != view.id()
}

/// The time of ids shared between generations: the generation's own start when the trace is
/// its own, else the start of its UTC minute (module docs, "Ids").
fn shared_ms(view: &TraceView<'_>) -> u64 {
    let ms = start_ms(view);
    if is_shared_trace(view) {
        ms - ms % SHARED_TRACE_WINDOW_MS
    } else {
        ms
    }
}

fn iso(nanos: u64) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let sub = (nanos % 1_000_000_000) as u32;
    DateTime::from_timestamp(secs, sub)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `trace.tags`: a string array (other elements as their JSON text) or one string.
fn tags(view: &TraceView<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    match view.metadata().find(|(k, _)| *k == "tags").map(|(_, v)| v) {
        Some(Value::String(s)) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
        Some(Value::Array(items)) => {
            for item in items {
                let t = match item {
                    Value::String(s) => s.trim().to_owned(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                if !t.is_empty() && !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        _ => {}
    }
    out
}

/// `trace.environment` when it is a non-empty string.
fn environment<'a>(view: &TraceView<'a>) -> Option<&'a str> {
    view.metadata()
        .find(|(k, _)| *k == "environment")
        .and_then(|(_, v)| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn clamp_i32(v: u64) -> Value {
    json!(v.min(i32::MAX as u64))
}

fn usage(view: &TraceView<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in [
        ("prompt_tokens", view.prompt_tokens()),
        ("completion_tokens", view.completion_tokens()),
        ("total_tokens", view.total_tokens()),
        ("cached_tokens", view.cached_tokens()),
        ("cache_write_tokens", view.cache_write_tokens()),
        ("reasoning_tokens", view.reasoning_tokens()),
    ] {
        if let Some(v) = v {
            m.insert(k.to_owned(), clamp_i32(v));
        }
    }
    m
}

fn error_info(view: &TraceView<'_>) -> Option<ErrorInfo> {
    let (ty, message) = error_parts(view)?;
    let traceback = if message.trim().is_empty() {
        ty.clone()
    } else {
        message.clone()
    };
    Some(ErrorInfo {
        exception_type: ty,
        message,
        traceback,
    })
}

/// Content with Opik's truncation applied; notes truncated fields in `truncated`.
fn content(
    value: Option<Map<String, Value>>,
    field: &'static str,
    truncated: &mut Vec<&'static str>,
) -> Option<Value> {
    let mut v = Value::Object(value?);
    if truncate_if_over(
        &mut v,
        MAX_FIELD_BYTES,
        &[("opik_truncated", Value::Bool(true))],
    ) {
        truncated.push(field);
    }
    Some(v)
}

fn mark_truncated(meta: &mut Map<String, Value>, truncated: &[&'static str]) {
    if !truncated.is_empty() {
        meta.insert("truncated".into(), Value::Bool(true));
        meta.insert("truncated_fields".into(), json!(truncated));
    }
}

fn records<'a>(view: &TraceView<'a>, project: &'a str) -> (TraceWrite<'a>, Vec<SpanWrite<'a>>) {
    let start_ns = view.start_unix_nanos();
    let end_ns = view.end_unix_nanos().max(start_ns);
    let (start, end) = (iso(start_ns), iso(end_ns));
    let trace_id = trace_uuid(view);
    let tags = tags(view);
    let env = environment(view);
    let custom = custom_metadata(view);

    let mut truncated = Vec::new();
    let input = content(input_json(view), "input", &mut truncated);
    let output = content(output_json(view), "output", &mut truncated);

    // Trace metadata: custom keys, then tracecast's (which win).
    let mut trace_meta = custom.clone();
    trace_meta.insert("openrouter_trace_id".into(), json!(view.trace_key()));
    if let Some(u) = view.user() {
        trace_meta.insert("user_id".into(), json!(u));
    }
    if let Some(s) = view.session_id() {
        trace_meta.insert("session_id".into(), json!(s));
    }
    mark_truncated(&mut trace_meta, &truncated);

    // A shared trace's row describes the trace (module docs, "Shared traces"): it starts at
    // the time in its id, and the row of the call that ends last wins.
    let shared = is_shared_trace(view) && as_uuid_v7(view.trace_key()).is_none();
    let trace = TraceWrite {
        id: trace_id,
        project_name: project,
        name: non_blank(view.trace_name(), view.model()),
        start_time: if shared {
            iso(shared_ms(view) * 1_000_000)
        } else {
            start.clone()
        },
        end_time: end.clone(),
        input: input.clone().filter(|_| !shared),
        output: output.clone().filter(|_| !shared),
        metadata: trace_meta,
        tags: tags.clone(),
        error_info: error_info(view).filter(|_| !shared),
        last_updated_at: end.clone(),
        thread_id: view.session_id().filter(|s| !s.trim().is_empty()),
        environment: env,
    };

    let mut spans = Vec::with_capacity(2);
    let given_parent = view.parent_span_id();
    let given_parent_uuid = given_parent.and_then(as_uuid_v7);
    let mut llm_parent = given_parent_uuid;
    if let Some(id) = intermediate_span_uuid(view) {
        let mut meta = custom.clone();
        meta.insert("openrouter_trace_id".into(), json!(view.trace_key()));
        if let Some(p) = given_parent.filter(|_| given_parent_uuid.is_none()) {
            meta.insert("openrouter_parent_span_id".into(), json!(p));
        }
        spans.push(SpanWrite {
            id,
            project_name: project,
            trace_id,
            parent_span_id: given_parent_uuid,
            name: span_name(view).unwrap_or_default(),
            kind: "general",
            start_time: start.clone(),
            end_time: end.clone(),
            input: None,
            output: None,
            metadata: meta,
            model: None,
            provider: None,
            tags: tags.clone(),
            usage: Map::new(),
            error_info: error_info(view),
            total_estimated_cost: None,
            ttft: None,
            last_updated_at: end.clone(),
            environment: env,
        });
        llm_parent = Some(id);
    }

    let mut meta = custom;
    meta.extend(call_metadata(view));
    meta.extend(group_metadata(view));
    meta.insert("openrouter_trace_id".into(), json!(view.trace_key()));
    meta.insert("openrouter_observation_id".into(), json!(view.id()));
    if let Some(p) = given_parent.filter(|_| given_parent_uuid.is_none() && spans.is_empty()) {
        meta.insert("openrouter_parent_span_id".into(), json!(p));
    }
    if let Some(u) = view.user() {
        meta.insert("user_id".into(), json!(u));
    }
    if let Some(s) = view.session_id() {
        meta.insert("session_id".into(), json!(s));
    }
    if let Some(c) = cost_json(view) {
        meta.insert("cost".into(), Value::Object(c));
    }
    let params = view.model_parameters();
    if !params.is_empty() {
        meta.insert("model_parameters".into(), Value::Object(params));
    }
    mark_truncated(&mut meta, &truncated);

    spans.push(SpanWrite {
        id: span_uuid(view),
        project_name: project,
        trace_id,
        parent_span_id: llm_parent,
        name: non_blank(view.generation_name(), view.model()),
        kind: "llm",
        start_time: start,
        end_time: end.clone(),
        input,
        output,
        metadata: meta,
        model: Some(view.model()),
        provider: view.provider().filter(|p| !p.trim().is_empty()),
        tags,
        usage: usage(view),
        error_info: error_info(view),
        total_estimated_cost: view.total_cost().filter(|c| c.is_finite() && *c >= 0.0),
        ttft: view
            .time_to_first_token_ms()
            .filter(|t| t.is_finite() && *t >= 0.0),
        last_updated_at: end,
        environment: env,
    });
    (trace, spans)
}
