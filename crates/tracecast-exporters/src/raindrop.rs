//! `raindrop`: one Raindrop AI event per generation, sent to Raindrop's HTTP API.
//!
//! Sources: Raindrop's HTTP API page (<https://www.raindrop.ai/docs/sdk/http-api>: `POST
//! https://api.raindrop.ai/v1/events/track`, `Authorization: Bearer <write key>`, the body an
//! array of events) and its Python SDK `raindrop-ai` 0.0.75 on PyPI (`raindrop/models.py`:
//! `TrackAIEvent` and `AIData`, `extra="forbid"`; `raindrop/analytics.py`: 10 events per
//! request, events over 1 MB dropped, `ai_data` sent without its null fields); OpenRouter's
//! Raindrop guide (`broadcast/raindrop.mdx`) for the mapping. `tests/vendors/test_raindrop.py`
//! loads our events with the SDK's own models.
//!
//! Request: `POST {baseUrl}/v1/events/track` with `Authorization: Bearer <writeKey>`,
//! `Content-Type: application/json` and the destination's custom headers; body `[event, ...]`:
//!
//! | event field | value |
//! |---|---|
//! | `event_id` | the generation id |
//! | `user_id` | `user`, else `anonymous` (Raindrop requires one) |
//! | `event` | `openrouter_generation` |
//! | `timestamp` | `created_at` (ISO 8601, UTC) |
//! | `ai_data.model` | `model` |
//! | `ai_data.input` | the text of the latest user message (else the prompt / input) |
//! | `ai_data.output` | the completion text |
//! | `ai_data.convo_id` | `session_id` |
//! | `properties` | every custom `trace` key as is (`trace_id`, `trace_name` included; nulls skipped), then `trace_id` (the trace key), `trace_name`, `model`, `provider`, `total_cost`, `prompt_tokens`, `completion_tokens`, `total_tokens`, `duration_ms`, `finish_reason`, `generation_id`, and `error` when the call failed |
//!
//! Privacy mode (or a generation with neither input nor output text) sends the event without
//! `ai_data` (Raindrop's SDK refuses an `ai_data` with neither input nor output); `model` is in
//! `properties` and the session goes to the `convo_id` property. Input and output longer than
//! [`MAX_TEXT_BYTES`] are cut, with [`TRUNCATION_MARKER`] appended, so an event stays under
//! Raindrop's 1 MB.
//!
//! Test connection: an empty batch (`[]`) to the same endpoint: `2xx` (or `400`/`422`, a
//! refusal of the empty batch after the key was accepted) passes; `401`/`403` names the write
//! key.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value, json};
use tracecast_model::trace::TraceView;

use crate::config::{optional_str, required_str};
use crate::content::content_text;
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, Outcome, Payload, http,
};

/// Raindrop's SDK sends 10 events per request; an event may be up to 1 MB.
pub const LIMITS: BatchLimits = BatchLimits {
    max_items: 10,
    max_bytes: 4 * 1024 * 1024,
};

/// Input and output text are cut to this many bytes.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Appended to cut text.
pub const TRUNCATION_MARKER: &str = "...[truncated by tracecast]";
/// The `event` name of every generation.
pub const EVENT_NAME: &str = "openrouter_generation";
/// The `user_id` of a generation without `user`.
pub const ANONYMOUS_USER: &str = "anonymous";

const DEFAULT_BASE_URL: &str = "https://api.raindrop.ai";
const PLATFORM: &str = "Raindrop";

pub struct RaindropExporter {
    client: reqwest::Client,
    timeout: Duration,
    url: String,
    headers: HeaderMap,
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(RaindropExporter::new(config, ctx)?))
}

fn cut(s: String) -> String {
    if s.len() <= MAX_TEXT_BYTES {
        s
    } else {
        crate::truncate::cut_with_marker(&s, MAX_TEXT_BYTES, TRUNCATION_MARKER)
    }
}

/// The latest user message's text (else the prompt, else the Responses API `input`).
fn input_text(view: &TraceView<'_>) -> Option<String> {
    let i = view.input()?;
    let from_items = |items: &Value| -> Option<String> {
        match items {
            Value::String(s) => Some(s.clone()),
            Value::Array(list) => list
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .map(|m| content_text(m.get("content").unwrap_or(&Value::Null))),
            _ => None,
        }
    };
    let text = i
        .messages
        .and_then(from_items)
        .or_else(|| match i.prompt {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(a)) => a.iter().rev().find_map(Value::as_str).map(str::to_string),
            _ => None,
        })
        .or_else(|| i.input.and_then(from_items))?;
    (!text.is_empty()).then(|| cut(text))
}

