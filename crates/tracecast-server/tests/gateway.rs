//! The capturing gateway end to end: the real server forwarding to a fake OpenAI-compatible
//! upstream in this process, and a webhook destination receiving each captured generation.
//!
//! The fake upstream follows the OpenAI API reference ("Create chat completion", "The chat
//! completion object", "The chat completion chunk object", "Error codes", "Rate limits" headers):
//! a whole `chat.completion`, an SSE stream of `chat.completion.chunk` events ending with
//! `data: [DONE]` (with a usage-only chunk when `stream_options.include_usage` is set), and a 429
//! with OpenAI's error body and `x-ratelimit-*` headers.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::TestServer;
use common::e2e::{create, fast, wait_for};
use common::receiver::{Receiver, double_attr, int_attr, string_attr};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Value, json};
use tracecast_server::gateway::upstream::UpstreamSettings;

const UPSTREAM_KEY: &str = "sk-upstream-test-credential-1234";
const COMPLETIONS: &str = "/api/v1/chat/completions";

#[derive(Clone, Default)]
struct Fake {
    /// Every request: headers and JSON body.
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    /// The raw body of every chat completions request.
    bodies: Arc<Mutex<Vec<Bytes>>>,
    /// Opened when the test has seen the first streamed chunk (`fake/held`).
    release: Arc<tokio::sync::Notify>,
    /// Set once a `fake/held` stream has sent its last event.
    held_finished: Arc<AtomicBool>,
    /// Set when a `fake/endless` stream is dropped (its client connection closed).
    endless_dropped: Arc<AtomicBool>,
}

/// The whole answer of the fake upstream (`fake/ok`).
fn completion() -> Value {
    json!({
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": 1_765_000_000,
        "model": "gpt-fake-2025-01-01",
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Paris is the capital.", "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27,
            "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
            "cost": 0.000123
        }
    })
}

fn chunk(delta: Value, finish: Value, usage: bool) -> String {
    let mut c = json!({
        "id": "chatcmpl-fake-2", "object": "chat.completion.chunk", "created": 1_765_000_000,
        "model": "gpt-fake-2025-01-01",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    });
    if usage {
        c["usage"] = Value::Null;
    }
    format!("data: {c}\n\n")
}

fn usage_chunk() -> String {
    let c = json!({
        "id": "chatcmpl-fake-2", "object": "chat.completion.chunk", "created": 1_765_000_000,
        "model": "gpt-fake-2025-01-01", "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14,
                  "prompt_tokens_details": {"cached_tokens": 4},
                  "completion_tokens_details": {"reasoning_tokens": 1}}
    });
    format!("data: {c}\n\n")
}

fn sse(stream: impl futures_util::Stream<Item = String> + Send + 'static) -> Response {
    use futures_util::StreamExt;
    let mut r =
        Body::from_stream(stream.map(|s| Ok::<_, std::io::Error>(Bytes::from(s)))).into_response();
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r.headers_mut()
        .insert("x-request-id", "req_fake_stream".parse().unwrap());
    r
}

/// Sets a flag when dropped.
struct OnDrop(Arc<AtomicBool>);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn fake_handler(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    f.bodies.lock().unwrap().push(body.clone());
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    f.requests.lock().unwrap().push((headers, v.clone()));
    let model = v["model"].as_str().unwrap_or_default().to_string();
    let stream = v["stream"] == true;
    let usage = v["stream_options"]["include_usage"] == true;
    match model.as_str() {
        "rate-limited" => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            )
                .into_response();
            let h = r.headers_mut();
            h.insert("content-type", "application/json".parse().unwrap());
            h.insert("x-request-id", "req_fake_429".parse().unwrap());
            h.insert("retry-after", "7".parse().unwrap());
            h.insert("x-ratelimit-limit-requests", "60".parse().unwrap());
            h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
            h.insert("x-ratelimit-reset-requests", "7s".parse().unwrap());
            r
        }
        // Priced by the table: no `usage.cost` in the answer.
        "gpt-4o" => {
            let mut c = completion();
            c["usage"].as_object_mut().unwrap().remove("cost");
            (StatusCode::OK, [("content-type", "application/json")], c.to_string()).into_response()
        }
        "ok" if !stream => {
            let mut r = (StatusCode::OK, completion().to_string()).into_response();
            let h = r.headers_mut();
            h.insert("content-type", "application/json".parse().unwrap());
            h.insert("x-request-id", "req_fake_ok".parse().unwrap());
            h.insert("x-ratelimit-remaining-tokens", "149984".parse().unwrap());
            h.insert("openai-processing-ms", "42".parse().unwrap());
            r
        }
        // Never answers (until the client gives up).
        "silent" => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        "held" => {
            let f2 = f.clone();
            sse(async_stream(move |tx| async move {
                let _ = tx.send(chunk(json!({"role": "assistant", "content": ""}), Value::Null, usage));
                let _ = tx.send(chunk(json!({"content": "Hel"}), Value::Null, usage));
                // The rest waits until the test has seen the first chunk.
                f2.release.notified().await;
                let _ = tx.send(chunk(json!({"content": "lo"}), Value::Null, usage));
                let _ = tx.send(chunk(json!({}), json!("stop"), usage));
                if usage {
                    let _ = tx.send(usage_chunk());
                }
                let _ = tx.send("data: [DONE]\n\n".into());
                f2.held_finished.store(true, Ordering::SeqCst);
            }))
        }
        "tools" => sse(async_stream(move |tx| async move {
            let call = |args: &str, first: bool| {
                let mut tc = json!({"index": 0, "function": {"arguments": args}});
                if first {
                    tc = json!({"index": 0, "id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": ""}});
                }
                chunk(json!({"tool_calls": [tc]}), Value::Null, usage)
            };
            let _ = tx.send(chunk(json!({"role": "assistant", "content": null}), Value::Null, usage));
            let _ = tx.send(call("", true));
            let _ = tx.send(call("{\"city\":", false));
            let _ = tx.send(call("\"Paris\"}", false));
            let _ = tx.send(chunk(json!({}), json!("tool_calls"), usage));
            if usage {
                let _ = tx.send(usage_chunk());
            }
            let _ = tx.send("data: [DONE]\n\n".into());
        })),
        "endless" => {
            let flag = OnDrop(f.endless_dropped.clone());
            sse(async_stream(move |tx| async move {
                let _flag = flag;
                for i in 0..3000 {
                    if tx.send(chunk(json!({"content": format!("t{i} ")}), Value::Null, usage)).is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }))
        }
        other => (
            StatusCode::NOT_FOUND,
            format!(r#"{{"error":{{"message":"The model `{other}` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}}}"#),
        )
            .into_response(),
    }
}

