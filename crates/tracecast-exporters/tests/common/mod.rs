//! Test helpers: sample generations, a real HTTP receiver on 127.0.0.1:0, and readers for the
//! OTLP messages it receives (decoded with opentelemetry-proto's own serde types).

#![allow(dead_code)]

pub mod big_receiver;
pub mod golden;
pub mod outcomes;
pub mod setup;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracecast_exporters::otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecast_exporters::otlp::proto::common::v1::KeyValue;
use tracecast_exporters::otlp::proto::common::v1::any_value::Value as Any;
use tracecast_exporters::otlp::proto::trace::v1::Span;
use tracecast_model::generation::{Generation, IngestContext};

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn generation(v: Value) -> Generation {
    Generation::from_json(v, &IngestContext::default()).expect("valid sample generation")
}

/// The representative generation of the golden file: every field the encoder reads.
pub fn full_record() -> Value {
    serde_json::from_str(FULL_RECORD).expect("valid JSON")
}

const FULL_RECORD: &str = r#"{
    "id": "gen-1767225600-AbCdEfGhIjKlMnOpQrSt",
    "model": "openai/gpt-4o",
    "created_at": "2026-01-01T13:37:42.250Z",
    "provider_name": "OpenAI",
    "api_type": "completions",
    "streamed": true,
    "cancelled": false,
    "finish_reason": "tool_calls",
    "native_finish_reason": "tool_calls",
    "latency": 1523.5,
    "generation_time": 1400.0,
    "moderation_latency": 12.0,
    "time_to_first_token": 310.25,
    "total_cost": 0.00123,
    "upstream_inference_cost": 0.0011,
    "cache_discount": 0.0001,
    "is_byok": false,
    "user": "user_12345",
    "session_id": "session_abc",
    "external_user": "ext-42",
    "api_key_hash": "f01d52606dc8f0a8303a7b5cc3fa07109c2e346cec7c0a16b40de462992ce943",
    "trace": {
        "trace_id": "order_processing_001",
        "trace_name": "Order Processing Pipeline",
        "span_name": "Extraction",
        "generation_name": "Extract Order Details",
        "parent_span_id": "00f067aa0ba902b7",
        "order_id": "ORD-12345",
        "priority": "high",
        "attempt": 2,
        "score": 0.75,
        "vip": true,
        "labels": ["a", "b"],
        "customer": {"tier": "gold"},
        "nothing": null
    },
    "request": {
        "model": "openai/gpt-4o",
        "messages": [
            {"role": "system", "content": "You extract orders."},
            {"role": "user", "content": "Process this order: 2 widgets"}
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "top_p": 0.9,
        "seed": 7,
        "n": 1,
        "stop": "END",
        "tools": [{"type": "function", "function": {"name": "lookup_sku", "parameters": {"type": "object"}}}]
    },
    "response": {
        "id": "chatcmpl-abc",
        "model": "openai/gpt-4o-2024-08-06",
        "choices": [{
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "Looking up the SKU.",
                "reasoning": "Need the SKU first.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup_sku", "arguments": "{\"name\":\"widget\"}"}}]
            }
        }]
    },
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 4, "audio_tokens": 1},
        "completion_tokens_details": {"reasoning_tokens": 8, "audio_tokens": 2, "image_tokens": 3},
        "cost_details": {"prompt_cost": 0.00083, "completion_cost": 0.0004}
    },
    "http_referer": "https://shop.example",
    "x_title": "Shop",
    "user_agent": "shop/1.0",
    "origin": "https://shop.example",
    "request_id": "req-1",
    "upstream_id": "up-1",
    "router": "default",
    "preset_id": "preset-1",
    "data_region": "europe"
}"#;

/// A small generation whose content is full of `SECRET` markers.
pub fn secret_record() -> Value {
    json!({
        "id": "gen-secret",
        "model": "anthropic/claude-sonnet-4",
        "created_at": "2026-01-01T00:00:00Z",
        "provider_name": "Anthropic",
        "latency": 100.0,
        "request": {
            "messages": [{"role": "user", "content": "SECRET-PROMPT"}],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "SECRET-TOOLDOC"}}],
            "temperature": 0.5
        },
        "response": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "SECRET-ANSWER", "reasoning": "SECRET-THOUGHT", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"SECRET-ARG\"}"}}]}}]},
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        "total_cost": 0.5,
        "user": "u-1",
        "session_id": "s-1",
        "trace": {"env": "prod"}
    })
}

// ---- reading OTLP messages ----