fn output_text(view: &TraceView<'_>) -> Option<String> {
    let o = view.output()?;
    (!o.completion.is_empty()).then(|| cut(o.completion))
}

/// The event of one generation.
pub fn event(view: &TraceView<'_>) -> Value {
    let mut props = Map::new();
    for (k, v) in view.metadata() {
        if !v.is_null() {
            props.insert(k.to_string(), v.clone());
        }
    }
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            props.insert(k.to_string(), v);
        }
    };
    put("trace_id", json!(view.trace_key()));
    put("trace_name", json!(view.trace_name()));
    put("model", json!(view.model()));
    put("provider", json!(view.provider()));
    put(
        "total_cost",
        json!(view.total_cost().filter(|c| c.is_finite())),
    );
    put("prompt_tokens", json!(view.prompt_tokens()));
    put("completion_tokens", json!(view.completion_tokens()));
    put("total_tokens", json!(view.total_tokens()));
    put(
        "duration_ms",
        json!(view.duration_ms().filter(|d| d.is_finite())),
    );
    put("finish_reason", json!(view.finish_reason()));
    put("generation_id", json!(view.id()));
    if let Some(e) = view.error() {
        put("error", json!(e.message));
    }

    let user = view
        .user()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or(ANONYMOUS_USER);
    let mut ev = json!({
        "event_id": view.id(),
        "user_id": user,
        "event": EVENT_NAME,
        "timestamp": timestamp(view.start_unix_nanos()),
    });
    let (input, output) = (input_text(view), output_text(view));
    if input.is_some() || output.is_some() {
        let mut ai = Map::new();
        ai.insert("model".into(), json!(view.model()));
        if let Some(i) = input {
            ai.insert("input".into(), Value::String(i));
        }
        if let Some(o) = output {
            ai.insert("output".into(), Value::String(o));
        }
        if let Some(s) = view.session_id() {
            ai.insert("convo_id".into(), json!(s));
        }
        ev["ai_data"] = Value::Object(ai);
    } else if let Some(s) = view.session_id() {
        props.insert("convo_id".into(), json!(s));
    }
    ev["properties"] = Value::Object(props);
    ev
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for ns since the epoch.
fn timestamp(unix_nanos: u64) -> String {
    let secs = (unix_nanos / 1_000_000_000) as i64;
    let nanos = (unix_nanos % 1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl RaindropExporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let key = required_str(config, "writeKey")?;
        let base = optional_str(config, "baseUrl")
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/');
        let url = format!("{base}/v1/events/track");
        Url::parse(&url).map_err(|e| ExportError::Config(format!("baseUrl: {e}")))?;
        let mut headers = crate::config::custom_headers(config)?;
        headers.insert(
            AUTHORIZATION,
            http::secret_value(
                &http::bearer_auth(key),
                "writeKey: not a valid header value",
            )?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(RaindropExporter {
            client: ctx.client.clone(),
            timeout: ctx.timeout,
            url,
            headers,
        })
    }

    async fn post(&self, body: Bytes) -> Result<http::Answer, Outcome> {
        let req = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .timeout(self.timeout);
        http::fetch(req, http::MAX_ANSWER).await
    }
}

#[async_trait]
impl Exporter for RaindropExporter {
    fn limits(&self) -> BatchLimits {
        LIMITS
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        let events: Vec<Value> = traces.iter().map(event).collect();
        let body = serde_json::to_vec(&events).map_err(|e| ExportError::Encode(e.to_string()))?;
        Ok(Payload {
            body: Bytes::from(body),
            content_type: "application/json",
            items: traces.len(),
        })
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        match self.post(payload.body.clone()).await {
            Ok(a) => http::classify(a.status, &a.headers, &a.body),
            Err(o) => o,
        }
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let a = match self.post(Bytes::from_static(b"[]")).await {
            Ok(a) => a,
            Err(Outcome::Retry { error, .. }) => {
                return ConnectionCheck::unreachable(PLATFORM, &error);
            }
            Err(o) => return ConnectionCheck::failed(None, format!("{o:?}")),
        };
        let status = a.status.as_u16();
        let body = crate::truncate::prefix(a.body.trim(), 512);
        match a.status {
            s if s.is_success() => ConnectionCheck::passed(
                status,
                format!("Raindrop accepted the write key ({status})"),
            ),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ConnectionCheck::passed(
                status,
                format!(
                    "Raindrop accepted the write key (it answered {status} to the empty test batch)"
                ),
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectionCheck::failed(
                Some(status),
                format!("Raindrop rejected the write key ({status}): {body}"),
            ),
            _ => ConnectionCheck::failed(
                Some(status),
                format!("Raindrop answered {status} at {}: {body}", self.url),
            ),
        }
    }
}