fn embeddings_answer() -> Value {
    json!({
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.125, -0.5, 0.25]},
            {"object": "embedding", "index": 1, "embedding": [0.5, 0.75, -0.125]}
        ],
        "model": "text-embedding-fake",
        "usage": {"prompt_tokens": 4, "total_tokens": 4}
    })
}

fn models_answer() -> Value {
    json!({"object": "list", "data": [{"id": "gpt-fake", "object": "model", "created": 1_700_000_000, "owned_by": "fake"}]})
}

async fn fake_embeddings(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    f.requests.lock().unwrap().push((headers, v));
    let mut r = (StatusCode::OK, embeddings_answer().to_string()).into_response();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn fake_models(State(f): State<Fake>, headers: HeaderMap) -> Response {
    f.requests.lock().unwrap().push((headers, Value::Null));
    let mut r = (StatusCode::OK, models_answer().to_string()).into_response();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// Legacy completions, streamed (`text_completion` chunks with `choices[].text`).
async fn fake_completions(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    f.requests.lock().unwrap().push((headers, v.clone()));
    let usage = v["stream_options"]["include_usage"] == true;
    let text_chunk = |text: &str, finish: Value| {
        let c = json!({"id": "cmpl-fake", "object": "text_completion", "created": 1_765_000_000, "model": "gpt-fake-instruct",
                       "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut events = vec![
        text_chunk("Once upon", Value::Null),
        text_chunk(" a time", json!("length")),
    ];
    if usage {
        let u = json!({"id": "cmpl-fake", "object": "text_completion", "created": 1_765_000_000, "model": "gpt-fake-instruct",
                       "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}});
        events.push(format!("data: {u}\n\n"));
    }
    events.push("data: [DONE]\n\n".into());
    sse(futures_util::stream::iter(events))
}

/// The Responses API, streamed (typed events; `response.completed` carries the whole response).
async fn fake_responses(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    f.requests.lock().unwrap().push((headers, v));
    let done = json!({
        "id": "resp_fake", "object": "response", "created_at": 1_765_000_000, "status": "completed",
        "model": "gpt-fake-2025-01-01",
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}]}],
        "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 2},
                  "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 14}
    });
    let ev = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
    let events = vec![
        ev(
            "response.created",
            json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_fake", "object": "response", "status": "in_progress", "output": []}}),
        ),
        ev(
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "sequence_number": 1,
            "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Bon"}),
        ),
        ev(
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "sequence_number": 2,
            "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "jour"}),
        ),
        ev(
            "response.completed",
            json!({"type": "response.completed", "sequence_number": 3, "response": done}),
        ),
    ];
    sse(futures_util::stream::iter(events))
}