pub fn decode(body: &[u8]) -> ExportTraceServiceRequest {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "not an OTLP/JSON ExportTraceServiceRequest: {e}\n{}",
            String::from_utf8_lossy(body)
        )
    })
}

pub fn spans(req: &ExportTraceServiceRequest) -> Vec<&Span> {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect()
}

pub fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    let mut hits = attrs.iter().filter(|kv| kv.key == key);
    let hit = hits.next()?;
    assert!(hits.next().is_none(), "attribute {key} is repeated");
    hit.value.as_ref()?.value.as_ref()
}

pub fn has(attrs: &[KeyValue], key: &str) -> bool {
    find(attrs, key).is_some()
}

pub fn s<'a>(attrs: &'a [KeyValue], key: &str) -> &'a str {
    match find(attrs, key) {
        Some(Any::StringValue(v)) => v,
        other => panic!("{key}: expected a stringValue, got {other:?}"),
    }
}

pub fn i(attrs: &[KeyValue], key: &str) -> i64 {
    match find(attrs, key) {
        Some(Any::IntValue(v)) => *v,
        other => panic!("{key}: expected an intValue, got {other:?}"),
    }
}

pub fn d(attrs: &[KeyValue], key: &str) -> f64 {
    match find(attrs, key) {
        Some(Any::DoubleValue(v)) => *v,
        other => panic!("{key}: expected a doubleValue, got {other:?}"),
    }
}

pub fn b(attrs: &[KeyValue], key: &str) -> bool {
    match find(attrs, key) {
        Some(Any::BoolValue(v)) => *v,
        other => panic!("{key}: expected a boolValue, got {other:?}"),
    }
}

pub fn strings(attrs: &[KeyValue], key: &str) -> Vec<String> {
    match find(attrs, key) {
        Some(Any::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| match &v.value {
                Some(Any::StringValue(s)) => s.clone(),
                other => panic!("{key}: expected strings, got {other:?}"),
            })
            .collect(),
        other => panic!("{key}: expected an arrayValue, got {other:?}"),
    }
}

// ---- a real HTTP receiver ----

/// One request as the receiver saw it. A gzipped body (`Content-Encoding: gzip`) is inflated,
/// as a real receiver does; `wire_len` is its size as sent.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub wire_len: usize,
}

/// `body` inflated when `headers` say it is gzipped (panics on a bad gzip body: the exporter
/// sent something no receiver could read).
pub fn inflate(headers: &HeaderMap, body: Bytes) -> Bytes {
    use std::io::Read;
    match headers.get("content-encoding").map(|v| v.as_bytes()) {
        None => body,
        Some(b"gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .expect("a valid gzip body");
            out.into()
        }
        Some(other) => panic!(
            "unexpected Content-Encoding {:?}",
            String::from_utf8_lossy(other)
        ),
    }
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The answer the receiver gives to the next request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_string();
        self
    }
}

#[derive(Clone)]
struct Shared {
    tx: mpsc::UnboundedSender<Captured>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
}

/// An HTTP server on 127.0.0.1:0 that records every request and answers with the queued
/// replies (200 `{}` when none is queued).
pub struct Receiver {
    pub addr: SocketAddr,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Captured>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let wire_len = body.len();
    let body = inflate(&headers, body);
    let _ = shared.tx.send(Captured {
        method,
        path: uri.path().to_string(),
        headers,
        body,
        wire_len,
    });
    let reply = shared
        .replies
        .lock()
        .expect("replies lock")
        .pop_front()
        .unwrap_or_else(|| Reply::status(200).body("{}"));
    let mut resp = (
        StatusCode::from_u16(reply.status).expect("valid status"),
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        resp.headers_mut()
            .insert(name, value.parse().expect("valid header value"));
    }
    resp
}

impl Receiver {
    pub async fn start() -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let replies = Arc::new(Mutex::new(VecDeque::new()));
        let shared = Shared {
            tx,
            replies: replies.clone(),
        };
        let app = Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            rx: tokio::sync::Mutex::new(rx),
            replies,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Queues the answer to a coming request.
    pub fn reply(&self, reply: Reply) {
        self.replies.lock().expect("replies lock").push_back(reply);
    }

    /// The next recorded request, waiting at most [`DEADLINE`].
    pub async fn next(&self) -> Captured {
        let mut rx = self.rx.lock().await;
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("no request reached the receiver before the deadline")
            .expect("receiver stopped")
    }

    /// Whether another request is already recorded (without waiting).
    pub async fn try_next(&self) -> Option<Captured> {
        self.rx.lock().await.try_recv().ok()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address on which nothing listens (connections are refused).
pub async fn refused_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}/v1/traces")
}