/// A stream fed by `f` through a channel; the producer ends (its sends fail) once the stream
/// is dropped, and whatever it owns is dropped with it.
fn async_stream<F, Fut>(f: F) -> impl futures_util::Stream<Item = String> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(f(tx));
    let abort = AbortOnDrop(task);
    futures_util::stream::unfold((rx, abort), |(mut rx, a)| async move {
        rx.recv().await.map(|s| (s, (rx, a)))
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Fake {
    async fn start() -> (Fake, String) {
        let f = Fake::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(fake_handler))
            .route("/v1/completions", axum::routing::post(fake_completions))
            .route("/v1/responses", axum::routing::post(fake_responses))
            .route("/v1/embeddings", axum::routing::post(fake_embeddings))
            .route("/v1/models", axum::routing::get(fake_models))
            .with_state(f.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (f, format!("http://{addr}/v1"))
    }

    fn last(&self) -> (HeaderMap, Value) {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

struct Setup {
    s: TestServer,
    fake: Fake,
    fake_url: String,
    hook: Receiver,
    key: String,
    hash: String,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(extra: impl FnOnce(&mut tracecast_server::settings::Settings)) -> Setup {
    let (fake, url) = Fake::start().await;
    let s = TestServer::start_with(|st| {
        fast(st);
        st.gateway.upstreams = vec![UpstreamSettings {
            name: "fake".into(),
            base_url: url.clone(),
            api_key: Some(UPSTREAM_KEY.into()),
            models: vec!["fake/*".into()],
            default: false,
            kind: None,
            provider_name: Some("FakeAI".into()),
        }];
        extra(st);
    })
    .await;
    let hook = Receiver::start().await;
    create(
        &s,
        "webhook",
        "hook",
        json!({"url": hook.url}),
        json!({"broadcast_generation_identity": true, "broadcast_generation_request_context": true, "broadcast_generation_cost": true}),
    )
    .await;
    let (key, hash) = s.workspace_key(None).await;
    Setup {
        s,
        fake,
        fake_url: url,
        hook,
        key,
        hash,
    }
}

impl Setup {
    fn fake_base(&self) -> String {
        self.fake_url.trim_end_matches("/v1").to_string()
    }

    fn call(&self, body: Value) -> reqwest::RequestBuilder {
        self.s
            .http
            .post(format!("{}{COMPLETIONS}", self.s.base))
            .bearer_auth(&self.key)
            .json(&body)
    }

    /// The span of generation `id`, once the webhook has it.
    async fn span(&self, id: &str) -> Span {
        self.hook
            .wait(10, &format!("the span of {id}"), |r| {
                r.generation_ids().iter().any(|g| g == id)
            })
            .await;
        self.hook
            .spans()
            .into_iter()
            .find(|s| string_attr(s, "gen_ai.response.id").as_deref() == Some(id))
            .unwrap()
    }
}

fn gen_id(r: &reqwest::Response) -> String {
    r.headers()["x-tracecast-generation-id"]
        .to_str()
        .unwrap()
        .to_string()
}

fn bool_attr(span: &Span, key: &str) -> Option<bool> {
    match common::receiver::attr(span, key)? {
        opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(b) => Some(*b),
        _ => None,
    }
}

/// Reads the next chunk of a streamed answer, with a deadline.
async fn next(r: &mut reqwest::Response) -> Option<Bytes> {
    tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("a chunk within 10 s")
        .unwrap()
}

#[tokio::test]
async fn whole_answer_is_forwarded_unchanged_and_captured() {
    let t = setup().await;
    let r = t
        .call(json!({
            "model": "fake/ok",
            "messages": [{"role": "user", "content": "Capital of France?"}],
            "temperature": 0.1,
            "user": "user-42",
            "session_id": "sess-7",
            "trace": {"trace_id": "trace-7", "generation_name": "Capital"},
            "provider": {"order": ["x"]},
            "some_future_field": {"nested": [1, 2]}
        }))
        .header("x-title", "Gateway Test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = gen_id(&r);
    assert_eq!(r.headers()["x-request-id"], "req_fake_ok");
    assert_eq!(r.headers()["x-ratelimit-remaining-tokens"], "149984");
    assert_eq!(r.headers()["openai-processing-ms"], "42");
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), completion().to_string());

    // What the upstream received: its model name, its key, unknown fields untouched,
    // OpenRouter-only fields removed.
    let (h, body) = t.fake.last();
    assert_eq!(h["authorization"], format!("Bearer {UPSTREAM_KEY}"));
    assert_eq!(h["x-title"], "Gateway Test");
    assert_eq!(body["model"], "ok");
    assert_eq!(body["some_future_field"], json!({"nested": [1, 2]}));
    assert_eq!(body["user"], "user-42");
    for k in ["session_id", "trace", "provider"] {
        assert!(body.get(k).is_none(), "{k} forwarded: {body}");
    }
    assert!(body.get("stream_options").is_none());

    let span = t.span(&id).await;
    assert_eq!(
        string_attr(&span, "gen_ai.request.model").as_deref(),
        Some("fake/ok")
    );
    assert_eq!(
        string_attr(&span, "gen_ai.response.model").as_deref(),
        Some("gpt-fake-2025-01-01")
    );
    assert_eq!(
        string_attr(&span, "openrouter.provider_name").as_deref(),
        Some("FakeAI")
    );
    assert_eq!(
        string_attr(&span, "openrouter.api_key_hash").as_deref(),
        Some(t.hash.as_str())
    );
    assert_eq!(
        string_attr(&span, "openrouter.api_key_name").as_deref(),
        Some("app")
    );
    assert_eq!(int_attr(&span, "gen_ai.usage.input_tokens"), Some(21));
    assert_eq!(int_attr(&span, "gen_ai.usage.output_tokens"), Some(6));
    assert_eq!(int_attr(&span, "gen_ai.usage.input_tokens.cached"), Some(8));
    assert_eq!(
        int_attr(&span, "gen_ai.usage.output_tokens.reasoning"),
        Some(2)
    );
    assert_eq!(double_attr(&span, "gen_ai.usage.cost"), Some(0.000123));
    assert_eq!(string_attr(&span, "session.id").as_deref(), Some("sess-7"));
    assert_eq!(string_attr(&span, "user.id").as_deref(), Some("user-42"));
    // The caller's `trace.trace_id` keys the trace (docs/otlp.md: SHA-256 of the key).
    use sha2::Digest;
    assert_eq!(
        span.trace_id,
        sha2::Sha256::digest(b"trace-7")[..16].to_vec()
    );
    assert_eq!(
        string_attr(&span, "openrouter.x_title").as_deref(),
        Some("Gateway Test")
    );
    assert_eq!(
        string_attr(&span, "openrouter.upstream_id").as_deref(),
        Some("chatcmpl-fake-1")
    );
    assert_eq!(
        string_attr(&span, "gen_ai.response.finish_reason").as_deref(),
        Some("stop")
    );
    assert_eq!(bool_attr(&span, "openrouter.streamed"), Some(false));
    assert!(double_attr(&span, "openrouter.latency_ms").is_some_and(|l| l > 0.0));
    let completion_attr = string_attr(&span, "gen_ai.completion").unwrap();
    assert!(
        completion_attr.contains("Paris is the capital."),
        "{completion_attr}"
    );
    let prompt = string_attr(&span, "gen_ai.prompt").unwrap();
    assert!(prompt.contains("Capital of France?"), "{prompt}");
}

#[tokio::test]
async fn upstream_error_reaches_the_client_unchanged_and_is_captured() {
    let t = setup().await;
    let r = t
        .call(
            json!({"model": "fake/rate-limited", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let id = gen_id(&r);
    for (h, v) in [
        ("x-request-id", "req_fake_429"),
        ("retry-after", "7"),
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "7s"),
        ("content-type", "application/json"),
    ] {
        assert_eq!(r.headers()[h], v, "{h}");
    }
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#
    );
    let span = t.span(&id).await;
    assert_eq!(span.status.as_ref().unwrap().code, 2, "ERROR status");
    assert_eq!(
        span.status.as_ref().unwrap().message,
        "Rate limit reached for requests"
    );
    assert_eq!(
        string_attr(&span, "gen_ai.response.finish_reason").as_deref(),
        Some("error")
    );
}

#[tokio::test]
async fn own_errors_use_openai_error_shape() {
    let t = setup().await;
    let url = format!("{}{COMPLETIONS}", t.s.base);
    let body = json!({"model": "fake/ok", "messages": []});
    // No key, a wrong key, a management key.
    let cases = [
        (None, 401, "authentication_error"),
        (Some("sk-not-a-key"), 401, "authentication_error"),
        (Some(t.s.mgmt_key.as_str()), 403, "permission_error"),
    ];
    for (key, status, kind) in cases {
        let mut req = t.s.http.post(&url).json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(
            v["error"].get("param").is_some() && v["error"].get("code").is_some(),
            "{v}"
        );
    }
    let r = t
        .call(json!({"model": "unrouted/model", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["param"], "model");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let r = t.call(json!({"messages": []})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "model");
    let r =
        t.s.http
            .post(&url)
            .bearer_auth(&t.key)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        t.fake.requests.lock().unwrap().is_empty(),
        "nothing forwarded"
    );
}

#[tokio::test]
async fn stream_first_chunk_arrives_before_upstream_finishes_and_injected_usage_is_removed() {
    let t = setup().await;
    let mut r = t
        .call(json!({"model": "fake/held", "stream": true, "messages": [{"role": "user", "content": "Say hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-request-id"], "req_fake_stream");
    let id = gen_id(&r);
    let mut seen = String::new();
    while !seen.contains("Hel") {
        let c = next(&mut r)
            .await
            .expect("stream ended before the first token");
        seen.push_str(std::str::from_utf8(&c).unwrap());
    }
    // The upstream has not finished: it holds the rest until we have seen the first token.
    assert!(!t.fake.held_finished.load(Ordering::SeqCst));
    t.fake.release.notify_one();
    while let Some(c) = next(&mut r).await {
        seen.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert!(t.fake.held_finished.load(Ordering::SeqCst));
    // The upstream was asked for usage; the client, which did not ask, never sees that chunk.
    let (_, sent) = t.fake.last();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert!(seen.ends_with("data: [DONE]\n\n"), "{seen}");
    let events: Vec<&str> = seen.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 5, "{seen}");
    assert!(
        !seen.contains("\"choices\":[]"),
        "usage chunk forwarded: {seen}"
    );
    assert!(
        !seen.contains("prompt_tokens"),
        "usage chunk forwarded: {seen}"
    );
    // Nor the `"usage": null` the upstream adds to every chunk once usage is asked for.
    assert!(!seen.contains("\"usage\""), "usage field forwarded: {seen}");

    let span = t.span(&id).await;
    assert_eq!(bool_attr(&span, "openrouter.streamed"), Some(true));
    assert_eq!(int_attr(&span, "gen_ai.usage.input_tokens"), Some(11));
    assert_eq!(int_attr(&span, "gen_ai.usage.output_tokens"), Some(3));
    assert_eq!(int_attr(&span, "gen_ai.usage.input_tokens.cached"), Some(4));
    assert_eq!(
        int_attr(&span, "gen_ai.usage.output_tokens.reasoning"),
        Some(1)
    );
    let ttft = double_attr(&span, "openrouter.time_to_first_token_ms").unwrap();
    let latency = double_attr(&span, "openrouter.latency_ms").unwrap();
    assert!(
        ttft > 0.0 && ttft <= latency,
        "ttft {ttft} latency {latency}"
    );
    let completion_attr = string_attr(&span, "gen_ai.completion").unwrap();
    assert!(completion_attr.contains("\"Hello\""), "{completion_attr}");
    assert_eq!(
        string_attr(&span, "gen_ai.response.finish_reason").as_deref(),
        Some("stop")
    );
}

#[tokio::test]
async fn stream_usage_asked_by_the_client_is_forwarded_and_tool_calls_are_assembled() {
    let t = setup().await;
    let mut r = t
        .call(json!({
            "model": "fake/tools", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = gen_id(&r);
    let mut seen = String::new();
    while let Some(c) = next(&mut r).await {
        seen.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert!(
        seen.contains("\"choices\":[]"),
        "the asked-for usage chunk: {seen}"
    );
    let span = t.span(&id).await;
    assert_eq!(
        string_attr(&span, "gen_ai.response.finish_reason").as_deref(),
        Some("tool_calls")
    );
    let completion_attr = string_attr(&span, "gen_ai.completion").unwrap();
    let c: Value = serde_json::from_str(&completion_attr).unwrap();
    let call = &c["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{c}");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}", "{c}");
    assert_eq!(int_attr(&span, "gen_ai.usage.total_tokens"), Some(14));
}

#[tokio::test]
async fn client_abort_cancels_the_upstream_and_is_captured() {
    let t = setup().await;
    let mut r = t
        .call(json!({"model": "fake/endless", "stream": true, "messages": [{"role": "user", "content": "Count"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = gen_id(&r);
    let first = next(&mut r).await.unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("t0 "));
    drop(r);
    let dropped = t.fake.endless_dropped.clone();
    wait_for("the upstream stream to be cancelled", 10, || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    let span = t.span(&id).await;
    assert_eq!(bool_attr(&span, "openrouter.cancelled"), Some(true));
    let completion_attr = string_attr(&span, "gen_ai.completion").unwrap();
    assert!(completion_attr.contains("t0 "), "{completion_attr}");
}

#[tokio::test]
async fn embeddings_are_forwarded_and_captured() {
    let t = setup().await;
    let r =
        t.s.http
            .post(format!("{}/api/v1/embeddings", t.s.base))
            .bearer_auth(&t.key)
            .json(&json!({"model": "fake/emb", "input": ["first text", "second text"]}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let id = gen_id(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, embeddings_answer());
    assert_eq!(t.fake.last().1["model"], "emb");
    let span = t.span(&id).await;
    assert_eq!(
        string_attr(&span, "openrouter.api_type").as_deref(),
        Some("embeddings")
    );
    assert_eq!(int_attr(&span, "gen_ai.usage.input_tokens"), Some(4));
    assert_eq!(bool_attr(&span, "openrouter.streamed"), Some(false));
}

#[tokio::test]
async fn legacy_completions_stream_is_assembled_and_injected_usage_removed() {
    let t = setup().await;
    let mut r =
        t.s.http
            .post(format!("{}/api/v1/completions", t.s.base))
            .bearer_auth(&t.key)
            .json(&json!({"model": "fake/instruct", "prompt": "Tell a story", "stream": true}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let id = gen_id(&r);
    let mut seen = String::new();
    while let Some(c) = next(&mut r).await {
        seen.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert_eq!(t.fake.last().1["stream_options"]["include_usage"], true);
    assert!(!seen.contains("\"choices\":[]"), "{seen}");
    assert!(
        seen.contains(" a time") && seen.ends_with("data: [DONE]\n\n"),
        "{seen}"
    );
    let span = t.span(&id).await;
    assert_eq!(
        string_attr(&span, "openrouter.api_type").as_deref(),
        Some("completions")
    );
    assert_eq!(int_attr(&span, "gen_ai.usage.total_tokens"), Some(7));
    let completion_attr = string_attr(&span, "gen_ai.completion").unwrap();
    assert!(
        completion_attr.contains("Once upon a time"),
        "{completion_attr}"
    );
    assert_eq!(
        string_attr(&span, "gen_ai.response.finish_reason").as_deref(),
        Some("length")
    );
}

#[tokio::test]
async fn responses_stream_passes_through_and_its_final_response_is_captured() {
    let t = setup().await;
    let mut r = t
        .s
        .http
        .post(format!("{}/api/v1/responses", t.s.base))
        .bearer_auth(&t.key)
        .json(&json!({"model": "fake/gpt", "input": "Say hello in French", "stream": true, "reasoning": {"effort": "low"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = gen_id(&r);
    let mut seen = String::new();
    while let Some(c) = next(&mut r).await {
        seen.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert!(seen.starts_with("event: response.created\n"), "{seen}");
    assert_eq!(seen.matches("event: ").count(), 4, "{seen}");
    let sent = t.fake.last().1;
    assert!(sent.get("stream_options").is_none(), "{sent}");
    assert_eq!(sent["reasoning"], json!({"effort": "low"}));
    let span = t.span(&id).await;
    assert_eq!(
        string_attr(&span, "openrouter.api_type").as_deref(),
        Some("responses")
    );
    assert_eq!(int_attr(&span, "gen_ai.usage.input_tokens"), Some(9));
    assert_eq!(int_attr(&span, "gen_ai.usage.output_tokens"), Some(5));
    assert_eq!(int_attr(&span, "gen_ai.usage.input_tokens.cached"), Some(2));
    assert_eq!(
        int_attr(&span, "gen_ai.usage.output_tokens.reasoning"),
        Some(3)
    );
    assert_eq!(
        string_attr(&span, "gen_ai.response.finish_reason").as_deref(),
        Some("stop")
    );
    assert!(double_attr(&span, "openrouter.time_to_first_token_ms").is_some());
    let completion_attr = string_attr(&span, "gen_ai.completion").unwrap();
    assert!(completion_attr.contains("Bonjour"), "{completion_attr}");
}

/// A second upstream that only lists models: answers `GET /v1/models` with `models` and keeps
/// the `authorization` header of each request.
async fn models_upstream(models: Value) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/v1/models",
        axum::routing::get(move |headers: HeaderMap| {
            let seen = s2.clone();
            let models = models.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                seen.lock().unwrap().push(auth);
                axum::Json(json!({"object": "list", "data": models}))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

/// An address that accepts connections and never answers.
async fn silent_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            held.push(c);
        }
    });
    format!("http://{addr}/v1")
}

fn upstream(name: &str, base_url: &str, models: &[&str], default: bool) -> UpstreamSettings {
    UpstreamSettings {
        name: name.into(),
        base_url: base_url.into(),
        api_key: None,
        models: models.iter().map(|m| m.to_string()).collect(),
        default,
        kind: None,
        provider_name: None,
    }
}

/// `GET /models` lists the union of every upstream's models, each under the name a call must
/// use (the prefix of a `vendor/*` rule re-added, a model another upstream's rule takes left
/// out, no name twice); an unreachable and a silent upstream are left out without failing the
/// list, and only when every upstream fails is the answer a 502.
#[tokio::test]
async fn models_are_the_union_of_the_upstreams_under_the_names_calls_use() {
    let (other_url, other_auth) = models_upstream(json!([
        {"id": "m-a", "object": "model", "created": 1, "owned_by": "other", "context_length": 8192},
        {"id": "shared", "object": "model", "created": 2, "owned_by": "other"},
        // `fake/*` sends this name to the first upstream: not listed as the other's.
        {"id": "fake/gpt-fake", "object": "model", "created": 3, "owned_by": "other"},
        {"id": "m-a", "object": "model", "created": 1, "owned_by": "other"},
        {"no": "id"}
    ]))
    .await;
    let silent = silent_upstream().await;
    let t = setup_with(|st| {
        st.gateway.timeout_secs = 1;
        st.gateway.upstreams.extend([
            upstream("broken", "http://127.0.0.1:9/v1", &["broken/*"], false),
            upstream("silent", &silent, &["silent/*"], false),
            upstream("other", &other_url, &[], true),
        ]);
    })
    .await;
    // The workspace's own upstream (the same fake under another namespace) comes first.
    let r =
        t.s.post(
            UPSTREAMS,
            json!({"name": "ws", "base_url": t.fake_url, "api_key": WS_UPSTREAM_KEY, "models": ["ws/*"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let url = format!("{}/api/v1/models", t.s.base);
    let started = std::time::Instant::now();
    let r =
        t.s.http
            .get(&url)
            .bearer_auth(&t.key)
            .header("x-tracecast-upstream-key", "sk-callers-own")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    // The silent upstream is waited for once (1 s timeout), concurrently with the others.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["ws/gpt-fake", "fake/gpt-fake", "m-a", "shared"],
        "{v}"
    );
    // Each entry is the upstream's, only its id renamed.
    assert_eq!(
        v["data"][2],
        json!({"id": "m-a", "object": "model", "created": 1, "owned_by": "other", "context_length": 8192})
    );
    assert_eq!(v["data"][1]["owned_by"], "fake");
    // Each upstream got its own key; the caller's goes only to the one that has none.
    let auths: Vec<String> = t
        .fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| h["authorization"].to_str().unwrap().to_string())
        .collect();
    assert!(
        auths.contains(&format!("Bearer {UPSTREAM_KEY}")),
        "{auths:?}"
    );
    assert!(
        auths.contains(&format!("Bearer {WS_UPSTREAM_KEY}")),
        "{auths:?}"
    );
    assert!(
        !auths.iter().any(|a| a.contains("sk-callers-own")),
        "{auths:?}"
    );
    assert_eq!(*other_auth.lock().unwrap(), ["Bearer sk-callers-own"]);

    let r = t.s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Every upstream failing is an error, not an empty list.
    let s = TestServer::start_with(|st| {
        st.gateway.upstreams = vec![upstream("broken", "http://127.0.0.1:9/v1", &[], true)];
    })
    .await;
    let (key, _) = s.workspace_key(None).await;
    let r = s
        .http
        .get(format!("{}/api/v1/models", s.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_error", "{v}");
}

const UPSTREAMS: &str = "/api/v1/gateway/upstreams";
const WS_UPSTREAM_KEY: &str = "sk-workspace-upstream-key-5678";

/// Every file of the data dir, concatenated (the SQLite database and its WAL).
fn data_dir_bytes(s: &TestServer) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(s.data_dir()).unwrap().flatten() {
        if e.path().is_file() {
            out.extend(std::fs::read(e.path()).unwrap_or_default());
        }
    }
    out
}

#[tokio::test]
async fn workspace_upstreams_are_managed_through_the_api_sealed_masked_and_isolated() {
    let t = setup().await;
    let fake_url = format!("{}/v1", t.fake_base());
    let r = t
        .s
        .post(
            UPSTREAMS,
            json!({"name": "ws-fake", "base_url": fake_url, "api_key": WS_UPSTREAM_KEY, "models": ["ws/*"], "provider_name": "WsFake"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["data"]["api_key"], "sk-w...5678");
    assert_eq!(r.body["data"]["models"], json!(["ws/*"]));
    let list = t.s.get(UPSTREAMS).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["data"][0]["id"], id.as_str());
    assert!(!list.text.contains(WS_UPSTREAM_KEY));
    // Sealed at rest: the credential is nowhere in the database files.
    let needle = WS_UPSTREAM_KEY.as_bytes();
    assert!(
        !data_dir_bytes(&t.s)
            .windows(needle.len())
            .any(|w| w == needle),
        "the upstream credential is stored in clear"
    );

    // The workspace's calls reach it, with its credential and the prefix stripped.
    let r = t
        .call(json!({"model": "ws/ok", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let gid = gen_id(&r);
    let (h, body) = t.fake.last();
    assert_eq!(h["authorization"], format!("Bearer {WS_UPSTREAM_KEY}"));
    assert_eq!(body["model"], "ok");
    let span = t.span(&gid).await;
    assert_eq!(
        string_attr(&span, "openrouter.provider_name").as_deref(),
        Some("WsFake")
    );

    // Another workspace's key does not see it.
    let w =
        t.s.post(
            "/api/v1/workspaces",
            json!({"name": "Other", "slug": "other"}),
        )
        .await;
    assert_eq!(w.status, 201, "{}", w.text);
    let (other_key, _) =
        t.s.workspace_key(Some(w.body["data"]["id"].as_str().unwrap()))
            .await;
    let r =
        t.s.http
            .post(format!("{}{COMPLETIONS}", t.s.base))
            .bearer_auth(&other_key)
            .json(&json!({"model": "ws/ok", "messages": []}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);

    // Validation names the field; a workspace key may not manage upstreams.
    let r =
        t.s.post(UPSTREAMS, json!({"name": "x", "base_url": "ftp://nope"}))
            .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("base_url"),
        "{}",
        r.text
    );
    let r =
        t.s.post(
            UPSTREAMS,
            json!({"name": "x", "base_url": fake_url, "colour": 1}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r =
        t.s.send(reqwest::Method::GET, UPSTREAMS, Some(&t.key), None)
            .await;
    assert_eq!(r.status, 403);

    // PATCH: a new URL needs the credential again; a masked one sent back keeps it.
    let path = format!("{UPSTREAMS}/{id}");
    let r =
        t.s.patch(&path, json!({"base_url": "http://127.0.0.1:9/v1"}))
            .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r =
        t.s.patch(
            &path,
            json!({"models": ["ws2/*"], "api_key": "sk-w...5678"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = t
        .call(json!({"model": "ws2/ok", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        t.fake.last().0["authorization"],
        format!("Bearer {WS_UPSTREAM_KEY}")
    );
    let r = t
        .call(json!({"model": "ws/ok", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the old rule is gone at once");

    let r = t.s.delete(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = t
        .call(json!({"model": "ws2/ok", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(t.s.get(&path).await.status, 404);
}

#[tokio::test]
async fn pass_through_sends_the_callers_own_upstream_key() {
    let t = setup().await;
    let own = "sk-caller-own-upstream-key-0000";
    let r = t
        .call(json!({"model": "fake/ok", "messages": [{"role": "user", "content": "hi"}]}))
        .header("x-tracecast-upstream-key", own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let gid = gen_id(&r);
    let (h, _) = t.fake.last();
    assert_eq!(h["authorization"], format!("Bearer {own}"));
    assert!(h.get("x-tracecast-upstream-key").is_none());
    let span = t.span(&gid).await;
    assert_eq!(bool_attr(&span, "openrouter.is_byok"), Some(true));
    let delivered: Vec<u8> = t
        .hook
        .requests()
        .iter()
        .flat_map(|r| r.body.to_vec())
        .collect();
    assert!(!String::from_utf8_lossy(&delivered).contains(own));
}

#[tokio::test]
async fn cost_comes_from_the_price_table_when_the_upstream_reports_none() {
    let t = setup().await;
    let r = t
        .call(json!({"model": "fake/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = gen_id(&r);
    let span = t.span(&id).await;
    // LiteLLM 1.108.5 gpt-4o: input $2.50/M, cached input $1.25/M, output $10/M.
    // 13 uncached + 8 cached prompt tokens, 6 completion tokens.
    let expected = 13.0 * 2.5e-6 + 8.0 * 1.25e-6 + 6.0 * 1e-5;
    let cost = double_attr(&span, "gen_ai.usage.cost").expect("a cost");
    assert!((cost - expected).abs() < 1e-12, "{cost} != {expected}");
}

#[tokio::test]
async fn unreachable_and_silent_upstreams_answer_502_and_504_and_are_captured() {
    let t = setup_with(|st| {
        st.gateway.timeout_secs = 1;
        // A port nothing listens on: bound, then closed.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        st.gateway.upstreams.push(UpstreamSettings {
            name: "dead".into(),
            base_url: format!("http://{addr}/v1"),
            api_key: None,
            models: vec!["dead/*".into()],
            default: false,
            kind: None,
            provider_name: None,
        });
    })
    .await;
    for (model, status, code) in [
        ("dead/x", 502, "upstream_error"),
        ("fake/silent", 504, "upstream_timeout"),
    ] {
        let r = t
            .call(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{model}");
        let id = gen_id(&r);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["type"], "api_error", "{v}");
        let span = t.span(&id).await;
        assert_eq!(
            span.status.as_ref().unwrap().code,
            2,
            "{model}: ERROR status"
        );
        assert_eq!(
            string_attr(&span, "gen_ai.response.finish_reason").as_deref(),
            Some("error")
        );
    }
}

/// Writes `requests` on one connection (in a task, so a server that reads slowly cannot block
/// the test) and reads until `answers` HTTP answers have arrived, within 20 s. Returns what was
/// read; fails if the server closes the connection first.
async fn answers_on_one_connection(base: &str, requests: Vec<u8>, answers: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        // A server that closes the connection may make this fail; the reader then says why.
        let _ = wr.write_all(&requests).await;
        wr
    });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 64 * 1024];
    while String::from_utf8_lossy(&seen).matches("HTTP/1.1 ").count() < answers {
        let n = match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!(
                "the connection failed ({e}) after: {}",
                String::from_utf8_lossy(&seen)
            ),
            Err(_) => panic!(
                "not {answers} answers within 20 s: {}",
                String::from_utf8_lossy(&seen)
            ),
        };
        assert!(
            n > 0,
            "the server closed the connection after: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    drop(writer);
    String::from_utf8_lossy(&seen).into_owned()
}

/// A refused gateway call (bad key: 401; management key: 403) is answered only after its body
/// was read, so the keep-alive connection stays usable for the client's next request. Before,
/// the gateway answered 401 with a large body unread, hyper closed the connection, and an SDK
/// that had already sent its next call on it failed with "server disconnected".
#[tokio::test]
async fn a_refused_gateway_call_with_a_large_body_leaves_the_connection_usable() {
    let t = setup().await;
    let addr = t.s.base.trim_start_matches("http://").to_owned();
    // A 1 MiB prompt: far more than one read of the server takes, so it is still on its way
    // when the refusal is decided. The management route reads at most 64 KiB of a refused body
    // (as the rest of the management API does): 60 KiB there.
    let body_of = |n: usize| {
        json!({"model": "fake/ok", "messages": [{"role": "user", "content": "x".repeat(n)}]})
            .to_string()
    };
    for (path, key, status, body) in [
        (COMPLETIONS, "sk-tc-v1-not-a-key", "401", body_of(1 << 20)),
        (
            "/api/v1/embeddings",
            t.s.mgmt_key.as_str(),
            "403",
            body_of(1 << 20),
        ),
        (UPSTREAMS, "sk-tc-v1-not-a-key", "401", body_of(60 << 10)),
    ] {
        let mut reqs = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reqs.extend_from_slice(body.as_bytes());
        // The next call on the same connection, with the right key.
        let ok = json!({"model": "fake/ok", "messages": []}).to_string();
        reqs.extend_from_slice(
            format!(
                "POST {COMPLETIONS} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ok}",
                t.key,
                ok.len()
            )
            .as_bytes(),
        );
        let text = answers_on_one_connection(&t.s.base, reqs, 2).await;
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {text}"
        );
        assert!(text.contains("HTTP/1.1 200"), "{path}: {text}");
    }
}

/// The property names of an OpenAPI schema (following `$ref` and `allOf`).
fn schema_properties(doc: &Value, schema: &Value) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return schema_properties(doc, &doc["components"]["schemas"][name]);
    }
    let mut out: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        out.extend(schema_properties(doc, part));
    }
    out
}

/// The served OpenAPI document lists the gateway's calls and the upstream management routes,
/// with the schemas the answers really have.
#[tokio::test]
async fn openapi_lists_the_gateway_routes_with_their_schemas() {
    let t = setup().await;
    let doc = t.s.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status, 200);
    let doc = doc.body;
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/api/v1/chat/completions", &["post"][..]),
        ("/api/v1/completions", &["post"]),
        ("/api/v1/responses", &["post"]),
        ("/api/v1/embeddings", &["post"]),
        ("/api/v1/models", &["get"]),
        (UPSTREAMS, &["get", "post"]),
        (
            "/api/v1/gateway/upstreams/{id}",
            &["get", "patch", "delete"],
        ),
    ] {
        for m in methods {
            let op = &paths[path][m];
            assert!(op.is_object(), "openapi lacks {m} {path}");
            assert!(op["security"].is_array(), "{m} {path} has no security");
        }
    }
    // A call's body is a free-form JSON object; tracecast's own errors are OpenAI's shape.
    let chat = &paths["/api/v1/chat/completions"]["post"];
    let body = &chat["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        schema_properties(&doc, body).contains(&"model".to_string()),
        "{body}"
    );
    let err = &chat["responses"]["401"]["content"]["application/json"]["schema"];
    let err_props = schema_properties(&doc, err);
    assert_eq!(err_props, ["error"], "{err}");
    let detail = schema_properties(&doc, &doc["components"]["schemas"]["OpenAiError"]);
    for f in ["message", "type", "param", "code"] {
        assert!(detail.contains(&f.to_string()), "OpenAiError lacks {f}");
    }
    assert!(
        chat["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{chat}"
    );

    // The upstream schemas hold every field an answer has.
    let r = t
        .s
        .post(
            UPSTREAMS,
            json!({"name": "doc", "base_url": "http://127.0.0.1:9/v1", "api_key": WS_UPSTREAM_KEY, "models": ["doc/*"], "kind": "openai", "provider_name": "Doc"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let created =
        &paths[UPSTREAMS]["post"]["responses"]["201"]["content"]["application/json"]["schema"];
    let data = schema_properties(&doc, created);
    assert_eq!(data, ["data"], "{created}");
    let view = schema_properties(&doc, &doc["components"]["schemas"]["GatewayUpstream"]);
    for k in r.body["data"].as_object().unwrap().keys() {
        assert!(view.contains(k), "GatewayUpstream lacks {k}: {view:?}");
    }
    let create = &paths[UPSTREAMS]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let create = schema_properties(&doc, create);
    for k in [
        "workspace_id",
        "name",
        "base_url",
        "api_key",
        "models",
        "default",
        "kind",
        "provider_name",
    ] {
        assert!(
            create.contains(&k.to_string()),
            "the create body lacks {k}: {create:?}"
        );
    }
    let models = &paths["/api/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    let mut props = schema_properties(&doc, models);
    props.sort();
    assert_eq!(props, ["data", "object"], "{models}");
}

/// Over its key's rate limit a call gets OpenAI's rate-limit answer: 429 with `retry-after`
/// (which the SDKs wait for before retrying) and `"code": "rate_limit_exceeded"`.
#[tokio::test]
async fn a_call_over_the_rate_limit_gets_openai_429_with_retry_after() {
    let t = setup_with(|st| {
        st.limits.ingest_rate_per_key = 0.01;
        st.limits.ingest_burst_per_key = 1;
    })
    .await;
    let body = json!({"model": "fake/ok", "messages": []});
    assert_eq!(t.call(body.clone()).send().await.unwrap().status(), 200);
    let r = t.call(body).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    assert_eq!(v["error"]["type"], "requests", "{v}");
}

/// Keys are cached after their first use; disabling, re-enabling and deleting one through the
/// API applies to the very next call.
#[tokio::test]
async fn a_key_changed_through_the_api_applies_to_the_next_call() {
    let t = setup().await;
    let body = json!({"model": "fake/ok", "messages": []});
    assert_eq!(t.call(body.clone()).send().await.unwrap().status(), 200);
    let path = format!("/api/v1/keys/{}", t.hash);
    for (patch, status) in [
        (json!({"disabled": true}), 401),
        (json!({"disabled": false}), 200),
    ] {
        let r = t.s.patch(&path, patch).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(t.call(body.clone()).send().await.unwrap().status(), status);
    }
    let r = t.s.delete(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = t.call(body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
}

/// A body that needs no rewrite reaches the upstream byte for byte (spacing, key order, number
/// spelling); one that does (a `vendor/*` prefix to strip) differs only in what was rewritten.
#[tokio::test]
async fn a_body_without_rewrite_is_forwarded_byte_for_byte() {
    let t = setup_with(|st| st.gateway.upstreams[0].models.push("ok".into())).await;
    let url = format!("{}{COMPLETIONS}", t.s.base);
    let raw = r#"{ "model":"ok",  "messages":[{"role":"user","content":"hi"}], "temperature": 1.0, "x_unknown": {"b":1,"a":2e0} }"#;
    let send = |body: String| {
        t.s.http
            .post(&url)
            .bearer_auth(&t.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(send(raw.to_string()).await.unwrap().status(), 200);
    assert_eq!(
        t.fake.bodies.lock().unwrap().last().unwrap(),
        raw.as_bytes()
    );

    let prefixed = raw.replace(r#""model":"ok""#, r#""model":"fake/ok""#);
    assert_eq!(send(prefixed).await.unwrap().status(), 200);
    let got: Value = serde_json::from_slice(t.fake.bodies.lock().unwrap().last().unwrap()).unwrap();
    let mut want: Value = serde_json::from_str(raw).unwrap();
    want["model"] = json!("ok");
    assert_eq!(got, want);
}
